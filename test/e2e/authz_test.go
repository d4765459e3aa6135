package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// The waypoint authorization cases of kgateway's e2e suite
// (test/e2e/features/waypoint/cases_authz.go), run against the real binary:
// services svc-a and svc-b (port 8080) and ServiceEntries se-a and se-b in
// waypoint-test-ns, clients "curl" and "notcurl" in the same namespace.

const authzNS = "waypoint-test-ns"

func authzApps(podA, podB netip.AddrPort) string {
	svc := func(name, vip string, pod netip.AddrPort) string {
		return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[4]s}
spec:
  clusterIP: %[2]s
  ports: [{name: http, port: 8080, targetPort: %[3]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-1, namespace: %[4]s, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: http, port: %[3]d}]
endpoints: [{addresses: ["%[5]s"]}]
`, name, vip, pod.Port(), authzNS, pod.Addr())
	}
	se := func(name, host, addr string, pod netip.AddrPort) string {
		return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: %s}
spec:
  hosts: [%s]
  addresses: [%s]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: %d}]
  resolution: STATIC
  endpoints: [{address: %s}]
`, name, authzNS, host, addr, pod.Port(), pod.Addr())
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels: {istio.io/use-waypoint: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: %[1]s}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
`, authzNS) + svc("svc-a", "127.0.220.1", podA) + svc("svc-b", "127.0.220.2", podB) +
		se("se-a", "se-a.serviceentry.com", "127.0.220.11", podA) + se("se-b", "se-b.serviceentry.com", "127.0.220.12", podB)
}

var authzDestinations = map[string]string{
	"svc-a": "127.0.220.1:8080", "svc-b": "127.0.220.2:8080",
	"se-a.serviceentry.com": "127.0.220.11:80", "se-b.serviceentry.com": "127.0.220.12:80",
}

type authzCheck struct {
	from, to, method, path string
	want                   int
}

func (c authzCheck) String() string {
	return fmt.Sprintf("%s|%s|%s|%s", c.from, c.to, c.method, c.path)
}

// runAuthzCase starts the binary on the apps plus policy (written in ns)
// and checks every request.
func runAuthzCase(t *testing.T, policyNS, policy string, checks []authzCheck) {
	t.Helper()
	podA := startHTTPBackend(t, "127.0.221.1")
	podB := startHTTPBackend(t, "127.0.221.2")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "apps.yaml"), []byte(authzApps(podA, podB)), 0o644); err != nil {
		t.Fatal(err)
	}
	policy = "metadata:\n  namespace: " + policyNS + "\n" + policy
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.222.1"), freeAddr(t, "127.0.222.1")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })
	for _, c := range checks {
		t.Run(c.String(), func(t *testing.T) {
			conn, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
				Source:      netip.MustParseAddrPort("127.0.223.1:40000"),
				Destination: netip.MustParseAddrPort(authzDestinations[c.to]),
				Identity:    "spiffe://cluster.local/ns/" + authzNS + "/sa/" + c.from,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			path := c.path
			if path == "" {
				path = "/"
			}
			req, _ := http.NewRequest(c.method, "http://"+c.to+path, nil)
			if err := req.Write(conn); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.want, body)
			}
			if c.want == 403 && string(body) != "RBAC: access denied" {
				t.Errorf("403 body %q", body)
			}
		})
	}
}

// all16 is every combination of client × service × method × path, denied
// where deny says so.
func all16(deny map[string]bool) []authzCheck {
	var out []authzCheck
	for _, from := range []string{"curl", "notcurl"} {
		for _, svc := range []string{"svc-a", "svc-b"} {
			for _, method := range []string{"GET", "POST"} {
				for _, path := range []string{"", "/admin/"} {
					c := authzCheck{from, svc, method, path, 200}
					if deny[c.String()] {
						c.want = 403
					}
					out = append(out, c)
				}
			}
		}
	}
	return out
}

func TestKgatewayWaypointAuthzCases(t *testing.T) {
	t.Run("TestAuthzNoCurlSvcB", func(t *testing.T) {
		runAuthzCase(t, authzNS, `  name: deny-notcurl-svc-b
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/`+authzNS+`/sa/notcurl"]}}]}]
  targetRefs: [{group: "", kind: Service, name: svc-b}]
