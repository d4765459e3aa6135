package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// policy is one compiled AuthorizationPolicy.
type policy struct {
	name     string // "namespace/name"
	action   ir.AuthzAction
	dryRun   bool
	reason   string // Decision.Reason when this policy decides
	matchAll bool   // fail-closed DENY/AUDIT
	isAllow  bool   // ALLOW semantics: HTTP-only rules never match TCP
	provider string // CUSTOM: the extension provider's name
	rules    []rule
}

func (p *policy) match(c *reqCtx) bool {
	if p.matchAll {
		return true
	}
	for i := range p.rules {
		r := &p.rules[i]
		if !c.http && p.isAllow && r.httpOnly {
			continue
		}
		if r.match(c) {
			return true
		}
	}
	return false
}

// rule is (any from, or none) AND (any to, or none) AND every when.
type rule struct {
	when     []matcher
	from     [][]matcher // each entry is an AND; an empty entry matches
	to       [][]matcher
	httpOnly bool // uses an HTTP-only attribute
}

func (r *rule) match(c *reqCtx) bool {
	// Sources are usually the most selective and cheapest to check; conditions
	// (often header lookups) last. The order does not change the result.
	if len(r.from) > 0 && !anyEntry(r.from, c) {
		return false
	}
	if len(r.to) > 0 && !anyEntry(r.to, c) {
		return false
	}
	return allMatch(r.when, c)
}

func allMatch(ms []matcher, c *reqCtx) bool {
	for i := range ms {
		if !ms[i].eval(c) {
			return false
		}
	}
	return true
}

func anyEntry(entries [][]matcher, c *reqCtx) bool {
	for _, ms := range entries {
		if allMatch(ms, c) {
			return true
		}
	}
	return false
}

// Compile compiles policies into an Evaluator. It never fails: what it cannot
// use is compiled fail-closed (see the package documentation) and described by
// Evaluator.Warnings. Nil policies are ignored.
func Compile(policies []*ir.AuthzPolicy, opts Options) *Evaluator {
	td := opts.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	tds := append([]string{td}, opts.TrustDomainAliases...)

	sorted := make([]*ir.AuthzPolicy, 0, len(policies))
	for _, p := range policies {
		if p != nil {
			sorted = append(sorted, p)
		}
	}
	// Envoy's RBAC engine walks policies sorted by their generated name
	// "ns[<namespace>]-policy[<name>]-rule[<i>]"; keep the same order so the
	// reported policy is the one Envoy would report.
	sort.SliceStable(sorted, func(i, j int) bool { return envoyKey(sorted[i]) < envoyKey(sorted[j]) })

	e := &Evaluator{hops: opts.XFFNumTrustedHops}
	for _, p := range sorted {
		cp := compilePolicy(p, tds, &e.warnings)
		if cp == nil {
			continue
		}
		switch {
		case cp.dryRun || cp.action == ir.AuthzAudit:
			e.shadow = append(e.shadow, cp)
		case cp.action == ir.AuthzCustom:
			e.custom = append(e.custom, cp)
			if !slices.Contains(e.providers, cp.provider) {
				e.providers = append(e.providers, cp.provider)
			}
		case cp.action == ir.AuthzDeny:
			e.deny = append(e.deny, cp)
		default:
			e.allow = append(e.allow, cp)
		}
	}
	return e
}

func envoyKey(p *ir.AuthzPolicy) string {
	return "ns[" + p.Name.Namespace + "]-policy[" + p.Name.Name + "]"
}

