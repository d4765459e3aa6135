package authn

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func TestEmpty(t *testing.T) {
	for _, a := range []*Authenticator{nil, Compile(nil, Options{}), Compile([]*ir.JWTRule{nil}, Options{})} {
		if !a.Empty() {
			t.Fatal("an authenticator without rules must be Empty")
		}
		r := request("/?access_token=x", "Authorization", "Bearer garbage", "X-Jwt-Payload", "forged")
		res, err := a.Authenticate(r)
		if err != nil || !reflect.DeepEqual(res, Result{}) {
			t.Fatalf("no rules: got %+v, %v", res, err)
		}
		if r.Header.Get("Authorization") != "Bearer garbage" || r.Header.Get("X-Jwt-Payload") != "forged" {
			t.Fatal("an empty authenticator must not touch the request")
		}
	}
}

// TestValidTokenFromJWKSServer is the whole path: keys fetched from a JWKS
// server on loopback, principal and claims out, token removed.
func TestValidTokenFromJWKSServer(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	srv := newJWKSServer(t, jwksOf(t, k))
	cache := newCache(t, time.Hour)
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.JwksURI = srv.URL
		r.Audiences = []string{"api.example.com"}
	})}, Options{JWKS: cache})
	if srv.hits.Load() != 0 {
		t.Fatal("Compile must not fetch keys")
	}
	tok := mint(t, k, claims("aud", []string{"other", "https://api.example.com/"}, "azp", "web-client", "groups", []string{"dev", "ops"}))
	r := request("/x", "Authorization", "Bearer "+tok)
	res, err := a.Authenticate(r)
	if err != nil {
		t.Fatalf("valid token rejected: %v", err)
	}
	if res.Principal != testIssuer+"/alice" || res.Presenter != "web-client" ||
		!reflect.DeepEqual(res.Audiences, []string{"other", "https://api.example.com/"}) ||
		res.Policy != (ir.NamespacedName{Namespace: "ns", Name: "jwt"}) {
		t.Errorf("result %+v", res)
	}
	if g, _ := res.Claims["groups"].([]any); len(g) != 2 || g[1] != "ops" || res.Claims["sub"] != "alice" {
		t.Errorf("claims %v", res.Claims)
	}
	if _, present := r.Header["Authorization"]; present {
		t.Error("the token must be removed from the request (forwardOriginalToken is false)")
	}
	if srv.hits.Load() != 1 {
		t.Errorf("JWKS fetched %d times, want 1", srv.hits.Load())
	}
	// A second configuration sharing the cache does not refetch.
	b := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.JwksURI = srv.URL })}, Options{JWKS: cache})
	if _, err := b.Authenticate(request("/", "Authorization", "Bearer "+tok)); err != nil {
		t.Fatal(err)
	}
	if srv.hits.Load() != 1 {
		t.Errorf("a recompiled configuration refetched the JWKS (%d fetches)", srv.hits.Load())
	}
}

func TestMissingTokenPasses(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) })}, Options{})
	for _, r := range []*http.Request{
		request("/"),
		request("/", "Authorization", "Basic dXNlcjpwdw=="), // no "Bearer " prefix: not a token location
		request("/?other=1"),
	} {
		res, err := a.Authenticate(r)
		if err != nil || !reflect.DeepEqual(res, Result{}) {
			t.Errorf("%v: request without a token: %+v, %v", r.URL, res, err)
		}
	}
}

