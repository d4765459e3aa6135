package standalone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
)

// nodes is the Node file: the waypoint's node wp-node in zone wpZone.
func nodes(wpZone string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: wp-node, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: %s}}
---
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: zone-b}}
`, wpZone)
}

// namedBackend answers every request with its name in X-Backend.
func namedBackend(t *testing.T, name, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", name)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// answeredBy sends a request to web through the waypoint, as ztunnel hands
// it over, and returns the backend that answered.
func answeredBy(t *testing.T, inbound string) string {
	t.Helper()
	c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
		Source: netip.MustParseAddrPort("127.0.0.1:40000"), Destination: netip.MustParseAddrPort("10.96.0.30:80"),
		Identity: "spiffe://cluster.local/ns/app/sa/client"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest("GET", "http://web/", nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Backend")
}

// The standalone waypoint on --node-name wp-node sends PreferClose traffic
// to its zone; relabelling its Node in the files moves it, live. With
// --locality the flag decides.
func TestStandaloneLocalityFollowsTheNodeFile(t *testing.T) {
	a := namedBackend(t, "a", "127.0.31.1:0")
	b := namedBackend(t, "b", fmt.Sprintf("127.0.31.2:%d", a.Port()))
	dir := t.TempDir()
	svc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec: {clusterIP: 10.96.0.30, trafficDistribution: PreferClose, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: app, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints:
- {addresses: [%q], nodeName: node-a}
- {addresses: [%q], nodeName: node-b}
`, a.Port(), a.Addr().String(), b.Addr().String())
	for name, content := range map[string]string{"gateway.yaml": gateway, "web.yaml": svc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nodeFile := filepath.Join(dir, "nodes.yaml")
	writeAtomically(t, nodeFile, nodes("zone-a"))
	dp := dataplane.Options{InboundAddress: "127.0.0.1:0", StatusAddress: "127.0.0.1:0", MetricsAddress: "off", AdminAddress: "off", NodeName: "wp-node"}
	r, err := standalone.Start(standalone.Options{Paths: []string{dir}, DataPlane: dp})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := r.InboundAddr().String()
	for range 4 {
		if got := answeredBy(t, in); got != "a" {
			t.Fatalf("waypoint in zone-a: answered by %s", got)
		}
	}
	writeAtomically(t, nodeFile, nodes("zone-b"))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if got := answeredBy(t, in); got != "b" {
			t.Fatalf("wp-node relabelled to zone-b: answered by %s", got)
		}
	}
	// /debug/status says where the waypoint found itself.
	resp, err := http.Get("http://" + r.StatusAddr().String() + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	var dbg struct {
		Locality map[string]string `json:"locality"`
	}
	err = json.NewDecoder(resp.Body).Decode(&dbg)
	_ = resp.Body.Close()
	if err != nil || dbg.Locality["node"] != "wp-node" || dbg.Locality["region"] != "r1" || dbg.Locality["zone"] != "zone-b" {
		t.Errorf("/debug/status locality %v (%v)", dbg.Locality, err)
	}
	r.Close()

	dp.NodeName, dp.Locality = "", "r1/zone-a"
	r2, err := standalone.Start(standalone.Options{Paths: []string{dir}, DataPlane: dp})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for range 4 {
		if got := answeredBy(t, r2.InboundAddr().String()); got != "a" {
			t.Fatalf("--locality r1/zone-a: answered by %s", got)
		}
	}
	dp.Locality = "r1/zone-a/sub/extra"
	if r3, err := standalone.Start(standalone.Options{Paths: []string{dir}, DataPlane: dp}); err == nil {
		r3.Close()
		t.Fatal("a locality of four parts was accepted")
	}
}
