package inbound_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/config"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
)

// echoHandler is a real inbound.Handler: it serves 10.0.0.1:80 as HTTP,
// answering with what it learnt of the connection, and 10.0.0.1:9000 as
// TCP, echoing after a line naming the client.
type echoHandler struct{}

var (
	httpDst = netip.MustParseAddrPort("10.0.0.1:80")
	tcpDst  = netip.MustParseAddrPort("10.0.0.1:9000")
)

func target(name string, proto ir.Protocol) config.Target {
	return config.Target{Port: &config.ServicePort{Service: &ir.Service{Name: name}, Port: &ir.ServicePort{Protocol: proto}}}
}

func (echoHandler) Classify(info *inbound.ConnInfo) (config.Target, bool) {
	switch info.Destination {
	case httpDst:
		return target("http-svc", ir.ProtocolHTTP), true
	case tcpDst:
		return target("tcp-svc", ir.ProtocolTCP), true
	}
	return config.Target{}, false
}

func (echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci := inbound.Info(w, r)
	body := fmt.Sprintf("id=%s src=%s dst=%s host=%s svc=%v baggage=%s traceparent=%s proto=%s path=%s",
		ci.Identity, ci.Source, ci.Destination, ci.Hostname, ci.Target.Port.Service.Name, ci.Baggage, ci.Traceparent, r.Proto, r.URL.Path)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	_, _ = io.WriteString(w, body)
}

func (echoHandler) ServeTCP(_ context.Context, c net.Conn, r io.Reader, info *inbound.ConnInfo) {
	_, _ = fmt.Fprintf(c, "id=%s src=%s\n", info.Identity, info.Source)
	_, _ = io.Copy(c, r)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

var (
	waypointID = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "waypoint"}
	curlID     = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "curl"}
)

type mesh struct {
	ca       *identity.CA
	server   *identity.Static // the waypoint's certificate
	srv      *inbound.Server
	addr     string
	aliases  []string
	aliasMu  sync.Mutex
	curl     *identity.Bundle
	curlPool *hbone.Pool
}

func (m *mesh) trustDomains() (string, []string) {
	m.aliasMu.Lock()
	defer m.aliasMu.Unlock()
	return "cluster.local", m.aliases
}

func startHBONE(t *testing.T, opts inbound.HBONEOptions) *mesh {
	t.Helper()
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := ca.IssueBundle(waypointID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ca.IssueBundle(curlID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{ca: ca, server: identity.NewStatic(wb), curl: cb}
	m.srv = inbound.NewServer(echoHandler{}, inbound.Options{HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 5 * time.Second}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	opts.Identity, opts.TrustDomains = m.server, m.trustDomains
	go func() { _ = m.srv.ServeHBONE(ln, opts) }()
	m.curlPool = hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(cb), TrustDomains: m.trustDomains})
	t.Cleanup(func() {
		m.curlPool.Close()
		_ = m.srv.Close()
	})
	return m
}

func (m *mesh) tunnel(t *testing.T, authority string, hdr http.Header) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := m.curlPool.Dial(ctx, hbone.Target{Address: m.addr, Authority: authority, Identity: waypointID.String(), Header: hdr})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestHBONEServesHTTP1AndTCPAsTheProxyDestination(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	hdr := http.Header{}
	hdr.Set("Forwarded", `for="10.244.0.7:41234";host=httpbin.httpbin.svc.cluster.local`)
	hdr.Set("Baggage", "k8s.namespace.name=httpbin")
	hdr.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	c := m.tunnel(t, httpDst.String(), hdr)
	br := bufio.NewReader(c)
	for i := range 3 { // keep-alive inside one tunnel
		if _, err := fmt.Fprintf(c, "GET /get/%d HTTP/1.1\r\nHost: httpbin:8000\r\n\r\n", i); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("id=%s src=10.244.0.7:41234 dst=10.0.0.1:80 host=httpbin.httpbin.svc.cluster.local svc=http-svc "+
			"baggage=k8s.namespace.name=httpbin traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 proto=HTTP/1.1 path=/get/%d", curlID, i)
		if string(b) != want {
			t.Fatalf("request %d:\n got %s\nwant %s", i, b, want)
		}
	}

	// TCP: the source is the TCP peer when no forwarded header says otherwise.
	tc := m.tunnel(t, tcpDst.String(), nil)
	if _, err := io.WriteString(tc, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := tc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "id="+curlID.String()+" src=127.0.0.1:") || !strings.HasSuffix(string(b), "\nping") {
		t.Fatalf("TCP tunnel answered %q", b)
	}
	st := m.srv.HBONEStats()
	if st.Streams.Load() != 2 || st.Handshakes.Load() != 1 {
		t.Fatalf("streams %d handshakes %d: want 2 streams on one connection", st.Streams.Load(), st.Handshakes.Load())
	}
}

// TestHBONEServesH2CInsideTheTunnel: HTTP/2 prior knowledge in a stream,
// as a gRPC client behind ztunnel sends it.
func TestHBONEServesH2CInsideTheTunnel(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
		return m.tunnel(t, httpDst.String(), nil), nil
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://httpbin:8000/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(b), "proto=HTTP/2.0 path=/h2") || !strings.Contains(string(b), "id="+curlID.String()) {
		t.Fatalf("h2c in HBONE answered %q", b)
	}
}

