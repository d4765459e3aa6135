// Package standalone runs a waypoint from manifest files: the files source
// (manifests and the mesh config file) and the translator are the Feed of
// the data-plane runner, in one process, with the files watched so that
// edits take effect within a second.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// Options are the standalone command's settings.
type Options struct {
	// Paths are manifest files or directories (-f).
	Paths []string
	// MeshConfig is Istio's mesh config file (--mesh-config); empty: Istio's
	// defaults. It is watched like the manifests.
	MeshConfig string
	// Gateway is "namespace/name"; empty picks the only Gateway of our class.
	Gateway string
	// DataPlane holds the listeners, telemetry and limits (its Debug and
	// Logger are set here).
	DataPlane dataplane.Options
	// Translate holds the translator's settings (class, trust domain, ...).
	Translate translate.Options
	Logger    *slog.Logger
}

// ParseGateway reads "namespace/name".
func ParseGateway(s string) (ir.NamespacedName, error) {
	if s == "" {
		return ir.NamespacedName{}, nil
	}
	n, ok := ir.ParseNamespacedName(s)
	if !ok {
		return ir.NamespacedName{}, fmt.Errorf("--gateway %q: want NAMESPACE/NAME", s)
	}
	return n, nil
}

// Feed reads the files, translates them and hands the result to the
// runner: at start, whenever the files change, and on Reload.
type Feed struct {
	src  files.Source
	opts translate.Options
	log  *slog.Logger

	mu      sync.Mutex
	install dataplane.Install
	result  *translate.Result // the last translation
}

// NewFeed makes the files feed.
func NewFeed(o Options) (*Feed, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	gw, err := ParseGateway(o.Gateway)
	if err != nil {
		return nil, err
	}
	o.Translate.Gateway = gw
	// The waypoint's node (--node-name) has no pod in the files: its
	// locality comes from its Node there.
	if o.Translate.NodeName == "" {
		o.Translate.NodeName = o.DataPlane.NodeName
	}
	return &Feed{src: files.Source{Paths: o.Paths, MeshConfig: o.MeshConfig, Logger: o.Logger},
		opts: o.Translate, log: o.Logger}, nil
}

// Run loads the files once, then again on every change, until ctx ends.
func (f *Feed) Run(ctx context.Context, install dataplane.Install) error {
	f.mu.Lock()
	f.install = install
	f.mu.Unlock()
	_ = install(f.load)
	return f.src.Watch(ctx, func() { _ = install(f.load) })
}

// Reload re-reads the files now (SIGHUP). It returns once they are in
// force, or why they are not (the configuration in force then stays).
func (f *Feed) Reload() error {
	f.mu.Lock()
	install := f.install
	f.mu.Unlock()
	if install == nil {
		return errors.New("the waypoint is not running")
	}
	return install(f.load)
}

// load reads and translates the files; the runner calls it under its lock.
func (f *Feed) load() (*ir.Waypoint, error) {
	snap, err := f.src.Load()
	var res *translate.Result
	if err == nil {
		res, err = translate.Translate(snap, f.opts)
	}
	if err != nil {
		var le *files.LoadError
		if errors.As(err, &le) {
			for _, oe := range le.Errors {
				f.log.Error("manifest rejected; keeping the last good configuration",
					"file", oe.File, "object", oe.Object, "reason", oe.Reason)
			}
		} else {
			f.log.Error("configuration rejected; keeping the last good configuration", "error", err.Error())
		}
		return nil, err
	}
	f.logConditionChanges(res)
	f.mu.Lock()
	f.result = res
	f.mu.Unlock()
	return res.Waypoint, nil
}

// logConditionChanges logs conditions that differ from the previous load.
func (f *Feed) logConditionChanges(res *translate.Result) {
	f.mu.Lock()
	prev := map[string]translate.Condition{}
	prevListeners := map[string]translate.Verdict{}
	if f.result != nil {
		for _, c := range f.result.Conditions {
			prev[c.Key()] = c
		}
		for _, l := range f.result.Gateway.Listeners {
			prevListeners[string(l.Name)] = l.Accepted
		}
	}
	f.mu.Unlock()
	gw := res.Waypoint.Gateway
	for _, l := range res.Gateway.Listeners {
		if p, ok := prevListeners[string(l.Name)]; (ok && p == l.Accepted) || l.Accepted.Status == "True" {
			continue
		}
		f.log.Warn("status", "kind", "Gateway", "namespace", gw.Namespace, "name", gw.Name, "listener", l.Name,
			"type", "Accepted", "status", l.Accepted.Status, "reason", l.Accepted.Reason, "message", l.Accepted.Message)
	}
	for _, c := range res.Conditions {
		if p, ok := prev[c.Key()]; ok && p.Status == c.Status && p.Reason == c.Reason && p.Message == c.Message {
			continue
		}
		lvl := slog.LevelInfo
		if c.Status == "False" || c.Type == "PartiallyInvalid" || c.Reason == "UnsupportedValue" {
			lvl = slog.LevelWarn
		}
		f.log.Log(context.Background(), lvl, "status", "kind", c.Kind, "namespace", c.Namespace, "name", c.Name,
			"parent", c.ParentName(), "type", c.Type, "status", c.Status, "reason", c.Reason, "message", c.Message)
	}
}

// Debug is the feed's part of GET /debug/status: the Gateway's verdict and
// the conditions of the last translation.
func (f *Feed) Debug() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]any{"feed": "files"}
	if f.result != nil {
		out["gateway"] = f.result.Waypoint.Gateway.String()
		out["accepted"] = f.result.Gateway.Accepted
		out["listeners"] = f.result.Gateway.Listeners
		out["conditions"] = f.result.Conditions
	}
	return out
}

// Runner is a running standalone waypoint: the data-plane runner and its
// files feed.
type Runner struct {
	*dataplane.Runner
	Feed *Feed
}

// Start loads the manifests, binds the listeners and serves until Close.
// It fails when the manifests cannot be loaded or name no waypoint, or when
// a listener cannot be bound.
func Start(o Options) (*Runner, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	feed, err := NewFeed(o)
	if err != nil {
		return nil, err
	}
	dp := o.DataPlane
	dp.Logger = o.Logger
	if gw := feed.opts.Gateway; dp.ServiceName == "" && gw.Name != "" {
		dp.ServiceName = gw.Name + "." + gw.Namespace
	}
	r, err := dataplane.Run(dp, feed, dataplane.RunOptions{RequireFirst: true})
	if err != nil {
		return nil, err
	}
	return &Runner{Runner: r, Feed: feed}, nil
}

// Reload re-reads the manifests now (SIGHUP; the watcher does the same).
func (r *Runner) Reload() error { return r.Feed.Reload() }
