package proxy_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// kgateway TrafficPolicies, end to end through the proxy on real sockets:
// manifests → translator → proxy → backend.

// routeManifests is svc with one HTTPRoute "r" (rules "limited" on
// /limited and a catch-all) and the given TrafficPolicies.
func routeManifests(t *testing.T, policies string) (string, *backend) {
	a := startBackend(t, "a", "127.0.1.1", false)
	return svcManifests(a.addr) + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - name: limited
    matches: [{path: {type: PathPrefix, value: /limited}}]
    backendRefs: [{name: svc, port: 80}]
  - backendRefs: [{name: svc, port: 80}]
` + policies, a
}

func TestTrafficPolicyLocalRateLimit(t *testing.T) {
	m, a := routeManifests(t, `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: rl, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: limited}]
  rateLimit:
    local:
      tokenBucket: {maxTokens: 3, tokensPerFill: 1, fillInterval: 1s}
`)
	w := startWaypoint(t, m)
	// The burst: maxTokens requests pass, the next is refused as Envoy's
	// local rate limit refuses.
	for i := range 3 {
		if resp, body := w.do(vip, curlID, get("/limited")); resp.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d %q", i, resp.StatusCode, body)
		}
	}
	emptied := time.Now()
	resp, body := w.do(vip, curlID, get("/limited"))
	if resp.StatusCode != http.StatusTooManyRequests || body != "local_rate_limited" {
		t.Fatalf("over the limit: %d %q, want 429 local_rate_limited", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("429 content-type %q, want text/plain", got)
	}
	hits := a.Hits()
	if hits != 3 {
		t.Fatalf("backend saw %d requests, want the 3 allowed", hits)
	}
	// The other rule has no limit.
	for range 5 {
		if resp, _ := w.do(vip, curlID, get("/other")); resp.StatusCode != 200 {
			t.Fatalf("unlimited rule: %d", resp.StatusCode)
		}
	}
	// An update that leaves the policy alone keeps the bucket's state:
	// still empty, not refilled to 3.
	w.apply(m + `
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: ns}
spec: {clusterIP: 127.0.100.9, ports: [{name: http, port: 80}]}
`)
	if resp, _ := w.do(vip, curlID, get("/limited")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after an unrelated update: %d, want 429 (the bucket kept)", resp.StatusCode)
	}
	// Refill: one token after a fill interval.
	time.Sleep(time.Until(emptied.Add(1100 * time.Millisecond)))
	if resp, body := w.do(vip, curlID, get("/limited")); resp.StatusCode != 200 {
		t.Fatalf("after a fill interval: %d %q", resp.StatusCode, body)
	}
}

func TestTrafficPolicyGatewayLevel(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	// No route at all: the Gateway's policy applies to the service's traffic.
	w := startWaypoint(t, svcManifests(a.addr)+`
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: gw, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]
  rateLimit:
    local:
      tokenBucket: {maxTokens: 1, fillInterval: 100s}
  headerModifiers:
    request:
      set: [{name: x-policy, value: gw}]
      remove: [x-secret]
    response:
      add: [{name: x-policy-resp, value: gw}]
`)
	resp, body := w.do(vip, curlID, get("/", "X-Secret", "s"))
	if resp.StatusCode != 200 {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if got := e.Headers["X-Policy"]; len(got) != 1 || got[0] != "gw" {
		t.Errorf("upstream x-policy %v, want [gw]", got)
	}
	if _, ok := e.Headers["X-Secret"]; ok {
		t.Error("x-secret reached the backend")
	}
	if got := resp.Header.Get("X-Policy-Resp"); got != "gw" {
		t.Errorf("response x-policy-resp %q, want gw", got)
	}
	resp, body = w.do(vip, curlID, get("/"))
	if resp.StatusCode != 429 || body != "local_rate_limited" {
		t.Fatalf("second request: %d %q, want 429", resp.StatusCode, body)
	}
	// The waypoint's own replies carry the policy's response headers too.
	if got := resp.Header.Get("X-Policy-Resp"); got != "gw" {
		t.Errorf("429 x-policy-resp %q, want gw", got)
	}
}

func TestTrafficPolicyHeadersPrecedence(t *testing.T) {
	// The rule's own Gateway API filter applies after (so over) the
	// policy's header modifier.
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
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-both, value: rule}]}
    - type: ExtensionRef
      extensionRef: {group: gateway.kgateway.dev, kind: TrafficPolicy, name: hdr}
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: hdr, namespace: ns}
spec:
  headerModifiers:
    request:
      set: [{name: x-both, value: policy}, {name: x-only-policy, value: "1"}]
`)
	resp, body := w.do(vip, curlID, get("/"))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if got := e.Headers["X-Both"]; len(got) != 1 || got[0] != "rule" {
		t.Errorf("x-both %v, want [rule] (the rule's filter wins)", got)
	}
	if got := e.Headers["X-Only-Policy"]; len(got) != 1 || got[0] != "1" {
		t.Errorf("x-only-policy %v, want [1]", got)
	}
}

