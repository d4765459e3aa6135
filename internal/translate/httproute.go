package translate

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// attachRoutes binds every HTTPRoute and GRPCRoute whose parentRef is a
// served Service (optionally one port of it) or this Gateway to the HTTP
// service ports, and every TCPRoute to the TCP service ports, then orders
// each HTTP port's entries by precedence.
func (t *translator) attachRoutes() {
	perPort := map[*ir.ServicePort][]attachment{}
	for _, route := range t.snap.HTTPRoutes {
		ref := routeRef{kind: "HTTPRoute", meta: &route.ObjectMeta}
		for i, pr := range route.Spec.ParentRefs {
			b, ok := t.bindParent(ref, i, pr, ir.ProtocolHTTP)
			if !ok {
				continue
			}
			for _, e := range t.compileHTTPRoute(route, b) {
				for _, sp := range b.ports {
					perPort[sp] = append(perPort[sp], attachment{route: ref, rule: e})
				}
			}
		}
	}
	for _, route := range t.snap.GRPCRoutes {
		ref := routeRef{kind: "GRPCRoute", meta: &route.ObjectMeta}
		for i, pr := range route.Spec.ParentRefs {
			b, ok := t.bindParent(ref, i, pr, ir.ProtocolHTTP)
			if !ok {
				continue
			}
			for _, e := range t.compileGRPCRoute(route, b) {
				for _, sp := range b.ports {
					perPort[sp] = append(perPort[sp], attachment{route: ref, rule: e})
				}
			}
		}
	}
	orderRoutes(perPort)
	t.attachTCPRoutes()
}

// ruleProblems collects what a route's rules could not honour, for its
// PartiallyInvalid and ResolvedRefs conditions on one parent.
type ruleProblems struct {
	invalid []string // rules or matches dropped or answering 500
	refs    []string // unresolved references ("... (Reason)")
}

// report writes the route's conditions for one parent: Accepted (False,
// UnsupportedValue, when no rule is left to use), ResolvedRefs, and
// PartiallyInvalid when some of it was dropped or answers 500.
func (p *ruleProblems) report(t *translator, r routeRef, b binding, entries int) {
	if entries == 0 && len(p.invalid) > 0 {
		// Every match was dropped: the route is not accepted (the spec's
		// "fully invalid"), so the service behaves as without it.
		t.routeCond(r, b.parent, "Accepted", "False", "UnsupportedValue", "no rule is usable: "+strings.Join(p.invalid, "; "))
	} else {
		t.accept(r, b)
	}
	refs := Condition{Kind: r.kind, Namespace: r.meta.Namespace, Name: r.meta.Name, Parent: b.parent,
		Type: "ResolvedRefs", Status: "True", Reason: "ResolvedRefs"}
	if len(p.refs) > 0 {
		refs.Status, refs.Reason, refs.Message = "False", refReason(p.refs), strings.Join(p.refs, "; ")
	}
	t.cond(refs)
	if len(p.invalid) > 0 && entries > 0 {
		t.cond(Condition{Kind: r.kind, Namespace: r.meta.Namespace, Name: r.meta.Name, Parent: b.parent,
			Type: "PartiallyInvalid", Status: "True", Reason: "UnsupportedValue", Message: strings.Join(p.invalid, "; ")})
	}
}

