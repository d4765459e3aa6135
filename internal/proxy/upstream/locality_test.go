package upstream

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// The waypoint in r1/r1-a/rack1 on node n1, and where a table of endpoints
// runs (10.0.0.9 has no known place).
var (
	here = Place{Locality: ir.Locality{Region: "r1", Zone: "r1-a", Subzone: "rack1"}, Node: "n1", Known: true}
	eps  = []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80", "10.0.0.6:80", "10.0.0.9:80"}
	locs = []ir.EndpointLocality{
		{Endpoint: "10.0.0.1:80", Locality: ir.Locality{Region: "r1", Zone: "r1-a", Subzone: "rack1"}, Node: "n1"}, // same node
		{Endpoint: "10.0.0.2:80", Locality: ir.Locality{Region: "r1", Zone: "r1-a", Subzone: "rack1"}, Node: "n2"}, // same subzone
		{Endpoint: "10.0.0.3:80", Locality: ir.Locality{Region: "r1", Zone: "r1-a", Subzone: "rack2"}, Node: "n3"}, // same zone
		{Endpoint: "10.0.0.4:80", Locality: ir.Locality{Region: "r1", Zone: "r1-b"}, Node: "n4"},                   // same region
		{Endpoint: "10.0.0.5:80", Locality: ir.Locality{Region: "r2", Zone: "r1-a"}, Node: "n5"},                   // zone name alike, other region
		{Endpoint: "10.0.0.6:80", Locality: ir.Locality{Zone: "r1-a"}},                                             // zone known, region not
	}
)

func names(t [][]int32) string {
	var out []string
	for _, tier := range t {
		var s []string
		for _, i := range tier {
			s = append(s, eps[i][7:8])
		}
		out = append(out, fmt.Sprint(s))
	}
	return fmt.Sprint(out)
}

// TestTiers ranks endpoints as istiod's failover priorities have Envoy do:
// the longest matching prefix of [region, zone] (PreferSameZone) or
// [region, zone, subzone, node] (PreferSameNode) first.
func TestTiers(t *testing.T) {
	for _, c := range []struct {
		name string
		td   string
		self Place
		want string
	}{
		{"same zone, then region, then any", ir.TrafficDistributionPreferSameZone, here, "[[1 2 3] [4] [5 6 9]]"},
		{"same node, subzone, zone, region, any", ir.TrafficDistributionPreferSameNode, here, "[[1] [2] [3] [4] [5 6 9]]"},
		{"no distribution: one tier", "", here, "[]"},
		{"unknown distribution: one tier", "Elsewhere", here, "[]"},
		{"the waypoint's place unknown: one tier", ir.TrafficDistributionPreferSameZone, Place{Node: "n1"}, "[]"},
		// A waypoint whose node has no topology labels matches the
		// endpoints that have none either, as Envoy compares labels.
		{"unlabelled waypoint", ir.TrafficDistributionPreferSameZone, Place{Known: true}, "[[9] [6] [1 2 3 4 5]]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &ir.Backend{Endpoints: eps, Localities: locs, TrafficDistribution: c.td}
			if got := names(tiers(b, c.self)); got != c.want {
				t.Errorf("tiers %s, want %s", got, c.want)
			}
		})
	}
}

// Pick keeps to the closest tier with an endpoint not ejected, falls back
// tier by tier, and picks among all in panic mode; it never allocates.
func TestPickTiersAndEjection(t *testing.T) {
	o := NewOutlier()
	o.Consecutive = 1
	b := NewBackendAt("k", &ir.Backend{Endpoints: eps, Localities: locs, TrafficDistribution: ir.TrafficDistributionPreferSameZone}, o, here)
	seen := func() []string {
		var got []string
		for range 12 {
			ep, ok := b.Pick()
			if !ok {
				t.Fatal("no endpoint")
			}
			if !slices.Contains(got, ep) {
				got = append(got, ep)
			}
		}
		slices.Sort(got)
		return got
	}
	if got := seen(); fmt.Sprint(got) != "[10.0.0.1:80 10.0.0.2:80 10.0.0.3:80]" {
		t.Fatalf("picked %v, want the same zone's three", got)
	}
	b.Report("10.0.0.1:80", false)
	b.Report("10.0.0.2:80", false)
	if got := seen(); fmt.Sprint(got) != "[10.0.0.3:80]" {
		t.Fatalf("picked %v, want the zone's healthy one", got)
	}
	b.Report("10.0.0.3:80", false)
	if got := seen(); fmt.Sprint(got) != "[10.0.0.4:80]" {
		t.Fatalf("picked %v, want the region's", got)
	}
	b.Report("10.0.0.4:80", false)
	if got := seen(); fmt.Sprint(got) != "[10.0.0.5:80 10.0.0.6:80 10.0.0.9:80]" {
		t.Fatalf("picked %v, want the rest", got)
	}
	for _, ep := range eps[4:] {
		b.Report(ep, false)
	}
	if got := seen(); len(got) != len(eps) {
		t.Fatalf("all ejected: picked %v, want every endpoint in turn (panic mode)", got)
	}
	b.Report("10.0.0.1:80", true) // still ejected for its time
	if allocs := testing.AllocsPerRun(100, func() { b.Pick() }); allocs != 0 {
		t.Errorf("Pick allocates %v times", allocs)
	}
}

