package telemetry

import (
	"net/http"
	"time"
)

// Envoy's response flags (%RESPONSE_FLAGS%, the response_flags label), as
// short strings. Several flags are joined with "," (e.g. "UF,URX"); none is
// "-". An RBAC denial sets no flag: it is a 403 with flags "-" and details
// "rbac_access_denied_matched_policy[...]".
const (
	FlagNone                            = "-"
	FlagNoHealthyUpstream               = "UH"  // no endpoint to pick (503)
	FlagUpstreamConnectionFailure       = "UF"  // dial to the endpoint failed (503)
	FlagUpstreamRetryLimitExceeded      = "URX" // retries exhausted
	FlagNoRouteFound                    = "NR"  // no route matched (404), or TCP with no filter chain
	FlagNoClusterFound                  = "NC"  // the route's backend does not exist (500)
	FlagUpstreamRequestTimeout          = "UT"  // route timeout (504)
	FlagUpstreamConnectionTermination   = "UC"  // upstream closed the connection mid-response
	FlagUpstreamRemoteReset             = "UR"  // upstream reset the stream
	FlagDownstreamConnectionTermination = "DC"  // client went away
	FlagLocalReset                      = "LR"
	FlagUpstreamOverflow                = "UO" // circuit breaker / pool full
	FlagStreamIdleTimeout               = "SI"
	FlagDurationTimeout                 = "DT" // max connection/stream duration reached
	FlagDownstreamProtocolError         = "DPE"
	FlagUpstreamProtocolError           = "UPE"
	FlagFaultInjected                   = "FI"
	FlagDelayInjected                   = "DI"
	FlagRateLimited                     = "RL"
	FlagUnauthorizedExternalService     = "UAEX" // ext_authz (CUSTOM policy) denied
	FlagRateLimitServiceError           = "RLSE"
	FlagInvalidEnvoyRequestHeaders      = "IH"
)

// Envoy's %RESPONSE_CODE_DETAILS% for the cases a waypoint produces.
const (
	DetailsViaUpstream           = "via_upstream"
	DetailsRouteNotFound         = "route_not_found"
	DetailsNoHealthyUpstream     = "no_healthy_upstream"
	DetailsClusterNotFound       = "cluster_not_found"
	DetailsUpstreamTimeout       = "upstream_response_timeout"
	DetailsConnectionFailure     = "upstream_reset_before_response_started{connection_failure}"
	DetailsDirectResponse        = "direct_response"
	DetailsRBACDeniedNoMatch     = "rbac_access_denied_matched_policy[none]"
	DetailsExtAuthzDenied        = "ext_authz_denied"
	DetailsDownstreamRemoteReset = "downstream_remote_disconnect"
	// DetailsStreamIdleTimeout: nothing moved on the stream for the stream
	// idle timeout (408 before a response, else a reset).
	DetailsStreamIdleTimeout = "stream_idle_timeout"
	// DetailsProtocolError: the upstream's response could not be relayed.
	DetailsProtocolError = "upstream_reset_before_response_started{protocol_error}"
	// DetailsDownstreamProtocolError: the client's request body was
	// malformed or over its bounds.
	DetailsDownstreamProtocolError = "http1.codec_error"
)

// RBACDeniedDetails is Envoy's details for a request a policy denied:
// "rbac_access_denied_matched_policy[<policy>]", where <policy> is the
// matched DENY policy's name (ns[<ns>]-policy[<name>]-rule[<i>]) or "none"
// when no ALLOW policy matched.
func RBACDeniedDetails(policy string) string {
	if policy == "" {
		policy = "none"
	}
	return "rbac_access_denied_matched_policy[" + policy + "]"
}

// Connection security policies (the connection_security_policy label).
const (
	SecurityMutualTLS = "mutual_tls"
	SecurityNone      = "none"
	SecurityUnknown   = "unknown"
)

// Request protocols (the request_protocol label).
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// UpstreamCluster is the name Istio's waypoint gives the cluster of a
// service port, which its access log prints as %UPSTREAM_CLUSTER_RAW%:
// "inbound-vip|<port>|<protocol>|<hostname>" where protocol is "http" or
// "tcp", and "<protocol>/<subset>" when a route names a subset.
func UpstreamCluster(port int, protocol, subset, hostname string) string {
	if subset != "" {
		protocol += "/" + subset
	}
	return "inbound-vip|" + itoa(port) + "|" + protocol + "|" + hostname
}