func TestAlgorithms(t *testing.T) {
	var signers []signer
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		signers = append(signers, rsaSigner(t, 0, "rsa-"+alg, alg))
	}
	signers = append(signers,
		ecSigner(t, elliptic.P256(), "ec256", "ES256"),
		ecSigner(t, elliptic.P384(), "ec384", "ES384"),
		ecSigner(t, elliptic.P521(), "ec521", "ES512"),
		edSigner(t, "ed"),
		signer{kid: "hmac", alg: "HS256", secret: []byte("0123456789abcdef0123456789abcdef")},
	)
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, signers...) })}, Options{})
	if len(a.Warnings()) != 0 {
		t.Fatalf("warnings: %v", a.Warnings())
	}
	for _, k := range signers {
		res, err := a.Authenticate(request("/", "Authorization", "Bearer "+mint(t, k, claims())))
		if err != nil || res.Principal != testIssuer+"/alice" {
			t.Errorf("%s: %+v, %v", k.alg, res, err)
		}
	}
	// A key whose alg differs from the token's is not a candidate.
	forged := rsaSigner(t, 0, "ec256", "RS256")
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+mint(t, forged, claims()))); status(t, err) != StatusJwksKidAlgMismatch {
		t.Errorf("RS256 token naming an ES256 key: %v", err)
	}
	// A key without alg is a candidate, but only verifies algorithms of its
	// type: an RS256 token naming an EC key fails verification.
	ec := signers[6]
	noAlg := jwksOf(t, signer{kid: "noalg", priv: ec.priv})
	b := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = noAlg })}, Options{})
	forged = rsaSigner(t, 0, "noalg", "RS256")
	if _, err := b.Authenticate(request("/", "Authorization", "Bearer "+mint(t, forged, claims()))); status(t, err) != StatusJwtVerificationFail {
		t.Errorf("RS256 token against an EC key without alg: %v", err)
	}
	ec.kid = "noalg"
	if _, err := b.Authenticate(request("/", "Authorization", "Bearer "+mint(t, ec, claims()))); err != nil {
		t.Errorf("ES256 token against its key without alg: %v", err)
	}
}

func TestRejections(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	other := rsaSigner(t, 1, "k1", "RS256") // same kid, wrong key
	unknownKid := rsaSigner(t, 0, "k9", "RS256")
	now := time.Now().Unix()
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.Audiences = []string{"https://api.example.com"}
	})}, Options{})
	good := claims("aud", "api.example.com")
	cases := []struct {
		name string
		tok  string
		want Status
		code int
	}{
		{"valid", mint(t, k, good), StatusOK, 0},
		{"expired", mint(t, k, claims("aud", "api.example.com", "exp", now-61-5)), StatusJwtExpired, 401},
		{"expired within clock skew", mint(t, k, claims("aud", "api.example.com", "exp", now-30)), StatusOK, 0},
		{"not yet valid", mint(t, k, claims("aud", "api.example.com", "nbf", now+120)), StatusJwtNotYetValid, 401},
		{"nbf within clock skew", mint(t, k, claims("aud", "api.example.com", "nbf", now+30)), StatusOK, 0},
		{"no exp", mint(t, k, claims("aud", "api.example.com", "exp", nil)), StatusOK, 0},
		{"wrong issuer", mint(t, k, claims("aud", "api.example.com", "iss", "https://evil.example.com")), StatusJwtUnknownIssuer, 401},
		{"no issuer", mint(t, k, claims("aud", "api.example.com", "iss", nil)), StatusJwtUnknownIssuer, 401},
		{"wrong audience", mint(t, k, claims("aud", "other.example.com")), StatusJwtAudienceNotAllowed, 403},
		{"no audience", mint(t, k, claims()), StatusJwtAudienceNotAllowed, 403},
		{"bad signature", mint(t, other, good), StatusJwtVerificationFail, 401},
		{"unknown kid", mint(t, unknownKid, good), StatusJwksKidAlgMismatch, 401},
		{"tampered payload", tamper(t, mint(t, k, good)), StatusJwtVerificationFail, 401},
		{"not a JWT", "abc.def", StatusJwtBadFormat, 401},
		{"empty section", "abc..def", StatusJwtBadFormat, 401},
		{"bad header base64", "a.e30.c2ln", StatusJwtHeaderParseErrorBadBase64, 401},
		{"alg none", b64url(`{"alg":"none"}`) + "." + b64url(`{}`) + ".c2ln", StatusJwtHeaderNotImplementedAlg, 401},
		{"exp not a number", b64url(`{"alg":"RS256"}`) + "." + b64url(`{"iss":"`+testIssuer+`","exp":"soon"}`) + ".c2ln", StatusJwtPayloadParseErrorExpNotInteger, 401},
		{"aud not strings", b64url(`{"alg":"RS256"}`) + "." + b64url(`{"iss":"`+testIssuer+`","aud":[1]}`) + ".c2ln", StatusJwtPayloadParseErrorAudNotString, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := request("/", "Authorization", "Bearer "+tc.tok)
			res, err := a.Authenticate(r)
			if got := status(t, err); got != tc.want {
				t.Fatalf("status %q, want %q", got, tc.want)
			}
			if tc.want == StatusOK {
				if res.Principal != testIssuer+"/alice" {
					t.Errorf("principal %q", res.Principal)
				}
				return
			}
			ae := err.(*Error)
			if ae.Code() != tc.code || ae.Body() != tc.want.String() || ae.Error() != tc.want.String() {
				t.Errorf("code %d body %q", ae.Code(), ae.Body())
			}
			if r.Header.Get("Authorization") == "" {
				t.Error("a rejected token must stay on the (rejected) request")
			}
		})
	}
	// The exact texts Envoy sends for the common failures.
	for st, text := range map[Status]string{
		StatusJwtVerificationFail:   "Jwt verification fails",
		StatusJwtExpired:            "Jwt is expired",
		StatusJwtUnknownIssuer:      "Jwt issuer is not configured",
		StatusJwtAudienceNotAllowed: "Audiences in Jwt are not allowed",
		StatusJwksKidAlgMismatch:    "Jwks doesn't have key to match kid or alg from Jwt",
		StatusJwtMissed:             "Jwt is missing",
	} {
		if st.String() != text {
			t.Errorf("status text %q, want %q", st.String(), text)
		}
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// tamper changes the payload of a signed token, keeping its signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p = []byte(strings.Replace(string(p), `"alice"`, `"admin"`, 1))
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
}