func TestTrafficPolicyCORS(t *testing.T) {
	m, a := routeManifests(t, `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: cors, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  cors:
    allowOrigins: [https://app.example.com]
    allowMethods: [GET, PUT]
    allowHeaders: [x-custom]
    maxAge: 120
`)
	w := startWaypoint(t, m)
	resp, _ := w.do(vip, curlID, newReq("OPTIONS", "/x", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "PUT"))
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET, PUT" || resp.Header.Get("Access-Control-Max-Age") != "120" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if a.Hits() != 0 {
		t.Fatal("the preflight went upstream")
	}
	resp, _ = w.do(vip, curlID, newReq("OPTIONS", "/x", "", "Origin", "https://evil.example.com", "Access-Control-Request-Method", "PUT"))
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin allowed: %v", resp.Header)
	}
	resp, _ = w.do(vip, curlID, get("/x", "Origin", "https://app.example.com"))
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("actual request: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestTrafficPolicyBuffer(t *testing.T) {
	m, a := routeManifests(t, `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: buf, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  buffer: {maxRequestSize: "16"}
`)
	w := startWaypoint(t, m)
	resp, body := w.do(vip, curlID, newReq("POST", "/x", strings.Repeat("a", 16)))
	if resp.StatusCode != 200 || decodeEcho(t, body).Body != strings.Repeat("a", 16) {
		t.Fatalf("a body at the limit: %d %q", resp.StatusCode, body)
	}
	resp, body = w.do(vip, curlID, newReq("POST", "/x", strings.Repeat("a", 17)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || body != "Payload Too Large" {
		t.Fatalf("a body over the limit: %d %q, want 413", resp.StatusCode, body)
	}
	// Chunked (no Content-Length): found too large while buffering.
	req := newReq("POST", "/x", "")
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	req.Body = io.NopCloser(strings.NewReader(strings.Repeat("b", 40)))
	resp, _ = w.do(vip, curlID, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a chunked body over the limit: %d, want 413", resp.StatusCode)
	}
	if a.Hits() != 1 {
		t.Fatalf("backend saw %d requests, want only the one within the limit", a.Hits())
	}
}

func TestTrafficPolicyCSRF(t *testing.T) {
	m, a := routeManifests(t, `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: csrf, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  csrf:
    percentageEnabled: 100
    additionalOrigins: [{suffix: .trusted.example, ignoreCase: true}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: shadow, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: limited}]
  csrf: {percentageShadowed: 100}
`)
	w := startWaypoint(t, m)
	cases := []struct {
		name, method, path string
		hdr                []string
		want               int
	}{
		{"safe method, foreign origin", "GET", "/x", []string{"Origin", "http://evil.example"}, 200},
		{"same origin", "POST", "/x", []string{"Origin", "http://svc:80"}, 200},
		{"foreign origin", "POST", "/x", []string{"Origin", "http://evil.example"}, 403},
		{"no origin", "DELETE", "/x", nil, 403},
		{"referer of the host", "PUT", "/x", []string{"Referer", "http://svc:80/page"}, 200},
		{"additional origin", "PATCH", "/x", []string{"Origin", "https://App.Trusted.Example"}, 200},
		{"shadowed rule lets it through", "POST", "/limited", []string{"Origin", "http://evil.example"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := w.do(vip, curlID, newReq(tc.method, tc.path, "", tc.hdr...))
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %q, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == 403 && body != "Invalid origin" {
				t.Fatalf("403 body %q, want Envoy's \"Invalid origin\"", body)
			}
		})
	}
	if a.Hits() != 5 {
		t.Errorf("backend saw %d requests, want the 5 allowed", a.Hits())
	}
}

// timeouts.streamIdle replaces the waypoint's stream idle timeout (5
// minutes by default) for the rule's requests: a hanging backend gets the
// client a 408 after it, while the other rule keeps the default.
func TestTrafficPolicyStreamIdle(t *testing.T) {
	hb := startHangingBackend(t, "127.0.1.1")
	w := startWaypoint(t, svcManifests(hb.addr)+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - name: quick
    matches: [{path: {type: PathPrefix, value: /quick}}]
    backendRefs: [{name: svc, port: 80}]
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: idle, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: quick}]
  timeouts: {streamIdle: 300ms}
`)
	start := time.Now()
	resp, body := w.do(vip, curlID, get("/quick/hang"))
	if resp.StatusCode != http.StatusRequestTimeout || body != "stream timeout" {
		t.Fatalf("%d %q, want 408 stream timeout", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("408 after %v, want about 300ms", d)
	}
	// The other rule: still waiting after a second (the default is 5m).
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "GET /other HTTP/1.1\r\nHost: svc\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the rule without the policy ended (%d bytes, %v) within a second", n, err)
	}
}
