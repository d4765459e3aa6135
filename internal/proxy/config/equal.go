package config

import (
	"maps"
	"reflect"
	"slices"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Change detection: Compile keeps what it compiled for the previous
// configuration when the IR it came from is equal to the new one. The
// functions here compare IR values field by field; they are exact (no
// digest that could collide) and cheaper than encoding the IR would be,
// since most comparisons of an update that changes one route find equal
// strings at once.
//
// equal_test.go changes every field of a port, a service and a backend,
// however deep, one at a time, and checks the comparison sees it: a field
// added to the IR and forgotten here fails that test.
//
// Nil and empty slices are equal (the compiled form is the same), except
// for AuthzPolicy.Rules, where they mean different things.

// sameService reports whether two services are equal in everything but
// their ports' contents: the fields the lookup maps and names are built
// from, and the port numbers in order.
func sameService(a, b *ir.Service) bool {
	if a == b {
		return true
	}
	if a.Kind != b.Kind || a.Name != b.Name || a.Namespace != b.Namespace || a.Hostname != b.Hostname ||
		!slices.Equal(a.VIPs, b.VIPs) || len(a.Ports) != len(b.Ports) {
		return false
	}
	for i, p := range a.Ports {
		q := b.Ports[i]
		if p == nil || q == nil {
			if p != q {
				return false
			}
			continue
		}
		if p.Port != q.Port {
			return false
		}
	}
	return true
}

// equalService reports whether two services are equal, ports included.
func equalService(a, b *ir.Service) bool {
	return sameService(a, b) && equalPtrs(a.Ports, b.Ports, equalPort) && reflect.DeepEqual(a.Telemetry, b.Telemetry)
}

// equalPort reports whether two service ports are configured identically:
// routes, policies and JWT rules included.
func equalPort(a, b *ir.ServicePort) bool {
	if a == b {
		return true
	}
	return a.Port == b.Port && a.Name == b.Name && a.Protocol == b.Protocol &&
		a.DefaultBackend == b.DefaultBackend &&
		equalPtrs(a.Routes, b.Routes, equalRule) &&
		equalPtrs(a.Policies, b.Policies, equalPolicy) &&
		slices.EqualFunc(a.TCPBackends, b.TCPBackends, equalWeighted) &&
		equalPtrs(a.JWTRules, b.JWTRules, equalJWTRule) &&
		eqPtr(a.Traffic, b.Traffic, equalTraffic)
}

// equalBackend reports whether two backends are identical.
func equalBackend(a, b *ir.Backend) bool {
	if a == b {
		return true
	}
	return a.Service == b.Service && a.Port == b.Port && a.Protocol == b.Protocol &&
		slices.Equal(a.Endpoints, b.Endpoints) && slices.Equal(a.HBONE, b.HBONE) && maps.Equal(a.Weights, b.Weights) &&
		a.TrafficDistribution == b.TrafficDistribution && slices.Equal(a.Localities, b.Localities) &&
		a.LoadBalancer == b.LoadBalancer && eqPtr(a.ConsistentHash, b.ConsistentHash, equalHash) &&
		equalPtrs(a.Subsets, b.Subsets, equalSubset) &&
		eqPtr(a.Outlier, b.Outlier, func(x, y *ir.OutlierDetection) bool { return *x == *y }) &&
		eqPtr(a.ConnectionPool, b.ConnectionPool, func(x, y *ir.ConnectionPool) bool { return *x == *y })
}

// equalHash compares two consistent hash policies.
func equalHash(a, b *ir.ConsistentHash) bool {
	return a.Header == b.Header && a.SourceIP == b.SourceIP && a.QueryParameter == b.QueryParameter &&
		a.Maglev == b.Maglev && a.TableSize == b.TableSize && a.MinimumRingSize == b.MinimumRingSize &&
		eqPtr(a.Cookie, b.Cookie, func(x, y *ir.HashCookie) bool {
			return x.Name == y.Name && x.Path == y.Path && x.Generate == y.Generate && x.TTLSeconds == y.TTLSeconds &&
				slices.Equal(x.Attributes, y.Attributes)
		})
}

func equalSubset(a, b *ir.BackendSubset) bool {
	return a.Name == b.Name && slices.Equal(a.Endpoints, b.Endpoints) && a.LoadBalancer == b.LoadBalancer &&
		eqPtr(a.ConsistentHash, b.ConsistentHash, equalHash)
}

// eqPtr compares two optional values: both nil, or both set and equal.
func eqPtr[T any](a, b *T, eq func(a, b *T) bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || eq(a, b)
}

// equalPtrs compares two lists of optional values element by element.
func equalPtrs[T any](a, b []*T, eq func(a, b *T) bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !eqPtr(a[i], b[i], eq) {
			return false
		}
	}
	return true
}

