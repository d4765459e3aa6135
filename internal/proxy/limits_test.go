package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// startLimited serves the manifests with the given listener options.
func startLimited(t *testing.T, manifests string, opts inbound.Options) (*waypoint, *inbound.Server) {
	t.Helper()
	return startWith(t, manifests, proxy.Options{}, opts)
}

// startWith serves the manifests with the given proxy and listener options.
func startWith(t *testing.T, manifests string, popts proxy.Options, opts inbound.Options) (*waypoint, *inbound.Server) {
	t.Helper()
	return startWithMesh(t, manifests, "", popts, opts)
}

// startWithMesh is startWith with a mesh config (YAML, "" for Istio's
// defaults) in the snapshot, as the sources put it there: what the proxy
// learns from it comes through the translator.
func startWithMesh(t *testing.T, manifests, mesh string, popts proxy.Options, opts inbound.Options) (*waypoint, *inbound.Server) {
	t.Helper()
	p := proxy.New(popts)
	snap, err := files.LoadBytes("m.yaml", []byte(manifests))
	if err != nil {
		t.Fatal(err)
	}
	if mesh != "" {
		if snap.MeshConfig, err = meshconfig.Parse([]byte(mesh)); err != nil {
			t.Fatal(err)
		}
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
	srv := inbound.NewServer(p, opts)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); p.Close() })
	return &waypoint{t: t, proxy: p, addr: ln.Addr().String(), srv: srv}, srv
}

func TestSlowlorisGets408(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w, _ := startLimited(t, svcManifests(b.addr), inbound.Options{HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 200 * time.Millisecond}})
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\nX-Slow: ")
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 408 || !resp.Close {
		t.Fatalf("status %d close %v, want 408 and close", resp.StatusCode, resp.Close)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("408 after %v; the header timeout is 200ms", d)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w, _ := startLimited(t, svcManifests(b.addr), inbound.Options{HTTP: inbound.HTTPOptions{IdleTimeout: 200 * time.Millisecond}})
	c := w.dial(vip, curlID)
	br := bufio.NewReader(c)
	if resp, _ := roundTrip(t, c, br, get("/")); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read data on an idle connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the idle connection was not closed after the 200ms idle timeout")
	}
}

func TestConnectionLimit(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w, srv := startLimited(t, svcManifests(b.addr), inbound.Options{MaxConnections: 2})
	c1, c2 := w.dial(vip, curlID), w.dial(vip, curlID)
	for _, c := range []net.Conn{c1, c2} {
		if resp, _ := roundTrip(t, c, bufio.NewReader(c), get("/")); resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
	}
	c3 := w.dial(vip, curlID)
	_, _ = io.WriteString(c3, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
	expectClosed(t, c3)
	if n := srv.Stats().RefusedOverLimit.Load(); n != 1 {
		t.Errorf("over-limit counter %d, want 1", n)
	}
	_ = c1.Close()
	deadline := time.Now().Add(2 * time.Second)
	for srv.Stats().Active.Load() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c4 := w.dial(vip, curlID)
	if resp, _ := roundTrip(t, c4, bufio.NewReader(c4), get("/")); resp.StatusCode != 200 {
		t.Fatalf("after a connection closed, a new one must be served: %d", resp.StatusCode)
	}
}

func TestSpoofedClientCertHeaderStripped(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr))
	_, body := w.do(vip, curlID, get("/", "X-Forwarded-Client-Cert", "By=spiffe://cluster.local/ns/x/sa/admin", "Connection", "X-Secret", "X-Secret", "s"))
	e := decodeEcho(t, body)
	for _, h := range []string{"X-Forwarded-Client-Cert", "X-Secret", "Connection"} {
		if v, ok := e.Headers[h]; ok {
			t.Errorf("%s reached the backend: %q", h, strings.Join(v, ","))
		}
	}
}

func TestPathNormalizationModes(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	manifests := svcManifests(b.addr) + policy("deny-admin", svcTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]`)
	cases := []struct {
		mode    string
		path    string
		status  int
		forward string // the path the backend sees when allowed
	}{
		{"BASE", "/public/../admin", 403, ""},
		{"BASE", "/%2e%2e/admin", 403, ""},
		{"BASE", "/a/./b/../c", 200, "/a/c"},
		{"BASE", "//admin", 200, "//admin"}, // BASE keeps double slashes
		{"MERGE_SLASHES", "//admin", 403, ""},
		{"MERGE_SLASHES", "/x//y", 200, "/x/y"},
		{"DECODE_AND_MERGE_SLASHES", "/%2Fadmin", 403, ""},
		{"NONE", "/x/../admin", 200, "/x/../admin"},
	}
	for _, tc := range cases {
		t.Run(tc.mode+" "+tc.path, func(t *testing.T) {
			w, _ := startWithMesh(t, manifests, "pathNormalization: {normalization: "+tc.mode+"}", proxy.Options{}, inbound.Options{})
			c := w.dial(vip, curlID)
			_, _ = io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: svc\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if tc.forward != "" {
				if got := decodeEcho(t, string(body)).Path; got != tc.forward {
					t.Errorf("backend saw %q, want %q", got, tc.forward)
				}
			}
		})
	}
}

func TestEncodedSlashIsNotAPathSeparatorForPolicies(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w, _ := startWith(t, svcManifests(b.addr)+policy("deny-ab", svcTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/a/b"]}}]}]`),
		proxy.Options{}, inbound.Options{})
	for path, want := range map[string]int{"/a/b": 403, "/a%2Fb": 200} {
		c := w.dial(vip, curlID)
		_, _ = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("%s under BASE: %d, want %d (Envoy matches the escaped path)", path, resp.StatusCode, want)
		}
	}
}

// TestH2CMaxConcurrentStreamsAdvertised: the HTTP/2 listener announces the
// configured stream limit in its first SETTINGS frame.
func TestH2CMaxConcurrentStreamsAdvertised(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w, _ := startLimited(t, svcManifests(b.addr), inbound.Options{HTTP: inbound.HTTPOptions{MaxConcurrentStreams: 7}})
	c := w.dial(vip, curlID)
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	head := make([]byte, 9)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatal(err)
	}
	length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	if head[3] != 0x4 {
		t.Fatalf("first frame type %d, want SETTINGS", head[3])
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+6 <= len(payload); i += 6 {
		id := int(payload[i])<<8 | int(payload[i+1])
		val := int(payload[i+2])<<24 | int(payload[i+3])<<16 | int(payload[i+4])<<8 | int(payload[i+5])
		if id == 0x3 { // SETTINGS_MAX_CONCURRENT_STREAMS
			if val != 7 {
				t.Fatalf("max concurrent streams %d, want 7", val)
			}
			return
		}
	}
	t.Fatal("no SETTINGS_MAX_CONCURRENT_STREAMS in the server's settings")
}