// compileHTTPRoute converts a route's rules into IR entries (one per match).
// A match that cannot be understood is dropped; a rule whose filters or
// backends cannot be honoured answers 500, as the spec requires.
func (t *translator) compileHTTPRoute(route *gwv1.HTTPRoute, b binding) []*ir.HTTPRouteRule {
	ref := routeRef{kind: "HTTPRoute", meta: &route.ObjectMeta}
	rn := ir.NamespacedName{Namespace: route.Namespace, Name: route.Name}
	var out []*ir.HTTPRouteRule
	var probs ruleProblems
	for ri := range route.Spec.Rules {
		rule := &route.Spec.Rules[ri]
		tmpl := &ir.HTTPRouteRule{Route: rn, RuleIndex: ri, ClientNamespace: b.clientNS}
		if rule.Name != nil {
			tmpl.RuleName = string(*rule.Name)
		}
		fail := func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d: %s", ri, msg))
			if tmpl.Unsupported == "" {
				tmpl.Unsupported = msg
			}
		}
		var ext []*tpolicy // kgateway TrafficPolicies of ExtensionRef filters
		for _, f := range rule.Filters {
			if isTrafficPolicyRef(f) {
				p := t.tp.byName[ir.NamespacedName{Namespace: route.Namespace, Name: string(f.ExtensionRef.Name)}]
				if p == nil {
					fail("ExtensionRef: TrafficPolicy %s/%s not found; requests matching this rule get 500", route.Namespace, f.ExtensionRef.Name)
					continue
				}
				ext = appendOnce(ext, p)
				continue
			}
			t.applyHTTPFilter(route.Namespace, b.service, tmpl, f, fail, &probs, ri)
		}
		if err := convertTimeouts(rule.Timeouts, tmpl); err != "" {
			fail("%s", err)
		}
		if rule.Retry != nil {
			tmpl.Retry = convertRetry(rule.Retry)
		}
		t.ruleTraffic(route, rule, ext, tmpl)
		for i, br := range rule.BackendRefs {
			fs := make([]backendFilter, len(br.Filters))
			for j, f := range br.Filters {
				fs[j] = backendFilter{string(f.Type), f.RequestHeaderModifier, f.ResponseHeaderModifier}
			}
			tmpl.Backends = append(tmpl.Backends, t.ruleBackend(route.Namespace, "HTTPRoute", br.BackendRef, fs, b.service, &probs, ri, i))
		}
		if tmpl.Redirect != nil && len(tmpl.Backends) > 0 {
			fail("a rule cannot both redirect and have backendRefs")
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for mi := range matches {
			m, err := convertMatch(&matches[mi])
			if err != "" {
				probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d match %d: %s (match dropped)", ri, mi, err))
				continue
			}
			e := *tmpl
			e.MatchIndex, e.Match = mi, m
			entryTraffic(&e, b.service)
			if err := checkPrefixRewrite(&e); err != "" {
				probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d match %d: %s", ri, mi, err))
				if e.Unsupported == "" {
					e.Unsupported = err
				}
			}
			out = append(out, &e)
		}
	}
	probs.report(t, ref, b, len(out))
	return out
}

// applyHTTPFilter folds one rule filter into the entry template.
func (t *translator) applyHTTPFilter(ns string, parentSvc ir.NamespacedName, e *ir.HTTPRouteRule, f gwv1.HTTPRouteFilter, fail func(string, ...any), probs *ruleProblems, ri int) {
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		if f.RequestHeaderModifier == nil {
			fail("RequestHeaderModifier filter without requestHeaderModifier")
			return
		}
		e.RequestHeaders = convertHeaderFilter(f.RequestHeaderModifier)
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		if f.ResponseHeaderModifier == nil {
			fail("ResponseHeaderModifier filter without responseHeaderModifier")
			return
		}
		e.ResponseHeaders = convertHeaderFilter(f.ResponseHeaderModifier)
	case gwv1.HTTPRouteFilterRequestRedirect:
		if f.RequestRedirect == nil {
			fail("RequestRedirect filter without requestRedirect")
			return
		}
		r, err := convertRedirect(f.RequestRedirect)
		if err != "" {
			fail("%s", err)
			return
		}
		e.Redirect = r
	case gwv1.HTTPRouteFilterURLRewrite:
		if f.URLRewrite == nil {
			fail("URLRewrite filter without urlRewrite")
			return
		}
		rw := &ir.Rewrite{}
		if f.URLRewrite.Hostname != nil {
			rw.Hostname = string(*f.URLRewrite.Hostname)
		}
		if f.URLRewrite.Path != nil {
			pm, err := convertPathModifier(f.URLRewrite.Path)
			if err != "" {
				fail("%s", err)
				return
			}
			rw.Path = pm
		}
		e.Rewrite = rw
	case gwv1.HTTPRouteFilterRequestMirror:
		if f.RequestMirror == nil {
			fail("RequestMirror filter without requestMirror")
			return
		}
		m, problem := t.convertMirror(ns, "HTTPRoute", f.RequestMirror, parentSvc)
		if problem != "" {
			probs.refs = append(probs.refs, fmt.Sprintf("rule %d mirror: %s", ri, problem))
		}
		e.Mirrors = append(e.Mirrors, m)
	case gwv1.HTTPRouteFilterCORS:
		if f.CORS == nil {
			fail("CORS filter without cors")
			return
		}
		c := &ir.CORS{MaxAge: f.CORS.MaxAge}
		for _, o := range f.CORS.AllowOrigins {
			c.AllowOrigins = append(c.AllowOrigins, string(o))
		}
		for _, m := range f.CORS.AllowMethods {
			c.AllowMethods = append(c.AllowMethods, string(m))
		}
		for _, h := range f.CORS.AllowHeaders {
			c.AllowHeaders = append(c.AllowHeaders, string(h))
		}
		for _, h := range f.CORS.ExposeHeaders {
			c.ExposeHeaders = append(c.ExposeHeaders, string(h))
		}
		if f.CORS.AllowCredentials != nil {
			c.AllowCredentials = *f.CORS.AllowCredentials
		}
		e.CORS = c
	default:
		fail("filter %s is not supported; requests matching this rule get 500", f.Type)
	}
}

