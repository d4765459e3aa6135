package translate

// kgateway's TrafficPolicy (gateway.kgateway.dev/v1alpha1, as of kgateway
// 2.1) on the waypoint: docs/trafficpolicy.md.
//
// Attachment, as kgateway defines it: spec.targetRefs or
// spec.targetSelectors to the waypoint Gateway (optionally one listener by
// sectionName: every request the waypoint serves), to an HTTPRoute (its
// rules) or to one rule of it by sectionName (the rule's name), and the
// ExtensionRef filter of a route rule (group gateway.kgateway.dev, kind
// TrafficPolicy). Merging is kgateway's shallow merge: each top-level
// field (rateLimit.local and rateLimit.global apart, extAuth,
// headerModifiers, cors, csrf, buffer, timeouts, retry) is taken whole from the most specific attachment that sets it
// (ExtensionRef > rule > HTTPRoute > Gateway listener > Gateway), and among
// the policies of one attachment from the oldest (creation time, then
// namespace/name). The kgateway.dev/inherited-policy-priority annotation on
// the Gateway set to ShallowMergePreferParent (or DeepMergePreferParent,
// the same here: deep merging concerns only transformations) makes the
// Gateway's policies win instead. Gateway API's own filters and fields of
// a rule (timeouts, retry, CORS) win over a policy's.

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
)

// gatewayTimeouts is what a Gateway-attached policy's timeouts get.
const gatewayTimeouts = "timeouts on a Gateway target (kgateway applies them to HTTPRoute targets only)"

const (
	// AnnotationInheritedPolicyPriority is kgateway's annotation on a
	// parent (here the waypoint Gateway) choosing whether its policies or
	// its children's win.
	AnnotationInheritedPolicyPriority = "kgateway.dev/inherited-policy-priority"
	// KindTrafficPolicy is the kind the translator's conditions name.
	KindTrafficPolicy = "TrafficPolicy"

	gatewayAPIGroup = "gateway.networking.k8s.io"
)

// tpolicy is one TrafficPolicy, validated, with what became of it.
type tpolicy struct {
	obj  *kgw.TrafficPolicy
	name string // namespace/name
	f    tpFields
	// invalid are values the waypoint refuses (the field is then left
	// out); unsupported the fields it does not implement.
	invalid, unsupported []string
	attached             bool            // reached at least one request path
	won, lost            bool            // gave a field somewhere / lost one somewhere
	missing              []missingTarget // targets it names that do not exist
}

// missingTarget is a target a policy names that does not exist: a listener
// of the waypoint Gateway, or a rule of an HTTPRoute (reported only when
// the route is attached to this waypoint).
type missingTarget struct {
	route *ir.NamespacedName
	msg   string
}

// tpFields are a policy's top-level fields, converted; set says which the
// policy sets (a disable sets its field to nothing).
type tpFields struct {
	rateLimit       *ir.TokenBucket // Key empty: filled per entry
	reqHdr, respHdr *ir.HeaderModifier
	cors            *ir.CORS
	csrf            *ir.CSRF
	maxBytes        int64
	requestMs       int64
	streamIdleMs    *int64
	retry           *ir.Retry
	extAuth         string // the provider name; "" with set["extAuth"]: disabled
	globalRL        *ir.GlobalRateLimit
	set             map[string]bool
}

// The top-level fields, in the order they are merged and reported.
// "rateLimit" is rateLimit.local; kgateway merges rateLimit.global on its
// own.
var tpFieldNames = []string{"rateLimit", "rateLimit.global", "extAuth", "headerModifiers", "cors", "csrf", "buffer", "timeouts", "retry"}

// tpIndex is the policies by attachment point.
type tpIndex struct {
	byName   map[ir.NamespacedName]*tpolicy
	gateway  []*tpolicy
	listener []*tpolicy                                  // Gateway targets with a sectionName (its one listener)
	route    map[ir.NamespacedName][]*tpolicy            // HTTPRoute targets
	rule     map[ir.NamespacedName]map[string][]*tpolicy // HTTPRoute rule targets, by rule name
	all      []*tpolicy
	bound    map[ir.NamespacedName]bool // HTTPRoutes attached to this waypoint
	// extAuthProblems are why a GatewayExtension cannot be used, by
	// provider name ("" when it can).
	extAuthProblems map[string]string
	// rateLimitProblems are the same for the rate limit services;
	// rateLimitNotes, what of one is left out while it is used.
	rateLimitProblems, rateLimitNotes map[string]string
}

