package inbound

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// BenchmarkH2CServer weighs the h2c server the waypoint uses (net/http's,
// fed connections through a listener) against x/net/http2's ServeConn
// used directly, on the same handler and client, over loopback: issue 13
// asked which to pick by numbers. Run it with
//
//	go test -run - -bench H2CServer -count 6 ./internal/proxy/inbound/
func BenchmarkH2CServer(b *testing.B) {
	body := make([]byte, 1024)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	b.Run("net-http", func(b *testing.B) {
		ln := listen(b)
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: handler, Protocols: &protos}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
		runH2C(b, ln.Addr().String())
	})
	b.Run("x-net-http2", func(b *testing.B) {
		ln := listen(b)
		srv := &http2.Server{}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go srv.ServeConn(c, &http2.ServeConnOpts{Handler: handler})
			}
		}()
		runH2C(b, ln.Addr().String())
	})
}

func listen(b *testing.B) net.Listener {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	return ln
}

// runH2C sends b.N requests over one h2c connection, 16 at a time.
func runH2C(b *testing.B, addr string) {
	b.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := cl.Get("http://" + addr + "/")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
}
