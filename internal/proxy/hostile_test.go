package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
)

// Tests of what an attacker sends, as a client or as a backend: each class
// of the security review, over real sockets.

// rawExchange writes raw bytes on a new connection to the service and
// reads one response.
func (w *waypoint) rawExchange(raw string) (*http.Response, string, net.Conn, *bufio.Reader) {
	w.t.Helper()
	c := w.dial(vip, curlID)
	if _, err := io.WriteString(c, raw); err != nil {
		w.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		w.t.Fatalf("no response to %q: %v", truncate(raw), err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), c, br
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// expectEOF asserts the waypoint closes the connection after its answer.
func expectEOF(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("connection still open after the refusal (err %v)", err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after the refusal")
	}
}

// Class 1a: the trailer section of a chunked request is bounded like a
// head (431), also on a request a policy denies, whose body the waypoint
// drains.
func TestChunkedTrailersBounded(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	huge := "x-t: " + strings.Repeat("a", 200<<10) + "\r\n"
	resp, body, c, br := w.rawExchange("POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + huge + "\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Server") != "envoy" {
		t.Fatalf("huge trailer: %d %q, want 431 from the waypoint", resp.StatusCode, body)
	}
	expectEOF(t, c, br)

	many := strings.Repeat("x-t: 1\r\n", 150)
	resp, _, c, br = w.rawExchange("POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + many + "\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("150 trailer fields: %d, want 431", resp.StatusCode)
	}
	expectEOF(t, c, br)

	// Trailers within the bounds pass, and the connection goes on.
	resp, body, c, br = w.rawExchange("POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n")
	if resp.StatusCode != 200 || decodeEcho(t, body).Body != "abc" {
		t.Fatalf("small trailer: %d %q", resp.StatusCode, body)
	}
	if _, err := io.WriteString(c, "GET /again HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("keep-alive after trailers: %v %v", resp, err)
	}
}

func TestDeniedRequestTrailersBounded(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr)+denyAll)
	c := w.dial(vip, curlID)
	head := "POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("denied: %v %v", resp, err)
	}
	_, _ = io.ReadAll(resp.Body)
	// The waypoint drains what is left of the body: an endless trailer
	// line must end with the connection, not with memory.
	chunk := strings.Repeat("a", 64<<10)
	_, _ = io.WriteString(c, "x-t: ")
	wrote := 0
	for wrote < 8<<20 {
		if _, err := io.WriteString(c, chunk); err != nil {
			break // closed by the waypoint: what we want
		}
		wrote += len(chunk)
	}
	if wrote >= 8<<20 {
		t.Fatalf("the waypoint read %d bytes of one trailer line", wrote)
	}
	expectEOF(t, c, br)
	if b.Hits() != 0 {
		t.Fatal("a denied request reached the backend")
	}
}

const denyAll = `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: ns}
spec:
  targetRefs: [{kind: Service, group: "", name: svc}]
  action: DENY
  rules: [{}]
`

// rawBackend is a TCP "backend" that answers every connection with reply
// (after reading the request head).
func rawBackend(t *testing.T, ip string, reply func(c net.Conn)) netip.AddrPort {
	t.Helper()
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
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				reply(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// Class 1b and 8: what a backend sends is bounded and must be well-formed;
// anything else is 502 with Envoy's upstream protocol error.
func TestUpstreamResponseHeadBoundedAndStrict(t *testing.T) {
	cases := map[string]func(c net.Conn){
		"endless header lines": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := []byte("x-filler: " + strings.Repeat("f", 1000) + "\r\n")
			for i := 0; i < 20000; i++ { // 20 MB unless the waypoint stops reading
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		},
		"too many header fields": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n"+strings.Repeat("x-a: 1\r\n", 150)+"content-length: 0\r\n\r\n")
		},
		"endless 100 Continue": func(c net.Conn) {
			for i := 0; i < 10000; i++ {
				if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					return
				}
			}
		},
		"duplicate content-length": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd")
		},
		"unsolicited 101": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw bytes")
		},
		"garbage status line": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 abc\r\n\r\n")
		},
	}
	i := 0
	for name, reply := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			ep := rawBackend(t, fmt.Sprintf("127.0.2.%d", i), reply)
			w := startWaypoint(t, svcManifests(ep))
			resp, body := w.do(vip, curlID, get("/x"))
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "protocol error") {
				t.Fatalf("%d %q (%v), want 502 upstream protocol error", resp.StatusCode, body, resp.Header)
			}
			if te := resp.Header.Get("Transfer-Encoding"); te != "" {
				t.Fatalf("transfer-encoding %q on the 502", te)
			}
		})
	}
}

