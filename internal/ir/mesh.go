package ir

// This file holds what the data plane takes from Istio's mesh config
// (MeshConfig, the "mesh" key of istiod's ConfigMap or standalone's
// --mesh-config file). The translator copies it into the Waypoint, so the
// proxy learns it the same way in every mode: from the IR alone.

// PathNormalization is Istio's MeshConfig.ProxyPathNormalization: how request
// paths are normalized before routing, authorization and forwarding. The
// zero value "" is BASE, Istio's default.
type PathNormalization string

// The normalization modes (istiod's Envoy HttpConnectionManager settings):
//
//	NONE                      normalize_path=false
//	BASE (and DEFAULT)        normalize_path=true
//	MERGE_SLASHES             normalize_path=true, merge_slashes=true
//	DECODE_AND_MERGE_SLASHES  normalize_path=true, merge_slashes=true,
//	                          path_with_escaped_slashes_action=UNESCAPE_AND_FORWARD
const (
	NormalizeBase                  PathNormalization = "BASE"
	NormalizeNone                  PathNormalization = "NONE"
	NormalizeMergeSlashes          PathNormalization = "MERGE_SLASHES"
	NormalizeDecodeAndMergeSlashes PathNormalization = "DECODE_AND_MERGE_SLASHES"
)

// ProviderKind tells the two external authorization protocols apart.
type ProviderKind string

// The provider kinds, named as the mesh config names them.
const (
	ExtAuthzHTTP ProviderKind = "envoyExtAuthzHttp" // Envoy's HTTP check
	ExtAuthzGRPC ProviderKind = "envoyExtAuthzGrpc" // envoy.service.auth.v3.Authorization
)

// ExtAuthzProvider is one envoyExtAuthzHttp or envoyExtAuthzGrpc extension
// provider of the mesh config, with istiod's defaults applied. CUSTOM
// AuthorizationPolicies name it. Fields marked HTTP are zero for gRPC
// providers.
type ExtAuthzProvider struct {
	Name string       `json:"name"`
	Kind ProviderKind `json:"kind"`
	// Service is the service as written, "[<namespace>/]<hostname>";
	// Namespace and Host are its parts (Namespace "" when not given).
	Service   string `json:"service"`
	Namespace string `json:"namespace,omitempty"`
	Host      string `json:"host"`
	Port      uint16 `json:"port"`
	// Backend is the key in Waypoint.Backends of the Service or
	// ServiceEntry the translator found for Host and Port: the waypoint
	// dials its endpoints. Empty when none was found: the waypoint dials
	// Host:Port itself.
	Backend string `json:"backend,omitempty"`
	// TimeoutMs bounds one check (timeout, default 600s as istiod); 0 is no
	// timeout, as in Envoy. When it passes the check has failed: FailOpen
	// decides.
	TimeoutMs int64 `json:"timeoutMs"`
	// FailOpen allows the request when the authorizer cannot be reached,
	// times out, or (HTTP) answers 5xx; otherwise such a request gets
	// StatusOnError.
	FailOpen bool `json:"failOpen,omitempty"`
	// StatusOnError is the status sent to the client when a check fails and
	// FailOpen is false (statusOnError, default 403).
	StatusOnError int `json:"statusOnError"`
	// ClearRouteCache is clearRouteCache: the route is chosen again when the
	// authorizer changed request headers.
	ClearRouteCache bool `json:"clearRouteCache,omitempty"`
	// Body is includeRequestBodyInCheck; nil when the body is not sent.
	Body *ExtAuthzBody `json:"body,omitempty"`

	// PathPrefix (HTTP) is prepended to the path of the check request.
	PathPrefix string `json:"pathPrefix,omitempty"`
	// IncludeRequestHeadersInCheck (HTTP) selects the client request headers
	// sent to the authorizer besides Host, Method, Path, Content-Length and
	// Authorization (the deprecated includeHeadersInCheck when empty, as
	// istiod falls back). Patterns: "abc" exact, "abc*" prefix, "*abc"
	// suffix, ignoring case.
	IncludeRequestHeadersInCheck []string `json:"includeRequestHeadersInCheck,omitempty"`
	// IncludeAdditionalHeadersInCheck (HTTP) are fixed headers added to the
	// check request, replacing client headers of the same name.
	IncludeAdditionalHeadersInCheck map[string]string `json:"includeAdditionalHeadersInCheck,omitempty"`
	// HeadersToUpstreamOnAllow (HTTP) selects authorizer response headers set
	// on the upstream request when the check allows (200).
	HeadersToUpstreamOnAllow []string `json:"headersToUpstreamOnAllow,omitempty"`
	// HeadersToDownstreamOnDeny (HTTP) selects authorizer response headers
	// sent to the client on deny; empty means all of them except Host.
	HeadersToDownstreamOnDeny []string `json:"headersToDownstreamOnDeny,omitempty"`
	// HeadersToDownstreamOnAllow (HTTP) selects authorizer response headers
	// added to the client's response when the check allows.
	HeadersToDownstreamOnAllow []string `json:"headersToDownstreamOnAllow,omitempty"`

	// Invalid is why istiod's ext_authz builder would refuse this provider
	// ("" when usable). CUSTOM policies naming it deny what they select.
	Invalid string `json:"invalid,omitempty"`
}

// ExtAuthzBody is includeRequestBodyInCheck.
type ExtAuthzBody struct {
	// MaxRequestBytes is how much of the body is buffered and sent. A longer
	// body gets 413 without a check unless AllowPartialMessage (this takes
	// precedence over FailOpen).
	MaxRequestBytes uint32 `json:"maxRequestBytes"`
	// AllowPartialMessage sends the first MaxRequestBytes of a longer body,
	// with x-envoy-auth-partial-body: true.
	AllowPartialMessage bool `json:"allowPartialMessage,omitempty"`
	// PackAsBytes (gRPC) sends the body in raw_body instead of body.
	PackAsBytes bool `json:"packAsBytes,omitempty"`
}
