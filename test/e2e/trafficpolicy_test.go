package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A kgateway 2.1 waypoint user's manifests, as kgateway's waypoint and
// local rate limiting guides write them (a Gateway of class
// kgateway-waypoint, an HTTPRoute attached to the Service, a TrafficPolicy
// with a local rate limit targeting the HTTPRoute), on the real binary in
// standalone mode: the burst passes, then 429 local_rate_limited through
// the waypoint; a field the waypoint does not implement (transformation)
// is reported, not dropped.
func TestStandaloneTrafficPolicyRateLimit(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.201.7")
	dir := t.TempDir()
	manifests := seedManifests(pod) + `---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: local-ratelimit
  namespace: httpbin
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: traversed
  rateLimit:
    local:
      tokenBucket:
        maxTokens: 2
        tokensPerFill: 1
        fillInterval: 100s
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: transform
  namespace: httpbin
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: httpbin-waypoint
  transformation:
    response:
      set:
      - name: x-kgateway-response
        value: '{{ request_header("x-kgateway-request") }}'
  headerModifiers:
    response:
      add:
      - name: x-kgateway-policy
        value: gateway
`
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.202.7"), freeAddr(t, "127.0.202.7")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	c := dialWaypoint(t, inbound)
	for i := range 2 {
		resp, body := c.send("GET", "/get")
		if resp.StatusCode != 200 || body != "GET /get from pod" {
			t.Fatalf("request %d within the burst: %d %q", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Kgateway-Policy"); got != "gateway" {
			t.Errorf("the Gateway policy's response header: %q", got)
		}
	}
	for i := range 3 {
		resp, body := c.send("GET", "/get")
		if resp.StatusCode != http.StatusTooManyRequests || body != "local_rate_limited" {
			t.Fatalf("request %d over the limit: %d %q, want 429 local_rate_limited", i, resp.StatusCode, body)
		}
		// The route's own filter still decorates the waypoint's reply.
		if resp.Header.Get("Traversed-Waypoint") != "httpbin-waypoint" {
			t.Errorf("429 without the route's response header: %v", resp.Header)
		}
	}
	resp, err := http.Get("http://" + status + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	st := string(b)
	if !strings.Contains(st, "transform") || !strings.Contains(st, "PartiallyInvalid") || !strings.Contains(st, "not supported by the waypoint: transformation") {
		t.Errorf("/debug/status does not report the unsupported transformation:\n%s", st)
	}
}
