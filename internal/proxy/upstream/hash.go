package upstream

import (
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Consistent hashing (a DestinationRule's consistentHash), as Envoy's
// RING_HASH and MAGLEV load balancers do it: the table is built once per
// configuration from the endpoints' addresses (xxHash64, as Envoy), so
// every replica of the waypoint sends a key to the same endpoint and an
// endpoint that leaves takes only its own keys with it. A pick is a binary
// search in the ring or one index into the Maglev table: no allocation.
//
// With locality tiers each tier has a table of its own and a pick keeps to
// the closest tier with an endpoint not ejected, as Envoy keeps a ring per
// priority. An ejected endpoint is skipped by walking on from the key's
// place (for a ring, exactly as if it were not on it), and a retry goes to
// the next distinct endpoint on from there (as Envoy's retry host
// predicate re-picks), so it lands elsewhere when it can.

const (
	defaultRingSize   = 1024    // Istio's default minimumRingSize
	maxRingSize       = 1 << 23 // Envoy's default maximum_ring_size
	ringBudget        = 1 << 16 // ring places beyond which they are shared out
	defaultMaglevSize = 65537   // Envoy's default table_size
	maxMaglevSize     = 5000011 // Envoy's limit
)

// hashTable is the ring or Maglev table of one tier: hashes (sorted, ring
// only) and the endpoint index at each place.
type hashTable struct {
	hashes []uint64 // ring points, ascending; nil for Maglev
	at     []int32  // endpoint index per ring point or Maglev slot
}

// HashKey is the hash of a request's key, for PickKey.
func HashKey(s string) uint64 { return xxhash.Sum64String(s) }

// HashBytes is HashKey of a byte string (a source IP).
func HashBytes(b []byte) uint64 { return xxhash.Sum64(b) }

// buildHash compiles a backend's hash tables, one per tier (nil tiers: one
// of every endpoint). Weighted endpoints get a share of the places in
// proportion to their weight.
func buildHash(b *ir.Backend, ts [][]int32) []hashTable {
	ch := b.ConsistentHash
	if ts == nil {
		all := make([]int32, len(b.Endpoints))
		for i := range all {
			all[i] = int32(i)
		}
		ts = [][]int32{all}
	}
	out := make([]hashTable, len(ts))
	for k, t := range ts {
		if ch.Maglev {
			out[k] = maglevTable(b, t, ch.TableSize)
		} else {
			out[k] = ringTable(b, t, ch.MinimumRingSize)
		}
	}
	return out
}

func weightOf(b *ir.Backend, ep string) uint64 {
	if w, ok := b.Weights[ep]; ok && w > 0 {
		return uint64(w)
	}
	return 1
}

// ringTable places each endpoint on the ring at the hashes of
// "address_0", "address_1", ...: minSize places per unit of weight, so
// that an endpoint's places do not depend on the others and only a
// leaver's keys move (Envoy divides the ring's size among the endpoints
// instead, which moves some keys of every endpoint). Past ringBudget
// places in all, an endpoint gets the smallest power of two per unit of
// weight that keeps the ring at ringBudget (at least minSize), so its
// places change only when the endpoint count crosses a power of two.
func ringTable(b *ir.Backend, t []int32, minSize uint64) hashTable {
	if minSize == 0 {
		minSize = defaultRingSize
	}
	minSize = min(minSize, maxRingSize)
	var total uint64
	for _, i := range t {
		total += weightOf(b, b.Endpoints[i])
	}
	unit := minSize
	if budget := max(ringBudget, minSize); total > 0 && unit*total > budget {
		unit = 1
		for unit*total < budget {
			unit *= 2
		}
	}
	type point struct {
		h  uint64
		ep int32
	}
	var pts []point
	buf := make([]byte, 0, 64)
	for _, i := range t {
		ep := b.Endpoints[i]
		n := unit * weightOf(b, ep)
		if total > maxRingSize { // weights past the ring's bound: scaled down
			n = max(1, weightOf(b, ep)*maxRingSize/total)
		}
		for j := range n {
			buf = strconv.AppendUint(append(append(buf[:0], ep...), '_'), j, 10)
			pts = append(pts, point{xxhash.Sum64(buf), i})
		}
	}
	slices.SortFunc(pts, func(x, y point) int {
		switch {
		case x.h < y.h:
			return -1
		case x.h > y.h:
			return 1
		}
		return int(x.ep - y.ep)
	})
	ht := hashTable{hashes: make([]uint64, len(pts)), at: make([]int32, len(pts))}
	for k, p := range pts {
		ht.hashes[k], ht.at[k] = p.h, p.ep
	}
	return ht
}

// maglevTable fills a Maglev lookup table (Eisenbud et al., as Envoy):
// each endpoint has a permutation of the slots from two hashes of its
// address, and the endpoints take turns claiming their next free slot, an
// endpoint of weight w taking w turns per round (weights reduced by their
// common divisor).
func maglevTable(b *ir.Backend, t []int32, size uint64) hashTable {
	if size == 0 {
		size = defaultMaglevSize
	}
	size = min(size, maxMaglevSize)
	m := size
	n := len(t)
	if n == 0 {
		return hashTable{}
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	weight := make([]uint64, n)
	var g uint64
	for k, i := range t {
		ep := b.Endpoints[i]
		offset[k] = xxhash.Sum64String(ep) % m
		skip[k] = xxhash.Sum64String(ep+"#skip")%(m-1) + 1
		weight[k] = weightOf(b, ep)
		g = gcd(g, weight[k])
	}
	for k := range weight {
		weight[k] /= g
	}
	table := make([]int32, m)
	for j := range table {
		table[j] = -1
	}
	filled := uint64(0)
	for filled < m {
		for k := 0; k < n && filled < m; k++ {
			for range weight[k] {
				if filled == m {
					break
				}
				c := (offset[k] + next[k]*skip[k]) % m
				for table[c] >= 0 {
					next[k]++
					c = (offset[k] + next[k]*skip[k]) % m
				}
				table[c] = t[k]
				next[k]++
				filled++
			}
		}
	}
	return hashTable{at: table}
}

// find is the place of key in the table.
func (ht *hashTable) find(key uint64) int {
	if ht.hashes == nil {
		return int(key % uint64(len(ht.at)))
	}
	k, _ := slices.BinarySearch(ht.hashes, key)
	if k == len(ht.hashes) {
		k = 0
	}
	return k
}

// pickHash is the endpoint for key on the attempt-th try: walking the
// table from the key's place, the attempt-th distinct endpoint not ejected
// (a retry goes where the key would go were the endpoints tried before
// gone), in the closest tier that has one; -1 when all are ejected.
func (b *Backend) pickHash(key uint64, attempt int, now int64) int {
	for t := range b.hash {
		ht := &b.hash[t]
		m := len(ht.at)
		if m == 0 {
			continue
		}
		var tried [8]int32 // distinct endpoints passed over, for retries
		n := 0
		start := ht.find(key)
	walk:
		for k := range m {
			i := ht.at[(start+k)%m]
			if b.health[i].ejected(now) {
				continue
			}
			for _, j := range tried[:n] {
				if j == i {
					continue walk
				}
			}
			if n == attempt || n == len(tried) {
				return int(i)
			}
			tried[n] = i
			n++
		}
		if n > 0 { // fewer endpoints than tries: round the ones there are
			return int(tried[attempt%n])
		}
	}
	return -1
}

// Hashing is the backend's consistent hash policy; nil when it balances
// otherwise.
func (b *Backend) Hashing() *ir.ConsistentHash {
	if b.hash == nil {
		return nil
	}
	return b.IR.ConsistentHash
}

// PickKey is Pick for a backend of consistent hashing (Hashing), with the
// hash of the request's key (HashKey); attempt is the try (0 first), each
// retry moving one place on. Without a key (the request has no such
// header, cookie or parameter) it picks at random, as Envoy does. A backend
// that does not hash ignores the key. It does not allocate.
func (b *Backend) PickKey(key uint64, hasKey bool, attempt int) (string, bool) {
	if b.hash == nil {
		return b.Pick()
	}
	n := len(b.endpoints)
	if n == 0 {
		return "", false
	}
	if !hasKey {
		key = rand.Uint64()
	}
	if i := b.pickHash(key, attempt, nanotime()); i >= 0 {
		return b.endpoints[i], true
	}
	// Every endpoint ejected: panic mode, the key's place regardless.
	ht := &b.hash[0]
	return b.endpoints[ht.at[(ht.find(key)+attempt)%len(ht.at)]], true
}
