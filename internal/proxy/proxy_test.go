package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

const vip = "127.0.100.1:80"

func TestForwardsToEndpointWithEnvoyHeaders(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))

	resp, body := w.do(vip, curlID, get("/get?x=1"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if e.Path != "/get" || e.Query != "x=1" || e.Host != "svc:80" {
		t.Errorf("backend saw path %q query %q host %q", e.Path, e.Query, e.Host)
	}
	if got := resp.Header.Get("Server"); got != "envoy" {
		t.Errorf("server header %q, want envoy (overwrites the backend's)", got)
	}
	if resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Error("no x-envoy-upstream-service-time")
	}
	id := e.Headers["X-Request-Id"]
	if len(id) != 1 || len(id[0]) != 36 {
		t.Errorf("backend got x-request-id %q, want one generated UUID", id)
	}

	// A request id the client sends is kept.
	_, body = w.do(vip, curlID, get("/get", "X-Request-Id", "abc-123"))
	if got := decodeEcho(t, body).Headers["X-Request-Id"]; len(got) != 1 || got[0] != "abc-123" {
		t.Errorf("x-request-id %q, want the client's abc-123", got)
	}
}

func TestResponseHeaderNamesAreLowerCase(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	c := w.dial(vip, curlID)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q", status)
	}
	sawBackend := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		name, _, _ := strings.Cut(line, ":")
		if name != strings.ToLower(name) {
			t.Errorf("header %q is not lower case", name)
		}
		if name == "x-backend" {
			sawBackend = true
		}
	}
	if !sawBackend {
		t.Error("the backend's x-backend header did not come through")
	}
}

func TestKeepAliveAndRoundRobin(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	// A second pod on the same target port, another IP.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.1.2"), a.addr.Port()).String())
	if err != nil {
		t.Skipf("cannot bind the second pod on the same port: %v", err)
	}
	_ = ln.Close()
	b := startBackendOn(t, "b", netip.AddrPortFrom(netip.MustParseAddr("127.0.1.2"), a.addr.Port()).String(), false)
	w := startWaypoint(t, svcManifests(a.addr, b.addr))

	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		resp, body := roundTrip(t, c, br, get("/"))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		seen[decodeEcho(t, body).Backend]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("round robin over two endpoints gave %v, want 5 each", seen)
	}
	// Upstream connections are pooled: ten sequential requests, one
	// connection per endpoint.
	if a.Conns() != 1 || b.Conns() != 1 {
		t.Errorf("upstream connections: a %d, b %d; want 1 each (keep-alive pool)", a.Conns(), b.Conns())
	}
}

func TestHTTP10HeadAndNoContent(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	t.Run("HTTP/1.0 closes after the response", func(t *testing.T) {
		c := w.dial(vip, curlID)
		_, _ = io.WriteString(c, "GET /old HTTP/1.0\r\n\r\n")
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || !strings.Contains(string(got), `"path":"/old"`) {
			t.Fatalf("response %q", got)
		}
	})
	t.Run("HEAD has no body and keeps the connection", func(t *testing.T) {
		c := w.dial(vip, curlID)
		br := bufio.NewReader(c)
		resp, body := roundTrip(t, c, br, newReq("HEAD", "/head", ""))
		if resp.StatusCode != 200 || body != "" {
			t.Fatalf("HEAD: status %d body %q", resp.StatusCode, body)
		}
		if resp, _ := roundTrip(t, c, br, get("/after-head")); resp.StatusCode != 200 {
			t.Fatalf("request after HEAD on the same connection: %d", resp.StatusCode)
		}
	})
	t.Run("204 from upstream", func(t *testing.T) {
		c := w.dial(vip, curlID)
		br := bufio.NewReader(c)
		resp, body := roundTrip(t, c, br, get("/x?status=204"))
		if resp.StatusCode != 204 || body != "" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if resp, _ := roundTrip(t, c, br, get("/y")); resp.StatusCode != 200 {
			t.Fatalf("request after 204 on the same connection: %d", resp.StatusCode)
		}
	})
}

func TestRefusesBadPreambles(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	dialRaw := func(t *testing.T, preamble []byte) net.Conn {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Write(preamble); err != nil {
			t.Fatal(err)
		}
		return c
	}
	valid, err := meshclient.Conn{Source: clientAddr, Destination: netip.MustParseAddrPort(vip), Identity: curlID}.Header()
	if err != nil {
		t.Fatal(err)
	}
	// A TLV whose length runs past the header's end.
	badTLV := append([]byte(nil), valid...)
	badTLV[len(badTLV)-len(curlID)-2] = 0xff
	// The LOCAL command (health checks) carries no destination.
	local := append([]byte(nil), valid[:16]...)
	local[12] = 0x20
	local[14], local[15] = 0, 0
	cases := map[string][]byte{
		"plain HTTP, no PROXY header": []byte("GET / HTTP/1.1\r\nHost: svc\r\n\r\n"),
		"PROXY v1":                    []byte("PROXY TCP4 127.0.10.5 127.0.100.1 43210 80\r\nGET / HTTP/1.1\r\nHost: svc\r\n\r\n"),
		"malformed TLV":               append(badTLV, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"...),
		"LOCAL command":               append(local, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"...),
		"truncated v2 header":         valid[:20],
	}
	for name, pre := range cases {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, pre)
			if name == "truncated v2 header" {
				// The header never completes: closed at the header timeout.
				_ = c.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, c)
		})
	}
	t.Run("destination not served", func(t *testing.T) {
		c := w.dial("127.0.100.99:80", curlID)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		expectClosed(t, c)
	})
	t.Run("served VIP, port not served", func(t *testing.T) {
		c := w.dial("127.0.100.1:81", curlID)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		expectClosed(t, c)
	})
	if b.Hits() != 0 {
		t.Errorf("the backend got %d requests from refused connections", b.Hits())
	}
}

