package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// waypoint is a proxy serving on a loopback PROXY listener.
type waypoint struct {
	t     testing.TB
	proxy *proxy.Proxy
	srv   *inbound.Server
	addr  string
}

// startWaypoint translates the manifests and serves them.
func startWaypoint(t testing.TB, manifests string) *waypoint {
	t.Helper()
	p := proxy.New(proxy.Options{})
	w := &waypoint{t: t, proxy: p}
	w.apply(manifests)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	w.srv = inbound.NewServer(p, inbound.Options{HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 2 * time.Second}})
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = ln.Close()
		_ = w.srv.Close()
		p.Close()
	})
	return w
}

// apply translates manifests and puts them in force.
func (w *waypoint) apply(manifests string) {
	w.t.Helper()
	snap, err := files.LoadBytes("test.yaml", []byte(manifests))
	if err != nil {
		w.t.Fatalf("manifests: %v", err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		w.t.Fatalf("translate: %v", err)
	}
	if err := w.proxy.Update(res.Waypoint); err != nil {
		w.t.Fatalf("update: %v", err)
	}
}

// client identities and addresses used by the tests.
const (
	curlID    = "spiffe://cluster.local/ns/httpbin/sa/curl"
	notCurlID = "spiffe://cluster.local/ns/httpbin/sa/notcurl"
)

var clientAddr = netip.MustParseAddrPort("127.0.10.5:43210")

// dial opens a connection to dst as the client with that identity.
func (w *waypoint) dial(dst string, identity string) net.Conn {
	w.t.Helper()
	c, err := meshclient.Dial(context.Background(), w.addr, meshclient.Conn{
		Source: clientAddr, Destination: netip.MustParseAddrPort(dst), Identity: identity,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	w.t.Cleanup(func() { _ = c.Close() })
	return c
}

// do sends one HTTP/1.1 request on a new connection and returns the response
// with its body read.
func (w *waypoint) do(dst, identity string, req *http.Request) (*http.Response, string) {
	w.t.Helper()
	c := w.dial(dst, identity)
	defer func() { _ = c.Close() }()
	return roundTrip(w.t, c, bufio.NewReader(c), req)
}

func roundTrip(t testing.TB, c net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, string) {
	t.Helper()
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading response to %s %s: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp, string(body)
}

func get(path string, hdr ...string) *http.Request {
	return newReq("GET", path, "", hdr...)
}

func newReq(method, path, body string, hdr ...string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://svc:80"+path, r)
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

// expectClosed asserts the waypoint closes the connection without answering.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err == nil || n > 0 {
		t.Fatalf("want the connection closed without a reply, read %q (err %v)", buf[:n], err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("want the connection closed, but it stayed open")
	}
}

// backend is an HTTP server on a loopback "pod IP" that echoes what it got.
type backend struct {
	name  string
	addr  netip.AddrPort
	srv   *http.Server
	mu    sync.Mutex
	hits  int
	conns int
	last  *http.Request
}

// echo is what a backend answers.
type echo struct {
	Backend string              `json:"backend"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
	Proto   string              `json:"proto"`
}

func startBackend(t *testing.T, name, ip string, h2c bool) *backend {
	t.Helper()
	return startBackendOn(t, name, ip+":0", h2c)
}

// startBackendOn starts a backend listening on addr (ip:port).
func startBackendOn(t *testing.T, name, addr string, h2c bool) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.hits++
		b.last = r
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		w.Header().Set("Server", "backend-server")
		if s := r.URL.Query().Get("status"); s != "" {
			var code int
			_, _ = fmt.Sscanf(s, "%d", &code)
			w.WriteHeader(code)
		}
		_ = json.NewEncoder(w).Encode(echo{Backend: name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Host: r.Host, Headers: r.Header, Body: string(body), Proto: r.Proto})
	}), ReadHeaderTimeout: 5 * time.Second}
	b.srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.mu.Lock()
			b.conns++
			b.mu.Unlock()
		}
	}
	if h2c {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		b.srv.Protocols = &p
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// Conns is the number of connections the backend accepted.
func (b *backend) Conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

func (b *backend) Hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

func decodeEcho(t *testing.T, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("backend reply is not the echo JSON: %v: %q", err, body)
	}
	return e
}

// svcManifests is a namespace enrolled in the waypoint "wp" with one HTTP
// service "svc" (VIP 127.0.100.1, port 80) whose endpoints are eps.
func svcManifests(eps ...netip.AddrPort) string {
	return waypointManifests + serviceManifest("svc", "127.0.100.1", 80, "http", "", eps...)
}

const waypointManifests = `
apiVersion: v1
kind: Namespace
metadata:
  name: ns
  labels:
    istio.io/use-waypoint: wp
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: ns}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
`

// serviceManifest is a Service and its EndpointSlice. Endpoints must share a
// port (the target port).
func serviceManifest(name, vip string, port int, portName, appProtocol string, eps ...netip.AddrPort) string {
	ap := ""
	if appProtocol != "" {
		ap = "\n    appProtocol: " + appProtocol
	}
	s := fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: ns}
spec:
  clusterIP: %s
  ports:
  - name: %s
    port: %d%s
`, name, vip, portName, port, ap)
	if len(eps) == 0 {
		return s
	}
	var addrs []string
	for _, e := range eps {
		addrs = append(addrs, fmt.Sprintf("%q", e.Addr().String()))
	}
	return s + fmt.Sprintf(`---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-1
  namespace: ns
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [{name: %s, port: %d}]
endpoints:
- addresses: [%s]
`, name, name, portName, eps[0].Port(), strings.Join(addrs, ", "))
}
