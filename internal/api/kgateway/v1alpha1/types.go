// Package v1alpha1 is kgateway's TrafficPolicy (gateway.kgateway.dev/v1alpha1)
// as of kgateway 2.1, for the users of kgateway's waypoint.
//
// kgateway's Go module is not available to this build, so these types are
// written by hand from kgateway 2.1's CRD schema
// (install/helm/kgateway-crds/templates/gateway.kgateway.dev_trafficpolicies.yaml)
// and api/v1alpha1/traffic_policy_types.go: the JSON names are kgateway's,
// so users' manifests decode unchanged. The fields the waypoint honours are
// typed; the others (ai, transformation, extProc, autoHostRewrite, rbac) are kept as raw JSON, so that a manifest carrying
// them still decodes and the translator can name them in the policy's
// status instead of dropping them silently. Durations are kept as strings
// so that a bad one is reported on the object rather than failing the
// decode. The DeepCopy methods are hand-written (zz_deepcopy.go).
package v1alpha1

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1alpha2 "sigs.k8s.io/gateway-api/apis/v1alpha2"
)

// Group is kgateway's API group.
const Group = "gateway.kgateway.dev"

// GroupVersion is gateway.kgateway.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

// AddToScheme registers TrafficPolicy, GatewayExtension, GatewayParameters
// and their lists.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &TrafficPolicy{}, &TrafficPolicyList{}, &GatewayExtension{}, &GatewayExtensionList{},
		&GatewayParameters{}, &GatewayParametersList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// TrafficPolicy is kgateway's policy for HTTP traffic, attached to a
// Gateway, an HTTPRoute or one of its rules (targetRefs, targetSelectors),
// or referenced from a route rule's ExtensionRef filter.
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrafficPolicySpec       `json:"spec,omitempty"`
	Status gwv1alpha2.PolicyStatus `json:"status,omitempty"`
}

// TrafficPolicyList is a list of TrafficPolicies.
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}

// TrafficPolicySpec is kgateway 2.1's spec.
type TrafficPolicySpec struct {
	TargetRefs      []LocalPolicyTargetReferenceWithSectionName `json:"targetRefs,omitempty"`
	TargetSelectors []LocalPolicyTargetSelectorWithSectionName  `json:"targetSelectors,omitempty"`

	// Honoured by the waypoint.
	RateLimit       *RateLimit       `json:"rateLimit,omitempty"`
	Cors            *CorsPolicy      `json:"cors,omitempty"`
	Csrf            *CSRFPolicy      `json:"csrf,omitempty"`
	HeaderModifiers *HeaderModifiers `json:"headerModifiers,omitempty"`
	Buffer          *Buffer          `json:"buffer,omitempty"`
	Timeouts        *Timeouts        `json:"timeouts,omitempty"`
	Retry           *Retry           `json:"retry,omitempty"`

	// Not honoured by the waypoint: reported on the policy when set.
	AI              json.RawMessage `json:"ai,omitempty"`
	Transformation  json.RawMessage `json:"transformation,omitempty"`
	ExtProc         json.RawMessage `json:"extProc,omitempty"`
	ExtAuth         *ExtAuthPolicy  `json:"extAuth,omitempty"`
	AutoHostRewrite *bool           `json:"autoHostRewrite,omitempty"`
	RBAC            json.RawMessage `json:"rbac,omitempty"`
}

// LocalPolicyTargetReference names an object in the policy's namespace.
type LocalPolicyTargetReference struct {
	Group gwv1.Group      `json:"group"`
	Kind  gwv1.Kind       `json:"kind"`
	Name  gwv1.ObjectName `json:"name"`
}

// LocalPolicyTargetReferenceWithSectionName adds a section: a Gateway's
// listener, an HTTPRoute's rule (by rule name).
type LocalPolicyTargetReferenceWithSectionName struct {
	LocalPolicyTargetReference `json:",inline"`
	SectionName                *gwv1.SectionName `json:"sectionName,omitempty"`
}

// LocalPolicyTargetSelector selects objects of the policy's namespace by labels.
type LocalPolicyTargetSelector struct {
	Group       gwv1.Group        `json:"group"`
	Kind        gwv1.Kind         `json:"kind"`
	MatchLabels map[string]string `json:"matchLabels"`
}

// LocalPolicyTargetSelectorWithSectionName adds a section.
type LocalPolicyTargetSelectorWithSectionName struct {
	LocalPolicyTargetSelector `json:",inline"`
	SectionName               *gwv1.SectionName `json:"sectionName,omitempty"`
}

