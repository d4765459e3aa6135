package proxy_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// routedManifests: svc (127.0.100.1:80, endpoints a) and svc2
// (127.0.100.2:80, endpoints b), both served, plus the routes given.
func routedManifests(a, b netip.AddrPort, routes string) string {
	return waypointManifests +
		serviceManifest("svc", "127.0.100.1", 80, "http", "", a) +
		serviceManifest("svc2", "127.0.100.2", 80, "http", "", b) + routes
}

func TestHTTPRouteMatchingAndFilters(t *testing.T) {
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
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: svc2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: svc2, port: 80}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: set}]
        add: [{name: x-add, value: added}]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-backend, value: overwritten}]
        add: [{name: x-route, value: v2}]
        remove: [content-type]
  - matches: [{headers: [{name: x-env, value: canary}]}]
    backendRefs: [{name: svc2, port: 80}]
  - matches: [{method: DELETE}]
    backendRefs: [{name: svc2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}, queryParams: [{name: go, value: b}]}]
    backendRefs: [{name: svc2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: svc, port: 80}]
`))
	cases := []struct {
		name    string
		req     *http.Request
		status  int
		backend string
	}{
		{"exact path", get("/exact"), 200, "b"},
		{"exact path does not match a longer path", get("/exact/more"), 404, ""},
		{"prefix matches the element", get("/v2"), 200, "b"},
		{"prefix matches below the element", get("/v2/x"), 200, "b"},
		{"prefix does not match a longer element", get("/v2example"), 404, ""},
		{"header match", get("/anything", "X-Env", "canary"), 200, "b"},
		{"header value is exact", get("/anything", "X-Env", "canary2"), 404, ""},
		{"method match", newReq("DELETE", "/anything", ""), 200, "b"},
		{"query param match", get("/q?go=b"), 200, "b"},
		{"other route", get("/a/1"), 200, "a"},
		{"no rule matches: 404", get("/nothing"), 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := w.do(vip, curlID, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if tc.backend != "" {
				if got := decodeEcho(t, body).Backend; got != tc.backend {
					t.Errorf("reached %q, want %q", got, tc.backend)
				}
			}
		})
	}
	t.Run("header modifiers", func(t *testing.T) {
		resp, body := w.do(vip, curlID, get("/v2/h", "X-Set", "client", "X-Add", "client", "X-Remove", "gone"))
		e := decodeEcho(t, body)
		if got := e.Headers["X-Set"]; len(got) != 1 || got[0] != "set" {
			t.Errorf("x-set upstream %q", got)
		}
		if got := e.Headers["X-Add"]; len(got) != 2 || got[0] != "client" || got[1] != "added" {
			t.Errorf("x-add upstream %q", got)
		}
		if _, ok := e.Headers["X-Remove"]; ok {
			t.Error("x-remove reached the backend")
		}
		if got := resp.Header.Get("X-Backend"); got != "overwritten" {
			t.Errorf("x-backend %q", got)
		}
		if got := resp.Header.Get("X-Route"); got != "v2" {
			t.Errorf("x-route %q", got)
		}
		if _, ok := resp.Header["Content-Type"]; ok {
			t.Error("content-type was not removed")
		}
	})
	t.Run("a route on svc does not apply to svc2", func(t *testing.T) {
		resp, body := w.do("127.0.100.2:80", curlID, get("/nothing"))
		if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "b" {
			t.Fatalf("status %d body %q: svc2 has no route and goes to itself", resp.StatusCode, body)
		}
	})
}

func TestHTTPRouteBackendsAndFailures(t *testing.T) {
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
  - matches: [{path: {type: PathPrefix, value: /weighted}}]
    backendRefs: [{name: svc, port: 80, weight: 0}, {name: svc2, port: 80, weight: 5}]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: svc, port: 80, weight: 1}, {name: svc2, port: 80, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: svc, port: 80, weight: 0}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: does-not-exist, port: 80}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-rule, value: missing}]
  - matches: [{path: {type: PathPrefix, value: /none}}]
  - matches: [{path: {type: PathPrefix, value: /extension}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Thing, name: t}
    backendRefs: [{name: svc, port: 80}]
`))
	for i := 0; i < 10; i++ {
		_, body := w.do(vip, curlID, get("/weighted"))
		if got := decodeEcho(t, body).Backend; got != "b" {
			t.Fatalf("weight 0 backend got a request (%s)", got)
		}
	}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		_, body := w.do(vip, curlID, get("/split"))
		seen[decodeEcho(t, body).Backend]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("a 1:1 split over 60 requests gave %v", seen)
	}
	for _, path := range []string{"/zero", "/missing", "/none", "/extension"} {
		resp, _ := w.do(vip, curlID, get(path))
		if resp.StatusCode != 500 {
			t.Errorf("%s: status %d, want 500", path, resp.StatusCode)
		}
		if path == "/missing" && resp.Header.Get("X-Rule") != "missing" {
			t.Errorf("%s: the rule's response header is missing from the 500", path)
		}
	}
}

func TestHTTPRouteOnGatewayAndPort(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackend(t, "b", "127.0.1.2", false)
	w := startWaypoint(t, routedManifests(a.addr, b.addr, `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-waypoint, namespace: ns}
spec:
  parentRefs: [{name: wp}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: traversed-waypoint, value: wp}]
    backendRefs: [{name: svc2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-port, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, port: 81}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
`))
	for _, dst := range []string{"127.0.100.1:80", "127.0.100.2:80"} {
		resp, body := w.do(dst, curlID, get("/"))
		if resp.StatusCode != 200 || resp.Header.Get("Traversed-Waypoint") != "wp" || decodeEcho(t, body).Backend != "b" {
			t.Errorf("%s: status %d header %q body %q: the Gateway-attached route applies to every service",
				dst, resp.StatusCode, resp.Header.Get("Traversed-Waypoint"), strings.TrimSpace(body))
		}
	}
}
