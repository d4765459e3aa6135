package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// DestinationRule consistent hashing over real sockets: four echo backends
// on loopback behind service svc (127.0.100.1:80).

func stickyManifests(policy string, bs ...*backend) string {
	var eps []netip.AddrPort
	for _, b := range bs {
		eps = append(eps, b.addr)
	}
	return svcManifests(eps...) + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: ns}
spec:
  host: svc.ns.svc.cluster.local
  trafficPolicy:
    loadBalancer:
` + policy
}

// backendFor sends one request with the given headers and returns which
// backend answered and the response.
func backendFor(t *testing.T, w *waypoint, hdr ...string) (string, *http.Response) {
	t.Helper()
	resp, body := w.do("127.0.100.1:80", curlID, get("/", hdr...))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return decodeEcho(t, body).Backend, resp
}

var setCookieRE = regexp.MustCompile(`^session="([0-9a-f]+)"; Max-Age=3600; Path=/app; HttpOnly$`)

// TestStickyCookieGenerated: a client without the cookie gets one made up
// by the waypoint, with the rule's name, path and ttl; with it, every
// request goes to one endpoint; the cookie is not set again.
func TestStickyCookieGenerated(t *testing.T) {
	bs := backendsOn(t, "127.0.41.1", "127.0.41.2", "127.0.41.3", "127.0.41.4")
	w := startWaypoint(t, stickyManifests(`      consistentHash:
        httpCookie: {name: session, path: /app, ttl: 3600s}
`, bs...))
	first, resp := backendFor(t, w)
	sc := resp.Header.Values("Set-Cookie")
	if len(sc) != 1 || !setCookieRE.MatchString(sc[0]) {
		t.Fatalf("Set-Cookie %q, want one session cookie with Max-Age=3600, Path=/app, HttpOnly", sc)
	}
	value := setCookieRE.FindStringSubmatch(sc[0])[1]
	for i := range 40 {
		got, resp := backendFor(t, w, "Cookie", "other=1; session=\""+value+"\"")
		if got != first {
			t.Fatalf("request %d with the cookie went to %s, the first to %s", i, got, first)
		}
		if v := resp.Header.Values("Set-Cookie"); len(v) != 0 {
			t.Fatalf("the cookie was sent, yet the waypoint set one: %q", v)
		}
	}
	if bs[indexOf(bs, first)].Hits() != 41 {
		t.Fatalf("the chosen backend served %d of 41 requests", bs[indexOf(bs, first)].Hits())
	}
}

func indexOf(bs []*backend, name string) int {
	for i, b := range bs {
		if b.name == name {
			return i
		}
	}
	return -1
}

// TestStickyCookiesSpread: different cookies reach different endpoints,
// each one always the same; without a ttl no cookie is made up and a
// request without one goes anywhere.
func TestStickyCookiesSpread(t *testing.T) {
	bs := backendsOn(t, "127.0.42.1", "127.0.42.2", "127.0.42.3", "127.0.42.4")
	w := startWaypoint(t, stickyManifests(`      consistentHash:
        httpCookie: {name: session}
`, bs...))
	where := map[string]string{}
	reached := map[string]bool{}
	for k := range 40 {
		c := fmt.Sprintf("session=user-%d", k)
		got, _ := backendFor(t, w, "Cookie", c)
		where[c] = got
		reached[got] = true
	}
	if len(reached) < 3 {
		t.Fatalf("40 cookies reached %d of 4 endpoints", len(reached))
	}
	for c, ep := range where {
		for range 3 {
			if got, _ := backendFor(t, w, "Cookie", c); got != ep {
				t.Fatalf("%s went to %s, then %s", c, ep, got)
			}
		}
	}
	reached = map[string]bool{}
	for range 40 {
		got, resp := backendFor(t, w)
		if v := resp.Header.Values("Set-Cookie"); len(v) != 0 {
			t.Fatalf("no ttl, yet a cookie was set: %q", v)
		}
		reached[got] = true
	}
	if len(reached) < 2 {
		t.Fatalf("requests without the cookie all went to one endpoint: %v", reached)
	}
}

// TestStickyHeader: hashing on a header keeps each value on one endpoint
// and spreads the values.
func TestStickyHeader(t *testing.T) {
	bs := backendsOn(t, "127.0.43.1", "127.0.43.2", "127.0.43.3")
	w := startWaypoint(t, stickyManifests(`      consistentHash:
        httpHeaderName: X-User
        maglev: {}
