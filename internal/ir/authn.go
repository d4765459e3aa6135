package ir

// JWTRule is one jwtRules entry of an Istio RequestAuthentication bound to
// a service port: how to find, validate and expose a JSON Web Token. Field
// names and meanings follow security.istio.io/v1 RequestAuthentication.
// A request carrying a token that no rule validates is rejected (401); a
// request without a token passes with no request principal.
type JWTRule struct {
	// Policy is the RequestAuthentication's namespace/name, for logs.
	Policy    NamespacedName `json:"policy"`
	Issuer    string         `json:"issuer"`
	Audiences []string       `json:"audiences,omitempty"`
	// JwksURI is fetched (and refreshed); Jwks is an inline key set.
	JwksURI string `json:"jwksUri,omitempty"`
	Jwks    string `json:"jwks,omitempty"`
	// Where the token is read from; none set means the Authorization
	// header with the "Bearer " prefix, then the access_token parameter.
	FromHeaders []JWTHeader `json:"fromHeaders,omitempty"`
	FromParams  []string    `json:"fromParams,omitempty"`
	FromCookies []string    `json:"fromCookies,omitempty"`
	// OutputPayloadToHeader names a header that gets the base64url payload.
	OutputPayloadToHeader string `json:"outputPayloadToHeader,omitempty"`
	// ForwardOriginalToken keeps the token on the request sent upstream.
	ForwardOriginalToken bool `json:"forwardOriginalToken,omitempty"`
	// OutputClaimToHeaders copies claims into request headers.
	OutputClaimToHeaders []ClaimToHeader `json:"outputClaimToHeaders,omitempty"`
	// TimeoutMs bounds a JWKS fetch (0: the default).
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
	// SpaceDelimitedClaims are claims whose string value is a
	// space-separated list (besides "scope" and "permission").
	SpaceDelimitedClaims []string `json:"spaceDelimitedClaims,omitempty"`
	// Required is jwtRules[].presence REQUIRED: a request without a valid
	// token of this rule is rejected (401) even when another rule's token
	// validated.
	Required bool `json:"required,omitempty"`
}

// JWTHeader is a header a token is read from, with an optional prefix.
type JWTHeader struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// ClaimToHeader copies one claim into one request header.
type ClaimToHeader struct {
	Header string `json:"header"`
	Claim  string `json:"claim"`
}
