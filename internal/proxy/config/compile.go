package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/ratelimit"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// Shared is the state that outlives configurations, which compiled
// configurations point to: the proxy owns it and passes the same to every
// Compile.
type Shared struct {
	// Outlier keeps the endpoints' health across configurations; nil gives
	// the configuration one of its own.
	Outlier *upstream.Outlier
	// JWKS caches remote JSON Web Key Sets across configurations; nil uses
	// authn's process-wide cache.
	JWKS *authn.JWKSCache
	// NodeName is the node the waypoint runs on: its locality is the one
	// ir.Waypoint.NodeLocalities gives it, unless Locality is set.
	NodeName string
	// Locality, when set, is where the waypoint runs, whatever the IR says
	// (standalone's --locality).
	Locality *ir.Locality
	// RateLimits keeps the TrafficPolicies' token buckets across
	// configurations; nil gives each configuration buckets of its own.
	RateLimits *ratelimit.Registry
}

// place is where the waypoint runs by sh and w.
func (sh Shared) place(w *ir.Waypoint) upstream.Place {
	if sh.Locality != nil {
		return upstream.Place{Locality: *sh.Locality, Node: sh.NodeName, Known: true}
	}
	if l, ok := w.NodeLocalities[sh.NodeName]; ok && sh.NodeName != "" {
		return upstream.Place{Locality: l, Node: sh.NodeName, Known: true}
	}
	return upstream.Place{Node: sh.NodeName}
}

// Compile builds the proxy's form of w. prev, the configuration in force
// (nil for the first), lends what has not changed, compared by value with
// the IR prev was compiled from:
//
//   - a backend with the same key and equal IR is the same
//     *upstream.Backend (same endpoints, round-robin cursor and health
//     state); a new or changed one is built and continues the round-robin
//     cursor of the backend it replaces;
//   - a service port keeps its compiled route table when its routes are
//     equal, its authorization evaluator when its policies are, its
//     authenticator when its JWT rules are (and the trust domains, which
//     every evaluator depends on, are unchanged). When the services are laid out as before (same
//     hostnames, names, VIPs and ports, in the same order: every update
//     that changes only routes, policies or endpoints), a service none of
//     whose ports changed keeps its compiled ports whole, and the lookup
//     maps are shared with prev, or copied from it and patched where ports
//     changed.
//
// The result is the same as compiling w from nothing, and prev is not
// modified. On error there is no result and nothing changed.
//
// The IR of the result (Config.IR) is w with the services and backends
// that were taken over replaced by prev's objects, which are equal to w's:
// the compiled parts point to those, and keeping w's copies as well would
// hold two IRs in memory after an update.
func Compile(w *ir.Waypoint, prev *Config, sh Shared) (*Config, error) {
	if err := check(w); err != nil {
		return nil, err
	}
	if sh.Outlier == nil {
		sh.Outlier = upstream.NewOutlier()
	}
	c := &Config{ir: w, version: 1, place: sh.place(w), limits: sh.RateLimits} // during compilation, c.ir is w
	if prev != nil {
		c.version = prev.version + 1
	}
	irBackends := c.compileBackends(prev, sh.Outlier)
	c.compileAuthBackends()
	portsPrev := prev
	if prev != nil && !sameForPorts(prev.ir, w) {
		portsPrev = nil // every port compiles differently: none to reuse
	}
	patched, services, err := c.patchPorts(portsPrev, sh.JWKS)
	if err != nil {
		return nil, err
	}
	if !patched {
		if err := c.compilePorts(portsPrev, sh.JWKS); err != nil {
			return nil, err
		}
		services = w.Services
	}
	if err := c.compileWorkloads(portsPrev, sh.JWKS, sh.Outlier); err != nil {
		return nil, err
	}
	if prev != nil {
		merged := *w
		merged.Services, merged.Backends = services, irBackends
		c.ir = &merged
	}
	return c, nil
}

// check refuses an IR the compiler cannot use: missing (null) entries,
// which a hand-written or damaged configuration can hold.
func check(w *ir.Waypoint) error {
	if w == nil {
		return errors.New("no configuration")
	}
	for i, s := range w.Services {
		if s == nil {
			return fmt.Errorf("service %d is empty", i)
		}
		for j, p := range s.Ports {
			if p == nil {
				return fmt.Errorf("service %s/%s: port %d is empty", s.Namespace, s.Name, j)
			}
			for k, r := range p.Routes {
				if r == nil {
					return fmt.Errorf("service %s/%s port %d: route entry %d is empty", s.Namespace, s.Name, p.Port, k)
				}
			}
		}
	}
	for k, b := range w.Backends {
		if b == nil {
			return fmt.Errorf("backend %s is empty", k)
		}
	}
	for name, p := range w.ExtAuthzProviders {
		if p == nil {
			return fmt.Errorf("external authorizer %s is empty", name)
		}
	}
	for name, p := range w.RateLimitProviders {
		if p == nil {
			return fmt.Errorf("rate limit service %s is empty", name)
		}
	}
	return nil
}