// Class 2: methods are case-sensitive; unregistered ones (like "delete",
// which some frameworks fold to DELETE past a DENY on DELETE) get 400,
// over HTTP/1 and h2c, unless custom methods are allowed.
func TestUnregisteredMethodsRefused(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	deny := `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: ns}
spec:
  targetRefs: [{kind: Service, group: "", name: svc}]
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]
`
	w := startWaypoint(t, svcManifests(b.addr)+deny)
	for _, m := range []string{"delete", "Delete", "DELET", "FOO"} {
		resp, _, c, br := w.rawExchange(m + " /item/1 HTTP/1.1\r\nHost: svc\r\n\r\n")
		if resp.StatusCode != 400 {
			t.Errorf("HTTP/1 %s: %d, want 400", m, resp.StatusCode)
		}
		expectEOF(t, c, br)
	}
	resp, _, _, _ := w.rawExchange("DELETE /item/1 HTTP/1.1\r\nHost: svc\r\n\r\n")
	if resp.StatusCode != 403 {
		t.Errorf("DELETE: %d, want 403 from the policy", resp.StatusCode)
	}
	client := h2cClient(t, w.addr)
	for _, m := range []string{"delete", "FOO"} {
		req, _ := http.NewRequest(m, "http://svc:80/item/1", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("h2c %s: %d, want 400", m, resp.StatusCode)
		}
	}
	if b.Hits() != 0 {
		t.Fatalf("the backend got %d requests", b.Hits())
	}

	// Allowed on request: forwarded as sent.
	w2, _ := startLimited(t, svcManifests(b.addr), inbound.Options{HTTP: inbound.HTTPOptions{AllowCustomMethods: true}})
	resp, body, _, _ := w2.rawExchange("FOO /x HTTP/1.1\r\nHost: svc\r\n\r\n")
	if resp.StatusCode != 200 || decodeEcho(t, body).Method != "FOO" {
		t.Fatalf("custom method allowed: %d %q", resp.StatusCode, body)
	}
}

// h2cClient is an HTTP/2 prior-knowledge client through the waypoint as
// the curl identity.
func h2cClient(t *testing.T, addr string) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return meshclient.Dial(ctx, addr, meshclient.Conn{Source: clientAddr, Destination: netip.MustParseAddrPort(vip), Identity: curlID})
		},
		TLSClientConfig: &tls.Config{},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Class 4: request targets are parsed by their form (RFC 9112 3.2): an