// indexTrafficPolicies validates every TrafficPolicy and files it under
// the points it attaches to.
func (t *translator) indexTrafficPolicies() {
	idx := &tpIndex{byName: map[ir.NamespacedName]*tpolicy{}, route: map[ir.NamespacedName][]*tpolicy{},
		rule: map[ir.NamespacedName]map[string][]*tpolicy{}, bound: map[ir.NamespacedName]bool{},
		extAuthProblems: map[string]string{}, rateLimitProblems: map[string]string{}, rateLimitNotes: map[string]string{}}
	t.tp = idx
	if len(t.snap.TrafficPolicies) == 0 {
		return
	}
	pols := append([]*kgw.TrafficPolicy(nil), t.snap.TrafficPolicies...)
	sort.SliceStable(pols, func(i, j int) bool { return olderPolicy(pols[i], pols[j]) })
	routes := map[ir.NamespacedName]*gwv1.HTTPRoute{}
	for _, r := range t.snap.HTTPRoutes {
		routes[ir.NamespacedName{Namespace: r.Namespace, Name: r.Name}] = r
	}
	for _, o := range pols {
		p := &tpolicy{obj: o, name: o.Namespace + "/" + o.Name}
		p.f = convertTrafficPolicy(&o.Spec, p)
		idx.byName[ir.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = p
		idx.all = append(idx.all, p)
		attach := func(group, kind, name string, section *gwv1.SectionName) {
			if group != gatewayAPIGroup && group != "" {
				return
			}
			switch kind {
			case "Gateway":
				if o.Namespace != t.gw.Namespace || name != t.gw.Name {
					return
				}
				if section != nil && !t.hasListener(string(*section)) {
					p.missing = append(p.missing, missingTarget{msg: fmt.Sprintf("Gateway %s/%s has no listener %q", t.gw.Namespace, t.gw.Name, *section)})
					return
				}
				if section != nil {
					idx.listener = appendOnce(idx.listener, p)
				} else {
					idx.gateway = appendOnce(idx.gateway, p)
				}
				if p.f.set["timeouts"] && !slices.Contains(p.unsupported, gatewayTimeouts) {
					p.unsupported = append(p.unsupported, gatewayTimeouts)
				}
			case "HTTPRoute":
				rn := ir.NamespacedName{Namespace: o.Namespace, Name: name}
				if section == nil {
					idx.route[rn] = appendOnce(idx.route[rn], p)
					return
				}
				if idx.rule[rn] == nil {
					idx.rule[rn] = map[string][]*tpolicy{}
				}
				idx.rule[rn][string(*section)] = appendOnce(idx.rule[rn][string(*section)], p)
				if r := routes[rn]; r != nil && !hasRuleName(r, string(*section)) {
					p.missing = append(p.missing, missingTarget{route: &rn, msg: fmt.Sprintf("HTTPRoute %s has no rule named %q", rn, *section)})
				}
			}
		}
		for _, ref := range o.Spec.TargetRefs {
			attach(string(ref.Group), string(ref.Kind), string(ref.Name), ref.SectionName)
		}
		for _, sel := range o.Spec.TargetSelectors {
			s := labels.SelectorFromSet(sel.MatchLabels)
			switch string(sel.Kind) {
			case "Gateway":
				if t.gw.Namespace == o.Namespace && s.Matches(labels.Set(t.gw.Labels)) {
					attach(string(sel.Group), "Gateway", t.gw.Name, sel.SectionName)
				}
			case "HTTPRoute":
				for _, r := range t.snap.HTTPRoutes {
					if r.Namespace == o.Namespace && s.Matches(labels.Set(r.Labels)) {
						attach(string(sel.Group), "HTTPRoute", r.Name, sel.SectionName)
					}
				}
			}
		}
	}
}

func appendOnce(ps []*tpolicy, p *tpolicy) []*tpolicy {
	for _, q := range ps {
		if q == p {
			return ps
		}
	}
	return append(ps, p)
}

// olderPolicy orders policies as kgateway does within one attachment
// point: oldest first, then by namespace/name.
func olderPolicy(a, b *kgw.TrafficPolicy) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func (t *translator) hasListener(name string) bool {
	for _, l := range t.gw.Spec.Listeners {
		if string(l.Name) == name {
			return true
		}
	}
	return false
}

func hasRuleName(r *gwv1.HTTPRoute, name string) bool {
	for _, rule := range r.Spec.Rules {
		if rule.Name != nil && string(*rule.Name) == name {
			return true
		}
	}
	return false
}

// preferParent reports the Gateway's kgateway.dev/inherited-policy-priority.
func (t *translator) preferParent() bool {
	v := t.gw.Annotations[AnnotationInheritedPolicyPriority]
	return v == "ShallowMergePreferParent" || v == "DeepMergePreferParent"
}

// isTrafficPolicyRef reports an ExtensionRef filter naming a TrafficPolicy.
func isTrafficPolicyRef(f gwv1.HTTPRouteFilter) bool {
	return f.Type == gwv1.HTTPRouteFilterExtensionRef && f.ExtensionRef != nil &&
		string(f.ExtensionRef.Group) == kgw.Group && string(f.ExtensionRef.Kind) == KindTrafficPolicy
}

// ruleTraffic is the merged TrafficPolicy of one rule of an HTTPRoute
// (ri, with its ExtensionRef policies ext), folded into the entry
// template: timeouts, retry and CORS go to the rule's own fields where the
// rule has none of its own; the rest into tmpl.Traffic (its rate limit key
// filled per entry by entryTraffic).
func (t *translator) ruleTraffic(route *gwv1.HTTPRoute, rule *gwv1.HTTPRouteRule, ext []*tpolicy, tmpl *ir.HTTPRouteRule) {
	rn := ir.NamespacedName{Namespace: route.Namespace, Name: route.Name}
	t.tp.bound[rn] = true
	var byRule []*tpolicy
	if rule.Name != nil {
		byRule = t.tp.rule[rn][string(*rule.Name)]
	}
	levels, gw := [][]*tpolicy{ext, byRule, t.tp.route[rn], t.tp.listener, t.tp.gateway}, 3
	if t.preferParent() {
		levels, gw = [][]*tpolicy{t.tp.listener, t.tp.gateway, ext, byRule, t.tp.route[rn]}, 0
	}
	m := mergeTraffic(levels, gw)
	if m.empty() {
		return
	}
	if m.from["timeouts"] != nil && (rule.Timeouts == nil || rule.Timeouts.Request == nil) && m.f.requestMs > 0 {
		tmpl.RequestTimeoutMs = m.f.requestMs
		if tmpl.BackendRequestTimeoutMs > tmpl.RequestTimeoutMs {
			tmpl.BackendRequestTimeoutMs = 0 // the rule's per-try bound cannot exceed the whole
		}
	}
	if m.from["retry"] != nil && rule.Retry == nil && m.f.retry != nil {
		tmpl.Retry = m.f.retry
	}
	if m.from["cors"] != nil && tmpl.CORS == nil && m.f.cors != nil {
		tmpl.CORS = m.f.cors
	}
	tmpl.Traffic = m.traffic(false)
}

// entryTraffic gives one entry its own copy of the template's Traffic with
// the rate limit bucket key of the entry: one bucket per route entry, as
// Envoy keeps one per route (kgateway sets the limit on each route).
func entryTraffic(e *ir.HTTPRouteRule, svc ir.NamespacedName) {
	if e.Traffic == nil || e.Traffic.LocalRateLimit == nil {
		return
	}
	tr := *e.Traffic
	tb := *tr.LocalRateLimit
	kind := "HTTPRoute"
	if e.GRPC {
		kind = "GRPCRoute"
	}
	tb.Key = fmt.Sprintf("%s|%s %s rule %d match %d|%s", tb.Key, kind, e.Route, e.RuleIndex, e.MatchIndex, svc)
	if e.ClientNamespace != "" {
		tb.Key += "|clients " + e.ClientNamespace
	}
	tr.LocalRateLimit = &tb
	e.Traffic = &tr
}

// gatewayTraffic applies the Gateway's policies where no route entry
// does: the HTTP service ports' unrouted traffic, the workload port's, and
// GRPCRoute entries (TrafficPolicies target HTTPRoutes, not GRPCRoutes).
func (t *translator) gatewayTraffic() {
	if len(t.tp.gateway) == 0 && len(t.tp.listener) == 0 {
		return
	}
	m := mergeTraffic([][]*tpolicy{t.tp.listener, t.tp.gateway}, 0)
	if m.empty() {
		return
	}
	withKey := func(key string) *ir.TrafficPolicy {
		tr := m.traffic(true)
		if tr != nil && tr.LocalRateLimit != nil {
			tb := *tr.LocalRateLimit
			tb.Key += "|" + key
			tr.LocalRateLimit = &tb
		}
		return tr
	}
	grpcDone := map[*ir.HTTPRouteRule]bool{}
	for _, s := range t.out.Services {
		for _, sp := range s.Ports {
			if sp.Protocol != ir.ProtocolHTTP {
				continue
			}
			sp.Traffic = withKey(fmt.Sprintf("%s %s/%s:%d", serviceKind(s), s.Namespace, s.Name, sp.Port))
			for _, e := range sp.Routes {
				if e.GRPC && !grpcDone[e] {
					grpcDone[e] = true
					if m.from["retry"] != nil && e.Retry == nil {
						e.Retry = m.f.retry
					}
					e.Traffic = m.traffic(false)
					entryTraffic(e, ir.NamespacedName{Namespace: s.Namespace, Name: s.Name})
				}
			}
		}
	}
	if t.out.WorkloadPort != nil {
		t.out.WorkloadPort.Traffic = withKey("workloads")
	}
}

func serviceKind(s *ir.Service) string {
	if s.Kind != "" {
		return s.Kind
	}
	return "Service"
}

// merged is the outcome of one merge: the fields and the policy each came
// from.
type merged struct {
	f    tpFields
	from map[string]*tpolicy
}

func (m *merged) empty() bool { return len(m.from) == 0 }

// mergeTraffic takes each field from the first policy that sets it,
// levels in priority order, each level's policies oldest first. The
// Gateway's levels (its listener's at index gw, its own at gw+1) give no
// timeouts: kgateway applies them to HTTPRoute targets only.
func mergeTraffic(levels [][]*tpolicy, gw int) merged {
	m := merged{from: map[string]*tpolicy{}}
	for _, field := range tpFieldNames {
		for li, level := range levels {
			for _, p := range level {
				p.attached = true
				if !p.f.set[field] || ((li == gw || li == gw+1) && field == "timeouts") {
					continue
				}
				if m.from[field] == nil {
					m.from[field] = p
					p.won = true
					copyField(&m.f, &p.f, field)
				} else if m.from[field] != p {
					p.lost = true
				}
			}
		}
	}
	return m
}

func copyField(dst, src *tpFields, field string) {
	switch field {
	case "rateLimit":
		dst.rateLimit = src.rateLimit
	case "headerModifiers":
		dst.reqHdr, dst.respHdr = src.reqHdr, src.respHdr
	case "cors":
		dst.cors = src.cors
	case "csrf":
		dst.csrf = src.csrf
	case "buffer":
		dst.maxBytes = src.maxBytes
	case "timeouts":
		dst.requestMs, dst.streamIdleMs = src.requestMs, src.streamIdleMs
	case "retry":
		dst.retry = src.retry
	case "extAuth":
		dst.extAuth = src.extAuth
	case "rateLimit.global":
		dst.globalRL = src.globalRL
	}
}

// traffic is the proxy's part of the merge (nil when it has none); with
// cors, the CORS too (for traffic no route entry takes).
func (m *merged) traffic(cors bool) *ir.TrafficPolicy {
	tr := &ir.TrafficPolicy{RequestHeaders: m.f.reqHdr, ResponseHeaders: m.f.respHdr, CSRF: m.f.csrf, MaxRequestBytes: m.f.maxBytes,
		StreamIdleTimeoutMs: m.f.streamIdleMs, ExtAuthz: m.f.extAuth, GlobalRateLimit: m.f.globalRL}
	if cors {
		tr.CORS = m.f.cors
	}
	if p := m.from["rateLimit"]; p != nil && m.f.rateLimit != nil {
		tb := *m.f.rateLimit
		tb.Key = p.name
		tr.LocalRateLimit = &tb
	}
	if tr.LocalRateLimit == nil && tr.RequestHeaders == nil && tr.ResponseHeaders == nil && tr.CSRF == nil &&
		tr.MaxRequestBytes == 0 && tr.CORS == nil && tr.StreamIdleTimeoutMs == nil && tr.ExtAuthz == "" &&
		tr.GlobalRateLimit == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, field := range tpFieldNames {
		if p := m.from[field]; p != nil && !seen[p.name] {
			seen[p.name] = true
			tr.Sources = append(tr.Sources, p.name)
		}
	}
	sort.Strings(tr.Sources)
	return tr
}

// convertTrafficPolicy converts the fields the waypoint honours and notes
// those it refuses or does not implement.
func convertTrafficPolicy(s *kgw.TrafficPolicySpec, p *tpolicy) tpFields {
	f := tpFields{set: map[string]bool{}}
	bad := func(format string, args ...any) { p.invalid = append(p.invalid, fmt.Sprintf(format, args...)) }
	if rl := s.RateLimit; rl != nil {
		if g := rl.Global; g != nil {
			if out, err := convertGlobalRateLimit(g, p.obj.Namespace); err != "" {
				bad("%s", err)
			} else {
				f.set["rateLimit.global"] = true
				f.globalRL = out
			}
		}
		if l := rl.Local; l != nil {
			if tb := l.TokenBucket; tb == nil {
				f.set["rateLimit"] = true // empty local: disables a less specific one
			} else if d, err := parseKgwDuration(tb.FillInterval); err != nil || d < 50*time.Millisecond {
				bad("rateLimit.local.tokenBucket.fillInterval %q: a duration of at least 50ms is required", tb.FillInterval)
			} else if tb.MaxTokens < 1 {
				bad("rateLimit.local.tokenBucket.maxTokens must be at least 1")
			} else {
				per := uint32(1)
				if tb.TokensPerFill != nil {
					per = *tb.TokensPerFill
				}
				if per < 1 {
					bad("rateLimit.local.tokenBucket.tokensPerFill must be at least 1")
				} else {
					f.set["rateLimit"] = true
					f.rateLimit = &ir.TokenBucket{MaxTokens: tb.MaxTokens, TokensPerFill: per, FillIntervalMs: d.Milliseconds()}
				}
			}
		}
	}
	if h := s.HeaderModifiers; h != nil {
		if h.Request == nil && h.Response == nil {
			bad("headerModifiers: at least one of request or response must be provided")
		} else {
			f.set["headerModifiers"] = true
			if h.Request != nil {
				f.reqHdr = convertHeaderFilter(h.Request)
			}
			if h.Response != nil {
				f.respHdr = convertHeaderFilter(h.Response)
			}
		}
	}
	if c := s.Cors; c != nil {
		f.set["cors"] = true
		if c.Disable == nil && c.HTTPCORSFilter != nil {
			f.cors = convertCORS(c.HTTPCORSFilter)
		}
	}
	if c := s.Csrf; c != nil {
		if c.PercentageEnabled != nil && c.PercentageShadowed != nil {
			bad("csrf: at most one of percentageEnabled and percentageShadowed may be set")
		} else if out, err := convertCSRF(c); err != "" {
			bad("%s", err)
		} else {
			f.set["csrf"] = true
			f.csrf = out
		}
	}
	if b := s.Buffer; b != nil {
		switch {
		case b.Disable != nil && b.MaxRequestSize == nil:
			f.set["buffer"] = true
		case b.Disable == nil && b.MaxRequestSize != nil:
			n := b.MaxRequestSize.Value()
			if n <= 0 || n >= 1<<32 {
				bad("buffer.maxRequestSize must be greater than 0 and less than 4Gi")
			} else {
				f.set["buffer"] = true
				f.maxBytes = n
			}
		default:
			bad("buffer: exactly one of maxRequestSize and disable must be set")
		}
	}
	if to := s.Timeouts; to != nil {
		ok := true
		if to.Request != nil {
			d, err := parseKgwDuration(*to.Request)
			if err != nil {
				bad("timeouts.request %q is not a duration", *to.Request)
				ok = false
			} else {
				f.requestMs = d.Milliseconds()
			}
		}
		if to.StreamIdle != nil {
			d, err := parseKgwDuration(*to.StreamIdle)
			if err != nil {
				bad("timeouts.streamIdle %q is not a duration", *to.StreamIdle)
				ok = false
			} else {
				ms := d.Milliseconds()
				f.streamIdleMs = &ms
			}
		}
		if ok && (to.Request != nil || to.StreamIdle != nil) {
			f.set["timeouts"] = true
		}
	}
	if ea := s.ExtAuth; ea != nil {
		switch {
		case ea.Disable != nil && ea.ExtensionRef == nil:
			f.set["extAuth"] = true
		case ea.Disable == nil && ea.ExtensionRef != nil:
			f.set["extAuth"] = true
			ns := p.obj.Namespace
			if ea.ExtensionRef.Namespace != nil && *ea.ExtensionRef.Namespace != "" {
				ns = string(*ea.ExtensionRef.Namespace)
			}
			f.extAuth = extAuthProviderName(ir.NamespacedName{Namespace: ns, Name: string(ea.ExtensionRef.Name)})
			if len(ea.ContextExtensions) > 0 {
				p.unsupported = append(p.unsupported, "extAuth.contextExtensions")
			}
			if ea.WithRequestBody != nil {
				p.unsupported = append(p.unsupported, "extAuth.withRequestBody (the GatewayExtension's applies)")
			}
		default:
			bad("extAuth: exactly one of extensionRef and disable must be set")
		}
	}
	if r := s.Retry; r != nil {
		if out, err := convertKgwRetry(r, p); err != "" {
			bad("%s", err)
		} else {
			f.set["retry"] = true
			f.retry = out
		}
	}
	for _, u := range []struct {
		name string
		set  bool
	}{
		{"ai", len(s.AI) > 0}, {"transformation", len(s.Transformation) > 0}, {"extProc", len(s.ExtProc) > 0},
		{"autoHostRewrite", s.AutoHostRewrite != nil}, {"rbac", len(s.RBAC) > 0},
	} {
		if u.set {
			p.unsupported = append(p.unsupported, u.name)
		}
	}
	return f
}

// parseKgwDuration reads a duration as kgateway's CRD allows it ("1s",
// "500ms", "1m30s").
func parseKgwDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d, nil
}

