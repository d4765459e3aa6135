package telemetry

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver collects the spans that reach a minimal OTLP collector.
type receiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service []string
	paths   []string
}

func (r *receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.service = append(r.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
}

func (r *receiver) got() ([]*tracepb.Span, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), append([]string(nil), r.service...)
}

// ServeHTTP is OTLP/HTTP with protobuf bodies.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	r.add(&msg)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// grpcReceiver is OTLP/gRPC.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	r *receiver
}

func (g grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func attr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue()
		}
	}
	return nil
}

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
)

// runTraced sends one sampled request with a W3C parent, one unsampled
// one, and one with a B3 parent through StartSpan, then shuts the exporter
// down so that every span is flushed.
func runTraced(t *testing.T, endpoint string) (traced, unsampled, b3 http.Header, ids [3][2]string) {
	t.Helper()
	tel, err := New(Options{Tracing: &TracingOptions{
		Endpoint: endpoint, SamplingRatio: 0, ServiceName: "waypoint.httpbin", BatchTimeout: 20 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	traced = http.Header{}
	traced.Set("Traceparent", "00-"+parentTrace+"-"+parentSpan+"-01")
	traced.Set("Tracestate", "vendor=abc")
	traced.Set("X-Request-Id", "req-1")
	_, span := tel.StartSpan(ctx, traced, "httpbin.httpbin.svc.cluster.local:8000/*")
	r := baseRecord()
	r.RequestID = "req-1"
	span.SetRequest(&r)
	span.End(503)
	ids[0] = [2]string{span.TraceID(), span.SpanID()}

	unsampled = http.Header{}
	unsampled.Set("Traceparent", "00-"+strings.Repeat("a", 32)+"-"+strings.Repeat("b", 16)+"-00")
	_, span = tel.StartSpan(ctx, unsampled, "unsampled")
	span.End(200)
	ids[1] = [2]string{span.TraceID(), span.SpanID()}

	b3 = http.Header{}
	b3.Set("X-B3-TraceId", strings.Repeat("c", 32))
	b3.Set("X-B3-SpanId", strings.Repeat("d", 16))
	b3.Set("X-B3-Sampled", "1")
	_, span = tel.StartSpan(ctx, b3, "b3")
	span.End(200)
	ids[2] = [2]string{span.TraceID(), span.SpanID()}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return traced, unsampled, b3, ids
}

func checkTraces(t *testing.T, rec *receiver, traced, unsampled, b3 http.Header, ids [3][2]string) {
	t.Helper()
	spans, services := rec.got()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2 (the unsampled parent's request is not)", len(spans))
	}
	for _, s := range services {
		if s != "waypoint.httpbin" {
			t.Errorf("service.name %q", s)
		}
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.GetName()] = s
	}

	// W3C: the span is the child of the incoming traceparent.
	s := byName["httpbin.httpbin.svc.cluster.local:8000/*"]
	if s == nil {
		t.Fatalf("no span for the traced request: %v", spans)
	}
	if got := hex.EncodeToString(s.GetTraceId()); got != parentTrace || ids[0][0] != parentTrace {
		t.Errorf("trace id %s (span says %s), want the caller's %s", got, ids[0][0], parentTrace)
	}
	if got := hex.EncodeToString(s.GetParentSpanId()); got != parentSpan {
		t.Errorf("parent span id %s, want %s", got, parentSpan)
	}
	if hex.EncodeToString(s.GetSpanId()) != ids[0][1] {
		t.Errorf("exported span id %x, StartSpan said %s", s.GetSpanId(), ids[0][1])
	}
	if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kind %v, want server", s.GetKind())
	}
	if v := attr(s, "http.status_code"); v.GetIntValue() != 503 {
		t.Errorf("http.status_code %v", v)
	}
	if v := attr(s, "guid:x-request-id"); v.GetStringValue() != "req-1" {
		t.Errorf("guid:x-request-id %v", v)
	}
	if v := attr(s, "upstream_cluster"); v.GetStringValue() != "inbound-vip|8000|http|httpbin.httpbin.svc.cluster.local" {
		t.Errorf("upstream_cluster %v", v)
	}
	if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("503 status %v, want error", s.GetStatus())
	}
	// ... and the upstream request carries the new span as its parent.
	if want := "00-" + parentTrace + "-" + ids[0][1] + "-01"; traced.Get("Traceparent") != want {
		t.Errorf("upstream traceparent %q, want %q", traced.Get("Traceparent"), want)
	}
	if traced.Get("Tracestate") != "vendor=abc" {
		t.Errorf("tracestate %q, want it passed on", traced.Get("Tracestate"))
	}
	if traced.Get("B3") != "" || traced.Get("X-B3-Traceid") != "" {
		t.Errorf("B3 headers added to a W3C request: %v", traced)
	}

	// Unsampled: the decision is kept and the context still propagated.
	if got := unsampled.Get("Traceparent"); !strings.HasPrefix(got, "00-"+strings.Repeat("a", 32)+"-") || !strings.HasSuffix(got, "-00") || strings.Contains(got, strings.Repeat("b", 16)) {
		t.Errorf("unsampled traceparent %q", got)
	}

	// B3 multiple headers: parent from B3, B3 written back.
	s = byName["b3"]
	if s == nil {
		t.Fatal("no span for the B3 request")
	}
	if hex.EncodeToString(s.GetTraceId()) != strings.Repeat("c", 32) || hex.EncodeToString(s.GetParentSpanId()) != strings.Repeat("d", 16) {
		t.Errorf("B3 span trace %x parent %x", s.GetTraceId(), s.GetParentSpanId())
	}
	if b3.Get("X-B3-Traceid") != strings.Repeat("c", 32) || b3.Get("X-B3-Spanid") != ids[2][1] ||
		b3.Get("X-B3-Parentspanid") != strings.Repeat("d", 16) || b3.Get("X-B3-Sampled") != "1" {
		t.Errorf("upstream B3 headers %v, want span %s", b3, ids[2][1])
	}
	if want := "00-" + strings.Repeat("c", 32) + "-" + ids[2][1] + "-01"; b3.Get("Traceparent") != want {
		t.Errorf("B3 request's traceparent %q, want %q", b3.Get("Traceparent"), want)
	}
}

