package v1alpha1

import (
	"encoding/json"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyObject implements runtime.Object.
func (in *TrafficPolicy) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *TrafficPolicyList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy copies the policy.
func (in *TrafficPolicy) DeepCopy() *TrafficPolicy {
	if in == nil {
		return nil
	}
	out := &TrafficPolicy{}
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the policy into out.
func (in *TrafficPolicy) DeepCopyInto(out *TrafficPolicy) {
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	in.Spec.DeepCopyInto(&out.Spec)
	in.Status.DeepCopyInto(&out.Status)
}

// DeepCopy copies the list.
func (in *TrafficPolicyList) DeepCopy() *TrafficPolicyList {
	if in == nil {
		return nil
	}
	out := &TrafficPolicyList{}
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the list into out.
func (in *TrafficPolicyList) DeepCopyInto(out *TrafficPolicyList) {
	out.TypeMeta = in.TypeMeta
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = nil
	if in.Items != nil {
		out.Items = make([]TrafficPolicy, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy copies the CORS policy (and shadows the embedded filter's
// DeepCopy, which would copy only the filter).
func (in *CorsPolicy) DeepCopy() *CorsPolicy {
	if in == nil {
		return nil
	}
	c := &CorsPolicy{Disable: ptr(in.Disable)}
	if in.HTTPCORSFilter != nil {
		f := *in.HTTPCORSFilter
		c.HTTPCORSFilter = f.DeepCopy()
	}
	return c
}

func ptr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func raw(r json.RawMessage) json.RawMessage { return slices.Clone(r) }

// DeepCopyInto copies the spec into out.
func (in *TrafficPolicySpec) DeepCopyInto(out *TrafficPolicySpec) {
	*out = *in
	if in.TargetRefs != nil {
		out.TargetRefs = make([]LocalPolicyTargetReferenceWithSectionName, len(in.TargetRefs))
		for i, r := range in.TargetRefs {
			r.SectionName = ptr(r.SectionName)
			out.TargetRefs[i] = r
		}
	}
	if in.TargetSelectors != nil {
		out.TargetSelectors = make([]LocalPolicyTargetSelectorWithSectionName, len(in.TargetSelectors))
		for i, s := range in.TargetSelectors {
			s.SectionName = ptr(s.SectionName)
			s.MatchLabels = maps.Clone(s.MatchLabels)
			out.TargetSelectors[i] = s
		}
	}
	if in.RateLimit != nil {
		rl := &RateLimit{Global: in.RateLimit.Global.DeepCopy()}
		if l := in.RateLimit.Local; l != nil {
			rl.Local = &LocalRateLimitPolicy{}
			if tb := l.TokenBucket; tb != nil {
				rl.Local.TokenBucket = &TokenBucket{MaxTokens: tb.MaxTokens, TokensPerFill: ptr(tb.TokensPerFill), FillInterval: tb.FillInterval}
			}
		}
		out.RateLimit = rl
	}
	out.Cors = in.Cors.DeepCopy()
	if in.Csrf != nil {
		c := &CSRFPolicy{PercentageEnabled: ptr(in.Csrf.PercentageEnabled), PercentageShadowed: ptr(in.Csrf.PercentageShadowed)}
		if in.Csrf.AdditionalOrigins != nil {
			c.AdditionalOrigins = make([]StringMatcher, len(in.Csrf.AdditionalOrigins))
			for i, m := range in.Csrf.AdditionalOrigins {
				c.AdditionalOrigins[i] = StringMatcher{Exact: ptr(m.Exact), Prefix: ptr(m.Prefix), Suffix: ptr(m.Suffix),
					Contains: ptr(m.Contains), SafeRegex: ptr(m.SafeRegex), IgnoreCase: m.IgnoreCase}
			}
		}
		out.Csrf = c
	}
	if in.HeaderModifiers != nil {
		out.HeaderModifiers = &HeaderModifiers{Request: in.HeaderModifiers.Request.DeepCopy(), Response: in.HeaderModifiers.Response.DeepCopy()}
	}
	if in.Buffer != nil {
		b := &Buffer{Disable: ptr(in.Buffer.Disable)}
		if in.Buffer.MaxRequestSize != nil {
			q := in.Buffer.MaxRequestSize.DeepCopy()
			b.MaxRequestSize = &q
		}
		out.Buffer = b
	}
	if in.Timeouts != nil {
		out.Timeouts = &Timeouts{Request: ptr(in.Timeouts.Request), StreamIdle: ptr(in.Timeouts.StreamIdle)}
	}
	if in.Retry != nil {
		out.Retry = &Retry{RetryOn: slices.Clone(in.Retry.RetryOn), Attempts: in.Retry.Attempts, PerTryTimeout: ptr(in.Retry.PerTryTimeout),
			StatusCodes: slices.Clone(in.Retry.StatusCodes), BackoffBaseInterval: ptr(in.Retry.BackoffBaseInterval)}
	}
	out.AI, out.Transformation, out.ExtProc, out.RBAC = raw(in.AI), raw(in.Transformation), raw(in.ExtProc), raw(in.RBAC)
	out.ExtAuth = in.ExtAuth.DeepCopy()
	out.AutoHostRewrite = ptr(in.AutoHostRewrite)
}

// DeepCopyObject implements runtime.Object.
func (in *GatewayExtension) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *GatewayExtensionList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy copies the extension.
func (in *GatewayExtension) DeepCopy() *GatewayExtension {
	if in == nil {
		return nil
	}
	out := &GatewayExtension{}
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the extension into out.
func (in *GatewayExtension) DeepCopyInto(out *GatewayExtension) {
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	s := in.Spec
	out.Spec = GatewayExtensionSpec{Type: ptr(s.Type), ExtAuth: s.ExtAuth.DeepCopy(),
		ExtProc: raw(s.ExtProc), RateLimit: s.RateLimit.DeepCopy(), JWTProviders: raw(s.JWTProviders)}
	out.Status.Conditions = nil
	for _, c := range in.Status.Conditions {
		out.Status.Conditions = append(out.Status.Conditions, *c.DeepCopy())
	}
}

// DeepCopy copies the list.
func (in *GatewayExtensionList) DeepCopy() *GatewayExtensionList {
	if in == nil {
		return nil
	}
	out := &GatewayExtensionList{}
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the list into out.
func (in *GatewayExtensionList) DeepCopyInto(out *GatewayExtensionList) {
	out.TypeMeta = in.TypeMeta
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = nil
	if in.Items != nil {
		out.Items = make([]GatewayExtension, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy copies the provider.
func (in *ExtAuthProvider) DeepCopy() *ExtAuthProvider {
	if in == nil {
		return nil
	}
	out := *in
	if g := in.GrpcService; g != nil {
		out.GrpcService = &ExtGrpcService{BackendRef: *g.BackendRef.DeepCopy(), Authority: ptr(g.Authority),
			RequestTimeout: ptr(g.RequestTimeout), Retry: raw(g.Retry)}
	}
	out.HttpService = raw(in.HttpService)
	out.HeadersToForward = slices.Clone(in.HeadersToForward)
	out.WithRequestBody = ptr(in.WithRequestBody)
	out.StatPrefix = ptr(in.StatPrefix)
	return &out
}

// DeepCopy copies the policy's extAuth.
func (in *ExtAuthPolicy) DeepCopy() *ExtAuthPolicy {
	if in == nil {
		return nil
	}
	out := &ExtAuthPolicy{WithRequestBody: ptr(in.WithRequestBody), ContextExtensions: maps.Clone(in.ContextExtensions),
		Disable: ptr(in.Disable)}
	if r := in.ExtensionRef; r != nil {
		out.ExtensionRef = &NamespacedObjectReference{Name: r.Name, Namespace: ptr(r.Namespace)}
	}
	return out
}

// DeepCopy copies the global rate limit policy.
func (in *RateLimitPolicy) DeepCopy() *RateLimitPolicy {
	if in == nil {
		return nil
	}
	out := &RateLimitPolicy{}
	if in.ExtensionRef != nil {
		out.ExtensionRef = &NamespacedObjectReference{Name: in.ExtensionRef.Name, Namespace: ptr(in.ExtensionRef.Namespace)}
	}
	if in.Descriptors != nil {
		out.Descriptors = make([]RateLimitDescriptor, len(in.Descriptors))
		for i, d := range in.Descriptors {
			if d.Entries == nil {
				continue
			}
			out.Descriptors[i].Entries = make([]RateLimitDescriptorEntry, len(d.Entries))
			for j, e := range d.Entries {
				out.Descriptors[i].Entries[j] = RateLimitDescriptorEntry{Type: e.Type, Generic: ptr(e.Generic), Header: ptr(e.Header)}
			}
		}
	}
	return out
}

// DeepCopy copies the rate limit provider.
func (in *RateLimitProvider) DeepCopy() *RateLimitProvider {
	if in == nil {
		return nil
	}
	out := *in
	if g := in.GrpcService; g != nil {
		out.GrpcService = &ExtGrpcService{BackendRef: *g.BackendRef.DeepCopy(), Authority: ptr(g.Authority),
			RequestTimeout: ptr(g.RequestTimeout), Retry: raw(g.Retry)}
	}
	out.FailOpen, out.Timeout = ptr(in.FailOpen), ptr(in.Timeout)
	return &out
}
