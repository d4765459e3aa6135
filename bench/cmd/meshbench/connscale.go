package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/load"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/procstat"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/report"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/targets"
)

func raiseFileLimit() (uint64, error) { return targets.RaiseFileLimit() }

// connScale is the connection-scale row. Each proxy in turn (a fresh
// instance, nothing else running against it) is warmed up, then holds
// cfg.idleConns idle keep-alive connections (PROXY v2 header, one request,
// then nothing) while cfg.activeConn other connections carry cfg.rate
// requests per second spread over them. It measures the memory each idle
// connection costs and the CPU per request at that load.
func (b *bench) connScale(ctx context.Context, subjects []*subject) error {
	cs := &report.ConnScale{Idle: b.cfg.idleConns, Active: b.cfg.activeConn, Rate: b.cfg.rate, DurationSec: b.cfg.connDur.Seconds()}
	b.res.ConnScale = cs
	// The generator and each proxy hold one descriptor per connection, and
	// a few hundred more (listeners, upstream connections, files).
	need := uint64(b.cfg.idleConns + b.cfg.activeConn + 512)
	limit := targets.FileLimit()
	for _, tr := range b.res.Targets {
		if tr.Name == "direct" {
			continue
		}
		ct := &report.ConnScaleTarget{Name: tr.Name}
		cs.Targets = append(cs.Targets, ct)
		var s *subject
		for _, x := range subjects {
			if x.report == tr {
				s = x
			}
		}
		switch {
		case tr.Name == "waypoint-hbone" || tr.Name == "haproxy-tls":
			ct.Skipped = "not measured: the row's idle connections are PROXY v2 ones (the HBONE and TLS rows are the latency and saturation rows only)"
			continue
		case s == nil:
			ct.Skipped = "not measured: " + firstLine(tr.Skipped)
			continue
		case limit < need:
			ct.Skipped = fmt.Sprintf("RLIMIT_NOFILE is %d; the generator and each proxy need %d (raise the hard limit, or --idle-conns)", limit, need)
			continue
		}
		if err := b.connScaleOne(ctx, s, ct); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ct.Skipped = "failed: " + err.Error()
			b.note("connection scale, %s: %v", tr.Name, err)
			continue
		}
		logf("%s connection scale: %d idle conns cost %.1f KB each (anon %.1f KB); %d active at %.0f/s: %d ok, %d errors, cpu %.1f ms/1k, rss %.1f MB, %d idle closed%s",
			ct.Name, cs.Idle, ct.PerIdleKB, ct.PerIdleAnonKB, cs.Active, cs.Rate, ct.Requests, ct.Errors, ct.CPUMsPer1k, ct.RSSMB, ct.IdleClosed, errSuffix(ct.FirstError))
	}
	return nil
}

func (b *bench) connScaleOne(ctx context.Context, s *subject, ct *report.ConnScaleTarget) error {
	idle, active := b.cfg.idleConns, b.cfg.activeConn
	logf("%s: starting for %d connections", s.report.Name, idle+active)
	t, err := s.start(b.env, targets.Opts{Conns: idle + active})
	if err != nil {
		return err
	}
	defer t.Stop()
	pid := t.Proc.PID()
	settle := time.Second
	if b.cfg.quick {
		settle = 500 * time.Millisecond
	}

	// Warm up (first requests, upstream connections, lazy set-up) on a few
	// connections that are closed again before the baseline.
	warm := b.loadOptions(t, b.cfg.conns[0])
	warm.Rate, warm.Warmup, warm.Duration = b.cfg.rate, 0, b.cfg.warmup
	if res, err := load.Run(ctx, warm); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	} else if res.TotalErrors > 0 {
		return fmt.Errorf("warm-up: %d errors, first: %s", res.TotalErrors, res.FirstError)
	}
	time.Sleep(settle)
	base, err := procstat.Memory(pid)
	if err != nil {
		return err
	}

	logf("%s: opening %d idle connections", s.report.Name, idle)
	opened := time.Now()
	set, err := load.OpenIdle(ctx, load.IdleOptions{
		Addr: t.Addr, Conns: idle, Header: proxyHeader, Source: load.LoopbackSource,
		Host: warm.Host, Path: warm.Path, Expect: warm.Expect, BodyLen: warm.BodyLen,
	})
	if err != nil {
		return err
	}
	defer set.Close()
	ct.OpenSec = time.Since(opened).Seconds()
	time.Sleep(settle)
	with, err := procstat.Memory(pid)
	if err != nil {
		return err
	}
	ct.BaseRSSMB, ct.BaseAnonMB = mb(base.RSS), mb(base.Anon)
	ct.IdleRSSMB, ct.IdleAnonMB = mb(with.RSS), mb(with.Anon)
	ct.PerIdleKB = float64(with.RSS-base.RSS) / float64(idle) / 1024
	ct.PerIdleAnonKB = float64(with.Anon-base.Anon) / float64(idle) / 1024

	// The active load, next to the idle connections: one scheduler spreads
	// the rate over the connections; the PROXY headers carry other source
	// ports than the idle ones'.
	o := b.loadOptions(t, active)
	o.Rate, o.Duration, o.Dispatch, o.ReadBuffer = b.cfg.rate, b.cfg.connDur, true, 4<<10
	o.Header = func(i int) ([]byte, error) { return proxyHeader(idle + i) }
	w := &window{pid: pid}
	o.OnWindow = w.on
	res, err := load.Run(ctx, o)
	if err != nil {
		return err
	}
	if t.Proc.Exited() {
		return fmt.Errorf("%s exited during the run: %s", s.report.Name, t.Proc.LogTail())
	}
	ct.IdleClosed = set.Closed()
	ct.Requests, ct.Errors, ct.TotalErrors, ct.FirstError, ct.Latency = res.Requests, res.Errors, res.TotalErrors, res.FirstError, res.Latency
	run := &report.Run{}
	w.fill(run, res.Requests)
	ct.CPUMsPer1k, ct.RSSMB, ct.RSSAnonMB, ct.RSSFileMB = run.CPUMsPer1k, run.RSSMB, run.RSSAnonMB, run.RSSFileMB
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
