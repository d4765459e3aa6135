package authz

// A slow reference evaluator that interprets the IR directly on every call,
// using the regular expressions istiod would hand to Envoy, and a fuzz test
// comparing it with the compiled Evaluator.

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

type refResult struct {
	Allowed bool
	Policy  string
	Action  ir.AuthzAction
	Shadow  []DryRunResult
}

func refEvaluate(policies []*ir.AuthzPolicy, opts Options, r *Request) refResult {
	var ps []*ir.AuthzPolicy
	for _, p := range policies {
		if p != nil {
			ps = append(ps, p)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		ki := "ns[" + ps[i].Name.Namespace + "]-policy[" + ps[i].Name.Name + "]"
		kj := "ns[" + ps[j].Name.Namespace + "]-policy[" + ps[j].Name.Name + "]"
		return ki < kj
	})
	td := opts.TrustDomain
	if td == "" {
		td = "cluster.local"
	}
	bundle := append([]string{td}, opts.TrustDomainAliases...)

	var res refResult
	var denyHit, allowHit string
	haveAllow := false
	for _, p := range ps {
		action, invalid := p.Action, p.Invalid != ""
		switch action {
		case "":
			action = ir.AuthzAllow
		case ir.AuthzAllow, ir.AuthzDeny, ir.AuthzAudit:
		case ir.AuthzCustom:
			continue // the caller's, through Custom
		default:
			action, invalid = ir.AuthzDeny, true
		}
		name := p.Name.Namespace + "/" + p.Name.Name
		var matched bool
		if invalid {
			matched = action != ir.AuthzAllow
		} else {
			for _, rule := range p.Rules {
				if rule != nil && refRule(rule, action == ir.AuthzAllow, p.Name.Namespace, bundle, opts.XFFNumTrustedHops, r) {
					matched = true
					break
				}
			}
		}
		switch {
		case p.DryRun || action == ir.AuthzAudit:
			res.Shadow = append(res.Shadow, DryRunResult{Policy: name, Action: action, DryRun: p.DryRun, Matched: matched})
		case action == ir.AuthzDeny:
			if matched && denyHit == "" {
				denyHit = name
			}
		default:
			haveAllow = true
			if matched && allowHit == "" {
				allowHit = name
			}
		}
	}
	switch {
	case denyHit != "":
		res.Policy, res.Action = denyHit, ir.AuthzDeny
	case !haveAllow:
		res.Allowed = true
	case allowHit != "":
		res.Allowed, res.Policy, res.Action = true, allowHit, ir.AuthzAllow
	}
	return res
}

// attr is one attribute constraint, named by its condition key.
type attr struct {
	key       string
	vals, not []string
}

func sourceAttrs(s *ir.AuthzSource) []attr {
	if s == nil {
		return nil
	}
	return []attr{
		{"source.principal", s.Principals, s.NotPrincipals},
		{"request.auth.principal", s.RequestPrincipals, s.NotRequestPrincipals},
		{"source.namespace", s.Namespaces, s.NotNamespaces},
		{"source.serviceAccount", s.ServiceAccounts, s.NotServiceAccounts},
		{"source.ip", s.IPBlocks, s.NotIPBlocks},
		{"remote.ip", s.RemoteIPBlocks, s.NotRemoteIPBlocks},
	}
}

func operationAttrs(o *ir.AuthzOperation) []attr {
	if o == nil {
		return nil
	}
	return []attr{
		{":host", o.Hosts, o.NotHosts},
		{"destination.port", o.Ports, o.NotPorts},
		{":method", o.Methods, o.NotMethods},
		{":path", o.Paths, o.NotPaths},
	}
}

func refKnown(key string) bool {
	switch key {
	case "source.principal", "request.auth.principal", "source.namespace", "source.serviceAccount", "source.ip",
		"remote.ip", ":host", "destination.port", ":method", ":path", "destination.ip", "connection.sni",
		"request.auth.audiences", "request.auth.presenter":
		return true
	}
	return strings.HasPrefix(key, "request.headers") || strings.HasPrefix(key, "request.experimental.inline.headers") ||
		strings.HasPrefix(key, "request.auth.claims")
}

func refHTTPOnly(key string) bool {
	return strings.HasPrefix(key, "request.") || key == ":host" || key == ":method" || key == ":path"
}

var pchar = `[a-zA-Z0-9\-._~%!$&'()+,;:@=]`

