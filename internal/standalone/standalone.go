// Package standalone runs a waypoint from manifest files: the files source,
// the translator and the proxy in one process, with the files watched so
// that edits take effect within a second.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
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
	// StatusAddress serves /healthz/ready (default 0.0.0.0:15021).
	StatusAddress string
	// ServerHeader is the "server" response header (default "envoy").
	ServerHeader string
	// DrainDelay is how long readiness reports 503 before the listener
	// stops accepting, so endpoints can be updated (default 5s).
	DrainDelay time.Duration
	// DrainTimeout bounds the wait for in-flight requests and connections
	// after that (default 30s).
	DrainTimeout time.Duration
	// PathNormalization is the mesh config's pathNormalization.
	PathNormalization meshconfig.PathNormalization
	// ExtAuthzProviders are the mesh config's external authorizers, by
	// name, for CUSTOM policies.
	ExtAuthzProviders map[string]*meshconfig.ExtAuthzProvider
	// MetricsAddress serves Prometheus /stats/prometheus and /metrics
	// (default 0.0.0.0:15020; "off" disables it).
	MetricsAddress string
	// AdminAddress serves the admin endpoints (default 127.0.0.1:15000;
	// "off" disables it). It must be loopback unless AllowRemoteAdmin.
	AdminAddress     string
	AllowRemoteAdmin bool
	// AccessLog is where access log lines go: "" off, "-" or /dev/stdout
	// for standard output, else a file path; AccessLogFormat is text
	// (Istio's default Envoy format) or json.
	AccessLog       string
	AccessLogFormat string
	// TracingEndpoint is an OTLP collector (grpc://host:4317 or
	// http://host:4318); empty disables tracing. TracingSampling is the
	// ratio of new traces sampled.
	TracingEndpoint string
	TracingSampling float64
	// LogLevel is the level the admin's /logging changes.
	LogLevel *slog.LevelVar
	// Inbound are the listener's limits; Upstream tunes the pools.
	Inbound  inbound.Options
	Upstream upstream.Options
	// Translate holds the translator's settings (class, trust domain, ...).
	Translate translate.Options
	Logger    *slog.Logger
}

// Runner is a running standalone waypoint.
type Runner struct {
	opts    Options
	log     *slog.Logger
	tel     *telemetry.Telemetry
	servers []*http.Server // metrics and admin
	logFile func()         // closes the access log file
	proxy   *proxy.Proxy
	inbound *inbound.Server
	inLn    net.Listener
	status  *http.Server
	stLn    net.Listener

	mu         sync.Mutex
	result     *translate.Result
	lastError  string
	lastReload time.Time
	ready      bool

	cancel context.CancelFunc
	done   chan struct{}
	errc   chan error
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
	if opts.StatusAddress == "" {
		opts.StatusAddress = "0.0.0.0:15021"
	}
	gw, err := ParseGateway(opts.Gateway)
	if err != nil {
		return nil, err
	}
	opts.Translate.Gateway = gw
	if opts.MetricsAddress == "" {
		opts.MetricsAddress = "0.0.0.0:15020"
	}
	if opts.AdminAddress == "" {
		opts.AdminAddress = "127.0.0.1:15000"
	}
	if opts.AdminAddress != "off" {
		if err := admin.CheckAdminAddress(opts.AdminAddress, opts.AllowRemoteAdmin); err != nil {
			return nil, err
		}
	}
	tel, closeLog, err := newTelemetry(opts)
	if err != nil {
		return nil, err
	}
	opts.Upstream.OnDial, opts.Upstream.OnClose = tel.UpstreamDialed, tel.UpstreamConnClosed
	for _, p := range opts.ExtAuthzProviders {
		// The waypoint dials its authorizers: resolve their Services.
		opts.Translate.Lookups = append(opts.Translate.Lookups, net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	}
	r := &Runner{
		opts:    opts,
		log:     opts.Logger,
		tel:     tel,
		logFile: closeLog,
		proxy: proxy.New(proxy.Options{ServerHeader: opts.ServerHeader, Logger: opts.Logger, Upstream: opts.Upstream,
			PathNormalization: opts.PathNormalization, ExtAuthzProviders: opts.ExtAuthzProviders, Telemetry: tel}),
		done: make(chan struct{}),
		errc: make(chan error, 2),
	}

	// Status first, so readiness answers 503 while we load.
	r.stLn, err = net.Listen("tcp", opts.StatusAddress)
	if err != nil {
		return nil, fmt.Errorf("status address: %w", err)
	}
	r.status = &http.Server{
		Handler:           admin.StatusHandler(admin.ReadyFunc(r.Ready), r.debugStatus),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = r.status.Serve(r.stLn) }()

	if err := r.serveTelemetry(); err != nil {
		r.closeServers()
		return nil, err
	}
	res, err := r.load()
	if err != nil {
		r.closeServers()
		return nil, err
	}
	addr := opts.InboundAddress
	if addr == "" {
		addr = "0.0.0.0:" + strconv.Itoa(int(res.Waypoint.InboundPort))
	}
	r.inLn, err = net.Listen("tcp", addr)
	if err != nil {
		r.closeServers()
		return nil, fmt.Errorf("inbound address: %w", err)
	}
	inOpts := opts.Inbound
	inOpts.Logger = opts.Logger
	inOpts.OnConn = func(protocol string, opened bool) {
		if opened {
			tel.DownstreamConnOpened(protocol)
		} else {
			tel.DownstreamConnClosed(protocol)
		}
	}
	r.inbound = inbound.NewServer(r.proxy, inOpts)
	go func() {
		if err := r.inbound.Serve(r.inLn); !errors.Is(err, net.ErrClosed) {
			r.errc <- fmt.Errorf("inbound listener: %w", err)
		}
	}()
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	r.log.Info("waypoint ready", "gateway", res.Waypoint.Gateway.String(), "inbound", r.inLn.Addr().String(),
		"status", r.stLn.Addr().String(), "services", len(res.Waypoint.Services))

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
			err = r.proxy.Update(res.Waypoint)
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
	if r.result != nil {
		for _, c := range r.result.Conditions {
			prev[condKey(c)] = c
		}
	}
	r.mu.Unlock()
	for _, c := range res.Conditions {
		if p, ok := prev[condKey(c)]; ok && p == c {
			continue
		}
		lvl := slog.LevelInfo
		if c.Status == "False" || c.Type == "PartiallyInvalid" {
			lvl = slog.LevelWarn
		}
		r.log.Log(context.Background(), lvl, "status", "kind", c.Kind, "namespace", c.Namespace, "name", c.Name,
			"parent", c.Parent, "type", c.Type, "status", c.Status, "reason", c.Reason, "message", c.Message)
	}
}

func condKey(c translate.Condition) string {
	return c.Kind + "|" + c.Namespace + "|" + c.Name + "|" + c.Parent + "|" + c.Type
}

// Reload re-reads the manifests now (the watcher calls it; so does SIGHUP).
func (r *Runner) Reload() error {
	res, err := r.load()
	if err == nil {
		r.log.Info("configuration applied", "version", r.proxy.Version(), "services", len(res.Waypoint.Services))
	}
	return err
}

// Ready reports whether config is loaded and the inbound listener is bound.
func (r *Runner) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready && r.proxy.Ready()
}