// origin-form target is a path and a query whatever the query holds.
func TestRequestTargetForms(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	cases := []struct{ target, path, query string }{
		{"/login?redirect=https://app/x", "/login", "redirect=https://app/x"},
		{"/a://b/c", "/a://b/c", ""},
		{"//double/slash?x=1", "//double/slash", "x=1"},
		{"http://svc/abs/path?q=1", "/abs/path", "q=1"},
		{"http://svc?q=2", "/", "q=2"},
	}
	for _, tc := range cases {
		resp, body, _, _ := w.rawExchange("GET " + tc.target + " HTTP/1.1\r\nHost: svc\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %q", tc.target, resp.StatusCode, body)
			continue
		}
		e := decodeEcho(t, body)
		if e.Path != tc.path || e.Query != tc.query {
			t.Errorf("%s: backend got path %q query %q, want %q %q", tc.target, e.Path, e.Query, tc.path, tc.query)
		}
	}
	for _, bad := range []string{"svc:80", "ftp://svc/x", "http://user@svc/x", "/a#frag", "mailto:x"} {
		resp, _, _, _ := w.rawExchange("GET " + bad + " HTTP/1.1\r\nHost: svc\r\n\r\n")
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// Class 5: what the client names in Connection goes when the request
// arrives, before any filter: it cannot remove what a filter sets.
func TestConnectionNamedHeadersStrippedBeforeFilters(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackend(t, "b", "127.0.1.2", false)
	w := startWaypoint(t, routedManifests(a.addr, b.addr, `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, port: 80}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-route-set, value: from-route}]
`))
	resp, body := w.do(vip, curlID, get("/", "Connection", "x-route-set, x-client", "X-Client", "c", "X-Route-Set", "spoofed"))
	e := decodeEcho(t, body)
	if resp.StatusCode != 200 || strings.Join(e.Headers["X-Route-Set"], ",") != "from-route" {
		t.Fatalf("x-route-set at the backend: %q (status %d), want the route's value", e.Headers["X-Route-Set"], resp.StatusCode)
	}
	if _, ok := e.Headers["X-Client"]; ok {
		t.Fatal("a header the client named in Connection was forwarded")
	}
}

// Class 6: CONNECT is refused over h2c as over HTTP/1.
func TestConnectRefusedOverH2C(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	client := h2cClient(t, w.addr)
	req, _ := http.NewRequest(http.MethodConnect, "http://svc:80/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("h2c CONNECT: %d, want 405", resp.StatusCode)
	}
	r1, _, _, _ := w.rawExchange("CONNECT svc:80 HTTP/1.1\r\nHost: svc:80\r\n\r\n")
	if r1.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HTTP/1 CONNECT: %d, want 405", r1.StatusCode)
	}
	if b.Hits() != 0 {
		t.Fatal("CONNECT reached the backend")
	}
}

// hangingBackend answers nothing until its request ends; it records that
// the waypoint cancelled the upstream exchange.
type hangingBackend struct {
	addr      netip.AddrPort
	cancelled chan struct{}
	arrived   chan struct{}
}

func startHangingBackend(t *testing.T, ip string) *hangingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	hb := &hangingBackend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), cancelled: make(chan struct{}, 16), arrived: make(chan struct{}, 16)}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body first: net/http notices a closed connection only
		// once the body is consumed.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 3))
		hb.arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			hb.cancelled <- struct{}{}
		case <-time.After(20 * time.Second):
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return hb
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Class 7: a stream with nothing moving ends after the stream idle
// timeout (408), and a client that leaves cancels the upstream exchange
// at once, over HTTP/1 as over h2c.
func TestStreamIdleTimeout(t *testing.T) {
	hb := startHangingBackend(t, "127.0.1.1")
	w, _ := startWith(t, svcManifests(hb.addr), proxy.Options{StreamIdleTimeout: 300 * time.Millisecond}, inbound.Options{})
	resp, body := w.do(vip, curlID, get("/hang"))
	if resp.StatusCode != http.StatusRequestTimeout || body != "stream timeout" {
		t.Fatalf("%d %q, want 408 stream timeout", resp.StatusCode, body)
	}
	waitFor(t, hb.cancelled, "the upstream exchange to be cancelled")

	// A request body that stalls midway: the same timeout.
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "POST /stall HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\nonly part")
	br := bufio.NewReader(c)
	r2, err := http.ReadResponse(br, nil)
	if err != nil || r2.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %v %v, want 408", r2, err)
	}
}

