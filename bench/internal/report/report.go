// Package report holds the benchmark's results: the JSON written to
// bench/results/latest.json, the table printed on stdout and the summary
// line printed last.
package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
)

// Results is one benchmark run.
type Results struct {
	Mode     string    `json:"mode"` // "quick" or "full"
	Command  string    `json:"command"`
	Started  string    `json:"started"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Targets  []*Target `json:"targets"`
	Scale    *Scale    `json:"scale,omitempty"`
	// ConnScale is the connection-scale row: many idle keep-alive
	// connections and active ones at a fixed rate.
	ConnScale *ConnScale `json:"conn_scale,omitempty"`
	Profile   string     `json:"profile,omitempty"` // pprof top of the waypoint under load
	// Background is the CPU (in cores) that other processes on the machine
	// used during each phase: the benchmark competes with them.
	Background map[string]float64 `json:"background_cores,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
	// Summary holds the summary line's figures (null: not measured).
	Summary map[string]*float64 `json:"summary"`
}

// Machine describes where the run happened.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	// LoadBefore is /proc/loadavg when the run started: other work on the
	// machine competes with the benchmark.
	LoadBefore string `json:"load_before"`
}

// Settings are the run's parameters.
type Settings struct {
	Rate            float64 `json:"rate_rps"`
	Conns           []int   `json:"conns"`
	MainConns       int     `json:"main_conns"`
	WarmupSec       float64 `json:"warmup_s"`
	MainSec         float64 `json:"main_s"`
	OtherSec        float64 `json:"other_s"`
	SaturationConns int     `json:"saturation_conns"`
	SaturationSec   float64 `json:"saturation_s"`
	BodyBytes       int     `json:"body_bytes"`
	// FileLimit is RLIMIT_NOFILE for the generator and the proxies it
	// starts (they inherit it).
	FileLimit uint64 `json:"rlimit_nofile,omitempty"`
}

// Target is everything measured for one target.
type Target struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	// Runs are the fixed-rate latency runs.
	Runs       []*Run      `json:"runs"`
	Saturation *Saturation `json:"saturation,omitempty"`
}

// Run is one fixed-rate (open-loop) run.
type Run struct {
	Proto       string       `json:"proto"` // "http1" or "h2c"
	Conns       int          `json:"conns"`
	Rate        float64      `json:"rate_rps"`
	Requests    int64        `json:"requests"`
	Errors      int64        `json:"errors"`
	TotalErrors int64        `json:"total_errors"`
	FirstError  string       `json:"first_error,omitempty"`
	Latency     hist.Summary `json:"latency"`
	SendLag     hist.Summary `json:"send_lag"`
	// Proxy process figures over the measured window (absent for direct).
	CPUMsPer1k float64 `json:"cpu_ms_per_1k,omitempty"`
	CPUCores   float64 `json:"cpu_cores,omitempty"`
	RSSMB      float64 `json:"rss_mb,omitempty"`      // steady: median VmRSS in the window
	PeakRSSMB  float64 `json:"peak_rss_mb,omitempty"` // VmHWM at the end of the window
	// VmRSS split: median RssAnon (heap, stacks) and RssFile (mapped binary
	// and libraries) in the window.
	RSSAnonMB float64 `json:"rss_anon_mb,omitempty"`
	RSSFileMB float64 `json:"rss_file_mb,omitempty"`
	// TerminatorCPUMsPer1k is the CPU of what terminates the proxy's
	// upstream mTLS (the HBONE rows' destination ztunnel stand-in), per
	// 1000 requests, apart from the proxy's.
	TerminatorCPUMsPer1k float64 `json:"terminator_cpu_ms_per_1k,omitempty"`
}