func compilePolicy(p *ir.AuthzPolicy, tds []string, warnings *[]string) *policy {
	name := p.Name.String()
	warn := func(format string, args ...any) {
		*warnings = append(*warnings, name+": "+fmt.Sprintf(format, args...))
	}
	action := p.Action
	invalid := p.Invalid
	switch action {
	case "":
		action = ir.AuthzAllow // the API default
	case ir.AuthzAllow, ir.AuthzDeny, ir.AuthzAudit:
	case ir.AuthzCustom:
		// Matched like a DENY policy (fail-closed on bad values); what a
		// match means is the external authorizer's call (see Custom).
		if p.DryRun {
			warn("the istio.io/dry-run annotation is not supported on CUSTOM policies (as in Istio); policy ignored")
			return nil
		}
	default:
		invalid = fmt.Sprintf("unknown action %q", p.Action)
		action = ir.AuthzDeny
	}
	cp := &policy{name: name, action: action, dryRun: p.DryRun, isAllow: action == ir.AuthzAllow, provider: p.Provider}
	verb := "allowed"
	if action != ir.AuthzAllow {
		verb = "denied"
	}
	cp.reason = verb + " by " + string(action) + " policy " + name
	if invalid != "" {
		if cp.isAllow {
			warn("invalid (%s): ALLOW policy matches nothing", invalid)
		} else {
			warn("invalid (%s): %s policy matches everything", invalid, action)
			cp.matchAll = true
		}
		cp.reason += " (invalid policy, fail-closed)"
		return cp
	}
	c := compiler{tds: tds, namespace: p.Name.Namespace, strict: cp.isAllow}
	for i, r := range p.Rules {
		if r == nil {
			warn("rule %d is nil; skipped", i)
			continue
		}
		cr, err := c.rule(r)
		ignored := c.ignored
		c.ignored = nil
		if err != nil {
			warn("rule %d dropped (matches nothing): %v", i, err)
			continue
		}
		for _, msg := range ignored {
			warn("rule %d: %s", i, msg)
		}
		cp.rules = append(cp.rules, cr)
	}
	return cp
}

// compiler compiles the rules of one policy.
type compiler struct {
	tds       []string
	namespace string // the policy's namespace (service accounts without one)
	strict    bool   // ALLOW: any error drops the rule; otherwise the value is ignored
	ignored   []string
}

func (c *compiler) rule(r *ir.AuthzRule) (rule, error) {
	var out rule
	for _, cond := range r.When {
		if cond == nil {
			continue
		}
		if err := c.condition(&out.when, cond); err != nil {
			return rule{}, err
		}
	}
	for _, s := range r.From {
		ms, err := c.source(s)
		if err != nil {
			return rule{}, err
		}
		out.from = append(out.from, ms)
	}
	for _, o := range r.To {
		ms, err := c.operation(o)
		if err != nil {
			return rule{}, err
		}
		out.to = append(out.to, ms)
	}
	out.httpOnly = anyHTTPOnly(out.when)
	for _, ms := range append(append([][]matcher(nil), out.from...), out.to...) {
		out.httpOnly = out.httpOnly || anyHTTPOnly(ms)
	}
	return out, nil
}

func anyHTTPOnly(ms []matcher) bool {
	for i := range ms {
		if ms[i].httpOnly {
			return true
		}
	}
	return false
}

