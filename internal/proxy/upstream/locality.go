package upstream

import "github.com/kgateway-dev/kgateway-waypoint/internal/ir"

// Place is where the waypoint runs: its locality and its node. Known is
// false when the waypoint does not know it (no --locality, and its node
// is not in the configuration): then every endpoint is equally close.
type Place struct {
	ir.Locality
	Node  string
	Known bool
}

// tiers ranks a backend's endpoints by closeness to self as istiod has
// Envoy rank them (failover priorities): PreferSameZone compares
// [region, zone], PreferSameNode [region, zone, subzone, node], and an
// endpoint's tier is the number of those left after the first that
// differs from the waypoint's (0 when all match), so the same zone comes
// first, then the same region, then the rest. Values are compared as
// strings, an unknown one being empty, as Envoy's labels are. Empty
// tiers are dropped; nil when there is nothing to rank (one tier).
//
// Envoy moves traffic to the next tier gradually as a tier's healthy share
// falls below 1/1.4 (overprovisioning); the waypoint moves a tier's
// traffic only once none of its endpoints is healthy.
func tiers(b *ir.Backend, self Place) [][]int32 {
	if !self.Known || len(b.Endpoints) < 2 {
		return nil
	}
	var depth int
	switch b.TrafficDistribution {
	case ir.TrafficDistributionPreferSameZone:
		depth = 2
	case ir.TrafficDistributionPreferSameNode:
		depth = 4
	default:
		return nil
	}
	mine := [4]string{self.Region, self.Zone, self.Subzone, self.Node}
	byTier := make([][]int32, depth+1)
	where := make(map[string]*ir.EndpointLocality, len(b.Localities))
	for i := range b.Localities {
		where[b.Localities[i].Endpoint] = &b.Localities[i]
	}
	for i, ep := range b.Endpoints {
		var theirs [4]string
		if l := where[ep]; l != nil {
			theirs = [4]string{l.Region, l.Zone, l.Subzone, l.Node}
		}
		tier := 0
		for j := range depth {
			if mine[j] != theirs[j] {
				tier = depth - j
				break
			}
		}
		byTier[tier] = append(byTier[tier], int32(i))
	}
	out := byTier[:0]
	for _, t := range byTier {
		if len(t) > 0 {
			out = append(out, t)
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// weightedTiers gives each tier (nil: one of every endpoint) its weighted
// round-robin sequence (weightedOrder over the tier's endpoints), so that
// round robin and the two random choices of LEAST_REQUEST favour heavy
// endpoints as their weights say.
func weightedTiers(ts [][]int32, b *ir.Backend) [][]int32 {
	if ts == nil {
		all := make([]int32, len(b.Endpoints))
		for i := range all {
			all[i] = int32(i)
		}
		ts = [][]int32{all}
	}
	out := make([][]int32, len(ts))
	for k, t := range ts {
		eps := make([]string, len(t))
		for j, i := range t {
			eps[j] = b.Endpoints[i]
		}
		order := weightedOrder(eps, b.Weights)
		out[k] = make([]int32, len(order))
		for j, o := range order {
			out[k][j] = t[o]
		}
	}
	return out
}