func equalRule(a, b *ir.HTTPRouteRule) bool {
	return a.Route == b.Route && a.RuleIndex == b.RuleIndex && a.MatchIndex == b.MatchIndex &&
		equalMatch(&a.Match, &b.Match) &&
		eqPtr(a.RequestHeaders, b.RequestHeaders, equalHeaderModifier) &&
		eqPtr(a.ResponseHeaders, b.ResponseHeaders, equalHeaderModifier) &&
		slices.EqualFunc(a.Backends, b.Backends, equalWeighted) &&
		a.RuleName == b.RuleName && a.ClientNamespace == b.ClientNamespace && a.GRPC == b.GRPC &&
		eqPtr(a.Redirect, b.Redirect, equalRedirect) &&
		eqPtr(a.Rewrite, b.Rewrite, equalRewrite) &&
		slices.Equal(a.Mirrors, b.Mirrors) &&
		eqPtr(a.CORS, b.CORS, equalCORS) &&
		a.RequestTimeoutMs == b.RequestTimeoutMs && a.BackendRequestTimeoutMs == b.BackendRequestTimeoutMs &&
		eqPtr(a.Retry, b.Retry, equalRetry) &&
		a.Unsupported == b.Unsupported &&
		eqPtr(a.Traffic, b.Traffic, equalTraffic)
}

func equalTraffic(a, b *ir.TrafficPolicy) bool {
	return slices.Equal(a.Sources, b.Sources) &&
		eqPtr(a.LocalRateLimit, b.LocalRateLimit, func(a, b *ir.TokenBucket) bool { return *a == *b }) &&
		eqPtr(a.RequestHeaders, b.RequestHeaders, equalHeaderModifier) &&
		eqPtr(a.ResponseHeaders, b.ResponseHeaders, equalHeaderModifier) &&
		eqPtr(a.CORS, b.CORS, equalCORS) &&
		a.MaxRequestBytes == b.MaxRequestBytes && a.ExtAuthz == b.ExtAuthz &&
		eqPtr(a.GlobalRateLimit, b.GlobalRateLimit, func(a, b *ir.GlobalRateLimit) bool {
			return a.Provider == b.Provider && slices.Equal(a.Entries, b.Entries)
		}) &&
		eqPtr(a.StreamIdleTimeoutMs, b.StreamIdleTimeoutMs, func(a, b *int64) bool { return *a == *b }) &&
		eqPtr(a.CSRF, b.CSRF, func(a, b *ir.CSRF) bool {
			return a.EnabledPercent == b.EnabledPercent && a.ShadowPercent == b.ShadowPercent &&
				slices.Equal(a.AdditionalOrigins, b.AdditionalOrigins)
		})
}

func equalMatch(a, b *ir.HTTPMatch) bool {
	return eqPtr(a.Path, b.Path, equalPathMatch) &&
		slices.Equal(a.Headers, b.Headers) && slices.Equal(a.QueryParams, b.QueryParams) &&
		a.Method == b.Method
}

