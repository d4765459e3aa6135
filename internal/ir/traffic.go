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
	// GlobalRateLimit asks a rate limit service about each request
	// (rateLimit.global), after extAuth.
	GlobalRateLimit *GlobalRateLimit `json:"globalRateLimit,omitempty"`
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

// GlobalRateLimit is Envoy's ratelimit filter as kgateway configures it
// for a TrafficPolicy's rateLimit.global: one descriptor, built per
// request from Entries in order (kgateway puts the entries of all its
// descriptors into one Envoy rate limit action list), sent to the
// provider's service with its domain. When an entry has no value for a
// request (a Header entry whose header is absent), no descriptor is built
// and the service is not asked, as in Envoy.
type GlobalRateLimit struct {
	// Provider names the Waypoint.RateLimitProviders entry.
	Provider string           `json:"provider"`
	Entries  []RateLimitEntry `json:"entries"`
}

// The kinds of descriptor entry (Envoy's rate limit actions).
const (
	RateLimitGeneric       = "generic"       // Key: Value, fixed (generic_key)
	RateLimitHeader        = "header"        // Key: the value of request header Header (request_headers)
	RateLimitRemoteAddress = "remoteAddress" // "remote_address": the client's IP (remote_address)
	RateLimitPath          = "path"          // Key ("path"): the :path, query included (request_headers)
)

// RateLimitEntry is one entry of a descriptor.
type RateLimitEntry struct {
	Kind   string `json:"kind"`
	Key    string `json:"key,omitempty"`
	Value  string `json:"value,omitempty"`
	Header string `json:"header,omitempty"`
}

// RateLimitProvider is a rate limit service speaking
// envoy.service.ratelimit.v3.RateLimitService over gRPC (a kgateway
// GatewayExtension of type RateLimit).
type RateLimitProvider struct {
	Name string `json:"name"`
	// Host and Port are the service's hostname and port; Backend, the key
	// in Waypoint.Backends of the Service found for them, whose endpoints
	// are dialled ("" when none: Host:Port itself).
	Namespace string `json:"namespace,omitempty"`
	Host      string `json:"host"`
	Port      uint16 `json:"port"`
	Backend   string `json:"backend,omitempty"`
	// Authority is the :authority of the calls (grpcService.authority);
	// "" is the outbound cluster name, as istiod names one.
	Authority string `json:"authority,omitempty"`
	// Domain is sent with every request.
	Domain string `json:"domain"`
	// FailOpen lets a request through when the service fails or times
	// out; otherwise it gets 500.
	FailOpen bool `json:"failOpen,omitempty"`
	// TimeoutMs bounds one call (kgateway's default 100ms); 0: none.
	TimeoutMs int64 `json:"timeoutMs"`
	// XRateLimitHeaders adds the x-ratelimit-limit, -remaining and -reset
	// headers of draft-polli-ratelimit-headers-03 computed from the
	// service's answer (Envoy's enable_x_ratelimit_headers
	// DRAFT_VERSION_03).
	XRateLimitHeaders bool `json:"xRateLimitHeaders,omitempty"`
	// Invalid is why the service cannot be used ("" when it can): every
	// call fails, and FailOpen decides.
	Invalid string `json:"invalid,omitempty"`
}
