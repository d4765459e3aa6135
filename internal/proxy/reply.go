package proxy

import (
	"net/http"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
)

// Bodies of the waypoint's own replies, as Envoy words them.
const (
	bodyDenied        = "RBAC: access denied"
	bodyNoHealthy     = "no healthy upstream"
	bodyConnectFailed = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyTimeout       = "upstream request timeout"
	bodyProtocolError = "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
	bodyStreamTimeout = "stream timeout"
)

// reply is one of the waypoint's own answers (a local reply, in Envoy's
// words): what the client gets, and what metrics and the access log report
// about it.
type reply struct {
	// status is the HTTP status (a gRPC request gets 200 and the gRPC
	// status Envoy maps it to).
	status int
	// body is the text/plain body ("" for none; the gRPC message defaults
	// to the status text).
	body string
	// flags and details are Envoy's response flags and response code
	// details for the request.
	flags, details string
}

// The replies that do not depend on the request.
var (
	replyNoHealthy     = reply{http.StatusServiceUnavailable, bodyNoHealthy, telemetry.FlagNoHealthyUpstream, telemetry.DetailsNoHealthyUpstream}
	replyBadPath       = reply{http.StatusBadRequest, "Bad Request", telemetry.FlagNone, "path_normalization_failed"}
	replyNoRoute       = reply{http.StatusNotFound, "", telemetry.FlagNoRouteFound, telemetry.DetailsRouteNotFound}
	replyUnsupported   = reply{http.StatusInternalServerError, "", telemetry.FlagNone, telemetry.DetailsDirectResponse}
	replyNoCluster     = reply{http.StatusInternalServerError, "", telemetry.FlagNoClusterFound, telemetry.DetailsClusterNotFound}
	replyConnectFailed = reply{http.StatusServiceUnavailable, bodyConnectFailed, telemetry.FlagUpstreamConnectionFailure, telemetry.DetailsConnectionFailure}
	replyTimeout       = reply{http.StatusGatewayTimeout, bodyTimeout, telemetry.FlagUpstreamRequestTimeout, telemetry.DetailsUpstreamTimeout}
	replyProtocolError = reply{http.StatusBadGateway, bodyProtocolError, telemetry.FlagUpstreamProtocolError, telemetry.DetailsProtocolError}
	// replyStreamTimeout: nothing moved on the request for the stream
	// idle timeout.
	replyStreamTimeout = reply{http.StatusRequestTimeout, bodyStreamTimeout, telemetry.FlagStreamIdleTimeout, telemetry.DetailsStreamIdleTimeout}
	// replyNoProvider: a CUSTOM policy whose external authorizer is
	// unknown or unusable denies.
	replyNoProvider = reply{http.StatusForbidden, bodyDenied, telemetry.FlagUnauthorizedExternalService, telemetry.DetailsExtAuthzDenied}

	// kgateway TrafficPolicy replies, as Envoy's filters answer: the local
	// rate limit's 429, the CSRF filter's 403, the buffer filter's 413.
	replyRateLimited = reply{http.StatusTooManyRequests, "local_rate_limited", telemetry.FlagRateLimited, "local_rate_limited"}
	replyCSRF        = reply{http.StatusForbidden, "Invalid origin", telemetry.FlagNone, "csrf_origin_mismatch"}
	replyTooLarge    = reply{http.StatusRequestEntityTooLarge, "Payload Too Large", telemetry.FlagNone, "request_payload_too_large"}
	// The global rate limit's failure when it does not fail open: 500
	// without a body (Envoy's ratelimit filter).
	replyRateLimitError = reply{http.StatusInternalServerError, "", telemetry.FlagRateLimitServiceError, "rate_limiter_error"}
)

// replyGlobalRateLimited is the global rate limit's 429: the service's
// raw_body, empty by default (Envoy's ratelimit filter).
func replyGlobalRateLimited(body string) reply {
	return reply{http.StatusTooManyRequests, body, telemetry.FlagRateLimited, "request_rate_limited"}
}

// replyDenied is the 403 of a DENY or ALLOW policy's decision.
func replyDenied(policy string) reply {
	return reply{http.StatusForbidden, bodyDenied, telemetry.FlagNone, telemetry.RBACDeniedDetails(policy)}
}

// replyJWT is the 401 or 403 of a refused token.
func replyJWT(e *authn.Error) reply {
	return reply{e.Code(), e.Body(), telemetry.FlagNone, "jwt_authn_access_denied"}
}

// replyExtAuthz is an external authorizer's denial, with its status and
// body.
func replyExtAuthz(status int, body string) reply {
	if status == 0 {
		status = http.StatusForbidden
	}
	return reply{status, body, telemetry.FlagUnauthorizedExternalService, telemetry.DetailsExtAuthzDenied}
}

// replyClientBody answers a request whose body the client could not
// deliver (status 400, or 413 when it was too large).
func replyClientBody(status int) reply {
	return reply{status, http.StatusText(status), telemetry.FlagDownstreamProtocolError, telemetry.DetailsDownstreamProtocolError}
}

// replyRedirect is a RequestRedirect's answer (the Location header is set
// apart).
func replyRedirect(status int) reply {
	return reply{status, "", telemetry.FlagNone, telemetry.DetailsDirectResponse}
}
