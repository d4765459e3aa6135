package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
)

// startWaypointOpts is startWaypoint with proxy options (the waypoint's
// node, for locality).
func startWaypointOpts(t *testing.T, opts proxy.Options, manifests string) *waypoint {
	t.Helper()
	p := proxy.New(opts)
	w := &waypoint{t: t, proxy: p}
	w.apply(manifests)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	w.srv = inbound.NewServer(p, inbound.Options{HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 2 * time.Second}})
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = ln.Close()
		_ = w.srv.Close()
		p.Close()
	})
	return w
}

// placed is an endpoint and the node it runs on.
type placed struct {
	addr netip.AddrPort
	node string
}

// localityManifests: the waypoint's pod on node wp-node in zone wpZone of
// region r1; nodes node-a (r1/zone-a), node-b (r1/zone-b), node-c
// (r2/zone-c); service svc (VIP 127.0.100.1:80) with the given traffic
// distribution (spec field; "" none) and extra annotations, its endpoints
// on their nodes.
func localityManifests(wpZone, distribution, annotations string, eps ...placed) string {
	td := ""
	if distribution != "" {
		td = "\n  trafficDistribution: " + distribution
	}
	var b strings.Builder
	b.WriteString(waypointManifests)
	fmt.Fprintf(&b, `---
apiVersion: v1
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
---
apiVersion: v1
kind: Node
metadata: {name: node-c, labels: {topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: zone-c}}
---
apiVersion: v1
kind: Pod
metadata: {name: wp-1, namespace: ns, labels: {gateway.networking.k8s.io/gateway-name: wp}}
spec: {nodeName: wp-node, containers: [{name: proxy, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: ns, annotations: {%s}}
spec:
  clusterIP: 127.0.100.1%s
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: ns, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints:
`, wpZone, annotations, td, eps[0].addr.Port())
	for _, e := range eps {
		fmt.Fprintf(&b, "- {addresses: [%q], nodeName: %s}\n", e.addr.Addr().String(), e.node)
	}
	return b.String()
}

// backendsOn starts one echo backend per IP, all on one port.
func backendsOn(t *testing.T, ips ...string) []*backend {
	first := startBackend(t, ips[0], ips[0], false)
	out := []*backend{first}
	for _, ip := range ips[1:] {
		out = append(out, startBackendOn(t, ip, fmt.Sprintf("%s:%d", ip, first.addr.Port()), false))
	}
	return out
}

// hitsOf sends n requests to svc and counts the answers by backend.
func hitsOf(t *testing.T, w *waypoint, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		resp, body := w.do("127.0.100.1:80", curlID, get("/"))
		if resp.StatusCode != http.StatusOK {
			got[fmt.Sprint(resp.StatusCode)]++
			continue
		}
		got[decodeEcho(t, body).Backend]++
	}
	return got
}

// untilEjected sends requests until the waypoint ejects ep (it fails them:
// its backend is down), at most 50.
func untilEjected(t *testing.T, w *waypoint, ep netip.AddrPort) {
	t.Helper()
	for i := 0; !w.proxy.EndpointEjected(ep.String()); i++ {
		if i == 50 {
			t.Fatalf("%s not ejected after 50 requests", ep)
		}
		w.do("127.0.100.1:80", curlID, get("/"))
	}
}

// PreferClose over real sockets: the waypoint's zone only while it has a
// healthy endpoint, then the waypoint's region, then any.
func TestLocalityPreferCloseFailsOver(t *testing.T) {
	bs := backendsOn(t, "127.0.21.1", "127.0.21.2", "127.0.21.3", "127.0.21.4")
	a1, a2, b1, c1 := bs[0], bs[1], bs[2], bs[3]
	w := startWaypointOpts(t, proxy.Options{NodeName: "wp-node"}, localityManifests("zone-a", "PreferClose", "",
		placed{a1.addr, "node-a"}, placed{a2.addr, "node-a"}, placed{b1.addr, "node-b"}, placed{c1.addr, "node-c"}))

	if got := hitsOf(t, w, 10); got[a1.name] != 5 || got[a2.name] != 5 {
		t.Fatalf("same zone: answers %v, want zone-a's two endpoints in turn", got)
	}
	_ = a1.srv.Close()
	untilEjected(t, w, a1.addr)
	if got := hitsOf(t, w, 6); got[a2.name] != 6 {
		t.Fatalf("one of the zone down: answers %v, want the zone's other endpoint", got)
	}
	_ = a2.srv.Close()
	untilEjected(t, w, a2.addr)
	if got := hitsOf(t, w, 6); got[b1.name] != 6 {
		t.Fatalf("zone down: answers %v, want the region's endpoint (zone-b), not the other region's", got)
	}
	_ = b1.srv.Close()
	untilEjected(t, w, b1.addr)
	if got := hitsOf(t, w, 6); got[c1.name] != 6 {
		t.Fatalf("region down: answers %v, want the other region's endpoint", got)
	}
}