// Saturation is the closed-loop run with the proxy pinned to one core.
type Saturation struct {
	Conns       int          `json:"conns"`
	Throughput  float64      `json:"throughput_rps"`
	Errors      int64        `json:"errors"`
	TotalErrors int64        `json:"total_errors"`
	FirstError  string       `json:"first_error,omitempty"`
	Latency     hist.Summary `json:"latency"`
	// ProxyCores is the proxy's CPU use (cores) during the run: near 1.0
	// means the proxy was the bottleneck; lower means the generator and
	// backend (sharing the other core) were.
	ProxyCores float64 `json:"proxy_cores,omitempty"`
	// PerCore is Throughput / ProxyCores: requests per second per core of
	// proxy CPU.
	PerCore float64 `json:"per_core_rps,omitempty"`
	// TerminatorCores is the upstream mTLS terminator's CPU use (cores),
	// on the backend's side (HBONE rows).
	TerminatorCores float64 `json:"terminator_cores,omitempty"`
}

// Scale is the control-plane scale benchmark.
type Scale struct {
	Points []*ScalePoint `json:"points"`
	// Swap is the proxy snapshot swap under load (largest size).
	Swap *Swap `json:"swap,omitempty"`
}

// ScalePoint is one configuration size.
type ScalePoint struct {
	Services       int `json:"services"`
	Ports          int `json:"ports"`
	Endpoints      int `json:"endpoints"`
	HTTPRoutes     int `json:"httproutes"`
	Policies       int `json:"authorization_policies"`
	ManifestsBytes int `json:"manifests_bytes"`
	// LoadMs is files.LoadBytes of the generated YAML (standalone's parse).
	LoadMs float64 `json:"load_ms"`
	// TranslateMs is translate.Translate of the whole snapshot (median).
	TranslateMs float64 `json:"translate_ms"`
	// CompileMs is proxy.Update of the result into a proxy with no
	// configuration yet: every port and backend compiled (+ swap, median).
	CompileMs float64 `json:"compile_ms"`
	// UpdateToSnapshotMs: one HTTPRoute changed -> translate -> proxy.Update
	// -> the new snapshot in force (median).
	UpdateToSnapshotMs float64 `json:"update_to_snapshot_ms"`
	// RouteChangeUpdateMs is the proxy.Update part of UpdateToSnapshotMs
	// (median): the proxy holding the previous configuration recompiles
	// what changed.
	RouteChangeUpdateMs float64 `json:"route_change_update_ms"`
	// RetainedMB is the Go heap kept by the translated and compiled config.
	RetainedMB float64 `json:"retained_heap_mb"`
	// Waypoint process (real binary, standalone) with this config.
	StartupMs  float64 `json:"binary_ready_ms,omitempty"`
	RSSMB      float64 `json:"binary_rss_mb,omitempty"`
	PeakRSSMB  float64 `json:"binary_peak_rss_mb,omitempty"`
	BinaryNote string  `json:"binary_note,omitempty"`
}

// Swap is the proxy snapshot swap under load.
type Swap struct {
	Services   int          `json:"services"`
	Swaps      int          `json:"swaps"`
	SwapMs     hist.Summary `json:"swap_ms"` // duration of proxy.Update
	Rate       float64      `json:"rate_rps"`
	Conns      int          `json:"conns"`
	Requests   int64        `json:"requests"`
	Failed     int64        `json:"failed"`
	FirstError string       `json:"first_error,omitempty"`
	Latency    hist.Summary `json:"latency"`
}

// ConnScale is the connection-scale row: each target (a fresh instance, one
// at a time) holds Idle keep-alive connections (each opened with a PROXY v2
// header and one request, then left idle) while Active other connections
// carry Rate requests per second spread over them.
type ConnScale struct {
	Idle        int                `json:"idle_conns"`
	Active      int                `json:"active_conns"`
	Rate        float64            `json:"rate_rps"`
	DurationSec float64            `json:"duration_s"`
	Targets     []*ConnScaleTarget `json:"targets"`
}