func TestClock(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	at := time.Unix(1_000_000, 0)
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) })}, Options{Now: func() time.Time { return at }})
	tok := mint(t, k, claims("iat", 999_000, "nbf", 999_000, "exp", 1_000_100))
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok)); err != nil {
		t.Fatalf("token valid at the injected time: %v", err)
	}
	at = time.Unix(1_000_161, 0)
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok)); status(t, err) != StatusJwtExpired {
		t.Fatalf("61 s past exp+skew must be expired: %v", err)
	}
}

func TestKeyRotationPickedUpOnRefresh(t *testing.T) {
	k1 := rsaSigner(t, 0, "k1", "RS256")
	k2 := rsaSigner(t, 1, "k2", "RS256")
	srv := newJWKSServer(t, jwksOf(t, k1))
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.JwksURI = srv.URL })}, Options{JWKS: newCache(t, 50*time.Millisecond)})
	tok1, tok2 := mint(t, k1, claims()), mint(t, k2, claims())
	check := func(tok string) Status {
		_, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok))
		return status(t, err)
	}
	if st := check(tok1); st != StatusOK {
		t.Fatalf("token of the published key: %v", st)
	}
	if st := check(tok2); st != StatusJwksKidAlgMismatch {
		t.Fatalf("token of a key not yet published: %v", st)
	}
	srv.set(jwksOf(t, k2)) // the issuer rotates its key
	eventually(t, 5*time.Second, "the rotated key to be fetched", func() bool { return check(tok2) == StatusOK })
	if st := check(tok1); st != StatusJwksKidAlgMismatch {
		t.Fatalf("token of the retired key after the refresh: %v", st)
	}
}

