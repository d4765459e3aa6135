package upstream

import (
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Weighted endpoints get their share in every round of the sequence, the
// heavy one's turns spread out; equal weights reduce to one turn each;
// huge weights are scaled down, each endpoint keeping a turn.
func TestWeightedOrder(t *testing.T) {
	eps := []string{"a:1", "b:1", "c:1"}
	order := weightedOrder(eps, map[string]uint32{"a:1": 4, "b:1": 2}) // c: 1
	counts := map[int]int{}
	for _, i := range order {
		counts[i]++
	}
	if len(order) != 7 || counts[0] != 4 || counts[1] != 2 || counts[2] != 1 {
		t.Fatalf("order %v, want a 4, b 2, c 1 turns", order)
	}
	for k := 1; k < len(order); k++ {
		if order[k] == order[k-1] && order[k] != 0 {
			t.Errorf("order %v: a light endpoint's turns in a row", order)
		}
	}
	if o := weightedOrder(eps, map[string]uint32{"a:1": 5, "b:1": 5, "c:1": 5}); len(o) != 3 {
		t.Errorf("equal weights: %v, want one turn each", o)
	}
	o := weightedOrder(eps, map[string]uint32{"a:1": 1 << 30, "b:1": 1})
	seen := map[int]bool{}
	for _, i := range o {
		seen[i] = true
	}
	if len(o) > maxOrder+len(eps) || !seen[1] || !seen[2] {
		t.Errorf("huge weights: %d turns, endpoints seen %v", len(o), seen)
	}

	// Pick follows the sequence.
	b := NewBackend("k", &ir.Backend{Endpoints: eps, Weights: map[string]uint32{"a:1": 4, "b:1": 2}}, NewOutlier())
	got := map[string]int{}
	for range 14 {
		ep, _ := b.Pick()
		got[ep]++
	}
	if got["a:1"] != 8 || got["b:1"] != 4 || got["c:1"] != 2 {
		t.Errorf("14 picks: %v, want a 8, b 4, c 2", got)
	}
}
