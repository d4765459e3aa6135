// Package meshgen generates the control-plane scale mesh: N services (2
// ports and 2 endpoints each, N/5 HTTPRoutes, N/10 AuthorizationPolicies)
// as manifests. meshbench's scale runs (bench/internal/scale) and the Go
// benchmarks of the packages they measure (internal/source/files,
// internal/translate, internal/proxy) use the same mesh, so their figures
// can be compared.
package meshgen

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// Shape of the generated mesh.
const (
	ServicesPerNamespace = 100
	RoutesEvery          = 5  // one HTTPRoute per 5 services
	PoliciesEvery        = 10 // one AuthorizationPolicy per 10 services
	HTTPPort             = 8080
	TCPPort              = 9090
	GatewayNamespace     = "mesh"
	GatewayName          = "mesh-waypoint"
)

// Counts is what a generated mesh holds.
type Counts struct {
	Services, Ports, Endpoints, HTTPRoutes, Policies int
}

// CountsFor returns the counts of a mesh of n services.
func CountsFor(n int) Counts {
	return Counts{Services: n, Ports: 2 * n, Endpoints: 2 * n, HTTPRoutes: n / RoutesEvery, Policies: n / PoliciesEvery}
}

// HotService is the service the load goes to (svc-00000 in ns-000): its
// endpoints are the benchmark's backend, its route adds HotHeader and its
// policy allows the benchmark's client.
var HotService = struct{ Namespace, Name string }{"ns-000", "svc-00000"}

// HotHeader is the response header the hot service's route adds.
const HotHeader = "x-mesh-route"

// VIP is service i's cluster IP. VIPs only travel in PROXY headers; nothing
// is ever sent to them. They are in 127.96.0.0/16 all the same.
func VIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 96, byte(i / 250), byte(i%250 + 1)})
}

// endpoint is endpoint j (0 or 1) of service i: loopback addresses that
// nothing listens on (only the hot service's endpoints are dialled).
func endpoint(i, j int) netip.Addr {
	k := 2*i + j
	return netip.AddrFrom4([4]byte{127, 97, byte(k / 250), byte(k%250 + 1)})
}

// Manifests generates the mesh of n services as one multi-document YAML.
// hot are the hot service's two endpoints (the backend); clientPrincipal is
// allowed by the hot service's policy; routeValue is the value of the hot
// route's added header (change it to make a one-route change).
func Manifests(n int, hot [2]netip.AddrPort, clientPrincipal, routeValue string) []byte {
	var b strings.Builder
	b.Grow(n * 1400)
	fmt.Fprintf(&b, `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  gatewayClassName: kgateway-waypoint
  listeners:
  - name: mesh
    protocol: istio.io/PROXY
    port: 15088
    allowedRoutes:
      namespaces:
        from: All
`, GatewayNamespace, GatewayName)
	for ns := 0; ns*ServicesPerNamespace < n; ns++ {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Namespace
metadata:
  name: ns-%03d
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: %s
    istio.io/use-waypoint-namespace: %s
`, ns, GatewayName, GatewayNamespace)
	}
	for i := 0; i < n; i++ {
		writeService(&b, i, hot, clientPrincipal, routeValue)
	}
	return []byte(b.String())
}

func writeService(b *strings.Builder, i int, hot [2]netip.AddrPort, clientPrincipal, routeValue string) {
	ns := fmt.Sprintf("ns-%03d", i/ServicesPerNamespace)
	name := fmt.Sprintf("svc-%05d", i)
	httpTarget, tcpTarget := HTTPPort, TCPPort
	ep := [2]string{endpoint(i, 0).String(), endpoint(i, 1).String()}
	if i == 0 {
		httpTarget = int(hot[0].Port())
		ep = [2]string{hot[0].Addr().String(), hot[1].Addr().String()}
	}
	fmt.Fprintf(b, `---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  clusterIP: %[3]s
  ports:
  - name: http
    port: %[4]d
    targetPort: %[6]d
  - name: tcp-data
    port: %[5]d
    targetPort: %[7]d
  selector:
    app: %[1]s
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-abcde
  namespace: %[2]s
  labels:
    kubernetes.io/service-name: %[1]s
addressType: IPv4
ports:
- name: http
  port: %[6]d
  protocol: TCP
- name: tcp-data
  port: %[7]d
  protocol: TCP
endpoints:
- addresses: ["%[8]s"]
  conditions:
    ready: true
- addresses: ["%[9]s"]
  conditions:
    ready: true
`, name, ns, VIP(i), HTTPPort, TCPPort, httpTarget, tcpTarget, ep[0], ep[1])

	if i%RoutesEvery == 0 {
		// Canary traffic (header match) is split 90/10 with the next
		// service; everything else gets a response header.
		value := fmt.Sprintf("route-%05d", i)
		if i == 0 {
			value = routeValue
		}
		other := fmt.Sprintf("svc-%05d", i+1)
		fmt.Fprintf(b, `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: %[1]s-route
  namespace: %[2]s
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: %[1]s
    port: %[3]d
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /api/v2
      headers:
      - name: x-canary
        value: "true"
    backendRefs:
    - name: %[1]s
      port: %[3]d
      weight: 90
    - name: %[4]s
      port: %[3]d
      weight: 10
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: %[1]s
      port: %[3]d
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: %[5]s
          value: %[6]s
`, name, ns, HTTPPort, other, HotHeader, value)
	}
	if i%PoliciesEvery == 0 {
		principals := fmt.Sprintf(`["cluster.local/ns/%s/sa/client-*", "cluster.local/ns/%s/sa/worker"`, ns, GatewayNamespace)
		if i == 0 {
			principals += fmt.Sprintf(`, %q`, clientPrincipal)
		}
		principals += "]"
		fmt.Fprintf(b, `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: %[1]s-allow
  namespace: %[2]s
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: %[1]s
  action: ALLOW
  rules:
  - from:
    - source:
        principals: %[3]s
    to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/", "/api/*"]
  - from:
    - source:
        namespaces: ["%[4]s"]
    to:
    - operation:
        ports: ["%[5]d"]
`, name, ns, principals, GatewayNamespace, TCPPort)
	}
}

// HotRoute is the index of the hot service's HTTPRoute in snap.HTTPRoutes,
// or -1 when the snapshot has none.
func HotRoute(snap *source.Snapshot) int {
	return slices.IndexFunc(snap.HTTPRoutes, func(r *gwv1.HTTPRoute) bool {
		return r.Namespace == HotService.Namespace && r.Name == HotService.Name+"-route"
	})
}

// WithRouteValue is snap with one change: the HTTPRoute at index hot (see
// HotRoute) gets v as the value of its added response header, as a user
// editing one route would. snap itself is not modified.
func WithRouteValue(snap *source.Snapshot, hot int, v string) *source.Snapshot {
	out := *snap
	out.HTTPRoutes = slices.Clone(snap.HTTPRoutes)
	r := out.HTTPRoutes[hot].DeepCopy()
	r.Spec.Rules[1].Filters[0].ResponseHeaderModifier.Add[0].Value = v
	out.HTTPRoutes[hot] = r
	return &out
}

// Generate is Manifests for benchmarks that send no traffic: the hot
// service's endpoints are 127.0.0.1:18080 and 127.0.0.2:18080 and the
// allowed client is cluster.local/ns/bench/sa/client.
func Generate(n int) []byte {
	hot := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:18080"), netip.MustParseAddrPort("127.0.0.2:18080")}
	return Manifests(n, hot, "cluster.local/ns/bench/sa/client", "v0")
}
