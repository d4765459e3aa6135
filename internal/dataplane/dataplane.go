// Package dataplane is the waypoint process around the proxy: its
// listeners (the PROXY-protocol inbound, status, Prometheus, admin), its
// telemetry, its lifecycle (readiness, drain) and the Runner that puts the
// configurations of a Feed in force. Both ways of running a waypoint use
// it: `standalone` feeds it from files through the translator, `proxy` from
// the controller over xDS. Nothing here (nor in the proxy) knows about
// Kubernetes or Istio's APIs: configuration arrives as ir.Waypoint.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// StreamLimits bound each request's life in the proxy.
type StreamLimits struct {
	IdleTimeout time.Duration // Envoy's stream idle timeout (default 5m)
	MaxRetries  int           // retries per request, whatever a route asks (default 10)
	MaxMirrors  int           // mirrored requests in flight (default 256)
}

// Options configure the listeners, the telemetry and the proxy.
type Options struct {
	// InboundAddress is the PROXY-protocol listener the Runner binds once
	// the first configuration is in force; empty: 0.0.0.0 on the
	// configuration's InboundPort (the Gateway's istio.io/PROXY listener,
	// 15088 by default), following it when it changes.
	InboundAddress string
	// StatusAddress serves /healthz/ready and /debug/status (default
	// 0.0.0.0:15021).
	StatusAddress string
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
	// ratio of new traces sampled; ServiceName names the spans' service.
	TracingEndpoint string
	TracingSampling float64
	ServiceName     string
	// MaxSeries bounds the label sets of each Istio metric family (0:
	// telemetry.DefaultMaxSeries).
	MaxSeries int
	// ServerHeader is the "server" response header (default "envoy").
	ServerHeader string
	// Inbound are the listener's limits; Upstream tunes the pools.
	Inbound  inbound.Options
	Upstream upstream.Options
	// Identity is the waypoint's certificate for native HBONE (a Gateway
	// listener {protocol: HBONE, port: 15008}): files (--cert-dir) or the
	// Istio CA. Without it a native configuration is refused.
	Identity identity.Provider
	// CertDir, when set and Identity is not, is a directory of
	// cert-chain.pem, key.pem and root-cert.pem that Start loads as the
	// Identity and follows (--cert-dir).
	CertDir string
	// Streams are the per-request bounds: the stream idle timeout, the
	// retry cap and the mirrors in flight (see proxy.Options).
	Streams StreamLimits
	// DrainDelay is how long readiness reports 503 before the listener
	// stops accepting (default 5s); DrainTimeout bounds the wait for
	// in-flight requests and connections after that (default 30s).
	DrainDelay, DrainTimeout time.Duration
	// Debug is the JSON of GET /debug/status on the status address.
	Debug func() any
	// NodeName is the node this waypoint runs on (--node-name, default
	// $NODE_NAME, which the deployer sets from the pod's spec.nodeName):
	// its locality is the one the configuration gives that node.
	// Locality ("region/zone/subzone", --locality) wins when set.
	NodeName string
	Locality string
	// LogLevel is the level the admin's /logging changes.
	LogLevel *slog.LevelVar
	Logger   *slog.Logger
}

// DataPlane is a running waypoint process: the proxy and its listeners.
type DataPlane struct {
	// Proxy serves the traffic; feed it configurations with Update.
	Proxy *proxy.Proxy

	opts    Options
	log     *slog.Logger
	tel     *telemetry.Telemetry
	logFile func()

	stLn, mLn, aLn, inLn net.Listener
	servers              []*http.Server
	inbound              *inbound.Server
	// retired are inbound servers a move replaced (their connections may
	// still be open until they drain).
	retired []*inbound.Server

	mu        sync.Mutex
	ready     bool
	closed    bool
	errc      chan error
	refusals  sync.Once
	hrefusals sync.Once
	// stopIdentity stops following CertDir.
	stopIdentity func()
}

// registerRefusals exposes the inbound listener's refusals as
// kgateway_waypoint_downstream_connections_refused_total{reason}.
func (d *DataPlane) registerRefusals(st *inbound.Stats) {
	for _, r := range []struct {
		reason string
		n      *atomic.Uint64
	}{
		{"source", &st.RefusedSource},           // peer outside --proxy-protocol-allowed-cidrs
		{"header", &st.RefusedHeader},           // no or malformed PROXY v2 header
		{"destination", &st.RefusedDestination}, // (VIP, port) not served
		{"limit", &st.RefusedOverLimit},         // --max-connections reached
	} {
		err := d.tel.RegisterCounterFunc("downstream_connections_refused_total",
			"Connections the PROXY protocol listener closed without serving, by reason (source, header, destination, limit).",
			map[string]string{"reason": r.reason}, func() float64 { return float64(r.n.Load()) })
		if err != nil {
			d.log.Warn("could not register a listener metric", "error", err.Error())
		}
	}
}

