package authn

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// locKind is where a token is read from.
type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

// location is one place a provider reads tokens from.
type location struct {
	kind   locKind
	name   string // canonical header name, query parameter or cookie name
	prefix string // header value prefix
}

// token is one token found in a request, with where it was found.
type token struct {
	loc   *location
	value string
}

// claimHeader is one outputClaimToHeaders entry.
type claimHeader struct {
	header string // canonical
	claim  []string
}

// provider is one compiled JWT rule (an Envoy JwtProvider).
type provider struct {
	rule           *ir.JWTRule
	issuer         string
	audiences      []string // sanitized
	locs           []location
	inline         *keySet // inline jwks; nil with remote keys
	inlineBad      bool    // inline jwks given but unusable
	remote         jwksSource
	timeout        time.Duration
	spaceDelimited []string
	claimHeaders   []claimHeader
	payloadHeader  string // canonical, "" for none
	forward        bool
	required       bool
}

// Default token locations (Envoy extractor.cc JwtConstValues).
const (
	defaultHeader = "Authorization"
	defaultPrefix = "Bearer "
	defaultParam  = "access_token"
)

func compileProvider(r *ir.JWTRule, warnings *[]string) *provider {
	p := &provider{
		rule:          r,
		issuer:        r.Issuer,
		forward:       r.ForwardOriginalToken,
		required:      r.Required,
		payloadHeader: "",
		timeout:       time.Duration(r.TimeoutMs) * time.Millisecond,
	}
	warn := func(format string, args ...any) {
		*warnings = append(*warnings, r.Policy.String()+" issuer "+strconv.Quote(r.Issuer)+": "+fmt.Sprintf(format, args...))
	}
	if p.timeout <= 0 {
		p.timeout = DefaultFetchTimeout
	}
	for _, a := range r.Audiences {
		p.audiences = append(p.audiences, sanitizeAudience(a))
	}
	// Envoy keys header locations by name+prefix in a std::map, then query
	// parameters and cookies by name: that order decides which token is
	// checked first.
	headers := map[string]location{}
	for _, h := range r.FromHeaders {
		headers[strings.ToLower(strings.TrimSpace(h.Name))+h.Prefix] = location{kind: locHeader, name: canonicalHeader(h.Name), prefix: h.Prefix}
	}
	params, cookies := uniqueSorted(r.FromParams), uniqueSorted(r.FromCookies)
	if len(r.FromHeaders) == 0 && len(r.FromParams) == 0 && len(r.FromCookies) == 0 {
		headers[strings.ToLower(defaultHeader)+defaultPrefix] = location{kind: locHeader, name: defaultHeader, prefix: defaultPrefix}
		params = []string{defaultParam}
	}
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.locs = append(p.locs, headers[k])
	}
	for _, n := range params {
		p.locs = append(p.locs, location{kind: locParam, name: n})
	}
	for _, n := range cookies {
		p.locs = append(p.locs, location{kind: locCookie, name: n})
	}

	switch {
	case r.Jwks != "":
		// istiod inlines the jwks when it is given (BuildLocalJwks).
		ks, err := parseJWKS([]byte(r.Jwks))
		if err != nil {
			p.inlineBad = true
			warn("inline jwks unusable, every token of this rule fails: %v", err)
		} else {
			p.inline = ks
		}
	case r.JwksURI != "":
		p.remote = jwksSource{uri: r.JwksURI}
	default:
		p.remote = jwksSource{issuer: r.Issuer}
		warn("no jwksUri: keys are found through OpenID discovery at %s", p.remote)
	}

	p.spaceDelimited = uniqueSorted(append([]string{"permission", "scope"}, r.SpaceDelimitedClaims...))
	if r.OutputPayloadToHeader != "" {
		p.payloadHeader = canonicalHeader(r.OutputPayloadToHeader)
	}
	for _, c := range r.OutputClaimToHeaders {
		if c.Header == "" || c.Claim == "" {
			continue
		}
		p.claimHeaders = append(p.claimHeaders, claimHeader{header: canonicalHeader(c.Header), claim: claimPath(c.Claim)})
	}
	return p
}