func TestJWKSServerDownKeepsStaleKeys(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	srv := newJWKSServer(t, jwksOf(t, k))
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.JwksURI = srv.URL })}, Options{JWKS: newCache(t, 20*time.Millisecond)})
	tok := mint(t, k, claims())
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok)); err != nil {
		t.Fatal(err)
	}
	srv.status.Store(http.StatusInternalServerError)
	before := srv.hits.Load()
	eventually(t, 5*time.Second, "failed refreshes", func() bool { return srv.hits.Load() >= before+2 })
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok)); err != nil {
		t.Fatalf("keys must be kept when refreshes fail: %v", err)
	}
	// A document without usable keys is a failed refresh too.
	srv.status.Store(http.StatusOK)
	srv.set(`{"keys":[]}`)
	before = srv.hits.Load()
	eventually(t, 5*time.Second, "refreshes", func() bool { return srv.hits.Load() >= before+2 })
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok)); err != nil {
		t.Fatalf("an empty key set must not replace good keys: %v", err)
	}
}

func TestJWKSUnreachableIsBoundedAndFailsClosed(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	tok := mint(t, k, claims())

	hanging := newJWKSServer(t, jwksOf(t, k))
	hanging.hang.Store(true)
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.JwksURI = hanging.URL
		r.TimeoutMs = 200
	})}, Options{JWKS: newCache(t, time.Hour)})
	start := time.Now()
	_, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok))
	if status(t, err) != StatusJwtVerificationFail {
		t.Fatalf("no keys: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("request waited %v for a hanging JWKS server (timeout 200ms)", d)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/jwks"
	_ = l.Close() // nothing listens any more
	b := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.JwksURI = down })}, Options{JWKS: newCache(t, time.Hour)})
	if _, err := b.Authenticate(request("/", "Authorization", "Bearer "+tok)); status(t, err) != StatusJwtVerificationFail {
		t.Fatalf("JWKS server down: %v", err)
	}
	// Requests without a token do not need keys.
	if _, err := b.Authenticate(request("/")); err != nil {
		t.Fatalf("no token, server down: %v", err)
	}
}

func TestJWKSFetchedOnceForConcurrentRequests(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	srv := newJWKSServer(t, jwksOf(t, k))
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.JwksURI = srv.URL })}, Options{JWKS: newCache(t, time.Hour)})
	tok := mint(t, k, claims())
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			_, err := a.Authenticate(request("/", "Authorization", "Bearer "+tok))
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for concurrent first requests, want 1", n)
	}
}

func TestOpenIDDiscovery(t *testing.T) {
	k := ecSigner(t, elliptic.P256(), "ec", "ES256")
	keys := newJWKSServer(t, jwksOf(t, k))
	disc := newJWKSServer(t, "")
	disc.set(`{"issuer":"` + disc.URL + `","jwks_uri":"` + keys.URL + `"}`)
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Issuer = disc.URL + "/" })}, Options{JWKS: newCache(t, time.Hour)})
	if len(a.Warnings()) != 1 || !strings.Contains(a.Warnings()[0], "OpenID discovery") {
		t.Errorf("warnings %v", a.Warnings())
	}
	res, err := a.Authenticate(request("/", "Authorization", "Bearer "+mint(t, k, claims("iss", disc.URL+"/"))))
	if err != nil || res.Principal != disc.URL+"//alice" {
		t.Fatalf("discovered keys: %+v, %v", res, err)
	}
	if disc.hits.Load() != 1 || keys.hits.Load() != 1 {
		t.Errorf("discovery fetched %d, keys fetched %d", disc.hits.Load(), keys.hits.Load())
	}
}