// compileAuthBackends fills c.authBackends from the IR's external
// authorizers.
func (c *Config) compileAuthBackends() {
	for _, p := range c.ir.ExtAuthzProviders {
		if p.Backend == "" {
			continue
		}
		if c.authBackends == nil {
			c.authBackends = make(map[hostPort]string, len(c.ir.ExtAuthzProviders))
		}
		c.authBackends[hostPort{p.Host, p.Port}] = p.Backend
	}
	for _, p := range c.ir.RateLimitProviders {
		if p.Backend == "" {
			continue
		}
		if c.authBackends == nil {
			c.authBackends = make(map[hostPort]string, len(c.ir.RateLimitProviders))
		}
		c.authBackends[hostPort{p.Host, p.Port}] = p.Backend
	}
}

// sameForPorts reports whether the fields of the Waypoint that compiled
// service ports depend on, beyond the ports' own IR, are equal. A field of
// ir.Waypoint that changes how a port compiles must be compared here; the
// mesh config's path normalization and default retry policy are read from
// Config.IR per request, and its external authorizers by the proxy
// (TestWaypointFieldsAreAccountedFor keeps the list).
func sameForPorts(a, b *ir.Waypoint) bool {
	return a.TrustDomain == b.TrustDomain && slices.Equal(a.TrustDomainAliases, b.TrustDomainAliases)
}

