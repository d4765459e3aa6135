package targets

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestCaddyPathMatchesBuildScript checks the Go side computes the folder
// hack/caddy/build.sh uses (sha256sum of go.sum, 16 hex digits), so that
// meshbench finds a binary the script built.
func TestCaddyPathMatchesBuildScript(t *testing.T) {
	root := repoRoot(t)
	got, err := CaddyPath(root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sha256sum", filepath.Join(root, "hack", "caddy", "go.sum")).Output()
	if err != nil {
		t.Skipf("no sha256sum here: %v", err)
	}
	want := filepath.Join(root, ".cache", "caddy", string(out[:16]), "caddy")
	if got != want {
		t.Fatalf("CaddyPath = %s, build.sh uses %s", got, want)
	}
}

func TestCaddyConfigRejectsABadAddress(t *testing.T) {
	if _, err := CaddyConfig(t.TempDir(), "localhost", netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Fatal("no error for a listen address without a port")
	}
}

// TestReferenceProxiesDoTheJob starts each reference proxy that is
// installed here (meshbench installs HAProxy and nginx and builds Caddy;
// this test only uses what is there) on the configuration meshbench
// uses, in front of the real backend, and checks over real sockets the job
// every target does: PROXY v2 accepted, the response header added, the
// body passed through on a reused connection, and the caller check (a
// PROXY source outside 127.0.0.0/8 gets 403).
func TestReferenceProxiesDoTheJob(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() { _ = ServeBackend(ln) }()
	env := &Env{Dir: t.TempDir(), Backend: ln.Addr().(*net.TCPAddr).AddrPort()}
	if bin, err := CaddyPath(repoRoot(t)); err == nil {
		env.CaddyBin = bin
	}
	for _, c := range []struct {
		name, bin string
		start     func(*Env, Opts) (*Target, error)
	}{
		{"haproxy", "haproxy", StartHAProxy},
		{"nginx", "nginx", StartNginx},
		{"caddy", env.CaddyBin, StartCaddy},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.bin); err != nil {
				t.Skipf("%s is not installed here (go run ./bench/cmd/meshbench installs it)", c.name)
			}
			if c.name == "caddy" {
				if v := CaddyVersion(c.bin); !strings.HasPrefix(v, "v2.") {
					t.Errorf("CaddyVersion = %q, want the v2 module version hack/caddy pins", v)
				}
			}
			for _, o := range []Opts{{}, {Conns: 12000}} { // the latency runs' and the connection-scale row's
				tg, err := c.start(env, o)
				if err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
				checkJob(t, tg)
				tg.Stop()
			}
		})
	}
}

func checkJob(t *testing.T, tg *Target) {
	t.Helper()
	allowed := netip.MustParseAddr("127.0.0.1")
	c := dialPROXY(t, tg.Addr, allowed)
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ { // keep-alive: three on one connection
		resp := get(t, c, br)
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get(AddedHeader) != AddedValue || len(body) != BodySize || resp.Close {
			t.Fatalf("%s: request %d: status %d, %s=%q, %d bytes, close %v", tg.Name, i, resp.StatusCode, AddedHeader,
				resp.Header.Get(AddedHeader), len(body), resp.Close)
		}
	}
	_ = c.Close()

	// A stranger: another source address (what the reference proxies'
	// ACL checks) and another identity (what the waypoint's ALLOW checks).
	denied := dialPROXYAs(t, tg.Addr, netip.MustParseAddr("10.1.2.3"), "spiffe://cluster.local/ns/elsewhere/sa/stranger")
	defer func() { _ = denied.Close() }()
	resp := get(t, denied, bufio.NewReader(denied))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("%s: a stranger got %d, want 403", tg.Name, resp.StatusCode)
	}

	if tg.H2CAddr == "" {
		return
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.DialContext = func(context.Context, string, string) (net.Conn, error) { return dialPROXYErr(tg.H2CAddr, allowed) }
	defer tr.CloseIdleConnections()
	h2, err := (&http.Client{Transport: tr}).Get("http://" + ServiceName + "." + Namespace + ".svc.cluster.local/")
	if err != nil {
		t.Fatalf("%s h2c: %v", tg.Name, err)
	}
	body, _ := io.ReadAll(h2.Body)
	_ = h2.Body.Close()
	if h2.ProtoMajor != 2 || h2.StatusCode != 200 || h2.Header.Get(AddedHeader) != AddedValue || len(body) != BodySize {
		t.Fatalf("%s h2c: %s %d, %s=%q, %d bytes", tg.Name, h2.Proto, h2.StatusCode, AddedHeader, h2.Header.Get(AddedHeader), len(body))
	}
}

// dialPROXY connects to addr and writes the PROXY v2 header ztunnel would,
// with the given source address.
func dialPROXY(t *testing.T, addr string, src netip.Addr) net.Conn {
	return dialPROXYAs(t, addr, src, Identity())
}

// dialPROXYAs is dialPROXY with another client identity (TLV 0xD0).
func dialPROXYAs(t *testing.T, addr string, src netip.Addr, id string) net.Conn {
	t.Helper()
	c, err := dialPROXYWith(addr, src, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dialPROXYErr(addr string, src netip.Addr) (net.Conn, error) {
	return dialPROXYWith(addr, src, Identity())
}

func dialPROXYWith(addr string, src netip.Addr, id string) (net.Conn, error) {
	hdr, err := meshclient.Conn{
		Source:      netip.AddrPortFrom(src, 40000),
		Destination: netip.AddrPortFrom(ServiceVIP, ServicePort),
		Identity:    id,
	}.Header()
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(hdr); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func get(t *testing.T, c net.Conn, br *bufio.Reader) *http.Response {
	t.Helper()
	host := ServiceName + "." + Namespace + ".svc.cluster.local:8080"
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\nUser-Agent: targets-test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestMain(m *testing.M) {
	// The proxies inherit this limit; the connection-scale configuration
	// asks for more connections than the usual default soft limit.
	_, _ = RaiseFileLimit()
	os.Exit(m.Run())
}

// The test binary is a Go binary without the Caddy module in it.
func TestCaddyVersionOfANonCaddyBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if v := CaddyVersion(self); v != "unknown" {
		t.Fatalf("CaddyVersion(test binary) = %q, want unknown", v)
	}
	if v := CaddyVersion(filepath.Join(t.TempDir(), "missing")); v != "unknown" {
		t.Fatalf("CaddyVersion(missing) = %q, want unknown", v)
	}
}

// TestWaypointProxyDoesTheJob runs the "waypoint-proxy" target (the
// data-plane-only binary, built here, fed by the xDS server in this
// process) and checks the same job over real sockets.
func TestWaypointProxyDoesTheJob(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() { _ = ServeBackend(ln) }()
	env := &Env{Dir: t.TempDir(), Backend: ln.Addr().(*net.TCPAddr).AddrPort()}
	env.ProxyBin = filepath.Join(env.Dir, "kgateway-waypoint-proxy")
	build := exec.Command("go", "build", "-o", env.ProxyBin, "./cmd/kgateway-waypoint-proxy")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the proxy: %v\n%s", err, out)
	}
	tg, err := StartWaypointProxy(env, Opts{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Stop()
	checkJob(t, tg)
}