// refTemplate builds Envoy's uri_template regex for an Istio path template.
func refTemplate(v string) *regexp.Regexp {
	if !strings.HasPrefix(v, "/") {
		return nil
	}
	parts := strings.Split(v[1:], "/")
	seenAny := false
	var out []string
	for i, p := range parts {
		switch {
		case p == "{*}" || p == "{**}":
			if seenAny {
				return nil
			}
			if p == "{**}" {
				seenAny = true
				out = append(out, pchar[:len(pchar)-1]+`/]*`)
			} else {
				out = append(out, pchar+`+`)
			}
		case p == "" && i > 0 && i == len(parts)-1:
			out = append(out, "")
		case regexp.MustCompile(`^` + pchar + `+$`).MatchString(p):
			out = append(out, regexp.QuoteMeta(p))
		default:
			return nil
		}
	}
	return regexp.MustCompile(`^/` + strings.Join(out, "/") + `$`)
}

func refBracket(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") || len(s) < 3 {
		return "", false
	}
	return s[1 : len(s)-1], true
}

func refValid(key, v, ns string) bool {
	switch key {
	case "source.ip", "remote.ip", "destination.ip":
		if strings.Contains(v, "/") {
			_, err := netip.ParsePrefix(v)
			return err == nil
		}
		_, err := netip.ParseAddr(v)
		return err == nil
	case "destination.port":
		p, err := strconv.Atoi(v)
		return err == nil && p >= 0 && p <= 65535 && !strings.HasPrefix(v, "+") && !strings.HasPrefix(v, "-")
	case "source.serviceAccount":
		parts := strings.Split(v, "/")
		if len(parts) == 1 {
			parts = []string{ns, v}
		}
		return len(parts) == 2 && parts[0] != "" && parts[1] != "" && !strings.Contains(v, "*")
	case ":path":
		if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
			return refTemplate(v) != nil
		}
	}
	switch {
	case strings.HasPrefix(key, "request.headers"):
		_, ok := refBracket(strings.TrimPrefix(key, "request.headers"))
		return ok
	case strings.HasPrefix(key, "request.experimental.inline.headers"):
		_, ok := refBracket(strings.TrimPrefix(key, "request.experimental.inline.headers"))
		return ok
	case strings.HasPrefix(key, "request.auth.claims"):
		_, ok := refClaimPath(key)
		return ok
	}
	return true
}

var (
	refClaimGroups = regexp.MustCompile(`^(?:\[[^\[\]]*\])+$`)
	refClaimGroup  = regexp.MustCompile(`\[([^\[\]]*)\]`)
)

// refClaimPath: the webhook wants "a[b]" with at least one character in the
// first brackets; istiod then reads a run of "[x]" groups as a nested path
// and anything else inside the outer brackets as one claim name.
func refClaimPath(key string) ([]string, bool) {
	open := strings.Index(key, "[")
	if !strings.HasSuffix(key, "]") || open < 1 || len(key)-open < 3 {
		return nil, false
	}
	rest := key[len("request.auth.claims"):]
	if refClaimGroups.MatchString(rest) {
		var path []string
		for _, m := range refClaimGroup.FindAllStringSubmatch(rest, -1) {
			path = append(path, m[1])
		}
		return path, true
	}
	if len(rest) >= 2 && rest[0] == '[' && rest[len(rest)-1] == ']' {
		return []string{rest[1 : len(rest)-1]}, true
	}
	return nil, false
}