func equalHeaderModifier(a, b *ir.HeaderModifier) bool {
	return slices.Equal(a.Set, b.Set) && slices.Equal(a.Add, b.Add) && slices.Equal(a.Remove, b.Remove)
}

func equalWeighted(a, b ir.WeightedBackend) bool {
	return a.Backend == b.Backend && a.Weight == b.Weight &&
		eqPtr(a.RequestHeaders, b.RequestHeaders, equalHeaderModifier) &&
		eqPtr(a.ResponseHeaders, b.ResponseHeaders, equalHeaderModifier)
}

func equalPathModifier(a, b *ir.PathModifier) bool { return *a == *b }

func equalPathMatch(a, b *ir.PathMatch) bool { return *a == *b }

func equalRedirect(a, b *ir.Redirect) bool {
	return a.Scheme == b.Scheme && a.Hostname == b.Hostname && eqPtr(a.Path, b.Path, equalPathModifier) &&
		a.Port == b.Port && a.StatusCode == b.StatusCode
}

func equalRewrite(a, b *ir.Rewrite) bool {
	return a.Hostname == b.Hostname && eqPtr(a.Path, b.Path, equalPathModifier)
}

func equalCORS(a, b *ir.CORS) bool {
	return slices.Equal(a.AllowOrigins, b.AllowOrigins) && slices.Equal(a.AllowMethods, b.AllowMethods) &&
		slices.Equal(a.AllowHeaders, b.AllowHeaders) && slices.Equal(a.ExposeHeaders, b.ExposeHeaders) &&
		a.MaxAge == b.MaxAge && a.AllowCredentials == b.AllowCredentials
}

func equalRetry(a, b *ir.Retry) bool {
	return a.Attempts == b.Attempts && slices.Equal(a.Codes, b.Codes) && a.BackoffMs == b.BackoffMs &&
		a.PerTryTimeoutMs == b.PerTryTimeoutMs
}

func equalPolicy(a, b *ir.AuthzPolicy) bool {
	return a.Name == b.Name && a.Action == b.Action && a.Provider == b.Provider && a.DryRun == b.DryRun &&
		(a.Rules == nil) == (b.Rules == nil) && // nil and empty differ: see ir.AuthzPolicy
		equalPtrs(a.Rules, b.Rules, equalAuthzRule) &&
		a.Invalid == b.Invalid
}

func equalAuthzRule(a, b *ir.AuthzRule) bool {
	return equalPtrs(a.From, b.From, equalAuthzSource) &&
		equalPtrs(a.To, b.To, equalAuthzOperation) &&
		equalPtrs(a.When, b.When, equalAuthzCondition)
}

func equalAuthzSource(a, b *ir.AuthzSource) bool {
	return slices.Equal(a.Principals, b.Principals) && slices.Equal(a.NotPrincipals, b.NotPrincipals) &&
		slices.Equal(a.RequestPrincipals, b.RequestPrincipals) && slices.Equal(a.NotRequestPrincipals, b.NotRequestPrincipals) &&
		slices.Equal(a.Namespaces, b.Namespaces) && slices.Equal(a.NotNamespaces, b.NotNamespaces) &&
		slices.Equal(a.ServiceAccounts, b.ServiceAccounts) && slices.Equal(a.NotServiceAccounts, b.NotServiceAccounts) &&
		slices.Equal(a.IPBlocks, b.IPBlocks) && slices.Equal(a.NotIPBlocks, b.NotIPBlocks) &&
		slices.Equal(a.RemoteIPBlocks, b.RemoteIPBlocks) && slices.Equal(a.NotRemoteIPBlocks, b.NotRemoteIPBlocks) &&
		slices.Equal(a.TrustDomains, b.TrustDomains) && slices.Equal(a.NotTrustDomains, b.NotTrustDomains)
}

