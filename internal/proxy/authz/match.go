package authz

import (
	"net/netip"
	"strings"
)

const spiffePrefix = "spiffe://"

// fieldKind is the request attribute a matcher reads.
type fieldKind uint8

const (
	fPrincipal        fieldKind = iota // principals, source.principal
	fNamespace                         // namespaces, source.namespace
	fServiceAccount                    // serviceAccounts, source.serviceAccount
	fRequestPrincipal                  // requestPrincipals, request.auth.principal
	fSourceIP                          // ipBlocks, source.ip
	fRemoteIP                          // remoteIpBlocks, remote.ip
	fDestIP                            // destination.ip
	fDestPort                          // ports, destination.port
	fSNI                               // connection.sni
	fHost                              // hosts
	fMethod                            // methods
	fPath                              // paths
	fHeader                            // request.headers[...]
	fInlineHeader                      // request.experimental.inline.headers[...]
	fClaim                             // request.auth.audiences/presenter/claims[...]: a JWT claim (matcher.claim)
	fTrustDomain                       // trustDomains: the trust domain of the peer identity
)

var fieldNames = [...]string{
	fPrincipal: "principal", fNamespace: "namespace", fServiceAccount: "serviceAccount",
	fRequestPrincipal: "requestPrincipal", fSourceIP: "source.ip", fRemoteIP: "remote.ip",
	fDestIP: "destination.ip", fDestPort: "port", fSNI: "connection.sni", fHost: "host",
	fMethod: "method", fPath: "path", fHeader: "request.headers", fInlineHeader: "request.experimental.inline.headers",
	fClaim: "request.auth.claims", fTrustDomain: "trustDomain",
}

func (k fieldKind) String() string { return fieldNames[k] }

// httpOnly reports the attributes Istio refuses on TCP filter chains.
func (k fieldKind) httpOnly() bool {
	switch k {
	case fRequestPrincipal, fHost, fMethod, fPath, fHeader, fInlineHeader, fClaim:
		return true
	}
	return false
}

// Pseudo headers addressable through request.headers[...].
const (
	pseudoNone      uint8 = iota
	pseudoAuthority       // :authority, host
	pseudoMethod          // :method
	pseudoPath            // :path (without the query string here)
	pseudoAbsent          // other pseudo headers: not available
)

// matcher is one attribute's values (or notValues when negate).
type matcher struct {
	kind     fieldKind
	negate   bool
	httpOnly bool
	badKey   bool     // header/claim key could not be parsed (compile time only)
	pseudo   uint8    // for header kinds
	header   string   // canonical header name for header kinds
	claim    []string // path of the JWT claim for fClaim

	strs  []strPat
	nets  []netip.Prefix
	ports []uint16
	sas   []saPat
	reqps []reqPrincipalPat
	paths []pathPat
}

func (m *matcher) eval(c *reqCtx) bool {
	if m.httpOnly && !c.http {
		// Only DENY/AUDIT rules get here on TCP: Istio drops the attribute.
		return true
	}
	return m.any(c) != m.negate
}

// any reports whether any value matches.
func (m *matcher) any(c *reqCtx) bool {
	r := c.r
	switch m.kind {
	case fPrincipal, fNamespace:
		return anyString(m.strs, r.SourcePrincipal, r.SourcePrincipal != "")
	case fServiceAccount:
		for i := range m.sas {
			if m.sas[i].match(r.SourcePrincipal) {
				return true
			}
		}
	case fRequestPrincipal:
		iss, sub, ok := c.requestPrincipal()
		if !ok {
			return false
		}
		for i := range m.reqps {
			if m.reqps[i].iss.match(iss, true) && m.reqps[i].sub.match(sub, true) {
				return true
			}
		}
	case fSourceIP:
		return anyPrefix(m.nets, c.src)
	case fRemoteIP:
		return anyPrefix(m.nets, c.remote())
	case fDestIP:
		return anyPrefix(m.nets, c.dst)
	case fDestPort:
		for _, p := range m.ports {
			if p == r.DestinationPort {
				return true
			}
		}
	case fSNI:
		return anyString(m.strs, r.SNI, true)
	case fHost:
		return anyString(m.strs, r.Host, r.Host != "")
	case fMethod:
		return anyString(m.strs, r.Method, r.Method != "")
	case fPath:
		for i := range m.paths {
			if m.paths[i].match(r.Path) {
				return true
			}
		}
	case fHeader, fInlineHeader:
		v, ok := c.header(m)
		if !ok {
			return false
		}
		return anyString(m.strs, v, true)
	case fClaim:
		return claimMatches(m.strs, r.RequestClaims, m.claim)
	case fTrustDomain:
		td, ok := trustDomainOf(r.SourcePrincipal)
		return ok && anyString(m.strs, td, true)
	}
	return false
}