// InboundAddr is the address of the PROXY listener.
func (r *Runner) InboundAddr() net.Addr { return r.inLn.Addr() }

// StatusAddr is the address of the status listener.
func (r *Runner) StatusAddr() net.Addr { return r.stLn.Addr() }

// Version is the number of configurations applied.
func (r *Runner) Version() uint64 { return r.proxy.Version() }

// Errors reports fatal listener errors.
func (r *Runner) Errors() <-chan error { return r.errc }

// debugStatus is the JSON of GET /debug/status.
func (r *Runner) debugStatus() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]any{
		"version":   r.proxy.Version(),
		"lastError": r.lastError,
	}
	if r.result != nil {
		out["gateway"] = r.result.Waypoint.Gateway.String()
		out["conditions"] = r.result.Conditions
	}
	return out
}

// Drain shuts down gracefully: readiness turns 503 at once; after
// DrainDelay the listener stops accepting; in-flight requests and
// connections then get up to DrainTimeout to finish. It reports whether
// everything finished in time.
func (r *Runner) Drain() bool {
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
	err := r.inbound.Shutdown(ctx)
	if err != nil {
		r.log.Warn("drain timeout: closed the connections still open", "error", err.Error())
	}
	_ = r.tel.Shutdown(ctx) // flush spans
	r.Close()
	return err == nil
}

// Close stops serving: readiness turns 503, listeners close, connections end.
func (r *Runner) Close() {
	r.mu.Lock()
	r.ready = false
	r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	if r.inLn != nil {
		_ = r.inLn.Close()
	}
	if r.inbound != nil {
		_ = r.inbound.Close()
	}
	r.closeServers()
	r.proxy.Close()
	r.logFile()
}

func (r *Runner) closeServers() {
	_ = r.status.Close()
	for _, s := range r.servers {
		_ = s.Close()
	}
}

// serveTelemetry starts the metrics and admin listeners.
func (r *Runner) serveTelemetry() error {
	listen := func(what, addr string, h http.Handler) error {
		if addr == "off" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s address: %w", what, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		r.servers = append(r.servers, srv)
		go func() { _ = srv.Serve(ln) }()
		r.log.Info("serving "+what, "address", ln.Addr().String())
		return nil
	}
	reg := r.tel.Registry()
	if err := listen("metrics", r.opts.MetricsAddress, admin.MetricsHandler(reg)); err != nil {
		return err
	}
	return listen("admin", r.opts.AdminAddress, admin.AdminHandler(admin.AdminOptions{
		ConfigDump: func() any { return r.proxy.Current() },
		Gatherer:   reg,
		LogLevel:   r.opts.LogLevel,
		Logger:     r.log,
	}))
}

// newTelemetry builds metrics (always), the access log and tracing as the
// options say; the func closes the access log file.
func newTelemetry(opts Options) (*telemetry.Telemetry, func(), error) {
	to := telemetry.Options{Logger: opts.Logger, AccessLogFormat: opts.AccessLogFormat}
	closeLog := func() {}
	switch opts.AccessLog {
	case "":
	case "-", "/dev/stdout":
		to.AccessLog = os.Stdout
	default:
		f, err := os.OpenFile(opts.AccessLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("access log: %w", err)
		}
		to.AccessLog, closeLog = f, func() { _ = f.Close() }
	}
	if opts.TracingEndpoint != "" {
		name := "kgateway-waypoint"
		if gw := opts.Translate.Gateway; gw.Name != "" {
			name = gw.Name + "." + gw.Namespace
		}
		to.Tracing = &telemetry.TracingOptions{Endpoint: opts.TracingEndpoint, SamplingRatio: opts.TracingSampling, ServiceName: name}
	}
	tel, err := telemetry.New(to)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return tel, closeLog, nil
}
