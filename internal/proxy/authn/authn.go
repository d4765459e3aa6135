// Package authn validates the JSON Web Tokens of requests the way an Istio
// waypoint does: istiod turns the RequestAuthentication jwtRules that apply
// to a service into one Envoy jwt_authn filter, and this package reproduces
// that filter's decisions, replies and side effects.
//
// # What istiod configures (pilot/pkg/security/authn/policy_applier.go)
//
// The rules are sorted by issuer; each becomes a provider. With one provider
// the requirement is requires_any{provider, allow_missing}; with several it is
// requires_any{P1, ..., Pn, requires_all{any{P1, allow_missing}, ...}}. So a
// request passes when one provider validates every token it finds, or when no
// provider finds a token at all; any other token makes the request fail.
// bypass_cors_preflight is set: CORS preflights are never checked.
//
// # What Envoy does per provider (source/extensions/filters/http/jwt_authn)
//
//   - Tokens are read from the provider's locations: fromHeaders (the value
//     after the first occurrence of the prefix, from its first base64url
//     character), fromParams (first value of the query parameter), fromCookies;
//     none configured means "Authorization: Bearer <token>" and the
//     access_token parameter. Every token found must be valid.
//   - Each token: parsed (alg must be one of ES256/384/512, HS256/384/512,
//     RS256/384/512, PS256/384/512, EdDSA); its iss must be the provider's
//     issuer (else "Jwt issuer is not configured"); nbf and exp are checked
//     with 60 s of clock skew; aud must contain one of the audiences when any
//     are configured (scheme and trailing slash ignored); then the signature
//     is checked with the JWKS keys whose kid and alg fit.
//   - A valid token: the payload (base64url) goes to outputPayloadToHeader,
//     outputClaimToHeaders copies string, number and boolean claims (nested
//     with "a.b"), and unless forwardOriginalToken the token is removed: the
//     whole header, or the query parameter. Tokens in cookies are not removed
//     (Envoy leaves them). Output headers are stripped from every incoming
//     request first, so a client cannot forge them.
//   - The payload is what authorization sees (request.auth.claims[...]):
//     claims named in spaceDelimitedClaims, plus "scope" and "permission",
//     are split on spaces into lists.
//
// A rejected request gets the Envoy status text as body: 401, or 403 for
// "Audiences in Jwt are not allowed" (Error.Code, Error.Body).
//
// # Keys
//
// Inline jwks are parsed by Compile. jwksUri (or, without either, OpenID
// discovery from the issuer, as istiod does) is fetched lazily through a
// shared JWKSCache, refreshed in the background, and kept when a refresh
// fails. A request never waits longer than the rule's timeout (default 5 s)
// for keys; without keys a token fails with "Jwt verification fails", as it
// does in Istio when istiod cannot fetch the JWKS.
package authn

import (
	"net/http"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// clockSkew is jwt_verify_lib's kClockSkewInSecond, the leeway Envoy allows
// on nbf and exp (Istio does not set clock_skew_seconds).
const clockSkew = 60

// DefaultFetchTimeout bounds a JWKS fetch when the rule sets no timeout
// (Istio's default for jwtRules[].timeout).
const DefaultFetchTimeout = 5 * time.Second

// Options configure Compile.
type Options struct {
	// JWKS caches remote key sets across configuration updates. Nil uses a
	// process-wide cache (DefaultJWKSCache).
	JWKS *JWKSCache
	// Now is the clock for exp and nbf; nil means time.Now.
	Now func() time.Time
}

// Result describes the validated token of a request. It is the zero value
// when the request carried no token.
type Result struct {
	// Principal is "iss/sub" (request.auth.principal), "" when the token has
	// no iss or no sub claim.
	Principal string
	// Claims is the token payload as authorization sees it (JSON numbers are
	// float64; space-delimited claims are lists). Nil when there is no token.
	Claims map[string]any
	// Audiences is the aud claim (a string or a list of strings).
	Audiences []string
	// Presenter is the azp claim.
	Presenter string
	// Policy is the RequestAuthentication whose rule validated the token.
	Policy ir.NamespacedName
}

// Authenticator is the compiled JWT rules of one service port. It is
// immutable and safe for concurrent use.
type Authenticator struct {
	providers []*provider
	sanitize  []string // canonical names of every output header
	jwks      *JWKSCache
	now       func() time.Time
	warnings  []string
}

// Empty reports whether there is no rule: Authenticate then accepts every
// request unchanged.
func (a *Authenticator) Empty() bool { return a == nil || len(a.providers) == 0 }

// Warnings describes configuration problems found by Compile, for logs.
func (a *Authenticator) Warnings() []string {
	if a == nil {
		return nil
	}
	return a.warnings
}

// Compile turns the JWT rules of a service port into an Authenticator. It
// never fails and does no I/O: unusable inline keys make the rule's tokens
// fail and are reported by Warnings; remote keys are fetched on first use.
func Compile(rules []*ir.JWTRule, opts Options) *Authenticator {
	a := &Authenticator{jwks: opts.JWKS, now: opts.Now}
	if a.now == nil {
		a.now = time.Now
	}
	var sorted []*ir.JWTRule
	for _, r := range rules {
		if r != nil {
			sorted = append(sorted, r)
		}
	}
	if len(sorted) == 0 {
		return a
	}
	// istiod sorts the rules by issuer (stable) before naming the providers
	// origins-0, origins-1, ...; the order decides which provider wins.
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Issuer < sorted[j].Issuer })
	seen := map[string]bool{}
	for _, r := range sorted {
		p := compileProvider(r, &a.warnings)
		a.providers = append(a.providers, p)
		for _, h := range p.outputHeaders() {
			if !seen[h] {
				seen[h] = true
				a.sanitize = append(a.sanitize, h)
			}
		}
		if p.inline == nil && !p.inlineBad && a.jwks == nil {
			a.jwks = DefaultJWKSCache() // remote keys and no cache given
		}
	}
	return a
}

