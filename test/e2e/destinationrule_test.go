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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// namedBackends serves "backend <ip>" on each loopback IP, all on one port.
func namedBackends(t *testing.T, ips ...string) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	port := "0"
	for _, ip := range ips {
		ln, err := net.Listen("tcp", ip+":"+port)
		if err != nil {
			t.Fatal(err)
		}
		name := ip
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend %s", name)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		port = fmt.Sprint(ap.Port())
		out = append(out, ap)
	}
	return out
}

// The real binary in standalone mode keeps a client on one endpoint with
// a DestinationRule's cookie hash: the first response sets the cookie
// (name, path, ttl of the rule), every request that carries it reaches the
// same one of three endpoints, other cookies reach the others; the field
// it does not honour (connectionPool) is reported in the log and in
// /debug/status.
func TestStandaloneDestinationRuleStickySessions(t *testing.T) {
	eps := namedBackends(t, "127.0.204.1", "127.0.204.2", "127.0.204.3")
	var addrs []string
	for _, e := range eps {
		addrs = append(addrs, fmt.Sprintf("%q", e.Addr().String()))
	}
	manifests := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  clusterIP: 127.0.204.100
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-1, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: [%s]}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart-sticky, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: cart-session, path: /, ttl: 600s}
    connectionPool: {tcp: {maxConnections: 10}}
`, eps[0].Port(), strings.Join(addrs, ", "))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.204.9"), freeAddr(t, "127.0.204.9")
	p := start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	get := func(cookie string) (string, string) {
		t.Helper()
		c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
			Source: netip.MustParseAddrPort("127.0.210.9:40000"), Destination: netip.MustParseAddrPort("127.0.204.100:80"),
			Identity: "spiffe://cluster.local/ns/shop/sa/web"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "http://cart.shop/items", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		return string(body), resp.Header.Get("Set-Cookie")
	}
	first, set := get("")
	m := regexp.MustCompile(`^cart-session="([0-9a-f]+)"; Max-Age=600; Path=/; HttpOnly$`).FindStringSubmatch(set)
	if m == nil {
		t.Fatalf("Set-Cookie %q, want cart-session with Max-Age=600, Path=/, HttpOnly", set)
	}
	for i := range 30 {
		got, again := get("cart-session=" + m[1])
		if got != first {
			t.Fatalf("request %d with the cookie answered by %q, the first by %q", i, got, first)
		}
		if again != "" {
			t.Fatalf("the cookie was sent, yet set again: %q", again)
		}
	}
	reached := map[string]bool{}
	for k := range 30 {
		body, _ := get(fmt.Sprintf("cart-session=client-%d", k))
		reached[body] = true
	}
	if len(reached) != 3 {
		t.Fatalf("30 cookies reached %d of 3 endpoints: %v", len(reached), reached)
	}

	waitFor(t, 5*time.Second, "the unsupported field in the log", func() bool {
		return strings.Contains(p.output(), "trafficPolicy.connectionPool")
	})
	resp, err := http.Get("http://" + status + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st struct {
		Conditions []struct{ Kind, Name, Type, Status, Reason, Message string }
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("/debug/status: %v: %s", err, raw)
	}
	found := false
	for _, c := range st.Conditions {
		if c.Kind == "DestinationRule" && c.Name == "cart-sticky" && c.Type == "WaypointAccepted" && c.Status == "True" &&
			c.Reason == "UnsupportedValue" && strings.Contains(c.Message, "trafficPolicy.connectionPool") {
			found = true
		}
	}
	if !found {
		t.Fatalf("/debug/status has no UnsupportedValue condition on cart-sticky naming connectionPool: %s", raw)
	}
}
