package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func testRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "x"}, []string{"response_code"})
	c.WithLabelValues("200").Add(3)
	c.WithLabelValues("503").Inc()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "x", Buckets: []float64{1, 10}})
	h.Observe(4)
	h.Observe(6)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kgateway_waypoint_config_version", Help: "x"})
	g.Set(42)
	reg.MustRegister(c, h, g)
	return reg
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path string) (int, http.Header, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	var level slog.LevelVar
	dump := map[string]any{"version": 9, "services": []string{"httpbin.httpbin.svc.cluster.local"}}
	srv := httptest.NewServer(AdminHandler(AdminOptions{
		ConfigDump: func() any { return dump },
		Gatherer:   testRegistry(t),
		LogLevel:   &level,
	}))
	defer srv.Close()
	c := client{t, srv.URL}

	if code, _, body := c.do("GET", "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}

	code, hdr, body := c.do("GET", "/config_dump")
	var got map[string]any
	if code != 200 || hdr.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("/config_dump %d %s %q", code, hdr.Get("Content-Type"), body)
	}
	if got["version"] != float64(9) || len(got["services"].([]any)) != 1 {
		t.Errorf("/config_dump %v", got)
	}

	code, _, body = c.do("GET", "/stats")
	for _, want := range []string{
		`istio_requests_total{response_code="200"}: 3`,
		`istio_requests_total{response_code="503"}: 1`,
		`istio_request_duration_milliseconds: count=2 sum=10`,
		`kgateway_waypoint_config_version: 42`,
	} {
		if code != 200 || !strings.Contains(body, want+"\n") {
			t.Errorf("/stats %d lacks %q:\n%s", code, want, body)
		}
	}
	_, _, body = c.do("GET", "/stats?filter="+url.QueryEscape("^kgateway_"))
	if body != "kgateway_waypoint_config_version: 42\n" {
		t.Errorf("/stats?filter %q", body)
	}
	if code, _, _ := c.do("GET", "/stats?filter=("); code != 400 {
		t.Errorf("bad filter: %d", code)
	}

	code, hdr, body = c.do("GET", "/stats/prometheus")
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if code != 200 || err != nil || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/stats/prometheus %d %v %s", code, err, hdr.Get("Content-Type"))
	}
	if len(mfs["istio_requests_total"].GetMetric()) != 2 {
		t.Errorf("/stats/prometheus families %v", mfs)
	}

	// Logging: GET shows, POST changes, GET with a level is refused.
	if code, _, body := c.do("GET", "/logging"); code != 200 || !strings.Contains(body, "level: info") {
		t.Errorf("GET /logging %d %q", code, body)
	}
	if code, _, body := c.do("POST", "/logging?level=debug"); code != 200 || !strings.Contains(body, "level: debug") || level.Level() != slog.LevelDebug {
		t.Errorf("POST /logging?level=debug %d %q, level %v", code, body, level.Level())
	}
	if code, hdr, _ := c.do("GET", "/logging?level=error"); code != 405 || hdr.Get("Allow") != "POST" || level.Level() != slog.LevelDebug {
		t.Errorf("GET /logging?level=error: %d, level %v", code, level.Level())
	}
	if code, _, _ := c.do("POST", "/logging?level=verbose"); code != 400 || level.Level() != slog.LevelDebug {
		t.Errorf("POST bad level: %d", code)
	}
	if code, _, _ := c.do("POST", "/logging?level=warn"); code != 200 || level.Level() != slog.LevelWarn {
		t.Errorf("POST warn: %d %v", code, level.Level())
	}
	if code, _, _ := c.do("DELETE", "/logging"); code != 405 {
		t.Errorf("DELETE /logging: %d", code)
	}

	if code, _, body := c.do("GET", "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ %d", code)
	}
	if code, _, body := c.do("GET", "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine %d %.80q", code, body)
	}
	if code, _, body := c.do("GET", "/"); code != 200 || !strings.Contains(body, "/config_dump") || !strings.Contains(body, "/logging") {
		t.Errorf("/ %d %q", code, body)
	}
	if code, _, _ := c.do("GET", "/nope"); code != 404 {
		t.Errorf("/nope %d", code)
	}
	if code, _, _ := c.do("POST", "/config_dump"); code != 405 {
		t.Errorf("POST /config_dump %d", code)
	}
}

func TestAdminWithoutOptionalParts(t *testing.T) {
	srv := httptest.NewServer(AdminHandler(AdminOptions{}))
	defer srv.Close()
	c := client{t, srv.URL}
	for _, p := range []string{"/config_dump", "/stats", "/stats/prometheus", "/logging"} {
		if code, _, _ := c.do("GET", p); code != 404 {
			t.Errorf("%s without its source: %d, want 404", p, code)
		}
	}
	if code, _, _ := c.do("GET", "/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
}

func TestMetricsHandler(t *testing.T) {
	srv := httptest.NewServer(MetricsHandler(testRegistry(t)))
	defer srv.Close()
	c := client{t, srv.URL}
	_, _, a := c.do("GET", "/stats/prometheus")
	code, _, b := c.do("GET", "/metrics")
	if code != 200 || a != b || !strings.Contains(a, `istio_requests_total{response_code="200"} 3`) {
		t.Errorf("/metrics %d, same as /stats/prometheus: %v\n%s", code, a == b, a)
	}
	for _, p := range []string{"/", "/config_dump", "/logging", "/debug/pprof/"} {
		if code, _, _ := c.do("GET", p); code != 404 {
			t.Errorf("metrics port serves %s: %d", p, code)
		}
	}
}

func TestCheckAdminAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:15000": true,
		"[::1]:15000":     true,
		"localhost:15000": true,
		"127.0.0.2:15000": true,
		"0.0.0.0:15000":   false,
		":15000":          false,
		"10.0.0.1:15000":  false,
		"[::]:15000":      false,
		"example.com:80":  false,
		"127.0.0.1":       false,
	} {
		if err := CheckAdminAddress(addr, false); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", addr, err, ok)
		}
	}
	if err := CheckAdminAddress("0.0.0.0:15000", true); err != nil {
		t.Errorf("asked for remote: %v", err)
	}
}
