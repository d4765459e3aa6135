package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/load"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/procstat"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/report"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/targets"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

type bench struct {
	cfg     config
	root    string
	res     *report.Results
	env     *targets.Env
	backend *targets.Proc
	self    string
	allCPUs string
}

func (b *bench) cleanup() {
	if b.env != nil {
		b.env.StandIn.Stop()
	}
	b.backend.Stop()
	if b.env != nil && !b.cfg.keep {
		_ = os.RemoveAll(b.env.Dir)
	} else if b.env != nil {
		logf("scratch directory kept: %s", b.env.Dir)
	}
}

func (b *bench) note(format string, args ...any) {
	b.res.Notes = append(b.res.Notes, fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "meshbench-")
	if err != nil {
		return err
	}
	b.env = &targets.Env{Dir: dir}
	b.self, err = os.Executable()
	if err != nil {
		return err
	}
	b.allCPUs = fmt.Sprintf("0-%d", b.res.Machine.NProc-1)
	if b.cfg.dataPlane {
		if err := b.dataPlane(ctx); err != nil {
			return err
		}
	}
	if b.cfg.scale {
		if err := b.phase("scale", func() error { return b.scale(ctx) }); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// phase runs fn and records how much CPU other processes on the machine
// used meanwhile (all busy time minus this process and its children).
func (b *bench) phase(name string, fn func() error) error {
	busy0, _ := procstat.MachineBusy()
	own0, _ := procstat.CPU(os.Getpid())
	start := time.Now()
	err := fn()
	busy1, _ := procstat.MachineBusy()
	own1, _ := procstat.CPU(os.Getpid())
	if b.res.Background == nil {
		b.res.Background = map[string]float64{}
	}
	// Children that already exited are not in the tree any more; clamp.
	other := (busy1 - busy0) - (own1 - own0)
	b.res.Background[name] = max(0, other.Seconds()/time.Since(start).Seconds())
	return err
}

// buildWaypoint builds the real binary from this tree.
func buildWaypoint(ctx context.Context, root, out string) error {
	return buildCmd(ctx, root, out, "./cmd/kgateway-waypoint")
}

// buildCmd builds one of this tree's commands into out.
func buildCmd(ctx context.Context, root, out, pkg string) error {
	logf("building %s: go build -o %s %s", filepath.Base(pkg), out, pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the waypoint: %w: %s", err, b)
	}
	return nil
}

// startBackend starts the backend process once.
func (b *bench) startBackend() error {
	if b.backend != nil {
		return nil
	}
	p, err := targets.StartBackend(b.env, b.self)
	if err != nil {
		return err
	}
	b.backend = p
	logf("backend (1 KB responses) on %s and %s, h2c on %s", b.env.Backend, b.env.Backend2, b.env.BackendH2C)
	return nil
}

// startStandIn creates the mesh certificates and starts the destination
// ztunnel's stand-in in front of the backend (the HBONE rows).
func (b *bench) startStandIn() error {
	certs, err := targets.NewMeshCerts(filepath.Join(b.env.Dir, "certs"))
	if err != nil {
		return err
	}
	b.env.Certs = certs
	p, err := targets.StartZtunnelStandIn(b.env, b.self)
	if err != nil {
		return err
	}
	b.env.StandIn = p
	logf("ztunnel stand-in (destination of the HBONE rows): HBONE on %s, TLS on %s, in front of %s", b.env.StandInHBONE, b.env.StandInTLS, b.env.Backend)
	return nil
}

func (b *bench) want(name string) bool { return slices.Contains(b.cfg.targets, name) }

func (b *bench) dataPlane(ctx context.Context) error {
	// The waypoint: the real binary, built from this tree.
	b.env.WaypointBin = filepath.Join(b.env.Dir, "kgateway-waypoint")
	if b.want("waypoint") || b.want("waypoint-hbone") {
		if err := buildWaypoint(ctx, b.root, b.env.WaypointBin); err != nil {
			return err
		}
	}
	// The waypoint as a cluster's pods run it: the data-plane-only binary
	// fed over xDS.
	b.env.ProxyBin = filepath.Join(b.env.Dir, "kgateway-waypoint-proxy")
	if b.want("waypoint-proxy") {
		if err := buildCmd(ctx, b.root, b.env.ProxyBin, "./cmd/kgateway-waypoint-proxy"); err != nil {
			return err
		}
	}
	if err := b.startBackend(); err != nil {
		return err
	}
	if b.want("waypoint-hbone") || b.want("haproxy-tls") {
		if err := b.startStandIn(); err != nil {
			return err
		}
	}

	plan := []struct {
		name, bin, pkg string
		start          starter
	}{
		{"direct", "", "", func(e *targets.Env, _ targets.Opts) (*targets.Target, error) { return targets.Direct(e), nil }},
		{"waypoint", "", "", targets.StartWaypoint},
		{"waypoint-proxy", "", "", targets.StartWaypointProxy},
		{"haproxy", "haproxy", "haproxy", targets.StartHAProxy},
		{"nginx", "nginx", "nginx", targets.StartNginx},
		{"caddy", "", "", targets.StartCaddy},
		// The native-HBONE rows (--hbone): mTLS in and out.
		{"waypoint-hbone", "", "", targets.StartWaypointHBONE},
		{"haproxy-tls", "haproxy", "haproxy", targets.StartHAProxyTLS},
	}
	var subjects []*subject
	for _, p := range plan {
		if !b.want(p.name) {
			continue
		}
		tr := &report.Target{Name: p.name}
		b.res.Targets = append(b.res.Targets, tr)
		if p.bin != "" {
			if err := targets.Ensure(ctx, p.bin, p.pkg, logf); err != nil {
				tr.Skipped = err.Error()
				b.note("%s skipped: %v", p.name, err)
				continue
			}
		}
		if p.name == "caddy" {
			// Debian 12's caddy (2.6.2) has no proxy_protocol listener
			// wrapper: the pinned build of hack/caddy instead.
			bin, err := targets.BuildCaddy(ctx, b.root, logf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				tr.Skipped = err.Error()
				b.note("%s skipped: %v", p.name, err)
				continue
			}
			b.env.CaddyBin = bin
		}
		tr.Version = version(p.name, b.root, b.env)
		subjects = append(subjects, &subject{report: tr, start: p.start})
	}
	if err := b.phase("latency", func() error { return b.latency(ctx, subjects) }); err != nil {
		return err
	}
	if err := b.phase("saturation", func() error { return b.saturation(ctx, subjects) }); err != nil {
		return err
	}
	if b.cfg.connScale {
		if err := b.phase("conn-scale", func() error { return b.connScale(ctx, subjects) }); err != nil {
			return err
		}
	}
	if b.cfg.profile != "" && b.want("waypoint") {
		if err := b.profileWaypoint(ctx); err != nil {
			b.note("profile failed: %v", err)
		}
	}
	return nil
}

type starter func(*targets.Env, targets.Opts) (*targets.Target, error)

// subject is one target being measured.
type subject struct {
	report *report.Target
	start  starter
	t      *targets.Target // while running
}

func (s *subject) stop() {
	if s.t != nil {
		s.t.Stop()
		s.t = nil
	}
}

// startAll starts every subject, pinned to cpus when not empty.
func (b *bench) startAll(subjects []*subject, cpus string) error {
	for _, s := range subjects {
		logf("%s: starting%s", s.report.Name, map[bool]string{true: " pinned to cpu " + cpus, false: ""}[cpus != "" && s.report.Name != "direct"])
		t, err := s.start(b.env, targets.Opts{CPUs: cpus})
		if err != nil {
			for _, s := range subjects {
				s.stop()
			}
			return fmt.Errorf("%s: %w", s.report.Name, err)
		}
		s.t = t
	}
	return nil
}

// checkAlive fails when a proxy died during a run.
func checkAlive(s *subject) error {
	if s.t.Proc != nil && s.t.Proc.Exited() {
		return fmt.Errorf("%s exited during the run: %s", s.report.Name, s.t.Proc.LogTail())
	}
	return nil
}

// latency runs the fixed-rate runs. All targets run side by side and every
// run is split into rounds that take turns, so that whatever else the
// machine is doing meanwhile falls on every target alike.
func (b *bench) latency(ctx context.Context, subjects []*subject) error {
	if err := b.startAll(subjects, ""); err != nil {
		return err
	}
	defer func() {
		for _, s := range subjects {
			s.stop()
		}
	}()
	type runSpec struct {
		proto string
		conns int
		dur   time.Duration
	}
	specs := []runSpec{{"http1", b.cfg.conns[0], b.cfg.mainDur}}
	for _, c := range b.cfg.conns[1:] {
		specs = append(specs, runSpec{"http1", c, b.cfg.otherDur})
	}
	if b.cfg.h2c {
		specs = append(specs, runSpec{"h2c", b.cfg.conns[0], b.cfg.otherDur})
	}
	for _, spec := range specs {
		accs := make([]*acc, len(subjects))
		for i := range accs {
			accs[i] = newAcc()
		}
		for round := 0; round < b.cfg.rounds; round++ {
			for k := range subjects {
				i := (k + round) % len(subjects) // rotate who goes first
				s := subjects[i]
				if spec.proto == "h2c" && s.t.H2CAddr == "" {
					continue
				}
				o := b.loadOptions(s.t, spec.conns)
				o.Rate, o.Duration = b.cfg.rate, spec.dur/time.Duration(b.cfg.rounds)
				if spec.proto == "h2c" {
					o.H2C, o.Addr = true, s.t.H2CAddr
				}
				var w *window
				if s.t.Proc != nil {
					w = accs[i].w
					w.pid = s.t.Proc.PID()
					o.OnWindow = w.on
				}
				accs[i].watchTerminator(s.t, &o)
				res, err := load.Run(ctx, o)
				if err != nil {
					return fmt.Errorf("%s: %w", s.report.Name, err)
				}
				accs[i].add(res)
				if err := checkAlive(s); err != nil {
					return err
				}
			}
		}
		for i, s := range subjects {
			a := accs[i]
			if a.runs == 0 {
				continue
			}
			run := &report.Run{
				Proto: spec.proto, Conns: spec.conns, Rate: b.cfg.rate, Requests: a.requests, Errors: a.errors,
				TotalErrors: a.total, FirstError: a.firstErr, Latency: a.latency.Summary(), SendLag: a.lag.Summary(),
			}
			if s.t.Proc != nil {
				a.w.fill(run, a.requests)
			}
			if s.t.Terminator != nil && a.requests > 0 {
				run.TerminatorCPUMsPer1k = float64(a.tw.cpu.Milliseconds()) / (float64(a.requests) / 1000)
			}
			s.report.Runs = append(s.report.Runs, run)
			logf("%s %s %d conns @%.0f/s: %d ok, %d errors, p50 %.3f p99 %.3f p99.9 %.3f ms, cpu %.1f ms/1k, rss %.1f MB%s",
				s.report.Name, spec.proto, spec.conns, b.cfg.rate, run.Requests, run.Errors, run.Latency.P50, run.Latency.P99,
				run.Latency.P999, run.CPUMsPer1k, run.RSSMB, errSuffix(run.FirstError))
		}
	}
	return nil
}

// acc accumulates the rounds of one run of one target.
type acc struct {
	latency, lag            *hist.H
	requests, errors, total int64
	firstErr                string
	runs                    int
	w                       *window
	tw                      *window // the target's Terminator
}

func newAcc() *acc { return &acc{latency: hist.New(), lag: hist.New(), w: &window{}, tw: &window{}} }

// watchTerminator has o's measured window sample t's Terminator (the
// ztunnel stand-in) too, apart from the proxy.
func (a *acc) watchTerminator(t *targets.Target, o *load.Options) {
	if t.Terminator == nil {
		return
	}
	a.tw.pid = t.Terminator.PID()
	prev := o.OnWindow
	o.OnWindow = func(open bool) {
		if prev != nil {
			prev(open)
		}
		a.tw.on(open)
	}
}

func (a *acc) add(r *load.Result) {
	a.runs++
	a.latency.Merge(r.LatencyHist)
	a.lag.Merge(r.LagHist)
	a.requests += r.Requests
	a.errors += r.Errors
	a.total += r.TotalErrors
	if a.firstErr == "" {
		a.firstErr = r.FirstError
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (first error: " + e + ")"
}

// saturation runs closed loop with every proxy pinned to the last core and
// the generator and the backend pinned to the others, targets taking turns.
func (b *bench) saturation(ctx context.Context, subjects []*subject) error {
	n := b.res.Machine.NProc
	proxyCPU, restCPU := "", ""
	if n >= 2 {
		proxyCPU, restCPU = fmt.Sprint(n-1), fmt.Sprintf("0-%d", n-2)
	}
	if err := b.startAll(subjects, proxyCPU); err != nil {
		return err
	}
	defer func() {
		for _, s := range subjects {
			s.stop()
		}
	}()
	if restCPU != "" {
		if err := targets.Pin(os.Getpid(), restCPU); err != nil {
			return err
		}
		if err := targets.Pin(b.backend.PID(), restCPU); err != nil {
			return err
		}
		// The stand-in is the backend pod's ztunnel: on the backend's side.
		if b.env.StandIn != nil {
			if err := targets.Pin(b.env.StandIn.PID(), restCPU); err != nil {
				return err
			}
		}
		defer func() {
			_ = targets.Pin(os.Getpid(), b.allCPUs)
			_ = targets.Pin(b.backend.PID(), b.allCPUs)
			if b.env.StandIn != nil {
				_ = targets.Pin(b.env.StandIn.PID(), b.allCPUs)
			}
		}()
	}
	accs := make([]*acc, len(subjects))
	for i := range accs {
		accs[i] = newAcc()
	}
	for round := 0; round < b.cfg.rounds; round++ {
		for k := range subjects {
			i := (k + round) % len(subjects)
			s := subjects[i]
			o := b.loadOptions(s.t, b.cfg.satConns)
			o.Duration = b.cfg.satDur / time.Duration(b.cfg.rounds)
			if s.t.Proc != nil {
				accs[i].w.pid = s.t.Proc.PID()
				o.OnWindow = accs[i].w.on
			}
			accs[i].watchTerminator(s.t, &o)
			res, err := load.Run(ctx, o)
			if err != nil {
				return fmt.Errorf("%s: %w", s.report.Name, err)
			}
			accs[i].add(res)
			if err := checkAlive(s); err != nil {
				return err
			}
		}
	}
	for i, s := range subjects {
		a := accs[i]
		window := time.Duration(a.runs) * (b.cfg.satDur / time.Duration(b.cfg.rounds))
		sat := &report.Saturation{Conns: b.cfg.satConns, Throughput: float64(a.requests) / window.Seconds(),
			Errors: a.errors, TotalErrors: a.total, FirstError: a.firstErr, Latency: a.latency.Summary()}
		if s.t.Proc != nil && a.w.wall > 0 {
			sat.ProxyCores = a.w.cpu.Seconds() / a.w.wall.Seconds()
			if sat.ProxyCores > 0 {
				sat.PerCore = sat.Throughput / sat.ProxyCores
			}
		}
		if s.t.Terminator != nil && a.tw.wall > 0 {
			sat.TerminatorCores = a.tw.cpu.Seconds() / a.tw.wall.Seconds()
		}
		s.report.Saturation = sat
		logf("%s saturation (%d conns): %.0f req/s, %d errors, proxy %.2f cores, p99 %.3f ms%s",
			s.report.Name, b.cfg.satConns, sat.Throughput, sat.Errors, sat.ProxyCores, sat.Latency.P99, errSuffix(sat.FirstError))
	}
	return nil
}

// window samples a process over measured windows (accumulating across
// rounds): CPU time, and VmRSS, RssAnon and RssFile every 250 ms.
type window struct {
	pid             int
	cpu0            time.Duration
	t0              time.Time
	cpu, wall       time.Duration
	mu              sync.Mutex
	rss, anon, file []int64
	peak            int64
	stop, done      chan struct{}
}

func (w *window) on(open bool) {
	if open {
		w.cpu0, _ = procstat.CPU(w.pid)
		w.t0 = time.Now()
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.sample()
		return
	}
	c, _ := procstat.CPU(w.pid)
	w.cpu += c - w.cpu0
	w.wall += time.Since(w.t0)
	close(w.stop)
	<-w.done
	if m, err := procstat.Memory(w.pid); err == nil {
		w.peak = m.Peak
	}
}

func (w *window) sample() {
	defer close(w.done)
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	for {
		if m, err := procstat.Memory(w.pid); err == nil {
			w.mu.Lock()
			w.rss, w.anon, w.file = append(w.rss, m.RSS), append(w.anon, m.Anon), append(w.file, m.File)
			w.mu.Unlock()
		}
		select {
		case <-w.stop:
			return
		case <-tk.C:
		}
	}
}

func (w *window) fill(run *report.Run, requests int64) {
	if requests > 0 {
		run.CPUMsPer1k = float64(w.cpu.Milliseconds()) / (float64(requests) / 1000)
	}
	if w.wall > 0 {
		run.CPUCores = w.cpu.Seconds() / w.wall.Seconds()
	}
	run.RSSMB, run.RSSAnonMB, run.RSSFileMB = w.memory()
	run.PeakRSSMB = float64(w.peak) / (1 << 20)
}

// memory is the medians of the samples, in MB (0 without samples).
func (w *window) memory() (rss, anon, file float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return medianMB(w.rss), medianMB(w.anon), medianMB(w.file)
}

func medianMB(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / (1 << 20)
}

// version names what was measured.
func version(name, root string, env *targets.Env) string {
	switch name {
	case "caddy":
		// `caddy version` says "unknown" for a build from the module proxy;
		// the binary's build information has the module version.
		return "caddy " + targets.CaddyVersion(env.CaddyBin)
	case "haproxy", "haproxy-tls":
		out, _ := exec.Command("haproxy", "-v").CombinedOutput()
		return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	case "nginx":
		out, _ := exec.Command("nginx", "-v").CombinedOutput()
		return strings.TrimSpace(string(out))
	case "waypoint", "waypoint-proxy", "waypoint-hbone":
		cmd := exec.Command("git", "describe", "--always", "--dirty")
		cmd.Dir = root
		out, _ := cmd.Output()
		return "kgateway-waypoint " + strings.TrimSpace(string(out))
	}
	return ""
}

// profileWaypoint runs the standalone waypoint under pprof (the same code
// as the binary's standalone command, see profiled.go) for the main load,
// and keeps `go tool pprof -top` of it.
func (b *bench) profileWaypoint(ctx context.Context) error {
	mdir := filepath.Join(b.env.Dir, "waypoint-manifests")
	in, err := targets.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	st, err := targets.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	logf("profiling the waypoint at %.0f req/s over %d conns for %s", b.cfg.rate, b.cfg.conns[0], b.cfg.mainDur)
	cmd := exec.Command(b.self, "waypoint-profiled", "-f", mdir, "--inbound-address", in.String(),
		"--status-address", st.String(), "--cpu-profile", b.cfg.profile)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := waitHTTPReady(st.String(), done); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	t := &targets.Target{Name: "waypoint", Addr: in.String(), PROXY: true}
	o := b.loadOptions(t, b.cfg.conns[0])
	o.Rate, o.Duration = b.cfg.rate, b.cfg.mainDur
	res, lerr := load.Run(ctx, o)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		return fmt.Errorf("profiled waypoint: %w", err)
	}
	if lerr != nil {
		return lerr
	}
	if res.TotalErrors > 0 {
		b.note("profile run had %d errors: %s", res.TotalErrors, res.FirstError)
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", b.cfg.profile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	b.res.Profile = string(out)
	logf("CPU profile: %s", b.cfg.profile)
	return nil
}

// proxyHeader is connection i's PROXY v2 header, as the client pod's
// ztunnel writes it: source, the service VIP:port dialled, TLV 0xD0.
func proxyHeader(i int) ([]byte, error) {
	return meshclient.Conn{
		Source:      netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(40000+i%25000)),
		Destination: netip.AddrPortFrom(targets.ServiceVIP, targets.ServicePort),
		Identity:    targets.Identity(),
	}.Header()
}

// loadOptions are the generator's settings for target t: the same for every
// target, except that the direct path gets no PROXY header and no added
// response header to check.
func (b *bench) loadOptions(t *targets.Target, conns int) load.Options {
	o := load.Options{
		Addr:    t.Addr,
		Conns:   conns,
		Host:    fmt.Sprintf("%s.%s.svc.cluster.local:%d", targets.ServiceName, targets.Namespace, targets.ServicePort),
		Path:    "/",
		BodyLen: targets.BodySize,
		Warmup:  b.cfg.warmup,
	}
	if t.PROXY {
		o.Header = proxyHeader
		o.Expect = targets.AddedHeader
	}
	if t.Dial != nil { // an HBONE stream or a TLS connection, its client identity in the certificate
		o.Dial = t.Dial
		o.Expect = targets.AddedHeader
	}
	return o
}
