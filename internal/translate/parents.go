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

// routeKey names a route for attachedRoutes.
type routeKey struct{ kind, namespace, name string }

func (r routeRef) key() routeKey { return routeKey{r.kind, r.meta.Namespace, r.meta.Name} }

// binding is the result of resolving one parentRef of a route.
type binding struct {
	parent *ParentRef        // the parentRef, for the route's conditions
	ports  []*ir.ServicePort // the service ports the route applies to
	// clientNS is set for consumer routes (route namespace differs from the
	// Service's): the entries apply only to that namespace's clients.
	clientNS string
	// service is the parent Service (Service parents only). A consumer
	// route may send to it without a ReferenceGrant: its clients can reach
	// that service anyway.
	service ir.NamespacedName
	// via are the listeners a Gateway parent binds through (nil for a
	// Service or ServiceEntry parent), for attachedRoutes.
	via []*listener
}

// accept records that the route is accepted by its parent: its Accepted
// condition, and the attachment for the listeners' attachedRoutes.
func (t *translator) accept(r routeRef, b binding) {
	t.routeCond(r, b.parent, "Accepted", metav1.ConditionTrue, "Accepted", "")
	if b.via == nil {
		t.viaService[r.key()] = true
		return
	}
	for _, l := range b.via {
		if t.viaGateway[l.index] == nil {
			t.viaGateway[l.index] = map[routeKey]bool{}
		}
		t.viaGateway[l.index][r.key()] = true
	}
}

func (t *translator) routeCond(r routeRef, parent *ParentRef, typ string, status metav1.ConditionStatus, reason, msg string) {
	t.cond(Condition{Kind: r.kind, Namespace: r.meta.Namespace, Name: r.meta.Name, Parent: parent,
		Type: typ, Status: status, Reason: reason, Message: msg})
}

