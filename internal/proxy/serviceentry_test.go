package proxy_test

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// startWaypointWith is startWaypoint with proxy options.
func startWaypointWith(t *testing.T, opts proxy.Options, manifests string) *waypoint {
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

// An entry istiod auto-allocated addresses for (status.addresses, one per
// host) is reached by each host's own address; an HTTPRoute whose parent
// is one host (kind Hostname) applies to that host only, one whose parent
// is the entry to all its hosts; a DENY policy on the entry applies to it.
func TestServiceEntryAutoAllocatedAddresses(t *testing.T) {
	b := startBackend(t, "ext", "127.0.1.1", false)
	port := strconv.Itoa(int(b.addr.Port()))
	w := startWaypoint(t, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: ns}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: `+port+`}]
  resolution: STATIC
  endpoints: [{address: 127.0.1.1}]
status:
  addresses:
  - {host: a.example.com, value: 127.0.100.31}
  - {host: b.example.com, value: 127.0.100.32}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: only-b, namespace: ns}
spec:
  parentRefs: [{group: networking.istio.io, kind: Hostname, name: b.example.com}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /hostroute}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-host, value: b}]}
    backendRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: whole-entry, namespace: ns}
spec:
  parentRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /entry}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-entry, value: "yes"}]}
    backendRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext, port: 80}]
  - backendRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext, port: 80}]
`+policy("deny-admin", `{group: networking.istio.io, kind: ServiceEntry, name: ext}`, "DENY",
		`  rules: [{to: [{operation: {paths: ["/admin"]}}]}]`))

	resp, body := w.do("127.0.100.31:80", curlID, get("/hostroute"))
	if resp.StatusCode != 200 {
		t.Fatalf("a.example.com by its allocated address: %d %q", resp.StatusCode, body)
	}
	if e := decodeEcho(t, body); e.Backend != "ext" || e.Headers["X-Host"] != nil {
		t.Errorf("a.example.com: backend %q, x-host %v; want ext and no x-host (the Hostname route is b's)", e.Backend, e.Headers["X-Host"])
	}
	resp, body = w.do("127.0.100.32:80", curlID, get("/hostroute"))
	if resp.StatusCode != 200 {
		t.Fatalf("b.example.com by its allocated address: %d %q", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body).Headers["X-Host"]; len(got) != 1 || got[0] != "b" {
		t.Errorf("b.example.com: x-host %v, want [b] from its Hostname route", got)
	}
	for _, vip := range []string{"127.0.100.31:80", "127.0.100.32:80"} {
		resp, body = w.do(vip, curlID, get("/entry"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s /entry: %d %q", vip, resp.StatusCode, body)
		}
		if got := decodeEcho(t, body).Headers["X-Entry"]; len(got) != 1 || got[0] != "yes" {
			t.Errorf("%s /entry: x-entry %v, want [yes] from the route on the entry", vip, got)
		}
		if resp, _ := w.do(vip, curlID, get("/admin")); resp.StatusCode != 403 {
			t.Errorf("%s /admin: %d, want 403 from the DENY policy on the entry", vip, resp.StatusCode)
		}
	}
	// An address allocated to no host of ours is not served.
	expectClosed(t, w.dial("127.0.100.33:80", curlID))
}

// A workloadSelector picks WorkloadEntries: the entry's port reaches the
// WorkloadEntry's address on the port its ports map gives, and weights
// share the requests.
func TestServiceEntryWorkloadEntries(t *testing.T) {
	heavy := startBackend(t, "heavy", "127.0.1.3", false)
	light := startBackendOn(t, "light", "127.0.1.4:"+strconv.Itoa(int(heavy.addr.Port())), false)
	other := startBackend(t, "other", "127.0.1.5", false)
	w := startWaypoint(t, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: ns}
spec:
  hosts: [vms.internal]
  addresses: [127.0.100.40]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: `+strconv.Itoa(int(heavy.addr.Port()))+`}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: heavy, namespace: ns, labels: {app: vm}}
spec: {address: 127.0.1.3, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: light, namespace: ns}
spec: {address: 127.0.1.4, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: one-vm, namespace: ns}
spec:
  hosts: [one.internal]
  addresses: [127.0.100.41]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: other}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: ns, labels: {app: other}}
spec: {address: 127.0.1.5, ports: {http: `+strconv.Itoa(int(other.addr.Port()))+`}}
`)
	resp, body := w.do("127.0.100.41:80", curlID, get("/"))
	if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "other" {
		t.Fatalf("the WorkloadEntry on its ports-map port: %d %q", resp.StatusCode, body)
	}
	counts := map[string]int{}
	for range 8 { // two rounds of the weighted sequence (3 + 1)
		resp, body := w.do("127.0.100.40:80", curlID, get("/"))
		if resp.StatusCode != 200 {
			t.Fatalf("weighted entry: %d %q", resp.StatusCode, body)
		}
		counts[decodeEcho(t, body).Backend]++
	}
	if counts["heavy"] != 6 || counts["light"] != 2 || light.Hits() != 2 {
		t.Errorf("8 requests went %v, want heavy 6 and light 2 (weights 3 and 1)", counts)
	}
}