// refClaim is the JWT payload value at path (Envoy metadata path lookup).
func refClaim(v any, path []string) (any, bool) {
	if len(path) == 0 {
		return v, true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	next, ok := m[path[0]]
	if !ok {
		return nil, false
	}
	return refClaim(next, path[1:])
}

// refClaimValue: one value against a claim, as the OR of a list match
// (one_of) and a string match.
func refClaimValue(r *Request, path []string, v string) bool {
	if r.RequestClaims == nil {
		return false
	}
	got, ok := refClaim(r.RequestClaims, path)
	if !ok {
		return false
	}
	var candidates []string
	switch x := got.(type) {
	case string:
		candidates = []string{x}
	case []any:
		for _, e := range x {
			if s, isStr := e.(string); isStr {
				candidates = append(candidates, s)
			}
		}
	case []string: // a list built in Go rather than decoded from JSON
		candidates = x
	}
	for _, c := range candidates {
		if refString(v, c) {
			return true
		}
	}
	return false
}

// refIssSub is the JWT issuer and subject the request principal is matched on.
func refIssSub(r *Request) (iss, sub string, ok bool) {
	if r.RequestClaims != nil {
		iss, ok1 := r.RequestClaims["iss"].(string)
		sub, ok2 := r.RequestClaims["sub"].(string)
		return iss, sub, ok1 && ok2
	}
	i := strings.LastIndex(r.RequestPrincipal, "/")
	if r.RequestPrincipal == "" || i < 0 {
		return "", "", false
	}
	return r.RequestPrincipal[:i], r.RequestPrincipal[i+1:], true
}

func refRule(rule *ir.AuthzRule, strict bool, ns string, bundle []string, hops uint32, r *Request) bool {
	var whens []attr
	for _, c := range rule.When {
		if c != nil {
			whens = append(whens, attr{c.Key, c.Values, c.NotValues})
		}
	}
	var froms, tos [][]attr
	for _, s := range rule.From {
		froms = append(froms, sourceAttrs(s))
	}
	for _, o := range rule.To {
		tos = append(tos, operationAttrs(o))
	}
	if strict {
		all := append([]attr(nil), whens...)
		for _, f := range append(append([][]attr(nil), froms...), tos...) {
			all = append(all, f...)
		}
		for _, a := range all {
			if !refKnown(a.key) {
				return false
			}
			used := len(a.vals)+len(a.not) > 0
			if used && !r.HTTP && refHTTPOnly(a.key) {
				return false
			}
			for _, v := range append(append([]string(nil), a.vals...), a.not...) {
				if !refValid(a.key, v, ns) {
					return false
				}
			}
		}
	}
	eval := func(a attr) bool {
		if !refKnown(a.key) || (!r.HTTP && refHTTPOnly(a.key)) {
			return true
		}
		var vals, not []string
		for _, v := range a.vals {
			if refValid(a.key, v, ns) {
				vals = append(vals, v)
			}
		}
		for _, v := range a.not {
			if refValid(a.key, v, ns) {
				not = append(not, v)
			}
		}
		ok := true
		if len(vals) > 0 {
			ok = false
			for _, v := range vals {
				ok = ok || refMatch(a.key, v, ns, bundle, hops, r)
			}
		}
		for _, v := range not {
			if refMatch(a.key, v, ns, bundle, hops, r) {
				ok = false
			}
		}
		return ok
	}
	all := func(as []attr) bool {
		for _, a := range as {
			if !eval(a) {
				return false
			}
		}
		return true
	}
	some := func(entries [][]attr) bool {
		if len(entries) == 0 {
			return true
		}
		for _, e := range entries {
			if all(e) {
				return true
			}
		}
		return false
	}
	return all(whens) && some(froms) && some(tos)
}

// refAliases is Istio's ReplaceTrustDomainAliases for one principal.
func refAliases(p string, bundle []string) []string {
	parts := strings.Split(p, "/")
	if len(parts) != 5 || parts[0] == "*" {
		return []string{p}
	}
	td := parts[0]
	wild := func(a, pat string) bool {
		if a == pat || pat == "*" {
			return true
		}
		if strings.HasSuffix(pat, "*") && strings.HasPrefix(a, pat[:len(pat)-1]) {
			return true
		}
		return strings.HasPrefix(pat, "*") && strings.HasSuffix(a, pat[1:])
	}
	known := td == "cluster.local"
	for _, b := range bundle {
		known = known || wild(td, b) || wild(b, td)
	}
	if !known {
		return []string{p}
	}
	seen := map[string]bool{}
	var out []string
	for _, b := range bundle {
		np := b + "/" + strings.Join(parts[1:], "/")
		if strings.HasPrefix(td, "*") && strings.HasSuffix(b, td[1:]) {
			np = p
		}
		if !seen[np] {
			seen[np] = true
			out = append(out, np)
		}
	}
	return out
}

func refString(v, s string) bool { // Istio StringMatcher
	switch {
	case v == "*":
		return s != ""
	case strings.HasPrefix(v, "*"):
		return strings.HasSuffix(s, v[1:])
	case strings.HasSuffix(v, "*"):
		return strings.HasPrefix(s, v[:len(v)-1])
	}
	return s == v
}

func refHeaderValue(r *Request, name string) (string, bool) {
	switch strings.ToLower(name) {
	case ":authority", "host":
		return r.Host, r.Host != ""
	case ":method":
		return r.Method, r.Method != ""
	case ":path":
		return r.Path, r.Path != ""
	}
	if strings.HasPrefix(name, ":") {
		return "", false
	}
	for k, vs := range r.Headers {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return strings.Join(vs, ","), true
		}
	}
	return "", false
}