// bindParent resolves the parentRef at index idx of a route to the service
// ports of this waypoint the route binds to (ports of protocol proto). ok
// is false when the route does not bind, with the Accepted=False condition
// saying why, or none for parents that belong to other waypoints or
// controllers. When ok, the caller accepts the route (accept), or refuses
// it when none of its rules is usable.
func (t *translator) bindParent(r routeRef, idx int, pr gwv1.ParentReference, proto ir.Protocol) (binding, bool) {
	ns := r.meta.Namespace
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	group, kind := gwv1.GroupName, "Gateway"
	if pr.Group != nil {
		group = string(*pr.Group)
	}
	if pr.Kind != nil {
		kind = string(*pr.Kind)
	}
	parent := &ParentRef{Index: idx, Ref: pr}
	name := parentName(pr, r.meta.Namespace)
	accepted := func(status metav1.ConditionStatus, reason, msg string) {
		t.routeCond(r, parent, "Accepted", status, reason, msg)
	}
	// consumerTCP refuses a TCPRoute from another namespace than its
	// parent's: its connections are not tied to one client namespace.
	consumerTCP := func(b binding) bool {
		if proto == ir.ProtocolTCP && b.clientNS != "" {
			accepted(metav1.ConditionFalse, "UnsupportedValue",
				"a TCPRoute cannot be a consumer route: its connections are not tied to one client namespace")
			return true
		}
		return false
	}
	switch {
	case kind == "Service" && (group == "" || group == "core"):
		svc := t.served[ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
		if svc == nil {
			return binding{}, false // a service of another waypoint, or none
		}
		b := binding{parent: parent, service: ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}}
		if r.meta.Namespace != ns {
			b.clientNS = r.meta.Namespace // a consumer route
		}
		if consumerTCP(b) {
			return binding{}, false
		}
		for _, sp := range svc.Ports {
			if namesPort(pr, sp) && sp.Protocol == proto {
				b.ports = append(b.ports, sp)
			}
		}
		if len(b.ports) == 0 {
			what := string(proto) + " port"
			switch {
			case pr.Port != nil && pr.SectionName != nil:
				what = fmt.Sprintf("%s port %d named %q", proto, *pr.Port, *pr.SectionName)
			case pr.Port != nil:
				what = fmt.Sprintf("%s port %d", proto, *pr.Port)
			case pr.SectionName != nil:
				what = fmt.Sprintf("%s port named %q", proto, *pr.SectionName)
			}
			accepted(metav1.ConditionFalse, "NoMatchingParent", fmt.Sprintf("%s has no %s (%s attaches to %s ports)", name, what, r.kind, proto))
			return binding{}, false
		}
		return b, true
	case (kind == "ServiceEntry" || kind == "Hostname") && group == "networking.istio.io":
		hosts := t.servedSE[ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
		if kind == "Hostname" {
			hosts = t.servedHost(ns, string(pr.Name))
		}
		if hosts == nil {
			return binding{}, false
		}
		b := binding{parent: parent}
		if r.meta.Namespace != ns {
			b.clientNS = r.meta.Namespace
		}
		if consumerTCP(b) {
			return binding{}, false
		}
		for _, s := range hosts {
			for _, sp := range s.Ports {
				if namesPort(pr, sp) && sp.Protocol == proto {
					b.ports = append(b.ports, sp)
				}
			}
		}
		if len(b.ports) == 0 {
			accepted(metav1.ConditionFalse, "NoMatchingParent", fmt.Sprintf("%s has no matching %s port", name, proto))
			return binding{}, false
		}
		return b, true
	case kind == "Gateway" && group == gwv1.GroupName:
		if ns != t.gw.Namespace || string(pr.Name) != t.gw.Name {
			return binding{}, false
		}
		via, reason, msg := t.gatewayListeners(r, pr)
		if len(via) == 0 {
			accepted(metav1.ConditionFalse, reason, msg)
			return binding{}, false
		}
		b := binding{parent: parent, via: via}
		for _, s := range t.out.Services {
			for _, sp := range s.Ports {
				if sp.Protocol == proto {
					b.ports = append(b.ports, sp)
				}
			}
		}
		return b, true
	}
	return binding{}, false
}

// servedHost finds the served host of a ServiceEntry of namespace ns a
// Hostname parentRef names (kind Hostname, group networking.istio.io, the
// name a host of the entry, as kgateway takes it): the route then binds
// to that host alone, not to the entry's other hosts. nil when no entry
// of this waypoint has the host.
func (t *translator) servedHost(ns, host string) []*ir.Service {
	var out []*ir.Service
	for key, hosts := range t.servedSE {
		if key.Namespace != ns {
			continue
		}
		for _, s := range hosts {
			if s.Hostname == host {
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// namesPort reports whether a Service or ServiceEntry parentRef covers a
// port: the ref's port (number) and sectionName (the port's name), when
// set, must both match (GAMMA).
func namesPort(pr gwv1.ParentReference, sp *ir.ServicePort) bool {
	return (pr.Port == nil || uint16(*pr.Port) == sp.Port) && (pr.SectionName == nil || string(*pr.SectionName) == sp.Name)
}

// gatewayListeners finds the accepted listeners a route's Gateway parentRef
// attaches through: those it names (by sectionName and port, or all) that
// allow the route's namespace and kind. When there are none, reason and
// msg say why.
func (t *translator) gatewayListeners(r routeRef, pr gwv1.ParentReference) (via []*listener, reason, msg string) {
	var named []*listener
	for _, l := range t.listeners {
		if (pr.SectionName == nil || *pr.SectionName == l.name) && (pr.Port == nil || *pr.Port == l.port) {
			named = append(named, l)
		}
	}
	if len(named) == 0 {
		switch {
		case pr.SectionName != nil && t.specHasListener(*pr.SectionName):
			return nil, "NoMatchingParent", fmt.Sprintf("the waypoint's listener %q is not accepted", *pr.SectionName)
		case pr.SectionName != nil && pr.Port != nil:
			return nil, "NoMatchingParent", fmt.Sprintf("the waypoint has no listener named %q on port %d", *pr.SectionName, *pr.Port)
		case pr.SectionName != nil:
			return nil, "NoMatchingParent", fmt.Sprintf("the waypoint has no listener named %q", *pr.SectionName)
		default:
			return nil, "NoMatchingParent", fmt.Sprintf("the waypoint has no listener on port %d", *pr.Port)
		}
	}
	kindOK := false
	for _, l := range named {
		if !l.admitsKind(r.kind) {
			continue
		}
		kindOK = true
		if l.admits(r.meta.Namespace, t.gw.Namespace, t.namespaceLabels(r.meta.Namespace)) {
			via = append(via, l)
		}
	}
	switch {
	case len(via) > 0:
		return via, "", ""
	case !kindOK:
		return nil, "NotAllowedByListeners", fmt.Sprintf("the waypoint's listeners do not allow %ss (allowedRoutes.kinds)", r.kind)
	}
	return nil, "NotAllowedByListeners", fmt.Sprintf("the waypoint's listeners do not allow routes from namespace %s (allowedRoutes.namespaces)", r.meta.Namespace)
}

// specHasListener reports whether the Gateway names a listener so, accepted or not.
func (t *translator) specHasListener(name gwv1.SectionName) bool {
	for _, l := range t.gw.Spec.Listeners {
		if l.Name == name {
			return true
		}
	}
	return false
}

// countAttachedRoutes sets each accepted listener's attachedRoutes: the
// routes accepted through a served Service or ServiceEntry, and those
// accepted through that listener of the Gateway.
func (t *translator) countAttachedRoutes() {
	for _, l := range t.listeners {
		n := len(t.viaService)
		for k := range t.viaGateway[l.index] {
			if !t.viaService[k] {
				n++
			}
		}
		t.verdict.Listeners[l.index].AttachedRoutes = int32(n)
	}
}

// parentName names a route's parentRef in messages: its kind,
// namespace/name, then ":port" and "#sectionName" when the ref has them
// ("Service ns/svc:8080", "Gateway ns/wp#mesh").
func parentName(pr gwv1.ParentReference, routeNS string) string {
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
		// A route bound to the port through two parentRefs (the Service
		// and the Gateway, say) is compiled once per parent; its entries
		// are listed once. For one client namespace the two compile alike:
		// only a consumer route's parent Service changes a backendRef's
		// resolution, and a consumer route has one parent per port.
		type entryKey struct {
			route       ir.NamespacedName
			rule, match int
			client      string
			grpc        bool
		}
		seen := make(map[entryKey]bool, len(atts))
		for _, a := range atts {
			k := entryKey{a.rule.Route, a.rule.RuleIndex, a.rule.MatchIndex, a.rule.ClientNamespace, a.rule.GRPC}
			if !seen[k] {
				seen[k] = true
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
