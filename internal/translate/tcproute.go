package translate

import (
	"fmt"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// attachTCPRoutes binds TCPRoutes to the TCP service ports they name; the
// port's connections then go to the route's weighted backends instead of
// the service itself. Only the first rule carries backends (TCPRoute has
// no matches); when several routes bind one port, the oldest wins, then
// namespace/name, as for conflicting routes elsewhere in the spec.
func (t *translator) attachTCPRoutes() {
	type claim struct {
		ref      routeRef
		backends []ir.WeightedBackend
	}
	claims := map[*ir.ServicePort]claim{}
	for _, route := range t.snap.TCPRoutes {
		ref := routeRef{kind: "TCPRoute", meta: &route.ObjectMeta}
		for i, pr := range route.Spec.ParentRefs {
			b, ok := t.bindParent(ref, i, pr, ir.ProtocolTCP)
			if !ok {
				continue
			}
			var probs ruleProblems
			var backends []ir.WeightedBackend
			for ri, rule := range route.Spec.Rules {
				if ri > 0 {
					probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d: only the first rule of a TCPRoute is used", ri))
					continue
				}
				for i, br := range rule.BackendRefs {
					wb, problem := t.weightedBackend(route.Namespace, "TCPRoute", br, b.service)
					if problem != "" {
						probs.refs = append(probs.refs, fmt.Sprintf("backendRef %d: %s", i, problem))
					}
					backends = append(backends, wb)
				}
			}
			probs.report(t, ref, b, 1) // a TCPRoute always has its first rule
			for _, sp := range b.ports {
				prev, taken := claims[sp]
				if taken && !routeOlder(ref, prev.ref) {
					continue
				}
				claims[sp] = claim{ref: ref, backends: backends}
			}
		}
	}
	for sp, c := range claims {
		sp.TCPBackends = c.backends
		if len(c.backends) == 0 {
			// A route without backends still claims the port: connections
			// are refused rather than silently sent to the service.
			sp.TCPBackends = []ir.WeightedBackend{{Backend: "", Weight: 0}}
		}
	}
}

func routeOlder(a, b routeRef) bool {
	ta, tb := a.meta.CreationTimestamp, b.meta.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if a.meta.Namespace != b.meta.Namespace {
		return a.meta.Namespace < b.meta.Namespace
	}
	return a.meta.Name < b.meta.Name
}
