// Package proxy is the waypoint's data plane: for each connection the
// inbound listener accepts it finds the destination service by (VIP, port),
// then per request routes, authorizes and forwards to an endpoint.
//
// Configuration arrives as an ir.Waypoint; Update compiles it (route
// tables, policy evaluators, endpoint lists) and swaps one pointer, so
// requests in flight finish on the config they started with and no
// connection is dropped.
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/extauthz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
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
	// PathNormalization is the mesh's pathNormalization (BASE by default).
	PathNormalization meshconfig.PathNormalization
	// ExtAuthzProviders are the mesh's external authorizers by name, for
	// CUSTOM policies.
	ExtAuthzProviders map[string]*meshconfig.ExtAuthzProvider
	// LocalPrincipal is the waypoint's own identity, given to authorizers.
	LocalPrincipal string
	// Telemetry records metrics, access logs and traces; nil is off.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// Proxy serves traffic for one waypoint. It implements inbound.Handler.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	pool    *upstream.Pool
	outlier *upstream.Outlier
	config  atomic.Pointer[config]
	// serverHeader is the precomputed header value slice.
	serverHeader []string
	// jwks caches the JSON Web Key Sets of RequestAuthentication rules
	// across configurations.
	jwks *authn.JWKSCache
	// extauthz are the clients of the mesh's external authorizers by name;
	// a provider that could not be set up maps to nil (its CUSTOM policies
	// then deny, as Istio's do).
	extauthz map[string]extauthz.Client
	// tel is Options.Telemetry (nil: off).
	tel *telemetry.Telemetry
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
		opts:         opts,
		log:          opts.Logger,
		pool:         upstream.NewPool(opts.Upstream),
		outlier:      upstream.NewOutlier(),
		serverHeader: []string{opts.ServerHeader},
		jwks:         authn.NewJWKSCache(nil, 0),
		extauthz:     map[string]extauthz.Client{},
		tel:          opts.Telemetry,
	}
	p.jwks.SetLogger(opts.Logger)
	for name, prov := range opts.ExtAuthzProviders {
		if prov.Invalid != "" {
			p.log.Warn("external authorizer is invalid; its CUSTOM policies deny", "provider", name, "reason", prov.Invalid)
			p.extauthz[name] = nil
			continue
		}
		c, err := extauthz.New(prov, extauthz.Options{Resolve: p.resolve, LocalPrincipal: opts.LocalPrincipal})
		if err != nil {
			p.log.Warn("external authorizer cannot be used; its CUSTOM policies deny", "provider", name, "error", err.Error())
			p.extauthz[name] = nil
			continue
		}
		p.extauthz[name] = c
	}
	return p
}

