// Package xdsproxy runs the waypoint proxy of a cluster: the data plane of
// the standalone mode (proxy, PROXY-protocol inbound, status endpoint) fed by
// the controller over xDS instead of by files. It serves its last
// configuration while the controller is unreachable and is ready only once
// a first configuration is applied.
package xdsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
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
	// StatusAddress serves /healthz/ready (0.0.0.0:15021).
	StatusAddress string
	// MetricsAddress serves Prometheus /stats/prometheus (0.0.0.0:15020;
	// "off" disables it).
	MetricsAddress string
	// ServerHeader is the "server" response header ("envoy").
	ServerHeader string
	// DrainDelay and DrainTimeout shape the SIGTERM drain (5s, 30s).
	DrainDelay, DrainTimeout time.Duration
	Logger                   *slog.Logger
}

// Runner is a running proxy.
type Runner struct {
	opts    Options
	log     *slog.Logger
	proxy   *proxy.Proxy
	inbound *inbound.Server
	inLn    net.Listener
	status  *http.Server
	stLn    net.Listener
	tel     *telemetry.Telemetry
	metrics *http.Server
	mLn     net.Listener

	mu      sync.Mutex
	ready   bool
	applied *ir.Waypoint
	version int
	lastErr string

	cancel context.CancelFunc
	done   chan struct{}
	errc   chan error
}

// Start binds the listeners and starts the xDS subscription.
func Start(o Options) (*Runner, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InboundAddress == "" {
		o.InboundAddress = "0.0.0.0:15088"
	}
	if o.StatusAddress == "" {
		o.StatusAddress = "0.0.0.0:15021"
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = "0.0.0.0:15020"
	}
	if o.Gateway.Name == "" || o.Gateway.Namespace == "" {
		return nil, errors.New("the waypoint Gateway (namespace/name) is required")
	}
	if o.XDSAddress == "" {
		return nil, errors.New("the xDS address is required")
	}
	tel, err := telemetry.New(telemetry.Options{Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	r := &Runner{opts: o, log: o.Logger, tel: tel, done: make(chan struct{}), errc: make(chan error, 2),
		proxy: proxy.New(proxy.Options{ServerHeader: o.ServerHeader, Logger: o.Logger, Telemetry: tel,
			Upstream: upstream.Options{OnDial: tel.UpstreamDialed, OnClose: tel.UpstreamConnClosed}})}
	r.stLn, err = net.Listen("tcp", o.StatusAddress)
	if err != nil {
		return nil, fmt.Errorf("status address: %w", err)
	}
	r.status = &http.Server{Handler: admin.StatusHandler(admin.ReadyFunc(r.Ready), r.debugStatus), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.status.Serve(r.stLn) }()
	if o.MetricsAddress != "off" {
		r.mLn, err = net.Listen("tcp", o.MetricsAddress)
		if err != nil {
			_ = r.status.Close()
			return nil, fmt.Errorf("metrics address: %w", err)
		}
		r.metrics = &http.Server{Handler: admin.MetricsHandler(tel.Registry()), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = r.metrics.Serve(r.mLn) }()
	}
	r.inLn, err = net.Listen("tcp", o.InboundAddress)
	if err != nil {
		r.closeServers()
		return nil, fmt.Errorf("inbound address: %w", err)
	}
	r.inbound = inbound.NewServer(r.proxy, inbound.Options{Logger: o.Logger, OnConn: func(protocol string, opened bool) {
		if opened {
			tel.DownstreamConnOpened(protocol)
		} else {
			tel.DownstreamConnClosed(protocol)
		}
	}})
	go func() {
		if err := r.inbound.Serve(r.inLn); !errors.Is(err, net.ErrClosed) {
			r.errc <- fmt.Errorf("inbound listener: %w", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cl := &xds.Client{Address: o.XDSAddress, Gateway: o.Gateway, NodeID: o.NodeID, Token: o.Token,
		Apply: r.apply, Logger: o.Logger}
	go func() {
		defer close(r.done)
		_ = cl.Run(ctx)
	}()
	r.log.Info("waypoint proxy started; waiting for its configuration", "gateway", o.Gateway.String(),
		"xds", o.XDSAddress, "inbound", r.inLn.Addr().String(), "status", r.stLn.Addr().String())
	return r, nil
}

// apply installs one configuration from the controller.
func (r *Runner) apply(w *ir.Waypoint) error {
	if w.Gateway != r.opts.Gateway {
		return fmt.Errorf("configuration for %s, this proxy runs %s", w.Gateway, r.opts.Gateway)
	}
	err := r.proxy.Update(w)
	r.tel.ConfigUpdated(err)
	if err != nil {
		r.mu.Lock()
		r.lastErr = err.Error()
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	first := r.applied == nil
	r.applied, r.lastErr, r.ready = w, "", true
	r.version++
	r.mu.Unlock()
	r.tel.SetConfigVersion(r.proxy.Version())
	if first {
		r.log.Info("waypoint ready", "gateway", w.Gateway.String(), "services", len(w.Services))
	}
	return nil
}

// Ready reports whether a configuration is in force (and not draining).
func (r *Runner) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready && r.proxy.Ready()
}

// Version counts the configurations applied.
func (r *Runner) Version() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

// InboundAddr is the bound PROXY listener.
func (r *Runner) InboundAddr() net.Addr { return r.inLn.Addr() }

// StatusAddr is the bound status listener.
func (r *Runner) StatusAddr() net.Addr { return r.stLn.Addr() }

// MetricsAddr is the bound metrics listener (nil when off).
func (r *Runner) MetricsAddr() net.Addr {
	if r.mLn == nil {
		return nil
	}
	return r.mLn.Addr()
}

// Errors reports fatal listener errors.
func (r *Runner) Errors() <-chan error { return r.errc }

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

// Drain: readiness fails at once; after DrainDelay the listener stops
// accepting; open connections get DrainTimeout to finish.
func (r *Runner) Drain() {
	r.mu.Lock()
	r.ready = false
	r.mu.Unlock()
	delay, timeout := r.opts.DrainDelay, r.opts.DrainTimeout
	if delay == 0 {
		delay = 5 * time.Second
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	r.log.Info("draining", "delay", delay.String(), "timeout", timeout.String())
	time.Sleep(delay)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.inbound.Shutdown(ctx); err != nil {
		r.log.Warn("drain timeout: closed the connections still open", "error", err.Error())
	}
	r.Close()
}

// Close stops everything at once.
func (r *Runner) Close() {
	r.mu.Lock()
	r.ready = false
	r.mu.Unlock()
	r.cancel()
	<-r.done
	_ = r.inLn.Close()
	_ = r.inbound.Close()
	r.closeServers()
	r.proxy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.tel.Shutdown(ctx)
}

func (r *Runner) closeServers() {
	_ = r.status.Close()
	if r.metrics != nil {
		_ = r.metrics.Close()
	}
}
