package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

func TestRedirects(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(a.addr)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /status}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-port}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}]
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 308, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
`)
	cases := []struct {
		path, host string
		status     int
		location   string
	}{
		{"/host", "svc", 302, "http://example.org/host"},
		{"/status", "svc", 301, "http://example.org/status"},
		{"/scheme?x=1", "svc", 302, "https://svc/scheme?x=1"},
		{"/scheme-port", "svc", 302, "https://svc:8443/scheme-port"},
		{"/port", "svc", 302, "http://svc:8083/port"},
		{"/port", "svc:80", 302, "http://svc:8083/port"},
		{"/host", "svc:8080", 302, "http://example.org:8080/host"},
		{"/full/x", "svc", 302, "http://svc/replaced"},
		{"/prefix/one/two", "svc", 308, "http://svc/one/two"},
		{"/strip/three", "svc", 302, "http://svc/three"},
		{"/strip", "svc", 302, "http://svc/"},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+tc.host, func(t *testing.T) {
			req := get(tc.path)
			req.Host = tc.host
			resp, _ := w.do(vip, curlID, req)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
			}
		})
	}
	if a.Hits() != 0 {
		t.Errorf("redirects reached the backend %d times", a.Hits())
	}
}

func TestURLRewrite(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(a.addr)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: mydomain.example, path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: svc, port: 80}]
`)
	cases := []struct{ path, wantPath, wantHost string }{
		{"/prefix/one/two", "/one/two", "svc:80"},
		{"/full/rewrite-path-and-modify-host", "/one", "mydomain.example"},
		{"/strip-prefix/three", "/three", "svc:80"},
		{"/strip-prefix", "/", "svc:80"},
	}
	for _, tc := range cases {
		_, body := w.do(vip, curlID, get(tc.path+"?q=1"))
		e := decodeEcho(t, body)
		if e.Path != tc.wantPath || e.Host != tc.wantHost || e.Query != "q=1" {
			t.Errorf("%s: backend saw path %q host %q query %q, want %q %q", tc.path, e.Path, e.Host, e.Query, tc.wantPath, tc.wantHost)
		}
	}
}

func TestRequestMirror(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	m := startBackend(t, "mirror", "127.0.1.2", false)
	w := startWaypoint(t, routedManifests(a.addr, m.addr, `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: svc2, port: 80}}
    backendRefs: [{name: svc, port: 80}]
`))
	resp, body := w.do(vip, curlID, newReq("POST", "/mirrored", "payload"))
	if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "a" {
		t.Fatalf("the client must get the primary's answer: %d %q", resp.StatusCode, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Hits() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m.Hits() != 1 || a.Hits() != 1 {
		t.Fatalf("mirror hits %d, primary hits %d; want 1 and 1", m.Hits(), a.Hits())
	}
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	if last.Host != "svc-shadow:80" || last.URL.Path != "/mirrored" {
		t.Errorf("mirror saw host %q path %q", last.Host, last.URL.Path)
	}
}

func TestCORS(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(a.addr)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://app.example", "https://*.other.example"]
        allowMethods: [GET, POST]
        allowHeaders: [x-custom]
        exposeHeaders: [x-exposed]
        maxAge: 600
        allowCredentials: true
    backendRefs: [{name: svc, port: 80}]
`)
	pre := newReq("OPTIONS", "/cors", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	resp, _ := w.do(vip, curlID, pre)
	want := map[string]string{
		"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Methods": "GET, POST",
		"Access-Control-Allow-Headers": "x-custom", "Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 200 || a.Hits() != 0 {
		t.Errorf("preflight: status %d, backend hits %d (want 200 from the waypoint itself)", resp.StatusCode, a.Hits())
	}
	resp, _ = w.do(vip, curlID, get("/cors", "Origin", "https://x.other.example"))
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://x.other.example" || resp.Header.Get("Access-Control-Expose-Headers") != "x-exposed" {
		t.Errorf("actual request: CORS headers %v", resp.Header)
	}
	resp, _ = w.do(vip, curlID, get("/cors", "Origin", "https://evil.example"))
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("a disallowed origin got Access-Control-Allow-Origin")
	}
}

func TestBackendRefFilters(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackend(t, "b", "127.0.1.2", false)
	w := startWaypoint(t, routedManifests(a.addr, b.addr, `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - backendRefs:
    - name: svc
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-to, value: a}]}
    - name: svc2
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-to, value: b}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-from, value: b}]}
`))
	for i := 0; i < 20; i++ {
		resp, body := w.do(vip, curlID, get("/"))
		e := decodeEcho(t, body)
		if got := e.Headers["X-To"]; len(got) != 1 || got[0] != e.Backend {
			t.Fatalf("backend %s got x-to %q", e.Backend, got)
		}
		if (resp.Header.Get("X-From") == "b") != (e.Backend == "b") {
			t.Fatalf("x-from %q on a response from %s", resp.Header.Get("X-From"), e.Backend)
		}
	}
}

func TestTimeoutsAndRetries(t *testing.T) {
	// A backend that is slow on /slow and fails on /flaky until the third try.
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var flaky int
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		case "/flaky":
			<-mu
			flaky++
			n := flaky
			mu <- struct{}{}
			if n < 3 {
				w.WriteHeader(503)
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	ep := ln.Addr().(*net.TCPAddr).AddrPort()
	w := startWaypoint(t, svcManifests(ep)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - matches: [{path: {type: Exact, value: /slow}}]
    timeouts: {request: 200ms}
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: Exact, value: /flaky}}]
    retry: {attempts: 2, codes: [503], backoff: 10ms}
    backendRefs: [{name: svc, port: 80}]
`)
	start := time.Now()
	resp, body := w.do(vip, curlID, get("/slow"))
	if resp.StatusCode != 504 || body != "upstream request timeout" {
		t.Fatalf("slow: %d %q, want 504", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the 200ms timeout fired after %v", d)
	}
	resp, body = w.do(vip, curlID, get("/flaky"))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("flaky with 2 retries: %d %q, want 200 on the third try", resp.StatusCode, body)
	}
}