func refRemote(r *Request, hops uint32) netip.Addr {
	src := r.SourceIP.WithZone("").Unmap()
	xff := r.Headers["X-Forwarded-For"]
	if !r.HTTP || len(xff) == 0 {
		return src
	}
	s := strings.Join(xff, ",")
	for i := uint32(0); i < hops; i++ {
		c := strings.LastIndex(s, ",")
		if c < 0 {
			return src
		}
		s = s[:c]
	}
	if c := strings.LastIndex(s, ","); c >= 0 && c+1 < len(s) {
		s = s[c+1:]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return src
	}
	return a
}

func refInCIDR(v string, a netip.Addr) bool {
	var p netip.Prefix
	if strings.Contains(v, "/") {
		p = netip.MustParsePrefix(v)
	} else {
		ip := netip.MustParseAddr(v).WithZone("")
		p = netip.MustParsePrefix(ip.String() + "/" + strconv.Itoa(ip.BitLen()))
	}
	return a.IsValid() && p.Masked().Contains(a)
}

func refMatch(key, v, ns string, bundle []string, hops uint32, r *Request) bool {
	peer := r.SourcePrincipal
	switch key {
	case "source.principal":
		for _, x := range refAliases(strings.TrimPrefix(v, "spiffe://"), bundle) {
			switch {
			case x == "*":
				if peer != "" {
					return true
				}
			case strings.HasPrefix(x, "*"):
				if regexp.MustCompile(`^spiffe://.*` + regexp.QuoteMeta(x[1:]) + `$`).MatchString(peer) {
					return true
				}
			case strings.HasSuffix(x, "*"):
				if strings.HasPrefix(peer, "spiffe://"+x[:len(x)-1]) {
					return true
				}
			default:
				if peer == "spiffe://"+x {
					return true
				}
			}
		}
		return false
	case "source.namespace":
		parts := strings.Split(v, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		return peer != "" && regexp.MustCompile(`^.*/ns/`+strings.Join(parts, ".*")+`/.*$`).MatchString(peer)
	case "source.serviceAccount":
		sns, sa, ok := strings.Cut(v, "/")
		if !ok {
			sns, sa = ns, v
		}
		re := `^spiffe://.+/ns/` + regexp.QuoteMeta(sns) + `/(.+/|)sa/` + regexp.QuoteMeta(sa) + `(/.+)?$`
		return regexp.MustCompile(re).MatchString(peer)
	case "source.ip":
		return refInCIDR(v, r.SourceIP.WithZone("").Unmap())
	case "remote.ip":
		return refInCIDR(v, refRemote(r, hops))
	case "destination.ip":
		return refInCIDR(v, r.DestinationIP.WithZone("").Unmap())
	case "destination.port":
		p, _ := strconv.Atoi(v)
		return p == int(r.DestinationPort)
	case "connection.sni":
		return refString(v, r.SNI)
	case ":host":
		if v == "*" {
			return r.Host != ""
		}
		return r.Host != "" && refString(strings.ToLower(v), strings.ToLower(r.Host))
	case ":method":
		if v == "*" {
			return r.Method != ""
		}
		return r.Method != "" && refString(v, r.Method)
	case ":path":
		if re := refTemplate(v); re != nil {
			return re.MatchString(r.Path)
		}
		return refString(v, r.Path)
	case "request.auth.principal":
		iss, sub, ok := refIssSub(r)
		if !ok {
			return false
		}
		j := strings.LastIndex(v, "/")
		viss, vsub := v, ""
		if j >= 0 {
			viss, vsub = v[:j], v[j+1:]
		}
		nonEmpty := iss != "" && sub != ""
		switch {
		case v == "*":
			return nonEmpty
		case strings.HasPrefix(v, "*") && j >= 0:
			return (viss == "*" && iss != "" || viss != "*" && strings.HasSuffix(iss, viss[1:])) && sub == vsub
		case strings.HasPrefix(v, "*"):
			return iss != "" && strings.HasSuffix(sub, v[1:])
		case strings.HasSuffix(v, "*") && j >= 0:
			return iss == viss && (vsub == "*" && sub != "" || vsub != "*" && strings.HasPrefix(sub, vsub[:len(vsub)-1]))
		case strings.HasSuffix(v, "*"):
			return strings.HasPrefix(iss, v[:len(v)-1]) && sub != ""
		}
		return iss == viss && sub == vsub
	case "request.auth.audiences":
		return refClaimValue(r, []string{"aud"}, v)
	case "request.auth.presenter":
		return refClaimValue(r, []string{"azp"}, v)
	}
	switch {
	case strings.HasPrefix(key, "request.headers"):
		name, _ := refBracket(strings.TrimPrefix(key, "request.headers"))
		s, present := refHeaderValue(r, name)
		if v == "*" {
			return present
		}
		return present && refString(v, s)
	case strings.HasPrefix(key, "request.experimental.inline.headers"):
		name, _ := refBracket(strings.TrimPrefix(key, "request.experimental.inline.headers"))
		s, present := refHeaderValue(r, name)
		if v == "*" || !present {
			return present
		}
		var x string
		switch {
		case strings.HasPrefix(v, "*"):
			x = `.*` + regexp.QuoteMeta(v[1:])
		case strings.HasSuffix(v, "*"):
			x = regexp.QuoteMeta(v[:len(v)-1]) + `.*`
		default:
			x = regexp.QuoteMeta(v)
		}
		return regexp.MustCompile(`^(?:` + x + `|` + x + `,.*|.*,` + x + `,.*|.*,` + x + `)$`).MatchString(s)
	}
	if strings.HasPrefix(key, "request.auth.claims") {
		path, _ := refClaimPath(key)
		return refClaimValue(r, path, v)
	}
	return false
}

// scenario generation

type gen struct{ rnd *rand.Rand }

func (g gen) pick(vals ...string) string { return vals[g.rnd.IntN(len(vals))] }
func (g gen) chance(n int) bool          { return g.rnd.IntN(n) == 0 }

func (g gen) list(pool []string) []string {
	n := g.rnd.IntN(5) - 2 // mostly empty
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, pool[g.rnd.IntN(len(pool))])
	}
	return out
}

