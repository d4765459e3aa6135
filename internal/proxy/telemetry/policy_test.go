package telemetry

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func rec(code int, path string) *RequestRecord {
	return &RequestRecord{Method: "GET", Path: path, ResponseCode: code, DestinationServiceNamespace: "ns",
		DestinationServiceName: "svc", DestinationService: "svc.ns.svc.cluster.local",
		RequestHeaders: http.Header{"X-Team": {"a"}}, ConnectionSecurityPolicy: SecurityMutualTLS}
}

func TestApplyAccessLogFilterAndDisable(t *testing.T) {
	legacy, stdout := &syncBuf{}, &syncBuf{}
	tel, err := New(Options{AccessLog: legacy, Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "wp.log")
	w := &ir.Waypoint{Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{Sinks: []*ir.AccessLogSink{
		{Provider: "envoy", Kind: ir.AccessLogFile, Path: "/dev/stdout", Format: ir.LogFormatText, Filter: "response.code >= 400"},
		{Provider: "file", Kind: ir.AccessLogFile, Path: file, Format: ir.LogFormatJSON, Filter: "request.headers['x-team'] == 'a' && connection.mtls"},
	}}}}
	if err := tel.Apply(w); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(200, "/ok"))
	tel.RecordRequest(rec(503, "/broken"))
	if got := stdout.String(); strings.Contains(got, "/ok") || !strings.Contains(got, "/broken") || strings.Count(got, "\n") != 1 {
		t.Errorf("stdout sink (response.code >= 400) wrote %q", got)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 2 || !strings.Contains(string(data), `"path":"/ok"`) {
		t.Errorf("file sink wrote %q", data)
	}
	if legacy.String() != "" {
		t.Errorf("the options' access log wrote %q while a Telemetry sets the log", legacy.String())
	}

	// Disabled (no sink): nothing is written anywhere.
	if err := tel.Apply(&ir.Waypoint{Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{}}}); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(500, "/after-disable"))
	if strings.Contains(stdout.String(), "/after-disable") || legacy.String() != "" {
		t.Errorf("a disabled access log wrote: %q %q", stdout.String(), legacy.String())
	}
	// A service's own Telemetry wins for its traffic only.
	if err := tel.Apply(&ir.Waypoint{
		Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{}},
		Services: []*ir.Service{{Name: "svc", Namespace: "ns", Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{Sinks: []*ir.AccessLogSink{
			{Provider: "envoy", Kind: ir.AccessLogFile, Path: "/dev/stdout"}}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(200, "/svc-own"))
	other := rec(200, "/other-svc")
	other.DestinationServiceName = "other"
	tel.RecordRequest(other)
	if got := stdout.String(); !strings.Contains(got, "/svc-own") || strings.Contains(got, "/other-svc") {
		t.Errorf("per-service access log: %q", got)
	}
	// No Telemetry at all: the options' log again.
	if err := tel.Apply(&ir.Waypoint{}); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(200, "/legacy"))
	if !strings.Contains(legacy.String(), "/legacy") {
		t.Errorf("options' log not restored: %q", legacy.String())
	}
}

func TestApplyMetricsDisabled(t *testing.T) {
	tel, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &ir.Waypoint{Telemetry: &ir.Telemetry{Metrics: &ir.MetricsConfig{Overrides: map[string]*ir.MetricOverride{
		ir.MetricRequestCount: {Disabled: true}, ir.MetricTCPOpenedConnections: {Disabled: true},
	}}}}
	if err := tel.Apply(w); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(200, "/"))
	tcp := &TCPRecord{DestinationServiceNamespace: "ns", DestinationServiceName: "svc", SentBytes: 5}
	tel.TCPOpened(tcp)
	tel.TCPClosed(tcp)
	count := func(name string) int { n, _ := testutil.GatherAndCount(tel.Registry(), name); return n }
	if n := count("istio_requests_total"); n != 0 {
		t.Errorf("istio_requests_total has %d series while disabled", n)
	}
	if n := count("istio_request_duration_milliseconds"); n != 1 {
		t.Errorf("istio_request_duration_milliseconds has %d series, want 1", n)
	}
	if n := count("istio_tcp_connections_opened_total"); n != 0 {
		t.Errorf("opened has %d series while disabled", n)
	}
	if n := count("istio_tcp_connections_closed_total"); n != 1 {
		t.Errorf("closed has %d series, want 1", n)
	}
}