func (p *provider) outputHeaders() []string {
	var out []string
	if p.payloadHeader != "" {
		out = append(out, p.payloadHeader)
	}
	for _, c := range p.claimHeaders {
		out = append(out, c.header)
	}
	return out
}

func uniqueSorted(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// sanitizeAudience drops an http:// or https:// scheme and one trailing
// slash (jwt_verify_lib CheckAudience).
func sanitizeAudience(a string) string {
	if a == "" {
		return a
	}
	if s, ok := strings.CutPrefix(a, "http://"); ok {
		a = s
	} else if s, ok := strings.CutPrefix(a, "https://"); ok {
		a = s
	}
	return strings.TrimSuffix(a, "/")
}

// verify checks every token the provider finds in r. It returns the last
// token checked (the first found) when all are valid. Each valid token's
// side effects are applied as it is accepted, as Envoy does.
func (p *provider) verify(r *http.Request, now time.Time, cache *JWKSCache) (Status, *jwt) {
	toks := p.extract(r)
	if len(toks) == 0 {
		return StatusJwtMissed, nil
	}
	var last *jwt
	// Envoy pops the tokens from the back.
	for i := len(toks) - 1; i >= 0; i-- {
		j, st := p.check(r.Context(), toks[i].value, now, cache)
		if st != StatusOK {
			return st, nil
		}
		p.accept(r, toks[i], j)
		last = j
	}
	return StatusOK, last
}

// extract finds the tokens of the provider's locations (Envoy
// ExtractorImpl::extract).
func (p *provider) extract(r *http.Request) []token {
	var toks []token
	var query url.Values
	for i := range p.locs {
		l := &p.locs[i]
		switch l.kind {
		case locHeader:
			for _, v := range r.Header[l.name] {
				if l.prefix != "" {
					pos := strings.Index(v, l.prefix)
					if pos < 0 {
						continue
					}
					v = afterPrefix(v, pos+len(l.prefix))
				}
				toks = append(toks, token{loc: l, value: v})
			}
		case locParam:
			if r.URL == nil || r.URL.RawQuery == "" {
				continue
			}
			// Skip parsing queries that cannot hold the parameter (its name
			// can only be hidden by an escape).
			if q := r.URL.RawQuery; !strings.Contains(q, l.name) && !strings.ContainsAny(q, "%+") {
				continue
			}
			if query == nil {
				query, _ = url.ParseQuery(r.URL.RawQuery)
			}
			if vs := query[l.name]; len(vs) > 0 {
				toks = append(toks, token{loc: l, value: vs[0]})
			}
		case locCookie:
			if c, err := r.Cookie(l.name); err == nil {
				toks = append(toks, token{loc: l, value: c.Value})
			}
		}
	}
	return toks
}

// afterPrefix returns the token after a header prefix: from the first
// base64url character or dot at or after pos to the end (Envoy extractJWT;
// the whole value when there is none).
func afterPrefix(v string, pos int) string {
	for i := pos; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			return v[i:]
		}
	}
	return v
}

// check validates one token (AuthenticatorImpl::startVerify and verifyKey).
func (p *provider) check(ctx context.Context, tok string, now time.Time, cache *JWKSCache) (*jwt, Status) {
	j, st := parseJWT(tok)
	if st != StatusOK {
		return nil, st
	}
	if p.issuer != "" && j.iss != p.issuer {
		return nil, StatusJwtUnknownIssuer
	}
	if st := j.checkTime(now.Unix()); st != StatusOK {
		return nil, st
	}
	if len(p.audiences) > 0 && !p.audienceAllowed(j.aud) {
		return nil, StatusJwtAudienceNotAllowed
	}
	ks := p.inline
	if ks == nil {
		if p.inlineBad {
			return nil, StatusJwksNoValidKeys
		}
		var err error
		if ks, err = cache.keys(ctx, p.remote, p.timeout); err != nil {
			// istiod answers a failed fetch with a key nobody can sign for.
			return nil, StatusJwtVerificationFail
		}
	}
	if st := ks.verify(j); st != StatusOK {
		return nil, st
	}
	return j, StatusOK
}