var (
	poolPrincipals = []string{"cluster.local/ns/foo/sa/bar", "spiffe://cluster.local/ns/foo/sa/bar", "td-old/ns/foo/sa/bar",
		"td-new/ns/foo/sa/*", "cluster.local/ns/foo/*", "*/sa/bar", "*", "*bar", "*-td/ns/foo/sa/bar", "other/ns/x/sa/y",
		"cluster.local/ns/foo/sa/bar/extra", "*/ns/foo/sa/bar"}
	poolNamespaces = []string{"foo", "f*", "*o", "*", "bar", "f*o", "ns", "fo", "sa", "foo/sa"}
	poolSAs        = []string{"foo/bar", "bar", "x/y", "foo/*", "a/b/c", "", "/bar", "foo/", "baz"}
	poolIPs        = []string{"10.0.0.0/8", "10.0.0.1", "192.168.1.0/24", "bad", "::1", "2001:db8::/32", "10.0.0.1/33",
		"1.2.3.4", "10.96.0.10", "", "10.0.0.9/8", "fe80::1%eth0"}
	poolPorts   = []string{"8080", "80", "x", "70000", "08080", "-1", ""}
	poolHosts   = []string{"svc.ns.svc.cluster.local:8080", "SVC.NS.SVC.CLUSTER.LOCAL:8080", "*.cluster.local:8080", "svc*", "*", "other", "svc.ns.svc.cluster.local"}
	poolMethods = []string{"GET", "POST", "G*", "*", "get", "*T"}
	poolPaths   = []string{"/api/v1/items", "/api/*", "*items", "*", "/api/{*}/items", "/api/{**}", "/{**}/items", "/api/{*}x",
		"api/{*}", "/a/{**}/{*}", "/{*}/{*}/{*}", "/api/v1/items/", "/{*}/"}
	poolReqPrincipals = []string{"https://issuer.example.com/alice", "*", "*/alice", "https://issuer.example.com/*", "*alice",
		"iss*", "*example.com/alice", "bob", "https://issuer.example.com/bob", "https://issuer.example.com/", "iss/bob", "/alice"}
	poolKeys = []string{"request.headers[X-Env]", "request.headers[x-env]", "request.headers[]", "request.headers",
		"request.experimental.inline.headers[X-List]", "source.ip", "remote.ip", "source.namespace", "source.principal",
		"source.serviceAccount", "destination.ip", "destination.port", "connection.sni", "request.auth.principal",
		"request.auth.audiences", "request.auth.claims[iss]", "request.auth.claims", "request.auth.claims[a][b]",
		"request.auth.presenter", "request.auth.claims[groups]", "request.auth.claims[org][team]", "request.auth.claims[org.team]",
		"request.auth.claims[a[b]]", "request.auth.claims[scope]", "request.auth.claims[]", "request.auth.claims[n]", "request.auth.claims[org]",
		"request.auth.claims[a][b]c]", "request.auth.claimsx[a]",
		"unknown.key", "experimental.envoy.filters.x[y]", "request.headers[:authority]", "request.headers[Host]", "request.headers[:path]"}
	poolWhenValues = []string{"prod", "pr*", "*", "10.0.0.0/8", "1.2.3.4", "8080", "foo", "b", "a,b", "svc.example.com", "*.example.com",
		"cluster.local/ns/foo/sa/bar", "foo/bar", "bad", "*b", "a*", "*a", "c*", "https://issuer.example.com/alice", "svc*", "/api/v1/items",
		"admin", "dev*", "*ops", "api.example.com", "web", "blue", "read", "1", "alice"}
)