func clientTLS(b *identity.Bundle, roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{RootCAs: roots, ServerName: "waypoint", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true} //nolint:gosec // the test checks the waypoint's identity itself where it matters
	if b != nil {
		cfg.Certificates = []tls.Certificate{*b.Certificate}
	}
	return cfg
}

// connectRaw is an HBONE client as Istio's pkg/hbone dialer is written:
// x/net/http2's Transport over TLS; connect sends a CONNECT whose body is
// a pipe.
func connectRaw(t *testing.T, addr string, cfg *tls.Config) (*http2.ClientConn, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	cc, err := (&http2.Transport{}).NewClientConn(c)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 clients finish their handshake before the server has
	// checked their certificate: a round trip shows the verdict.
	if err := cc.Ping(context.Background()); err != nil {
		return nil, err
	}
	return cc, nil
}

func connect(cc *http2.ClientConn, authority string) (*http.Response, *io.PipeWriter, error) {
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodConnect, "https://"+authority, pr)
	req.Host = authority
	resp, err := cc.RoundTrip(req)
	return resp, pw, err
}

func TestHBONEWithIstioStyleDialer(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	cc, err := connectRaw(t, m.addr, clientTLS(m.curl, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp, pw, err := connect(cc, tcpDst.String())
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT answered %d", resp.StatusCode)
	}
	go func() { _, _ = io.WriteString(pw, "hello over hbone"); _ = pw.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(string(b), "\nhello over hbone") {
		t.Fatalf("got %q", b)
	}
}

func TestHBONEStreamRefusals(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	cc, err := connectRaw(t, m.addr, clientTLS(m.curl, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		authority string
		want      int
	}{
		{"httpbin:80", 400},     // not IP:port
		{"10.0.0.1", 400},       // no port
		{"10.9.9.9:80", 503},    // not served here
		{httpDst.String(), 200}, // served
	} {
		resp, pw, err := connect(cc, c.authority)
		if err != nil {
			t.Fatalf("%s: %v", c.authority, err)
		}
		_ = pw.Close()
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.authority, resp.StatusCode, c.want)
		}
	}
	// Not CONNECT: 400.
	req, _ := http.NewRequest(http.MethodGet, "https://"+m.addr+"/", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("GET answered %d", resp.StatusCode)
	}
	st := m.srv.HBONEStats()
	if st.StreamsBadRequest.Load() != 3 || st.StreamsUnknownDest.Load() != 1 {
		t.Errorf("bad requests %d unknown %d", st.StreamsBadRequest.Load(), st.StreamsUnknownDest.Load())
	}
}

func TestHBONEAdvertisesMaxConcurrentStreams(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{MaxConcurrentStreams: 3})
	cc, err := connectRaw(t, m.addr, clientTLS(m.curl, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cc.State().MaxConcurrentStreams; got != 3 {
		t.Fatalf("advertised %d streams, want 3", got)
	}
	// Honoured: three tunnels open, a fourth waits for one to end.
	var open []*io.PipeWriter
	var bodies []io.Closer
	for range 3 {
		resp, pw, err := connect(cc, tcpDst.String())
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("tunnel: %v %v", resp, err)
		}
		open = append(open, pw)
		bodies = append(bodies, resp.Body)
	}
	if cc.ReserveNewRequest() {
		t.Fatal("a fourth stream was allowed while three are open")
	}
	_ = open[0].Close()
	_ = bodies[0].Close()
	for _, pw := range open[1:] {
		_ = pw.Close()
	}
}

// TestHBONEHandshakeRefusals: every way a client can fail mTLS is refused
// and counted by its reason.
func TestHBONEHandshakeRefusals(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	other, _ := identity.NewCA("cluster.local", time.Hour)
	foreign, _ := other.IssueBundle(curlID, time.Hour)
	alien, _ := m.ca.IssueBundle(identity.ID{TrustDomain: "evil.example", Namespace: "httpbin", ServiceAccount: "curl"}, time.Hour)
	chain, key, err := m.ca.Issue(curlID, time.Nanosecond) // expired at once
	if err != nil {
		t.Fatal(err)
	}
	expiredCert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	st := m.srv.HBONEStats()
	cases := []struct {
		name    string
		cfg     func() *tls.Config
		counter *atomic.Uint64
	}{
		{"no client certificate", func() *tls.Config { return clientTLS(nil, nil) }, &st.RefusedNoCert},
		{"wrong CA", func() *tls.Config { return clientTLS(foreign, nil) }, &st.RefusedUntrusted},
		{"wrong trust domain", func() *tls.Config { return clientTLS(alien, nil) }, &st.RefusedTrustDomain},
		{"expired certificate", func() *tls.Config {
			c := clientTLS(nil, nil)
			c.Certificates = []tls.Certificate{expiredCert}
			return c
		}, &st.RefusedExpired},
		{"TLS 1.2", func() *tls.Config {
			c := clientTLS(m.curl, nil)
			c.MaxVersion = tls.VersionTLS12
			return c
		}, &st.RefusedTLSVersion},
		{"ALPN http/1.1", func() *tls.Config {
			c := clientTLS(m.curl, nil)
			c.NextProtos = []string{"http/1.1"}
			return c
		}, &st.RefusedALPN},
		{"no ALPN", func() *tls.Config {
			c := clientTLS(m.curl, nil)
			c.NextProtos = nil
			return c
		}, &st.RefusedALPN},
	}
	for _, c := range cases {
		before := c.counter.Load()
		if _, err := connectRaw(t, m.addr, c.cfg()); err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		waitFor(t, c.name+" counted", func() bool { return c.counter.Load() == before+1 })
	}
	if st.Handshakes.Load() != 0 {
		t.Errorf("%d handshakes completed, want none", st.Handshakes.Load())
	}
	// The alias admits the other trust domain.
	m.aliasMu.Lock()
	m.aliases = []string{"evil.example"}
	m.aliasMu.Unlock()
	if _, err := connectRaw(t, m.addr, clientTLS(alien, nil)); err != nil {
		t.Errorf("trust domain alias refused: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHBONERotationUnderLoad: the waypoint's certificate is replaced
// several times while clients keep sending, on tunnels opened before each
// rotation and on new connections after it; no request fails, and new
// handshakes see the new certificate.
func TestHBONERotationUnderLoad(t *testing.T) {
	m := startHBONE(t, inbound.HBONEOptions{})
	var failures, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Long-lived tunnels, each with keep-alive requests.
	for range 4 {
		c := m.tunnel(t, httpDst.String(), nil)
		_ = c.SetDeadline(time.Time{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := io.WriteString(c, "GET /load HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
					failures.Add(1)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failures.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				done.Add(1)
			}
		}()
	}
	// New connections, each a fresh handshake, recording the serial the
	// waypoint presented.
	serials := sync.Map{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cfg := clientTLS(m.curl, nil)
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				serials.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
				return nil
			}
			cc, err := connectRaw(t, m.addr, cfg)
			if err != nil {
				failures.Add(1)
				continue
			}
			resp, pw, err := connect(cc, tcpDst.String())
			if err != nil || resp.StatusCode != 200 {
				failures.Add(1)
				_ = cc.Close()
				continue
			}
			_ = pw.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = cc.Close()
			done.Add(1)
		}
	}()
	var issued []string
	for range 3 {
		target := done.Load() + 50
		waitFor(t, "requests", func() bool { return done.Load() >= target || failures.Load() > 0 })
		b, err := m.ca.IssueBundle(waypointID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m.server.Set(b)
		issued = append(issued, b.Certificate.Leaf.SerialNumber.String())
	}
	target := done.Load() + 50
	last := issued[len(issued)-1]
	waitFor(t, "requests and a handshake after the last rotation", func() bool {
		_, seen := serials.Load(last)
		return (done.Load() >= target && seen) || failures.Load() > 0
	})
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed across rotations (%d succeeded)", failures.Load(), done.Load())
	}
	if _, ok := serials.Load(issued[len(issued)-1]); !ok {
		t.Fatal("no new handshake saw the last certificate")
	}
}
