// Package telemetry makes the waypoint's requests and connections visible the
// way Istio's waypoint (Envoy with the istio_stats filter) does, so that
// operators keep their dashboards, Kiali graphs and log pipelines:
//
//   - Prometheus: Istio's standard metrics (istio_requests_total,
//     istio_request_duration_milliseconds, istio_request_bytes,
//     istio_response_bytes, istio_tcp_*) with reporter="waypoint", Istio's
//     label set and its "unknown"/"latest" defaults, Envoy's default histogram
//     buckets; plus the proxy's own health under kgateway_waypoint_.
//   - Access log: one line per request or TCP connection in Istio's default
//     Envoy text format, or JSON with Istio's default JSON field names.
//   - Tracing: W3C traceparent/tracestate and B3 extraction, one server span
//     per request exported over OTLP (gRPC or HTTP), the new context injected
//     into the request that goes upstream.
//
// Every method is safe on a nil *Telemetry (it does nothing), so the data path
// can call it unconditionally when telemetry is off.
//
// Label values are bounded: no path, method, host, IP address or request id
// is ever a label; the source comes from the client's SPIFFE identity, and
// what its baggage says only as far as the identity backs it (labels.go
// lists where every label comes from); codes and flags are folded to their
// fixed sets; and Options.MaxSeries is a hard cap on each family.
//
// Wiring, per HTTP request: after x-request-id is set, StartSpan(ctx,
// r.Header, "<service host>:<port>/*") and send the request upstream with the
// headers it rewrote; when the response is done, fill a RequestRecord (source
// from the PROXY v2 identity via PeerFromPrincipal plus ParseBaggage, flags
// and details from the Flag and Details constants), span.SetRequest(rec),
// span.End(code) and RecordRequest(rec). Per TCP connection: TCPOpened once
// the endpoint is dialled (or failed, with its flag), TCPReport now and then
// on long connections, TCPClosed at the end. Serve Registry() with
// admin.MetricsHandler on 15020 and admin.AdminHandler on 127.0.0.1:15000.
package telemetry