// compileBackends fills c.backends, taking over prev's unchanged backends,
// and sets c.backendsKept. It returns the IR of the backends: each key's
// *ir.Backend is the one its *upstream.Backend was built from.
func (c *Config) compileBackends(prev *Config, outlier *upstream.Outlier) map[string]*ir.Backend {
	w := c.ir
	var prevBackends map[string]*upstream.Backend
	samePlace := true
	if prev != nil {
		prevBackends = prev.backends
		samePlace = prev.place == c.place
	}
	// Compare with prev's backends on every CPU for large configurations:
	// reading both IRs is most of the cost of an update that changes
	// little. Each range records the indexes of its new or changed keys.
	keys := make([]string, 0, len(w.Backends))
	for k := range w.Backends {
		keys = append(keys, k)
	}
	var (
		mu      sync.Mutex
		changed []int // indexes in keys
		found   int   // keys of w that prev has
	)
	parallel(len(keys), func(lo, hi int) {
		var ch []int
		n := 0
		for i, k := range keys[lo:hi] {
			if old := prevBackends[k]; old != nil {
				n++
				// A backend ranked by locality is built again when the
				// waypoint's place changed (a node relabelled).
				if equalBackend(w.Backends[k], old.IR) && (samePlace || w.Backends[k].TrafficDistribution == "") {
					continue
				}
			}
			ch = append(ch, lo+i)
		}
		mu.Lock()
		changed, found = append(changed, ch...), found+n
		mu.Unlock()
	})
	type built struct {
		key     string
		backend *upstream.Backend
	}
	fresh := make([]built, 0, len(changed))
	for _, i := range changed {
		k := keys[i]
		nb := upstream.NewBackendAt(k, w.Backends[k], outlier, c.place)
		if old := prevBackends[k]; old != nil {
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
		c.backends, c.backendsKept = prevBackends, true
		return prev.ir.Backends
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
	return irBackends
}

// patchPorts fills c's ports and lookup maps from prev when the services
// are laid out as in prev (see Compile), compiling only the ports that
// changed, and returns the IR of the services: prev's for those taken
// over, w's for the others. It reports false, having done nothing, when
// they are not laid out as in prev. c.backends must be filled.
func (c *Config) patchPorts(prev *Config, jwks *authn.JWKSCache) (bool, []*ir.Service, error) {
	w := c.ir
	if prev == nil || len(prev.ir.Services) != len(w.Services) {
		return false, nil, nil
	}
	// A port is taken over whole, with the *ir.Service it points to, only
	// when no port of its service changed: then the old service is equal to
	// the new one. Otherwise every port of the service gets a new
	// ServicePort (keeping the compiled parts of its unchanged ports).
	// Where each service's ports start in prev.ports (the same in c.ports
	// when the layout is the same).
	first := make([]int, len(w.Services)+1)
	for si, s := range w.Services {
		first[si+1] = first[si] + len(s.Ports)
	}
	if first[len(w.Services)] != len(prev.ports) {
		return false, nil, nil
	}
	// Compare on every CPU for large configurations; each range records
	// its changed services, and whether all its services are laid out as
	// before.
	var (
		mu          sync.Mutex
		changedSvcs []int // indexes in services
		moved       bool
	)
	parallel(len(w.Services), func(lo, hi int) {
		var ch []int
		for si := lo; si < hi; si++ {
			s := w.Services[si]
			if !sameService(s, prev.ir.Services[si]) {
				mu.Lock()
				moved = true
				mu.Unlock()
				return
			}
			for pi, p := range s.Ports {
				old := prev.ports[first[si]+pi]
				if (!c.backendsKept && c.backends[p.DefaultBackend] != old.DefaultBackend) || !equalPort(p, old.Port) {
					ch = append(ch, si)
					break
				}
			}
		}
		mu.Lock()
		changedSvcs = append(changedSvcs, ch...)
		mu.Unlock()
	})
	if moved {
		return false, nil, nil
	}
	slices.Sort(changedSvcs)
	var changed []int // indexes in ports
	for _, si := range changedSvcs {
		for i := first[si]; i < first[si+1]; i++ {
			changed = append(changed, i)
		}
	}
	if len(changedSvcs) == 0 {
		c.ports, c.byAddr, c.byHost, c.warned = prev.ports, prev.byAddr, prev.byHost, prev.warned
		return true, prev.ir.Services, nil
	}
	// Compile the changed ports first: on error nothing was copied.
	fresh := make([]*ServicePort, len(changed))
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
		hp := hostPort{sp.Service.Hostname, sp.Port.Port}
		if c.byHost[hp] == old {
			c.byHost[hp] = sp
		}
		for _, vip := range sp.Service.VIPs {
			a, err := netip.ParseAddr(vip)
			if err != nil {
				return false, nil, fmt.Errorf("service %s/%s: bad VIP %q", sp.Service.Namespace, sp.Service.Name, vip)
			}
			ap := netip.AddrPortFrom(a.Unmap(), sp.Port.Port)
			if c.byAddr[ap] == old {
				c.byAddr[ap] = sp
			}
		}
	}
	// warned: prev's unchanged ones and the changed ones that warn, in order.
	c.warned = nil
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
// hostname and port and equal IR. c.backends must be filled.
func (c *Config) compilePorts(prev *Config, jwks *authn.JWKSCache) error {
	w := c.ir
	n := 0
	for _, s := range w.Services {
		n += len(s.Ports)
	}
	c.ports = make([]*ServicePort, 0, n)
	c.byAddr = make(map[netip.AddrPort]*ServicePort, n)
	c.byHost = make(map[hostPort]*ServicePort, n)
	for _, s := range w.Services {
		for _, p := range s.Ports {
			hp := hostPort{s.Hostname, p.Port}
			var old *ServicePort
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

// compilePort builds the ServicePort of p, a port of s, taking over each
// compiled part of old (which may be nil) whose IR is equal: the route
// table when the routes are, the evaluator when the policies are, the
// authenticator when the JWT rules are. c.backends must be filled.
func (c *Config) compilePort(s *ir.Service, p *ir.ServicePort, old *ServicePort, jwks *authn.JWKSCache) (*ServicePort, error) {
	sp := &ServicePort{
		Service:        s,
		Port:           p,
		DefaultBackend: c.backends[p.DefaultBackend],
		Name:           s.Hostname + ":" + strconv.Itoa(int(p.Port)),
	}
	var o *ir.ServicePort
	if old != nil {
		o = old.Port
	}
	if o != nil && equalPtrs(p.JWTRules, o.JWTRules, equalJWTRule) {
		sp.Authn = old.Authn
	} else {
		sp.Authn = authn.Compile(p.JWTRules, authn.Options{JWKS: jwks})
	}
	if o != nil && equalPtrs(p.Policies, o.Policies, equalPolicy) {
		sp.Authz = old.Authz
	} else {
		sp.Authz = authz.Compile(p.Policies, authz.Options{TrustDomain: c.ir.TrustDomain, TrustDomainAliases: c.ir.TrustDomainAliases})
	}
	switch {
	case o != nil && equalPtrs(p.Routes, o.Routes, equalRule):
		sp.Routes = old.Routes
	case len(p.Routes) > 0:
		t, err := route.CompileWith(p.Routes, c.limits)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s port %d: %w", s.Namespace, s.Name, p.Port, err)
		}
		sp.Routes = t
	}
	if o != nil && eqPtr(p.Traffic, o.Traffic, equalTraffic) {
		sp.Traffic = old.Traffic
	} else {
		tr, err := route.CompileTraffic(p.Traffic, c.limits)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s port %d: %w", s.Namespace, s.Name, p.Port, err)
		}
		sp.Traffic = tr
	}
	return sp, nil
}

// parallelMin is the number of items (backends, services) from which
// parallel spreads the work over the CPUs; below it, one goroutine does it
// all. A variable so that tests can run small configurations both ways.
var parallelMin = 2048

// parallel calls fn on consecutive ranges [lo, hi) covering [0, n): on the
// calling goroutine when n is small, else on up to GOMAXPROCS goroutines
// (at most 8) at once, returning when all are done.
func parallel(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), 8)
	if n < parallelMin || workers < 2 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := chunk; lo < n; lo += chunk {
		wg.Go(func() { fn(lo, min(lo+chunk, n)) })
	}
	fn(0, min(chunk, n))
	wg.Wait()
}

func hasWarnings(sp *ServicePort) bool {
	return len(sp.Authn.Warnings()) > 0 || len(sp.Authz.Warnings()) > 0
}
