// Package proxy is the waypoint's data plane: for each connection the
// inbound listener accepts it finds the destination service by (VIP, port),
// then per request routes, authorizes and forwards to an endpoint.
//
// Configuration arrives as an ir.Waypoint; Update compiles it
// (config.Compile: route tables, policy evaluators, endpoint lists) and
// swaps one pointer, so requests in flight finish on the config they
// started with and no connection is dropped. A TCP connection is served
// entirely by the configuration it was classified in; each HTTP request
// by the configuration in force when it starts.
package proxy

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/config"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/ratelimit"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// Options configure the proxy.
type Options struct {
	// ServerHeader is the value of the "server" response header ("envoy"
	// by default, so tools and checks written for Istio's waypoint work).
	ServerHeader string
	// Upstream tunes the connection pools.
	Upstream upstream.Options
	// LocalPrincipal is the waypoint's own identity, given to authorizers.
	LocalPrincipal string
	// StreamIdleTimeout ends a request when nothing moved on it, in either
	// direction, for that long (default 5m, Envoy's stream_idle_timeout):
	// 408 before the response started, else the stream is reset.
	StreamIdleTimeout time.Duration
	// MaxRetries caps the retries of one request whatever its route asks
	// (default 10).
	MaxRetries int
	// MaxMirrorsInFlight bounds the mirrored requests in flight (default
	// 256); past it, mirrors are dropped and counted.
	MaxMirrorsInFlight int
	// Telemetry records metrics, access logs and traces; nil is off.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// NodeName is the node the waypoint runs on (the pod's spec.nodeName):
	// its locality is the one the configuration's NodeLocalities give that
	// node. Locality, when set, is the waypoint's locality instead.
	NodeName string
	Locality *ir.Locality
}

// Proxy serves traffic for one waypoint. It implements inbound.Handler.
type Proxy struct {
	opts Options
	log  *slog.Logger
	pool *upstream.Pool
	// cfg is the configuration in force, with its authorizers; updating
	// serialises Update.
	cfg      atomic.Pointer[generation]
	updating sync.Mutex
	// shared is what every configuration's compiled parts share.
	shared config.Shared
	// serverHeader is the precomputed header value slice.
	serverHeader []string
	// tel is Options.Telemetry (nil: off).
	tel *telemetry.Telemetry
	// streamIdle and maxRetries are the options' bounds, defaulted.
	streamIdle time.Duration
	maxRetries int
	// mirrors are the mirrored requests in flight.
	mirrors *mirrorSet
}

// New builds a proxy with no configuration: it refuses every connection
// until the first Update.
func New(opts Options) *Proxy {
	if opts.ServerHeader == "" {
		opts.ServerHeader = "envoy"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		opts: opts,
		log:  opts.Logger,
		pool: upstream.NewPool(opts.Upstream),
		shared: config.Shared{Outlier: upstream.NewOutlier(), JWKS: authn.NewJWKSCache(nil, 0),
			NodeName: opts.NodeName, Locality: opts.Locality, RateLimits: ratelimit.NewRegistry()},
		serverHeader: []string{opts.ServerHeader},
		tel:          opts.Telemetry,
		streamIdle:   cmp.Or(opts.StreamIdleTimeout, defaultStreamIdleTimeout),
		maxRetries:   cmp.Or(opts.MaxRetries, defaultMaxRetries),
		mirrors:      newMirrorSet(cmp.Or(opts.MaxMirrorsInFlight, 256)),
	}
	p.shared.JWKS.SetLogger(opts.Logger)
	return p
}

// generation is a compiled configuration in force, with the clients of its
// external authorizers: built by Update after config.Compile (which starts
// nothing), and published together, so that a request uses the authorizers
// of the configuration that routes it.
type generation struct {
	*config.Config
	auth *authorizers
}

