package proxy

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
)

// recorder remembers the status and counts the body bytes of a response,
// for metrics and the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming working through the recorder.
func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingBody counts the request body bytes read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// record reports one finished exchange: Istio's request metrics, the
// access log line and the span. It runs deferred, also when the exchange
// was aborted (the client went away).
func (p *Proxy) record(x *exchange) {
	r, info := x.r, x.info
	status := x.rec.status
	flags, details := x.flags, x.details
	if status == 0 {
		// Nothing was answered: the client left (or the upstream broke)
		// before a response started.
		flags, details = telemetry.FlagDownstreamConnectionTermination, telemetry.DetailsDownstreamRemoteReset
	}
	if flags == "" {
		flags = telemetry.FlagNone
	}
	if details == "" && status != 0 {
		details = telemetry.DetailsViaUpstream
	}
	rec := &telemetry.RequestRecord{
		Start: x.start, Duration: time.Since(x.start),
		Protocol: "http", HTTPProtocol: r.Proto,
		Method: r.Method, Path: x.origPath, Authority: x.host, Scheme: "http",
		RequestID: r.Header.Get("X-Request-Id"), UserAgent: r.Header.Get("User-Agent"),
		XForwardedFor: r.Header.Get("X-Forwarded-For"), Traceparent: r.Header.Get("Traceparent"),
		ResponseCode: status, ResponseFlags: flags, ResponseCodeDetails: details,
		UpstreamHost: x.upstreamHost, UpstreamServiceTimeMs: x.upstreamTimeMs,
		ResponseBytes: x.rec.bytes, ConnectionSecurityPolicy: "mutual_tls",
		RouteName:      "default",
		RequestHeaders: r.Header, ResponseHeaders: x.rec.Header(),
	}
	if isGRPC(r) {
		rec.Protocol = "grpc"
		rec.GRPCStatus = x.rec.Header().Get("Grpc-Status")
		if rec.GRPCStatus == "" {
			rec.GRPCStatus = x.rec.Header().Get(http.TrailerPrefix + "Grpc-Status")
		}
	}
	if x.reqBody != nil {
		rec.RequestBytes = x.reqBody.n
	}
	if info != nil {
		rec.Source = telemetry.PeerFromPrincipal(info.Identity)
		// The source ztunnel's CONNECT baggage (native HBONE) first, then
		// the request's: ParseBaggage fills only what is still empty.
		telemetry.ParseBaggage(info.Baggage, &rec.Source)
		telemetry.ParseBaggage(r.Header.Get("Baggage"), &rec.Source)
		rec.DownstreamRemote, rec.DownstreamLocal = info.Source.String(), info.Destination.String()
	}
	if sp := x.sp; sp != nil {
		rec.DestinationService, rec.DestinationServiceName, rec.DestinationServiceNamespace = sp.Service.Hostname, sp.Service.Name, sp.Service.Namespace
		rec.Destination = telemetry.Peer{Namespace: sp.Service.Namespace, CanonicalService: sp.Service.Name}
		rec.UpstreamCluster = telemetry.UpstreamCluster(int(sp.Port.Port), "http", "", sp.Service.Hostname)
	}
	if x.rule != nil {
		rec.RouteName = x.rule.IR.Route.Name
		if x.rule.IR.RuleName != "" {
			rec.RouteName += "." + x.rule.IR.RuleName
		} else {
			rec.RouteName += "." + strconv.Itoa(x.rule.IR.RuleIndex)
		}
	}
	if x.span != nil {
		x.span.SetRequest(rec)
		x.span.End(status)
	}
	p.tel.RecordRequest(rec)
	p.tel.RequestFinished()
}