// registerHBONERefusals exposes the native HBONE listener's refusals as
// kgateway_waypoint_hbone_refused_total{reason}: mTLS handshakes refused
// and CONNECT streams not answered 200.
func (d *DataPlane) registerHBONERefusals(st *inbound.HBONEStats) {
	for _, r := range []struct {
		reason string
		n      *atomic.Uint64
	}{
		{"no_client_certificate", &st.RefusedNoCert},
		{"untrusted_certificate", &st.RefusedUntrusted},
		{"expired_certificate", &st.RefusedExpired},
		{"trust_domain", &st.RefusedTrustDomain},
		{"bad_identity", &st.RefusedIdentity},
		{"tls_version", &st.RefusedTLSVersion},
		{"alpn", &st.RefusedALPN},
		{"handshake", &st.RefusedHandshake},
		{"bad_request", &st.StreamsBadRequest},
		{"no_identity", &st.StreamsNoIdentity},
		{"destination", &st.StreamsUnknownDest},
	} {
		err := d.tel.RegisterCounterFunc("hbone_refused_total",
			"Native HBONE connections refused at the mTLS handshake, and CONNECT streams answered other than 200, by reason.",
			map[string]string{"reason": r.reason}, func() float64 { return float64(r.n.Load()) })
		if err != nil {
			d.log.Warn("could not register a listener metric", "error", err.Error())
		}
	}
}

// registerDNS exposes the resolver of hostname endpoints as
// kgateway_waypoint_dns_resolutions_total{result} (resolved, empty,
// failed) and kgateway_waypoint_dns_stale_hosts (names served from their
// last good answer because asking again failed).
func (d *DataPlane) registerDNS() {
	for _, r := range []struct {
		result string
		n      func(upstream.DNSStats) uint64
	}{
		{"resolved", func(s upstream.DNSStats) uint64 { return s.Resolved }},
		{"empty", func(s upstream.DNSStats) uint64 { return s.Empty }},
		{"failed", func(s upstream.DNSStats) uint64 { return s.Failed }},
	} {
		err := d.tel.RegisterCounterFunc("dns_resolutions_total",
			"Resolutions of endpoint hostnames (ServiceEntry resolution DNS), by result: resolved (addresses), empty (NXDOMAIN or no record), failed (no answer; the last good answer stays in use).",
			map[string]string{"result": r.result}, func() float64 { return float64(r.n(d.Proxy.DNSStats())) })
		if err != nil {
			d.log.Warn("could not register a DNS metric", "error", err.Error())
		}
	}
	if err := d.tel.RegisterGaugeFunc("dns_stale_hosts",
		"Endpoint hostnames served from their last good answer because asking again failed.",
		func() float64 { return float64(d.Proxy.DNSStats().Stale) }); err != nil {
		d.log.Warn("could not register a DNS metric", "error", err.Error())
	}
}

