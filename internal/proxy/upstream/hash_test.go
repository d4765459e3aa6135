package upstream

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func hashBackend(t *testing.T, eps []string, ch ir.ConsistentHash) (*Backend, *Outlier) {
	t.Helper()
	o := NewOutlier()
	b := NewBackend("ns/svc:80", &ir.Backend{Endpoints: eps, ConsistentHash: &ch}, o)
	if b.Hashing() == nil {
		t.Fatal("backend does not hash")
	}
	return b, o
}

func pickFor(t *testing.T, b *Backend, key string) string {
	t.Helper()
	ep, ok := b.PickKey(HashKey(key), true, 0)
	if !ok {
		t.Fatalf("no endpoint for %q", key)
	}
	return ep
}

var hashEps = []string{"10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80", "10.1.0.5:80"}

func algorithms() map[string]ir.ConsistentHash {
	return map[string]ir.ConsistentHash{
		"ring":         {Header: "x-user"},
		"ring 64":      {Header: "x-user", MinimumRingSize: 64},
		"maglev":       {Header: "x-user", Maglev: true},
		"maglev small": {Header: "x-user", Maglev: true, TableSize: 251},
	}
}

// TestHashSameKeySameEndpoint: a key always lands on one endpoint, every
// endpoint gets keys, and no endpoint gets far more than its share.
func TestHashSameKeySameEndpoint(t *testing.T) {
	for name, ch := range algorithms() {
		t.Run(name, func(t *testing.T) {
			b, _ := hashBackend(t, hashEps, ch)
			count := map[string]int{}
			const keys = 5000
			for k := range keys {
				key := fmt.Sprintf("user-%d", k)
				first := pickFor(t, b, key)
				for range 3 {
					if again := pickFor(t, b, key); again != first {
						t.Fatalf("key %s went to %s, then %s", key, first, again)
					}
				}
				count[first]++
			}
			// A rebuilt backend (a new configuration, another replica)
			// sends the keys to the same endpoints.
			b2, _ := hashBackend(t, slices.Clone(hashEps), ch)
			for k := range 200 {
				key := fmt.Sprintf("user-%d", k)
				if pickFor(t, b, key) != pickFor(t, b2, key) {
					t.Fatalf("key %s: another build of the same table disagrees", key)
				}
			}
			if len(count) != len(hashEps) {
				t.Fatalf("keys reached %d of %d endpoints: %v", len(count), len(hashEps), count)
			}
			for ep, n := range count {
				// Fair share 1000; a ring of 64 points is coarse.
				if n < keys/len(hashEps)/3 || n > keys/len(hashEps)*3 {
					t.Errorf("endpoint %s got %d of %d keys: %v", ep, n, keys, count)
				}
			}
		})
	}
}

// TestHashRemovalMovesOnlyItsKeys: with one endpoint gone, the keys of
// the others stay where they were (exactly, for a ring; nearly all, for
// Maglev, whose table is refilled).
func TestHashRemovalMovesOnlyItsKeys(t *testing.T) {
	for name, ch := range algorithms() {
		t.Run(name, func(t *testing.T) {
			b, _ := hashBackend(t, hashEps, ch)
			fewer := slices.Delete(slices.Clone(hashEps), 2, 3) // 10.1.0.3 leaves
			b2, _ := hashBackend(t, fewer, ch)
			moved, stayed, orphans := 0, 0, 0
			for k := range 5000 {
				key := fmt.Sprintf("user-%d", k)
				before, after := pickFor(t, b, key), pickFor(t, b2, key)
				if after == hashEps[2] {
					t.Fatalf("key %s went to the removed endpoint", key)
				}
				switch {
				case before == hashEps[2]:
					orphans++
				case before != after:
					moved++
				default:
					stayed++
				}
			}
			if orphans == 0 {
				t.Fatal("the removed endpoint had no keys")
			}
			limit := 0
			if ch.Maglev {
				limit = (stayed + moved) / 10
			}
			if moved > limit {
				t.Errorf("%d keys of the remaining endpoints moved (limit %d), %d stayed", moved, limit, stayed)
			}
		})
	}
}

// TestHashSkipsEjected: an ejected endpoint's keys go elsewhere while it
// is out, the other keys stay, and when all are ejected a key still gets
// its own endpoint (panic mode).
func TestHashSkipsEjected(t *testing.T) {
	for name, ch := range algorithms() {
		t.Run(name, func(t *testing.T) {
			b, o := hashBackend(t, hashEps, ch)
			before := map[string]string{}
			for k := range 2000 {
				key := fmt.Sprintf("user-%d", k)
				before[key] = pickFor(t, b, key)
			}
			bad := hashEps[1]
			for range o.Consecutive {
				b.Report(bad, false)
			}
			if !o.Ejected(bad) {
				t.Fatal("endpoint not ejected")
			}
			moved := 0
			for key, ep := range before {
				now := pickFor(t, b, key)
				if now == bad {
					t.Fatalf("key %s still goes to the ejected endpoint", key)
				}
				if ep != bad && now != ep {
					moved++
				}
			}
			if moved > 0 {
				t.Errorf("%d keys of healthy endpoints moved", moved)
			}
			for _, ep := range hashEps {
				for range o.Consecutive {
					b.Report(ep, false)
				}
			}
			for key, ep := range before {
				if now := pickFor(t, b, key); now != ep {
					t.Fatalf("all ejected: key %s got %s, want its own %s", key, now, ep)
				}
				break
			}
		})
	}
}