// claimMatches is Istio's JWT claim condition
// (MetadataListValueMatcherForJWTClaims over the payload Envoy's jwt_authn
// filter stores): the claim at path must be a string matching one of the
// values, or a list holding such a string. Numbers, booleans, objects and a
// missing claim match nothing.
func claimMatches(pats []strPat, claims map[string]any, path []string) bool {
	if claims == nil || len(path) == 0 {
		return false
	}
	cur := claims
	for i, k := range path {
		v, ok := cur[k]
		if !ok {
			return false
		}
		if i < len(path)-1 {
			if cur, ok = v.(map[string]any); !ok {
				return false
			}
			continue
		}
		switch x := v.(type) {
		case string:
			return anyString(pats, x, true)
		case []any:
			for _, e := range x {
				if s, ok := e.(string); ok && anyString(pats, s, true) {
					return true
				}
			}
		case []string:
			for _, s := range x {
				if anyString(pats, s, true) {
					return true
				}
			}
		}
	}
	return false
}

// trustDomainOf returns the trust domain of a SPIFFE identity
// ("spiffe://<td>/...").
func trustDomainOf(principal string) (string, bool) {
	rest, ok := strings.CutPrefix(principal, spiffePrefix)
	if !ok {
		return "", false
	}
	td, _, _ := strings.Cut(rest, "/")
	return td, td != ""
}

