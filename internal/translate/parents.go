package translate

import (
	"fmt"
	"sort"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// routeRef identifies a route object of any kind for status and ordering.
type routeRef struct {
	kind string // HTTPRoute, GRPCRoute, TCPRoute
	meta *metav1.ObjectMeta
}

// binding is the result of resolving one parentRef of a route.
type binding struct {
	parent string            // "Service ns/name" or "Gateway ns/name"
	ports  []*ir.ServicePort // the service ports the route applies to
	// clientNS is set for consumer routes (route namespace differs from the
	// Service's): the entries apply only to that namespace's clients.
	clientNS string
	// service is the parent Service (Service parents only). A consumer
	// route may send to it without a ReferenceGrant: its clients can reach
	// that service anyway.
	service ir.NamespacedName
}

func (t *translator) routeCond(r routeRef, parent, typ, status, reason, msg string) {
	t.cond(Condition{Kind: r.kind, Namespace: r.meta.Namespace, Name: r.meta.Name, Parent: parent,
		Type: typ, Status: status, Reason: reason, Message: msg})
}

// bindParent resolves one parentRef to the service ports of this waypoint
// the route binds to (ports of protocol proto), recording the parent's
// Accepted condition. ok is false when the parent is not ours: no status is
// written for parents that belong to other waypoints or controllers.
func (t *translator) bindParent(r routeRef, pr gwv1.ParentReference, proto ir.Protocol) (binding, bool) {
	ns := r.meta.Namespace
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	group, kind := "gateway.networking.k8s.io", "Gateway"
	if pr.Group != nil {
		group = string(*pr.Group)
	}
	if pr.Kind != nil {
		kind = string(*pr.Kind)
	}
	accepted := func(parent, status, reason, msg string) {
		t.routeCond(r, parent, "Accepted", status, reason, msg)
	}
	switch {
	case kind == "Service" && (group == "" || group == "core"):
		parent := ParentName(pr, r.meta.Namespace)
		svc := t.served[ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
		if svc == nil {
			return binding{}, false // a service of another waypoint, or none
		}
		b := binding{parent: parent, service: ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}}
		if r.meta.Namespace != ns {
			b.clientNS = r.meta.Namespace // a consumer route
		}
		for _, sp := range svc.Ports {
			if pr.Port != nil && uint16(*pr.Port) != sp.Port {
				continue
			}
			if sp.Protocol == proto {
				b.ports = append(b.ports, sp)
			}
		}
		if len(b.ports) == 0 {
			what := "an " + string(proto) + " port"
			if pr.Port != nil {
				what = fmt.Sprintf("%s port %d", proto, *pr.Port)
			}
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("%s has no %s (%s attaches to %s ports)", parent, what, r.kind, proto))
			return binding{}, false
		}
		accepted(parent, "True", "Accepted", "")
		return b, true
	case kind == "ServiceEntry" && group == "networking.istio.io":
		parent := ParentName(pr, r.meta.Namespace)
		hosts := t.servedSE[ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
		if hosts == nil {
			return binding{}, false
		}
		b := binding{parent: parent}
		if r.meta.Namespace != ns {
			b.clientNS = r.meta.Namespace
		}
		for _, s := range hosts {
			for _, sp := range s.Ports {
				if (pr.Port == nil || uint16(*pr.Port) == sp.Port) && sp.Protocol == proto {
					b.ports = append(b.ports, sp)
				}
			}
		}
		if len(b.ports) == 0 {
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("%s has no matching %s port", parent, proto))
			return binding{}, false
		}
		accepted(parent, "True", "Accepted", "")
		return b, true
	case kind == "Gateway" && group == "gateway.networking.k8s.io":
		if ns != t.gw.Namespace || string(pr.Name) != t.gw.Name {
			return binding{}, false
		}
		parent := ParentName(pr, r.meta.Namespace)
		if pr.SectionName != nil && !t.hasListener(string(*pr.SectionName), 0) {
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("the waypoint has no listener named %q", *pr.SectionName))
			return binding{}, false
		}
		if pr.Port != nil && !t.hasListener("", *pr.Port) {
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("the waypoint has no listener on port %d", *pr.Port))
			return binding{}, false
		}
		if r.meta.Namespace != t.gw.Namespace && !t.admitsNamespace(r.meta.Namespace) {
			accepted(parent, "False", "NotAllowedByListeners",
				fmt.Sprintf("the waypoint's listeners do not allow routes from namespace %s", r.meta.Namespace))
			return binding{}, false
		}
		b := binding{parent: parent}
		for _, s := range t.out.Services {
			for _, sp := range s.Ports {
				if sp.Protocol == proto {
					b.ports = append(b.ports, sp)
				}
			}
		}
		accepted(parent, "True", "Accepted", "")
		return b, true
	}
	return binding{}, false
}

