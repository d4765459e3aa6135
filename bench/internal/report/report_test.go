package report

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
)

// summaryLine is the format: the names in order, each with a float
// (or nan when not measured).
var summaryLine = regexp.MustCompile(`^summary: waypoint_cpu_ms_per_1k=(\S+) haproxy_cpu_ms_per_1k=(\S+) cpu_ratio_vs_haproxy=(\S+) p99_added_ms=(\S+) haproxy_p99_added_ms=(\S+) rss_mb=(\S+) sat_ratio_vs_haproxy=(\S+) translate_10k_ms=(\S+) update_to_snapshot_ms=(\S+)` +
	` caddy_cpu_ms_per_1k=(\S+) cpu_ratio_vs_caddy=(\S+) sat_ratio_vs_caddy=(\S+) h2c_cpu_ratio_vs_haproxy=(\S+)` +
	` hbone_cpu_ms_per_1k=(\S+) haproxy_tls_cpu_ms_per_1k=(\S+) hbone_cpu_ratio_vs_haproxy_tls=(\S+) hbone_sat_ratio_vs_haproxy_tls=(\S+)$`)

var float = regexp.MustCompile(`^(-?[0-9]+\.[0-9]{3}|nan)$`)

func sample() *Results {
	run := func(proto string, conns int, p99, cpu, rss float64) *Run {
		return &Run{Proto: proto, Conns: conns, Rate: 1000, Requests: 10000, Latency: hist.Summary{P99: p99}, CPUMsPer1k: cpu, RSSMB: rss}
	}
	return &Results{
		Settings: Settings{MainConns: 16},
		Targets: []*Target{
			{Name: "direct", Runs: []*Run{run("http1", 16, 0.2, 0, 0), run("http1", 4, 0.1, 0, 0)}},
			{Name: "waypoint", Runs: []*Run{run("http1", 4, 9, 9, 9), run("h2c", 4, 9, 999, 9), run("http1", 16, 0.7, 120, 21.5), run("h2c", 16, 1, 250, 22)},
				Saturation: &Saturation{Throughput: 7000, PerCore: 7000}},
			{Name: "haproxy", Runs: []*Run{run("http1", 16, 0.45, 40, 8), run("h2c", 16, 0.5, 50, 8)}, Saturation: &Saturation{Throughput: 20000, PerCore: 20000}},
			{Name: "caddy", Runs: []*Run{run("h2c", 16, 2, 300, 30), run("http1", 16, 1.5, 160, 30)}, Saturation: &Saturation{Throughput: 9000, PerCore: 10000}},
			{Name: "waypoint-hbone", Runs: []*Run{run("http1", 4, 9, 999, 9), run("http1", 16, 1.1, 180, 25)}, Saturation: &Saturation{Throughput: 5000, PerCore: 6000}},
			{Name: "haproxy-tls", Runs: []*Run{run("http1", 16, 0.8, 120, 9)}, Saturation: &Saturation{Throughput: 9000, PerCore: 8000}},
		},
		Scale: &Scale{Points: []*ScalePoint{{Services: 1000, TranslateMs: 5}, {Services: 10000, TranslateMs: 61.25, UpdateToSnapshotMs: 80.5}}},
	}
}