func anyPrefix(nets []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func anyString(pats []strPat, s string, present bool) bool {
	if !present {
		return false
	}
	for i := range pats {
		if pats[i].match(s, true) {
			return true
		}
	}
	return false
}

// strKind is how a strPat compares.
type strKind uint8

const (
	sExact        strKind = iota
	sPrefix               // s has prefix p.s
	sSuffix               // s has suffix p.s
	sNonEmpty             // regex ".+"
	sPresent              // header present_match
	sSpiffeSuffix         // regex "spiffe://.*<p.s>"
	sNamespace            // regex ".*/ns/<p.s with * as .*>/.*"
	sInlineExact          // ^v$|^v,.*|.*,v,.*|.*,v$
	sInlinePrefix         // ^v.*$|^v.*,.*|.*,v.*,.*|.*,v.*$
	sInlineSuffix         // ^.*v$|^.*v,.*|.*,.*v,.*|.*,.*v$
)

// strPat is one compiled string value.
type strPat struct {
	kind strKind
	fold bool   // ASCII case-insensitive (hosts)
	s    string // the literal
	a, b string // precomputed variants for the inline-header kinds
	c    string
}

func (p *strPat) match(s string, present bool) bool {
	switch p.kind {
	case sExact:
		if p.fold {
			return equalFoldASCII(s, p.s)
		}
		return s == p.s
	case sPrefix:
		if p.fold {
			return len(s) >= len(p.s) && equalFoldASCII(s[:len(p.s)], p.s)
		}
		return strings.HasPrefix(s, p.s)
	case sSuffix:
		if p.fold {
			return len(s) >= len(p.s) && equalFoldASCII(s[len(s)-len(p.s):], p.s)
		}
		return strings.HasSuffix(s, p.s)
	case sNonEmpty:
		return s != ""
	case sPresent:
		return present
	case sSpiffeSuffix:
		return strings.HasPrefix(s, spiffePrefix) && strings.HasSuffix(s[len(spiffePrefix):], p.s)
	case sNamespace:
		return namespaceMatch(s, p.s, p.a)
	case sInlineExact:
		return s == p.s || strings.HasPrefix(s, p.a) || strings.Contains(s, p.b) || strings.HasSuffix(s, p.c)
	case sInlinePrefix:
		return strings.HasPrefix(s, p.s) || strings.Contains(s, p.a)
	case sInlineSuffix:
		return strings.HasSuffix(s, p.s) || strings.Contains(s, p.a)
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// stringPattern is Istio matcher.StringMatcher: "*" is ".+" (non-empty),
// "*x" suffix, "x*" prefix, otherwise exact.
func stringPattern(v string, fold bool) strPat {
	switch {
	case v == "*":
		return strPat{kind: sNonEmpty}
	case strings.HasPrefix(v, "*"):
		return strPat{kind: sSuffix, s: v[1:], fold: fold}
	case strings.HasSuffix(v, "*"):
		return strPat{kind: sPrefix, s: v[:len(v)-1], fold: fold}
	}
	return strPat{kind: sExact, s: v, fold: fold}
}

// headerPattern is Istio matcher.HeaderMatcher: "*" is a presence match.
func headerPattern(v string) strPat {
	if v == "*" {
		return strPat{kind: sPresent}
	}
	return stringPattern(v, false)
}

// hostPattern is Istio matcher.HostMatcher: like headerPattern, ignoring case.
func hostPattern(v string) strPat {
	if v == "*" {
		return strPat{kind: sPresent}
	}
	return stringPattern(v, true)
}

// inlineHeaderPattern is Istio matcher.HeaderMatcherWithRegex: the value (with
// wildcards) must match one comma-separated element of the header.
func inlineHeaderPattern(v string) strPat {
	switch {
	case v == "*":
		return strPat{kind: sPresent}
	case strings.HasPrefix(v, "*"):
		x := v[1:]
		return strPat{kind: sInlineSuffix, s: x, a: x + ","}
	case strings.HasSuffix(v, "*"):
		x := v[:len(v)-1]
		return strPat{kind: sInlinePrefix, s: x, a: "," + x}
	}
	return strPat{kind: sInlineExact, s: v, a: v + ",", b: "," + v + ",", c: "," + v}
}

// principalPattern is Istio matcher.StringMatcherWithPrefix(v, "spiffe://"):
// "*" is ".+", "*x" is the regex "spiffe://.*x" (x taken literally here), "x*"
// the prefix "spiffe://x", otherwise the exact "spiffe://x".
func principalPattern(v string) strPat {
	switch {
	case v == "*":
		return strPat{kind: sNonEmpty}
	case strings.HasPrefix(v, "*"):
		return strPat{kind: sSpiffeSuffix, s: v[1:]}
	case strings.HasSuffix(v, "*"):
		return strPat{kind: sPrefix, s: spiffePrefix + v[:len(v)-1]}
	}
	return strPat{kind: sExact, s: spiffePrefix + v}
}

// namespacePattern compiles a namespace value; literal is pattern+"/" when the
// pattern has no wildcard.
func namespacePattern(v string) strPat {
	p := strPat{kind: sNamespace, s: v}
	if !strings.Contains(v, "*") {
		p.a = v + "/"
	}
	return p
}

// namespaceMatch implements Istio's regex ".*/ns/<pattern>/.*" over the whole
// peer identity, where each "*" of the pattern is ".*" (the rest is literal).
// literal is pattern+"/" when the pattern has no "*", else "".
func namespaceMatch(principal, pattern, literal string) bool {
	for i := 0; ; {
		k := strings.Index(principal[i:], "/ns/")
		if k < 0 {
			return false
		}
		rest := principal[i+k+len("/ns/"):]
		if literal != "" {
			if strings.HasPrefix(rest, literal) {
				return true
			}
		} else {
			for j := 0; j < len(rest); j++ {
				if rest[j] == '/' && globMatch(pattern, rest[:j]) {
					return true
				}
			}
		}
		i += k + 1
	}
}

// globMatch reports whether s matches pattern, where "*" matches any sequence.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// saPat is one service account: Istio's regex
// "spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?" with ns and sa taken literally.
type saPat struct {
	nsPart string // "/ns/<ns>/"
	saPart string // "sa/<sa>"
}

func (p *saPat) match(principal string) bool {
	if !strings.HasPrefix(principal, spiffePrefix) {
		return false
	}
	r := principal[len(spiffePrefix):]
	for i := 1; i < len(r); { // ".+" before "/ns/": at least one character
		k := strings.Index(r[i:], p.nsPart)
		if k < 0 {
			return false
		}
		start := i + k
		if saTail(r[start+len(p.nsPart):], p.saPart) {
			return true
		}
		i = start + 1
	}
	return false
}

// saTail matches "(.+/|)sa/<sa>(/.+)?" against s.
func saTail(s, saPart string) bool {
	for k := 0; k+len(saPart) <= len(s); k++ {
		if !strings.HasPrefix(s[k:], saPart) {
			continue
		}
		if k != 0 && (k < 2 || s[k-1] != '/') {
			continue
		}
		tail := s[k+len(saPart):]
		if tail == "" || (tail[0] == '/' && len(tail) >= 2) {
			return true
		}
	}
	return false
}

// reqPrincipalPat is Istio's requestPrincipalGenerator: the value "iss/sub" is
// split at its last "/" and compared against the JWT iss and sub claims.
type reqPrincipalPat struct{ iss, sub strPat }

func requestPrincipalPattern(v string) reqPrincipalPat {
	idx := strings.LastIndex(v, "/")
	found := idx >= 0
	iss, sub := v, ""
	if found {
		iss, sub = v[:idx], v[idx+1:]
	}
	anyv := strPat{kind: sNonEmpty}
	exact := func(s string) strPat { return strPat{kind: sExact, s: s} }
	switch {
	case v == "*":
		return reqPrincipalPat{anyv, anyv}
	case strings.HasPrefix(v, "*"):
		if found {
			if iss == "*" {
				return reqPrincipalPat{anyv, exact(sub)}
			}
			return reqPrincipalPat{strPat{kind: sSuffix, s: iss[1:]}, exact(sub)}
		}
		return reqPrincipalPat{anyv, strPat{kind: sSuffix, s: v[1:]}}
	case strings.HasSuffix(v, "*"):
		if found {
			if sub == "*" {
				return reqPrincipalPat{exact(iss), anyv}
			}
			return reqPrincipalPat{exact(iss), strPat{kind: sPrefix, s: sub[:len(sub)-1]}}
		}
		return reqPrincipalPat{strPat{kind: sPrefix, s: v[:len(v)-1]}, anyv}
	}
	return reqPrincipalPat{exact(iss), exact(sub)}
}

// pathPat is a plain string pattern or a path template.
type pathPat struct {
	tmpl *pathTemplate
	s    strPat
}

func (p *pathPat) match(path string) bool {
	if p.tmpl != nil {
		return p.tmpl.match(path)
	}
	return p.s.match(path, true)
}

// Path templates: Istio turns "{*}" into Envoy's uri_template "*" (one path
// segment, regex [pchar]+) and "{**}" into "**" (regex [pchar/]*).
const (
	matchOneTemplate = "{*}"
	matchAnyTemplate = "{**}"
)

func containsPathTemplate(v string) bool {
	return strings.Contains(v, matchOneTemplate) || strings.Contains(v, matchAnyTemplate)
}

type segKind uint8

const (
	segLiteral segKind = iota
	segOne
	segAny
)

type pathSeg struct {
	kind segKind
	lit  string
}

type pathTemplate struct {
	segs   []pathSeg
	anyIdx int    // index of the {**} segment, -1 when none
	suffix string // "/"-joined literals after {**}, with a leading "/"
}

type templateError string

func (e templateError) Error() string { return string(e) }

// compilePathTemplate accepts what both Istio's validation
// (security.CheckValidPathTemplate) and Envoy's uri_template parser accept:
// a leading "/", segments that are "{*}", "{**}" or a non-empty literal of RFC
// 3986 pchar characters, no operator after "{**}", an optional trailing "/".
func compilePathTemplate(v string) (*pathTemplate, error) {
	if !strings.HasPrefix(v, "/") {
		return nil, templateError("path template must start with '/'")
	}
	parts := strings.Split(v[1:], "/")
	t := &pathTemplate{anyIdx: -1}
	for i, part := range parts {
		switch part {
		case matchOneTemplate, matchAnyTemplate:
			if t.anyIdx >= 0 {
				return nil, templateError("{**} must be the last operator")
			}
			if part == matchAnyTemplate {
				t.anyIdx = len(t.segs)
				t.segs = append(t.segs, pathSeg{kind: segAny})
			} else {
				t.segs = append(t.segs, pathSeg{kind: segOne})
			}
		default:
			if part == "" && i == len(parts)-1 && i > 0 {
				t.segs = append(t.segs, pathSeg{kind: segLiteral}) // trailing "/"
				continue
			}
			if !validLiteral(part) {
				return nil, templateError("invalid path template segment " + part)
			}
			t.segs = append(t.segs, pathSeg{kind: segLiteral, lit: part})
		}
	}
	if t.anyIdx >= 0 {
		for _, s := range t.segs[t.anyIdx+1:] {
			t.suffix += "/" + s.lit
		}
	}
	return t, nil
}

func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%!$&'()+,;:@=", c) >= 0
}

func validLiteral(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPchar(s[i]) {
			return false
		}
	}
	return true
}

func (t *pathTemplate) match(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	rest := path[1:]
	n := len(t.segs)
	if t.anyIdx >= 0 {
		n = t.anyIdx
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			if rest == "" || rest[0] != '/' {
				return false
			}
			rest = rest[1:]
		}
		piece := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			piece = rest[:j]
		}
		if !t.segs[i].matchPiece(piece) {
			return false
		}
		rest = rest[len(piece):]
	}
	if t.anyIdx < 0 {
		return rest == ""
	}
	if t.anyIdx > 0 {
		// "/" between the last prefix segment and {**}.
		if rest == "" || rest[0] != '/' {
			return false
		}
		rest = rest[1:]
	}
	if !strings.HasSuffix(rest, t.suffix) {
		return false
	}
	middle := rest[:len(rest)-len(t.suffix)]
	for i := 0; i < len(middle); i++ {
		if middle[i] != '/' && !isPchar(middle[i]) {
			return false
		}
	}
	return true
}

