package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/load"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/procstat"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/report"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/scale"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/targets"
	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
)

// scale runs the control-plane scale benchmark: for each size, load,
// translate, compile, one-route change and retained heap in this process,
// and the real binary's readiness time and RSS with that configuration;
// then, at the largest size, snapshot swaps under load.
func (b *bench) scale(ctx context.Context) error {
	if err := b.startBackend(); err != nil {
		return err
	}
	if b.env.WaypointBin == "" || !fileExists(b.env.WaypointBin) {
		b.env.WaypointBin = filepath.Join(b.env.Dir, "kgateway-waypoint")
		if err := buildWaypoint(ctx, b.root, b.env.WaypointBin); err != nil {
			return err
		}
	}
	reps := 5
	if b.cfg.quick {
		reps = 3
	}
	hot := [2]netip.AddrPort{b.env.Backend, b.env.Backend2}
	principal := "cluster.local/ns/" + targets.Namespace + "/sa/" + targets.ClientSA
	sc := &report.Scale{}
	b.res.Scale = sc
	var last *scale.Mesh
	var lastProxy *proxy.Proxy
	for _, n := range b.cfg.scaleSizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The previous size stays alive until it is replaced below; the
		// retained heap is a difference, so it does not count it.
		runtime.GC()
		debug.FreeOSMemory()
		m, err := scale.Build(n, hot, principal)
		if err != nil {
			return err
		}
		t, p, err := m.Measure(reps)
		if err != nil {
			return fmt.Errorf("%d services: %w", n, err)
		}
		c := m.Counts
		pt := &report.ScalePoint{
			Services: c.Services, Ports: c.Ports, Endpoints: c.Endpoints, HTTPRoutes: c.HTTPRoutes, Policies: c.Policies,
			ManifestsBytes: len(m.YAML), LoadMs: ms(m.LoadTime), TranslateMs: ms(t.Translate), CompileMs: ms(t.Compile), RouteChangeUpdateMs: ms(t.RouteChangeUpdate),
			UpdateToSnapshotMs: ms(t.RouteChange), RetainedMB: float64(t.RetainedBytes) / (1 << 20),
		}
		if err := b.binaryWithMesh(pt, m); err != nil {
			pt.BinaryNote = err.Error()
			b.note("binary with %d services: %v", n, err)
		}
		sc.Points = append(sc.Points, pt)
		logf("scale %d services: load %.0f ms, translate %.1f ms, compile %.1f ms, route change -> snapshot %.1f ms (update %.1f ms), retained heap %.1f MB, binary ready %.0f ms, rss %.1f MB",
			n, pt.LoadMs, pt.TranslateMs, pt.CompileMs, pt.UpdateToSnapshotMs, pt.RouteChangeUpdateMs, pt.RetainedMB, pt.StartupMs, pt.RSSMB)
		last, lastProxy = m, p
	}
	if last == nil {
		return nil
	}
	swap, err := b.swapUnderLoad(ctx, last, lastProxy)
	if err != nil {
		return fmt.Errorf("swap under load: %w", err)
	}
	sc.Swap = swap
	logf("swap under load (%d services): %d swaps, update p50 %.1f ms max %.1f ms, %d requests, %d failed, p99 %.3f ms",
		swap.Services, swap.Swaps, swap.SwapMs.P50, swap.SwapMs.Max, swap.Requests, swap.Failed, swap.Latency.P99)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// binaryWithMesh starts the real binary on the mesh's manifests and measures
// the time to ready and its RSS (VmRSS a moment after ready, and VmHWM).
// Standalone mode is the controller and the proxy in one process, so this
// is both.
func (b *bench) binaryWithMesh(pt *report.ScalePoint, m *scale.Mesh) error {
	dir := filepath.Join(b.env.Dir, fmt.Sprintf("mesh-%d", m.N))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), m.YAML, 0o644); err != nil {
		return err
	}
	in, err := targets.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	st, err := targets.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := targets.StartProc(b.env.Dir, fmt.Sprintf("waypoint-mesh-%d", m.N), "", b.env.WaypointBin,
		"standalone", "-f", dir, "--inbound-address", in.String(), "--status-address", st.String(), "--log-level", "warn",
		"--metrics-address", "127.0.0.1:0", "--admin-address", "off")
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := targets.WaitReady(p, st.String()); err != nil {
		return err
	}
	pt.StartupMs = ms(time.Since(start))
	settle := 2 * time.Second
	if b.cfg.quick {
		settle = time.Second
	}
	time.Sleep(settle)
	mem, err := procstat.Memory(p.PID())
	if err != nil {
		return err
	}
	pt.RSSMB, pt.PeakRSSMB = float64(mem.RSS)/(1<<20), float64(mem.Peak)/(1<<20)
	return nil
}

// swapUnderLoad serves the mesh from an in-process proxy (the same inbound
// listener and proxy packages as the binary) at the main rate, while the
// hot route changes every 100 ms: each change is translated and swapped in
// with proxy.Update. Every request must succeed.
func (b *bench) swapUnderLoad(ctx context.Context, m *scale.Mesh, p *proxy.Proxy) (*report.Swap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := inbound.NewServer(p, inbound.Options{})
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	defer p.Close()

	conns := b.cfg.conns[0]
	o := load.Options{
		Addr:  ln.Addr().String(),
		Conns: conns,
		Rate:  b.cfg.rate,
		Header: func(i int) ([]byte, error) {
			return meshclient.Conn{
				Source:      netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(41000+i)),
				Destination: netip.AddrPortFrom(meshgen.VIP(0), meshgen.HTTPPort),
				Identity:    targets.Identity(),
			}.Header()
		},
		Host:     fmt.Sprintf("%s.%s.svc.cluster.local:%d", meshgen.HotService.Name, meshgen.HotService.Namespace, meshgen.HTTPPort),
		Path:     "/",
		Expect:   meshgen.HotHeader,
		BodyLen:  targets.BodySize,
		Warmup:   b.cfg.warmup,
		Duration: b.cfg.swapDur,
	}
	swaps := hist.New()
	var swapErr error
	count := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			res, _, err := m.Translate(m.WithRouteValue(fmt.Sprintf("swap-%d", i)))
			if err != nil {
				swapErr = err
				return
			}
			start := time.Now()
			if err := p.Update(res.Waypoint); err != nil {
				swapErr = err
				return
			}
			swaps.Record(time.Since(start))
			count++
		}
	}()
	res, err := load.Run(ctx, o)
	close(stop)
	<-done
	if err != nil {
		return nil, err
	}
	if swapErr != nil {
		return nil, swapErr
	}
	return &report.Swap{
		Services: m.N, Swaps: count, SwapMs: swaps.Summary(), Rate: b.cfg.rate, Conns: conns,
		Requests: res.Requests, Failed: res.TotalErrors, FirstError: res.FirstError, Latency: res.Latency,
	}, nil
}
