// Package ir is the per-waypoint configuration: everything one waypoint proxy
// needs to serve traffic, and nothing else. The translator produces it from
// Kubernetes objects (from a cluster or from files); the proxy consumes it.
//
// The IR is plain data: it serialises to JSON (for golden tests, the admin
// config dump and the xDS transport) and holds no compiled state. The proxy
// compiles it once when it arrives (regular expressions, lookup maps, policy
// evaluators) and swaps a pointer to move to the new version.
//
// Once published, a Waypoint is never modified.
package ir

import (
	"strconv"
	"strings"
)

// Waypoint is the complete configuration of one waypoint Gateway.
type Waypoint struct {
	// Gateway is the namespace/name of the Gateway this configuration is for.
	Gateway NamespacedName `json:"gateway"`
	// TrustDomain is the SPIFFE trust domain of the mesh ("cluster.local").
	TrustDomain string `json:"trustDomain"`
	// TrustDomainAliases are trust domains treated as equal to TrustDomain
	// when policies name principals.
	TrustDomainAliases []string `json:"trustDomainAliases,omitempty"`
	// InboundPort is the port of the PROXY-protocol listener (15088 by
	// default), or of the native HBONE listener (15008) when HBONE is set.
	InboundPort uint16 `json:"inboundPort"`
	// HBONE selects native mode: the waypoint terminates ztunnel's mTLS
	// HBONE itself on InboundPort, with a certificate of its own, and
	// reaches the endpoints its backends list in HBONE over HBONE (the
	// Gateway's listener is {protocol: HBONE, port: 15008}). Otherwise
	// the inbound is PROXY protocol from the pod's own ztunnel (sandwich).
	HBONE bool `json:"hbone,omitempty"`
	// Services are the services this waypoint serves, sorted by namespace/name.
	Services []*Service `json:"services,omitempty"`
	// Backends are the upstream destinations referenced by routes and by the
	// services' default routes, keyed by BackendKey.
	Backends map[string]*Backend `json:"backends,omitempty"`
	// Workloads are the pods, WorkloadEntries and ServiceEntry endpoints
	// whose own traffic (addressed to their IP, on any port) passes
	// through this waypoint (istio.io/waypoint-for: workload or all),
	// sorted by namespace, kind and name.
	Workloads []*Workload `json:"workloads,omitempty"`
	// WorkloadPort is how traffic addressed to a workload is served, on
	// whatever port it arrives: its protocol and policies (those that
	// target the waypoint Gateway or its GatewayClass). Its Port and
	// DefaultBackend are unused: the traffic goes to the workload's IP on
	// the port it was addressed to. Nil when the waypoint takes no
	// workload traffic.
	WorkloadPort *ServicePort `json:"workloadPort,omitempty"`

	// PathNormalization, ExtAuthzProviders and DefaultRetry come from the
	// mesh config (see mesh.go).
	//
	// PathNormalization is how request paths are normalized ("": BASE).
	PathNormalization PathNormalization `json:"pathNormalization,omitempty"`
	// ExtAuthzProviders are the mesh's external authorizers by name, for
	// CUSTOM policies; a name not here denies what its policies select.
	ExtAuthzProviders map[string]*ExtAuthzProvider `json:"extAuthzProviders,omitempty"`
	// RateLimitProviders are the rate limit services (kgateway
	// GatewayExtensions of type RateLimit) the TrafficPolicies' global
	// rate limits call, by name (traffic.go).
	RateLimitProviders map[string]*RateLimitProvider `json:"rateLimitProviders,omitempty"`
	// DefaultRetry is the mesh's defaultHttpRetryPolicy, for HTTP requests
	// whose route sets no retry policy; nil is the proxy's built-in default
	// (connection failures retried twice on other endpoints).
	DefaultRetry *Retry `json:"defaultRetry,omitempty"`

	// NodeLocalities are the localities of the nodes that run this
	// waypoint's pods, by node name (locality.go). A proxy finds its own
	// there by the node it runs on, so that a node's topology labels can
	// change without a restart. Set only when a backend prefers close
	// endpoints (Backend.TrafficDistribution).
	NodeLocalities map[string]Locality `json:"nodeLocalities,omitempty"`

	// Telemetry is the Telemetry API's (and the mesh config's telemetry
	// defaults') access log, tracing and metrics for the waypoint
	// (telemetry.go); nil: none, the proxy's own settings.
	Telemetry *Telemetry `json:"telemetry,omitempty"`
}