func TestClientLeavingCancelsUpstream(t *testing.T) {
	hb := startHangingBackend(t, "127.0.1.1")
	w := startWaypoint(t, svcManifests(hb.addr))
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: svc\r\n\r\n")
	waitFor(t, hb.arrived, "the request at the backend")
	_ = c.Close()
	waitFor(t, hb.cancelled, "HTTP/1: the upstream exchange to be cancelled when the client left")

	// With a body: the watch starts once the body is over.
	c = w.dial(vip, curlID)
	_, _ = io.WriteString(c, "POST /hang HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc")
	waitFor(t, hb.arrived, "the POST at the backend")
	_ = c.Close()
	waitFor(t, hb.cancelled, "HTTP/1 POST: the upstream exchange to be cancelled")

	ctx, cancel := context.WithCancel(context.Background())
	client := h2cClient(t, w.addr)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc:80/hang", nil)
	go func() {
		<-hb.arrived
		cancel() // RST_STREAM
	}()
	if _, err := client.Do(req); err == nil {
		t.Fatal("the cancelled h2 request succeeded")
	}
	waitFor(t, hb.cancelled, "h2c: the upstream exchange to be cancelled on RST_STREAM")
}

// Pipelined requests still work with the watch: the byte it reads is the
// next request's.
func TestPipelinedRequestsWithConnectionWatch(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	for i := 0; i < 20; i++ {
		_, _ = fmt.Fprintf(c, "GET /n%d HTTP/1.1\r\nHost: svc\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if e := decodeEcho(t, string(body)); e.Path != fmt.Sprintf("/n%d", i) {
			t.Fatalf("request %d answered for %q", i, e.Path)
		}
	}
	_, _ = io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: svc\r\n\r\nGET /p2 HTTP/1.1\r\nHost: svc\r\n\r\n")
	for _, want := range []string{"/p1", "/p2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if e := decodeEcho(t, string(body)); e.Path != want {
			t.Fatalf("pipelined: got %q, want %q", e.Path, want)
		}
	}
}

// Class 8: what the HTTP/1 reader refuses, each with 400 and a close.
func TestMalformedRequestsRefused(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	cases := map[string]string{
		"host with a space":           "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"host with a path":            "GET / HTTP/1.1\r\nHost: svc/x\r\n\r\n",
		"host with userinfo":          "GET / HTTP/1.1\r\nHost: u@svc\r\n\r\n",
		"host port not a number":      "GET / HTTP/1.1\r\nHost: svc:8o\r\n\r\n",
		"unclosed IPv6 literal":       "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
		"empty host":                  "GET / HTTP/1.1\r\nHost:\r\n\r\n",
		"control char in value":       "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\x01b\r\n\r\n",
		"DEL in value":                "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\x7fb\r\n\r\n",
		"vertical tab te":             "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: \vchunked\r\n\r\n0\r\n\r\n",
		"malformed chunk size":        "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
		"chunk without its CRLF":      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
		"bad percent-encoding":        "GET /a%zz HTTP/1.1\r\nHost: svc\r\n\r\n",
		"asterisk for GET":            "GET * HTTP/1.1\r\nHost: svc\r\n\r\n",
		"raw non-ASCII in the target": "GET /\xff HTTP/1.1\r\nHost: svc\r\n\r\n",
	}
	for name, raw := range cases {
		resp, body, c, br := w.rawExchange(raw)
		if resp.StatusCode != 400 && resp.StatusCode != 501 {
			t.Errorf("%s: %d %q, want 400", name, resp.StatusCode, body)
			continue
		}
		expectEOF(t, c, br)
	}
	// The malformed bodies may have reached the backend as a request
	// (the head was fine); none may have been answered by it.
}