// TestHashRetryMovesOn: a retry (attempt 1) of a key lands on another
// endpoint, the one the key goes to when the first is ejected.
func TestHashRetryMovesOn(t *testing.T) {
	b, _ := hashBackend(t, hashEps, ir.ConsistentHash{Cookie: &ir.HashCookie{Name: "s"}})
	differ := 0
	for k := range 1000 {
		h := HashKey(fmt.Sprintf("user-%d", k))
		a, _ := b.PickKey(h, true, 0)
		c, _ := b.PickKey(h, true, 1)
		if a != c {
			differ++
		}
	}
	if differ != 1000 {
		t.Errorf("a retry changed endpoint for only %d of 1000 keys", differ)
	}
	// The retry's endpoint is where the key goes with the first ejected.
	h := HashKey("user-7")
	first, _ := b.PickKey(h, true, 0)
	retry, _ := b.PickKey(h, true, 1)
	o := b.health[b.index[first]].o
	for range o.Consecutive {
		b.Report(first, false)
	}
	if now, _ := b.PickKey(h, true, 0); now != retry {
		t.Errorf("with %s ejected the key goes to %s, its retry went to %s", first, now, retry)
	}
}

// TestHashNoKeySpreads: requests without a key are spread at random.
func TestHashNoKeySpreads(t *testing.T) {
	b, _ := hashBackend(t, hashEps, ir.ConsistentHash{Header: "x-user"})
	seen := map[string]bool{}
	for range 500 {
		ep, ok := b.PickKey(0, false, 0)
		if !ok {
			t.Fatal("no endpoint")
		}
		seen[ep] = true
	}
	if len(seen) != len(hashEps) {
		t.Errorf("keyless picks reached %d of %d endpoints", len(seen), len(hashEps))
	}
}

// TestHashWithinClosestTier: with a traffic distribution the hash keeps
// to the closest tier, and moves to the next only when it is all ejected.
func TestHashWithinClosestTier(t *testing.T) {
	o := NewOutlier()
	b := NewBackendAt("ns/svc:80", &ir.Backend{Endpoints: eps, Localities: locs,
		TrafficDistribution: ir.TrafficDistributionPreferSameZone,
		ConsistentHash:      &ir.ConsistentHash{Header: "x-user"}}, o, here)
	zone := map[string]bool{eps[0]: true, eps[1]: true, eps[2]: true}
	got := map[string]bool{}
	for k := range 600 {
		ep := pickFor(t, b, fmt.Sprintf("user-%d", k))
		if !zone[ep] {
			t.Fatalf("key went to %s, outside the waypoint's zone", ep)
		}
		got[ep] = true
	}
	if len(got) != 3 {
		t.Fatalf("keys reached %d of the 3 endpoints of the zone", len(got))
	}
	for ep := range zone {
		for range o.Consecutive {
			b.Report(ep, false)
		}
	}
	for k := range 100 {
		if ep := pickFor(t, b, fmt.Sprintf("user-%d", k)); ep != eps[3] {
			t.Fatalf("zone ejected: key went to %s, want the region's %s", ep, eps[3])
		}
	}
}

// TestHashWeights: an endpoint of weight 3 gets about three times the
// keys of one of weight 1.
func TestHashWeights(t *testing.T) {
	for _, maglev := range []bool{false, true} {
		t.Run(fmt.Sprint("maglev=", maglev), func(t *testing.T) {
			b := NewBackend("ns/svc:80", &ir.Backend{Endpoints: hashEps[:2], Weights: map[string]uint32{hashEps[0]: 3},
				ConsistentHash: &ir.ConsistentHash{Header: "x", Maglev: maglev}}, NewOutlier())
			n := 0
			for k := range 4000 {
				if pickFor(t, b, fmt.Sprintf("user-%d", k)) == hashEps[0] {
					n++
				}
			}
			if n < 2700 || n > 3300 {
				t.Errorf("weight 3 of 4 got %d of 4000 keys", n)
			}
		})
	}
}

// TestPickKeyNoAlloc: a hashed pick allocates nothing.
func TestPickKeyNoAlloc(t *testing.T) {
	for name, ch := range algorithms() {
		b, _ := hashBackend(t, hashEps, ch)
		h := HashKey("user-1")
		if n := testing.AllocsPerRun(1000, func() { _, _ = b.PickKey(h, true, 0) }); n != 0 {
			t.Errorf("%s: PickKey allocates %v times", name, n)
		}
	}
}

// TestRandomSpreads: RANDOM reaches every endpoint and skips an ejected one.
func TestRandomSpreads(t *testing.T) {
	o := NewOutlier()
	b := NewBackend("ns/svc:80", &ir.Backend{Endpoints: hashEps, LoadBalancer: ir.LoadBalancerRandom}, o)
	for range o.Consecutive {
		b.Report(hashEps[0], false)
	}
	seen := map[string]int{}
	for range 1000 {
		ep, _ := b.Pick()
		seen[ep]++
	}
	if seen[hashEps[0]] != 0 {
		t.Errorf("ejected endpoint picked %d times", seen[hashEps[0]])
	}
	if len(seen) != len(hashEps)-1 {
		t.Errorf("random picks reached %d of %d healthy endpoints: %v", len(seen), len(hashEps)-1, seen)
	}
}
