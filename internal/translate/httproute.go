package translate

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// attachment is one HTTPRoute entry bound to one service port.
type attachment struct {
	route *gwv1.HTTPRoute
	rule  *ir.HTTPRouteRule
}

// attachHTTPRoutes binds every HTTPRoute whose parentRef is a served Service
// (optionally one port of it) or this Gateway, and orders each service
// port's entries by the Gateway API precedence rules.
func (t *translator) attachHTTPRoutes() {
	perPort := map[*ir.ServicePort][]attachment{}
	for _, route := range t.snap.HTTPRoutes {
		var entries []*ir.HTTPRouteRule
		compiled := false
		for _, pr := range route.Spec.ParentRefs {
			ports, parent, ok := t.parentPorts(route, pr)
			if !ok {
				continue
			}
			if !compiled {
				entries = t.compileHTTPRoute(route, parent)
				compiled = true
			}
			for _, sp := range ports {
				for _, e := range entries {
					perPort[sp] = append(perPort[sp], attachment{route: route, rule: e})
				}
			}
		}
	}
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

// parentPorts resolves one parentRef to the HTTP service ports of this
// waypoint it binds to, recording the parent's Accepted condition. ok is
// false when the parent is not ours (no status is written for it).
func (t *translator) parentPorts(route *gwv1.HTTPRoute, pr gwv1.ParentReference) ([]*ir.ServicePort, string, bool) {
	ns := route.Namespace
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
	accepted := func(parent string, status, reason, msg string) {
		t.cond(Condition{Kind: "HTTPRoute", Namespace: route.Namespace, Name: route.Name, Parent: parent,
			Type: "Accepted", Status: status, Reason: reason, Message: msg})
	}
	switch {
	case kind == "Service" && (group == "" || group == "core"):
		parent := "Service " + ns + "/" + string(pr.Name)
		svc := t.served[ir.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
		if svc == nil {
			return nil, "", false // a service of another waypoint, or none: not ours to report
		}
		if route.Namespace != ns {
			accepted(parent, "False", "UnsupportedValue",
				"consumer routes (a route in another namespace than its Service) are not supported yet")
			return nil, "", false
		}
		var ports []*ir.ServicePort
		for _, sp := range svc.Ports {
			if sp.Protocol != ir.ProtocolHTTP {
				continue
			}
			if pr.Port != nil && uint16(*pr.Port) != sp.Port {
				continue
			}
			ports = append(ports, sp)
		}
		if pr.Port != nil && len(ports) == 0 {
			accepted(parent, "False", "NoMatchingParent",
				fmt.Sprintf("%s has no HTTP port %d", parent, *pr.Port))
			return nil, "", false
		}
		accepted(parent, "True", "Accepted", "")
		return ports, parent, true
	case kind == "Gateway" && group == "gateway.networking.k8s.io":
		if ns != t.gw.Namespace || string(pr.Name) != t.gw.Name {
			return nil, "", false
		}
		parent := "Gateway " + ns + "/" + string(pr.Name)
		if pr.SectionName != nil && !t.hasListener(string(*pr.SectionName), 0) {
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("the waypoint has no listener named %q", *pr.SectionName))
			return nil, "", false
		}
		if pr.Port != nil && !t.hasListener("", *pr.Port) {
			accepted(parent, "False", "NoMatchingParent", fmt.Sprintf("the waypoint has no listener on port %d", *pr.Port))
			return nil, "", false
		}
		if route.Namespace != t.gw.Namespace && !t.admitsNamespace(route.Namespace) {
			accepted(parent, "False", "NotAllowedByListeners",
				fmt.Sprintf("the waypoint's listeners do not allow routes from namespace %s", route.Namespace))
			return nil, "", false
		}
		var ports []*ir.ServicePort
		for _, s := range t.out.Services {
			for _, sp := range s.Ports {
				if sp.Protocol == ir.ProtocolHTTP {
					ports = append(ports, sp)
				}
			}
		}
		accepted(parent, "True", "Accepted", "")
		return ports, parent, true
	}
	return nil, "", false
}

// hasListener reports whether the waypoint has a mesh listener with that
// name (when name is set) or port (when port is set). A Gateway without
// listeners has the implicit "mesh" listener on the inbound port.
func (t *translator) hasListener(name string, port int32) bool {
	if len(t.gw.Spec.Listeners) == 0 {
		return (name == "" || name == "mesh") && (port == 0 || port == int32(t.out.InboundPort))
	}
	for _, l := range t.gw.Spec.Listeners {
		if (name == "" || string(l.Name) == name) && (port == 0 || l.Port == port) {
			return true
		}
	}
	return false
}

// compileHTTPRoute converts a route's rules into IR entries (one per match).
// Problems are reported as conditions on the route; a rule that cannot be
// understood is dropped, and one whose filters or backends cannot be honoured
// answers 500, as the spec requires.
func (t *translator) compileHTTPRoute(route *gwv1.HTTPRoute, parent string) []*ir.HTTPRouteRule {
	rn := ir.NamespacedName{Namespace: route.Namespace, Name: route.Name}
	var out []*ir.HTTPRouteRule
	var problems, refProblems []string
	for ri := range route.Spec.Rules {
		rule := &route.Spec.Rules[ri]
		reqH, respH, filterErr := convertFilters(rule.Filters)
		if filterErr != "" {
			problems = append(problems, fmt.Sprintf("rule %d: %s", ri, filterErr))
		}
		backends, refErrs := t.convertBackends(route, rule.BackendRefs)
		for _, e := range refErrs {
			refProblems = append(refProblems, fmt.Sprintf("rule %d: %s", ri, e))
		}
		if filterErr != "" {
			backends = nil // an unsupported filter must not be skipped: answer 500
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for mi := range matches {
			m, err := convertMatch(&matches[mi])
			if err != "" {
				problems = append(problems, fmt.Sprintf("rule %d match %d: %s", ri, mi, err))
				continue
			}
			out = append(out, &ir.HTTPRouteRule{
				Route: rn, RuleIndex: ri, MatchIndex: mi, Match: m,
				RequestHeaders: reqH, ResponseHeaders: respH, Backends: backends,
			})
		}
	}
	refs := Condition{Kind: "HTTPRoute", Namespace: route.Namespace, Name: route.Name, Parent: parent,
		Type: "ResolvedRefs", Status: "True", Reason: "ResolvedRefs"}
	if len(refProblems) > 0 {
		refs.Status, refs.Reason, refs.Message = "False", refReason(refProblems), strings.Join(refProblems, "; ")
	}
	t.cond(refs)
	if len(problems) > 0 {
		t.cond(Condition{Kind: "HTTPRoute", Namespace: route.Namespace, Name: route.Name, Parent: parent,
			Type: "PartiallyInvalid", Status: "True", Reason: "UnsupportedValue", Message: strings.Join(problems, "; ")})
	}
	return out
}

// refReason picks the spec reason for the first unresolved reference.
func refReason(problems []string) string {
	for _, reason := range []string{"RefNotPermitted", "InvalidKind", "BackendNotFound"} {
		for _, p := range problems {
			if strings.Contains(p, "("+reason+")") {
				return reason
			}
		}
	}
	return "BackendNotFound"
}

func convertMatch(m *gwv1.HTTPRouteMatch) (ir.HTTPMatch, string) {
	var out ir.HTTPMatch
	if m.Path != nil {
		typ := gwv1.PathMatchPathPrefix
		if m.Path.Type != nil {
			typ = *m.Path.Type
		}
		val := "/"
		if m.Path.Value != nil {
			val = *m.Path.Value
		}
		switch typ {
		case gwv1.PathMatchExact, gwv1.PathMatchPathPrefix:
			if !strings.HasPrefix(val, "/") {
				return out, fmt.Sprintf("path %q must start with /", val)
			}
		case gwv1.PathMatchRegularExpression:
			if _, err := regexp.Compile(val); err != nil {
				return out, fmt.Sprintf("path regular expression %q: %v", val, err)
			}
		default:
			return out, fmt.Sprintf("unsupported path match type %q", typ)
		}
		out.Path = &ir.PathMatch{Type: ir.MatchType(typ), Value: val}
	}
	for _, h := range m.Headers {
		typ := gwv1.HeaderMatchExact
		if h.Type != nil {
			typ = *h.Type
		}
		if err := checkStringMatch(string(typ), h.Value); err != "" {
			return out, fmt.Sprintf("header %s: %s", h.Name, err)
		}
		out.Headers = append(out.Headers, ir.HeaderMatch{Type: ir.MatchType(typ), Name: string(h.Name), Value: h.Value})
	}
	for _, q := range m.QueryParams {
		typ := gwv1.QueryParamMatchExact
		if q.Type != nil {
			typ = *q.Type
		}
		if err := checkStringMatch(string(typ), q.Value); err != "" {
			return out, fmt.Sprintf("query parameter %s: %s", q.Name, err)
		}
		out.QueryParams = append(out.QueryParams, ir.QueryParamMatch{Type: ir.MatchType(typ), Name: string(q.Name), Value: q.Value})
	}
	if m.Method != nil {
		out.Method = string(*m.Method)
	}
	return out, ""
}

func checkStringMatch(typ, value string) string {
	switch typ {
	case "Exact":
		return ""
	case "RegularExpression":
		if _, err := regexp.Compile(value); err != nil {
			return fmt.Sprintf("regular expression %q: %v", value, err)
		}
		return ""
	}
	return fmt.Sprintf("unsupported match type %q", typ)
}

// convertFilters converts the filters the waypoint supports; the message is
// non-empty when a filter cannot be honoured.
func convertFilters(filters []gwv1.HTTPRouteFilter) (req, resp *ir.HeaderModifier, problem string) {
	for _, f := range filters {
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				return nil, nil, "RequestHeaderModifier filter without requestHeaderModifier"
			}
			req = convertHeaderFilter(f.RequestHeaderModifier)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				return nil, nil, "ResponseHeaderModifier filter without responseHeaderModifier"
			}
			resp = convertHeaderFilter(f.ResponseHeaderModifier)
		default:
			problem = fmt.Sprintf("filter %s is not supported yet; requests matching this rule get 500", f.Type)
		}
	}
	return req, resp, problem
}