// Class 8: OPTIONS * goes upstream as "*", HTTP/1.0 keep-alive is kept.
func TestAsteriskAndHTTP10KeepAlive(t *testing.T) {
	var got atomic.Value
	ep := rawBackendFunc(t, "127.0.1.1", func(line string) string {
		got.Store(line)
		return "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
	})
	w := startWaypoint(t, svcManifests(ep))
	resp, _, _, _ := w.rawExchange("OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n")
	if resp.StatusCode != 200 || got.Load() != "OPTIONS * HTTP/1.1" {
		t.Fatalf("OPTIONS *: %d, backend saw %q", resp.StatusCode, got.Load())
	}
	resp, _, c, br := w.rawExchange("GET /a HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n\r\n")
	if resp.StatusCode != 200 || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive: %d, connection %q", resp.StatusCode, resp.Header.Get("Connection"))
	}
	_, _ = io.WriteString(c, "GET /b HTTP/1.0\r\nHost: svc\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second HTTP/1.0 request on the kept connection: %v %v", resp, err)
	}
	_, _ = io.ReadAll(resp.Body)
	expectEOF(t, c, br) // no keep-alive asked the second time: closed
}

// rawBackendFunc answers each request with reply(request line), keep-alive.
func rawBackendFunc(t *testing.T, ip string, reply func(requestLine string) string) netip.AddrPort {
	t.Helper()
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
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					line := req.Method + " " + req.RequestURI + " " + req.Proto
					if _, err := io.WriteString(c, reply(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// Class 8: WebSocket upgrades pass through (Istio allows them by default):
// the 101 reaches the client and bytes flow both ways, half-closes too.
func TestWebSocketUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sawUpgrade atomic.Value
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawUpgrade.Store(r.Header.Get("Upgrade") + "|" + r.Header.Get("Connection"))
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		_ = brw.Flush()
		// Echo in upper case until the client half-closes, then say bye.
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				_, _ = c.Write([]byte(strings.ToUpper(string(buf[:n]))))
			}
			if err != nil {
				_, _ = c.Write([]byte("BYE"))
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	w := startWaypoint(t, svcManifests(ln.Addr().(*net.TCPAddr).AddrPort()))
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") ||
		resp.Header.Get("Transfer-Encoding") != "" || resp.Header.Get("Sec-Websocket-Accept") != "x" {
		t.Fatalf("upgrade response: %d %v", resp.StatusCode, resp.Header)
	}
	if got := sawUpgrade.Load(); got != "websocket|Upgrade" {
		t.Fatalf("backend saw upgrade headers %q", got)
	}
	_, _ = io.WriteString(c, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "HELLO" {
		t.Fatalf("echo through the tunnel: %q %v", buf, err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "BYE" {
		t.Fatalf("after the half-close: %q %v", rest, err)
	}
}

// Class 9: mirrors in flight are bounded and Close ends them; retries are
// capped whatever a route asks.
func TestMirrorsBoundedAndClosed(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	mln, err := net.Listen("tcp", "127.0.1.2:0")
	if err != nil {
		t.Fatal(err)
	}
	msrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inFlight.Add(-1)
	})}
	go func() { _ = msrv.Serve(mln) }()
	t.Cleanup(func() { _ = msrv.Close() })
	manifests := routedManifests(a.addr, mln.Addr().(*net.TCPAddr).AddrPort(), `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, port: 80}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: svc2, port: 80}}
`)
	w, _ := startWith(t, manifests, proxy.Options{MaxMirrorsInFlight: 3}, inbound.Options{})
	for i := 0; i < 20; i++ {
		resp, _ := w.do(vip, curlID, get("/m"))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak mirrors in flight %d, want 3 (the bound)", p)
	}
	if d := w.proxy.MirrorsDropped(); d < 17 {
		t.Fatalf("dropped %d mirrors, want at least 17", d)
	}
	done := make(chan struct{})
	go func() { w.proxy.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the mirrors in flight")
	}
	close(release)
}

func TestRetriesCapped(t *testing.T) {
	var hits atomic.Int32
	ep := rawBackendFunc(t, "127.0.1.1", func(string) string {
		hits.Add(1)
		return "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
	})
	manifests := routedManifests(ep, ep, `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, port: 80}]
  rules:
  - retry: {attempts: 1000, codes: [503]}
    backendRefs: [{name: svc, port: 80}]
`)
	w, _ := startWith(t, manifests, proxy.Options{MaxRetries: 3}, inbound.Options{})
	resp, _ := w.do(vip, curlID, get("/r"))
	if resp.StatusCode != 503 || hits.Load() != 4 {
		t.Fatalf("status %d after %d tries, want 503 after 4 (1 + the cap of 3)", resp.StatusCode, hits.Load())
	}
}

// h2Raw sends one HEADERS frame with the given fields (pseudo-headers
// included, unchecked) on a fresh h2c connection and returns the response
// status, or 0 with the reset/goaway reason.
func (w *waypoint) h2Raw(fields ...string) (int, string) {
	w.t.Helper()
	c := w.dial(vip, curlID)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		w.t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		w.t.Fatal(err)
	}
	var hb strings.Builder
	enc := hpack.NewEncoder(&hb)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte(hb.String()), EndStream: true, EndHeaders: true}); err != nil {
		w.t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, "connection: " + err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			var status int
			_, _ = fmt.Sscanf(f.PseudoValue("status"), "%d", &status)
			return status, ""
		case *http2.RSTStreamFrame:
			return 0, "reset: " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return 0, "goaway: " + f.ErrCode.String()
		}
	}
}

