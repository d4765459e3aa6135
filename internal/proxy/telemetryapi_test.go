package proxy_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startTelemetryWaypoint serves manifests with a telemetry whose
// /dev/stdout goes to stdout and the mesh config mesh.
func startTelemetryWaypoint(t *testing.T, stdout *lockedBuf) (*waypoint, func(manifests, mesh string)) {
	t.Helper()
	w, apply, _ := startTelemetryWaypointWith(t, stdout)
	return w, apply
}

func startTelemetryWaypointWith(t *testing.T, stdout *lockedBuf) (*waypoint, func(manifests, mesh string), *telemetry.Telemetry) {
	t.Helper()
	tel, err := telemetry.New(telemetry.Options{Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	p := proxy.New(proxy.Options{Telemetry: tel})
	w := &waypoint{t: t, proxy: p}
	apply := func(manifests, mesh string) {
		t.Helper()
		snap, err := files.LoadBytes("test.yaml", []byte(manifests))
		if err != nil {
			t.Fatal(err)
		}
		if snap.MeshConfig, err = meshconfig.Parse([]byte(mesh)); err != nil {
			t.Fatal(err)
		}
		res, err := translate.Translate(snap, translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Update(res.Waypoint); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	w.srv = inbound.NewServer(p, inbound.Options{HTTP: inbound.HTTPOptions{ReadHeaderTimeout: 2 * time.Second}})
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); _ = w.srv.Close(); p.Close() })
	return w, apply, tel
}

// A Telemetry changes what the waypoint logs, over real sockets: a filter
// response.code >= 400 logs only the errors; disabled stops the log; a
// file provider of the mesh config writes to its path.
func TestTelemetryAPIAccessLog(t *testing.T) {
	be := startBackend(t, "web", "127.0.0.1", false)
	base := svcManifests(be.addr) + serviceManifest("dead", "127.0.100.2", 80, "http", "")
	stdout := &lockedBuf{}
	w, apply := startTelemetryWaypoint(t, stdout)
	logFile := filepath.Join(t.TempDir(), "access.log")
	mesh := "extensionProviders:\n- name: tofile\n  envoyFileAccessLog: {path: " + logFile + "}\n"

	apply(base+`
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: ns}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  accessLogging: [{providers: [{name: envoy}], filter: {expression: "response.code >= 400"}}]
`, mesh)
	if resp, _ := w.do("127.0.100.1:80", curlID, get("/fine")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp, _ := w.do("127.0.100.2:80", curlID, get("/failing")); resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	eventually(t, func() bool { return strings.Contains(stdout.String(), "/failing") })
	got := stdout.String()
	if strings.Contains(got, "/fine") || !strings.Contains(got, "/failing") {
		t.Fatalf("response.code >= 400 logged %q", got)
	}

	apply(base+`
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: off, namespace: ns}
spec:
  accessLogging: [{disabled: true}]
`, mesh)
	w.do("127.0.100.2:80", curlID, get("/while-disabled"))

	apply(base+`
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: to-file, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: tofile}]}]
`, mesh)
	w.do("127.0.100.1:80", curlID, get("/into-file"))
	var data []byte
	eventually(t, func() bool { data, _ = os.ReadFile(logFile); return strings.Contains(string(data), "/into-file") })
	if strings.Contains(stdout.String(), "/into-file") || strings.Contains(stdout.String(), "/while-disabled") {
		t.Fatalf("stdout %q: the file provider's line, or one logged while disabled", stdout.String())
	}
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

// Metrics overrides for reporter=waypoint, scraped from /stats/prometheus:
// a disabled metric has no series; a tag removed, overridden and added
// changes the labels, and changes back when the Telemetry goes.
func TestTelemetryAPIMetrics(t *testing.T) {
	be := startBackend(t, "web", "127.0.0.1", false)
	base := svcManifests(be.addr)
	w, apply, tel := startTelemetryWaypointWith(t, &lockedBuf{})
	stats := httptest.NewServer(admin.MetricsHandler(tel.Registry()))
	defer stats.Close()
	scrape := func() string {
		t.Helper()
		resp, err := http.Get(stats.URL + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	series := func(text, name string) []string {
		return regexp.MustCompile(`(?m)^`+name+`\{.*$`).FindAllString(text, -1)
	}
	apply(base+`
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: metrics, namespace: ns}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_DURATION, mode: CLIENT_AND_SERVER}
      disabled: true
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        destination_service_name: {value: "'renamed'"}
        team: {value: "request.headers['x-team']"}
`, "")
	w.do("127.0.100.1:80", curlID, get("/", "X-Team", "blue"))
	var text string
	eventually(t, func() bool { text = scrape(); return len(series(text, "istio_requests_total")) == 1 })
	req := series(text, "istio_requests_total")[0]
	if strings.Contains(req, "request_protocol=") || !strings.Contains(req, `destination_service_name="renamed"`) ||
		!strings.Contains(req, `team="blue"`) || !strings.Contains(req, `reporter="waypoint"`) {
		t.Errorf("istio_requests_total with tag overrides: %s", req)
	}
	if n := len(series(text, "istio_request_duration_milliseconds_bucket")); n != 0 {
		t.Errorf("REQUEST_DURATION disabled, but %d series", n)
	}
	if got := series(text, "istio_request_bytes_count"); len(got) != 1 || !strings.Contains(got[0], `request_protocol="http"`) || strings.Contains(got[0], "team=") {
		t.Errorf("REQUEST_SIZE keeps Istio's labels: %v", got)
	}

	apply(base, "")
	w.do("127.0.100.1:80", curlID, get("/"))
	eventually(t, func() bool { text = scrape(); return len(series(text, "istio_requests_total")) == 1 })
	req = series(text, "istio_requests_total")[0]
	if !strings.Contains(req, `request_protocol="http"`) || strings.Contains(req, "team=") || !strings.Contains(req, `destination_service_name="svc"`) {
		t.Errorf("without the Telemetry, Istio's labels: %s", req)
	}
	if n := len(series(text, "istio_request_duration_milliseconds_bucket")); n == 0 {
		t.Error("REQUEST_DURATION not back without the Telemetry")
	}
}

// otlpHTTP is a minimal OTLP/HTTP trace collector.
type otlpHTTP struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (o *otlpHTTP) got() []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*tracepb.Span(nil), o.spans...)
}

// Tracing through the waypoint from a Telemetry and the mesh config's
// opentelemetry provider: sampling 0 sends nothing, 100 sends every span,
// with the custom tags; the receiver is a real OTLP/HTTP collector.
func TestTelemetryAPITracing(t *testing.T) {
	be := startBackend(t, "web", "127.0.0.1", false)
	col := &otlpHTTP{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	mesh := "extensionProviders:\n- name: otel\n  opentelemetry: {service: " + host + ", port: " + port + ", http: {path: /v1/traces}}\n"
	w, apply, tel := startTelemetryWaypointWith(t, &lockedBuf{})
	telemetryDoc := func(pct string) string {
		return svcManifests(be.addr) + `
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: ` + pct + `
    customTags:
      team: {literal: {value: platform}}
      tenant: {header: {name: x-tenant, defaultValue: none}}
`
	}
	apply(telemetryDoc("0"), mesh)
	for range 10 {
		w.do("127.0.100.1:80", curlID, get("/unsampled"))
	}
	apply(telemetryDoc("100"), mesh)
	resp, body := w.do("127.0.100.1:80", curlID, get("/sampled", "X-Tenant", "acme"))
	if resp.StatusCode != 200 || !strings.Contains(body, "Traceparent") {
		t.Fatalf("%d %s: the request upstream carries no traceparent", resp.StatusCode, body)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := col.got()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 (ten at 0%%, one at 100%%)", len(spans))
	}
	tags := map[string]string{}
	for _, a := range spans[0].GetAttributes() {
		tags[a.GetKey()] = a.GetValue().GetStringValue()
	}
	if tags["team"] != "platform" || tags["tenant"] != "acme" || !strings.Contains(tags["http.url"], "/sampled") {
		t.Errorf("span attributes %v", tags)
	}
}