func convertPathModifier(p *gwv1.HTTPPathModifier) (*ir.PathModifier, string) {
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			return nil, "ReplaceFullPath without replaceFullPath"
		}
		return &ir.PathModifier{Type: ir.ReplaceFullPath, Value: *p.ReplaceFullPath}, ""
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			return nil, "ReplacePrefixMatch without replacePrefixMatch"
		}
		return &ir.PathModifier{Type: ir.ReplacePrefixMatch, Value: *p.ReplacePrefixMatch}, ""
	}
	return nil, fmt.Sprintf("unsupported path modifier %q", p.Type)
}

// checkPrefixRewrite enforces the spec: ReplacePrefixMatch needs a
// PathPrefix match.
func checkPrefixRewrite(e *ir.HTTPRouteRule) string {
	uses := (e.Redirect != nil && e.Redirect.Path != nil && e.Redirect.Path.Type == ir.ReplacePrefixMatch) ||
		(e.Rewrite != nil && e.Rewrite.Path != nil && e.Rewrite.Path.Type == ir.ReplacePrefixMatch)
	if uses && e.Match.Path != nil && e.Match.Path.Type != ir.MatchPathPrefix {
		return "ReplacePrefixMatch needs a PathPrefix match"
	}
	return ""
}

func convertRedirect(f *gwv1.HTTPRequestRedirectFilter) (*ir.Redirect, string) {
	r := &ir.Redirect{StatusCode: 302}
	if f.Scheme != nil {
		if *f.Scheme != "http" && *f.Scheme != "https" {
			return nil, fmt.Sprintf("redirect scheme %q: want http or https", *f.Scheme)
		}
		r.Scheme = *f.Scheme
	}
	if f.Hostname != nil {
		r.Hostname = string(*f.Hostname)
	}
	if f.Port != nil {
		r.Port = uint16(*f.Port)
	}
	if f.StatusCode != nil {
		switch *f.StatusCode {
		case 301, 302, 303, 307, 308:
			r.StatusCode = *f.StatusCode
		default:
			return nil, fmt.Sprintf("redirect status %d: want 301, 302, 303, 307 or 308", *f.StatusCode)
		}
	}
	if f.Path != nil {
		pm, err := convertPathModifier(f.Path)
		if err != "" {
			return nil, err
		}
		r.Path = pm
	}
	return r, ""
}

// convertTimeouts parses the rule's timeouts (Gateway API durations).
func convertTimeouts(t *gwv1.HTTPRouteTimeouts, e *ir.HTTPRouteRule) string {
	if t == nil {
		return ""
	}
	parse := func(what string, d *gwv1.Duration) (int64, string) {
		if d == nil {
			return 0, ""
		}
		v, err := time.ParseDuration(string(*d))
		if err != nil || v < 0 {
			return 0, fmt.Sprintf("timeouts.%s %q is not a duration", what, *d)
		}
		return v.Milliseconds(), ""
	}
	var err string
	if e.RequestTimeoutMs, err = parse("request", t.Request); err != "" {
		return err
	}
	if e.BackendRequestTimeoutMs, err = parse("backendRequest", t.BackendRequest); err != "" {
		return err
	}
	if e.RequestTimeoutMs > 0 && e.BackendRequestTimeoutMs > e.RequestTimeoutMs {
		return "timeouts.backendRequest must not exceed timeouts.request"
	}
	return ""
}

func convertRetry(r *gwv1.HTTPRouteRetry) *ir.Retry {
	out := &ir.Retry{Attempts: 1}
	if r.Attempts != nil {
		out.Attempts = *r.Attempts
	}
	for _, c := range r.Codes {
		out.Codes = append(out.Codes, int(c))
	}
	if r.Backoff != nil {
		if d, err := time.ParseDuration(string(*r.Backoff)); err == nil && d > 0 {
			out.BackoffMs = d.Milliseconds()
		}
	}
	return out
}

// weightedBackend resolves one backendRef with its weight.
func (t *translator) weightedBackend(fromNS, fromKind string, ref gwv1.BackendRef, parentSvc ir.NamespacedName) (ir.WeightedBackend, string) {
	weight := uint32(1)
	if ref.Weight != nil {
		if *ref.Weight < 0 {
			return ir.WeightedBackend{}, "negative weight (UnsupportedValue)"
		}
		weight = uint32(*ref.Weight)
	}
	key, problem := t.resolveBackend(fromNS, fromKind, ref.BackendObjectReference, parentSvc)
	return ir.WeightedBackend{Backend: key, Weight: weight}, problem
}