// NamespacedName names a namespaced Kubernetes object.
type NamespacedName struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

// ParseNamespacedName reads "NAMESPACE/NAME"; ok is false unless both parts
// are there and the name has no further slash.
func ParseNamespacedName(s string) (n NamespacedName, ok bool) {
	ns, name, found := strings.Cut(s, "/")
	if !found || ns == "" || name == "" || strings.Contains(name, "/") {
		return NamespacedName{}, false
	}
	return NamespacedName{Namespace: ns, Name: name}, true
}

// Protocol is how the waypoint treats a service port.
type Protocol string

const (
	// ProtocolHTTP ports are parsed as HTTP/1.1 or HTTP/2 (h2c), routed and
	// authorized per request.
	ProtocolHTTP Protocol = "HTTP"
	// ProtocolTCP ports are authorized per connection and copied byte for byte.
	ProtocolTCP Protocol = "TCP"
	// ProtocolDetect connections are HTTP when their first bytes are an
	// HTTP/1 request line or the HTTP/2 preface, else TCP (as Envoy's HTTP
	// inspector decides for Istio's waypoint's workload traffic).
	ProtocolDetect Protocol = "Detect"
)

// Workload is one pod, WorkloadEntry or ServiceEntry endpoint whose
// traffic this waypoint serves (Waypoint.WorkloadPort).
type Workload struct {
	// Kind is "Pod", "WorkloadEntry" or "ServiceEntry" (an endpoint of the
	// entry's spec.endpoints; Name is the entry's).
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Addresses are the workload's IPs; clients dial IP:port.
	Addresses []string `json:"addresses"`
	// Identity is the SPIFFE identity of the workload's service account.
	Identity string `json:"identity"`
	// HBONE: native mode (Waypoint.HBONE) and the workload is in the
	// ambient mesh: the waypoint reaches it over HBONE to its IP:15008 and
	// requires Identity of it; otherwise plain TCP to IP:port.
	HBONE bool `json:"hbone,omitempty"`
}

