package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// Workload traffic: a connection addressed to a workload's IP, on any
// port, is served by the waypoint's workload port (ir.Waypoint.WorkloadPort:
// its protocol and the policies that target the waypoint) and goes to that
// IP and port. The service port such a connection is classified to is
// built the first time a port of the workload is seen and kept for the
// next connections of the configuration (up to maxWorkloadPorts addresses and
// ports per workload; past that, built for each connection), so the lookup stays one
// map read by IP and, after the first connection, one by port.

// maxWorkloadPorts bounds the ports remembered per workload, so that a
// client trying every port cannot grow the configuration without end.
const maxWorkloadPorts = 64

// workload is a compiled ir.Workload.
type workload struct {
	ir *ir.Workload
	// service names the workload for telemetry and logs (Kind, Name,
	// Namespace; no hostname, no VIPs).
	service *ir.Service
	base    *ServicePort // the compiled workload port
	outlier *upstream.Outlier
	ports   sync.Map // netip.AddrPort → *ServicePort
	kept    atomic.Int32
}

// compileWorkloads fills c.workloads from the IR, taking over the
// compiled policies of prev's workload port when they are equal.
func (c *Config) compileWorkloads(prev *Config, jwks *authn.JWKSCache, outlier *upstream.Outlier) error {
	w := c.ir
	if w.WorkloadPort == nil {
		return nil
	}
	p := w.WorkloadPort
	base := &ServicePort{Port: p, Name: "workloads"}
	var old *ServicePort
	if prev != nil && prev.workloadPort != nil && sameForPorts(prev.ir, w) {
		old = prev.workloadPort
	}
	if old != nil && equalPtrs(p.Policies, old.Port.Policies, equalPolicy) {
		base.Authz = old.Authz
	} else {
		base.Authz = authz.Compile(p.Policies, authz.Options{TrustDomain: w.TrustDomain, TrustDomainAliases: w.TrustDomainAliases})
	}
	if old != nil && equalPtrs(p.JWTRules, old.Port.JWTRules, equalJWTRule) {
		base.Authn = old.Authn
	} else {
		base.Authn = authn.Compile(p.JWTRules, authn.Options{JWKS: jwks})
	}
	if old != nil && eqPtr(p.Traffic, old.Port.Traffic, equalTraffic) {
		base.Traffic = old.Traffic
	} else {
		tr, err := route.CompileTraffic(p.Traffic, c.limits)
		if err != nil {
			return fmt.Errorf("workload port: %w", err)
		}
		base.Traffic = tr
	}
	c.workloadPort = base
	c.workloads = make(map[netip.Addr]*workload, len(w.Workloads))
	for i, wl := range w.Workloads {
		if wl == nil {
			return fmt.Errorf("workload %d is empty", i)
		}
		cw := &workload{ir: wl, base: base, outlier: outlier,
			service: &ir.Service{Kind: wl.Kind, Name: wl.Name, Namespace: wl.Namespace}}
		for _, a := range wl.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("workload %s/%s: bad address %q", wl.Namespace, wl.Name, a)
			}
			// A service VIP wins over a workload address (Lookup looks
			// there first); of two workloads with one address, the first.
			if _, dup := c.workloads[ip.Unmap()]; !dup {
				c.workloads[ip.Unmap()] = cw
			}
		}
	}
	return nil
}

// port is the service port of a connection to the workload's ip on port.
func (w *workload) port(ip netip.Addr, port uint16) *ServicePort {
	ap := netip.AddrPortFrom(ip, port)
	if sp, ok := w.ports.Load(ap); ok {
		return sp.(*ServicePort)
	}
	ep := ap.String()
	key := "workload/" + w.ir.Kind + "/" + w.ir.Namespace + "/" + w.ir.Name + ":" + strconv.Itoa(int(port))
	be := func(proto string) *upstream.Backend {
		return upstream.NewBackend(key, &ir.Backend{Service: ir.NamespacedName{Namespace: w.ir.Namespace, Name: w.ir.Name},
			Port: port, Protocol: proto, Endpoints: []string{ep}}, w.outlier)
	}
	sp := &ServicePort{
		Service:        w.service,
		Port:           &ir.ServicePort{Port: port, Protocol: w.base.Port.Protocol, Policies: w.base.Port.Policies, JWTRules: w.base.Port.JWTRules, Traffic: w.base.Port.Traffic},
		Traffic:        w.base.Traffic,
		Authn:          w.base.Authn,
		Authz:          w.base.Authz,
		DefaultBackend: be("HTTP1"),
		H2CBackend:     be("H2C"),
		Name:           ep,
	}
	if w.kept.Load() < maxWorkloadPorts {
		if prev, loaded := w.ports.LoadOrStore(ap, sp); loaded {
			return prev.(*ServicePort)
		}
		w.kept.Add(1)
	}
	return sp
}