func TestServiceFoundByHostnameTLV(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	c, err := meshclient.Dial(context.Background(), w.addr, meshclient.Conn{
		Source: clientAddr, Destination: netip.MustParseAddrPort("127.0.55.55:80"), Identity: curlID,
		Hostname: "svc.ns.svc.cluster.local",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	resp, _ := roundTrip(t, c, bufio.NewReader(c), get("/"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return meshclient.Dial(ctx, w.addr, meshclient.Conn{Source: clientAddr, Destination: netip.MustParseAddrPort(vip), Identity: curlID})
		},
		TLSClientConfig: &tls.Config{},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := client.Get("http://svc:80/h2?n=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("proto %s status %d", resp.Proto, resp.StatusCode)
		}
		if e := decodeEcho(t, string(body)); e.Path != "/h2" {
			t.Errorf("backend saw %q", e.Path)
		}
		if resp.Header.Get("Server") != "envoy" {
			t.Errorf("server %q", resp.Header.Get("Server"))
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("no endpoints: 503 no healthy upstream", func(t *testing.T) {
		w := startWaypoint(t, svcManifests())
		resp, body := w.do(vip, curlID, get("/"))
		if resp.StatusCode != 503 || body != "no healthy upstream" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Server") != "envoy" {
			t.Errorf("server %q", resp.Header.Get("Server"))
		}
	})
	t.Run("endpoint refuses: 503", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.1.3:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().(*net.TCPAddr).AddrPort()
		_ = ln.Close()
		w := startWaypoint(t, svcManifests(dead))
		resp, body := w.do(vip, curlID, get("/"))
		if resp.StatusCode != 503 || !strings.HasPrefix(body, "upstream connect error") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
}

func TestPostBodyAndChunkedUpload(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	resp, body := w.do(vip, curlID, newReq("POST", "/post", "hello body"))
	if resp.StatusCode != 200 || decodeEcho(t, body).Body != "hello body" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "POST /post HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	if e := decodeEcho(t, string(got)); e.Body != "hello world" {
		t.Errorf("backend got %q", e.Body)
	}
}

func TestBadHTTPRequests(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	cases := []struct {
		name, raw string
		status    int
	}{
		{"garbage request line", "HELLO\r\n\r\n", 400},
		{"unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"two different Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: svc\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: svc\r\n" + strings.Repeat("X-A: 1\r\n", 101) + "\r\n", 431},
		{"Content-Length and Transfer-Encoding (smuggling)", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: 1\r\n  folded\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: svc\r\nX-A : 1\r\n\r\n", 400},
		{"bare CR in a header", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: 1\r2\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: svc\r\nHost: other\r\n\r\n", 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: -1\r\n\r\n", 400},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: svc\r\n\r\n", 505},
		{"CONNECT", "CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n", 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := w.dial(vip, curlID)
			_, _ = io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !resp.Close {
				t.Error("the connection should close after a bad request")
			}
		})
	}
	if b.Hits() != 0 {
		t.Errorf("bad requests reached the backend %d times", b.Hits())
	}
}

func TestConfigUpdateKeepsConnections(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackend(t, "b", "127.0.1.2", false)
	w := startWaypoint(t, svcManifests(a.addr))
	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	if _, body := roundTrip(t, c, br, get("/")); decodeEcho(t, body).Backend != "a" {
		t.Fatal("first request did not reach a")
	}
	w.apply(svcManifests(b.addr))
	resp, body := roundTrip(t, c, br, get("/"))
	if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "b" {
		t.Fatalf("after the update, on the same connection: status %d body %q", resp.StatusCode, body)
	}
	// The service leaves the config: the open connection gets a 503 and closes.
	w.apply(waypointManifests)
	resp, _ = roundTrip(t, c, br, get("/"))
	if resp.StatusCode != 503 || !resp.Close {
		t.Errorf("service removed: status %d close %v, want 503 and close", resp.StatusCode, resp.Close)
	}
}

func TestExpectContinue(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("want 100 Continue before the body, got %q (%v)", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue not terminated: %q", blank)
	}
	_, _ = io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if e := decodeEcho(t, string(body)); e.Body != "hello" {
		t.Fatalf("status %d body %q", resp.StatusCode, e.Body)
	}
}

func TestPipelinedAndChunkedTrailers(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	c := w.dial(vip, curlID)
	// Two requests in one write: a chunked POST with a trailer, then a GET.
	_, _ = io.WriteString(c, "POST /one HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"+
		"GET /two HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []struct{ path, body string }{{"/one", "abc"}, {"/two", ""}} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		e := decodeEcho(t, string(body))
		if resp.StatusCode != 200 || e.Path != want.path || e.Body != want.body {
			t.Fatalf("got %d %s %q, want %s %q", resp.StatusCode, e.Path, e.Body, want.path, want.body)
		}
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	p := proxy.New(proxy.Options{})
	snap, err := files.LoadBytes("m.yaml", []byte(svcManifests(b.addr)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(res.Waypoint); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := inbound.NewServer(p, inbound.Options{HTTP: inbound.HTTPOptions{MaxRequestsPerConnection: 2}})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	w := &waypoint{t: t, proxy: p, addr: ln.Addr().String()}
	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if resp, _ := roundTrip(t, c, br, get("/")); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Fatal("a third request on the connection was served; the limit is 2")
	}
}
