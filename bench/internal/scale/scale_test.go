package scale

import (
	"net/netip"
	"testing"
	"time"
)

// A small mesh must load and translate completely, and a route change must
// reach the proxy as a new snapshot.
func TestSmallMeshTranslatesAndChanges(t *testing.T) {
	hot := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:18080"), netip.MustParseAddrPort("127.0.0.2:18080")}
	m, err := Build(200, hot, "cluster.local/ns/bench/sa/client")
	if err != nil {
		t.Fatal(err)
	}
	c := m.Counts
	if c.HTTPRoutes != 40 || c.Policies != 20 || c.Endpoints != 400 || len(m.Snap.HTTPRoutes) != 40 || len(m.Snap.AuthorizationPolicies) != 20 {
		t.Fatalf("counts %+v; loaded %d routes, %d policies", c, len(m.Snap.HTTPRoutes), len(m.Snap.AuthorizationPolicies))
	}
	timings, p, err := m.Measure(2)
	if err != nil {
		t.Fatal(err)
	}
	if timings.Translate <= 0 || timings.RouteChange <= 0 || p.Version() != 3 { // a fresh proxy per compile, then 2 route changes
		t.Fatalf("timings %+v, proxy version %d", timings, p.Version())
	}
	if m.WithRouteValue("x").HTTPRoutes[m.hot] == m.Snap.HTTPRoutes[m.hot] {
		t.Fatal("a route change must not modify the original snapshot")
	}
	if Median([]time.Duration{3, 1, 2}) != 2 {
		t.Fatal("median")
	}
}
