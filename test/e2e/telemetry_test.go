package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// findSeries returns the value of the series of a family whose labels
// include want, or -1.
func findSeries(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestTelemetryMetricsAccessLogAndAdmin(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.251.1")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(seedManifests(pod)+"---\n"+denyGet), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "access.log")
	inbound, status := freeAddr(t, "127.0.252.1"), freeAddr(t, "127.0.252.1")
	metrics, admin := freeAddr(t, "127.0.252.1"), freeAddr(t, "127.0.0.1")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status,
		"--metrics-address", metrics, "--admin-address", admin, "--access-log", logFile)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	c := dialWaypoint(t, inbound)
	if resp, _ := c.send("POST", "/post"); resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if resp, _ := c.send("GET", "/get"); resp.StatusCode != 403 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}

	mfs := scrapeMetrics(t, metrics)
	base := map[string]string{
		"reporter": "waypoint", "source_principal": "spiffe://cluster.local/ns/httpbin/sa/curl",
		"source_workload_namespace": "httpbin", "destination_service": "httpbin.httpbin.svc.cluster.local",
		"destination_service_name": "httpbin", "destination_service_namespace": "httpbin",
		"request_protocol": "http", "connection_security_policy": "mutual_tls",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	if v := findSeries(mfs, "istio_requests_total", with(map[string]string{"response_code": "200", "response_flags": "-"})); v != 1 {
		t.Errorf("istio_requests_total{200} = %v, want 1", v)
	}
	if v := findSeries(mfs, "istio_requests_total", with(map[string]string{"response_code": "403"})); v != 1 {
		t.Errorf("istio_requests_total{403} = %v, want 1", v)
	}
	if v := findSeries(mfs, "istio_request_duration_milliseconds", with(map[string]string{"response_code": "200"})); v != 1 {
		t.Errorf("istio_request_duration_milliseconds{200} count = %v, want 1", v)
	}
	for _, name := range []string{"istio_request_bytes", "istio_response_bytes", "kgateway_waypoint_config_version"} {
		if mfs[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "127.0.") || strings.HasPrefix(l.GetValue(), "/post") {
					t.Errorf("%s has a raw IP or path label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// The access log: one line per request in Istio's text format.
	var lines []string
	waitFor(t, 2*time.Second, "two access log lines", func() bool {
		data, _ := os.ReadFile(logFile)
		lines = strings.Split(strings.TrimSpace(string(data)), "\n")
		return len(lines) >= 2
	})
	if !strings.Contains(lines[0], `"POST /post HTTP/1.1" 200 - via_upstream`) ||
		!strings.Contains(lines[1], `"GET /get HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[httpbin]-policy[deny-get]-rule[0]]`) &&
			!strings.Contains(lines[1], `"GET /get HTTP/1.1" 403 - rbac_access_denied`) {
		t.Errorf("access log lines:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(lines[0], "[") || !strings.Contains(lines[0], `"httpbin:8000"`) {
		t.Errorf("access log line lacks the start time or authority: %s", lines[0])
	}

	// Admin on loopback: the config in force, the log level, pprof.
	resp, err := http.Get("http://" + admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	var dump map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		t.Fatalf("config_dump is not JSON: %v", err)
	}
	_ = resp.Body.Close()
	if gw, _ := dump["gateway"].(map[string]any); gw["name"] != "httpbin-waypoint" {
		t.Errorf("config_dump gateway %v", dump["gateway"])
	}
	resp, err = http.Post("http://"+admin+"/logging?level=debug", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(body)), "debug") {
		t.Errorf("/logging?level=debug: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	_ = resp.Body.Close()
	if !strings.HasPrefix(first, "goroutine profile: total") {
		t.Errorf("pprof goroutine: %q", first)
	}
}

func TestAdminRefusesNonLoopback(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(seedManifests(startHTTPBackend(t, "127.0.251.2"))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runBinary("standalone", "-f", dir, "--admin-address", "0.0.0.0:0", "--status-address", "127.0.0.1:0",
		"--inbound-address", "127.0.0.1:0", "--metrics-address", "off")
	if err == nil || !strings.Contains(out, "loopback") {
		t.Errorf("a non-loopback admin address must be refused; got %v:\n%s", err, out)
	}
}