// Class 8 over h2c: an invalid :authority or :path gets 400, control
// characters in values never reach the backend.
func TestMalformedH2CRequestsRefused(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	ok := []string{":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/ok"}
	if st, why := w.h2Raw(ok...); st != 200 {
		t.Fatalf("a good raw h2 request: %d %s", st, why)
	}
	cases := map[string][]string{
		"authority with a space": {":method", "GET", ":scheme", "http", ":authority", "a b", ":path", "/"},
		"authority with a path":  {":method", "GET", ":scheme", "http", ":authority", "svc/x", ":path", "/"},
		"lower-case method":      {":method", "delete", ":scheme", "http", ":authority", "svc", ":path", "/"},
		"path not origin-form":   {":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "x://y"},
		"asterisk for GET":       {":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "*"},
		"control char in value":  {":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/", "x-a", "a\x01b"},
		"DEL in value":           {":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/", "x-a", "a\x7fb"},
	}
	for name, fields := range cases {
		st, why := w.h2Raw(fields...)
		if st != 400 && st != 0 {
			t.Errorf("%s: %d, want 400 or a reset", name, st)
		}
		t.Logf("%s: %d %s", name, st, why)
	}
	if h := b.Hits(); h != 1 {
		t.Fatalf("the backend got %d requests, want only the good one", h)
	}
}

// The head bound is exact: a head of MaxHeaderBytes is served, one byte
// more is a 431, whatever the read buffers hold.
func TestHeaderBoundIsExact(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	const limit = 8 << 10
	w, _ := startLimited(t, svcManifests(b.addr), inbound.Options{HTTP: inbound.HTTPOptions{MaxHeaderBytes: limit}})
	head := func(size int) string {
		start := "GET / HTTP/1.1\r\nHost: svc\r\nX-Pad: "
		return start + strings.Repeat("p", size-len(start)-4) + "\r\n\r\n"
	}
	if h := head(limit); len(h) != limit {
		t.Fatalf("test head is %d bytes", len(h))
	}
	resp, body, _, _ := w.rawExchange(head(limit))
	if resp.StatusCode != 200 {
		t.Fatalf("a head of exactly the limit: %d %q", resp.StatusCode, body)
	}
	resp, _, c, br := w.rawExchange(head(limit + 1))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("one byte over the limit: %d, want 431", resp.StatusCode)
	}
	expectEOF(t, c, br)
}