func (p *provider) audienceAllowed(aud []string) bool {
	for _, a := range aud {
		a = sanitizeAudience(a)
		for _, want := range p.audiences {
			if a == want {
				return true
			}
		}
	}
	return false
}

// accept applies a valid token's side effects (handleGoodJwt): payload and
// claim headers, then removal of the token unless it is forwarded.
func (p *provider) accept(r *http.Request, t token, j *jwt) {
	if p.payloadHeader != "" {
		r.Header.Add(p.payloadHeader, j.payloadB64)
	}
	for _, c := range p.claimHeaders {
		if v, ok := claimHeaderValue(j.payload, c.claim); ok {
			r.Header.Add(c.header, v)
		}
	}
	if p.forward {
		return
	}
	switch t.loc.kind {
	case locHeader:
		delete(r.Header, t.loc.name)
	case locParam:
		removeQueryParam(r.URL, t.loc.name)
	case locCookie:
		// Envoy does not remove tokens from cookies.
	}
}

// removeQueryParam drops every occurrence of a parameter from the query,
// leaving the others as they were encoded.
func removeQueryParam(u *url.URL, name string) {
	if u == nil || u.RawQuery == "" {
		return
	}
	parts := strings.Split(u.RawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if k != name {
			kept = append(kept, part)
		}
	}
	u.RawQuery = strings.Join(kept, "&")
}

// claimPath splits an outputClaimToHeaders claim name into nested keys
// (StructUtils::GetValue): "a.b.c", except that a claim starting with an
// http(s):// URL keeps the URL up to its first path segment whole.
func claimPath(name string) []string {
	if strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://") {
		parts := strings.SplitN(name, "/", 4)
		if len(parts) < 4 {
			return []string{name}
		}
		segs := strings.Split(parts[3], ".")
		out := []string{parts[0] + "/" + parts[1] + "/" + parts[2] + "/" + segs[0]}
		return append(out, segs[1:]...)
	}
	return strings.Split(name, ".")
}

// claimHeaderValue renders a claim for a header: strings as they are,
// numbers as integers when they are whole and non-negative (else with six
// decimals, as std::to_string), booleans as true/false; anything else, a
// missing claim and an empty string give no header.
func claimHeaderValue(payload map[string]any, path []string) (string, bool) {
	cur := payload
	var v any
	for i, k := range path {
		var ok bool
		if v, ok = cur[k]; !ok {
			return "", false
		}
		if i < len(path)-1 {
			if cur, ok = v.(map[string]any); !ok {
				return "", false
			}
		}
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64:
		if _, frac := math.Modf(x); x < 0 || x >= math.MaxUint64 || frac != 0 {
			s = strconv.FormatFloat(x, 'f', 6, 64)
		} else {
			s = strconv.FormatUint(uint64(x), 10)
		}
	case bool:
		s = strconv.FormatBool(x)
	}
	return s, s != ""
}

// result builds the Result of an accepted token: the payload normalized as
// Envoy writes it to the dynamic metadata authorization reads
// (normalize_payload_in_metadata.space_delimited_claims).
func (j *jwt) result(p *provider) Result {
	for _, name := range p.spaceDelimited {
		s, ok := j.payload[name].(string)
		if !ok {
			continue
		}
		var list []any
		for _, f := range strings.Split(s, " ") {
			if f != "" {
				list = append(list, f)
			}
		}
		if len(list) > 0 {
			j.payload[name] = list
		}
	}
	res := Result{Claims: j.payload, Audiences: j.aud, Policy: p.rule.Policy}
	if j.hasIss && j.hasSub {
		res.Principal = j.iss + "/" + j.sub
	}
	res.Presenter, _ = j.payload["azp"].(string)
	return res
}