// RequestRecord is one HTTP or gRPC request, filled in by the data path when
// the response is done. Strings left empty are logged as "-" and labelled
// with Istio's defaults.
type RequestRecord struct {
	// Start is when the first byte of the request arrived; Duration runs
	// until the last byte of the response was sent (%DURATION%).
	Start    time.Time
	Duration time.Duration

	// Source is the client (principal from the PROXY v2 identity TLV,
	// namespace from it, the rest from its Pod or from baggage); Destination
	// is the endpoint's Pod, when known.
	Source, Destination Peer

	// DestinationService is the service hostname
	// (httpbin.httpbin.svc.cluster.local), DestinationServiceName its short
	// name (httpbin), DestinationServiceNamespace its namespace.
	DestinationService, DestinationServiceName, DestinationServiceNamespace string

	// Protocol is the request_protocol label: "http" or "grpc" (empty: http).
	Protocol string
	// HTTPProtocol is %PROTOCOL% in the access log: "HTTP/1.1", "HTTP/2".
	HTTPProtocol string

	// Method, Path (with its query, before any rewrite, as
	// %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%), Authority (the Host header),
	// Scheme, and the request headers the access log prints.
	Method, Path, Authority, Scheme, RequestID, UserAgent, XForwardedFor string
	// Traceparent is the traceparent sent upstream. Istio's default formats
	// do not print it; it is kept for the span and for custom formats.
	Traceparent string

	// ResponseCode is the status sent to the client (0: none was sent).
	// GRPCStatus is the grpc-status sent ("" when not gRPC or none).
	ResponseCode int
	GRPCStatus   string
	// ResponseFlags is Envoy's flags ("-" or empty: none; see the Flag
	// constants). ResponseCodeDetails is Envoy's details (empty: via_upstream
	// when the response came from UpstreamHost with no flag, else "-").
	ResponseFlags, ResponseCodeDetails string
	// ConnectionTerminationDetails and UpstreamTransportFailureReason are
	// printed as given ("-" when empty).
	ConnectionTerminationDetails, UpstreamTransportFailureReason string

	// UpstreamHost is the endpoint ip:port; UpstreamCluster the cluster name
	// (see UpstreamCluster); UpstreamLocal the local address of the upstream
	// connection; RouteName the matched route's name (Istio prints "default"
	// for a service's default route).
	UpstreamHost, UpstreamCluster, UpstreamLocal, RouteName string
	// RequestedServerName is the TLS SNI from the client ("-" in plain text).
	RequestedServerName string
	// UpstreamServiceTimeMs is x-envoy-upstream-service-time: printed only
	// when the response came from the upstream (details via_upstream).
	UpstreamServiceTimeMs int64

	// RequestBytes and ResponseBytes are body bytes (%BYTES_RECEIVED%,
	// %BYTES_SENT%). Istio's istio_request_bytes / istio_response_bytes
	// count wire bytes, headers included: set RequestWireBytes and
	// ResponseWireBytes for that, else the body bytes are observed.
	RequestBytes, ResponseBytes         int64
	RequestWireBytes, ResponseWireBytes int64

	// ConnectionSecurityPolicy is "mutual_tls" in the mesh (empty: unknown).
	ConnectionSecurityPolicy string

	// DownstreamRemote (client ip:port) and DownstreamLocal (the address
	// the client dialled, VIP:port) are printed in the access log only.
	DownstreamRemote, DownstreamLocal string

	// RequestHeaders and ResponseHeaders are read only by the Telemetry
	// API's expressions (request.headers, response.headers); nil: none.
	RequestHeaders, ResponseHeaders http.Header
}

// TCPRecord is one TCP connection. TCPOpened, TCPReport and TCPClosed take
// the same record; SentBytes and ReceivedBytes are running totals (to and
// from the client), and each call adds what was not reported yet.
type TCPRecord struct {
	Start    time.Time
	Duration time.Duration

	Source, Destination Peer

	DestinationService, DestinationServiceName, DestinationServiceNamespace string

	UpstreamHost, UpstreamCluster, UpstreamLocal, RouteName string
	RequestedServerName                                     string

	// SentBytes went to the client (istio_tcp_sent_bytes_total,
	// %BYTES_SENT%); ReceivedBytes came from it
	// (istio_tcp_received_bytes_total, %BYTES_RECEIVED%).
	SentBytes, ReceivedBytes int64

	ResponseFlags                  string
	ConnectionTerminationDetails   string
	UpstreamTransportFailureReason string
	ConnectionSecurityPolicy       string

	DownstreamRemote, DownstreamLocal string

	reportedSent, reportedReceived int64
}
