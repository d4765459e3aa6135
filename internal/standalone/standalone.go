// Package standalone runs a waypoint from manifest files: the files source
// and the translator feeding the data plane in one process, with the files
// watched so that edits take effect within a second.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// Options are the standalone command's settings.
type Options struct {
	// Paths are manifest files or directories (-f).
	Paths []string
	// Gateway is "namespace/name"; empty picks the only Gateway of our class.
	Gateway string
	// InboundAddress is the PROXY listener; empty means 0.0.0.0 on the port
	// of the Gateway's istio.io/PROXY listener (15088).
	InboundAddress string
	// DataPlane holds the listeners, telemetry, limits and mesh settings
	// (its Debug and Logger are set here).
	DataPlane dataplane.Options
	// Translate holds the translator's settings (class, trust domain, ...).
	Translate translate.Options
	Logger    *slog.Logger
}

// Runner is a running standalone waypoint.
type Runner struct {
	*dataplane.DataPlane
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	result     *translate.Result
	lastError  string
	lastReload time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

// ParseGateway reads "namespace/name".
func ParseGateway(s string) (ir.NamespacedName, error) {
	if s == "" {
		return ir.NamespacedName{}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return ir.NamespacedName{}, fmt.Errorf("--gateway %q: want NAMESPACE/NAME", s)
	}
	return ir.NamespacedName{Namespace: ns, Name: name}, nil
}

// Start loads the manifests, binds the listeners and serves until Close.
// It fails when the manifests cannot be loaded or name no waypoint, or when
// a listener cannot be bound.
func Start(opts Options) (*Runner, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	gw, err := ParseGateway(opts.Gateway)
	if err != nil {
		return nil, err
	}
	opts.Translate.Gateway = gw
	for _, p := range opts.DataPlane.ExtAuthzProviders {
		// The waypoint dials its authorizers: resolve their Services.
		opts.Translate.Lookups = append(opts.Translate.Lookups, net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	}
	r := &Runner{opts: opts, log: opts.Logger, done: make(chan struct{})}
	dp := opts.DataPlane
	dp.Logger, dp.Debug = opts.Logger, r.debugStatus
	if dp.ServiceName == "" && gw.Name != "" {
		dp.ServiceName = gw.Name + "." + gw.Namespace
	}
	// The status listener answers 503 while we load.
	if r.DataPlane, err = dataplane.Start(dp); err != nil {
		return nil, err
	}
	res, err := r.load()
	if err != nil {
		r.DataPlane.Close()
		return nil, err
	}
	addr := opts.InboundAddress
	if addr == "" {
		addr = "0.0.0.0:" + strconv.Itoa(int(res.Waypoint.InboundPort))
	}
	if err := r.Listen(addr); err != nil {
		r.DataPlane.Close()
		return nil, err
	}
	r.SetReady(true)
	r.log.Info("waypoint ready", "gateway", res.Waypoint.Gateway.String(), "inbound", r.InboundAddr().String(),
		"status", r.StatusAddr().String(), "services", len(res.Waypoint.Services))

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = files.Watch(ctx, opts.Paths, r.log, func() { _ = r.Reload() })
	}()
	return r, nil
}

// load reads, translates and applies the manifests; on error the config in
// force is kept.
func (r *Runner) load() (*translate.Result, error) {
	snap, err := files.Load(r.opts.Paths, r.log)
	if err == nil {
		var res *translate.Result
		res, err = translate.Translate(snap, r.opts.Translate)
		if err == nil {
			err = r.Proxy.Update(res.Waypoint)
		}
		if err == nil {
			r.logConditionChanges(res)
			r.mu.Lock()
			r.result, r.lastError, r.lastReload = res, "", time.Now()
			r.mu.Unlock()
			return res, nil
		}
	}
	var le *files.LoadError
	if errors.As(err, &le) {
		for _, oe := range le.Errors {
			r.log.Error("manifest rejected; keeping the last good configuration",
				"file", oe.File, "object", oe.Object, "reason", oe.Reason)
		}
	} else {
		r.log.Error("configuration rejected; keeping the last good configuration", "error", err.Error())
	}
	r.mu.Lock()
	r.lastError = err.Error()
	r.mu.Unlock()
	return nil, err
}

// logConditionChanges logs conditions that differ from the previous load.
func (r *Runner) logConditionChanges(res *translate.Result) {
	r.mu.Lock()
	prev := map[string]translate.Condition{}
	prevListeners := map[string]translate.Verdict{}
	if r.result != nil {
		for _, c := range r.result.Conditions {
			prev[c.Key()] = c
		}
		for _, l := range r.result.Gateway.Listeners {
			prevListeners[string(l.Name)] = l.Accepted
		}
	}
	r.mu.Unlock()
	gw := res.Waypoint.Gateway
	for _, l := range res.Gateway.Listeners {
		if p, ok := prevListeners[string(l.Name)]; (ok && p == l.Accepted) || l.Accepted.Status == "True" {
			continue
		}
		r.log.Warn("status", "kind", "Gateway", "namespace", gw.Namespace, "name", gw.Name, "listener", l.Name,
			"type", "Accepted", "status", l.Accepted.Status, "reason", l.Accepted.Reason, "message", l.Accepted.Message)
	}
	for _, c := range res.Conditions {
		if p, ok := prev[c.Key()]; ok && p.Status == c.Status && p.Reason == c.Reason && p.Message == c.Message {
			continue
		}
		lvl := slog.LevelInfo
		if c.Status == "False" || c.Type == "PartiallyInvalid" {
			lvl = slog.LevelWarn
		}
		r.log.Log(context.Background(), lvl, "status", "kind", c.Kind, "namespace", c.Namespace, "name", c.Name,
			"parent", c.ParentName(), "type", c.Type, "status", c.Status, "reason", c.Reason, "message", c.Message)
	}
}

// Reload re-reads the manifests now (the watcher calls it; so does SIGHUP).
func (r *Runner) Reload() error {
	res, err := r.load()
	if err == nil {
		r.log.Info("configuration applied", "version", r.Proxy.Version(), "services", len(res.Waypoint.Services))
	}
	return err
}

// Version is the number of configurations applied.
func (r *Runner) Version() uint64 { return r.Proxy.Version() }

// debugStatus is the JSON of GET /debug/status.
func (r *Runner) debugStatus() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]any{"lastError": r.lastError}
	if r.DataPlane != nil {
		out["version"] = r.Proxy.Version()
	}
	if r.result != nil {
		out["gateway"] = r.result.Waypoint.Gateway.String()
		out["accepted"] = r.result.Gateway.Accepted
		out["listeners"] = r.result.Gateway.Listeners
		out["conditions"] = r.result.Conditions
	}
	return out
}

// Drain shuts down gracefully (see dataplane.DataPlane.Drain) and stops
// watching the files.
func (r *Runner) Drain() bool {
	r.stopWatching()
	return r.DataPlane.Drain()
}

// Close stops serving at once.
func (r *Runner) Close() {
	r.stopWatching()
	r.DataPlane.Close()
}

func (r *Runner) stopWatching() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}