// dnsServer is a real DNS server on a free loopback port answering A
// queries for names it knows, with the TTL given; it counts queries.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	a    map[string]string // name (FQDN) → IPv4
	ttl  map[string]uint32
	fail atomic.Bool // answer SERVFAIL to everything
	qs   map[string]int
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), a: map[string]string{}, ttl: map[string]uint32{}, qs: map[string]int{}}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(rw dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if d.fail.Load() {
			m.Rcode = dns.RcodeServerFailure
			_ = rw.WriteMsg(m)
			return
		}
		d.mu.Lock()
		name := q.Question[0].Name
		d.qs[name]++
		ip, ok := d.a[name]
		ttl := d.ttl[name]
		d.mu.Unlock()
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
				A: net.ParseIP(ip)})
		}
		_ = rw.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return d
}

func (d *dnsServer) set(name, ip string, ttl uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[name], d.ttl[name] = ip, ttl
}

func (d *dnsServer) queries(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.qs[name]
}

// pollUntil polls a condition (each try does real work: a request).
func pollUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A resolution: DNS entry is sent to the address its host resolves to, as
// a real DNS server answers: asked once, not per request, while the answer
// lives; once its TTL ran out the new answer is used; when the server then
// fails, the last good answer stays in use and the failure is counted.
func TestServiceEntryDNSResolution(t *testing.T) {
	oldB := startBackend(t, "old", "127.0.2.1", false)
	port := strconv.Itoa(int(oldB.addr.Port()))
	startBackendOn(t, "new", "127.0.2.2:"+port, false)
	startBackendOn(t, "steady", "127.0.2.3:"+port, false)
	d := startDNS(t)
	d.set("api.dns.test.", "127.0.2.1", 1)
	d.set("steady.dns.test.", "127.0.2.3", 3600)
	w := startWaypointWith(t, proxy.Options{Upstream: upstream.Options{DNS: upstream.DNSOptions{Servers: []string{d.addr}}}}, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: ns}
spec:
  hosts: [api.dns.test]
  addresses: [127.0.100.50]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: `+port+`}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: steady, namespace: ns}
spec:
  hosts: [steady.internal]
  addresses: [127.0.100.51]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: steady.dns.test, ports: {http: `+port+`}}]
