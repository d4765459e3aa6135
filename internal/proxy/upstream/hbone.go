package upstream

import (
	"context"
	"net"
	"net/netip"
	"strconv"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// Mesh is what native mode needs to know of the configuration in force:
// the endpoints reached over HBONE, with the identity each must prove, and
// the trust domains peers must be in.
type Mesh struct {
	Endpoints map[string]string // endpoint IP:port → SPIFFE identity
	// Hosts are the workloads reached over HBONE on whatever port
	// (workload traffic): IP → SPIFFE identity.
	Hosts              map[string]string
	TrustDomain        string
	TrustDomainAliases []string
}

// MeshOf collects the Mesh of a configuration; nil when it is not in
// native mode.
func MeshOf(w *ir.Waypoint) *Mesh {
	if w == nil || !w.HBONE {
		return nil
	}
	m := &Mesh{Endpoints: map[string]string{}, TrustDomain: w.TrustDomain, TrustDomainAliases: w.TrustDomainAliases}
	for _, b := range w.Backends {
		for _, e := range b.HBONE {
			m.Endpoints[e.Endpoint] = e.Identity
		}
	}
	for _, wl := range w.Workloads {
		if wl == nil || !wl.HBONE {
			continue
		}
		if m.Hosts == nil {
			m.Hosts = map[string]string{}
		}
		for _, a := range wl.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				m.Hosts[ip.Unmap().String()] = wl.Identity
			}
		}
	}
	return m
}

// SetMesh puts a configuration's Mesh in force (nil: every endpoint gets
// plain TCP). When an endpoint changes how it is reached (HBONE or not,
// or the identity it must prove), the idle pooled connections are closed,
// so no request goes on a connection the new configuration would not
// open; connections in use finish their exchange.
func (p *Pool) SetMesh(m *Mesh) {
	old := p.mesh.Swap(m)
	if meshChanged(old, m) {
		p.H1.CloseIdleConnections()
		p.H2C.CloseIdleConnections()
	}
}

func meshChanged(a, b *Mesh) bool {
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	return mapChanged(a.Endpoints, b.Endpoints) || mapChanged(a.Hosts, b.Hosts)
}

func mapChanged(a, b map[string]string) bool {
	if len(a) != len(b) {
		return true
	}
	for k, v := range a {
		if nv, ok := b[k]; !ok || nv != v {
			return true
		}
	}
	return false
}

func (p *Pool) trustDomains() (string, []string) {
	if m := p.mesh.Load(); m != nil {
		return m.TrustDomain, m.TrustDomainAliases
	}
	return "", nil
}

// dialMesh opens a connection to an endpoint: an HBONE tunnel to its pod's
// port 15008 when the mesh in force lists it, else plain TCP.
func (p *Pool) dialMesh(ctx context.Context, network, addr string) (net.Conn, error) {
	m := p.mesh.Load()
	if m == nil {
		return p.dialer.DialContext(ctx, network, addr)
	}
	id, ok := m.Endpoints[addr]
	var ap netip.AddrPort
	if !ok && len(m.Hosts) > 0 {
		// A workload's address, on the port the traffic came to.
		if a, err := netip.ParseAddrPort(addr); err == nil {
			ap = a
			id, ok = m.Hosts[a.Addr().Unmap().String()]
		}
	}
	if !ok {
		return p.dialer.DialContext(ctx, network, addr)
	}
	if !ap.IsValid() {
		a, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		ap = a
	}
	return p.hbone.Dial(ctx, hbone.Target{
		Address:   net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(p.opts.HBONEPort))),
		Authority: addr,
		Identity:  id,
	})
}
