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
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
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
		opts:         opts,
		log:          opts.Logger,
		pool:         upstream.NewPool(opts.Upstream),
		outlier:      upstream.NewOutlier(),
		serverHeader: []string{opts.ServerHeader},
		jwks:         authn.NewJWKSCache(nil, 0),
		tel:          opts.Telemetry,
		streamIdle:   cmp.Or(opts.StreamIdleTimeout, defaultStreamIdleTimeout),
		maxRetries:   cmp.Or(opts.MaxRetries, defaultMaxRetries),
		mirrors:      newMirrorSet(cmp.Or(opts.MaxMirrorsInFlight, 256)),
	}
	p.jwks.SetLogger(opts.Logger)
	return p
}

// config is a compiled ir.Waypoint. Its maps are never written once it is
// compiled, so the next configuration may share them.
type config struct {
	version  uint64
	ir       *ir.Waypoint
	byAddr   map[netip.AddrPort]*servicePort
	byHost   map[hostPort]*servicePort
	backends map[string]*upstream.Backend
	// ports are the service ports in the order of ir.Services and their
	// Ports; warned are the indexes in ports of those whose policies
	// compiled with warnings.
	ports  []*servicePort
	warned []int
	// auth are the external authorizers' clients (set by Update).
	auth *authorizers
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
// previous configuration stays. What the new configuration shares with the
// one in force (service ports and backends whose fingerprints are equal) is
// taken over rather than compiled again, so an update that changes one
// route costs about a lookup per service port.
func (p *Proxy) Update(w *ir.Waypoint) error {
	prev := p.config.Load()
	c, err := compile(w, prev, p.outlier, p.jwks, p.log)
	p.tel.ConfigUpdated(err)
	if err != nil {
		return err
	}
	if prev != nil {
		c.version = prev.version + 1
		c.auth = p.authorizersFor(w, prev.auth)
	} else {
		c.version = 1
		c.auth = p.authorizersFor(w, nil)
	}
	p.pool.SetMesh(upstream.MeshOf(c.ir))
	p.config.Store(c)
	p.tel.SetConfigVersion(c.version)
	return nil
}

// compile builds the proxy's form of w. prev, the configuration in force
// (nil for the first), lends what has not changed:
//
//   - a backend with the same key and the same non-zero fingerprint is the
//     same *upstream.Backend (same endpoints, round-robin cursor and health
//     state); a new or changed one is built and continues the round-robin
//     cursor of the backend it replaces;
//   - a service port with the same non-zero fingerprint keeps its compiled
//     route table, authenticator and authorization evaluator: they depend
//     only on the port's routes, policies and JWT rules, which the
//     fingerprint covers, and on the trust domains, which must not change.
//     When the services are laid out as before (same hostnames, names,
//     VIPs and ports, in the same order: every update that changes only
//     routes, policies or endpoints), a service none of whose ports changed
//     keeps its compiled ports whole, and the lookup maps are shared with
//     prev, or copied from it and patched where ports changed.
//
// The result is the same as compiling w from nothing. Warnings of the
// policies of every port are logged, as when each port was compiled.
//
// The IR in force (config.ir, Current) is then w with the services and
// backends that were taken over replaced by the previous configuration's
// objects, which are equal to w's: the compiled parts point to those, and
// keeping w's copies as well would hold two IRs in memory after an update.
func compile(w *ir.Waypoint, prev *config, outlier *upstream.Outlier, jwks *authn.JWKSCache, log *slog.Logger) (*config, error) {
	if w == nil {
		return nil, errors.New("no configuration")
	}
	c := &config{ir: w} // during compilation, the new IR
	backendsKept, irBackends := c.compileBackends(prev, outlier)
	portsPrev := prev
	if prev != nil && (prev.ir.TrustDomain != w.TrustDomain || !slices.Equal(prev.ir.TrustDomainAliases, w.TrustDomainAliases)) {
		portsPrev = nil // policies compile differently: no port to reuse
	}
	patched, services, err := c.patchPorts(portsPrev, backendsKept, jwks)
	if err != nil {
		return nil, err
	}
	if !patched {
		if err := c.compilePorts(portsPrev, jwks); err != nil {
			return nil, err
		}
		services = w.Services
	}
	if prev != nil {
		merged := *w
		merged.Services, merged.Backends = services, irBackends
		c.ir = &merged
	}
	for _, i := range c.warned {
		sp := c.ports[i]
		for _, w := range sp.authn.Warnings() {
			log.Warn("RequestAuthentication", "service", sp.name, "warning", w)
		}
		for _, w := range sp.authz.Warnings() {
			log.Warn("AuthorizationPolicy", "service", sp.name, "warning", w)
		}
	}
	// The outlier detector forgets endpoints no backend has any more (once
	// the configuration compiled: a failed one changes nothing). When every
	// backend is the previous configuration's, so are the endpoints.
	if !backendsKept {
		keep := map[string]bool{}
		for _, b := range w.Backends {
			for _, ep := range b.Endpoints {
				keep[ep] = true
			}
		}
		outlier.Retain(keep)
	}
	return c, nil
}

// compileBackends fills c.backends, taking over prev's unchanged backends.
// It reports whether c.backends holds exactly prev's backends, and returns
// the IR of the backends: each key's *ir.Backend is the one its
// *upstream.Backend was built from.
func (c *config) compileBackends(prev *config, outlier *upstream.Outlier) (bool, map[string]*ir.Backend) {
	w := c.ir
	var prevBackends map[string]*upstream.Backend
	if prev != nil {
		prevBackends = prev.backends
	}
	type built struct {
		key     string
		backend *upstream.Backend
	}
	var fresh []built
	found := 0 // keys of w that prev has
	for k, b := range w.Backends {
		old := prevBackends[k]
		if old != nil {
			found++
			if b.Fingerprint != 0 && old.IR.Fingerprint == b.Fingerprint {
				continue
			}
		}
		nb := upstream.NewBackend(k, b, outlier)
		if old != nil {
			// Keep the round-robin cursor, so that frequent updates do
			// not send every first request to the first endpoint.
			nb.InheritCursor(old)
		}
		fresh = append(fresh, built{k, nb})
	}
	removed := len(prevBackends) - found
	irBackends := w.Backends
	switch {
	case prev == nil:
		c.backends = make(map[string]*upstream.Backend, len(fresh))
	case len(fresh) == 0 && removed == 0:
		c.backends = prevBackends
		return true, prev.ir.Backends
	default:
		c.backends = maps.Clone(prevBackends)
		irBackends = maps.Clone(prev.ir.Backends)
		if removed > 0 {
			for k := range c.backends {
				if _, ok := w.Backends[k]; !ok {
					delete(c.backends, k)
					delete(irBackends, k)
				}
			}
		}
	}
	for _, f := range fresh {
		c.backends[f.key] = f.backend
		irBackends[f.key] = f.backend.IR
	}
	return false, irBackends
}

// patchPorts fills c's ports and lookup maps from prev when the services
// are laid out as in prev (see compile), compiling only the ports whose
// fingerprint changed, and returns the IR of the services: prev's for those
// taken over, w's for the others. It reports false, having done nothing,
// when they are not laid out as in prev.
func (c *config) patchPorts(prev *config, backendsKept bool, jwks *authn.JWKSCache) (bool, []*ir.Service, error) {
	w := c.ir
	if prev == nil || len(prev.ir.Services) != len(w.Services) {
		return false, nil, nil
	}
	// A port is taken over whole, with the *ir.Service it points to, only
	// when no port of its service changed: then the old service is equal to
	// the new one. Otherwise every port of the service gets a new
	// servicePort (keeping the compiled parts of its unchanged ports).
	var changed []int     // indexes in ports
	var changedSvcs []int // indexes in services
	i := 0
	for si, s := range w.Services {
		o := prev.ir.Services[si]
		if s.Hostname != o.Hostname || s.Name != o.Name || s.Namespace != o.Namespace || s.Kind != o.Kind ||
			len(s.Ports) != len(o.Ports) || !slices.Equal(s.VIPs, o.VIPs) {
			return false, nil, nil
		}
		same := true
		for pi, p := range s.Ports {
			if p.Port != o.Ports[pi].Port {
				return false, nil, nil
			}
			old := prev.ports[i+pi]
			if p.Fingerprint == 0 || p.Fingerprint != old.port.Fingerprint ||
				(!backendsKept && c.backends[p.DefaultBackend] != old.defaultBackend) {
				same = false
			}
		}
		if !same {
			changedSvcs = append(changedSvcs, si)
			for pi := range s.Ports {
				changed = append(changed, i+pi)
			}
		}
		i += len(s.Ports)
	}
	if len(changedSvcs) == 0 {
		c.ports, c.byAddr, c.byHost, c.warned = prev.ports, prev.byAddr, prev.byHost, prev.warned
		return true, prev.ir.Services, nil
	}
	// Compile the changed ports first: on error nothing was copied.
	fresh := make([]*servicePort, len(changed))
	k, i := 0, 0
	for _, s := range w.Services {
		for _, p := range s.Ports {
			if k < len(changed) && changed[k] == i {
				sp, err := c.compilePort(s, p, prev.ports[i], jwks)
				if err != nil {
					return false, nil, err
				}
				fresh[k] = sp
				k++
			}
			i++
		}
	}
	c.ports = slices.Clone(prev.ports)
	c.byAddr, c.byHost = maps.Clone(prev.byAddr), maps.Clone(prev.byHost)
	for k, i := range changed {
		old, sp := prev.ports[i], fresh[k]
		c.ports[i] = sp
		// Another port may have the same key and have won it (the last
		// one of several does): replace only what old held.
		hp := hostPort{sp.svc.Hostname, sp.port.Port}
		if c.byHost[hp] == old {
			c.byHost[hp] = sp
		}
		for _, vip := range sp.svc.VIPs {
			a, err := netip.ParseAddr(vip)
			if err != nil {
				return false, nil, fmt.Errorf("service %s/%s: bad VIP %q", sp.svc.Namespace, sp.svc.Name, vip)
			}
			ap := netip.AddrPortFrom(a.Unmap(), sp.port.Port)
			if c.byAddr[ap] == old {
				c.byAddr[ap] = sp
			}
		}
	}
	// warned: prev's unchanged ones and the changed ones that warn, in order.
	c.warned = c.warned[:0]
	k = 0
	for _, i := range prev.warned {
		for k < len(changed) && changed[k] < i {
			if hasWarnings(fresh[k]) {
				c.warned = append(c.warned, changed[k])
			}
			k++
		}
		if k < len(changed) && changed[k] == i {
			if hasWarnings(fresh[k]) {
				c.warned = append(c.warned, i)
			}
			k++
			continue
		}
		c.warned = append(c.warned, i)
	}
	for ; k < len(changed); k++ {
		if hasWarnings(fresh[k]) {
			c.warned = append(c.warned, changed[k])
		}
	}
	services := slices.Clone(prev.ir.Services)
	for _, si := range changedSvcs {
		services[si] = w.Services[si]
	}
	return true, services, nil
}

// compilePorts fills c's ports and lookup maps from nothing, taking over
// the compiled policies and routes of prev's ports that have the same
// hostname, port and fingerprint.
func (c *config) compilePorts(prev *config, jwks *authn.JWKSCache) error {
	w := c.ir
	n := 0
	for _, s := range w.Services {
		n += len(s.Ports)
	}
	c.ports = make([]*servicePort, 0, n)
	c.byAddr = make(map[netip.AddrPort]*servicePort, n)
	c.byHost = make(map[hostPort]*servicePort, n)
	for _, s := range w.Services {
		for _, p := range s.Ports {
			hp := hostPort{s.Hostname, p.Port}
			var old *servicePort
			if prev != nil {
				old = prev.byHost[hp]
			}
			sp, err := c.compilePort(s, p, old, jwks)
			if err != nil {
				return err
			}
			if hasWarnings(sp) {
				c.warned = append(c.warned, len(c.ports))
			}
			c.ports = append(c.ports, sp)
			for _, vip := range s.VIPs {
				a, err := netip.ParseAddr(vip)
				if err != nil {
					return fmt.Errorf("service %s/%s: bad VIP %q", s.Namespace, s.Name, vip)
				}
				c.byAddr[netip.AddrPortFrom(a.Unmap(), p.Port)] = sp
			}
			c.byHost[hp] = sp
		}
	}
	return nil
}

// compilePort builds the servicePort of p, a port of s, taking over old's
// compiled routes and policies when old was compiled from a port with the
// same non-zero fingerprint (old may be nil). c.backends must be filled.
func (c *config) compilePort(s *ir.Service, p *ir.ServicePort, old *servicePort, jwks *authn.JWKSCache) (*servicePort, error) {
	sp := &servicePort{
		svc:            s,
		port:           p,
		defaultBackend: c.backends[p.DefaultBackend],
		name:           s.Hostname + ":" + strconv.Itoa(int(p.Port)),
	}
	if old != nil && p.Fingerprint != 0 && old.port.Fingerprint == p.Fingerprint {
		sp.routes, sp.authn, sp.authz = old.routes, old.authn, old.authz
		return sp, nil
	}
	sp.authn = authn.Compile(p.JWTRules, authn.Options{JWKS: jwks})
	sp.authz = authz.Compile(p.Policies, authz.Options{TrustDomain: c.ir.TrustDomain, TrustDomainAliases: c.ir.TrustDomainAliases})
	if len(p.Routes) > 0 {
		t, err := route.Compile(p.Routes)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s port %d: %w", s.Namespace, s.Name, p.Port, err)
		}
		sp.routes = t
	}
	return sp, nil
}

func hasWarnings(sp *servicePort) bool {
	return len(sp.authn.Warnings()) > 0 || len(sp.authz.Warnings()) > 0
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
	p.mirrors.close()
	p.pool.Close()
	p.jwks.Close()
	if c := p.config.Load(); c != nil && c.auth != nil {
		closeClients(c.auth.clients)
	}
}

// EndpointEjected reports whether outlier detection has ejected an
// endpoint (ip:port) right now.
func (p *Proxy) EndpointEjected(ep string) bool { return p.outlier.Ejected(ep) }