// A node relabelled, or the Service's trafficDistribution changed, takes
// effect with the next configuration, without a restart.
func TestLocalityLiveChange(t *testing.T) {
	bs := backendsOn(t, "127.0.22.1", "127.0.22.2")
	a, b := bs[0], bs[1]
	eps := []placed{{a.addr, "node-a"}, {b.addr, "node-b"}}
	w := startWaypointOpts(t, proxy.Options{NodeName: "wp-node"}, localityManifests("zone-a", "PreferClose", "", eps...))
	if got := hitsOf(t, w, 4); got[a.name] != 4 {
		t.Fatalf("waypoint in zone-a: answers %v", got)
	}
	w.apply(localityManifests("zone-b", "PreferClose", "", eps...)) // wp-node relabelled
	if got := hitsOf(t, w, 4); got[b.name] != 4 {
		t.Fatalf("waypoint's node relabelled to zone-b: answers %v", got)
	}
	// The Istio annotation instead of the spec field.
	w.apply(localityManifests("zone-a", "", "networking.istio.io/traffic-distribution: PreferClose", eps...))
	if got := hitsOf(t, w, 4); got[a.name] != 4 {
		t.Fatalf("annotation PreferClose, waypoint in zone-a: answers %v", got)
	}
	w.apply(localityManifests("zone-a", "", "", eps...))
	if got := hitsOf(t, w, 4); got[a.name] != 2 || got[b.name] != 2 {
		t.Fatalf("no traffic distribution: answers %v, want both in turn", got)
	}
}

// tryGet is a GET on a new connection for other goroutines than the
// test's: failures are returned.
func (w *waypoint) tryGet(dst, path string) (int, error) {
	c, err := meshclient.Dial(context.Background(), w.addr, meshclient.Conn{
		Source: clientAddr, Destination: netip.MustParseAddrPort(dst), Identity: curlID})
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := get(path)
	if err := req.Write(c); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// holdBackend answers /hold only when released (tells arrived first),
// anything else at once.
type holdBackend struct {
	addr    netip.AddrPort
	release chan struct{}
}

func startHoldBackend(t *testing.T, addr string, arrived chan<- netip.AddrPort) *holdBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &holdBackend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), release: make(chan struct{})}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- h.addr
			<-h.release
		}
		rw.Header().Set("X-Backend", h.addr.String())
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return h
}