`, bs...))
	reached := map[string]bool{}
	for k := range 30 {
		u := fmt.Sprint("u", k)
		first, _ := backendFor(t, w, "x-user", u)
		reached[first] = true
		for range 3 {
			if got, _ := backendFor(t, w, "X-User", u); got != first {
				t.Fatalf("x-user %s went to %s, then %s", u, first, got)
			}
		}
	}
	if len(reached) != 3 {
		t.Fatalf("30 users reached %d of 3 endpoints", len(reached))
	}
}

// TestStickySourceIP: useSourceIp keeps each client address on one
// endpoint, for HTTP requests whatever the source port.
func TestStickySourceIP(t *testing.T) {
	bs := backendsOn(t, "127.0.44.1", "127.0.44.2", "127.0.44.3")
	w := startWaypoint(t, stickyManifests(`      consistentHash: {useSourceIp: true}
`, bs...))
	reached := map[string]bool{}
	for k := range 20 {
		var first string
		for port := range 4 {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 45, byte(10 + k)}), uint16(40000+port))
			c, err := meshclient.Dial(context.Background(), w.addr, meshclient.Conn{Source: src,
				Destination: netip.MustParseAddrPort("127.0.100.1:80"), Identity: curlID})
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			resp, body := roundTrip(t, c, bufio.NewReader(c), get("/"))
			_ = c.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := decodeEcho(t, body).Backend
			if port == 0 {
				first = got
				reached[got] = true
			} else if got != first {
				t.Fatalf("client %s went to %s, then %s", src.Addr(), first, got)
			}
		}
	}
	if len(reached) < 2 {
		t.Fatalf("20 clients reached %d of 3 endpoints", len(reached))
	}
}

// TestStickyEndpointRemoved: when an endpoint leaves, only its clients
// move; the others keep theirs. And when an endpoint is down, its clients
// are served by another (the retry moves on along the ring).
func TestStickyEndpointRemoved(t *testing.T) {
	bs := backendsOn(t, "127.0.46.1", "127.0.46.2", "127.0.46.3", "127.0.46.4")
	policy := `      consistentHash:
        httpCookie: {name: session}
`
	w := startWaypoint(t, stickyManifests(policy, bs...))
	where := map[string]string{}
	for k := range 60 {
		c := fmt.Sprintf("session=user-%d", k)
		where[c], _ = backendFor(t, w, "Cookie", c)
	}
	gone := bs[2]
	orphans := 0
	// Down first: its clients get another endpoint, the others stay.
	_ = gone.srv.Close()
	for c, ep := range where {
		got, _ := backendFor(t, w, "Cookie", c)
		switch {
		case ep == gone.name:
			orphans++
			if got == gone.name {
				t.Fatalf("%s still answered by the stopped backend", c)
			}
		case got != ep:
			t.Fatalf("%s moved from %s to %s while %s was down", c, ep, got, gone.name)
		}
	}
	if orphans == 0 {
		t.Fatal("the removed endpoint had none of 60 cookies")
	}
	// Then removed from the configuration.
	w.apply(stickyManifests(policy, bs[0], bs[1], bs[3]))
	for c, ep := range where {
		got, _ := backendFor(t, w, "Cookie", c)
		if ep != gone.name && got != ep {
			t.Fatalf("%s moved from %s to %s when %s was removed", c, ep, got, gone.name)
		}
	}
}

// TestDestinationRuleOutlierDetection over sockets: with the rule's
// consecutive5xxErrors: 2 and maxEjectionPercent: 50, endpoints answering
// 500 are ejected, but only one of the two; without the rule 500s eject
// nothing.
func TestDestinationRuleOutlierDetection(t *testing.T) {
	bs := backendsOn(t, "127.0.48.1", "127.0.48.2")
	w := startWaypoint(t, svcManifests(bs[0].addr, bs[1].addr))
	for range 10 {
		w.do("127.0.100.1:80", curlID, get("/?status=500"))
	}
	if w.proxy.EndpointEjected(bs[0].addr.String()) || w.proxy.EndpointEjected(bs[1].addr.String()) {
		t.Fatal("500s ejected an endpoint without a DestinationRule")
	}
	w.apply(stickyManifests(`      simple: ROUND_ROBIN
    outlierDetection: {consecutive5xxErrors: 2, baseEjectionTime: 60s, maxEjectionPercent: 50}