func TestInlineJWKS(t *testing.T) {
	k := edSigner(t, "ed")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) })}, Options{})
	if _, err := a.Authenticate(request("/", "Authorization", "Bearer "+mint(t, k, claims()))); err != nil {
		t.Fatal(err)
	}
	bad := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = `{"keys":[{"kty":"RSA"}]}` })}, Options{})
	if len(bad.Warnings()) != 1 {
		t.Errorf("an unusable inline jwks must be reported: %v", bad.Warnings())
	}
	if _, err := bad.Authenticate(request("/", "Authorization", "Bearer "+mint(t, k, claims()))); status(t, err) != StatusJwksNoValidKeys {
		t.Fatalf("unusable inline jwks: %v", err)
	}
}

func TestFromHeadersWithPrefix(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.FromHeaders = []ir.JWTHeader{{Name: "x-jwt-assertion", Prefix: "Token "}}
	})}, Options{})
	tok := mint(t, k, claims())
	r := request("/", "X-Jwt-Assertion", "Token   "+tok, "Authorization", "Bearer not-looked-at")
	res, err := a.Authenticate(r)
	if err != nil || res.Principal != testIssuer+"/alice" {
		t.Fatalf("token after the prefix: %+v, %v", res, err)
	}
	if r.Header.Get("X-Jwt-Assertion") != "" || r.Header.Get("Authorization") != "Bearer not-looked-at" {
		t.Errorf("only the configured header is removed: %v", r.Header)
	}
	// Without the prefix the header holds no token; the default locations
	// are not used once fromHeaders is set.
	res, err = a.Authenticate(request("/?access_token="+tok, "X-Jwt-Assertion", tok))
	if err != nil || res.Principal != "" {
		t.Fatalf("header without the prefix: %+v, %v", res, err)
	}
	// No prefix configured: the whole value is the token.
	b := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.FromHeaders = []ir.JWTHeader{{Name: "x-token"}}
	})}, Options{})
	if _, err := b.Authenticate(request("/", "X-Token", "Bearer "+tok)); status(t, err) != StatusJwtHeaderParseErrorBadBase64 {
		t.Fatalf("with no prefix the whole value is parsed: %v", err)
	}
	if res, err := b.Authenticate(request("/", "X-Token", tok)); err != nil || res.Principal == "" {
		t.Fatalf("raw header: %+v, %v", res, err)
	}
}

func TestFromParams(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	tok := mint(t, k, claims())
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.FromParams = []string{"my_token"}
	})}, Options{})
	r := request("/p?a=1&my_token=" + tok + "&b=x%20y")
	res, err := a.Authenticate(r)
	if err != nil || res.Principal != testIssuer+"/alice" {
		t.Fatalf("token from a parameter: %+v, %v", res, err)
	}
	if r.URL.RawQuery != "a=1&b=x%20y" {
		t.Errorf("query after removing the token: %q", r.URL.RawQuery)
	}
	// The default locations: Authorization Bearer and access_token.
	d := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) })}, Options{})
	r = request("/?access_token=" + tok)
	if res, err := d.Authenticate(r); err != nil || res.Principal == "" {
		t.Fatalf("access_token parameter: %+v, %v", res, err)
	}
	if r.URL.RawQuery != "" {
		t.Errorf("access_token left in the query: %q", r.URL.RawQuery)
	}
	if _, err := d.Authenticate(request("/?access_token=garbage")); status(t, err) != StatusJwtBadFormat {
		t.Fatalf("a bad token in the parameter is rejected: %v", err)
	}
}

func TestFromCookies(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	tok := mint(t, k, claims())
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.FromCookies = []string{"session"}
	})}, Options{})
	r := request("/", "Cookie", "theme=dark; session="+tok)
	res, err := a.Authenticate(r)
	if err != nil || res.Principal != testIssuer+"/alice" {
		t.Fatalf("token from a cookie: %+v, %v", res, err)
	}
	if !strings.Contains(r.Header.Get("Cookie"), "session="+tok) {
		t.Error("Envoy leaves tokens in cookies; so do we")
	}
	if _, err := a.Authenticate(request("/", "Cookie", "session=bad")); status(t, err) != StatusJwtBadFormat {
		t.Fatalf("bad cookie token: %v", err)
	}
}

