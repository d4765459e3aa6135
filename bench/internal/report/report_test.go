package report

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
)

// summaryLine is the format: the names in order, each with a float
// (or nan when not measured).
var summaryLine = regexp.MustCompile(`^summary: waypoint_cpu_ms_per_1k=(\S+) haproxy_cpu_ms_per_1k=(\S+) cpu_ratio_vs_haproxy=(\S+) p99_added_ms=(\S+) haproxy_p99_added_ms=(\S+) rss_mb=(\S+) sat_ratio_vs_haproxy=(\S+) translate_10k_ms=(\S+) update_to_snapshot_ms=(\S+)$`)

var float = regexp.MustCompile(`^(-?[0-9]+\.[0-9]{3}|nan)$`)

func sample() *Results {
	run := func(proto string, conns int, p99, cpu, rss float64) *Run {
		return &Run{Proto: proto, Conns: conns, Rate: 1000, Requests: 10000, Latency: hist.Summary{P99: p99}, CPUMsPer1k: cpu, RSSMB: rss}
	}
	return &Results{
		Settings: Settings{MainConns: 16},
		Targets: []*Target{
			{Name: "direct", Runs: []*Run{run("http1", 16, 0.2, 0, 0), run("http1", 4, 0.1, 0, 0)}},
			{Name: "waypoint", Runs: []*Run{run("http1", 4, 9, 9, 9), run("http1", 16, 0.7, 120, 21.5)}, Saturation: &Saturation{Throughput: 7000, PerCore: 7000}},
			{Name: "haproxy", Runs: []*Run{run("http1", 16, 0.45, 40, 8)}, Saturation: &Saturation{Throughput: 20000, PerCore: 20000}},
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
	}
	got := []float64{s.WaypointCPUMsPer1k, s.HAProxyCPUMsPer1k, s.CPURatioVsHAProxy, s.P99AddedMs, s.HAProxyP99AddedMs, s.RSSMB, s.SatRatioVsHAProxy, s.Translate10kMs, s.UpdateToSnapshotMs}
	exp := []float64{want.WaypointCPUMsPer1k, want.HAProxyCPUMsPer1k, want.CPURatioVsHAProxy, want.P99AddedMs, want.HAProxyP99AddedMs, want.RSSMB, want.SatRatioVsHAProxy, want.Translate10kMs, want.UpdateToSnapshotMs}
	for i := range got {
		if math.Abs(got[i]-exp[i]) > 1e-9 {
			t.Errorf("figure %d = %v, want %v", i, got[i], exp[i])
		}
	}
	line := s.Line()
	const wantLine = "summary: waypoint_cpu_ms_per_1k=120.000 haproxy_cpu_ms_per_1k=40.000 cpu_ratio_vs_haproxy=3.000 p99_added_ms=0.500 haproxy_p99_added_ms=0.250 rss_mb=21.500 sat_ratio_vs_haproxy=0.350 translate_10k_ms=61.250 update_to_snapshot_ms=80.500"
	if line != wantLine {
		t.Fatalf("line\n got %s\nwant %s", line, wantLine)
	}
}

func TestMissingFiguresPrintNan(t *testing.T) {
	r := sample()
	r.Targets = r.Targets[:2] // no haproxy
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
	if !strings.Contains(line, "haproxy_cpu_ms_per_1k=nan") || !strings.Contains(line, "translate_10k_ms=nan") {
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
	r.Print(&b)
	for _, s := range []string{"direct", "waypoint", "haproxy", "nginx", "skipped: not installed", "translate ms"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}
