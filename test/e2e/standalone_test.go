// Package e2e drives the real kgateway-waypoint binary: it builds it once,
// runs its subcommands as a user would and talks to it over loopback.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// binary is kgateway-waypoint; proxyBinary the data-plane-only
// kgateway-waypoint-proxy that waypoint pods run.
var binary, proxyBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kgw-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "kgateway-waypoint")
	proxyBinary = filepath.Join(dir, "kgateway-waypoint-proxy")
	build := exec.Command("go", "build", "-o", dir, "../../cmd/kgateway-waypoint", "../../cmd/kgateway-waypoint-proxy")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary with its output captured.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	if len(args) > 0 && args[0] == "standalone" && !slices.Contains(args, "--metrics-address") {
		// Tests run side by side: never the fixed default ports.
		args = append(args, "--metrics-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0")
	}
	return startBinary(t, binary, args...)
}

// startBinary runs bin with args, its output captured, killed at the end.
func startBinary(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		waitErr := <-p.done
		p.done <- waitErr // leave it for whoever else waits
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.output())
		}
	})
	return p
}

// waitFor polls cond every 20ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func ready(status string) bool {
	resp, err := http.Get("http://" + status + "/healthz/ready")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == 200
}

// startHTTPBackend serves a fixed reply on a loopback "pod IP".
func startHTTPBackend(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s from pod", r.Method, r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func seedManifests(pod netip.AddrPort) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: httpbin
  labels: {istio.io/use-waypoint: httpbin-waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httpbin-waypoint, namespace: httpbin}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: httpbin}
spec:
  clusterIP: 127.0.200.1
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-1
  namespace: httpbin
  labels: {kubernetes.io/service-name: httpbin}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["%s"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: traversed, namespace: httpbin}
spec:
  parentRefs: [{group: "", kind: Service, name: httpbin}]
  rules:
  - backendRefs: [{name: httpbin, port: 8000}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: Traversed-Waypoint, value: httpbin-waypoint}]
`, pod.Port(), pod.Addr())
}

const denyGet = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: httpbin}
spec:
  targetRefs: [{group: "", kind: Service, name: httpbin}]
  action: DENY
  rules: [{to: [{operation: {methods: ["GET"], ports: ["8000"]}}]}]
`