// Service is one Kubernetes Service (or one host of an Istio ServiceEntry)
// whose traffic passes through this waypoint.
type Service struct {
	// Kind is "" for a Kubernetes Service, "ServiceEntry" for a host of an
	// Istio ServiceEntry (Name is then the ServiceEntry's name).
	Kind      string `json:"kind,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Hostname is the service's cluster-local FQDN (name.ns.svc.cluster.local).
	Hostname string `json:"hostname"`
	// VIPs are the service's cluster IPs; clients dial VIP:port.
	VIPs []string `json:"vips"`
	// Ports are the service's ports, sorted by port number.
	Ports []*ServicePort `json:"ports"`
	// Telemetry replaces Waypoint.Telemetry for this service's traffic
	// when a Telemetry targets the Service (merged with the waypoint's
	// as istiod merges them); nil: the waypoint's.
	Telemetry *Telemetry `json:"telemetry,omitempty"`
}

// ServicePort is one port of a served Service, with everything the proxy does
// to traffic addressed to any VIP of the service on that port.
type ServicePort struct {
	Port     uint16   `json:"port"`
	Name     string   `json:"name,omitempty"`
	Protocol Protocol `json:"protocol"`
	// Routes is the route table for HTTP ports, already in precedence order:
	// the first entry that matches a request wins. Empty means no route is
	// attached and every request goes to DefaultBackend.
	Routes []*HTTPRouteRule `json:"routes,omitempty"`
	// DefaultBackend is the service itself (BackendKey), used when no route
	// is attached to this port.
	DefaultBackend string `json:"defaultBackend"`
	// Policies are the authorization policies that apply to this port, sorted
	// by namespace/name. The proxy evaluates them in Istio's order.
	Policies []*AuthzPolicy `json:"policies,omitempty"`
	// TCPBackends are the weighted backends of a TCPRoute attached to this
	// TCP port; empty means DefaultBackend.
	TCPBackends []WeightedBackend `json:"tcpBackends,omitempty"`
	// JWTRules are the RequestAuthentication rules that apply to this port,
	// sorted by policy namespace/name.
	JWTRules []*JWTRule `json:"jwtRules,omitempty"`
	// Traffic is what kgateway TrafficPolicies attached to the waypoint
	// Gateway do to the port's HTTP requests that no route entry takes
	// (no route attached, or none matches); a matched entry carries its
	// own merged Traffic.
	Traffic *TrafficPolicy `json:"traffic,omitempty"`
}

// HTTPRouteRule is one match of one rule of an HTTPRoute. A rule with several
// matches becomes several entries, so that precedence orders matches, as the
// Gateway API specification requires.
type HTTPRouteRule struct {
	// Route names the HTTPRoute this entry came from.
	Route NamespacedName `json:"route"`
	// RuleIndex and MatchIndex locate the entry inside that route.
	RuleIndex  int `json:"ruleIndex"`
	MatchIndex int `json:"matchIndex"`
	// Match is what a request must satisfy (all fields, AND).
	Match HTTPMatch `json:"match"`
	// RequestHeaders is applied to the request before it goes upstream.
	RequestHeaders *HeaderModifier `json:"requestHeaders,omitempty"`
	// ResponseHeaders is applied to every response of this rule, including
	// the waypoint's own replies (403 on denial, 503, ...).
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	// Backends are the weighted destinations. Empty means the rule has no
	// usable backend and requests matching it get a 500 (unless Redirect).
	Backends []WeightedBackend `json:"backends,omitempty"`
	// RuleName is the rule's optional name (for logs and status).
	RuleName string `json:"ruleName,omitempty"`
	// ClientNamespace, when set, makes this a consumer route entry: it
	// applies only to clients of that namespace, which then see only the
	// consumer routes of their namespace for this service.
	ClientNamespace string `json:"clientNamespace,omitempty"`
	// GRPC marks entries from a GRPCRoute.
	GRPC bool `json:"grpc,omitempty"`
	// Redirect answers the request with a redirect instead of forwarding.
	Redirect *Redirect `json:"redirect,omitempty"`
	// Rewrite changes the host and path sent upstream.
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// Mirrors receive a copy of (a share of) the requests; their responses
	// are ignored.
	Mirrors []Mirror `json:"mirrors,omitempty"`
	// CORS answers preflight requests and decorates responses.
	CORS *CORS `json:"cors,omitempty"`
	// Timeouts bound the request (whole exchange) and each backend try;
	// 0 means none. In milliseconds.
	RequestTimeoutMs        int64 `json:"requestTimeoutMs,omitempty"`
	BackendRequestTimeoutMs int64 `json:"backendRequestTimeoutMs,omitempty"`
	// Retry re-sends a failed request to another endpoint.
	Retry *Retry `json:"retry,omitempty"`
	// Unsupported, when set, says why the rule cannot be honoured; requests
	// matching it get a 500 rather than skipping a filter.
	Unsupported string `json:"unsupported,omitempty"`
	// Traffic is what kgateway TrafficPolicies do to the entry's requests
	// (traffic.go), merged from every attachment that reaches it.
	Traffic *TrafficPolicy `json:"traffic,omitempty"`
}

// PathModifier rewrites a request path.
type PathModifier struct {
	// Type is ReplaceFullPath or ReplacePrefixMatch.
	Type string `json:"type"`
	// Value is the full path, or what replaces the matched prefix.
	Value string `json:"value"`
}

const (
	ReplaceFullPath    = "ReplaceFullPath"
	ReplacePrefixMatch = "ReplacePrefixMatch"
)

// Redirect is the Gateway API RequestRedirect filter, resolved: empty
// fields keep the request's value.
type Redirect struct {
	Scheme     string        `json:"scheme,omitempty"`
	Hostname   string        `json:"hostname,omitempty"`
	Path       *PathModifier `json:"path,omitempty"`
	Port       uint16        `json:"port,omitempty"`
	StatusCode int           `json:"statusCode"`
}

// Rewrite is the Gateway API URLRewrite filter.
type Rewrite struct {
	Hostname string        `json:"hostname,omitempty"`
	Path     *PathModifier `json:"path,omitempty"`
}

// Mirror sends a copy of requests to a backend.
type Mirror struct {
	// Backend is a key into Waypoint.Backends ("" when unresolved: skipped).
	Backend string `json:"backend"`
	// Percent of requests mirrored, 0 to 100 (fractions allowed).
	Percent float64 `json:"percent"`
}

// CORS is the Gateway API CORS filter.
type CORS struct {
	AllowOrigins     []string `json:"allowOrigins,omitempty"`
	AllowMethods     []string `json:"allowMethods,omitempty"`
	AllowHeaders     []string `json:"allowHeaders,omitempty"`
	ExposeHeaders    []string `json:"exposeHeaders,omitempty"`
	MaxAge           int32    `json:"maxAge,omitempty"`
	AllowCredentials bool     `json:"allowCredentials,omitempty"`
}

// Retry is the Gateway API retry policy.
type Retry struct {
	// Attempts is the number of retries after the first try.
	Attempts int `json:"attempts"`
	// Codes are the response statuses that trigger a retry (connection
	// failures always do).
	Codes []int `json:"codes,omitempty"`
	// BackoffMs is the wait before each retry.
	BackoffMs int64 `json:"backoffMs,omitempty"`
	// PerTryTimeoutMs bounds each try when the rule sets no backend request
	// timeout (the mesh's defaultHttpRetryPolicy.perTryTimeout); 0: none.
	PerTryTimeoutMs int64 `json:"perTryTimeoutMs,omitempty"`
}

// HTTPMatch is one Gateway API HTTPRouteMatch. A zero HTTPMatch matches every
// request (the spec's default is PathPrefix "/").
type HTTPMatch struct {
	Path        *PathMatch        `json:"path,omitempty"`
	Headers     []HeaderMatch     `json:"headers,omitempty"`
	QueryParams []QueryParamMatch `json:"queryParams,omitempty"`
	Method      string            `json:"method,omitempty"`
}

// MatchType says how a string is compared.
type MatchType string

const (
	MatchExact             MatchType = "Exact"
	MatchPathPrefix        MatchType = "PathPrefix"
	MatchRegularExpression MatchType = "RegularExpression"
)

// PathMatch matches the request path (without the query string).
type PathMatch struct {
	Type  MatchType `json:"type"`
	Value string    `json:"value"`
}

// HeaderMatch matches one request header by name (case-insensitive).
type HeaderMatch struct {
	Type  MatchType `json:"type"`
	Name  string    `json:"name"`
	Value string    `json:"value"`
}

// QueryParamMatch matches one query parameter by name (case-sensitive).
type QueryParamMatch struct {
	Type  MatchType `json:"type"`
	Name  string    `json:"name"`
	Value string    `json:"value"`
}

// HeaderModifier is the Gateway API header filter: Set replaces a header's
// values, Add appends a value, Remove deletes the header. The proxy applies
// Remove, then Set, then Add.
type HeaderModifier struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is one header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// WeightedBackend is one backendRef of a rule.
type WeightedBackend struct {
	// Backend is a key into Waypoint.Backends. Empty when the reference could
	// not be resolved: requests sent to it get a 500, as the spec requires.
	Backend string `json:"backend,omitempty"`
	Weight  uint32 `json:"weight"`
	// RequestHeaders and ResponseHeaders are the backendRef's own filters,
	// applied after the rule's.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
}

// Backend is an upstream service port and its ready endpoints.
type Backend struct {
	// Service names the Kubernetes Service.
	Service NamespacedName `json:"service"`
	// Port is the service port the backend was referenced by.
	Port uint16 `json:"port"`
	// Protocol is how the waypoint talks to the endpoints: "HTTP1", "H2C"
	// (HTTP/2 in clear text, for ports whose appProtocol asks for it, such
	// as grpc) or "TCP" (bytes copied as they are).
	Protocol string `json:"protocol"`
	// Endpoints are the ready endpoints (pod IP:targetPort, or host:port
	// for a ServiceEntry of DNS resolution: the proxy resolves the name),
	// sorted. The waypoint sends to endpoints, never to the VIP.
	Endpoints []string `json:"endpoints,omitempty"`
	// Weights are the endpoints whose share of the traffic is not 1 (a
	// ServiceEntry endpoint's or WorkloadEntry's weight): an endpoint of
	// weight 3 gets three times the requests of one absent here.
	Weights map[string]uint32 `json:"weights,omitempty"`
	// HBONE are the endpoints enrolled in the ambient mesh (their pod, or
	// its namespace, has istio.io/dataplane-mode: ambient), with their
	// pod's identity, sorted by endpoint. Set in native mode only
	// (Waypoint.HBONE): the waypoint tunnels to them over HBONE, and sends
	// plain TCP to the other endpoints.
	HBONE []MeshEndpoint `json:"hbone,omitempty"`
	// TrafficDistribution is how close an endpoint the waypoint prefers
	// (locality.go): "" any endpoint, else one of the TrafficDistribution
	// constants; Localities then say where the endpoints run.
	TrafficDistribution string `json:"trafficDistribution,omitempty"`
	// Localities are where the endpoints run, sorted by endpoint; an
	// endpoint not listed has no known locality. Set only with
	// TrafficDistribution.
	Localities []EndpointLocality `json:"localities,omitempty"`
	// LoadBalancer is how an endpoint is chosen among the closest: ""
	// (round robin), LoadBalancerLeastRequest or LoadBalancerRandom;
	// ignored when ConsistentHash is set.
	LoadBalancer string `json:"loadBalancer,omitempty"`
	// ConsistentHash, when set, chooses the endpoint by a hash of each
	// request's key (a DestinationRule's consistentHash): the same key goes
	// to the same endpoint while the endpoints stay the same.
	ConsistentHash *ConsistentHash `json:"consistentHash,omitempty"`
	// Outlier is a DestinationRule's outlierDetection; nil: the proxy's
	// default passive ejection (5 gateway errors in a row, 30s).
	Outlier *OutlierDetection `json:"outlier,omitempty"`
	// ConnectionPool is a DestinationRule's connectionPool, as far as the
	// waypoint honours it; nil: the proxy's defaults.
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// Subsets are the DestinationRule's named subsets of the endpoints
	// (their pods' labels matched), each with its own load balancing;
	// sorted by name. Nothing routes to a subset yet (Gateway API has no
	// subsets; VirtualService will).
	Subsets []*BackendSubset `json:"subsets,omitempty"`
}

// LoadBalancerRandom picks an endpoint at random (Envoy's RANDOM).
const LoadBalancerRandom = "RANDOM"

// ConsistentHash is Envoy's ring hash or Maglev load balancing with the
// hash key of the request: exactly one of Header, Cookie, SourceIP and
// QueryParameter is set.
type ConsistentHash struct {
	// Header is a request header's name, lower case: its value is the key
	// (a request without it gets a random endpoint).
	Header string `json:"header,omitempty"`
	// Cookie is a request cookie whose value is the key.
	Cookie *HashCookie `json:"cookie,omitempty"`
	// SourceIP hashes the client's IP address.
	SourceIP bool `json:"sourceIP,omitempty"`
	// QueryParameter is a query parameter's name (case-sensitive) whose
	// first value is the key.
	QueryParameter string `json:"queryParameter,omitempty"`
	// Maglev selects a Maglev table of TableSize entries (a prime),
	// else a ring of at least MinimumRingSize entries.
	Maglev          bool   `json:"maglev,omitempty"`
	TableSize       uint64 `json:"tableSize,omitempty"`
	MinimumRingSize uint64 `json:"minimumRingSize,omitempty"`
}

// HashCookie is the cookie of a ConsistentHash. When Generate is set and
// a request has no such cookie, the waypoint makes up a value, hashes
// that, and sets the cookie on the response (Envoy's behaviour when the
// rule has a ttl): Set-Cookie: Name="value"; Max-Age=TTLSeconds (left
// out when 0: a session cookie); Path=Path; Attributes; HttpOnly.
type HashCookie struct {
	Name       string   `json:"name"`
	Path       string   `json:"path,omitempty"`
	Generate   bool     `json:"generate,omitempty"`
	TTLSeconds int64    `json:"ttlSeconds,omitempty"`
	Attributes []Header `json:"attributes,omitempty"`
}

// OutlierDetection is Envoy's passive outlier detection as a
// DestinationRule sets it: an endpoint with ConsecutiveGatewayErrors
// gateway errors (502, 503, 504, no response) in a row, or Consecutive5xx
// 5xx responses or failures in a row, is ejected for BaseEjectionMs times
// the number of its ejections (at most 300s, or BaseEjectionMs when
// longer), rounded up to IntervalMs, unless MaxEjectionPercent of the
// backend's endpoints are ejected already. A count of 0 disables it.
type OutlierDetection struct {
	Consecutive5xx           uint32 `json:"consecutive5xx,omitempty"`
	ConsecutiveGatewayErrors uint32 `json:"consecutiveGatewayErrors,omitempty"`
	IntervalMs               int64  `json:"intervalMs"`
	BaseEjectionMs           int64  `json:"baseEjectionMs"`
	MaxEjectionPercent       uint32 `json:"maxEjectionPercent"`
}

// ConnectionPool is how the waypoint keeps connections to a backend's
// endpoints: ConnectTimeoutMs bounds a connect (HTTP/1.1 and TCP),
// IdleTimeoutMs closes an HTTP/1.1 keep-alive connection idle that long,
// MaxRequestsPerConnection closes one after that many requests; 0: the
// proxy's default (10s, 90s, no limit).
type ConnectionPool struct {
	ConnectTimeoutMs         int64  `json:"connectTimeoutMs,omitempty"`
	IdleTimeoutMs            int64  `json:"idleTimeoutMs,omitempty"`
	MaxRequestsPerConnection uint32 `json:"maxRequestsPerConnection,omitempty"`
}

// BackendSubset is one DestinationRule subset of a backend.
type BackendSubset struct {
	Name string `json:"name"`
	// Endpoints are the backend's endpoints whose pod carries every label
	// of the subset, sorted.
	Endpoints      []string        `json:"endpoints,omitempty"`
	LoadBalancer   string          `json:"loadBalancer,omitempty"`
	ConsistentHash *ConsistentHash `json:"consistentHash,omitempty"`
}

// Traffic distributions, as Istio names them: PreferSameZone (also
// Kubernetes' PreferClose) ranks endpoints in the waypoint's zone first,
// then its region, then any; PreferSameNode ranks its node first, then its
// subzone, zone and region, then any.
const (
	TrafficDistributionPreferSameZone = "PreferSameZone"
	TrafficDistributionPreferSameNode = "PreferSameNode"
)

// LoadBalancerLeastRequest picks the endpoint with fewer requests in
// flight of two chosen at random (Envoy's LEAST_REQUEST).
const LoadBalancerLeastRequest = "LEAST_REQUEST"

// Locality is where a node is: its topology.kubernetes.io/region and
// topology.kubernetes.io/zone labels and Istio's topology.istio.io/subzone.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Subzone string `json:"subzone,omitempty"`
}

// EndpointLocality is where one endpoint runs.
type EndpointLocality struct {
	Endpoint string `json:"endpoint"`
	Locality
	// Node is the name of the endpoint's node (for PreferSameNode).
	Node string `json:"node,omitempty"`
}

// MeshEndpoint is an endpoint reached over HBONE.
type MeshEndpoint struct {
	// Endpoint is the pod's IP:targetPort (the CONNECT :authority); the
	// tunnel goes to the pod's IP on port 15008.
	Endpoint string `json:"endpoint"`
	// Identity is the SPIFFE identity the pod's certificate must carry:
	// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
	Identity string `json:"identity"`
}

// BackendKey is the key of a backend in Waypoint.Backends.
func BackendKey(namespace, name string, port uint16) string {
	return namespace + "/" + name + ":" + strconv.Itoa(int(port))
}
