// Command meshbench benchmarks the waypoint side by side with HAProxy, nginx,
// Caddy and the direct path, all on loopback, and measures the control plane
// at scale. See docs/performance.md.
//
//	go run ./bench/cmd/meshbench --quick   # under 2 minutes
//	go run ./bench/cmd/meshbench           # the full run behind docs/performance.md
//
// It prints a table, writes bench/results/latest.json and prints, as its
// last line, the summary line described in issue 7.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/report"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend": // the backend process (started by meshbench itself)
			if err := runBackend(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "backend:", err)
				os.Exit(1)
			}
			return
		case "ztunnel-standin": // the destination ztunnel's stand-in of the HBONE rows (started by meshbench itself)
			if err := runZtunnelStandIn(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "ztunnel-standin:", err)
				os.Exit(1)
			}
			return
		case "waypoint-profiled": // the standalone waypoint under pprof (started by meshbench itself)
			if err := runProfiledWaypoint(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "waypoint-profiled:", err)
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(run())
}

// config is the run's plan.
type config struct {
	quick      bool
	out        string
	targets    []string
	scale      bool
	dataPlane  bool
	connScale  bool // the connection-scale row
	idleConns  int
	activeConn int
	connDur    time.Duration
	h2c        bool
	hbone      bool // the native-HBONE rows (waypoint-hbone, haproxy-tls)
	profile    string
	keep       bool
	rate       float64
	conns      []int // the first is the main one
	warmup     time.Duration
	mainDur    time.Duration
	otherDur   time.Duration
	satConns   int
	satDur     time.Duration
	scaleSizes []int
	swapDur    time.Duration
	rounds     int // each run is split into rounds, targets taking turns
}

func run() int {
	var c config
	var targets string
	var profile bool
	fs := flag.NewFlagSet("meshbench", flag.ExitOnError)
	fs.BoolVar(&c.quick, "quick", false, "short runs (under 2 minutes in all)")
	fs.StringVar(&c.out, "out", "", "results JSON (default bench/results/latest.json in the repository)")
	fs.StringVar(&targets, "targets", "direct,waypoint,waypoint-proxy,haproxy,nginx,caddy", "data-plane targets to measure (waypoint: standalone mode; waypoint-proxy: the data-plane binary the pods run, fed over xDS)")
	fs.BoolVar(&c.scale, "scale", true, "run the control-plane scale benchmark")
	fs.BoolVar(&c.dataPlane, "data-plane", true, "run the data-plane benchmark")
	fs.BoolVar(&c.h2c, "h2c", true, "also measure h2c (HTTP/2 prior knowledge) at the main connection count")
	fs.BoolVar(&c.hbone, "hbone", true, "also measure native HBONE: the waypoint with mTLS HBONE in and out (waypoint-hbone, beside waypoint) and HAProxy with TLS 1.3 and client certificates in and out (haproxy-tls, beside haproxy), both to a stand-in for the destination ztunnel")
	fs.BoolVar(&c.connScale, "conn-scale", true, "run the connection-scale row (idle keep-alive connections beside active ones)")
	fs.IntVar(&c.idleConns, "idle-conns", 0, "idle connections in the connection-scale row (default 10000; 2000 with --quick)")
	fs.BoolVar(&profile, "profile", false, "CPU-profile the waypoint under the main load (always on in full mode)")
	fs.BoolVar(&c.keep, "keep", false, "keep the scratch directory (configs, logs)")
	_ = fs.Parse(os.Args[1:])
	c.targets = hboneTargets(strings.Split(targets, ","), c.hbone)
	c.rate = 1000
	c.conns = []int{16, 4, 64}
	c.satConns = 32
	c.activeConn = 1000
	if c.idleConns <= 0 {
		c.idleConns = map[bool]int{true: 2000, false: 10000}[c.quick]
	}
	if c.quick {
		c.connDur = 3 * time.Second
		c.warmup, c.mainDur, c.otherDur, c.satDur, c.swapDur = 500*time.Millisecond, 4*time.Second, 1500*time.Millisecond, 2*time.Second, 3*time.Second
		c.scaleSizes = []int{1000, 10000}
		c.rounds = 1
	} else {
		c.warmup, c.mainDur, c.otherDur, c.satDur, c.swapDur = time.Second, 30*time.Second, 15*time.Second, 15*time.Second, 10*time.Second
		c.scaleSizes = []int{1000, 2000, 5000, 10000}
		c.rounds = 5
		c.connDur = 10 * time.Second
		profile = true
	}

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		return 1
	}
	if c.out == "" {
		c.out = filepath.Join(root, "bench", "results", "latest.json")
	}
	if profile {
		c.profile = filepath.Join(filepath.Dir(c.out), "waypoint-cpu.pprof")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mode := "full"
	if c.quick {
		mode = "quick"
	}
	res := &report.Results{
		Mode:    mode,
		Command: "go run ./bench/cmd/meshbench " + strings.Join(os.Args[1:], " "),
		Started: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Settings: report.Settings{
			Rate: c.rate, Conns: c.conns, MainConns: c.conns[0], WarmupSec: c.warmup.Seconds(),
			MainSec: c.mainDur.Seconds(), OtherSec: c.otherDur.Seconds(),
			SaturationConns: c.satConns, SaturationSec: c.satDur.Seconds(), BodyBytes: 1024,
		},
	}
	// Thousands of connections: the generator holds one descriptor per
	// connection and every proxy about as many, so lift the soft limit to
	// the hard one here, which the proxies started below inherit.
	if n, err := raiseFileLimit(); err != nil {
		logf("could not raise RLIMIT_NOFILE: %v", err)
	} else {
		res.Settings.FileLimit = n
	}
	began := time.Now()
	b := &bench{cfg: c, root: root, res: res}
	err = b.run(ctx)
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		return 1
	}
	res.Summary = res.Summarize().JSON()
	res.Print(os.Stdout)
	if err := writeJSON(c.out, res); err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		return 1
	}
	fmt.Printf("\nresults: %s (%s in all)\n", c.out, time.Since(began).Round(time.Second))
	fmt.Println(res.Summarize().Line())
	return 0
}

// repoRoot finds the module root (the directory of go.mod) from the
// working directory upwards.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/kgateway-dev/kgateway-waypoint\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run meshbench inside the kgateway-waypoint repository")
		}
		dir = parent
	}
}

func machine() report.Machine {
	m := report.Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadBefore = strings.Join(f[:3], " ")
		}
	}
	return m
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// logf reports progress on stderr, keeping stdout for the table and the
// summary line.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// hboneTargets adds the native-HBONE rows beside the targets they are
// compared with (waypoint-hbone beside waypoint, haproxy-tls beside
// haproxy) when on, and removes them when off.
func hboneTargets(list []string, on bool) []string {
	var out []string
	for _, t := range list {
		if t == "waypoint-hbone" || t == "haproxy-tls" {
			if on && !slices.Contains(out, t) {
				out = append(out, t)
			}
			continue
		}
		out = append(out, t)
		if !on {
			continue
		}
		if t == "waypoint" && !slices.Contains(list, "waypoint-hbone") {
			out = append(out, "waypoint-hbone")
		}
		if t == "haproxy" && !slices.Contains(list, "haproxy-tls") {
			out = append(out, "haproxy-tls")
		}
	}
	return out
}
