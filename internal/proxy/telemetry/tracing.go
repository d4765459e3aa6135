package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracingOptions configures the OTLP span exporter.
type TracingOptions struct {
	// Endpoint is the collector: "grpc://host:4317" or "host:4317" (OTLP/gRPC,
	// plain text, Istio's OpenTelemetry provider default), "http://host:4318"
	// or "https://host:4318" (OTLP/HTTP protobuf; path /v1/traces unless the
	// URL has one).
	Endpoint string
	// SamplingRatio in [0, 1] samples the requests that arrive without a
	// sampling decision; a decision in traceparent or B3 is kept, as Envoy
	// does. Istio's default is 0.01.
	SamplingRatio float64
	// ServiceName is the spans' service.name (empty: "waypoint"); Istio uses
	// "<gateway>.<namespace>".
	ServiceName string
	// Headers are sent with every export (authentication, tenancy).
	Headers map[string]string
	// Timeout bounds one export (0: 10s). BatchTimeout is the longest a
	// span waits before export (0: 5s).
	Timeout, BatchTimeout time.Duration
}

// Span is the server span of one request.
type Span interface {
	// SetRequest tags the span with the request's Envoy tracing tags
	// (http.method, http.url, guid:x-request-id, upstream_cluster, ...).
	SetRequest(r *RequestRecord)
	// End records the response status (5xx: an error) and ends the span.
	End(status int)
	// TraceID is the trace's id in hex ("" when tracing is off).
	TraceID() string
	// SpanID is the span's id in hex, the parent of the upstream request
	// ("" when tracing is off).
	SpanID() string
}

type tracer struct {
	tp     *sdktrace.TracerProvider
	tr     trace.Tracer
	w3c    propagation.TraceContext
	b3in   propagation.TextMapPropagator
	b3one  propagation.TextMapPropagator
	b3many propagation.TextMapPropagator
}

func newTracer(o TracingOptions, log *slog.Logger) (*tracer, error) {
	if o.Endpoint == "" {
		return nil, fmt.Errorf("tracing: an OTLP endpoint is required")
	}
	if o.SamplingRatio < 0 || o.SamplingRatio > 1 {
		return nil, fmt.Errorf("tracing: sampling ratio %v is not in [0, 1]", o.SamplingRatio)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	exp, err := newExporter(o.Endpoint, o.Headers, timeout)
	if err != nil {
		return nil, err
	}
	name := o.ServiceName
	if name == "" {
		name = "waypoint"
	}
	var batch []sdktrace.BatchSpanProcessorOption
	if o.BatchTimeout > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(o.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, batch...),
		sdktrace.WithSampler(sdktrace.ParentBased(ctxRatio{def: o.SamplingRatio})),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
	)
	// The SDK reports export failures through the global handler.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing export", "err", err)
	}))
	return &tracer{
		tp:     tp,
		tr:     tp.Tracer("github.com/kgateway-dev/kgateway-waypoint"),
		b3in:   b3.New(),
		b3one:  b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)),
		b3many: b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)),
	}, nil
}

func newExporter(endpoint string, headers map[string]string, timeout time.Duration) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	scheme, host := "grpc", endpoint
	path := ""
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, fmt.Errorf("tracing endpoint %q: %w", endpoint, err)
		}
		scheme, host, path = u.Scheme, u.Host, u.Path
	}
	if host == "" {
		return nil, fmt.Errorf("tracing endpoint %q: no host", endpoint)
	}
	switch scheme {
	case "grpc":
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(host), otlptracegrpc.WithInsecure(), otlptracegrpc.WithTimeout(timeout)}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http", "https":
		if path == "" || path == "/" {
			path = "/v1/traces"
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(host), otlptracehttp.WithURLPath(path), otlptracehttp.WithTimeout(timeout)}
		if scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		return otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing endpoint %q: scheme %q is not grpc, http or https", endpoint, scheme)
	}
}

func (tr *tracer) shutdown(ctx context.Context) error { return tr.tp.Shutdown(ctx) }

// ctxRatio samples new traces at the ratio the request's Telemetry policy
// put in the context (ratioKey), else at def.
type ctxRatio struct{ def float64 }

func (s ctxRatio) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	ratio := s.def
	if r, ok := p.ParentContext.Value(ratioKey{}).(float64); ok {
		ratio = r
	}
	switch {
	case ratio >= 1:
		return sdktrace.AlwaysSample().ShouldSample(p)
	case ratio <= 0:
		return sdktrace.NeverSample().ShouldSample(p)
	}
	return sdktrace.TraceIDRatioBased(ratio).ShouldSample(p)
}

func (s ctxRatio) Description() string { return "ParentBased{TelemetryRatio}" }

// noSpan is the span when tracing is off: it costs nothing.
type noSpan struct{}

func (noSpan) SetRequest(*RequestRecord) {}
func (noSpan) End(int)                   {}
func (noSpan) TraceID() string           { return "" }
func (noSpan) SpanID() string            { return "" }

var off Span = noSpan{}