func TestSummaryFiguresAndLine(t *testing.T) {
	s := sample().Summarize()
	want := Summary{
		WaypointCPUMsPer1k: 120, HAProxyCPUMsPer1k: 40, CPURatioVsHAProxy: 3,
		P99AddedMs: 0.5, HAProxyP99AddedMs: 0.25, RSSMB: 21.5, SatRatioVsHAProxy: 0.35,
		Translate10kMs: 61.25, UpdateToSnapshotMs: 80.5,
		// The waypoint's 120 ms against caddy's 160; per core 7000 against
		// 10000; h2c at the main conns 250 against haproxy's 50.
		CaddyCPUMsPer1k: 160, CPURatioVsCaddy: 0.75, SatRatioVsCaddy: 0.7, H2CCPURatioVsHAProxy: 5,
		// HBONE 180 ms at the main conns against HAProxy TLS's 120; per
		// core 6000 against 8000.
		HBONECPUMsPer1k: 180, HAProxyTLSCPUMsPer1k: 120, HBONECPURatioVsHAProxyTLS: 1.5, HBONESatRatioVsHAProxyTLS: 0.75,
	}
	got := []float64{s.WaypointCPUMsPer1k, s.HAProxyCPUMsPer1k, s.CPURatioVsHAProxy, s.P99AddedMs, s.HAProxyP99AddedMs, s.RSSMB, s.SatRatioVsHAProxy, s.Translate10kMs, s.UpdateToSnapshotMs,
		s.CaddyCPUMsPer1k, s.CPURatioVsCaddy, s.SatRatioVsCaddy, s.H2CCPURatioVsHAProxy,
		s.HBONECPUMsPer1k, s.HAProxyTLSCPUMsPer1k, s.HBONECPURatioVsHAProxyTLS, s.HBONESatRatioVsHAProxyTLS}
	exp := []float64{want.WaypointCPUMsPer1k, want.HAProxyCPUMsPer1k, want.CPURatioVsHAProxy, want.P99AddedMs, want.HAProxyP99AddedMs, want.RSSMB, want.SatRatioVsHAProxy, want.Translate10kMs, want.UpdateToSnapshotMs,
		want.CaddyCPUMsPer1k, want.CPURatioVsCaddy, want.SatRatioVsCaddy, want.H2CCPURatioVsHAProxy,
		want.HBONECPUMsPer1k, want.HAProxyTLSCPUMsPer1k, want.HBONECPURatioVsHAProxyTLS, want.HBONESatRatioVsHAProxyTLS}
	for i := range got {
		if math.Abs(got[i]-exp[i]) > 1e-9 {
			t.Errorf("figure %d = %v, want %v", i, got[i], exp[i])
		}
	}
	line := s.Line()
	const wantLine = "summary: waypoint_cpu_ms_per_1k=120.000 haproxy_cpu_ms_per_1k=40.000 cpu_ratio_vs_haproxy=3.000 p99_added_ms=0.500 haproxy_p99_added_ms=0.250 rss_mb=21.500 sat_ratio_vs_haproxy=0.350 translate_10k_ms=61.250 update_to_snapshot_ms=80.500" +
		" caddy_cpu_ms_per_1k=160.000 cpu_ratio_vs_caddy=0.750 sat_ratio_vs_caddy=0.700 h2c_cpu_ratio_vs_haproxy=5.000" +
		" hbone_cpu_ms_per_1k=180.000 haproxy_tls_cpu_ms_per_1k=120.000 hbone_cpu_ratio_vs_haproxy_tls=1.500 hbone_sat_ratio_vs_haproxy_tls=0.750"
	if line != wantLine {
		t.Fatalf("line\n got %s\nwant %s", line, wantLine)
	}
	js := s.JSON()
	for k, v := range map[string]float64{"caddy_cpu_ms_per_1k": 160, "cpu_ratio_vs_caddy": 0.75, "sat_ratio_vs_caddy": 0.7, "h2c_cpu_ratio_vs_haproxy": 5, "cpu_ratio_vs_haproxy": 3,
		"hbone_cpu_ms_per_1k": 180, "haproxy_tls_cpu_ms_per_1k": 120, "hbone_cpu_ratio_vs_haproxy_tls": 1.5, "hbone_sat_ratio_vs_haproxy_tls": 0.75} {
		if js[k] == nil || math.Abs(*js[k]-v) > 1e-9 {
			t.Errorf("JSON %s = %v, want %v", k, js[k], v)
		}
	}
	if len(js) != 17 {
		t.Errorf("JSON has %d figures, want the line's 17", len(js))
	}
}