func convertCORS(c *gwv1.HTTPCORSFilter) *ir.CORS {
	out := &ir.CORS{MaxAge: c.MaxAge}
	for _, o := range c.AllowOrigins {
		out.AllowOrigins = append(out.AllowOrigins, string(o))
	}
	for _, m := range c.AllowMethods {
		out.AllowMethods = append(out.AllowMethods, string(m))
	}
	for _, h := range c.AllowHeaders {
		out.AllowHeaders = append(out.AllowHeaders, string(h))
	}
	for _, h := range c.ExposeHeaders {
		out.ExposeHeaders = append(out.ExposeHeaders, string(h))
	}
	if c.AllowCredentials != nil {
		out.AllowCredentials = *c.AllowCredentials
	}
	return out
}

// convertCSRF follows kgateway: percentageEnabled unset is 0% enforced.
func convertCSRF(c *kgw.CSRFPolicy) (*ir.CSRF, string) {
	out := &ir.CSRF{}
	if c.PercentageEnabled != nil {
		out.EnabledPercent = min(*c.PercentageEnabled, 100)
	}
	if c.PercentageShadowed != nil {
		out.ShadowPercent = min(*c.PercentageShadowed, 100)
	}
	for i, m := range c.AdditionalOrigins {
		var sm ir.StringMatch
		n := 0
		for _, v := range []struct {
			p   *string
			dst *string
		}{{m.Exact, &sm.Exact}, {m.Prefix, &sm.Prefix}, {m.Suffix, &sm.Suffix}, {m.Contains, &sm.Contains}, {m.SafeRegex, &sm.Regex}} {
			if v.p != nil {
				n++
				*v.dst = *v.p
			}
		}
		if n != 1 || (sm.Exact == "" && sm.Prefix == "" && sm.Suffix == "" && sm.Contains == "" && sm.Regex == "") {
			return nil, fmt.Sprintf("csrf.additionalOrigins[%d]: exactly one non-empty matcher is required", i)
		}
		if sm.Regex != "" {
			if _, err := regexp.Compile(sm.Regex); err != nil {
				return nil, fmt.Sprintf("csrf.additionalOrigins[%d].safeRegex: %v", i, err)
			}
		}
		sm.IgnoreCase = m.IgnoreCase
		out.AdditionalOrigins = append(out.AdditionalOrigins, sm)
	}
	return out, ""
}