// Start builds the telemetry and the proxy and binds the status, metrics
// and admin listeners; readiness answers 503 until Listen has bound the
// inbound and SetReady(true) was called.
func Start(o Options) (*DataPlane, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StatusAddress == "" {
		o.StatusAddress = "0.0.0.0:15021"
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = "0.0.0.0:15020"
	}
	if o.AdminAddress == "" {
		o.AdminAddress = "127.0.0.1:15000"
	}
	if o.AdminAddress != "off" {
		if err := admin.CheckAdminAddress(o.AdminAddress, o.AllowRemoteAdmin); err != nil {
			return nil, err
		}
	}
	loc, err := ParseLocality(o.Locality)
	if err != nil {
		return nil, fmt.Errorf("--locality: %w", err)
	}
	d := &DataPlane{opts: o, log: o.Logger, errc: make(chan error, 2)}
	if o.Identity == nil && o.CertDir != "" {
		files, err := identity.NewFiles(o.CertDir, o.Logger)
		if err != nil {
			return nil, fmt.Errorf("--cert-dir: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go files.Run(ctx)
		d.stopIdentity = cancel
		o.Identity, d.opts.Identity = files, files
	}
	if d.tel, d.logFile, err = newTelemetry(o); err != nil {
		return nil, err
	}
	up := o.Upstream
	up.OnDial, up.OnClose = d.tel.UpstreamDialed, d.tel.UpstreamConnClosed
	up.Identity = o.Identity
	if up.DNS.Servers, err = upstream.ParseDNSServers(up.DNS.Servers); err != nil {
		return nil, fmt.Errorf("--dns-server: %w", err)
	}
	if up.DNS.Logger == nil {
		up.DNS.Logger = o.Logger
	}
	d.Proxy = proxy.New(proxy.Options{
		ServerHeader: o.ServerHeader, Logger: o.Logger, Upstream: up, Telemetry: d.tel,
		StreamIdleTimeout: o.Streams.IdleTimeout, MaxRetries: o.Streams.MaxRetries, MaxMirrorsInFlight: o.Streams.MaxMirrors,
		NodeName: o.NodeName, Locality: loc,
	})
	d.registerDNS()
	reg := d.tel.Registry()
	for _, l := range []struct {
		what, addr string
		ln         *net.Listener
		h          http.Handler
	}{
		{"status", o.StatusAddress, &d.stLn, admin.StatusHandler(admin.ReadyFunc(d.Ready), o.Debug)},
		{"metrics", o.MetricsAddress, &d.mLn, admin.MetricsHandler(reg)},
		{"admin", o.AdminAddress, &d.aLn, admin.AdminHandler(admin.AdminOptions{
			ConfigDump: func() any { return d.Proxy.Current() }, Gatherer: reg, LogLevel: o.LogLevel, Logger: o.Logger,
		})},
	} {
		if l.addr == "off" {
			continue
		}
		if err := d.serve(l.what, l.addr, l.ln, l.h); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

func (d *DataPlane) serve(what, addr string, ln *net.Listener, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s address: %w", what, err)
	}
	*ln = l
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	d.mu.Lock()
	d.servers = append(d.servers, srv)
	d.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
	return nil
}

// Listen binds the PROXY-protocol inbound and serves it (see Serve).
func (d *DataPlane) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("inbound address: %w", err)
	}
	return d.Serve(ln)
}

// Serve serves the PROXY-protocol inbound on ln. Called again (the inbound
// port of the configuration changed), it moves: the old listener stops
// accepting and its connections get DrainTimeout to finish.
func (d *DataPlane) Serve(ln net.Listener) error { return d.serveInbound(ln, false) }

// ServeHBONE serves the native HBONE inbound on ln (mTLS with Identity's
// certificate, peers of the trust domains of the configuration in force),
// moving from the inbound served before as Serve does.
func (d *DataPlane) ServeHBONE(ln net.Listener) error {
	if d.opts.Identity == nil {
		_ = ln.Close()
		return errors.New("native HBONE needs a certificate of the waypoint's own: --cert-dir, or the Istio CA (proxy --ca-address)")
	}
	return d.serveInbound(ln, true)
}

func (d *DataPlane) trustDomains() (string, []string) {
	if w := d.Proxy.Current(); w != nil {
		return w.TrustDomain, w.TrustDomainAliases
	}
	return "", nil
}

func (d *DataPlane) serveInbound(ln net.Listener, native bool) error {
	in := d.opts.Inbound
	in.Logger = d.log
	in.OnConn = func(protocol string, opened bool) {
		if opened {
			d.tel.DownstreamConnOpened(protocol)
		} else {
			d.tel.DownstreamConnClosed(protocol)
		}
	}
	srv := inbound.NewServer(d.Proxy, in)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = ln.Close()
		return errors.New("inbound address: the data plane is closed")
	}
	oldLn, old := d.inLn, d.inbound
	d.inLn, d.inbound = ln, srv
	if old != nil {
		d.retired = append(d.retired, old)
	}
	d.mu.Unlock()
	d.refusals.Do(func() { d.registerRefusals(srv.Stats()) })
	if native {
		d.hrefusals.Do(func() { d.registerHBONERefusals(srv.HBONEStats()) })
	}
	go func() {
		var err error
		if native {
			err = srv.ServeHBONE(ln, inbound.HBONEOptions{Identity: d.opts.Identity, TrustDomains: d.trustDomains,
				MaxConcurrentStreams: uint32(in.HTTP.MaxConcurrentStreams)})
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, net.ErrClosed) {
			select {
			case d.errc <- fmt.Errorf("inbound listener: %w", err):
			default:
			}
		}
	}()
	if old != nil {
		_ = oldLn.Close()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout())
			defer cancel()
			_ = old.Shutdown(ctx)
		}()
	}
	return nil
}

