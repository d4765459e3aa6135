package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewayExtension is kgateway's reference to an external service a
// policy uses: here, the ext_authz server of a TrafficPolicy's extAuth and
// the rate limit service of its rateLimit.global. Written by hand from
// kgateway 2.1's schema like TrafficPolicy; the kinds of extension the
// waypoint does not implement (extProc, jwtProviders) and the fields it does not (httpService, the gRPC retry)
// are kept as raw JSON and reported.
type GatewayExtension struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GatewayExtensionSpec   `json:"spec,omitempty"`
	Status GatewayExtensionStatus `json:"status,omitempty"`
}

// GatewayExtensionList is a list of GatewayExtensions.
type GatewayExtensionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GatewayExtension `json:"items"`
}

// GatewayExtensionSpec is exactly one kind of extension.
type GatewayExtensionSpec struct {
	// Type is ExtAuth, ExtProc, RateLimit (deprecated: the field set says).
	Type         *string            `json:"type,omitempty"`
	ExtAuth      *ExtAuthProvider   `json:"extAuth,omitempty"`
	ExtProc      json.RawMessage    `json:"extProc,omitempty"`
	RateLimit    *RateLimitProvider `json:"rateLimit,omitempty"`
	JWTProviders json.RawMessage    `json:"jwtProviders,omitempty"`
}

// GatewayExtensionStatus is the extension's conditions.
type GatewayExtensionStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ExtAuthProvider is an ext_authz server.
type ExtAuthProvider struct {
	GrpcService      *ExtGrpcService        `json:"grpcService,omitempty"`
	HttpService      json.RawMessage        `json:"httpService,omitempty"` //nolint:revive // kgateway's name
	HeadersToForward []string               `json:"headersToForward,omitempty"`
	FailOpen         bool                   `json:"failOpen,omitempty"`
	ClearRouteCache  bool                   `json:"clearRouteCache,omitempty"`
	WithRequestBody  *ExtAuthBufferSettings `json:"withRequestBody,omitempty"`
	StatusOnError    int32                  `json:"statusOnError,omitempty"`
	StatPrefix       *string                `json:"statPrefix,omitempty"`
}

// ExtGrpcService is a gRPC service by backendRef.
type ExtGrpcService struct {
	BackendRef     gwv1.BackendRef `json:"backendRef"`
	Authority      *string         `json:"authority,omitempty"`
	RequestTimeout *string         `json:"requestTimeout,omitempty"`
	Retry          json.RawMessage `json:"retry,omitempty"`
}

// ExtAuthBufferSettings is how much of the body goes to the authorizer.
type ExtAuthBufferSettings struct {
	MaxRequestBytes     int32 `json:"maxRequestBytes"`
	AllowPartialMessage bool  `json:"allowPartialMessage,omitempty"`
	PackAsBytes         bool  `json:"packAsBytes,omitempty"`
}

// ExtAuthPolicy is a TrafficPolicy's extAuth: the GatewayExtension to ask,
// or a disable.
type ExtAuthPolicy struct {
	ExtensionRef      *NamespacedObjectReference `json:"extensionRef,omitempty"`
	WithRequestBody   *ExtAuthBufferSettings     `json:"withRequestBody,omitempty"`
	ContextExtensions map[string]string          `json:"contextExtensions,omitempty"`
	Disable           *PolicyDisable             `json:"disable,omitempty"`
}

// RateLimitProvider is a rate limit service (envoy.service.ratelimit.v3).
type RateLimitProvider struct {
	GrpcService *ExtGrpcService `json:"grpcService,omitempty"`
	// Domain is sent with every request to the service.
	Domain string `json:"domain"`
	// FailOpen lets requests through when the service cannot answer;
	// unset is true (kgateway's default).
	FailOpen *bool `json:"failOpen,omitempty"`
	// Timeout bounds one call to the service; unset is 100ms.
	Timeout *string `json:"timeout,omitempty"`
	// XRateLimitHeaders is Off (the default) or DraftVersion03: the
	// x-ratelimit-limit, -remaining and -reset response headers.
	XRateLimitHeaders string `json:"xRateLimitHeaders,omitempty"`
}

// NamespacedObjectReference names an object, in the referrer's namespace
// when Namespace is unset.
type NamespacedObjectReference struct {
	Name      gwv1.ObjectName `json:"name"`
	Namespace *gwv1.Namespace `json:"namespace,omitempty"`
}
