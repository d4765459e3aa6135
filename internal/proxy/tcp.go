package proxy

import (
	"context"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
)

// ServeTCP authorizes a TCP connection with the L4 fields of the policies,
// then copies bytes to one endpoint of the service, both ways, passing
// half-closes on. A denied connection is closed.
func (p *Proxy) ServeTCP(ctx context.Context, conn net.Conn, r io.Reader, info *inbound.ConnInfo) {
	sp, _ := info.Service.(*servicePort)
	if sp == nil {
		return
	}
	if !sp.authz.Empty() {
		areq := &authz.Request{
			SourceIP:        info.Source.Addr(),
			SourcePrincipal: info.Identity,
			DestinationIP:   info.Destination.Addr(),
			DestinationPort: info.Destination.Port(),
		}
		// CUSTOM on a TCP port would need Envoy's network ext_authz, which
		// this waypoint does not speak: a connection a CUSTOM policy selects
		// is closed (fail closed).
		if _, policy, matched := sp.authz.Custom(areq); matched {
			p.log.Debug("connection selected by a CUSTOM policy on a TCP port: closed", "service", sp.name, "policy", policy)
			return
		}
		d := sp.authz.Evaluate(areq)
		p.logShadow(sp, info, "", "", d)
		if !d.Allowed {
			p.log.Debug("connection denied", "service", sp.name, "policy", d.Policy, "identity", info.Identity)
			return
		}
	}
	b := sp.defaultBackend
	if len(sp.port.TCPBackends) > 0 {
		wb := route.PickWeighted(sp.port.TCPBackends, mrand.Uint32())
		if wb == nil || wb.Backend == "" {
			p.log.Debug("TCPRoute has no usable backend; connection closed", "service", sp.name)
			return
		}
		c := p.config.Load()
		if c == nil {
			return
		}
		b = c.backends[wb.Backend]
	}
	if b == nil {
		return
	}
	ep, ok := b.Pick()
	if !ok {
		p.log.Debug("no endpoint for TCP service", "service", sp.name)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, err := p.pool.Dial(dctx, ep)
	cancel()
	b.Report(ep, err == nil)
	if err != nil {
		p.log.Debug("upstream connect failed", "service", sp.name, "endpoint", ep, "error", err.Error())
		return
	}
	defer func() { _ = up.Close() }()
	pipe(conn, r, up)
}

// pipe copies client→upstream (reading through r, which holds bytes already
// buffered from the client) and upstream→client until both directions end.
func pipe(client net.Conn, r io.Reader, up net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, r)
		closeWrite(up)
	}()
	_, _ = io.Copy(client, up)
	closeWrite(client)
	wg.Wait()
}

// closeWrite half-closes a connection where it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