// SetReady turns readiness on or off (it is on only when a configuration
// is in force and the inbound is bound, too).
func (d *DataPlane) SetReady(ready bool) {
	d.mu.Lock()
	d.ready = ready
	d.mu.Unlock()
}

// Ready reports whether the waypoint takes traffic.
func (d *DataPlane) Ready() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready && d.inbound != nil && d.Proxy.Ready()
}

// Errors reports fatal listener errors.
func (d *DataPlane) Errors() <-chan error { return d.errc }

// InboundAddr, StatusAddr, MetricsAddr and AdminAddr are the bound
// addresses (nil when not bound).
func (d *DataPlane) InboundAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return addrOf(d.inLn)
}
func (d *DataPlane) StatusAddr() net.Addr  { return addrOf(d.stLn) }
func (d *DataPlane) MetricsAddr() net.Addr { return addrOf(d.mLn) }
func (d *DataPlane) AdminAddr() net.Addr   { return addrOf(d.aLn) }

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Drain shuts down gracefully: readiness turns 503 at once; after
// DrainDelay the listener stops accepting; in-flight requests and
// connections then get up to DrainTimeout to finish; spans are flushed.
// It reports whether everything finished in time.
func (d *DataPlane) Drain() bool {
	d.SetReady(false)
	delay, timeout := d.opts.DrainDelay, d.drainTimeout()
	if delay == 0 {
		delay = 5 * time.Second
	}
	d.log.Info("draining", "delay", delay.String(), "timeout", timeout.String())
	time.Sleep(delay)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	d.mu.Lock()
	in := d.inbound
	d.mu.Unlock()
	if in != nil {
		if err = in.Shutdown(ctx); err != nil {
			d.log.Warn("drain timeout: closed the connections still open", "error", err.Error())
		}
	}
	_ = d.tel.Shutdown(ctx)
	d.Close()
	return err == nil
}

func (d *DataPlane) drainTimeout() time.Duration {
	if d.opts.DrainTimeout == 0 {
		return 30 * time.Second
	}
	return d.opts.DrainTimeout
}

// Close stops everything at once. It may be called more than once.
func (d *DataPlane) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed, d.ready = true, false
	servers, in, inLn, retired := d.servers, d.inbound, d.inLn, d.retired
	d.mu.Unlock()
	if inLn != nil {
		_ = inLn.Close()
	}
	if in != nil {
		_ = in.Close()
	}
	for _, r := range retired {
		_ = r.Close()
	}
	for _, s := range servers {
		_ = s.Close()
	}
	d.Proxy.Close()
	if d.stopIdentity != nil {
		d.stopIdentity()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.tel.Shutdown(ctx)
	d.logFile()
}

// newTelemetry builds metrics (always), the access log and tracing as the
// options say; the func closes the access log file.
func newTelemetry(o Options) (*telemetry.Telemetry, func(), error) {
	to := telemetry.Options{Logger: o.Logger, AccessLogFormat: o.AccessLogFormat, MaxSeries: o.MaxSeries, ServiceName: o.ServiceName}
	if to.ServiceName == "" {
		to.ServiceName = "kgateway-waypoint"
	}
	closeLog := func() {}
	switch o.AccessLog {
	case "":
	case "-", "/dev/stdout":
		to.AccessLog = os.Stdout
	default:
		f, err := os.OpenFile(o.AccessLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("access log: %w", err)
		}
		to.AccessLog, closeLog = f, func() { _ = f.Close() }
	}
	if o.TracingEndpoint != "" {
		name := o.ServiceName
		if name == "" {
			name = "kgateway-waypoint"
		}
		to.Tracing = &telemetry.TracingOptions{Endpoint: o.TracingEndpoint, SamplingRatio: o.TracingSampling, ServiceName: name}
	}
	tel, err := telemetry.New(to)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return tel, closeLog, nil
}

// ParseLocality reads a locality as Istio writes it, "region/zone/subzone"
// (zone and subzone optional): nil for "".
func ParseLocality(s string) (*ir.Locality, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return nil, fmt.Errorf("%q is not region[/zone[/subzone]]", s)
	}
	parts = append(parts, "", "")
	return &ir.Locality{Region: parts[0], Zone: parts[1], Subzone: parts[2]}, nil
}