`, []authzCheck{
			{"curl", "svc-a", "GET", "", 200}, {"curl", "svc-b", "GET", "", 200},
			{"notcurl", "svc-a", "GET", "", 200}, {"notcurl", "svc-b", "GET", "", 403},
		})
	})
	getDeny := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["GET"], ports: ["8080"]}}]}]
`
	allGetDenied := []authzCheck{
		{"curl", "svc-a", "GET", "", 403}, {"curl", "svc-b", "GET", "", 403},
		{"notcurl", "svc-a", "GET", "", 403}, {"notcurl", "svc-b", "GET", "", 403},
	}
	t.Run("TestAuthzGatewayClassRef", func(t *testing.T) {
		runAuthzCase(t, "istio-system", "  name: authz-gatewayclass-ref\n"+getDeny+
			"  targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: kgateway-waypoint}]\n", allGetDenied)
	})
	t.Run("GatewayClassRefOutsideRootNamespaceIgnored", func(t *testing.T) {
		runAuthzCase(t, authzNS, "  name: authz-gatewayclass-ref\n"+getDeny+
			"  targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: kgateway-waypoint}]\n",
			[]authzCheck{{"curl", "svc-a", "GET", "", 200}, {"notcurl", "svc-b", "GET", "", 200}})
	})
	t.Run("TestAuthzGatewayRef", func(t *testing.T) {
		runAuthzCase(t, authzNS, "  name: authz-gateway-ref\n"+getDeny+
			"  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]\n", allGetDenied)
	})
	t.Run("TestAuthzMultiService", func(t *testing.T) {
		runAuthzCase(t, authzNS, "  name: authz-multi-service\n"+getDeny+
			"  targetRefs: [{group: \"\", kind: Service, name: svc-a}, {group: \"\", kind: Service, name: svc-b}]\n",
			append(allGetDenied,
				authzCheck{"curl", "svc-a", "POST", "", 200}, authzCheck{"curl", "svc-b", "POST", "", 200},
				authzCheck{"notcurl", "svc-a", "POST", "", 200}, authzCheck{"notcurl", "svc-b", "POST", "", 200}))
	})
	t.Run("TestAuthzComplexRule", func(t *testing.T) {
		runAuthzCase(t, authzNS, `  name: authz-complex-rules
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/`+authzNS+`/sa/notcurl"]}}]
    to: [{operation: {methods: ["GET", "POST"], paths: ["/admin/*"]}}]
  targetRefs: [{group: "", kind: Service, name: svc-a}]
`, all16(map[string]bool{"notcurl|svc-a|GET|/admin/": true, "notcurl|svc-a|POST|/admin/": true}))
	})
	t.Run("TestAuthzServiceEntry", func(t *testing.T) {
		runAuthzCase(t, authzNS, `  name: authz-serviceentry
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["GET"]}}]}]
  targetRefs: [{group: networking.istio.io, kind: ServiceEntry, name: se-b}]
`, []authzCheck{
			{"curl", "se-a.serviceentry.com", "GET", "", 200}, {"curl", "se-b.serviceentry.com", "GET", "", 403},
			{"notcurl", "se-a.serviceentry.com", "GET", "", 200}, {"notcurl", "se-b.serviceentry.com", "GET", "", 403},
			{"curl", "se-a.serviceentry.com", "POST", "", 200}, {"curl", "se-b.serviceentry.com", "POST", "", 200},
			{"notcurl", "se-a.serviceentry.com", "POST", "", 200}, {"notcurl", "se-b.serviceentry.com", "POST", "", 200},
		})
	})
}