// Sampling 0 and 100 from the Telemetry API, and custom tags, with a real
// OTLP/HTTP receiver.
func TestApplyTracingSamplingAndTags(t *testing.T) {
	t.Setenv("WP_TEST_CLUSTER", "east")
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	tel, err := New(Options{ServiceName: "wp.ns"})
	if err != nil {
		t.Fatal(err)
	}
	lit := "platform"
	tr := func(pct float64) *ir.Waypoint {
		return &ir.Waypoint{Telemetry: &ir.Telemetry{Tracing: &ir.TracingConfig{Provider: "otel", Endpoint: srv.URL, SamplingPercentage: pct,
			CustomTags: []ir.CustomTag{{Name: "team", Literal: &lit}, {Name: "cluster", Environment: "WP_TEST_CLUSTER"},
				{Name: "tenant", Header: "x-tenant", Default: "none"}}}}}
	}
	if err := tel.Apply(tr(0)); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, sp := tel.StartServiceSpan(t.Context(), http.Header{}, "svc:80/*", "", "ns", "svc")
		sp.End(200)
	}
	if err := tel.Apply(tr(100)); err != nil {
		t.Fatal(err)
	}
	_, sp := tel.StartServiceSpan(t.Context(), http.Header{"X-Tenant": {"acme"}}, "svc:80/*", "", "ns", "svc")
	sp.End(200)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans, services := rcv.got()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1 (sampling 0 then 100)", len(spans))
	}
	for k, want := range map[string]string{"team": "platform", "cluster": "east", "tenant": "acme"} {
		if got := attr(spans[0], k).GetStringValue(); got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	if services[0] != "wp.ns" {
		t.Errorf("service.name %q", services[0])
	}
	// Disabled span reporting: no span, nothing injected.
	if err := tel.Apply(&ir.Waypoint{Telemetry: &ir.Telemetry{Tracing: &ir.TracingConfig{Disabled: true}}}); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	_, sp = tel.StartServiceSpan(t.Context(), h, "svc:80/*", "", "ns", "svc")
	if sp.TraceID() != "" || h.Get("Traceparent") != "" {
		t.Errorf("disabled tracing started a span %q / %q", sp.TraceID(), h.Get("Traceparent"))
	}
}

// A provider's own text format and JSON labels, with Envoy's command
// operators.
func TestApplyCustomFormats(t *testing.T) {
	dir := t.TempDir()
	text, labels := filepath.Join(dir, "text.log"), filepath.Join(dir, "labels.log")
	tel, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Apply(&ir.Waypoint{Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{Sinks: []*ir.AccessLogSink{
		{Provider: "t", Kind: ir.AccessLogFile, Path: text, Text: `%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% team=%REQ(X-TEAM)% %REQ(X-NONE)% %DOWNSTREAM_PEER_URI_SAN%`},
		{Provider: "l", Kind: ir.AccessLogFile, Path: labels, Format: ir.LogFormatJSON, Labels: map[string]string{
			"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH):4%", "who": "team %REQ(x-team)%", "missing": "%REQ(x-none)%"}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	r := rec(418, "/teapot")
	r.Source.Principal = "spiffe://cluster.local/ns/a/sa/b"
	tel.RecordRequest(r)
	got, _ := os.ReadFile(text)
	if want := "GET /teapot 418 team=a - spiffe://cluster.local/ns/a/sa/b\n"; string(got) != want {
		t.Errorf("text format: %q, want %q", got, want)
	}
	got, _ = os.ReadFile(labels)
	if want := `{"code":418,"missing":null,"path":"/tea","who":"team a"}` + "\n"; string(got) != want {
		t.Errorf("labels: %q, want %q", got, want)
	}
}