func TestConnectFailureRetriedOnAnotherEndpoint(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	// A dead endpoint on another pod IP at the same port.
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.1.9"), a.addr.Port())
	w := startWaypoint(t, svcManifests(a.addr, dead))
	for i := 0; i < 10; i++ {
		resp, body := w.do(vip, curlID, newReq("POST", "/", "body"))
		if resp.StatusCode != 200 || decodeEcho(t, body).Body != "body" {
			t.Fatalf("request %d: %d %q: a refused connection must be retried on the live endpoint", i, resp.StatusCode, body)
		}
	}
}

func TestConsumerRoutes(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(a.addr)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: clients}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, namespace: ns}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-header-set, value: set}]}
    backendRefs: [{name: svc, namespace: ns, port: 80}]
`)
	resp, _ := w.do(vip, "spiffe://cluster.local/ns/clients/sa/default", get("/"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Header-Set") != "set" {
		t.Errorf("client of the consumer namespace: %d, x-header-set %q", resp.StatusCode, resp.Header.Get("X-Header-Set"))
	}
	resp, _ = w.do(vip, curlID, get("/"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Header-Set") != "" {
		t.Errorf("client of another namespace: %d, x-header-set %q (must be absent)", resp.StatusCode, resp.Header.Get("X-Header-Set"))
	}
}

// grpcClient sends gRPC-shaped HTTP/2 requests (h2c) through the waypoint.
func grpcClient(t *testing.T, w *waypoint, dst, identity string) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return meshclient.Dial(ctx, w.addr, meshclient.Conn{Source: clientAddr, Destination: netip.MustParseAddrPort(dst), Identity: identity})
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func grpcCall(t *testing.T, c *http.Client, method string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://rpc:9000"+method, strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

func TestGRPCRoute(t *testing.T) {
	// An h2c backend that answers like a gRPC server: status in a trailer.
	ln, err := net.Listen("tcp", "127.0.1.3:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("X-Method", r.URL.Path)
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Got-Tenant", r.Header.Get("X-Tenant"))
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x00"))
		w.Header().Set("Grpc-Status", "0")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	ep := ln.Addr().(*net.TCPAddr).AddrPort()
	w := startWaypoint(t, waypointManifests+serviceManifest("rpc", "127.0.100.9", 9000, "grpc", "grpc", ep)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: rpc}]
  rules:
  - matches: [{method: {service: echo.Echo, method: Ping}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-tenant, value: a}]}
    backendRefs: [{name: rpc, port: 9000}]
`+policy("deny-admin", `{group: "", kind: Service, name: rpc}`, "DENY", `  rules: [{to: [{operation: {paths: ["/echo.Admin/*"]}}]}]`))
	c := grpcClient(t, w, "127.0.100.9:9000", curlID)

	resp, _ := grpcCall(t, c, "/echo.Echo/Ping")
	if resp.StatusCode != 200 || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("Ping: %d grpc-status %q", resp.StatusCode, resp.Trailer.Get("Grpc-Status"))
	}
	if resp.Header.Get("X-Proto") != "HTTP/2.0" || resp.Header.Get("X-Got-Tenant") != "a" || resp.Header.Get("X-Method") != "/echo.Echo/Ping" {
		t.Errorf("backend saw proto %q tenant %q method %q (want h2c upstream, the filter, the method)",
			resp.Header.Get("X-Proto"), resp.Header.Get("X-Got-Tenant"), resp.Header.Get("X-Method"))
	}
	resp, _ = grpcCall(t, c, "/echo.Echo/Other")
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "12" {
		t.Errorf("no route: %d grpc-status %q, want UNIMPLEMENTED (12)", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
	resp, _ = grpcCall(t, c, "/echo.Admin/Drop")
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "7" {
		t.Errorf("denied: %d grpc-status %q, want PERMISSION_DENIED (7)", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
}

func TestTCPRouteWeights(t *testing.T) {
	echoServer := func(name, ip string) netip.AddrPort {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = c.Close() }()
					_, _ = io.WriteString(c, name)
				}()
			}
		}()
		return ln.Addr().(*net.TCPAddr).AddrPort()
	}
	primary := echoServer("primary", "127.0.1.1")
	replica := echoServer("replica", "127.0.1.2")
	w := startWaypoint(t, waypointManifests+
		serviceManifest("db", "127.0.100.3", 5432, "tcp-pg", "", primary)+
		serviceManifest("replica", "127.0.100.4", 5432, "tcp-pg", "", replica)+`
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: db, port: 5432}]
  rules:
  - backendRefs: [{name: db, port: 5432, weight: 0}, {name: replica, port: 5432, weight: 1}]
`)
	for i := 0; i < 5; i++ {
		c := w.dial("127.0.100.3:5432", curlID)
		got, _ := io.ReadAll(bufio.NewReader(c))
		if string(got) != "replica" {
			t.Fatalf("connection %d reached %q, want the TCPRoute's replica", i, got)
		}
	}
}