// ConnScaleTarget is one target's connection-scale figures.
type ConnScaleTarget struct {
	Name    string `json:"name"`
	Skipped string `json:"skipped,omitempty"`
	// Memory of the warmed-up proxy before the idle connections (Base) and
	// with them open, the load not yet started (Idle); MB.
	BaseRSSMB  float64 `json:"base_rss_mb"`
	BaseAnonMB float64 `json:"base_anon_mb"`
	IdleRSSMB  float64 `json:"idle_rss_mb"`
	IdleAnonMB float64 `json:"idle_anon_mb"`
	// PerIdleKB is (IdleRSS - BaseRSS) / idle connections, in KiB;
	// PerIdleAnonKB the same for RssAnon. Kernel socket memory is not in
	// either (it is not the process's RSS).
	PerIdleKB     float64 `json:"per_idle_conn_kb"`
	PerIdleAnonKB float64 `json:"per_idle_conn_anon_kb"`
	// OpenSec is how long opening the idle connections took.
	OpenSec float64 `json:"open_idle_s"`
	// The active load, measured as the latency runs are: CPU per 1000
	// requests, and memory during it (median VmRSS, RssAnon, RssFile).
	Requests    int64        `json:"requests"`
	Errors      int64        `json:"errors"`
	TotalErrors int64        `json:"total_errors"`
	FirstError  string       `json:"first_error,omitempty"`
	Latency     hist.Summary `json:"latency"`
	CPUMsPer1k  float64      `json:"cpu_ms_per_1k"`
	RSSMB       float64      `json:"rss_mb"`
	RSSAnonMB   float64      `json:"rss_anon_mb"`
	RSSFileMB   float64      `json:"rss_file_mb"`
	// IdleClosed is how many idle connections the proxy had closed by the
	// end (it should be none).
	IdleClosed int `json:"idle_closed"`
}

// Summary is the last line's figures. NaN means not measured.
type Summary struct {
	WaypointCPUMsPer1k float64 `json:"waypoint_cpu_ms_per_1k"`
	HAProxyCPUMsPer1k  float64 `json:"haproxy_cpu_ms_per_1k"`
	CPURatioVsHAProxy  float64 `json:"cpu_ratio_vs_haproxy"`
	P99AddedMs         float64 `json:"p99_added_ms"`
	HAProxyP99AddedMs  float64 `json:"haproxy_p99_added_ms"`
	RSSMB              float64 `json:"rss_mb"`
	SatRatioVsHAProxy  float64 `json:"sat_ratio_vs_haproxy"`
	Translate10kMs     float64 `json:"translate_10k_ms"`
	UpdateToSnapshotMs float64 `json:"update_to_snapshot_ms"`
	// Caddy, the Go reverse proxy, and h2c (issue 13).
	CaddyCPUMsPer1k      float64 `json:"caddy_cpu_ms_per_1k"`
	CPURatioVsCaddy      float64 `json:"cpu_ratio_vs_caddy"`
	SatRatioVsCaddy      float64 `json:"sat_ratio_vs_caddy"`
	H2CCPURatioVsHAProxy float64 `json:"h2c_cpu_ratio_vs_haproxy"`
	// Native HBONE (issue 14): the waypoint with mTLS HBONE in and out
	// beside HAProxy with TLS 1.3 and client certificates in and out.
	HBONECPUMsPer1k           float64 `json:"hbone_cpu_ms_per_1k"`
	HAProxyTLSCPUMsPer1k      float64 `json:"haproxy_tls_cpu_ms_per_1k"`
	HBONECPURatioVsHAProxyTLS float64 `json:"hbone_cpu_ratio_vs_haproxy_tls"`
	HBONESatRatioVsHAProxyTLS float64 `json:"hbone_sat_ratio_vs_haproxy_tls"`
}

// JSON returns the figures keyed by their summary-line names, with nil for
// NaN (JSON has no NaN).
func (s Summary) JSON() map[string]*float64 {
	out := map[string]*float64{}
	for k, v := range map[string]float64{
		"waypoint_cpu_ms_per_1k": s.WaypointCPUMsPer1k, "haproxy_cpu_ms_per_1k": s.HAProxyCPUMsPer1k,
		"cpu_ratio_vs_haproxy": s.CPURatioVsHAProxy, "p99_added_ms": s.P99AddedMs,
		"haproxy_p99_added_ms": s.HAProxyP99AddedMs, "rss_mb": s.RSSMB,
		"sat_ratio_vs_haproxy": s.SatRatioVsHAProxy, "translate_10k_ms": s.Translate10kMs,
		"update_to_snapshot_ms": s.UpdateToSnapshotMs,
		"caddy_cpu_ms_per_1k":   s.CaddyCPUMsPer1k, "cpu_ratio_vs_caddy": s.CPURatioVsCaddy,
		"sat_ratio_vs_caddy": s.SatRatioVsCaddy, "h2c_cpu_ratio_vs_haproxy": s.H2CCPURatioVsHAProxy,
		"hbone_cpu_ms_per_1k": s.HBONECPUMsPer1k, "haproxy_tls_cpu_ms_per_1k": s.HAProxyTLSCPUMsPer1k,
		"hbone_cpu_ratio_vs_haproxy_tls": s.HBONECPURatioVsHAProxyTLS, "hbone_sat_ratio_vs_haproxy_tls": s.HBONESatRatioVsHAProxyTLS,
	} {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = &v
		} else {
			out[k] = nil
		}
	}
	return out
}