func equalAuthzOperation(a, b *ir.AuthzOperation) bool {
	return slices.Equal(a.Hosts, b.Hosts) && slices.Equal(a.NotHosts, b.NotHosts) &&
		slices.Equal(a.Ports, b.Ports) && slices.Equal(a.NotPorts, b.NotPorts) &&
		slices.Equal(a.Methods, b.Methods) && slices.Equal(a.NotMethods, b.NotMethods) &&
		slices.Equal(a.Paths, b.Paths) && slices.Equal(a.NotPaths, b.NotPaths)
}

func equalAuthzCondition(a, b *ir.AuthzCondition) bool {
	return a.Key == b.Key && slices.Equal(a.Values, b.Values) && slices.Equal(a.NotValues, b.NotValues)
}

func equalJWTRule(a, b *ir.JWTRule) bool {
	return a.Policy == b.Policy && a.Issuer == b.Issuer && slices.Equal(a.Audiences, b.Audiences) &&
		a.JwksURI == b.JwksURI && a.Jwks == b.Jwks &&
		slices.Equal(a.FromHeaders, b.FromHeaders) && slices.Equal(a.FromParams, b.FromParams) &&
		slices.Equal(a.FromCookies, b.FromCookies) &&
		a.OutputPayloadToHeader == b.OutputPayloadToHeader && a.ForwardOriginalToken == b.ForwardOriginalToken &&
		slices.Equal(a.OutputClaimToHeaders, b.OutputClaimToHeaders) &&
		a.TimeoutMs == b.TimeoutMs && slices.Equal(a.SpaceDelimitedClaims, b.SpaceDelimitedClaims) &&
		a.Required == b.Required
}

// SameProviders reports whether two sets of external authorizers (
// ir.Waypoint.ExtAuthzProviders) are equal in everything their clients are
// built from: every field but Backend, which says where a provider is
// reached and is looked up per connection (Config.Resolve). The proxy
// keeps its authorizer clients across configurations whose providers are
// the same.
func SameProviders(a, b map[string]*ir.ExtAuthzProvider) bool {
	if len(a) != len(b) {
		return false
	}
	for name, pa := range a {
		pb, ok := b[name]
		if !ok || !eqPtr(pa, pb, sameProvider) {
			return false
		}
	}
	return true
}

// sameProvider compares two external authorizers, leaving out Backend.
func sameProvider(a, b *ir.ExtAuthzProvider) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Service == b.Service && a.Namespace == b.Namespace &&
		a.Host == b.Host && a.Port == b.Port &&
		a.TimeoutMs == b.TimeoutMs && a.FailOpen == b.FailOpen && a.StatusOnError == b.StatusOnError &&
		a.ClearRouteCache == b.ClearRouteCache && eqPtr(a.Body, b.Body, equalExtAuthzBody) &&
		a.PathPrefix == b.PathPrefix &&
		slices.Equal(a.IncludeRequestHeadersInCheck, b.IncludeRequestHeadersInCheck) &&
		maps.Equal(a.IncludeAdditionalHeadersInCheck, b.IncludeAdditionalHeadersInCheck) &&
		slices.Equal(a.HeadersToUpstreamOnAllow, b.HeadersToUpstreamOnAllow) &&
		slices.Equal(a.HeadersToDownstreamOnDeny, b.HeadersToDownstreamOnDeny) &&
		slices.Equal(a.HeadersToDownstreamOnAllow, b.HeadersToDownstreamOnAllow) &&
		a.Invalid == b.Invalid
}

// SameRateLimitProviders is SameProviders for the rate limit services
// (ir.Waypoint.RateLimitProviders): equal in every field but Backend.
func SameRateLimitProviders(a, b map[string]*ir.RateLimitProvider) bool {
	if len(a) != len(b) {
		return false
	}
	for name, pa := range a {
		pb, ok := b[name]
		if !ok || !eqPtr(pa, pb, func(a, b *ir.RateLimitProvider) bool {
			x, y := *a, *b
			x.Backend, y.Backend = "", ""
			return x == y
		}) {
			return false
		}
	}
	return true
}

func equalExtAuthzBody(a, b *ir.ExtAuthzBody) bool { return *a == *b }
