// Package xdsproxy runs the waypoint proxy of a cluster: the data plane of
// the standalone mode (internal/dataplane) fed by the controller over xDS
// instead of by files. It serves its last configuration while the
// controller is unreachable and is ready only once a first configuration
// is applied.
package xdsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// Options of the proxy command.
type Options struct {
	// XDSAddress is the controller's xDS service (host:port).
	XDSAddress string
	// Gateway is the waypoint this proxy runs.
	Gateway ir.NamespacedName
	// Token returns the bearer token (xds.TokenFile reads the projected one).
	Token func() (string, error)
	// NodeID names the proxy to the controller (the pod name).
	NodeID string
	// InboundAddress is the PROXY listener (0.0.0.0:15088).
	InboundAddress string
	// DataPlane holds the listeners, telemetry, limits and drain settings
	// (its Debug and Logger are set here).
	DataPlane dataplane.Options
	Logger    *slog.Logger
}

// Runner is a running proxy.
type Runner struct {
	*dataplane.DataPlane
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	applied *ir.Waypoint
	version int
	lastErr string

	cancel context.CancelFunc
	done   chan struct{}
}

// Start binds the listeners and starts the xDS subscription.
func Start(o Options) (*Runner, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InboundAddress == "" {
		o.InboundAddress = "0.0.0.0:15088"
	}
	if o.Gateway.Name == "" || o.Gateway.Namespace == "" {
		return nil, errors.New("the waypoint Gateway (namespace/name) is required")
	}
	if o.XDSAddress == "" {
		return nil, errors.New("the xDS address is required")
	}
	r := &Runner{opts: o, log: o.Logger, done: make(chan struct{})}
	dp := o.DataPlane
	dp.Logger, dp.Debug = o.Logger, r.debugStatus
	if dp.ServiceName == "" {
		dp.ServiceName = o.Gateway.Name + "." + o.Gateway.Namespace
	}
	var err error
	if r.DataPlane, err = dataplane.Start(dp); err != nil {
		return nil, err
	}
	if err := r.Listen(o.InboundAddress); err != nil {
		r.DataPlane.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cl := &xds.Client{Address: o.XDSAddress, Gateway: o.Gateway, NodeID: o.NodeID, Token: o.Token,
		Apply: r.apply, Logger: o.Logger}
	go func() {
		defer close(r.done)
		_ = cl.Run(ctx)
	}()
	r.log.Info("waypoint proxy started; waiting for its configuration", "gateway", o.Gateway.String(),
		"xds", o.XDSAddress, "inbound", r.InboundAddr().String(), "status", r.StatusAddr().String())
	return r, nil
}

// apply installs one configuration from the controller.
func (r *Runner) apply(w *ir.Waypoint) error {
	if w.Gateway != r.opts.Gateway {
		return fmt.Errorf("configuration for %s, this proxy runs %s", w.Gateway, r.opts.Gateway)
	}
	if err := r.Proxy.Update(w); err != nil {
		r.mu.Lock()
		r.lastErr = err.Error()
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	first := r.applied == nil
	r.applied, r.lastErr = w, ""
	r.version++
	r.mu.Unlock()
	if first {
		r.SetReady(true)
		r.log.Info("waypoint ready", "gateway", w.Gateway.String(), "services", len(w.Services))
	}
	return nil
}

// Version counts the configurations applied.
func (r *Runner) Version() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

func (r *Runner) debugStatus() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]any{"gateway": r.opts.Gateway.String(), "xds": r.opts.XDSAddress,
		"configurations": r.version, "lastError": r.lastErr}
	if r.applied != nil {
		out["services"] = len(r.applied.Services)
	}
	return out
}

// Drain shuts down gracefully (see dataplane.DataPlane.Drain); the xDS
// subscription ends with it.
func (r *Runner) Drain() bool {
	ok := r.DataPlane.Drain()
	r.stop()
	return ok
}

// Close stops everything at once.
func (r *Runner) Close() {
	r.stop()
	r.DataPlane.Close()
}

func (r *Runner) stop() {
	r.cancel()
	<-r.done
}
