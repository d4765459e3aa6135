package config

import (
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// The waypoint's place comes from its node's entry in NodeLocalities (or
// Shared.Locality); when it changes, the backends ranked by locality are
// built again for the new place, and the others are kept.
func TestCompilePlaceFollowsNodeLocalities(t *testing.T) {
	mk := func(zone string) *ir.Waypoint {
		return &ir.Waypoint{
			Gateway:        ir.NamespacedName{Namespace: "ns", Name: "wp"},
			NodeLocalities: map[string]ir.Locality{"n1": {Region: "r1", Zone: zone}},
			Backends: map[string]*ir.Backend{
				"ns/close:80": {Service: ir.NamespacedName{Namespace: "ns", Name: "close"}, Port: 80, Protocol: "HTTP1",
					Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}, TrafficDistribution: ir.TrafficDistributionPreferSameZone,
					Localities: []ir.EndpointLocality{
						{Endpoint: "10.0.0.1:80", Locality: ir.Locality{Region: "r1", Zone: "a"}},
						{Endpoint: "10.0.0.2:80", Locality: ir.Locality{Region: "r1", Zone: "b"}},
					}},
				"ns/any:80": {Service: ir.NamespacedName{Namespace: "ns", Name: "any"}, Port: 80, Protocol: "HTTP1",
					Endpoints: []string{"10.0.1.1:80", "10.0.1.2:80"}},
			},
		}
	}
	sh := testShared(t)
	sh.NodeName = "n1"
	picks := func(c *Config) map[string]bool {
		got := map[string]bool{}
		for range 4 {
			ep, _ := c.Backend("ns/close:80").Pick()
			got[ep] = true
		}
		return got
	}
	a, err := Compile(mk("a"), nil, sh)
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Place(); !p.Known || p.Zone != "a" || p.Node != "n1" {
		t.Fatalf("place %+v, want n1's zone a", p)
	}
	if got := picks(a); len(got) != 1 || !got["10.0.0.1:80"] {
		t.Fatalf("in zone a picked %v", got)
	}
	same, err := Compile(mk("a"), a, sh)
	if err != nil {
		t.Fatal(err)
	}
	if same.Backend("ns/close:80") != a.Backend("ns/close:80") {
		t.Error("an unchanged place rebuilt the ranked backend")
	}
	b, err := Compile(mk("b"), same, sh)
	if err != nil {
		t.Fatal(err)
	}
	if got := picks(b); len(got) != 1 || !got["10.0.0.2:80"] {
		t.Fatalf("node relabelled to zone b: picked %v", got)
	}
	if b.Backend("ns/any:80") != a.Backend("ns/any:80") {
		t.Error("a backend without a traffic distribution was rebuilt for a new place")
	}
	// Shared.Locality wins; a node not listed knows no place (one tier).
	sh.Locality = &ir.Locality{Region: "r1", Zone: "b"}
	if c, err := Compile(mk("a"), nil, sh); err != nil || c.Place().Zone != "b" {
		t.Fatalf("explicit locality: %v %+v", err, c.Place())
	}
	sh.Locality, sh.NodeName = nil, "elsewhere"
	c, err := Compile(mk("a"), nil, sh)
	if err != nil {
		t.Fatal(err)
	}
	if c.Place().Known {
		t.Fatalf("unknown node: place %+v", c.Place())
	}
	if got := picks(c); len(got) != 2 {
		t.Fatalf("no known place: picked %v, want both endpoints", got)
	}
}