// LEAST_REQUEST (kgateway.dev/load-balancer): with requests in flight on
// one endpoint, new ones go to the idle one; once they end, both are used.
// The requests are put in flight under round robin (which alternates), and
// the counts carry over to the configuration that turns LEAST_REQUEST on.
func TestLeastRequestPrefersTheIdleEndpoint(t *testing.T) {
	arrived := make(chan netip.AddrPort, 256)
	busy := startHoldBackend(t, "127.0.23.1:0", arrived)
	idle := startHoldBackend(t, fmt.Sprintf("127.0.23.2:%d", busy.addr.Port()), arrived)
	close(idle.release) // idle answers /hold at once
	eps := []placed{{busy.addr, "node-a"}, {idle.addr, "node-b"}}
	w := startWaypointOpts(t, proxy.Options{}, localityManifests("zone-a", "", "", eps...))

	// Requests to /hold, one at a time, until busy holds three (round
	// robin sends every other one there; those idle gets end at once).
	var wg sync.WaitGroup
	defer wg.Wait()
	release := sync.OnceFunc(func() { close(busy.release) })
	defer release() // on failure too (runs before wg.Wait)
	held := 0
	for i := 0; held < 3; i++ {
		if i == 20 {
			t.Fatalf("round robin: busy holds %d of 20 requests", held)
		}
		wg.Go(func() {
			if status, err := w.tryGet("127.0.100.1:80", "/hold"); err != nil || status != http.StatusOK {
				t.Errorf("held request: %d %v", status, err)
			}
		})
		if <-arrived == busy.addr {
			held++
		}
	}
	if n := w.proxy.EndpointInFlight(busy.addr.String()); n != 3 {
		t.Fatalf("busy has %d in flight, want 3", n)
	}
	w.apply(localityManifests("zone-a", "", "kgateway.dev/load-balancer: LEAST_REQUEST", eps...))
	for i := range 20 {
		resp, _ := w.do("127.0.100.1:80", curlID, get("/"))
		if got := resp.Header.Get("X-Backend"); got != idle.addr.String() {
			t.Fatalf("request %d went to %s with 3 in flight there; want the idle %s", i, got, idle.addr)
		}
	}
	// Release busy's requests and wait until their ends are counted.
	release()
	wg.Wait()
	for i := 0; w.proxy.EndpointInFlight(busy.addr.String()) != 0; i++ {
		if i == 5000 {
			t.Fatalf("busy still has %d in flight after its requests ended", w.proxy.EndpointInFlight(busy.addr.String()))
		}
		time.Sleep(time.Millisecond)
	}
	// Both are used again (each pick is two random choices among two,
	// so a tie goes either way).
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("busy never picked again after its requests ended")
		}
		resp, _ := w.do("127.0.100.1:80", curlID, get("/"))
		if resp.Header.Get("X-Backend") == busy.addr.String() {
			break
		}
	}
}

// nameServer is a TCP backend that writes its name on each connection and
// closes it when the client does.
func nameServer(t *testing.T, name, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = c.Write([]byte(name + "\n"))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// LEAST_REQUEST on a TCP port counts open connections: while one is open
// to an endpoint, new ones go to the other; once it closes, both are used.
func TestLeastRequestCountsTCPConnections(t *testing.T) {
	x := nameServer(t, "x", "127.0.24.1:0")
	y := nameServer(t, "y", fmt.Sprintf("127.0.24.2:%d", x.Port()))
	m := strings.Replace(localityManifests("zone-a", "", "kgateway.dev/load-balancer: LEAST_REQUEST",
		placed{x, "node-a"}, placed{y, "node-b"}), "name: http", "name: tcp", 2)
	w := startWaypointOpts(t, proxy.Options{}, m)
	open := func() (net.Conn, string) {
		c := w.dial("127.0.100.1:80", curlID)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the backend's name: %v", err)
		}
		return c, strings.TrimSpace(line)
	}
	addr := map[string]netip.AddrPort{"x": x, "y": y}
	// closeAndWait closes a connection to name's endpoint and waits until
	// the waypoint has counted its end.
	closeAndWait := func(c net.Conn, name string) {
		_ = c.Close()
		for i := 0; w.proxy.EndpointInFlight(addr[name].String()) != 0; i++ {
			if i == 5000 {
				t.Fatalf("%s still has %d in flight after its connections closed", name, w.proxy.EndpointInFlight(addr[name].String()))
			}
			time.Sleep(time.Millisecond)
		}
	}
	held, first := open()
	if n := w.proxy.EndpointInFlight(addr[first].String()); n != 1 {
		t.Fatalf("%s has %d in flight with one connection open", first, n)
	}
	for i := range 10 {
		c, got := open()
		if got == first {
			t.Fatalf("connection %d went to %s, which has one open; want the other", i, got)
		}
		closeAndWait(c, got)
	}
	closeAndWait(held, first)
	// first is picked again; each pick is random between equals.
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatalf("%s never picked again after its connection closed", first)
		}
		c, got := open()
		closeAndWait(c, got)
		if got == first {
			break
		}
	}
}
