package proxy_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// panicWatch is a log handler that remembers error records about panics,
// which the listener logs when it recovers one.
type panicWatch struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.panics = append(p.panics, r.Message)
		p.mu.Unlock()
	}
	return nil
}
func (p *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicWatch) WithGroup(string) slog.Handler      { return p }

// FuzzClientBytes sends arbitrary bytes, after a valid PROXY header, to a
// waypoint with a route and a policy in force, over a real socket. The
// proxy must never panic, whatever the client sends.
func FuzzClientBytes(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: svc\r\n\r\n",
		"POST /post HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /admin/../x HTTP/1.0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"GET / HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"\x00\xff\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	b := startFuzzBackend(f)
	watch := &panicWatch{}
	p := proxy.New(proxy.Options{Logger: slog.New(watch)})
	snap, err := files.LoadBytes("fuzz.yaml", []byte(svcManifests(b)+traversedRoute+policy("deny-get", svcTarget, "DENY", `
  rules: [{to: [{operation: {methods: ["GET"], paths: ["/admin*"]}}]}]
`)))
	if err != nil {
		f.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Update(res.Waypoint); err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := inbound.NewServer(p, inbound.Options{Logger: slog.New(watch),
		HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond}})
	go func() { _ = srv.Serve(ln) }()
	f.Cleanup(func() { _ = ln.Close(); _ = srv.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := meshclient.Dial(context.Background(), ln.Addr().String(), meshclient.Conn{
			Source: clientAddr, Destination: netip.MustParseAddrPort(vip), Identity: curlID,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		watch.mu.Lock()
		defer watch.mu.Unlock()
		if len(watch.panics) > 0 {
			t.Fatalf("the proxy panicked on %q: %v", data, watch.panics)
		}
	})
}

// startFuzzBackend is a plain HTTP backend for the fuzz target.
func startFuzzBackend(f *testing.F) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			}()
		}
	}()
	f.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