`)
	backendOf := func(vip string) string {
		resp, body := w.do(vip, curlID, get("/"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q", vip, resp.StatusCode, body)
		}
		return decodeEcho(t, body).Backend
	}

	// A long TTL: asked once for any number of requests.
	for range 20 {
		if got := backendOf("127.0.100.51:80"); got != "steady" {
			t.Fatalf("steady.internal went to %q", got)
		}
	}
	if n := d.queries("steady.dns.test."); n != 1 {
		t.Errorf("steady.dns.test asked %d times for 20 requests within its TTL, want 1", n)
	}

	if got := backendOf("127.0.100.50:80"); got != "old" {
		t.Fatalf("api.dns.test went to %q, want old (127.0.2.1)", got)
	}
	d.set("api.dns.test.", "127.0.2.2", 1)
	pollUntil(t, "the new answer in use after the TTL", func() bool { return backendOf("127.0.100.50:80") == "new" })
	if n := d.queries("api.dns.test."); n < 2 {
		t.Errorf("api.dns.test asked %d times, want it asked again after its TTL", n)
	}

	// The server fails from now on: the last answer stays in use.
	d.fail.Store(true)
	pollUntil(t, "a failed re-resolution", func() bool {
		s := w.proxy.DNSStats()
		return s.Failed > 0 && s.Stale == 1
	})
	for range 5 {
		if got := backendOf("127.0.100.50:80"); got != "new" {
			t.Fatalf("after the DNS server failed, api.dns.test went to %q, want new (the last good answer)", got)
		}
	}
	d.fail.Store(false)
	pollUntil(t, "the name resolved again", func() bool { return w.proxy.DNSStats().Stale == 0 })
}

// A name the DNS server does not know (NXDOMAIN) has no address: the
// request gets a 503, and the proxy stays up.
func TestServiceEntryDNSNoSuchName(t *testing.T) {
	d := startDNS(t)
	w := startWaypointWith(t, proxy.Options{Upstream: upstream.Options{DNS: upstream.DNSOptions{Servers: []string{d.addr}}}}, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: nowhere, namespace: ns}
spec:
  hosts: [nowhere.dns.test]
  addresses: [127.0.100.52]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
`)
	if resp, body := w.do("127.0.100.52:80", curlID, get("/")); resp.StatusCode != 503 {
		t.Fatalf("a name with no address: %d %q, want 503", resp.StatusCode, body)
	}
	if s := w.proxy.DNSStats(); s.Empty == 0 {
		t.Errorf("DNSStats %+v: want the empty answer counted", s)
	}
}

// A TCP port of a DNS entry connects to an address of the resolved name.
func TestServiceEntryDNSTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.2.4:0")
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
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				_, _ = c.Write(append([]byte("echo:"), buf[:n]...))
			}()
		}
	}()
	d := startDNS(t)
	d.set("db.dns.test.", "127.0.2.4", 30)
	w := startWaypointWith(t, proxy.Options{Upstream: upstream.Options{DNS: upstream.DNSOptions{Servers: []string{d.addr}}}}, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: ns}
spec:
  hosts: [db.dns.test]
  addresses: [127.0.100.53]
  ports: [{number: 5432, name: tcp, protocol: TCP, targetPort: `+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+`}]
  resolution: DNS
`)
	c := w.dial("127.0.100.53:5432", curlID)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, len("echo:ping"))
	if err != nil || string(buf[:n]) != "echo:ping" {
		t.Fatalf("through the DNS entry's TCP port: %q, %v", buf[:n], err)
	}
}

// An external authorizer whose service is a DNS ServiceEntry's host (in a
// namespace this waypoint does not serve) is reached at the address the
// resolver's DNS server gives, a name no system lookup finds.
func TestServiceEntryDNSExternalAuthorizer(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	host, port := startAuthorizer(t)
	d := startDNS(t)
	d.set("authz.dns.test.", host, 60)
	mesh := `extensionProviders:
- name: ext-http
  envoyExtAuthzHttp:
    service: authz.dns.test
    port: 9000
    includeRequestHeadersInCheck: [x-allow]
`
	manifests := svcManifests(b.addr) + `
---
apiVersion: v1
kind: Namespace
metadata: {name: authz}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: authz, namespace: authz}
spec:
  hosts: [authz.dns.test]
  ports: [{number: 9000, name: http, protocol: HTTP, targetPort: ` + strconv.Itoa(int(port)) + `}]
  resolution: DNS
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  action: CUSTOM
  provider: {name: ext-http}
  rules: [{to: [{operation: {paths: ["/ext/*"]}}]}]
`
	w, _ := startWithMesh(t, manifests, mesh, proxy.Options{Upstream: upstream.Options{DNS: upstream.DNSOptions{Servers: []string{d.addr}}}}, inbound.Options{})
	if resp, body := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes")); resp.StatusCode != 200 {
		t.Fatalf("allowed by the authorizer behind the DNS entry: %d %q", resp.StatusCode, body)
	}
	if resp, _ := w.do(vip, curlID, get("/ext/b")); resp.StatusCode != 401 {
		t.Errorf("denied by the authorizer behind the DNS entry: %d, want its 401", resp.StatusCode)
	}
	if d.queries("authz.dns.test.") == 0 {
		t.Error("the authorizer's name was never asked of the DNS server")
	}
}