func (s *pathSeg) matchPiece(piece string) bool {
	if s.kind == segOne {
		return validLiteral(piece)
	}
	return piece == s.lit
}

// xffAddress implements Envoy's Utility::getLastAddressFromXFF over the
// X-Forwarded-For values joined with ",": skip the last `skip` entries, then
// the next one (whitespace-trimmed) must parse as an IP address.
func xffAddress(vals []string, skip uint32) (netip.Addr, bool) {
	remaining := skip
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for {
			j := strings.LastIndexByte(v, ',')
			if remaining == 0 {
				a, err := netip.ParseAddr(strings.Trim(v[j+1:], " \t\n\v\f\r"))
				if err != nil || a.Zone() != "" {
					return netip.Addr{}, false
				}
				return a, true
			}
			remaining--
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return netip.Addr{}, false
}

// replaceTrustDomainAliases mirrors Istio trustdomain.Bundle.ReplaceTrustDomainAliases
// for one principal written without "spiffe://": a "<td>/ns/<ns>/sa/<sa>" whose
// trust domain is "cluster.local" or matches one of tds (the trust domain
// first, then its aliases) is expanded to one principal per trust domain.
func replaceTrustDomainAliases(principal string, tds []string) []string {
	parts := strings.Split(principal, "/")
	if len(parts) != 5 || parts[0] == "*" {
		return []string{principal}
	}
	td := parts[0]
	if td != DefaultTrustDomain && !tdStringMatch(td, tds) {
		return []string{principal}
	}
	var out []string
	for _, t := range tds {
		np := principal
		if !tdSuffixMatch(t, td) {
			np = t + "/" + strings.Join(parts[1:], "/")
		}
		dup := false
		for _, o := range out {
			dup = dup || o == np
		}
		if !dup {
			out = append(out, np)
		}
	}
	return out
}

// tdStringMatch is Istio trustdomain.stringMatch: exact, "*", or prefix/suffix
// wildcards on either side.
func tdStringMatch(a string, list []string) bool {
	for _, s := range list {
		if a == s || s == "*" || tdPrefixMatch(a, s) || tdPrefixMatch(s, a) || tdSuffixMatch(a, s) || tdSuffixMatch(s, a) {
			return true
		}
	}
	return false
}

func tdPrefixMatch(a, pattern string) bool {
	return strings.HasSuffix(pattern, "*") && strings.HasPrefix(a, strings.TrimSuffix(pattern, "*"))
}

func tdSuffixMatch(a, pattern string) bool {
	return strings.HasPrefix(pattern, "*") && strings.HasSuffix(a, strings.TrimPrefix(pattern, "*"))
}