// client is a keep-alive connection through the waypoint as the curl pod.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialWaypoint(t *testing.T, inbound string) *client {
	t.Helper()
	c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
		Source:      netip.MustParseAddrPort("127.0.210.9:40000"),
		Destination: netip.MustParseAddrPort("127.0.200.1:8000"),
		Identity:    "spiffe://cluster.local/ns/httpbin/sa/curl",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(method, path string) (*http.Response, string) {
	c.t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(method, "http://httpbin:8000"+path, nil)
	if err := req.Write(c.c); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

func TestStandaloneServesAndFollowsFileChanges(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.201.1")
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		tmp := filepath.Join(dir, filepath.Dir(name), "."+filepath.Base(name)+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("nested/seed.yml", seedManifests(pod))
	inbound, status := freeAddr(t, "127.0.202.1"), freeAddr(t, "127.0.202.1")
	p := start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	c := dialWaypoint(t, inbound)
	resp, body := c.send("GET", "/get")
	if resp.StatusCode != 200 || body != "GET /get from pod" || resp.Header.Get("Traversed-Waypoint") != "httpbin-waypoint" {
		t.Fatalf("GET: status %d body %q headers %v", resp.StatusCode, body, resp.Header)
	}

	// kubectl apply of the policy: within a second, and the open
	// keep-alive connection is not dropped.
	applied := time.Now()
	write("authz.yaml", denyGet)
	waitFor(t, 2*time.Second, "the policy to take effect", func() bool {
		r, _ := c.send("GET", "/get")
		return r.StatusCode == 403
	})
	if d := time.Since(applied); d > time.Second+200*time.Millisecond {
		t.Errorf("the change took %v to apply, want within 1s", d)
	}
	resp, body = c.send("GET", "/get")
	if resp.StatusCode != 403 || body != "RBAC: access denied" || resp.Header.Get("Traversed-Waypoint") != "httpbin-waypoint" {
		t.Fatalf("GET after policy: status %d body %q", resp.StatusCode, body)
	}
	if resp, _ := c.send("POST", "/post"); resp.StatusCode != 200 {
		t.Fatalf("POST after policy: status %d", resp.StatusCode)
	}

	// A broken file is reported with file, object and reason; the last good
	// configuration stays in force.
	write("broken.yaml", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: httpbin}
spec:
  actoin: ALLOW
`)
	waitFor(t, 3*time.Second, "the broken file to be reported", func() bool {
		out := p.output()
		return strings.Contains(out, "broken.yaml") && strings.Contains(out, "AuthorizationPolicy httpbin/typo") &&
			strings.Contains(out, "actoin")
	})
	if resp, _ := c.send("GET", "/get"); resp.StatusCode != 403 {
		t.Fatalf("after a broken file the last good config must stay: status %d", resp.StatusCode)
	}
	if !ready(status) {
		t.Fatal("a broken file must not make the waypoint unready")
	}

	// Removing the broken file and the policy: back to 200.
	if err := os.Remove(filepath.Join(dir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "authz.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the policy removal to take effect", func() bool {
		r, _ := c.send("GET", "/get")
		return r.StatusCode == 200
	})

	// SIGTERM: exits cleanly.
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("exit after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("did not exit after SIGINT")
	}
}

func TestStandaloneBadInvocations(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(seedManifests(netip.MustParseAddrPort("127.0.201.3:1"))), 0o644); err != nil {
		t.Fatal(err)
	}
	// The controller refuses a PROXY listener off 15088 (ztunnel connects
	// to PROXY/15088), and so does standalone, saying why.
	offPort := filepath.Join(dir, "off-port.yaml")
	if err := os.WriteFile(offPort, []byte(strings.Replace(seedManifests(netip.MustParseAddrPort("127.0.201.3:1")),
		"port: 15088", "port: 15089", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Native HBONE (Istio's HBONE listener) needs a certificate of the
	// waypoint's own; --cert-dir must hold a loadable set.
	native := filepath.Join(dir, "native.yaml")
	if err := os.WriteFile(native, []byte(strings.Replace(seedManifests(netip.MustParseAddrPort("127.0.201.3:1")),
		"protocol: istio.io/PROXY, port: 15088", "protocol: HBONE, port: 15008", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no -f", []string{"standalone"}, "-f PATH is required"},
		{"missing path", []string{"standalone", "-f", filepath.Join(dir, "nope")}, "no such file"},
		{"gateway not in files", []string{"standalone", "-f", good, "--gateway", "httpbin/other"}, "gateway httpbin/other not found"},
		{"malformed --gateway", []string{"standalone", "-f", good, "--gateway", "justaname"}, "want NAMESPACE/NAME"},
		{"malformed --proxy-protocol-allowed-cidrs", []string{"standalone", "-f", good, "--proxy-protocol-allowed-cidrs", "10.0.0.0/33"}, `"10.0.0.0/33" is neither an address range`},
		{"invalid object", []string{"standalone", "-f", bad}, "Service default/x"},
		{"PROXY listener off 15088", []string{"standalone", "-f", offPort}, "the istio.io/PROXY listener must use port 15088"},
		{"unknown flag", []string{"standalone", "--bogus"}, "unknown flag"},
		{"native HBONE without a certificate", []string{"standalone", "-f", native}, "needs a certificate of the waypoint's own: --cert-dir"},
		{"empty --cert-dir", []string{"standalone", "-f", native, "--cert-dir", dir}, "--cert-dir: certificate directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--status-address", "127.0.0.1:0", "--inbound-address", "127.0.0.1:0",
				"--metrics-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0")
			if tc.name == "unknown flag" {
				args = tc.args
			}
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("exited 0, want an error; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	cmd := exec.Command(binary, "demo")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"HTTP/1.1 200 OK", "traversed-waypoint: httpbin-waypoint", "HTTP/1.1 403 Forbidden",
		"RBAC: access denied", "content-length: 19", "content-type: text/plain", "server: envoy",
		"x-envoy-upstream-service-time:", "All outcomes match the walkthrough.",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// TestDemoHBONE: the walkthrough through a native HBONE waypoint, mTLS
// HBONE both ways with the demo's local CA; the existing demo stays as it
// is (TestDemo).
func TestDemoHBONE(t *testing.T) {
	out, err := exec.Command(binary, "demo", "--hbone").CombinedOutput()
	if err != nil {
		t.Fatalf("demo --hbone failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"HBONE listener", "HTTP/1.1 200 OK", "traversed-waypoint: httpbin-waypoint", "HTTP/1.1 403 Forbidden",
		"RBAC: access denied", "from spiffe://cluster.local/ns/httpbin/sa/httpbin-waypoint (0 from other clients)",
		"All outcomes match the walkthrough.",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo --hbone output lacks %q:\n%s", want, out)
		}
	}
}

func TestStandaloneMeshConfig(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.201.4")
	dir := t.TempDir()
	manifests := seedManifests(pod) + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: custom-root}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: kgateway-waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	mesh := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("rootNamespace: custom-root\npathNormalization:\n  normalization: MERGE_SLASHES\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.202.4"), freeAddr(t, "127.0.202.4")
	start(t, "standalone", "-f", dir, "--mesh-config", mesh, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })
	c := dialWaypoint(t, inbound)
	if resp, _ := c.send("GET", "//admin/x"); resp.StatusCode != 403 {
		t.Errorf("//admin/x with MERGE_SLASHES and a GatewayClass policy from the mesh's root namespace: %d, want 403", resp.StatusCode)
	}
	if resp, body := c.send("GET", "/x//y"); resp.StatusCode != 200 || body != "GET /x/y from pod" {
		t.Errorf("/x//y: %d %q, want the merged path forwarded", resp.StatusCode, body)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("pathNormalisation: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "standalone", "-f", dir, "--mesh-config", bad, "--status-address", "127.0.0.1:0", "--inbound-address", "127.0.0.1:0",
		"--metrics-address", "off", "--admin-address", "off").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pathNormalisation") {
		t.Errorf("a mesh config with an unknown field must fail naming it; got %v:\n%s", err, out)
	}
}

// runBinary runs the binary to completion (with a timeout) and returns its output.
func runBinary(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	return string(out), err
}