// Authenticate validates the tokens of r per the rules. A request without a
// token gets an empty Result and no error; a request whose token no rule
// accepts gets an *Error. On success the request is changed as the rules say
// (output headers added, token removed unless forwardOriginalToken).
// Waiting for remote keys is bounded by the rule's fetch timeout and by r's
// context.
func (a *Authenticator) Authenticate(r *http.Request) (Result, error) {
	if a.Empty() || r == nil {
		return Result{}, nil
	}
	if isCORSPreflight(r) {
		return Result{}, nil
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	for _, h := range a.sanitize {
		delete(r.Header, h)
	}
	now := a.now()
	var buf [8]Status
	statuses := buf[:0]
	win := -1
	var winJWT *jwt
	for i, p := range a.providers {
		st, j := p.verify(r, now, a.jwks)
		statuses = append(statuses, st)
		if st == StatusOK {
			win, winJWT = i, j
			break
		}
	}
	if win < 0 {
		if final := aggregate(statuses); final != StatusOK {
			return Result{}, &Error{Status: final}
		}
	}
	// jwtRules[].presence REQUIRED: the rule's own token must be there and
	// valid, whatever the other rules decided.
	for i, p := range a.providers {
		if !p.required || i == win {
			continue
		}
		var st Status
		if i < len(statuses) {
			st = statuses[i] // evaluated above and not accepted
		} else {
			st, _ = p.verify(r, now, a.jwks)
		}
		if st != StatusOK {
			return Result{}, &Error{Status: st, Policy: p.rule.Policy}
		}
	}
	if winJWT == nil {
		return Result{}, nil
	}
	return winJWT.result(a.providers[win]), nil
}

// aggregate computes the outcome of istiod's requirement when no provider
// accepted the request (Envoy verifier.cc AnyVerifierImpl::onComplete): a
// missing token is fine; otherwise the last error that is neither "missing"
// nor "unknown issuer" wins, then "unknown issuer".
func aggregate(statuses []Status) Status {
	if len(statuses) == 1 {
		if statuses[0] == StatusJwtMissed {
			return StatusOK
		}
		return statuses[0]
	}
	// The requires_all branch: every provider OK or missing.
	all := StatusOK
	for _, s := range statuses {
		if s != StatusJwtMissed && s != StatusOK {
			all = s
			break
		}
	}
	if all == StatusOK {
		return StatusOK
	}
	final := StatusJwtMissed
	for _, s := range append(statuses, all) {
		if (s != StatusJwtMissed && s != StatusJwtUnknownIssuer) || final == StatusJwtMissed {
			final = s
		}
	}
	return final
}

// isCORSPreflight is Envoy's test: OPTIONS with Origin and
// Access-Control-Request-Method.
func isCORSPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// Error is a rejected request: Status says why, in Envoy's words.
type Error struct {
	Status Status
	// Policy is the RequestAuthentication of a REQUIRED rule whose token was
	// missing or invalid; zero otherwise.
	Policy ir.NamespacedName
}

func (e *Error) Error() string { return e.Status.String() }

// Code is the HTTP status Envoy answers with: 403 for a token whose
// audiences are not allowed, 401 otherwise.
func (e *Error) Code() int {
	if e.Status == StatusJwtAudienceNotAllowed {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// Body is the response body Envoy sends (the jwt_verify_lib status text).
func (e *Error) Body() string { return e.Status.String() }

// WWWAuthenticate is the www-authenticate header Envoy adds to the reply:
// Bearer realm="<scheme>://<host><path>" (path and query as received, cut at
// 256 characters), with error="invalid_token" unless the token was missing.
func (e *Error) WWWAuthenticate(r *http.Request) string {
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	if len(path) > 256 {
		path = path[:256]
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	v := `Bearer realm="` + scheme + "://" + r.Host + path + `"`
	if e.Status != StatusJwtMissed {
		v += `, error="invalid_token"`
	}
	return v
}

// canonicalHeader is the net/http key of a header name.
func canonicalHeader(name string) string {
	return textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
}