// resolve finds where to dial a service hostname and port (an external
// authorizer): an endpoint the configuration in force knows for it (a
// hostname endpoint, of a DNS ServiceEntry, resolved from the cache),
// else the address itself.
func (p *Proxy) resolve(host string, port uint16) (string, error) {
	if c := p.cfg.Load(); c != nil {
		if ep, ok := c.Resolve(host, port); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return p.pool.Resolve(ctx, nil, ep)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// Ready reports whether a configuration has been loaded.
func (p *Proxy) Ready() bool { return p.cfg.Load() != nil }

// Version is the number of configurations applied so far.
func (p *Proxy) Version() uint64 {
	if c := p.cfg.Load(); c != nil {
		return c.Version()
	}
	return 0
}

// Place is where the configuration in force has the waypoint run, for
// the services that prefer close endpoints (zero before the first).
func (p *Proxy) Place() upstream.Place {
	if c := p.cfg.Load(); c != nil {
		return c.Place()
	}
	return upstream.Place{}
}

// Current returns the configuration in force (nil before the first).
func (p *Proxy) Current() *ir.Waypoint {
	if c := p.cfg.Load(); c != nil {
		return c.IR()
	}
	return nil
}

// Update compiles a new configuration and puts it in force. On error the
// previous configuration stays. What the new configuration shares with the
// one in force is taken over rather than compiled again (config.Compile),
// so an update that changes one route costs about a comparison per service
// port. Updates are serialised: each compiles against the one before.
func (p *Proxy) Update(w *ir.Waypoint) error {
	p.updating.Lock()
	defer p.updating.Unlock()
	prev := p.cfg.Load()
	var prevConfig *config.Config
	if prev != nil {
		prevConfig = prev.Config
	}
	c, err := config.Compile(w, prevConfig, p.shared)
	p.tel.ConfigUpdated(err)
	if err != nil {
		return err
	}
	var prevAuth *authorizers
	if prev != nil {
		prevAuth = prev.auth
	}
	p.pool.SetMesh(upstream.MeshOf(w))
	p.pool.SetHostnames(upstream.HostnamesOf(w))
	p.cfg.Store(&generation{Config: c, auth: p.authorizersFor(w, prevAuth)})
	p.tel.SetConfigVersion(c.Version())
	// The Telemetry API's access log, tracing and metrics settings: what
	// cannot be put in force is logged and the rest applied.
	if err := p.tel.Apply(w); err != nil {
		p.log.Warn("telemetry", "error", err.Error())
	}
	// The outlier detector forgets endpoints no backend has any more.
	// When every backend is the previous configuration's, so are the
	// endpoints.
	if !c.BackendsKept() {
		p.shared.Outlier.Retain(c.Endpoints())
	}
	// The rate limit buckets no entry of this configuration uses go.
	p.shared.RateLimits.Retain(rateLimitKeys(w))
	for _, w := range c.Warnings() {
		p.log.Warn(w.Kind, "service", w.Service, "warning", w.Message)
	}
	return nil
}

// Classify implements inbound.Handler: the service port of the connection
// in the configuration in force, and that configuration.
func (p *Proxy) Classify(info *inbound.ConnInfo) (config.Target, bool) {
	c := p.cfg.Load()
	if c == nil {
		return config.Target{}, false
	}
	return c.Lookup(info.Destination, info.Hostname)
}

// Close releases pooled upstream connections, the key cache and the
// authorizer clients.
func (p *Proxy) Close() {
	p.mirrors.close()
	p.pool.Close()
	p.shared.JWKS.Close()
	if g := p.cfg.Load(); g != nil {
		closeClients(g.auth.clients)
	}
}

// DNSStats reports the resolver of hostname endpoints' counts.
func (p *Proxy) DNSStats() upstream.DNSStats { return p.pool.DNSStats() }

// EndpointEjected reports whether outlier detection has ejected an
// endpoint (ip:port) right now.
func (p *Proxy) EndpointEjected(ep string) bool { return p.shared.Outlier.Ejected(ep) }

// EndpointInFlight is the number of requests and connections in flight to
// an endpoint (for tests and stats).
func (p *Proxy) EndpointInFlight(ep string) int { return p.shared.Outlier.InFlight(ep) }

// rateLimitKeys are the keys of every token bucket w's TrafficPolicies use.
func rateLimitKeys(w *ir.Waypoint) map[string]bool {
	keys := map[string]bool{}
	add := func(t *ir.TrafficPolicy) {
		if t != nil && t.LocalRateLimit != nil {
			keys[t.LocalRateLimit.Key] = true
		}
	}
	for _, s := range w.Services {
		for _, sp := range s.Ports {
			add(sp.Traffic)
			for _, r := range sp.Routes {
				add(r.Traffic)
			}
		}
	}
	if w.WorkloadPort != nil {
		add(w.WorkloadPort.Traffic)
	}
	return keys
}