func TestOutputPayloadAndClaimHeaders(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.OutputPayloadToHeader = "x-jwt-payload"
		r.OutputClaimToHeaders = []ir.ClaimToHeader{
			{Header: "x-sub", Claim: "sub"},
			{Header: "x-team", Claim: "org.team"},
			{Header: "x-level", Claim: "level"},
			{Header: "x-ratio", Claim: "ratio"},
			{Header: "x-admin", Claim: "admin"},
			{Header: "x-list", Claim: "groups"},
			{Header: "x-missing", Claim: "nope"},
			{Header: "x-url", Claim: "https://example.com/claims.role"},
		}
	})}, Options{})
	c := claims("org", map[string]any{"team": "blue"}, "level", 42, "ratio", 1.5, "admin", true,
		"groups", []string{"a"}, "https://example.com/claims", map[string]any{"role": "owner"})
	tok := mint(t, k, c)
	r := request("/", "Authorization", "Bearer "+tok, "X-Sub", "forged", "X-Jwt-Payload", "forged")
	if _, err := a.Authenticate(r); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"X-Sub": "alice", "X-Team": "blue", "X-Level": "42", "X-Ratio": "1.500000", "X-Admin": "true", "X-Url": "owner"}
	for h, v := range want {
		if got := r.Header.Values(h); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", h, got, v)
		}
	}
	for _, h := range []string{"X-List", "X-Missing"} {
		if _, present := r.Header[h]; present {
			t.Errorf("%s must not be set (not a primitive claim / missing)", h)
		}
	}
	payload := r.Header.Values("X-Jwt-Payload")
	if len(payload) != 1 || payload[0] != strings.Split(tok, ".")[1] {
		t.Fatalf("payload header %q", payload)
	}
	var got map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(payload[0])
	if err != nil || json.Unmarshal(raw, &got) != nil || got["sub"] != "alice" {
		t.Fatalf("payload header does not decode to the payload: %s", raw)
	}
	// Forged output headers are stripped even when the request has no token.
	r = request("/", "X-Sub", "forged", "X-Jwt-Payload", "forged", "X-Other", "kept")
	if _, err := a.Authenticate(r); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("X-Sub") != "" || r.Header.Get("X-Jwt-Payload") != "" || r.Header.Get("X-Other") != "kept" {
		t.Errorf("output headers must be stripped from incoming requests: %v", r.Header)
	}
}

func TestForwardOriginalToken(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	tok := mint(t, k, claims())
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.ForwardOriginalToken = true
	})}, Options{})
	r := request("/?access_token="+tok, "Authorization", "Bearer "+tok)
	if _, err := a.Authenticate(r); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") != "Bearer "+tok || r.URL.Query().Get("access_token") != tok {
		t.Errorf("forwardOriginalToken must keep the token: %v %q", r.Header, r.URL.RawQuery)
	}
}

func TestEveryTokenMustBeValid(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) })}, Options{})
	good := mint(t, k, claims())
	expired := mint(t, k, claims("exp", time.Now().Unix()-3600))
	for _, r := range []*http.Request{
		request("/?access_token="+expired, "Authorization", "Bearer "+good),
		request("/?access_token="+good, "Authorization", "Bearer "+expired),
		request("/", "Authorization", "Bearer "+good, "Authorization", "Bearer "+expired),
	} {
		if _, err := a.Authenticate(r); status(t, err) != StatusJwtExpired {
			t.Errorf("%v %v: a good token does not excuse a bad one: %v", r.URL, r.Header, err)
		}
	}
	r := request("/?access_token="+good, "Authorization", "Bearer "+good)
	if res, err := a.Authenticate(r); err != nil || res.Principal == "" {
		t.Fatalf("two good tokens: %+v, %v", res, err)
	}
	if r.Header.Get("Authorization") != "" || r.URL.RawQuery != "" {
		t.Errorf("every accepted token is removed: %v %q", r.Header, r.URL.RawQuery)
	}
}

