package upstream

// maxOrder bounds the weighted round-robin sequence of a backend: past
// it, weights are scaled down (each endpoint keeps at least one turn).
const maxOrder = 4096

// weightedOrder is the sequence of endpoint indexes a weighted backend
// goes round: endpoint i appears weight(i)/g times (g the weights'
// greatest common divisor), interleaved by smooth weighted round robin
// so that a heavy endpoint's turns are spread out rather than in a row.
func weightedOrder(eps []string, weights map[string]uint32) []int {
	w := make([]uint64, len(eps))
	var g, total uint64
	for i, ep := range eps {
		w[i] = 1
		if v, ok := weights[ep]; ok && v > 0 {
			w[i] = uint64(v)
		}
		g = gcd(g, w[i])
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > maxOrder {
		scaled := uint64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxOrder/total)
			scaled += w[i]
		}
		total = scaled
	}
	order := make([]int, 0, total)
	current := make([]int64, len(w))
	for range total {
		best := 0
		for i := range w {
			current[i] += int64(w[i])
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= int64(total)
		order = append(order, best)
	}
	return order
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pickWeighted is Pick over the weighted sequence: the next turn whose
// endpoint is not ejected.
func (b *Backend) pickWeighted() (string, bool) {
	n := uint32(len(b.order))
	start := b.next.Add(1) - 1
	now := nanotime()
	for k := uint32(0); k < n; k++ {
		i := b.order[(start+k)%n]
		if !b.health[i].ejected(now) {
			return b.endpoints[i], true
		}
	}
	return b.endpoints[b.order[start%n]], true // all ejected: panic mode
}