func (c *compiler) source(s *ir.AuthzSource) ([]matcher, error) {
	var ms []matcher
	if s == nil {
		return nil, nil
	}
	for _, f := range []struct {
		kind      fieldKind
		vals, not []string
	}{
		{fSourceIP, s.IPBlocks, s.NotIPBlocks},
		{fRemoteIP, s.RemoteIPBlocks, s.NotRemoteIPBlocks},
		{fPrincipal, s.Principals, s.NotPrincipals},
		{fNamespace, s.Namespaces, s.NotNamespaces},
		{fServiceAccount, s.ServiceAccounts, s.NotServiceAccounts},
		{fRequestPrincipal, s.RequestPrincipals, s.NotRequestPrincipals},
		{fTrustDomain, s.TrustDomains, s.NotTrustDomains},
	} {
		if err := c.field(&ms, matcher{kind: f.kind}, f.vals, f.not); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

func (c *compiler) operation(o *ir.AuthzOperation) ([]matcher, error) {
	var ms []matcher
	if o == nil {
		return nil, nil
	}
	for _, f := range []struct {
		kind      fieldKind
		vals, not []string
	}{
		{fDestPort, o.Ports, o.NotPorts},
		{fMethod, o.Methods, o.NotMethods},
		{fHost, o.Hosts, o.NotHosts},
		{fPath, o.Paths, o.NotPaths},
	} {
		if err := c.field(&ms, matcher{kind: f.kind}, f.vals, f.not); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// Condition keys (Istio pilot/pkg/security/authz/model/model.go).
const (
	keyRequestHeader       = "request.headers"
	keyRequestInlineHeader = "request.experimental.inline.headers"
	keySrcIP               = "source.ip"
	keyRemoteIP            = "remote.ip"
	keySrcNamespace        = "source.namespace"
	keySrcServiceAccount   = "source.serviceAccount"
	keySrcPrincipal        = "source.principal"
	keyRequestPrincipal    = "request.auth.principal"
	keyRequestAudiences    = "request.auth.audiences"
	keyRequestPresenter    = "request.auth.presenter"
	keyRequestClaims       = "request.auth.claims"
	keyDestIP              = "destination.ip"
	keyDestPort            = "destination.port"
	keyConnSNI             = "connection.sni"
	keyEnvoyFilter         = "experimental.envoy.filters."
)

var errBadKey = errors.New("bad key")

func (c *compiler) condition(dst *[]matcher, cond *ir.AuthzCondition) error {
	k := cond.Key
	m := matcher{}
	switch {
	case k == keyDestIP:
		m.kind = fDestIP
	case k == keyDestPort:
		m.kind = fDestPort
	case k == keyConnSNI:
		m.kind = fSNI
	case k == keySrcIP:
		m.kind = fSourceIP
	case k == keyRemoteIP:
		m.kind = fRemoteIP
	case k == keySrcNamespace:
		m.kind = fNamespace
	case k == keySrcServiceAccount:
		m.kind = fServiceAccount
	case k == keySrcPrincipal:
		m.kind = fPrincipal
	case k == keyRequestPrincipal:
		m.kind = fRequestPrincipal
	case k == keyRequestAudiences:
		m.kind, m.claim = fClaim, []string{"aud"}
	case k == keyRequestPresenter:
		m.kind, m.claim = fClaim, []string{"azp"}
	case strings.HasPrefix(k, keyRequestHeader), strings.HasPrefix(k, keyRequestInlineHeader):
		m.kind = fHeader
		prefix := keyRequestHeader
		if strings.HasPrefix(k, keyRequestInlineHeader) {
			m.kind, prefix = fInlineHeader, keyRequestInlineHeader
		}
		name, ok := bracketName(k[len(prefix):])
		if !ok {
			m.badKey = true
			break
		}
		m.header = textproto.CanonicalMIMEHeaderKey(name)
		switch strings.ToLower(name) {
		case ":authority", "host":
			m.pseudo = pseudoAuthority
		case ":method":
			m.pseudo = pseudoMethod
		case ":path":
			m.pseudo = pseudoPath
		default:
			if strings.HasPrefix(name, ":") {
				m.pseudo = pseudoAbsent
			}
		}
	case strings.HasPrefix(k, keyRequestClaims):
		m.kind = fClaim
		path, ok := claimPath(k)
		m.claim, m.badKey = path, !ok
	default:
		why := "unknown condition key"
		if strings.HasPrefix(k, keyEnvoyFilter) {
			why = "unsupported condition key (Envoy metadata)"
		}
		if c.strict {
			return fmt.Errorf("%s %q", why, k)
		}
		c.ignored = append(c.ignored, fmt.Sprintf("%s %q ignored (the rule matches more)", why, k))
		return nil
	}
	return c.field(dst, m, cond.Values, cond.NotValues)
}

// bracketName extracts NAME from "[NAME]" (Istio extractNameInBrackets; the
// validation webhook additionally requires a non-empty name).
func bracketName(s string) (string, bool) {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return "", false
	}
	return s[1 : len(s)-1], true
}

// claimPath reads the claim names of a "request.auth.claims[a][b]..." key:
// the validation webhook's a[b] shape (security.validateMapKey: a name of at
// least one character in the first brackets), then istiod's parse
// (authz/model extractNameInNestedBrackets): a run of "[name]" groups is a
// nested path; anything else between the outer brackets is one claim name,
// so "[a.b]" is the claim "a.b" and "[a[b]]" the claim "a[b]".
func claimPath(key string) ([]string, bool) {
	open := strings.IndexByte(key, '[')
	if !strings.HasSuffix(key, "]") || open <= 0 || open >= len(key)-2 {
		return nil, false
	}
	s := key[len(keyRequestClaims):]
	var path []string
	for begin := 0; begin < len(s); {
		end := -1
		if s[begin] == '[' {
			for i := begin + 1; i < len(s); i++ {
				if s[i] == '[' {
					break
				}
				if s[i] == ']' {
					end = i
					break
				}
			}
		}
		if end < 0 {
			if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
				return nil, false
			}
			return []string{s[1 : len(s)-1]}, true
		}
		path = append(path, s[begin+1:end])
		begin = end + 1
	}
	return path, len(path) > 0
}

// field compiles values (one matcher) and notValues (a negated matcher) of one
// attribute and appends them to dst.
func (c *compiler) field(dst *[]matcher, proto matcher, values, notValues []string) error {
	for neg, list := range [2][]string{values, notValues} {
		if len(list) == 0 {
			continue
		}
		m := proto
		m.negate = neg == 1
		m.httpOnly = m.kind.httpOnly()
		n := 0
		for _, v := range list {
			if err := c.value(&m, v); err != nil {
				if c.strict {
					return fmt.Errorf("%s value %q: %w", m.kind, v, err)
				}
				c.ignored = append(c.ignored, fmt.Sprintf("%s value %q ignored (%v)", m.kind, v, err))
				continue
			}
			n++
		}
		if n > 0 {
			*dst = append(*dst, m)
		}
	}
	return nil
}

// value adds one policy value to m.
func (c *compiler) value(m *matcher, v string) error {
	switch m.kind {
	case fPrincipal:
		for _, x := range replaceTrustDomainAliases(strings.TrimPrefix(v, spiffePrefix), c.tds) {
			m.strs = append(m.strs, principalPattern(x))
		}
	case fNamespace:
		m.strs = append(m.strs, namespacePattern(v))
	case fServiceAccount:
		sa, err := c.serviceAccount(v)
		if err != nil {
			return err
		}
		m.sas = append(m.sas, sa)
	case fRequestPrincipal:
		m.reqps = append(m.reqps, requestPrincipalPattern(v))
	case fSourceIP, fRemoteIP, fDestIP:
		p, err := parseCIDR(v)
		if err != nil {
			return err
		}
		m.nets = append(m.nets, p)
	case fDestPort:
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil || p > 65535 {
			return fmt.Errorf("invalid port")
		}
		m.ports = append(m.ports, uint16(p))
	case fSNI, fTrustDomain:
		m.strs = append(m.strs, stringPattern(v, false))
	case fHost:
		m.strs = append(m.strs, hostPattern(v))
	case fMethod:
		m.strs = append(m.strs, headerPattern(v))
	case fPath:
		if containsPathTemplate(v) {
			t, err := compilePathTemplate(v)
			if err != nil {
				return err
			}
			m.paths = append(m.paths, pathPat{tmpl: t})
		} else {
			m.paths = append(m.paths, pathPat{s: stringPattern(v, false)})
		}
	case fHeader:
		if m.badKey {
			return errBadKey
		}
		m.strs = append(m.strs, headerPattern(v))
	case fInlineHeader:
		if m.badKey {
			return errBadKey
		}
		m.strs = append(m.strs, inlineHeaderPattern(v))
	case fClaim:
		if m.badKey {
			return errBadKey
		}
		m.strs = append(m.strs, stringPattern(v, false))
	}
	return nil
}

// serviceAccount parses "namespace/name" or "name" (the policy's namespace),
// rejecting what Istio's validation rejects (security.CheckServiceAccount).
func (c *compiler) serviceAccount(v string) (saPat, error) {
	if v == "" || strings.Contains(v, "*") || strings.Count(v, "/") > 1 || len(v) > 320 {
		return saPat{}, fmt.Errorf("expected 'serviceAccount' or 'namespace/serviceAccount' without wildcard")
	}
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		ns, sa = c.namespace, v
	}
	if ns == "" || sa == "" {
		return saPat{}, fmt.Errorf("empty namespace or service account")
	}
	return saPat{nsPart: "/ns/" + ns + "/", saPart: "sa/" + sa}, nil
}

// parseCIDR accepts a single IP or a CIDR (Istio util.AddrStrToPrefix).
func parseCIDR(v string) (netip.Prefix, error) {
	if v == "" {
		return netip.Prefix{}, fmt.Errorf("empty address")
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