func convertHeaderFilter(f *gwv1.HTTPHeaderFilter) *ir.HeaderModifier {
	m := &ir.HeaderModifier{Remove: append([]string(nil), f.Remove...)}
	for _, h := range f.Set {
		m.Set = append(m.Set, ir.Header{Name: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Add {
		m.Add = append(m.Add, ir.Header{Name: string(h.Name), Value: h.Value})
	}
	return m
}

// convertBackends resolves backendRefs to backends. An unresolvable
// reference keeps its weight with an empty backend, so the share of requests
// it would have taken gets a 500.
func (t *translator) convertBackends(route *gwv1.HTTPRoute, refs []gwv1.HTTPBackendRef) ([]ir.WeightedBackend, []string) {
	var out []ir.WeightedBackend
	var problems []string
	for i, ref := range refs {
		weight := uint32(1)
		if ref.Weight != nil {
			if *ref.Weight < 0 {
				problems = append(problems, fmt.Sprintf("backendRef %d: negative weight", i))
				continue
			}
			weight = uint32(*ref.Weight)
		}
		key, problem := t.resolveBackend(route.Namespace, "HTTPRoute", ref.BackendObjectReference)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("backendRef %d: %s", i, problem))
		}
		out = append(out, ir.WeightedBackend{Backend: key, Weight: weight})
	}
	return out, problems
}

// resolveBackend finds the Service port a backendRef names. The problem
// message ends with the spec reason in parentheses.
func (t *translator) resolveBackend(fromNS, fromKind string, ref gwv1.BackendObjectReference) (string, string) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if (group != "" && group != "core") || kind != "Service" {
		return "", fmt.Sprintf("%s.%s is not a supported backend kind (InvalidKind)", kind, group)
	}
	ns := fromNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if ns != fromNS && !t.referenceGranted(fromKind, fromNS, ns, string(ref.Name)) {
		return "", fmt.Sprintf("Service %s/%s is in another namespace and no ReferenceGrant allows it (RefNotPermitted)", ns, ref.Name)
	}
	svc := t.services[ir.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
	if svc == nil {
		return "", fmt.Sprintf("Service %s/%s not found (BackendNotFound)", ns, ref.Name)
	}
	if ref.Port == nil {
		return "", fmt.Sprintf("Service %s/%s: port is required (BackendNotFound)", ns, ref.Name)
	}
	if sp := servicePort(svc, *ref.Port); sp != nil {
		return t.backendFor(svc, sp), ""
	}
	return "", fmt.Sprintf("Service %s/%s has no port %d (BackendNotFound)", ns, ref.Name, *ref.Port)
}

// referenceGranted reports whether a ReferenceGrant in toNS lets objects of
// fromKind in fromNS reference the Service name.
func (t *translator) referenceGranted(fromKind, fromNS, toNS, name string) bool {
	for _, g := range t.snap.ReferenceGrants {
		if g.Namespace != toNS {
			continue
		}
		fromOK := false
		for _, f := range g.Spec.From {
			if string(f.Group) == "gateway.networking.k8s.io" && string(f.Kind) == fromKind && string(f.Namespace) == fromNS {
				fromOK = true
			}
		}
		if !fromOK {
			continue
		}
		for _, to := range g.Spec.To {
			if (to.Group == "" || to.Group == "core") && to.Kind == "Service" && (to.Name == nil || string(*to.Name) == name) {
				return true
			}
		}
	}
	return false
}

// precedes orders route entries as the Gateway API specifies: exact path,
// then longest prefix, then method, most headers, most query parameters,
// then the oldest route, then route namespace/name, then rule and match order.
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
	ta, tb := a.route.CreationTimestamp, b.route.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if a.route.Namespace != b.route.Namespace {
		return a.route.Namespace < b.route.Namespace
	}
	if a.route.Name != b.route.Name {
		return a.route.Name < b.route.Name
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

// servicePort finds a Service's port by number.
func servicePort(s *corev1.Service, port int32) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Port == port {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}
