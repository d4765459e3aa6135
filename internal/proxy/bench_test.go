package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxyHTTP1 measures one keep-alive HTTP/1.1 exchange through the
// waypoint (PROXY v2 inbound, a route with a response header filter, an
// ALLOW policy that matches) to a 1 KiB backend, all over loopback. The
// cost includes the client and the backend in this process.
func BenchmarkProxyHTTP1(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("x", 1024)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	w := startWaypoint(b, svcManifests(ln.Addr().(*net.TCPAddr).AddrPort())+traversedRoute+
		policy("allow", svcTarget, "ALLOW", `  rules: [{from: [{source: {namespaces: ["httpbin"]}}]}]`))
	c := w.dial(vip, curlID)
	_ = c.SetDeadline(time.Time{})
	br := bufio.NewReader(c)
	req := []byte("GET /bench HTTP/1.1\r\nHost: svc\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