// ParentName names a route's parentRef in conditions: its kind,
// namespace/name, then ":port" and "#sectionName" when the ref has them,
// so that two refs to one Service on different ports stay apart ("Service
// ns/svc:8080", "Gateway ns/wp#mesh").
func ParentName(pr gwv1.ParentReference, routeNS string) string {
	kind, ns := "Gateway", routeNS
	if pr.Kind != nil {
		kind = string(*pr.Kind)
	}
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	name := kind + " " + ns + "/" + string(pr.Name)
	if pr.Port != nil {
		name += ":" + strconv.Itoa(int(*pr.Port))
	}
	if pr.SectionName != nil {
		name += "#" + string(*pr.SectionName)
	}
	return name
}

// hasListener reports whether the waypoint has a mesh listener with that
// name (when name is set) or port (when port is set). A Gateway without
// listeners has the implicit "mesh" listener on the inbound port.
func (t *translator) hasListener(name string, port gwv1.PortNumber) bool {
	if len(t.gw.Spec.Listeners) == 0 {
		return (name == "" || name == "mesh") && (port == 0 || port == gwv1.PortNumber(t.out.InboundPort))
	}
	for _, l := range t.gw.Spec.Listeners {
		if (name == "" || string(l.Name) == name) && (port == 0 || l.Port == port) {
			return true
		}
	}
	return false
}

// attachment is one route entry bound to one service port.
type attachment struct {
	route routeRef
	rule  *ir.HTTPRouteRule
}

// orderRoutes sorts each service port's entries by precedence and stores
// them on the port.
func orderRoutes(perPort map[*ir.ServicePort][]attachment) {
	for sp, atts := range perPort {
		sort.SliceStable(atts, func(i, j int) bool { return precedes(atts[i], atts[j]) })
		sp.Routes = make([]*ir.HTTPRouteRule, 0, len(atts))
		seen := map[*ir.HTTPRouteRule]bool{}
		for _, a := range atts {
			if !seen[a.rule] { // a route naming the same port twice binds once
				seen[a.rule] = true
				sp.Routes = append(sp.Routes, a.rule)
			}
		}
	}
}

// precedes orders route entries as the Gateway API specifies: exact path,
// then longest prefix, then method, most headers, most query parameters,
// then the oldest route, then route namespace/name, then rule and match
// order. GRPCRoute entries (whose matches are on the path) precede
// HTTPRoute entries at equal specificity.
func precedes(a, b attachment) bool {
	ma, mb := a.rule.Match, b.rule.Match
	if ra, rb := pathRank(ma.Path), pathRank(mb.Path); ra != rb {
		return ra > rb
	}
	if la, lb := pathLen(ma.Path), pathLen(mb.Path); la != lb {
		return la > lb
	}
	if (ma.Method != "") != (mb.Method != "") {
		return ma.Method != ""
	}
	if len(ma.Headers) != len(mb.Headers) {
		return len(ma.Headers) > len(mb.Headers)
	}
	if len(ma.QueryParams) != len(mb.QueryParams) {
		return len(ma.QueryParams) > len(mb.QueryParams)
	}
	if a.rule.GRPC != b.rule.GRPC {
		return a.rule.GRPC
	}
	ta, tb := a.route.meta.CreationTimestamp, b.route.meta.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if a.route.meta.Namespace != b.route.meta.Namespace {
		return a.route.meta.Namespace < b.route.meta.Namespace
	}
	if a.route.meta.Name != b.route.meta.Name {
		return a.route.meta.Name < b.route.meta.Name
	}
	if a.rule.RuleIndex != b.rule.RuleIndex {
		return a.rule.RuleIndex < b.rule.RuleIndex
	}
	return a.rule.MatchIndex < b.rule.MatchIndex
}

// pathRank: Exact beats PathPrefix, which beats RegularExpression (whose
// order the spec leaves to implementations).
func pathRank(p *ir.PathMatch) int {
	if p == nil {
		return 2 // the default PathPrefix "/"
	}
	switch p.Type {
	case ir.MatchExact:
		return 3
	case ir.MatchPathPrefix:
		return 2
	}
	return 1
}

func pathLen(p *ir.PathMatch) int {
	if p == nil {
		return 1 // "/"
	}
	return len(p.Value)
}