// Line is the summary line as the issues specify it: issue 7's figures in
// their order, then issue 13's, then issue 14's.
func (s Summary) Line() string {
	return fmt.Sprintf("summary: waypoint_cpu_ms_per_1k=%s haproxy_cpu_ms_per_1k=%s cpu_ratio_vs_haproxy=%s p99_added_ms=%s haproxy_p99_added_ms=%s rss_mb=%s sat_ratio_vs_haproxy=%s translate_10k_ms=%s update_to_snapshot_ms=%s"+
		" caddy_cpu_ms_per_1k=%s cpu_ratio_vs_caddy=%s sat_ratio_vs_caddy=%s h2c_cpu_ratio_vs_haproxy=%s"+
		" hbone_cpu_ms_per_1k=%s haproxy_tls_cpu_ms_per_1k=%s hbone_cpu_ratio_vs_haproxy_tls=%s hbone_sat_ratio_vs_haproxy_tls=%s",
		f(s.WaypointCPUMsPer1k), f(s.HAProxyCPUMsPer1k), f(s.CPURatioVsHAProxy), f(s.P99AddedMs),
		f(s.HAProxyP99AddedMs), f(s.RSSMB), f(s.SatRatioVsHAProxy), f(s.Translate10kMs), f(s.UpdateToSnapshotMs),
		f(s.CaddyCPUMsPer1k), f(s.CPURatioVsCaddy), f(s.SatRatioVsCaddy), f(s.H2CCPURatioVsHAProxy),
		f(s.HBONECPUMsPer1k), f(s.HAProxyTLSCPUMsPer1k), f(s.HBONECPURatioVsHAProxyTLS), f(s.HBONESatRatioVsHAProxyTLS))
}

// f formats a figure with three decimals; NaN (not measured) prints "nan".
func f(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "nan"
	}
	return fmt.Sprintf("%.3f", v)
}