// convertKgwRetry maps kgateway's retry onto the proxy's: connection
// failures are always retried; retryOn's 5xx, gateway-error and
// retriable-4xx and statusCodes are statuses; the gRPC conditions and
// envoy-ratelimited are not implemented (reported).
func convertKgwRetry(r *kgw.Retry, p *tpolicy) (*ir.Retry, string) {
	if len(r.RetryOn) == 0 && len(r.StatusCodes) == 0 {
		return nil, "retry: retryOn or statusCodes must be set"
	}
	out := &ir.Retry{Attempts: int(r.Attempts)}
	seen := map[int]bool{}
	add := func(codes ...int) {
		for _, c := range codes {
			if !seen[c] {
				seen[c] = true
				out.Codes = append(out.Codes, c)
			}
		}
	}
	var notDone []string
	for _, on := range r.RetryOn {
		// connection failures are always retried; retriable-status-codes are statusCodes
		codes, known := meshconfig.RetryOnCodes(on)
		if !known {
			notDone = append(notDone, on)
		}
		add(codes...)
	}
	for _, c := range r.StatusCodes {
		add(int(c))
	}
	sort.Ints(out.Codes)
	if len(notDone) > 0 {
		p.unsupported = append(p.unsupported, "retry.retryOn "+strings.Join(notDone, ", "))
	}
	if r.PerTryTimeout != nil {
		d, err := parseKgwDuration(*r.PerTryTimeout)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Sprintf("retry.perTryTimeout %q: a duration of at least 1ms is required", *r.PerTryTimeout)
		}
		out.PerTryTimeoutMs = d.Milliseconds()
	}
	backoff := 25 * time.Millisecond // kgateway's default base interval
	if r.BackoffBaseInterval != nil {
		d, err := parseKgwDuration(*r.BackoffBaseInterval)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Sprintf("retry.backoffBaseInterval %q: a duration of at least 1ms is required", *r.BackoffBaseInterval)
		}
		backoff = d
	}
	out.BackoffMs = backoff.Milliseconds()
	return out, ""
}