// LEAST_REQUEST: of two endpoints, the one with fewer in flight; Begin
// and End count; a tier's ejected endpoints are skipped.
func TestPickLeastRequest(t *testing.T) {
	o := NewOutlier()
	o.Consecutive = 1
	ir2 := &ir.Backend{Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}, LoadBalancer: ir.LoadBalancerLeastRequest}
	b := NewBackend("k", ir2, o)
	b.Begin("10.0.0.1:80")
	b.Begin("10.0.0.1:80")
	b.Begin("10.0.0.2:80")
	for range 50 {
		if ep, _ := b.Pick(); ep != "10.0.0.2:80" {
			t.Fatalf("picked %s with 2 in flight over 1", ep)
		}
	}
	b.End("10.0.0.1:80")
	b.End("10.0.0.1:80")
	for range 50 {
		if ep, _ := b.Pick(); ep != "10.0.0.1:80" {
			t.Fatalf("picked %s with 1 in flight over 0", ep)
		}
	}
	// The busy one when the idle one is ejected.
	b.Report("10.0.0.1:80", false)
	for range 50 {
		if ep, _ := b.Pick(); ep != "10.0.0.2:80" {
			t.Fatalf("picked the ejected %s", ep)
		}
	}
	b.End("10.0.0.2:80")
	// Among more endpoints both choices are random: every healthy one is
	// picked sometime (a bounded loop: stops as soon as all were seen).
	many := &ir.Backend{Endpoints: eps, Localities: locs, LoadBalancer: ir.LoadBalancerLeastRequest, TrafficDistribution: ir.TrafficDistributionPreferSameZone}
	m := NewBackendAt("m", many, NewOutlier(), here)
	got := map[string]bool{}
	for i := 0; i < 10000 && len(got) < 3; i++ {
		ep, _ := m.Pick()
		got[ep] = true
	}
	if len(got) != 3 || !got["10.0.0.1:80"] || !got["10.0.0.2:80"] || !got["10.0.0.3:80"] {
		t.Errorf("least request over the closest tier picked %v", got)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		ep, _ := m.Pick()
		m.Begin(ep)
		m.End(ep)
	}); allocs != 0 {
		t.Errorf("a least-request pick allocates %v times", allocs)
	}
}

// Endpoint weights (a ServiceEntry's) apply within the closest tier.
func TestPickWeightedTiers(t *testing.T) {
	b := NewBackendAt("k", &ir.Backend{
		Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
		Weights:   map[string]uint32{"10.0.0.1:80": 3, "10.0.0.2:80": 1, "10.0.0.3:80": 9},
		Localities: []ir.EndpointLocality{
			{Endpoint: "10.0.0.1:80", Locality: here.Locality},
			{Endpoint: "10.0.0.2:80", Locality: here.Locality},
			{Endpoint: "10.0.0.3:80", Locality: ir.Locality{Region: "r2"}},
		},
		TrafficDistribution: ir.TrafficDistributionPreferSameZone,
	}, NewOutlier(), here)
	got := map[string]int{}
	for range 8 {
		ep, _ := b.Pick()
		got[ep]++
	}
	if got["10.0.0.1:80"] != 6 || got["10.0.0.2:80"] != 2 || len(got) != 2 {
		t.Errorf("picks %v, want 6 and 2 within the zone (weights 3:1), none of the heavy one elsewhere", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { b.Pick() }); allocs != 0 {
		t.Errorf("Pick allocates %v times", allocs)
	}
}