// Target returns the named target, or nil.
func (r *Results) Target(name string) *Target {
	for _, t := range r.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Run returns the target's run with these parameters, or nil.
func (t *Target) Run(proto string, conns int) *Run {
	if t == nil {
		return nil
	}
	for _, r := range t.Runs {
		if r.Proto == proto && r.Conns == conns {
			return r
		}
	}
	return nil
}

// Summarize computes the summary figures from the results: CPU and p99 at
// the main connection count over HTTP/1.1 (and CPU over h2c), saturation
// throughput per core of proxy CPU, and the scale figures at 10,000
// services. A figure whose target was skipped (or not asked for) is NaN.
func (r *Results) Summarize() Summary {
	nan := math.NaN()
	s := Summary{
		WaypointCPUMsPer1k: nan, HAProxyCPUMsPer1k: nan, CPURatioVsHAProxy: nan, P99AddedMs: nan,
		HAProxyP99AddedMs: nan, RSSMB: nan, SatRatioVsHAProxy: nan, Translate10kMs: nan, UpdateToSnapshotMs: nan,
		CaddyCPUMsPer1k: nan, CPURatioVsCaddy: nan, SatRatioVsCaddy: nan, H2CCPURatioVsHAProxy: nan,
		HBONECPUMsPer1k: nan, HAProxyTLSCPUMsPer1k: nan, HBONECPURatioVsHAProxyTLS: nan, HBONESatRatioVsHAProxyTLS: nan,
	}
	mc := r.Settings.MainConns
	wp, hp, direct := r.Target("waypoint").Run("http1", mc), r.Target("haproxy").Run("http1", mc), r.Target("direct").Run("http1", mc)
	cd := r.Target("caddy").Run("http1", mc)
	if wp != nil {
		s.WaypointCPUMsPer1k = wp.CPUMsPer1k
		s.RSSMB = wp.RSSMB
	}
	if hp != nil {
		s.HAProxyCPUMsPer1k = hp.CPUMsPer1k
	}
	if cd != nil {
		s.CaddyCPUMsPer1k = cd.CPUMsPer1k
	}
	s.CPURatioVsHAProxy = cpuRatio(wp, hp)
	s.CPURatioVsCaddy = cpuRatio(wp, cd)
	s.H2CCPURatioVsHAProxy = cpuRatio(r.Target("waypoint").Run("h2c", mc), r.Target("haproxy").Run("h2c", mc))
	if direct != nil {
		if wp != nil {
			s.P99AddedMs = wp.Latency.P99 - direct.Latency.P99
		}
		if hp != nil {
			s.HAProxyP99AddedMs = hp.Latency.P99 - direct.Latency.P99
		}
	}
	// Saturation is compared per core of proxy CPU (requests per second
	// per CPU-second the proxy used), as the target is stated; on a shared
	// machine a pinned proxy does not always get its whole core.
	s.SatRatioVsHAProxy = satRatio(r.Target("waypoint"), r.Target("haproxy"))
	s.SatRatioVsCaddy = satRatio(r.Target("waypoint"), r.Target("caddy"))
	hb, ht := r.Target("waypoint-hbone").Run("http1", mc), r.Target("haproxy-tls").Run("http1", mc)
	if hb != nil {
		s.HBONECPUMsPer1k = hb.CPUMsPer1k
	}
	if ht != nil {
		s.HAProxyTLSCPUMsPer1k = ht.CPUMsPer1k
	}
	s.HBONECPURatioVsHAProxyTLS = cpuRatio(hb, ht)
	s.HBONESatRatioVsHAProxyTLS = satRatio(r.Target("waypoint-hbone"), r.Target("haproxy-tls"))
	if r.Scale != nil {
		for _, p := range r.Scale.Points {
			if p.Services == 10000 {
				s.Translate10kMs = p.TranslateMs
				s.UpdateToSnapshotMs = p.UpdateToSnapshotMs
			}
		}
	}
	return s
}

// cpuRatio is the waypoint's CPU per request over the other's, NaN when
// either run is missing or the other's CPU was not measured.
func cpuRatio(wp, other *Run) float64 {
	if wp == nil || other == nil || other.CPUMsPer1k <= 0 {
		return math.NaN()
	}
	return wp.CPUMsPer1k / other.CPUMsPer1k
}

// satRatio is the waypoint's saturated requests per second per core of
// proxy CPU over the other's, NaN when either is missing.
func satRatio(wp, other *Target) float64 {
	if wp == nil || other == nil || wp.Saturation == nil || other.Saturation == nil || other.Saturation.PerCore <= 0 {
		return math.NaN()
	}
	return wp.Saturation.PerCore / other.Saturation.PerCore
}

// Print writes the human-readable tables.
func (r *Results) Print(w io.Writer) {
	fmt.Fprintf(w, "\nmeshbench %s run, %s: %d cores (%s), %s, load average before: %s\n",
		r.Mode, r.Started, r.Machine.NProc, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadBefore)
	fmt.Fprintf(w, "backend: %d-byte responses on loopback; latency in ms from the intended send time (open loop)\n\n", r.Settings.BodyBytes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tproto\tconns\treq/s\trequests\terrors\tp50\tp90\tp99\tp99.9\tmax\tcpu ms/1k req\tcpu cores\trss MB\tanon MB\tfile MB\tpeak rss MB\tgen lag p99\t")
	for _, t := range r.Targets {
		if t.Skipped != "" {
			// A skipped target's reason can be long (an install's output):
			// it goes below the table, not into a cell.
			fmt.Fprintf(tw, "%s\t(skipped)\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", t.Name)
			continue
		}
		for _, run := range t.Runs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t\n",
				t.Name, run.Proto, run.Conns, run.Rate, run.Requests, run.Errors,
				run.Latency.P50, run.Latency.P90, run.Latency.P99, run.Latency.P999, run.Latency.Max,
				opt(run.CPUMsPer1k, "%.1f"), opt(run.CPUCores, "%.3f"), opt(run.RSSMB, "%.1f"),
				opt(run.RSSAnonMB, "%.1f"), opt(run.RSSFileMB, "%.1f"), opt(run.PeakRSSMB, "%.1f"),
				run.SendLag.P99)
		}
	}
	_ = tw.Flush()
	for _, t := range r.Targets {
		if t.Skipped != "" {
			fmt.Fprintf(w, "%s skipped: %s\n", t.Name, t.Skipped)
		}
	}

	fmt.Fprintf(w, "\nsaturation: closed loop, proxy pinned to one core, generator and backend on the other\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconns\treq/s\terrors\tp50\tp99\tproxy cores\treq/s per proxy core\tvs haproxy (req/s)\tvs haproxy (per core)\tvs caddy (per core)\t")
	var hsat, hcore, ccore float64
	if h := r.Target("haproxy"); h != nil && h.Saturation != nil {
		hsat, hcore = h.Saturation.Throughput, h.Saturation.PerCore
	}
	if c := r.Target("caddy"); c != nil && c.Saturation != nil {
		ccore = c.Saturation.PerCore
	}
	for _, t := range r.Targets {
		s := t.Saturation
		if s == nil {
			continue
		}
		ratio, coreRatio, caddyRatio := "-", "-", "-"
		if hsat > 0 {
			ratio = fmt.Sprintf("%.2f", s.Throughput/hsat)
		}
		if hcore > 0 && s.PerCore > 0 {
			coreRatio = fmt.Sprintf("%.2f", s.PerCore/hcore)
		}
		if ccore > 0 && s.PerCore > 0 {
			caddyRatio = fmt.Sprintf("%.2f", s.PerCore/ccore)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%s\t\n", t.Name, s.Conns, s.Throughput, s.Errors,
			s.Latency.P50, s.Latency.P99, opt(s.ProxyCores, "%.2f"), opt(s.PerCore, "%.0f"), ratio, coreRatio, caddyRatio)
	}
	_ = tw.Flush()

	r.printHBONE(w)

	if c := r.ConnScale; c != nil {
		fmt.Fprintf(w, "\nconnection scale: %d idle keep-alive connections (PROXY v2 header and one request each), then %d active ones at %.0f req/s in all for %.0f s; one target at a time\n\n",
			c.Idle, c.Active, c.Rate, c.DurationSec)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\tbase rss MB\twith idle rss MB\tKB per idle conn\tanon KB per idle conn\topen idle s\trequests\terrors\tp50\tp99\tcpu ms/1k req\trss MB\tanon MB\tfile MB\tidle closed\t")
		for _, t := range c.Targets {
			if t.Skipped != "" {
				fmt.Fprintf(tw, "%s\t(skipped)\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", t.Name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%d\t\n", t.Name,
				t.BaseRSSMB, t.IdleRSSMB, t.PerIdleKB, t.PerIdleAnonKB, t.OpenSec, t.Requests, t.Errors,
				t.Latency.P50, t.Latency.P99, opt(t.CPUMsPer1k, "%.1f"), opt(t.RSSMB, "%.1f"), opt(t.RSSAnonMB, "%.1f"),
				opt(t.RSSFileMB, "%.1f"), t.IdleClosed)
		}
		_ = tw.Flush()
		for _, t := range c.Targets {
			if t.Skipped != "" {
				fmt.Fprintf(w, "%s skipped: %s\n", t.Name, t.Skipped)
			}
		}
	}

	if r.Scale != nil {
		fmt.Fprintf(w, "\ncontrol plane scale (each service: 2 ports, 2 endpoints; routes = services/5, policies = services/10)\n\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "services\tendpoints\troutes\tpolicies\tyaml MB\tload ms\ttranslate ms\tcompile ms\troute change -> snapshot ms\tof which update ms\tretained heap MB\tbinary ready ms\tbinary rss MB\tbinary peak MB\t")
		for _, p := range r.Scale.Points {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t\n", p.Services, p.Endpoints, p.HTTPRoutes, p.Policies,
				float64(p.ManifestsBytes)/(1<<20), p.LoadMs, p.TranslateMs, p.CompileMs, p.UpdateToSnapshotMs, p.RouteChangeUpdateMs, p.RetainedMB,
				opt(p.StartupMs, "%.0f"), opt(p.RSSMB, "%.1f"), opt(p.PeakRSSMB, "%.1f"))
		}
		_ = tw.Flush()
		if s := r.Scale.Swap; s != nil {
			fmt.Fprintf(w, "\nsnapshot swap under load (%d services): %d swaps, proxy.Update p50 %.1f ms, max %.1f ms; %d requests at %.0f req/s over %d conns, %d failed; p99 %.3f ms, max %.3f ms\n",
				s.Services, s.Swaps, s.SwapMs.P50, s.SwapMs.Max, s.Requests, s.Rate, s.Conns, s.Failed, s.Latency.P99, s.Latency.Max)
		}
	}
	if len(r.Background) > 0 {
		var parts []string
		for _, k := range []string{"latency", "saturation", "conn-scale", "scale"} {
			if v, ok := r.Background[k]; ok {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
			}
		}
		fmt.Fprintf(w, "\nCPU used by other processes on the machine meanwhile (cores): %s\n", strings.Join(parts, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func opt(v float64, format string) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return strings.TrimSpace(fmt.Sprintf(format, v))
}

// printHBONE writes the native-HBONE rows side by side with their TLS-cost
// reference: the proxy's CPU and the upstream terminator's (the
// destination ztunnel stand-in) apart, at the main rate and connection
// count, and saturation per core of proxy CPU.
func (r *Results) printHBONE(w io.Writer) {
	hb, ht := r.Target("waypoint-hbone"), r.Target("haproxy-tls")
	if hb == nil && ht == nil {
		return
	}
	mc := r.Settings.MainConns
	fmt.Fprintf(w, "\nnative HBONE: mTLS in and out (waypoint-hbone: HBONE client -> waypoint -> HBONE -> ztunnel stand-in -> backend;"+
		" haproxy-tls: TLS 1.3 with client certificates in, keep-alive TLS out to the stand-in's TLS port); http1, %d conns, %.0f req/s\n\n", mc, r.Settings.Rate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tp99\tproxy cpu ms/1k req\tstand-in cpu ms/1k req\tvs haproxy-tls (cpu)\tsat req/s per proxy core\tvs haproxy-tls (per core)\t")
	var href, hcore float64
	if run := ht.Run("http1", mc); run != nil {
		href = run.CPUMsPer1k
	}
	if ht != nil && ht.Saturation != nil {
		hcore = ht.Saturation.PerCore
	}
	for _, t := range []*Target{hb, ht} {
		if t == nil {
			continue
		}
		if t.Skipped != "" {
			fmt.Fprintf(tw, "%s\t(skipped)\t\t\t\t\t\t\n", t.Name)
			continue
		}
		run := t.Run("http1", mc)
		if run == nil {
			continue
		}
		cpu, core, ratio, coreRatio := opt(run.CPUMsPer1k, "%.1f"), "-", "-", "-"
		if href > 0 && run.CPUMsPer1k > 0 {
			ratio = fmt.Sprintf("%.2f", run.CPUMsPer1k/href)
		}
		if t.Saturation != nil {
			core = opt(t.Saturation.PerCore, "%.0f")
			if hcore > 0 && t.Saturation.PerCore > 0 {
				coreRatio = fmt.Sprintf("%.2f", t.Saturation.PerCore/hcore)
			}
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%s\t%s\t%s\t%s\t%s\t\n", t.Name, run.Latency.P99, cpu, opt(run.TerminatorCPUMsPer1k, "%.1f"), ratio, core, coreRatio)
	}
	_ = tw.Flush()
	if run := hb.Run("http1", mc); run != nil && run.CPUMsPer1k > 0 {
		fmt.Fprintf(w, "waypoint-hbone: %.3f vCPU per 1000 req/s (Istio publishes 0.25 for its waypoint)\n", run.CPUMsPer1k/1000)
	}
}
