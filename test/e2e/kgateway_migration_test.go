package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// migrationDir holds a kgateway 2.1 waypoint user's manifests, taken from
// kgateway's waypoint guide (docs/migrating-from-kgateway.md).
const migrationDir = "../../examples/kgateway-migration"

// startEchoBackend answers every request with its request headers as JSON
// (as httpbin's /headers does), on a loopback "pod IP".
func startEchoBackend(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "headers": r.Header})
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// migrationApps stands in for the cluster of kgateway's guide: the
// httpbin namespace, the httpbin2 and httpbin3 Services (labelled to use
// the waypoint, as the guide's step 5 does) with the cluster IPs and the
// endpoints the API server and the endpoint controller would give them.
func migrationApps(h2, h3 netip.AddrPort) string {
	svc := func(name, vip string, pod netip.AddrPort) string {
		return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: httpbin
  labels: {app: %[1]s, service: %[1]s, istio.io/use-waypoint: kgateway-waypoint}
spec:
  clusterIP: %[2]s
  ports: [{name: http, port: 8000, targetPort: http, protocol: TCP, appProtocol: http}]
  selector: {app: %[1]s}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-1
  namespace: httpbin
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: %[3]d}]
endpoints: [{addresses: ["%[4]s"]}]
`, name, vip, pod.Port(), pod.Addr())
	}
	return "apiVersion: v1\nkind: Namespace\nmetadata: {name: httpbin, labels: {istio.io/dataplane-mode: ambient}}\n" +
		svc("httpbin2", "127.0.220.2", h2) + svc("httpbin3", "127.0.220.3", h3)
}

// meshCall is one request through the waypoint as the guide's client pod
// (identity httpbin/sa/client) to a Service VIP.
func meshCall(t *testing.T, inbound, vip, method, host string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
		Source:      netip.MustParseAddrPort("127.0.221.9:40000"),
		Destination: netip.MustParseAddrPort(vip + ":8000"),
		Identity:    "spiffe://cluster.local/ns/httpbin/sa/client",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(method, "http://"+host+":8000/headers", nil)
	req.Header.Set("User-Agent", "curl/8.7.1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(b)
}

// echoed are the request headers the backend saw.
func echoed(t *testing.T, body string) http.Header {
	t.Helper()
	var r struct{ Headers http.Header }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("backend reply %q: %v", body, err)
	}
	return r.Headers
}

func debugStatus(t *testing.T, status string) string {
	t.Helper()
	resp, err := http.Get("http://" + status + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return string(b)
}

// A kgateway 2.1 waypoint user's manifests, from kgateway's own waypoint
// guide (examples/kgateway-migration: the Gateway of class
// kgateway-waypoint with its GatewayParameters, the header-control
// HTTPRoutes, the transformation and local rate limit TrafficPolicies, the
// AuthorizationPolicy), applied step by step as the guide does to the real
// binary in standalone mode: each step has the outcome the guide shows,
// and the field the waypoint does not implement is reported.
func TestKgatewayMigrationGuide(t *testing.T) {
	h2, h3 := startEchoBackend(t, "127.0.222.2"), startEchoBackend(t, "127.0.222.3")
	dir := t.TempDir()
	copyStep := func(name string) {
		b, err := os.ReadFile(filepath.Join(migrationDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "00-apps.yaml"), []byte(migrationApps(h2, h3)), 0o644); err != nil {
		t.Fatal(err)
	}
	copyStep("01-waypoint.yaml")
	copyStep("02-header-control.yaml")
	inbound, status := freeAddr(t, "127.0.223.1"), freeAddr(t, "127.0.223.1")
	p := start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	// Header control.
	resp, body := meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", map[string]string{"X-Remove": "this header"})
	if resp.StatusCode != 200 || resp.Header.Get("Server") != "envoy" {
		t.Fatalf("httpbin2: %d %v %q\n%s", resp.StatusCode, resp.Header, body, p.output())
	}
	h := echoed(t, body)
	if h.Get("App") != "httpbin2" || h.Get("User-Agent") != "custom" || h.Get("X-Remove") != "" {
		t.Errorf("httpbin2 saw %v: want App httpbin2, User-Agent custom, no X-Remove", h)
	}
	resp, body = meshCall(t, inbound, "127.0.220.3", "GET", "httpbin3", map[string]string{"X-Remove": "this header"})
	h = echoed(t, body)
	if resp.StatusCode != 200 || h.Get("App") != "httpbin3" || h.Get("User-Agent") != "curl/8.7.1" || h.Get("X-Remove") != "this header" {
		t.Errorf("httpbin3: %d, saw %v: want App httpbin3, the client's User-Agent and X-Remove", resp.StatusCode, h)
	}

	// Transformation: not implemented, reported; the route serves as before.
	copyStep("03-transformation.yaml")
	waitFor(t, 10*time.Second, "the transformation policy reported", func() bool {
		return strings.Contains(debugStatus(t, status), "not supported by the waypoint: transformation")
	})
	resp, body = meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", map[string]string{"X-Base64-Encoded": "dHJhbnNmb3JtYXRpb24gdGVzdA=="})
	if resp.StatusCode != 200 || echoed(t, body).Get("App") != "httpbin2" {
		t.Errorf("httpbin2 with the transformation policy: %d %q", resp.StatusCode, body)
	}

	// Local rate limiting: one request per 30s, then 429 local_rate_limited.
	copyStep("04-local-ratelimit.yaml")
	waitFor(t, 10*time.Second, "the rate limit policy in force", func() bool {
		return strings.Contains(debugStatus(t, status), `"name": "ratelimit"`)
	})
	resp, _ = meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", nil)
	if resp.StatusCode != 200 {
		t.Errorf("first request within the limit: %d", resp.StatusCode)
	}
	for i := range 2 {
		resp, body = meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", nil)
		if resp.StatusCode != http.StatusTooManyRequests || body != "local_rate_limited" || resp.Header.Get("Server") != "envoy" {
			t.Errorf("request %d over the limit: %d %q %v, want 429 local_rate_limited from envoy", i+2, resp.StatusCode, body, resp.Header)
		}
	}
	if resp, _ = meshCall(t, inbound, "127.0.220.3", "GET", "httpbin3", nil); resp.StatusCode != 200 {
		t.Errorf("httpbin3 is not rate limited: %d", resp.StatusCode)
	}

	// The guide removes those policies, then denies GET to httpbin2.
	for _, f := range []string{"03-transformation.yaml", "04-local-ratelimit.yaml"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	copyStep("05-authorization.yaml")
	waitFor(t, 10*time.Second, "GET to httpbin2 denied", func() bool {
		resp, _ := meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", nil)
		return resp.StatusCode == http.StatusForbidden
	})
	resp, body = meshCall(t, inbound, "127.0.220.2", "GET", "httpbin2", nil)
	if resp.StatusCode != 403 || body != "RBAC: access denied" {
		t.Errorf("GET httpbin2: %d %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	resp, body = meshCall(t, inbound, "127.0.220.2", "POST", "httpbin2", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"method":"POST"`) {
		t.Errorf("POST httpbin2: %d %q, want 200 (the policy denies GET only, and the rate limit is gone)", resp.StatusCode, body)
	}
	if resp, _ = meshCall(t, inbound, "127.0.220.3", "GET", "httpbin3", nil); resp.StatusCode != 200 {
		t.Errorf("GET httpbin3: %d, the policy targets httpbin2 only", resp.StatusCode)
	}
}