// RateLimit is local (token bucket) and global (external service) limiting.
type RateLimit struct {
	Local  *LocalRateLimitPolicy `json:"local,omitempty"`
	Global *RateLimitPolicy      `json:"global,omitempty"`
}

// RateLimitPolicy is a global rate limit: descriptors sent to the rate
// limit service of a GatewayExtension of type RateLimit.
type RateLimitPolicy struct {
	Descriptors []RateLimitDescriptor `json:"descriptors"`
	// ExtensionRef is required; a pointer so that a missing one is reported.
	ExtensionRef *NamespacedObjectReference `json:"extensionRef,omitempty"`
}

// RateLimitDescriptor is a group of entries.
type RateLimitDescriptor struct {
	Entries []RateLimitDescriptorEntry `json:"entries"`
}

// The descriptor entry types of kgateway 2.1.
const (
	RateLimitEntryGeneric       = "Generic"
	RateLimitEntryHeader        = "Header"
	RateLimitEntryRemoteAddress = "RemoteAddress"
	RateLimitEntryPath          = "Path"
)

// RateLimitDescriptorEntry is one entry: a fixed key and value (Generic),
// a request header's value (Header), the client's address
// (RemoteAddress) or the request path (Path).
type RateLimitDescriptorEntry struct {
	Type    string                           `json:"type"`
	Generic *RateLimitDescriptorEntryGeneric `json:"generic,omitempty"`
	Header  *string                          `json:"header,omitempty"`
}

// RateLimitDescriptorEntryGeneric is a fixed key and value.
type RateLimitDescriptorEntryGeneric struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// LocalRateLimitPolicy is Envoy's local rate limit; empty disables one
// inherited from a less specific attachment.
type LocalRateLimitPolicy struct {
	TokenBucket *TokenBucket `json:"tokenBucket,omitempty"`
}

// TokenBucket is Envoy's token bucket.
type TokenBucket struct {
	MaxTokens     uint32  `json:"maxTokens"`
	TokensPerFill *uint32 `json:"tokensPerFill,omitempty"`
	FillInterval  string  `json:"fillInterval"`
}

// CorsPolicy is the Gateway API CORS filter, inline, or a disable.
type CorsPolicy struct {
	*gwv1.HTTPCORSFilter `json:",inline"`
	Disable              *PolicyDisable `json:"disable,omitempty"`
}

// PolicyDisable turns off a feature set at a less specific attachment.
type PolicyDisable struct{}

// CSRFPolicy is Envoy's CSRF filter.
type CSRFPolicy struct {
	PercentageEnabled  *uint32         `json:"percentageEnabled,omitempty"`
	PercentageShadowed *uint32         `json:"percentageShadowed,omitempty"`
	AdditionalOrigins  []StringMatcher `json:"additionalOrigins,omitempty"`
}

// StringMatcher is Envoy's string matcher: exactly one of the kinds.
type StringMatcher struct {
	Exact      *string `json:"exact,omitempty"`
	Prefix     *string `json:"prefix,omitempty"`
	Suffix     *string `json:"suffix,omitempty"`
	Contains   *string `json:"contains,omitempty"`
	SafeRegex  *string `json:"safeRegex,omitempty"`
	IgnoreCase bool    `json:"ignoreCase,omitempty"`
}

// HeaderModifiers are request and response header filters.
type HeaderModifiers struct {
	Request  *gwv1.HTTPHeaderFilter `json:"request,omitempty"`
	Response *gwv1.HTTPHeaderFilter `json:"response,omitempty"`
}

// Buffer bounds the request body (413 beyond).
type Buffer struct {
	MaxRequestSize *resource.Quantity `json:"maxRequestSize,omitempty"`
	Disable        *PolicyDisable     `json:"disable,omitempty"`
}

// Timeouts are the request and stream idle timeouts.
type Timeouts struct {
	Request    *string `json:"request,omitempty"`
	StreamIdle *string `json:"streamIdle,omitempty"`
}

// Retry is kgateway's retry policy.
type Retry struct {
	RetryOn             []string                        `json:"retryOn,omitempty"`
	Attempts            int32                           `json:"attempts,omitempty"`
	PerTryTimeout       *string                         `json:"perTryTimeout,omitempty"`
	StatusCodes         []gwv1.HTTPRouteRetryStatusCode `json:"statusCodes,omitempty"`
	BackoffBaseInterval *string                         `json:"backoffBaseInterval,omitempty"`
}