func TestMultipleRules(t *testing.T) {
	ka := rsaSigner(t, 0, "a", "RS256")
	kb := ecSigner(t, elliptic.P256(), "b", "ES256")
	a := Compile([]*ir.JWTRule{
		rule(func(r *ir.JWTRule) { r.Issuer = "issuer-b"; r.Jwks = jwksOf(t, kb) }),
		rule(func(r *ir.JWTRule) { r.Issuer = "issuer-a"; r.Jwks = jwksOf(t, ka); r.Policy.Name = "a" }),
	}, Options{})
	cases := []struct {
		name string
		tok  string
		want Status
		sub  string
	}{
		{"first issuer", mint(t, ka, claims("iss", "issuer-a", "sub", "x")), StatusOK, "issuer-a/x"},
		{"second issuer", mint(t, kb, claims("iss", "issuer-b", "sub", "y")), StatusOK, "issuer-b/y"},
		{"unknown issuer", mint(t, ka, claims("iss", "issuer-c")), StatusJwtUnknownIssuer, ""},
		{"expired token of a known issuer", mint(t, ka, claims("iss", "issuer-a", "exp", time.Now().Unix()-3600)), StatusJwtExpired, ""},
		{"key of the other issuer", mint(t, kb, claims("iss", "issuer-a")), StatusJwksKidAlgMismatch, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := a.Authenticate(request("/", "Authorization", "Bearer "+tc.tok))
			if got := status(t, err); got != tc.want || res.Principal != tc.sub {
				t.Fatalf("got %q %q, want %q %q", got, res.Principal, tc.want, tc.sub)
			}
		})
	}
	if _, err := a.Authenticate(request("/")); err != nil {
		t.Fatalf("no token with several rules: %v", err)
	}
}

func TestAggregate(t *testing.T) {
	M, U, E, A := StatusJwtMissed, StatusJwtUnknownIssuer, StatusJwtExpired, StatusJwtAudienceNotAllowed
	for _, tc := range []struct {
		in   []Status
		want Status
	}{
		{[]Status{M}, StatusOK},
		{[]Status{U}, U},
		{[]Status{E}, E},
		{[]Status{M, M, M}, StatusOK},
		{[]Status{U, U}, U},
		{[]Status{U, E}, E},
		{[]Status{E, U}, E},
		{[]Status{M, E, A}, E}, // the requires_all branch reports the first error and comes last
		{[]Status{U, M, A}, A},
	} {
		if got := aggregate(tc.in); got != tc.want {
			t.Errorf("aggregate(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSpaceDelimitedClaims(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) {
		r.Jwks = jwksOf(t, k)
		r.SpaceDelimitedClaims = []string{"roles"}
		r.OutputClaimToHeaders = []ir.ClaimToHeader{{Header: "x-scope", Claim: "scope"}}
	})}, Options{})
	r := request("/", "Authorization", "Bearer "+mint(t, k, claims("scope", "read  write", "roles", "a b", "other", "c d", "permission", "")))
	res, err := a.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"scope": []any{"read", "write"}, "roles": []any{"a", "b"}, "other": "c d", "permission": ""}
	for name, v := range want {
		if !reflect.DeepEqual(res.Claims[name], v) {
			t.Errorf("claim %s = %#v, want %#v", name, res.Claims[name], v)
		}
	}
	if r.Header.Get("X-Scope") != "read  write" {
		t.Errorf("claim headers use the claim as issued: %q", r.Header.Get("X-Scope"))
	}
}