func (g gen) policies() []*ir.AuthzPolicy {
	var out []*ir.AuthzPolicy
	for i, n := 0, g.rnd.IntN(5); i < n; i++ {
		if g.chance(30) {
			out = append(out, nil)
			continue
		}
		p := &ir.AuthzPolicy{
			Name:   ir.NamespacedName{Namespace: g.pick("foo", "bar", "a-b", "a"), Name: g.pick("p1", "p2", "p3")},
			Action: ir.AuthzAction(g.pick("ALLOW", "ALLOW", "DENY", "DENY", "AUDIT", "CUSTOM", "", "BOGUS")),
			DryRun: g.chance(6),
		}
		if g.chance(15) {
			p.Invalid = "broken"
		}
		if !g.chance(8) {
			p.Rules = []*ir.AuthzRule{}
			for j, m := 0, g.rnd.IntN(3)+1; j < m; j++ {
				if g.chance(20) {
					p.Rules = append(p.Rules, nil)
					continue
				}
				p.Rules = append(p.Rules, g.rule())
			}
		}
		out = append(out, p)
	}
	return out
}

func (g gen) rule() *ir.AuthzRule {
	r := &ir.AuthzRule{}
	for i, n := 0, g.rnd.IntN(3); i < n; i++ {
		if g.chance(10) {
			r.From = append(r.From, nil)
			continue
		}
		r.From = append(r.From, &ir.AuthzSource{
			Principals: g.list(poolPrincipals), NotPrincipals: g.list(poolPrincipals),
			RequestPrincipals: g.list(poolReqPrincipals), NotRequestPrincipals: g.list(poolReqPrincipals),
			Namespaces: g.list(poolNamespaces), NotNamespaces: g.list(poolNamespaces),
			ServiceAccounts: g.list(poolSAs), NotServiceAccounts: g.list(poolSAs),
			IPBlocks: g.list(poolIPs), NotIPBlocks: g.list(poolIPs),
			RemoteIPBlocks: g.list(poolIPs), NotRemoteIPBlocks: g.list(poolIPs),
		})
	}
	for i, n := 0, g.rnd.IntN(3); i < n; i++ {
		if g.chance(10) {
			r.To = append(r.To, nil)
			continue
		}
		r.To = append(r.To, &ir.AuthzOperation{
			Hosts: g.list(poolHosts), NotHosts: g.list(poolHosts),
			Ports: g.list(poolPorts), NotPorts: g.list(poolPorts),
			Methods: g.list(poolMethods), NotMethods: g.list(poolMethods),
			Paths: g.list(poolPaths), NotPaths: g.list(poolPaths),
		})
	}
	for i, n := 0, g.rnd.IntN(3); i < n; i++ {
		c := &ir.AuthzCondition{Key: g.pick(poolKeys...), Values: g.list(poolWhenValues), NotValues: g.list(poolWhenValues)}
		if len(c.Values)+len(c.NotValues) == 0 && !g.chance(4) {
			c.Values = []string{g.pick(poolWhenValues...)}
		}
		r.When = append(r.When, c)
	}
	return r
}