// resolve finds where to dial a service hostname and port (an external
// authorizer): an endpoint of a service this waypoint knows, else the
// address itself.
func (p *Proxy) resolve(host string, port uint16) (string, error) {
	if c := p.config.Load(); c != nil {
		hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if key, ok := c.ir.Lookups[hp]; ok {
			if b := c.backends[key]; b != nil {
				if ep, ok := b.Pick(); ok {
					return ep, nil
				}
			}
		}
		if sp := c.byHost[hostPort{host, port}]; sp != nil && sp.defaultBackend != nil {
			if ep, ok := sp.defaultBackend.Pick(); ok {
				return ep, nil
			}
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// config is a compiled ir.Waypoint.
type config struct {
	version  uint64
	ir       *ir.Waypoint
	byAddr   map[netip.AddrPort]*servicePort
	byHost   map[hostPort]*servicePort
	backends map[string]*upstream.Backend
}

type hostPort struct {
	host string
	port uint16
}

// servicePort is everything needed to serve one (service, port).
type servicePort struct {
	svc            *ir.Service
	port           *ir.ServicePort
	routes         *route.Table // nil: no route attached, use defaultBackend
	authn          *authn.Authenticator
	authz          *authz.Evaluator
	defaultBackend *upstream.Backend
	// hostPort is "hostname:port" for logs.
	name string
}

// Ready reports whether a configuration has been loaded.
func (p *Proxy) Ready() bool { return p.config.Load() != nil }

// Version is the number of configurations applied so far.
func (p *Proxy) Version() uint64 {
	if c := p.config.Load(); c != nil {
		return c.version
	}
	return 0
}

// Current returns the configuration in force (nil before the first).
func (p *Proxy) Current() *ir.Waypoint {
	if c := p.config.Load(); c != nil {
		return c.ir
	}
	return nil
}

// Update compiles a new configuration and puts it in force. On error the
// previous configuration stays.
func (p *Proxy) Update(w *ir.Waypoint) error {
	c, err := compile(w, p.outlier, p.jwks, p.log)
	p.tel.ConfigUpdated(err)
	if err != nil {
		return err
	}
	prev := p.config.Load()
	if prev != nil {
		c.version = prev.version + 1
		// Keep round-robin cursors of unchanged backends, so that frequent
		// updates do not send every first request to the first endpoint.
		for k, b := range c.backends {
			if old := prev.backends[k]; old != nil {
				b.InheritCursor(old)
			}
		}
	} else {
		c.version = 1
	}
	p.config.Store(c)
	p.tel.SetConfigVersion(c.version)
	return nil
}

func compile(w *ir.Waypoint, outlier *upstream.Outlier, jwks *authn.JWKSCache, log *slog.Logger) (*config, error) {
	if w == nil {
		return nil, errors.New("no configuration")
	}
	c := &config{
		ir:       w,
		byAddr:   map[netip.AddrPort]*servicePort{},
		byHost:   map[hostPort]*servicePort{},
		backends: make(map[string]*upstream.Backend, len(w.Backends)),
	}
	keep := map[string]bool{}
	for k, b := range w.Backends {
		c.backends[k] = upstream.NewBackend(k, b, outlier)
		for _, ep := range b.Endpoints {
			keep[ep] = true
		}
	}
	outlier.Retain(keep)
	azOpts := authz.Options{TrustDomain: w.TrustDomain, TrustDomainAliases: w.TrustDomainAliases}
	for _, s := range w.Services {
		for _, p := range s.Ports {
			sp := &servicePort{
				svc:            s,
				port:           p,
				authn:          authn.Compile(p.JWTRules, authn.Options{JWKS: jwks}),
				authz:          authz.Compile(p.Policies, azOpts),
				defaultBackend: c.backends[p.DefaultBackend],
				name:           s.Hostname + ":" + strconv.Itoa(int(p.Port)),
			}
			for _, w := range sp.authn.Warnings() {
				log.Warn("RequestAuthentication", "service", sp.name, "warning", w)
			}
			for _, w := range sp.authz.Warnings() {
				log.Warn("AuthorizationPolicy", "service", sp.name, "warning", w)
			}
			if len(p.Routes) > 0 {
				t, err := route.Compile(p.Routes)
				if err != nil {
					return nil, fmt.Errorf("service %s/%s port %d: %w", s.Namespace, s.Name, p.Port, err)
				}
				sp.routes = t
			}
			for _, vip := range s.VIPs {
				a, err := netip.ParseAddr(vip)
				if err != nil {
					return nil, fmt.Errorf("service %s/%s: bad VIP %q", s.Namespace, s.Name, vip)
				}
				c.byAddr[netip.AddrPortFrom(a.Unmap(), p.Port)] = sp
			}
			c.byHost[hostPort{s.Hostname, p.Port}] = sp
		}
	}
	return c, nil
}

// lookup finds the service port a connection is for: by the address the
// client dialled, else by the hostname ztunnel passed in TLV 0xD1.
func (c *config) lookup(info *inbound.ConnInfo) *servicePort {
	if sp := c.byAddr[info.Destination]; sp != nil {
		return sp
	}
	if info.Hostname != "" {
		return c.byHost[hostPort{info.Hostname, info.Destination.Port()}]
	}
	return nil
}

// Classify implements inbound.Handler.
func (p *Proxy) Classify(info *inbound.ConnInfo) (ir.Protocol, any, bool) {
	c := p.config.Load()
	if c == nil {
		return "", nil, false
	}
	sp := c.lookup(info)
	if sp == nil {
		return "", nil, false
	}
	return sp.port.Protocol, sp, true
}

// Close releases pooled upstream connections, the key cache and the
// authorizer clients.
func (p *Proxy) Close() {
	p.pool.Close()
	p.jwks.Close()
	for _, c := range p.extauthz {
		if c != nil {
			_ = c.Close()
		}
	}
}

// EndpointEjected reports whether outlier detection has ejected an
// endpoint (ip:port) right now.
func (p *Proxy) EndpointEjected(ep string) bool { return p.outlier.Ejected(ep) }