// trafficPolicyConditions reports, on each TrafficPolicy that attaches to
// this waypoint (through its Gateway, a route attached to it, or a rule's
// ExtensionRef), kgateway's ancestor conditions for the waypoint Gateway:
// Accepted (Valid, or Invalid when nothing it sets can be honoured),
// Attached (Attached; Merged when another policy won some of its fields;
// Overridden when it won none; Pending when a target it names is
// missing), and PartiallyInvalid naming each field not honoured.
func (t *translator) trafficPolicyConditions() {
	if t.tp == nil {
		return
	}
	gwRef := &ParentRef{Ref: gwv1.ParentReference{Group: ptrTo(gwv1.Group(gatewayAPIGroup)), Kind: ptrTo(gwv1.Kind("Gateway")),
		Namespace: ptrTo(gwv1.Namespace(t.gw.Namespace)), Name: gwv1.ObjectName(t.gw.Name)}}
	for _, p := range t.tp.all {
		if p.f.extAuth != "" && p.won {
			if prob := t.tp.extAuthProblems[p.f.extAuth]; prob != "" {
				p.invalid = append(p.invalid, "extAuth: "+prob+"; the requests it applies to are denied")
			}
		}
		if p.f.globalRL != nil && p.won {
			if prob := t.tp.rateLimitProblems[p.f.globalRL.Provider]; prob != "" {
				p.invalid = append(p.invalid, "rateLimit.global: "+prob)
			}
			if note := t.tp.rateLimitNotes[p.f.globalRL.Provider]; note != "" {
				p.unsupported = append(p.unsupported, note)
			}
		}
		var missing []string
		for _, m := range p.missing {
			if m.route == nil || t.tp.bound[*m.route] {
				missing = append(missing, m.msg)
			}
		}
		if !p.attached && len(missing) == 0 {
			continue // not ours: it attaches elsewhere (or nowhere we serve)
		}
		c := func(typ string, status metav1.ConditionStatus, reason, msg string) {
			t.cond(Condition{Kind: KindTrafficPolicy, Namespace: p.obj.Namespace, Name: p.obj.Name, Parent: gwRef,
				Type: typ, Status: status, Reason: reason, Message: msg})
		}
		problems := append([]string(nil), p.invalid...)
		if len(p.unsupported) > 0 {
			problems = append(problems, "not supported by the waypoint: "+strings.Join(p.unsupported, ", "))
		}
		if len(p.f.set) == 0 && len(problems) > 0 {
			c("Accepted", metav1.ConditionFalse, "Invalid", "nothing in this policy can be honoured: "+strings.Join(problems, "; "))
			continue
		}
		c("Accepted", metav1.ConditionTrue, "Valid", "Policy accepted")
		if len(problems) > 0 {
			c("PartiallyInvalid", metav1.ConditionTrue, "UnsupportedValue", "left out: "+strings.Join(problems, "; "))
		}
		switch {
		case len(missing) > 0:
			c("Attached", metav1.ConditionFalse, "Pending", strings.Join(missing, "; "))
		case p.lost && !p.won:
			c("Attached", metav1.ConditionFalse, "Overridden", "Overridden due to conflict with higher priority policy in target(s)")
		case p.lost:
			c("Attached", metav1.ConditionTrue, "Merged", "Merged with other policies in target(s) and attached")
		default:
			c("Attached", metav1.ConditionTrue, "Attached", "Attached to all targets")
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// extAuthPrefix starts the names of the ext_authz providers made from
// GatewayExtensions (the mesh config's providers have names without "/").
const extAuthPrefix = "gatewayextension/"

func extAuthProviderName(n ir.NamespacedName) string {
	return extAuthPrefix + n.Namespace + "/" + n.Name
}

// extAuthProviders adds to the waypoint the ext_authz provider of every
// GatewayExtension its TrafficPolicies use: Envoy's gRPC ext_authz to the
// extension's grpcService. One that cannot be used is added as invalid,
// so that its requests are denied (fail closed), and reported on the
// policies through extAuthProblems.
func (t *translator) extAuthProviders() {
	used := map[string]bool{}
	add := func(tr *ir.TrafficPolicy) {
		if tr != nil && tr.ExtAuthz != "" {
			used[tr.ExtAuthz] = true
		}
	}
	for _, s := range t.out.Services {
		for _, sp := range s.Ports {
			add(sp.Traffic)
			for _, e := range sp.Routes {
				add(e.Traffic)
			}
		}
	}
	if t.out.WorkloadPort != nil {
		add(t.out.WorkloadPort.Traffic)
	}
	if len(used) == 0 {
		return
	}
	if t.out.ExtAuthzProviders == nil {
		t.out.ExtAuthzProviders = map[string]*ir.ExtAuthzProvider{}
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		prov, problem := t.extAuthProvider(name)
		if problem != "" {
			prov.Invalid = problem
			t.tp.extAuthProblems[name] = problem
		}
		t.out.ExtAuthzProviders[name] = prov
	}
}

// extAuthProvider converts the GatewayExtension a provider name names.
func (t *translator) extAuthProvider(name string) (*ir.ExtAuthzProvider, string) {
	prov := &ir.ExtAuthzProvider{Name: name, Kind: ir.ExtAuthzGRPC, TimeoutMs: 200, StatusOnError: 403}
	nn, _ := ir.ParseNamespacedName(strings.TrimPrefix(name, extAuthPrefix))
	var ext *kgw.GatewayExtension
	for _, g := range t.snap.GatewayExtensions {
		if g.Namespace == nn.Namespace && g.Name == nn.Name {
			ext = g
		}
	}
	switch {
	case ext == nil:
		return prov, fmt.Sprintf("GatewayExtension %s not found", nn)
	case ext.Spec.ExtAuth == nil:
		return prov, fmt.Sprintf("GatewayExtension %s is not of type ExtAuth", nn)
	case ext.Spec.ExtAuth.GrpcService == nil:
		return prov, fmt.Sprintf("GatewayExtension %s: only extAuth.grpcService is supported by the waypoint", nn)
	}
	ea := ext.Spec.ExtAuth
	g := ea.GrpcService
	ref := g.BackendRef
	if (ref.Group != nil && *ref.Group != "" && *ref.Group != "core") || (ref.Kind != nil && *ref.Kind != "Service") {
		return prov, fmt.Sprintf("GatewayExtension %s: the grpcService backendRef must be a Service", nn)
	}
	ns := ext.Namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if ns != ext.Namespace {
		return prov, fmt.Sprintf("GatewayExtension %s: a grpcService in another namespace is not supported", nn)
	}
	if ref.Port == nil {
		return prov, fmt.Sprintf("GatewayExtension %s: the grpcService backendRef needs a port", nn)
	}
	prov.Service = ns + "/" + string(ref.Name) + "." + ns + ".svc." + t.opts.ClusterDomain
	prov.Namespace, prov.Host, prov.Port = ns, string(ref.Name)+"."+ns+".svc."+t.opts.ClusterDomain, uint16(*ref.Port)
	prov.Backend = t.authorizerBackend(ns, prov.Host, prov.Port)
	if prov.Backend == "" {
		return prov, fmt.Sprintf("GatewayExtension %s: Service %s/%s port %d not found", nn, ns, ref.Name, *ref.Port)
	}
	if g.RequestTimeout != nil {
		d, err := parseKgwDuration(*g.RequestTimeout)
		if err != nil || d < time.Millisecond {
			return prov, fmt.Sprintf("GatewayExtension %s: grpcService.requestTimeout %q: a duration of at least 1ms is required", nn, *g.RequestTimeout)
		}
		prov.TimeoutMs = d.Milliseconds()
	}
	prov.FailOpen, prov.ClearRouteCache = ea.FailOpen, ea.ClearRouteCache
	if ea.StatusOnError != 0 {
		prov.StatusOnError = int(ea.StatusOnError)
	}
	if b := ea.WithRequestBody; b != nil && b.MaxRequestBytes > 0 {
		prov.Body = &ir.ExtAuthzBody{MaxRequestBytes: uint32(b.MaxRequestBytes), AllowPartialMessage: b.AllowPartialMessage, PackAsBytes: b.PackAsBytes}
	}
	return prov, ""
}

// convertGlobalRateLimit converts rateLimit.global as kgateway does
// (createRateLimitActions): the entries of every descriptor, in order, make
// one Envoy rate limit (one descriptor sent to the service). Header
// entries use the header's name as the descriptor key, Path entries
// "path" and the :path, RemoteAddress entries Envoy's "remote_address".
func convertGlobalRateLimit(g *kgw.RateLimitPolicy, ns string) (*ir.GlobalRateLimit, string) {
	if g.ExtensionRef == nil || g.ExtensionRef.Name == "" {
		return nil, "rateLimit.global.extensionRef is required"
	}
	if len(g.Descriptors) == 0 {
		return nil, "rateLimit.global: at least one descriptor is required"
	}
	if g.ExtensionRef.Namespace != nil && *g.ExtensionRef.Namespace != "" {
		ns = string(*g.ExtensionRef.Namespace)
	}
	out := &ir.GlobalRateLimit{Provider: extAuthProviderName(ir.NamespacedName{Namespace: ns, Name: string(g.ExtensionRef.Name)})}
	for i, d := range g.Descriptors {
		if len(d.Entries) == 0 {
			return nil, fmt.Sprintf("rateLimit.global.descriptors[%d]: at least one entry is required", i)
		}
		for j, e := range d.Entries {
			where := fmt.Sprintf("rateLimit.global.descriptors[%d].entries[%d]", i, j)
			switch e.Type {
			case kgw.RateLimitEntryGeneric:
				if e.Generic == nil || e.Generic.Key == "" || e.Generic.Value == "" || e.Header != nil {
					return nil, where + ": a Generic entry needs generic.key and generic.value, and no header"
				}
				out.Entries = append(out.Entries, ir.RateLimitEntry{Kind: ir.RateLimitGeneric, Key: e.Generic.Key, Value: e.Generic.Value})
			case kgw.RateLimitEntryHeader:
				if e.Header == nil || *e.Header == "" || e.Generic != nil {
					return nil, where + ": a Header entry needs header, and no generic"
				}
				out.Entries = append(out.Entries, ir.RateLimitEntry{Kind: ir.RateLimitHeader, Key: *e.Header, Header: *e.Header})
			case kgw.RateLimitEntryRemoteAddress, kgw.RateLimitEntryPath:
				if e.Generic != nil || e.Header != nil {
					return nil, where + ": a " + e.Type + " entry takes neither generic nor header"
				}
				if e.Type == kgw.RateLimitEntryPath {
					out.Entries = append(out.Entries, ir.RateLimitEntry{Kind: ir.RateLimitPath, Key: "path"})
				} else {
					out.Entries = append(out.Entries, ir.RateLimitEntry{Kind: ir.RateLimitRemoteAddress, Key: "remote_address"})
				}
			default:
				return nil, fmt.Sprintf("%s: type %q is not one of Generic, Header, RemoteAddress, Path", where, e.Type)
			}
		}
	}
	return out, ""
}

// rateLimitProviders adds to the waypoint the rate limit service of every
// GatewayExtension its TrafficPolicies' global rate limits use. One that
// cannot be used is added as invalid: its calls fail, and its failOpen
// (false when the extension is missing or of another type) decides; the
// problem is reported on the policies through rateLimitProblems.
func (t *translator) rateLimitProviders() {
	used := map[string]bool{}
	add := func(tr *ir.TrafficPolicy) {
		if tr != nil && tr.GlobalRateLimit != nil {
			used[tr.GlobalRateLimit.Provider] = true
		}
	}
	for _, s := range t.out.Services {
		for _, sp := range s.Ports {
			add(sp.Traffic)
			for _, e := range sp.Routes {
				add(e.Traffic)
			}
		}
	}
	if t.out.WorkloadPort != nil {
		add(t.out.WorkloadPort.Traffic)
	}
	if len(used) == 0 {
		return
	}
	t.out.RateLimitProviders = map[string]*ir.RateLimitProvider{}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		prov, problem := t.rateLimitProvider(name)
		if problem != "" {
			prov.Invalid = problem
			t.tp.rateLimitProblems[name] = problem
		}
		t.out.RateLimitProviders[name] = prov
	}
}

// rateLimitProvider converts the GatewayExtension a provider name names,
// with kgateway's defaults (failOpen true, timeout 100ms).
func (t *translator) rateLimitProvider(name string) (*ir.RateLimitProvider, string) {
	prov := &ir.RateLimitProvider{Name: name, TimeoutMs: 100}
	nn, _ := ir.ParseNamespacedName(strings.TrimPrefix(name, extAuthPrefix))
	var ext *kgw.GatewayExtension
	for _, g := range t.snap.GatewayExtensions {
		if g.Namespace == nn.Namespace && g.Name == nn.Name {
			ext = g
		}
	}
	switch {
	case ext == nil:
		return prov, fmt.Sprintf("GatewayExtension %s not found; the requests it applies to get 500", nn)
	case ext.Spec.RateLimit == nil:
		return prov, fmt.Sprintf("GatewayExtension %s is not of type RateLimit; the requests it applies to get 500", nn)
	}
	rl := ext.Spec.RateLimit
	prov.FailOpen = rl.FailOpen == nil || *rl.FailOpen
	prov.Domain = rl.Domain
	outcome := "; the requests it applies to get 500"
	if prov.FailOpen {
		outcome = "; the requests it applies to are not limited (failOpen)"
	}
	if rl.Domain == "" {
		return prov, fmt.Sprintf("GatewayExtension %s: rateLimit.domain is required", nn) + outcome
	}
	if rl.Timeout != nil {
		d, err := parseKgwDuration(*rl.Timeout)
		if err != nil {
			return prov, fmt.Sprintf("GatewayExtension %s: rateLimit.timeout %q is not a duration", nn, *rl.Timeout) + outcome
		}
		prov.TimeoutMs = d.Milliseconds()
	}
	switch rl.XRateLimitHeaders {
	case "", "Off":
	case "DraftVersion03":
		prov.XRateLimitHeaders = true
	default:
		return prov, fmt.Sprintf("GatewayExtension %s: rateLimit.xRateLimitHeaders %q is not Off or DraftVersion03", nn, rl.XRateLimitHeaders) + outcome
	}
	g := rl.GrpcService
	if g == nil {
		return prov, fmt.Sprintf("GatewayExtension %s: rateLimit.grpcService is required", nn) + outcome
	}
	ref := g.BackendRef
	if (ref.Group != nil && *ref.Group != "" && *ref.Group != "core") || (ref.Kind != nil && *ref.Kind != "Service") {
		return prov, fmt.Sprintf("GatewayExtension %s: the grpcService backendRef must be a Service", nn) + outcome
	}
	ns := ext.Namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if ns != ext.Namespace {
		return prov, fmt.Sprintf("GatewayExtension %s: a grpcService in another namespace is not supported", nn) + outcome
	}
	if ref.Port == nil {
		return prov, fmt.Sprintf("GatewayExtension %s: the grpcService backendRef needs a port", nn) + outcome
	}
	if g.Authority != nil {
		prov.Authority = *g.Authority
	}
	if len(g.Retry) > 0 {
		t.tp.rateLimitNotes[name] = fmt.Sprintf("GatewayExtension %s: rateLimit.grpcService.retry (calls are not retried)", nn)
	}
	if g.RequestTimeout != nil {
		// The gRPC call's own timeout bounds it too (Envoy applies both).
		d, err := parseKgwDuration(*g.RequestTimeout)
		if err != nil || d < time.Millisecond {
			return prov, fmt.Sprintf("GatewayExtension %s: grpcService.requestTimeout %q: a duration of at least 1ms is required", nn, *g.RequestTimeout) + outcome
		}
		if ms := d.Milliseconds(); prov.TimeoutMs == 0 || ms < prov.TimeoutMs {
			prov.TimeoutMs = ms
		}
	}
	prov.Namespace, prov.Host, prov.Port = ns, string(ref.Name)+"."+ns+".svc."+t.opts.ClusterDomain, uint16(*ref.Port)
	prov.Backend = t.authorizerBackend(ns, prov.Host, prov.Port)
	if prov.Backend == "" {
		return prov, fmt.Sprintf("GatewayExtension %s: Service %s/%s port %d not found", nn, ns, ref.Name, *ref.Port) + outcome
	}
	return prov, ""
}
