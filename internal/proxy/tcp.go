package proxy

import (
	"context"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// ServeTCP authorizes a TCP connection with the L4 fields of the policies,
// then copies bytes to one endpoint of the service, both ways, passing
// half-closes on. A denied connection is closed.
//
// The whole connection is served by the configuration it was classified
// in (info.Target): its policies, its TCPRoute's backends and their
// endpoints. An update after that changes nothing for it; the next
// connection gets the new configuration.
func (p *Proxy) ServeTCP(ctx context.Context, conn net.Conn, r io.Reader, info *inbound.ConnInfo) {
	t := info.Target
	sp := t.Port
	if sp == nil {
		return
	}
	if !sp.Authz.Empty() {
		areq := &authz.Request{
			SourceIP:        info.Source.Addr(),
			SourcePrincipal: info.Identity,
			DestinationIP:   info.Destination.Addr(),
			DestinationPort: info.Destination.Port(),
		}
		// CUSTOM on a TCP port would need Envoy's network ext_authz, which
		// this waypoint does not speak: a connection a CUSTOM policy selects
		// is closed (fail closed).
		if _, policy, matched := sp.Authz.Custom(areq); matched {
			p.log.Debug("connection selected by a CUSTOM policy on a TCP port: closed", "service", sp.Name, "policy", policy)
			return
		}
		d := sp.Authz.Evaluate(areq)
		p.logShadow(sp, info, "", "", d)
		if !d.Allowed {
			p.log.Debug("connection denied", "service", sp.Name, "policy", d.Policy, "identity", info.Identity)
			return
		}
	}
	b := sp.DefaultBackend
	if len(sp.Port.TCPBackends) > 0 {
		wb := route.PickWeighted(sp.Port.TCPBackends, mrand.Uint32())
		if wb == nil || wb.Backend == "" {
			p.log.Debug("TCPRoute has no usable backend; connection closed", "service", sp.Name)
			return
		}
		b = t.Backend(wb.Backend)
	}
	if b == nil {
		return
	}
	var ep string
	var ok bool
	if ch := b.Hashing(); ch != nil && ch.SourceIP && info.Source.Addr().IsValid() {
		// useSourceIp hashes TCP connections too (Envoy's tcp_proxy hash
		// policy); the other keys are HTTP's: a random endpoint.
		a := info.Source.Addr().As16()
		ep, ok = b.PickKey(upstream.HashBytes(a[:]), true, 0)
	} else {
		ep, ok = b.PickKey(0, false, 0)
	}
	if !ok {
		p.log.Debug("no endpoint for TCP service", "service", sp.Name)
		return
	}
	b.Begin(ep) // a connection in flight, for LEAST_REQUEST
	defer b.End(ep)
	var rec *telemetry.TCPRecord
	if p.tel != nil {
		rec = &telemetry.TCPRecord{
			Start: time.Now(), Source: telemetry.PeerFromPrincipal(info.Identity),
			Destination:        telemetry.Peer{Namespace: sp.Service.Namespace, CanonicalService: sp.Service.Name},
			DestinationService: sp.Service.Hostname, DestinationServiceName: sp.Service.Name, DestinationServiceNamespace: sp.Service.Namespace,
			UpstreamHost: ep, UpstreamCluster: telemetry.UpstreamCluster(int(sp.Port.Port), "tcp", "", sp.Service.Hostname),
			ResponseFlags: telemetry.FlagNone, ConnectionSecurityPolicy: "mutual_tls",
			DownstreamRemote: info.Source.String(), DownstreamLocal: info.Destination.String(),
		}
		// Native HBONE: the source ztunnel's baggage on the CONNECT says
		// what the client workload is (as far as its identity backs it).
		telemetry.ParseBaggage(info.Baggage, &rec.Source)
	}
	dctx, cancel := context.WithTimeout(ctx, b.ConnectTimeout(10*time.Second))
	up, err := p.pool.Dial(dctx, ep)
	cancel()
	b.Outcome(ep, 0, err != nil) // a connect failure is a gateway error
	if err != nil {
		p.log.Debug("upstream connect failed", "service", sp.Name, "endpoint", ep, "error", err.Error())
		if rec != nil {
			rec.ResponseFlags = telemetry.FlagUpstreamConnectionFailure
			rec.Duration = time.Since(rec.Start)
			p.tel.TCPOpened(rec)
			p.tel.TCPClosed(rec)
		}
		return
	}
	defer func() { _ = up.Close() }()
	if rec == nil {
		pipe(conn, r, up, nil, nil)
		return
	}
	p.tel.TCPOpened(rec)
	var sent, received atomic.Int64
	stop := make(chan struct{})
	reported := make(chan struct{})
	go func() { // Istio reports long connections every 5 seconds
		defer close(reported)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rec.SentBytes, rec.ReceivedBytes = sent.Load(), received.Load()
				p.tel.TCPReport(rec)
			}
		}
	}()
	pipe(conn, r, up, &received, &sent)
	close(stop)
	<-reported
	rec.SentBytes, rec.ReceivedBytes = sent.Load(), received.Load()
	rec.Duration = time.Since(rec.Start)
	p.tel.TCPClosed(rec)
}

// pipe copies client→upstream (reading through r, which holds bytes already
// buffered from the client) and upstream→client until both directions end,
// counting the bytes each way when counters are given.
func pipe(client net.Conn, r io.Reader, up net.Conn, fromClient, toClient *atomic.Int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var dst io.Writer = up
		if fromClient != nil {
			dst = countingWriter{up, fromClient}
		}
		_, _ = io.Copy(dst, r)
		closeWrite(up)
	}()
	var dst io.Writer = client
	if toClient != nil {
		dst = countingWriter{client, toClient}
	}
	_, _ = io.Copy(dst, up)
	closeWrite(client)
	wg.Wait()
}

// countingWriter counts bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// closeWrite half-closes a connection where it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
