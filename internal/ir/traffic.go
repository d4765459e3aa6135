package ir

// TrafficPolicy is what kgateway TrafficPolicies make the waypoint do to
// an HTTP request, already merged by kgateway's precedence (the translator
// resolves attachments; the proxy only applies). Timeouts and retries of a
// TrafficPolicy are folded into the route entry's own fields instead.
type TrafficPolicy struct {
	// Sources are the policies ("namespace/name") that gave a field, for
	// logs and the config dump.
	Sources []string `json:"sources,omitempty"`
	// LocalRateLimit is Envoy's local rate limit token bucket.
	LocalRateLimit *TokenBucket `json:"localRateLimit,omitempty"`
	// RequestHeaders and ResponseHeaders are the policy's header
	// modifiers, applied before the route rule's own header filters.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	// CORS applies when the route rule has no CORS filter of its own.
	CORS *CORS `json:"cors,omitempty"`
	// MaxRequestBytes bounds the request body (413 beyond); 0: none.
	MaxRequestBytes int64 `json:"maxRequestBytes,omitempty"`
	// CSRF is Envoy's CSRF filter.
	CSRF *CSRF `json:"csrf,omitempty"`
	// ExtAuthz names the Waypoint.ExtAuthzProviders entry (a kgateway
	// GatewayExtension's) that checks these requests (extAuth); "" none.
	ExtAuthz string `json:"extAuthz,omitempty"`
	// StreamIdleTimeoutMs replaces the waypoint's stream idle timeout for
	// these requests (timeouts.streamIdle): nil keeps it, 0 turns it off.
	StreamIdleTimeoutMs *int64 `json:"streamIdleTimeoutMs,omitempty"`
}

// TokenBucket is one token bucket: it holds up to MaxTokens and gains
// TokensPerFill every FillIntervalMs; a request takes one token or is
// refused (429 local_rate_limited). Every entry with the same Key shares
// one bucket (the translator gives one key per attachment, as Envoy has
// one bucket per filter configuration).
type TokenBucket struct {
	Key            string `json:"key"`
	MaxTokens      uint32 `json:"maxTokens"`
	TokensPerFill  uint32 `json:"tokensPerFill"`
	FillIntervalMs int64  `json:"fillIntervalMs"`
}

// CSRF is Envoy's CSRF policy: for a share of the requests (percent,
// 0 to 100) a request of an unsafe method (POST, PUT, DELETE, PATCH) whose
// Origin (else Referer) is not its Host nor one of AdditionalOrigins is
// refused with 403 "Invalid origin"; for the ShadowPercent share it is only
// counted.
type CSRF struct {
	EnabledPercent    uint32        `json:"enabledPercent"`
	ShadowPercent     uint32        `json:"shadowPercent,omitempty"`
	AdditionalOrigins []StringMatch `json:"additionalOrigins,omitempty"`
}

// StringMatch is Envoy's string matcher: one of the kinds is set.
type StringMatch struct {
	Exact      string `json:"exact,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
	Suffix     string `json:"suffix,omitempty"`
	Contains   string `json:"contains,omitempty"`
	Regex      string `json:"regex,omitempty"`
	IgnoreCase bool   `json:"ignoreCase,omitempty"`
}