func TestRequiredRule(t *testing.T) {
	ka := rsaSigner(t, 0, "a", "RS256")
	kb := ecSigner(t, elliptic.P256(), "b", "ES256")
	a := Compile([]*ir.JWTRule{
		rule(func(r *ir.JWTRule) { r.Issuer = "issuer-a"; r.Jwks = jwksOf(t, ka) }),
		rule(func(r *ir.JWTRule) {
			r.Issuer = "issuer-b"
			r.Jwks = jwksOf(t, kb)
			r.FromHeaders = []ir.JWTHeader{{Name: "x-b"}}
			r.Required = true
			r.Policy.Name = "required"
		}),
	}, Options{})
	ta, tb := mint(t, ka, claims("iss", "issuer-a")), mint(t, kb, claims("iss", "issuer-b"))
	_, err := a.Authenticate(request("/", "Authorization", "Bearer "+ta))
	if status(t, err) != StatusJwtMissed || err.(*Error).Policy.Name != "required" || err.(*Error).Code() != 401 {
		t.Fatalf("required token missing: %v", err)
	}
	if _, err := a.Authenticate(request("/")); status(t, err) != StatusJwtMissed {
		t.Fatalf("no token at all with a required rule: %v", err)
	}
	res, err := a.Authenticate(request("/", "Authorization", "Bearer "+ta, "X-B", tb))
	if err != nil || res.Principal != "issuer-a/alice" {
		t.Fatalf("both tokens: %+v, %v", res, err)
	}
}

func TestCORSPreflightBypass(t *testing.T) {
	a := Compile([]*ir.JWTRule{rule(func(r *ir.JWTRule) { r.Jwks = `{"keys":[]}` })}, Options{})
	r := request("/", "Authorization", "Bearer garbage", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST")
	r.Method = http.MethodOptions
	if _, err := a.Authenticate(r); err != nil {
		t.Fatalf("CORS preflight must bypass JWT checks: %v", err)
	}
	r.Header.Del("Origin")
	if _, err := a.Authenticate(r); err == nil {
		t.Fatal("an OPTIONS request that is not a preflight is checked")
	}
}

func TestWWWAuthenticate(t *testing.T) {
	r := request("http://svc.ns:8080/a/b?x=1")
	r.Host = "svc.ns:8080"
	if got := (&Error{Status: StatusJwtExpired}).WWWAuthenticate(r); got != `Bearer realm="http://svc.ns:8080/a/b?x=1", error="invalid_token"` {
		t.Errorf("www-authenticate %q", got)
	}
	if got := (&Error{Status: StatusJwtMissed}).WWWAuthenticate(r); got != `Bearer realm="http://svc.ns:8080/a/b?x=1"` {
		t.Errorf("www-authenticate for a missing token %q", got)
	}
}

func TestClaimPath(t *testing.T) {
	for in, want := range map[string][]string{
		"sub":                             {"sub"},
		"a.b.c":                           {"a", "b", "c"},
		"https://example.com/claims.role": {"https://example.com/claims", "role"},
		"http://example.com":              {"http://example.com"},
	} {
		if got := claimPath(in); !reflect.DeepEqual(got, want) {
			t.Errorf("claimPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNoTokenIsCheap: a request without a token costs no allocation, with
// the default locations and a query string.
func TestNoTokenIsCheap(t *testing.T) {
	k := rsaSigner(t, 0, "k1", "RS256")
	a := Compile([]*ir.JWTRule{
		rule(func(r *ir.JWTRule) { r.Jwks = jwksOf(t, k) }),
		rule(func(r *ir.JWTRule) {
			r.Issuer = "other"
			r.Jwks = jwksOf(t, k)
			r.FromHeaders = []ir.JWTHeader{{Name: "x-jwt", Prefix: "Bearer "}}
			r.OutputPayloadToHeader = "x-payload"
		}),
	}, Options{})
	r := request("/items?page=2&sort=asc", "User-Agent", "test")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Authenticate(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations for a request without a token", allocs)
	}
	// An escaped parameter name is still found (Envoy decodes the query).
	r = request("/?access%5Ftoken=garbage")
	if _, err := a.Authenticate(r); status(t, err) != StatusJwtBadFormat {
		t.Fatalf("escaped access_token: %v", err)
	}
}