// StartSpan extracts the caller's context from h (W3C traceparent and
// tracestate, else B3 single or multiple headers), starts a server span
// named name as its child, and writes the new context into h for the
// upstream request: traceparent (and tracestate) always, B3 in the encodings
// the request came with. With tracing off it changes nothing and returns a
// no-op span.
func (t *Telemetry) StartSpan(ctx context.Context, h http.Header, name string) (context.Context, Span) {
	return t.StartSpanInTunnel(ctx, h, name, "")
}

// StartSpanInTunnel is StartSpan for a request that arrived in a native
// HBONE tunnel whose CONNECT carried tunnelParent (ztunnel's traceparent):
// when the request itself carries no trace context, the tunnel's is the
// span's parent, so the waypoint's span joins the trace ztunnel started.
func (t *Telemetry) StartSpanInTunnel(ctx context.Context, h http.Header, name, tunnelParent string) (context.Context, Span) {
	return t.StartServiceSpan(ctx, h, name, tunnelParent, "", "")
}

// StartServiceSpan is StartSpanInTunnel for a request to the service
// namespace/name, traced as the Telemetry API configures it for that
// service (Apply): its provider, sampling and custom tags.
func (t *Telemetry) StartServiceSpan(ctx context.Context, h http.Header, name, tunnelParent, namespace, service string) (context.Context, Span) {
	if t == nil {
		return ctx, off
	}
	tr := t.tracer
	var tags []attribute.KeyValue
	if p := t.policyFor(namespace, service); p != nil && p.traceSet {
		if p.trace == nil {
			return ctx, off
		}
		tr = p.trace.tr
		ctx = context.WithValue(ctx, ratioKey{}, p.trace.ratio)
		tags = p.trace.spanTags(h)
	}
	if tr == nil {
		return ctx, off
	}
	carrier := propagation.HeaderCarrier(h)
	parent := tr.w3c.Extract(ctx, carrier)
	b3Single, b3Multi := h.Get("B3") != "", h.Get("X-B3-Traceid") != ""
	if !trace.SpanContextFromContext(parent).IsValid() && (b3Single || b3Multi) {
		parent = tr.b3in.Extract(ctx, carrier)
	}
	if tunnelParent != "" && !trace.SpanContextFromContext(parent).IsValid() {
		parent = tr.w3c.Extract(ctx, propagation.MapCarrier{"traceparent": tunnelParent})
	}
	attrs := append([]attribute.KeyValue{attribute.String("component", "proxy")}, tags...)
	if id := h.Get("X-Request-Id"); id != "" {
		attrs = append(attrs, attribute.String("guid:x-request-id", id))
	}
	ctx, span := tr.tr.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	tr.w3c.Inject(ctx, carrier)
	if b3Single {
		tr.b3one.Inject(ctx, carrier)
	}
	if b3Multi {
		tr.b3many.Inject(ctx, carrier)
		h.Del("X-B3-Parentspanid")
		if psc := trace.SpanContextFromContext(parent); psc.IsValid() {
			h.Set("X-B3-Parentspanid", psc.SpanID().String())
		}
	}
	return ctx, &otelSpan{span: span}
}

type otelSpan struct{ span trace.Span }

func (s *otelSpan) SetRequest(r *RequestRecord) {
	if r == nil || !s.span.IsRecording() {
		return
	}
	url := r.Scheme
	if url == "" {
		url = "http"
	}
	url += "://" + r.Authority + r.Path
	attrs := []attribute.KeyValue{
		attribute.String("http.method", r.Method),
		attribute.String("http.url", url),
		attribute.String("http.protocol", r.HTTPProtocol),
		attribute.String("user_agent", r.UserAgent),
		attribute.Int64("request_size", r.RequestBytes),
		attribute.Int64("response_size", r.ResponseBytes),
		attribute.String("response_flags", or(r.ResponseFlags, FlagNone)),
		attribute.String("upstream_cluster", r.UpstreamCluster),
		attribute.String("upstream_cluster.name", r.UpstreamCluster),
		attribute.String("upstream_address", r.UpstreamHost),
		attribute.String("peer.address", r.DownstreamRemote),
		attribute.String("istio.canonical_service", r.Destination.CanonicalService),
		attribute.String("istio.namespace", r.DestinationServiceNamespace),
	}
	if r.RequestID != "" {
		attrs = append(attrs, attribute.String("guid:x-request-id", r.RequestID))
	}
	if r.Source.Principal != "" {
		attrs = append(attrs, attribute.String("downstream_principal", r.Source.Principal))
	}
	if r.GRPCStatus != "" {
		attrs = append(attrs, attribute.String("grpc.status_code", r.GRPCStatus))
	}
	s.span.SetAttributes(attrs...)
}

func (s *otelSpan) End(status int) {
	s.span.SetAttributes(attribute.Int("http.status_code", status))
	if status >= 500 || status == 0 {
		s.span.SetAttributes(attribute.Bool("error", true))
		s.span.SetStatus(codes.Error, "")
	}
	s.span.End()
}

func (s *otelSpan) TraceID() string { return s.span.SpanContext().TraceID().String() }
func (s *otelSpan) SpanID() string  { return s.span.SpanContext().SpanID().String() }