`, bs...))
	for range 10 {
		resp, _ := w.do("127.0.100.1:80", curlID, get("/?status=500"))
		if resp.StatusCode != 500 {
			t.Fatalf("status %d, want the backend's 500", resp.StatusCode)
		}
	}
	a, b := w.proxy.EndpointEjected(bs[0].addr.String()), w.proxy.EndpointEjected(bs[1].addr.String())
	if a == b {
		t.Fatalf("ejected: %v, %v; want exactly one (maxEjectionPercent 50)", a, b)
	}
	// The other one serves everything while the first is out.
	healthy := bs[0]
	if !b {
		healthy = bs[1]
	}
	before := healthy.Hits()
	for range 4 {
		w.do("127.0.100.1:80", curlID, get("/"))
	}
	if healthy.Hits()-before != 4 {
		t.Fatalf("the endpoint not ejected served %d of 4", healthy.Hits()-before)
	}
}

// TestDestinationRuleConnectionPool over sockets: maxRequestsPerConnection
// closes an upstream connection after that many requests, idleTimeout one
// idle that long; without the rule one keep-alive connection serves all.
func TestDestinationRuleConnectionPool(t *testing.T) {
	bs := backendsOn(t, "127.0.49.1")
	b := bs[0]
	w := startWaypoint(t, svcManifests(b.addr))
	for range 6 {
		w.do("127.0.100.1:80", curlID, get("/"))
	}
	if n := b.Conns(); n != 1 {
		t.Fatalf("without the rule: %d upstream connections for 6 requests, want 1", n)
	}
	w.apply(stickyManifests(`      simple: ROUND_ROBIN
    connectionPool: {http: {maxRequestsPerConnection: 2}}
`, b))
	for range 6 {
		w.do("127.0.100.1:80", curlID, get("/"))
	}
	// The idle connection of before serves one more (its 7th, past the
	// limit: closed after), then three new ones 2, 2 and 1.
	if n := b.Conns(); n != 4 {
		t.Fatalf("maxRequestsPerConnection 2: %d upstream connections in all after 6 more requests, want 4", n)
	}
	w.apply(stickyManifests(`      simple: ROUND_ROBIN
    connectionPool: {http: {idleTimeout: 0.1s}}
`, b))
	w.do("127.0.100.1:80", curlID, get("/"))
	before := b.Conns()
	time.Sleep(300 * time.Millisecond)
	w.do("127.0.100.1:80", curlID, get("/"))
	if n := b.Conns(); n != before+1 {
		t.Fatalf("idleTimeout 100ms: after 300ms idle %d new connections, want 1", n-before)
	}
	w.do("127.0.100.1:80", curlID, get("/"))
	if n := b.Conns(); n != before+1 {
		t.Fatalf("idleTimeout 100ms: a request right after opened a connection (%d new)", n-before)
	}
}