func (t *translator) convertMirror(fromNS, fromKind string, f *gwv1.HTTPRequestMirrorFilter, parentSvc ir.NamespacedName) (ir.Mirror, string) {
	m := ir.Mirror{Percent: 100}
	switch {
	case f.Percent != nil:
		m.Percent = float64(*f.Percent)
	case f.Fraction != nil:
		den := int32(100)
		if f.Fraction.Denominator != nil && *f.Fraction.Denominator > 0 {
			den = *f.Fraction.Denominator
		}
		m.Percent = 100 * float64(f.Fraction.Numerator) / float64(den)
	}
	key, problem := t.resolveBackend(fromNS, fromKind, f.BackendRef, parentSvc)
	m.Backend = key
	return m, problem
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

// resolveBackend finds the Service port a backendRef names. The problem
// message ends with the spec reason in parentheses.
func (t *translator) resolveBackend(fromNS, fromKind string, ref gwv1.BackendObjectReference, parentSvc ir.NamespacedName) (string, string) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if kind == "ServiceEntry" && group == "networking.istio.io" {
		return t.resolveServiceEntryBackend(fromNS, fromKind, ref, parentSvc)
	}
	if (group != "" && group != "core") || kind != "Service" {
		return "", fmt.Sprintf("%s.%s is not a supported backend kind (InvalidKind)", kind, group)
	}
	ns := fromNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	target := ir.NamespacedName{Namespace: ns, Name: string(ref.Name)}
	if ns != fromNS && target != parentSvc && !t.referenceGranted(fromKind, fromNS, ns, string(ref.Name)) {
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

// servicePort finds a Service's port by number.
func servicePort(s *corev1.Service, port int32) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Port == port {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

// resolveServiceEntryBackend finds the port of a ServiceEntry a backendRef
// names (its first host), as Istio accepts ServiceEntry backends.
func (t *translator) resolveServiceEntryBackend(fromNS, fromKind string, ref gwv1.BackendObjectReference, parentSvc ir.NamespacedName) (string, string) {
	ns := fromNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if ns != fromNS && !t.referenceGranted(fromKind, fromNS, ns, string(ref.Name)) {
		return "", fmt.Sprintf("ServiceEntry %s/%s is in another namespace and no ReferenceGrant allows it (RefNotPermitted)", ns, ref.Name)
	}
	for _, se := range t.snap.ServiceEntries {
		if se.Namespace != ns || se.Name != string(ref.Name) || len(se.Spec.GetHosts()) == 0 {
			continue
		}
		if ref.Port == nil {
			return "", fmt.Sprintf("ServiceEntry %s/%s: port is required (BackendNotFound)", ns, ref.Name)
		}
		host := se.Spec.GetHosts()[0]
		key := ir.BackendKey(ns, "ServiceEntry/"+host, uint16(*ref.Port))
		if _, ok := t.out.Backends[key]; ok {
			return key, ""
		}
		for _, p := range se.Spec.GetPorts() {
			if p.GetNumber() == uint32(*ref.Port) {
				t.serviceEntryHost(se, host) // registers the host's backends
				return key, ""
			}
		}
		return "", fmt.Sprintf("ServiceEntry %s/%s has no port %d (BackendNotFound)", ns, ref.Name, *ref.Port)
	}
	return "", fmt.Sprintf("ServiceEntry %s/%s not found (BackendNotFound)", ns, ref.Name)
}

// backendFilter is a backendRef's filter as HTTPRoute and GRPCRoute both
// carry it: only the header modifiers are supported there.
type backendFilter struct {
	typ       string
	req, resp *gwv1.HTTPHeaderFilter
}

// ruleBackend resolves one backendRef of a rule with its filters. A filter
// the waypoint cannot apply makes the backendRef's share of requests a 500.
func (t *translator) ruleBackend(fromNS, kind string, ref gwv1.BackendRef, filters []backendFilter,
	parentSvc ir.NamespacedName, probs *ruleProblems, ri, i int) ir.WeightedBackend {
	wb, problem := t.weightedBackend(fromNS, kind, ref, parentSvc)
	if problem != "" {
		probs.refs = append(probs.refs, fmt.Sprintf("rule %d backendRef %d: %s", ri, i, problem))
	}
	for _, f := range filters {
		switch {
		case f.typ == "RequestHeaderModifier" && f.req != nil:
			wb.RequestHeaders = convertHeaderFilter(f.req)
		case f.typ == "ResponseHeaderModifier" && f.resp != nil:
			wb.ResponseHeaders = convertHeaderFilter(f.resp)
		case f.typ == "RequestHeaderModifier" || f.typ == "ResponseHeaderModifier":
			// declared without its modifier: nothing to apply
		default:
			probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d backendRef %d: filter %s is not supported on a backendRef; its share of requests gets 500", ri, i, f.typ))
			wb.Backend = ""
		}
	}
	return wb
}