// A skipped Caddy (its target present with no runs, as meshbench records
// it) leaves its three figures nan and the others as they were.
func TestSkippedCaddyIsNan(t *testing.T) {
	r := sample()
	r.Targets[3] = &Target{Name: "caddy", Skipped: "build failed"}
	s := r.Summarize()
	for name, v := range map[string]float64{"caddy_cpu_ms_per_1k": s.CaddyCPUMsPer1k, "cpu_ratio_vs_caddy": s.CPURatioVsCaddy, "sat_ratio_vs_caddy": s.SatRatioVsCaddy} {
		if !math.IsNaN(v) {
			t.Errorf("%s = %v, want nan", name, v)
		}
	}
	if s.CPURatioVsHAProxy != 3 || s.H2CCPURatioVsHAProxy != 5 {
		t.Errorf("the HAProxy ratios changed: %+v", s)
	}
	line := s.Line()
	for _, want := range []string{" caddy_cpu_ms_per_1k=nan", " cpu_ratio_vs_caddy=nan", " sat_ratio_vs_caddy=nan", " h2c_cpu_ratio_vs_haproxy=5.000"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	if js := s.JSON(); js["cpu_ratio_vs_caddy"] != nil {
		t.Errorf("JSON cpu_ratio_vs_caddy = %v, want null", *js["cpu_ratio_vs_caddy"])
	}
}

// Without h2c runs (--h2c=false) the h2c ratio is nan.
func TestNoH2CIsNan(t *testing.T) {
	r := sample()
	for _, tg := range r.Targets {
		tg.Runs = slices.DeleteFunc(tg.Runs, func(run *Run) bool { return run.Proto == "h2c" })
	}
	if s := r.Summarize(); !math.IsNaN(s.H2CCPURatioVsHAProxy) || s.CPURatioVsCaddy != 0.75 {
		t.Fatalf("h2c ratio %v (want nan), caddy ratio %v (want 0.75)", s.H2CCPURatioVsHAProxy, s.CPURatioVsCaddy)
	}
}

// Without the HBONE rows (--hbone=false) their four figures are nan and
// the others unchanged; the table says nothing of them.
func TestNoHBONEIsNan(t *testing.T) {
	r := sample()
	r.Targets = slices.DeleteFunc(r.Targets, func(tg *Target) bool { return strings.Contains(tg.Name, "hbone") || strings.Contains(tg.Name, "-tls") })
	s := r.Summarize()
	for name, v := range map[string]float64{"hbone_cpu_ms_per_1k": s.HBONECPUMsPer1k, "haproxy_tls_cpu_ms_per_1k": s.HAProxyTLSCPUMsPer1k,
		"hbone_cpu_ratio_vs_haproxy_tls": s.HBONECPURatioVsHAProxyTLS, "hbone_sat_ratio_vs_haproxy_tls": s.HBONESatRatioVsHAProxyTLS} {
		if !math.IsNaN(v) {
			t.Errorf("%s = %v, want nan", name, v)
		}
	}
	if s.CPURatioVsHAProxy != 3 || s.SatRatioVsHAProxy != 0.35 {
		t.Errorf("the HAProxy figures changed: %+v", s)
	}
	var out bytes.Buffer
	r.Print(&out)
	if strings.Contains(out.String(), "native HBONE") {
		t.Error("the HBONE table printed without HBONE rows")
	}
}

// The HBONE table shows the proxy's and the stand-in's CPU apart and the
// ratios to HAProxy TLS.
func TestHBONETable(t *testing.T) {
	r := sample()
	r.Targets[4].Runs[1].TerminatorCPUMsPer1k = 33.3
	var out bytes.Buffer
	r.Print(&out)
	s := out.String()
	i := strings.Index(s, "native HBONE")
	if i < 0 {
		t.Fatalf("no HBONE table:\n%s", s)
	}
	for _, want := range []string{"waypoint-hbone", "180.0", "33.3", "1.50", "0.75", "0.180 vCPU per 1000 req/s"} {
		if !strings.Contains(s[i:], want) {
			t.Errorf("the HBONE table lacks %q:\n%s", want, s[i:])
		}
	}
}

func TestMissingFiguresPrintNan(t *testing.T) {
	r := sample()
	r.Targets = r.Targets[:2] // no haproxy, no caddy
	r.Scale = nil
	line := r.Summarize().Line()
	m := summaryLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line does not have the summary format: %s", line)
	}
	for i, v := range m[1:] {
		if !float.MatchString(v) {
			t.Errorf("field %d = %q: not a float or nan", i, v)
		}
	}
	if !strings.Contains(line, "haproxy_cpu_ms_per_1k=nan") || !strings.Contains(line, "translate_10k_ms=nan") ||
		!strings.Contains(line, "caddy_cpu_ms_per_1k=nan") || !strings.Contains(line, "h2c_cpu_ratio_vs_haproxy=nan") {
		t.Errorf("missing figures should print nan: %s", line)
	}
	// JSON cannot carry NaN: the results writer must be able to encode.
	if _, err := json.Marshal(r.Summarize().JSON()); err != nil {
		t.Fatal(err)
	}
}

func TestPrintMentionsEveryTarget(t *testing.T) {
	var b bytes.Buffer
	r := sample()
	r.Targets = append(r.Targets, &Target{Name: "nginx", Skipped: "not installed"})
	r.Targets[1].Runs[2].RSSAnonMB, r.Targets[1].Runs[2].RSSFileMB = 12.25, 9.5
	r.ConnScale = &ConnScale{Idle: 10000, Active: 1000, Rate: 1000, DurationSec: 10, Targets: []*ConnScaleTarget{
		{Name: "waypoint", BaseRSSMB: 50, IdleRSSMB: 150, PerIdleKB: 10.24, CPUMsPer1k: 321.5},
		{Name: "nginx", Skipped: "no nginx"},
	}}
	r.Print(&b)
	for _, s := range []string{"direct", "waypoint", "haproxy", "nginx", "caddy", "skipped: not installed", "translate ms",
		"anon MB", "file MB", "12.2", "9.5", "vs caddy (per core)", "0.70", // the waypoint's 7000 per core against caddy's 10000
		"connection scale: 10000 idle", "KB per idle conn", "10.2", "321.5", "nginx skipped: no nginx"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}
