package translate

import (
	"fmt"
	"regexp"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// compileGRPCRoute converts a GRPCRoute into route entries. A gRPC method
// is the HTTP/2 path "/<service>/<method>", so method matches become path
// matches: exact service and method an Exact path, a service alone a path
// prefix, anything else a regular expression.
func (t *translator) compileGRPCRoute(route *gwv1.GRPCRoute, b binding) []*ir.HTTPRouteRule {
	ref := routeRef{kind: "GRPCRoute", meta: &route.ObjectMeta}
	rn := ir.NamespacedName{Namespace: route.Namespace, Name: route.Name}
	var out []*ir.HTTPRouteRule
	var probs ruleProblems
	for ri := range route.Spec.Rules {
		rule := &route.Spec.Rules[ri]
		tmpl := &ir.HTTPRouteRule{Route: rn, RuleIndex: ri, ClientNamespace: b.clientNS, GRPC: true}
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
		for _, f := range rule.Filters {
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier:
				if f.RequestHeaderModifier != nil {
					tmpl.RequestHeaders = convertHeaderFilter(f.RequestHeaderModifier)
				}
			case gwv1.GRPCRouteFilterResponseHeaderModifier:
				if f.ResponseHeaderModifier != nil {
					tmpl.ResponseHeaders = convertHeaderFilter(f.ResponseHeaderModifier)
				}
			case gwv1.GRPCRouteFilterRequestMirror:
				if f.RequestMirror == nil {
					fail("RequestMirror filter without requestMirror")
					continue
				}
				m, problem := t.convertMirror(route.Namespace, "GRPCRoute", f.RequestMirror, b.service)
				if problem != "" {
					probs.refs = append(probs.refs, fmt.Sprintf("rule %d mirror: %s", ri, problem))
				}
				tmpl.Mirrors = append(tmpl.Mirrors, m)
			default:
				fail("filter %s is not supported; requests matching this rule get 500", f.Type)
			}
		}
		for i, br := range rule.BackendRefs {
			fs := make([]backendFilter, len(br.Filters))
			for j, f := range br.Filters {
				fs[j] = backendFilter{string(f.Type), f.RequestHeaderModifier, f.ResponseHeaderModifier}
			}
			tmpl.Backends = append(tmpl.Backends, t.ruleBackend(route.Namespace, "GRPCRoute", br.BackendRef, fs, b.service, &probs, ri, i))
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		for mi := range matches {
			m, err := convertGRPCMatch(&matches[mi])
			if err != "" {
				probs.invalid = append(probs.invalid, fmt.Sprintf("rule %d match %d: %s (match dropped)", ri, mi, err))
				continue
			}
			e := *tmpl
			e.MatchIndex, e.Match = mi, m
			out = append(out, &e)
		}
	}
	probs.report(t, ref, b, len(out))
	return out
}

func convertGRPCMatch(m *gwv1.GRPCRouteMatch) (ir.HTTPMatch, string) {
	var out ir.HTTPMatch
	if mm := m.Method; mm != nil {
		typ := gwv1.GRPCMethodMatchExact
		if mm.Type != nil {
			typ = *mm.Type
		}
		var svc, method string
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		switch typ {
		case gwv1.GRPCMethodMatchExact:
			switch {
			case svc != "" && method != "":
				out.Path = &ir.PathMatch{Type: ir.MatchExact, Value: "/" + svc + "/" + method}
			case svc != "":
				out.Path = &ir.PathMatch{Type: ir.MatchPathPrefix, Value: "/" + svc}
			case method != "":
				out.Path = &ir.PathMatch{Type: ir.MatchRegularExpression, Value: "/[^/]+/" + regexp.QuoteMeta(method)}
			}
		case gwv1.GRPCMethodMatchRegularExpression:
			if svc == "" {
				svc = "[^/]+"
			}
			if method == "" {
				method = "[^/]+"
			}
			expr := "/(?:" + svc + ")/(?:" + method + ")"
			if _, err := regexp.Compile(expr); err != nil {
				return out, fmt.Sprintf("method regular expression: %v", err)
			}
			out.Path = &ir.PathMatch{Type: ir.MatchRegularExpression, Value: expr}
		default:
			return out, fmt.Sprintf("unsupported method match type %q", typ)
		}
	}
	for _, h := range m.Headers {
		typ := gwv1.GRPCHeaderMatchExact
		if h.Type != nil {
			typ = *h.Type
		}
		if err := checkStringMatch(string(typ), h.Value); err != "" {
			return out, fmt.Sprintf("header %s: %s", h.Name, err)
		}
		out.Headers = append(out.Headers, ir.HeaderMatch{Type: ir.MatchType(typ), Name: string(h.Name), Value: h.Value})
	}
	return out, ""
}