func TestTracingOTLPHTTP(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	traced, unsampled, b3, ids := runTraced(t, srv.URL)
	checkTraces(t, rec, traced, unsampled, b3, ids)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, p := range rec.paths {
		if p != "/v1/traces" {
			t.Errorf("exported to %s, want /v1/traces", p)
		}
	}
}

func TestTracingOTLPGRPC(t *testing.T) {
	rec := &receiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcReceiver{r: rec})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	traced, unsampled, b3, ids := runTraced(t, "grpc://"+ln.Addr().String())
	checkTraces(t, rec, traced, unsampled, b3, ids)
}

func TestTracingSampling(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	tel, err := New(Options{Tracing: &TracingOptions{Endpoint: srv.URL + "/custom/path", SamplingRatio: 1}})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{} // no parent: the ratio decides, 1 samples all
	_, span := tel.StartSpan(t.Context(), h, "root")
	span.End(200)
	if !strings.HasSuffix(h.Get("Traceparent"), "-01") || !strings.Contains(h.Get("Traceparent"), span.TraceID()) {
		t.Errorf("root traceparent %q for trace %s", h.Get("Traceparent"), span.TraceID())
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans, _ := rec.got()
	if len(spans) != 1 || len(spans[0].GetParentSpanId()) != 0 {
		t.Fatalf("spans %v, want one root span", spans)
	}
	if rec.paths[0] != "/custom/path" {
		t.Errorf("path %s", rec.paths[0])
	}
}

func TestTracingOptionsRefused(t *testing.T) {
	for _, o := range []TracingOptions{
		{},
		{Endpoint: "ftp://x:1"},
		{Endpoint: "http://"},
		{Endpoint: "127.0.0.1:4317", SamplingRatio: 1.5},
	} {
		if _, err := New(Options{Tracing: &o}); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// A request in a native HBONE tunnel without trace headers of its own is a
// child of the CONNECT's traceparent (ztunnel's); one with its own keeps it.
func TestTracingTunnelParent(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	tel, err := New(Options{Tracing: &TracingOptions{Endpoint: srv.URL, SamplingRatio: 0}})
	if err != nil {
		t.Fatal(err)
	}
	tunnel := "00-" + parentTrace + "-" + parentSpan + "-01"
	bare := http.Header{}
	_, inTunnel := tel.StartSpanInTunnel(t.Context(), bare, "in-tunnel", tunnel)
	inTunnel.End(200)
	if inTunnel.TraceID() != parentTrace {
		t.Errorf("trace %s, want the tunnel's %s", inTunnel.TraceID(), parentTrace)
	}
	if !strings.Contains(bare.Get("Traceparent"), parentTrace) {
		t.Errorf("upstream traceparent %q does not continue the tunnel's trace", bare.Get("Traceparent"))
	}
	own := http.Header{}
	ownTrace := strings.Repeat("e", 32)
	own.Set("Traceparent", "00-"+ownTrace+"-"+strings.Repeat("f", 16)+"-01")
	_, ownSpan := tel.StartSpanInTunnel(t.Context(), own, "own", tunnel)
	ownSpan.End(200)
	if ownSpan.TraceID() != ownTrace {
		t.Errorf("trace %s, want the request's own %s", ownSpan.TraceID(), ownTrace)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans, _ := rec.got()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2 (both parents sampled)", len(spans))
	}
	for _, s := range spans {
		if s.GetName() == "in-tunnel" && fmt.Sprintf("%x", s.GetParentSpanId()) != parentSpan {
			t.Errorf("in-tunnel span's parent %x, want the CONNECT's span %s", s.GetParentSpanId(), parentSpan)
		}
	}
}