func (g gen) request() *Request {
	r := &Request{
		SourceIP: netip.MustParseAddr(g.pick("10.0.0.1", "192.168.1.5", "::1", "::ffff:10.0.0.1", "1.2.3.4")),
		SourcePrincipal: g.pick("spiffe://cluster.local/ns/foo/sa/bar", "spiffe://td-old/ns/foo/sa/bar", "spiffe://td-new/ns/foo/sa/bar", "", "spiffe://cluster.local/ns/fo/sa/bar/x", "cluster.local/ns/foo/sa/bar", "spiffe://x/ns/foo/y/sa/bar", "spiffe://old-td/ns/foo/sa/bar", "spiffe://cluster.local/ns/foo//sa/bar",
			"spiffe://cluster.local/ns/foo/sa/bar/", "spiffe://cluster.local/ns/foo/sa/bar/z"),
		DestinationIP:    netip.MustParseAddr(g.pick("10.96.0.10", "10.0.0.1")),
		DestinationPort:  uint16([]int{8080, 80, 9090}[g.rnd.IntN(3)]),
		HTTP:             !g.chance(3),
		Method:           g.pick("GET", "POST", "get"),
		Host:             g.pick("svc.ns.svc.cluster.local:8080", "Svc.NS.svc.cluster.local:8080", "svc.ns.svc.cluster.local", ""),
		Path:             g.pick("/api/v1/items", "/api/items", "/", "/API/v1/items", "/api//items", "", "/api/v1/items/", "/a/b/c"),
		Headers:          http.Header{},
		RequestPrincipal: g.pick("https://issuer.example.com/alice", "", "bob", "https://issuer.example.com/bob"),
		SNI:              g.pick("svc.example.com", "", "other"),
	}
	if g.chance(5) {
		r.SourceIP = netip.Addr{}
	}
	r.RequestClaims = g.claims()
	if v := g.pick("prod", "staging", "", "multi", "none"); v == "multi" {
		r.Headers["X-Env"] = []string{"a", "b"}
	} else if v != "none" {
		r.Headers["X-Env"] = []string{v}
	}
	if v := g.pick("a,b,c", "b", "xa,cb,d", "none"); v != "none" {
		r.Headers["X-List"] = []string{v}
	}
	if v := g.pick("none", "1.2.3.4", "1.2.3.4, 10.9.9.9", "garbage", "1.2.3.4,", "multi", " 10.0.0.1 "); v == "multi" {
		r.Headers["X-Forwarded-For"] = []string{"1.2.3.4", "5.6.7.8, 9.9.9.9"}
	} else if v != "none" {
		r.Headers["X-Forwarded-For"] = []string{v}
	}
	return r
}

// claims is a random JWT payload (nil: no token), shaped like what
// authn.Result.Claims holds.
func (g gen) claims() map[string]any {
	if g.chance(3) {
		return nil
	}
	c := map[string]any{}
	if v := g.pick("https://issuer.example.com", "iss", "", "none"); v != "none" {
		c["iss"] = v
	}
	if v := g.pick("alice", "bob", "", "none", "num"); v == "num" {
		c["sub"] = 7.0
	} else if v != "none" {
		c["sub"] = v
	}
	switch g.pick("str", "list", "none", "bad") {
	case "str":
		c["aud"] = g.pick("api.example.com", "web")
	case "list":
		c["aud"] = []any{"web", g.pick("api.example.com", "other")}
	case "bad":
		c["aud"] = []any{1.0, true}
	}
	if !g.chance(3) {
		c["azp"] = g.pick("web", "cli", "")
	}
	switch g.pick("list", "str", "typed", "none") {
	case "list":
		c["groups"] = []any{"dev-team", g.pick("admin", "ops", "devops")}
	case "str":
		c["groups"] = g.pick("admin", "dev")
	case "typed":
		c["groups"] = []string{"sre-ops", "blue"}
	}
	if !g.chance(3) {
		c["org"] = map[string]any{"team": g.pick("blue", "red"), "n": 1.0}
	}
	if g.chance(3) {
		c["org.team"] = "blue"
	}
	if g.chance(3) {
		c["a[b]"] = "admin"
		c["a"] = map[string]any{"b": g.pick("web", "bad")}
	}
	if g.chance(2) {
		c["scope"] = []any{"read", "write"}
	}
	c["n"] = 1.0
	return c
}

