package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// stickySessions, in the cluster walkthrough: a user's DestinationRule
// for sticky sessions (consistentHash on a cookie, with a ttl) applied with
// kubectl keeps a client on one of three endpoints through the waypoint
// proxy (the controller's xDS), and the waypoint's condition on the rule
// says it is applied. The three endpoints are three ports of the stand-in
// pod IP (three EndpointSlices), as there is one pod network.
func stickySessions(t *testing.T, kubectl func(string, ...string) string, podNet *podNetwork, inbound string) {
	t.Helper()
	var slices []string
	for i, port := range []int{9101, 9102, 9103} {
		ln := podNet.Listen(t, port)
		name := fmt.Sprint("cart-", i)
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		ep := netip.MustParseAddrPort(ln.Addr().String())
		slices = append(slices, fmt.Sprintf(`---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-e2e-%d, namespace: httpbin, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
ports: [{name: http, port: %d, protocol: TCP}]
endpoints: [{addresses: ["%s"], conditions: {ready: true}}]
`, i, ep.Port(), ep.Addr()))
	}
	kubectl(`apiVersion: v1
kind: Service
metadata: {name: cart, namespace: httpbin}
spec:
  ports: [{name: http, port: 80}]
`+strings.Join(slices, ""), "apply", "-f", "-")
	vip := strings.TrimSpace(kubectl("", "-n", "httpbin", "get", "svc", "cart", "-o", "jsonpath={.spec.clusterIP}"))
	dst := netip.AddrPortFrom(netip.MustParseAddr(vip), 80)
	reached := map[string]bool{}
	waitFor(t, 10*time.Second, "round robin over cart's three endpoints", func() bool {
		// Closed until the proxy has the new Service: not yet an error.
		code, body, _, err := tryCurl(inbound, dst, "")
		if err == nil && code == 200 {
			reached[body] = true
		}
		return len(reached) == 3
	})

	kubectl(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart-sticky, namespace: httpbin}
spec:
  host: cart.httpbin.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: cart-session, path: /, ttl: 300s}
`, "apply", "-f", "-")
	re := regexp.MustCompile(`^cart-session="([0-9a-f]+)"; Max-Age=300; Path=/; HttpOnly$`)
	var cookie, first string
	waitFor(t, 10*time.Second, "the waypoint to set the sticky cookie", func() bool {
		code, body, setCookie, err := tryCurl(inbound, dst, "")
		m := re.FindStringSubmatch(setCookie)
		if err != nil || code != 200 || m == nil {
			return false
		}
		cookie, first = "cart-session="+m[1], body
		return true
	})
	for i := range 20 {
		resp, body := curl(t, inbound, dst, "GET", "/", "Cookie", cookie)
		if resp.StatusCode != 200 || body != first {
			t.Fatalf("request %d with the sticky cookie: %d %q, the first went to %q", i, resp.StatusCode, body, first)
		}
	}
	waitFor(t, 10*time.Second, "the rule's WaypointAccepted condition", func() bool {
		out := kubectl("", "-n", "httpbin", "get", "destinationrule", "cart-sticky",
			"-o", `jsonpath={.status.kgatewayWaypoint.conditions[?(@.type=="kgateway-waypoint.kgateway.dev/WaypointAccepted")].reason}`)
		return out == "Accepted"
	})
}

// tryCurl is curl's GET / with failures returned, for polling.
func tryCurl(inbound string, dst netip.AddrPort, cookie string) (code int, body, setCookie string, err error) {
	c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
		Source: netip.MustParseAddrPort("127.0.230.20:40000"), Destination: dst,
		Identity: "spiffe://cluster.local/ns/httpbin/sa/curl"})
	if err != nil {
		return 0, "", "", err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest("GET", "http://cart.httpbin/", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if err := req.Write(c); err != nil {
		return 0, "", "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, "", "", err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header.Get("Set-Cookie"), err
}