func (g gen) options() Options {
	o := Options{TrustDomain: g.pick("", "cluster.local", "td-new", "new-td")}
	if g.chance(2) {
		o.TrustDomainAliases = []string{g.pick("td-old", "old-td", "*")}
	}
	o.XFFNumTrustedHops = uint32(g.rnd.IntN(3))
	return o
}

// checkScenario compares the Evaluator with the reference for random requests.
func checkScenario(t *testing.T, seed uint64) {
	g := gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	pols := g.policies()
	opts := g.options()
	e := Compile(pols, opts)
	for i := 0; i < 8; i++ {
		r := g.request()
		want := refEvaluate(pols, opts, r)
		d := e.Evaluate(r)
		got := refResult{Allowed: d.Allowed, Policy: d.Policy, Action: d.Action, Shadow: d.DryRunResults}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d request %d: mismatch\n got  %+v\n want %+v\n options %+v\n request %+v\n policies %s\n warnings %q",
				seed, i, got, want, opts, *r, dumpPolicies(pols), e.Warnings())
		}
	}
}

func dumpPolicies(ps []*ir.AuthzPolicy) string {
	var b strings.Builder
	for _, p := range ps {
		if p == nil {
			b.WriteString("\n  <nil>")
			continue
		}
		b.WriteString("\n  " + p.Name.String() + " " + string(p.Action) + " dryRun=" + strconv.FormatBool(p.DryRun) + " invalid=" + p.Invalid)
		for _, r := range p.Rules {
			if r == nil {
				b.WriteString("\n    rule <nil>")
				continue
			}
			b.WriteString("\n    rule")
			for _, s := range r.From {
				b.WriteString("\n      from " + strings.TrimPrefix(strings.ReplaceAll(reflectString(s), "  ", " "), "&"))
			}
			for _, o := range r.To {
				b.WriteString("\n      to " + strings.TrimPrefix(reflectString(o), "&"))
			}
			for _, c := range r.When {
				b.WriteString("\n      when " + strings.TrimPrefix(reflectString(c), "&"))
			}
		}
	}
	return b.String()
}

func reflectString(v any) string {
	rv := reflect.ValueOf(v)
	if rv.IsNil() {
		return "<nil>"
	}
	rv = rv.Elem()
	var parts []string
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 {
			continue
		}
		parts = append(parts, rv.Type().Field(i).Name+"="+strings.TrimSpace(strings.ReplaceAll(fmtValue(f), "\n", " ")))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func fmtValue(v reflect.Value) string {
	if v.Kind() == reflect.Slice {
		var s []string
		for i := 0; i < v.Len(); i++ {
			s = append(s, strconv.Quote(v.Index(i).String()))
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	return strconv.Quote(v.String())
}

func TestAgainstReference(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for seed := uint64(0); seed < uint64(n); seed++ {
		checkScenario(t, seed)
	}
}

func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("allow deny audit"))
	f.Add([]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08})
	f.Add([]byte{0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0x00})
	f.Add([]byte("tcp connection with trust domain aliases"))
	f.Add([]byte("path templates {*} {**} and x-forwarded-for"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := fnv.New64a()
		h.Write(data)
		seed := h.Sum64()
		if len(data) >= 8 {
			seed ^= binary.LittleEndian.Uint64(data)
		}
		checkScenario(t, seed)
	})
}

func TestReferenceSanity(t *testing.T) {
	// The reference must itself agree with hand-checked Istio behaviour.
	r := baseRequest()
	allowGet := pol("foo", "a", ir.AuthzAllow, to(ir.AuthzOperation{Methods: l("GET")}))
	if res := refEvaluate([]*ir.AuthzPolicy{allowGet}, Options{}, r); !res.Allowed || res.Policy != "foo/a" {
		t.Fatalf("reference: %+v", res)
	}
	r.HTTP = false
	if res := refEvaluate([]*ir.AuthzPolicy{allowGet}, Options{}, r); res.Allowed {
		t.Fatalf("reference allowed TCP with an HTTP-only ALLOW rule: %+v", res)
	}
	denyPost := pol("foo", "d", ir.AuthzDeny, to(ir.AuthzOperation{Methods: l("POST")}))
	if res := refEvaluate([]*ir.AuthzPolicy{denyPost}, Options{}, r); res.Allowed {
		t.Fatalf("reference: TCP DENY with HTTP-only field must match: %+v", res)
	}
}
