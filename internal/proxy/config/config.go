// Package config is the proxy's compiled form of an ir.Waypoint: the lookup
// maps by (VIP, port) and (hostname, port), and per service port its route
// table, authenticator, authorization evaluator and default backend, with
// the backends' endpoint lists.
//
// Compile builds a Config from an ir.Waypoint, taking over from the
// previous Config what has not changed. It does no I/O and starts nothing:
// it can be tested, and run ahead of time, without sockets. A Config is
// never written once compiled; the proxy swaps one pointer to put the next
// in force, and whoever holds a Config (a connection, a request) keeps a
// consistent generation: its service ports and backends belong together.
package config

import (
	"net/netip"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/ratelimit"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// Config is a compiled ir.Waypoint. Its maps are never written once it is
// compiled, so the next configuration may share them.
type Config struct {
	version  uint64
	ir       *ir.Waypoint
	byAddr   map[netip.AddrPort]*ServicePort
	byHost   map[hostPort]*ServicePort
	backends map[string]*upstream.Backend
	// ports are the service ports in the order of ir.Services and their
	// Ports; warned are the indexes in ports of those whose policies
	// compiled with warnings.
	ports  []*ServicePort
	warned []int
	// backendsKept: every backend is the previous configuration's.
	backendsKept bool
	// workloads are the compiled ir.Workloads by address, served by
	// workloadPort (nil when the waypoint takes no workload traffic).
	workloads    map[netip.Addr]*workload
	workloadPort *ServicePort
	// authBackends maps an external authorizer's host and port to the key
	// in backends of the service the translator resolved it to
	// (ir.ExtAuthzProvider.Backend).
	authBackends map[hostPort]string
	// place is where the waypoint runs, for its backends' locality tiers.
	place upstream.Place
	// limits gives the TrafficPolicies' rate limit buckets (Shared's).
	limits *ratelimit.Registry
}

// Place is where this configuration has the waypoint run (Shared's
// locality, else its node's in the IR's NodeLocalities).
func (c *Config) Place() upstream.Place { return c.place }

type hostPort struct {
	host string
	port uint16
}

// ServicePort is everything needed to serve one (service, port). Its
// fields are never written once compiled.
type ServicePort struct {
	// Service and Port are the IR this was compiled from.
	Service *ir.Service
	Port    *ir.ServicePort
	// Routes is the route table; nil when no route is attached (requests
	// go to DefaultBackend).
	Routes *route.Table
	// Traffic is the Gateway's TrafficPolicy for requests no route entry
	// takes; nil without one.
	Traffic *route.Traffic
	Authn   *authn.Authenticator
	Authz   *authz.Evaluator
	// DefaultBackend is the service itself (nil when the configuration has
	// no such backend).
	DefaultBackend *upstream.Backend
	// H2CBackend, for workload traffic only, is the workload's address
	// spoken to in HTTP/2: an h2c request on a port whose protocol was
	// detected goes there (DefaultBackend speaks HTTP/1.1).
	H2CBackend *upstream.Backend
	// Name is "hostname:port", for logs.
	Name string
}

// Target is what a connection was classified to: a service port and the
// configuration generation it belongs to. Backends named by the port's
// routes are looked up in Config, never in another generation.
type Target struct {
	Config *Config
	Port   *ServicePort
}

// Protocol is how the target's port is served (HTTP or TCP).
func (t Target) Protocol() ir.Protocol { return t.Port.Port.Protocol }

// Backend returns the backend with that key in the target's generation.
func (t Target) Backend(key string) *upstream.Backend { return t.Config.backends[key] }

// Version is the number of configurations compiled up to this one (1 for
// one compiled without a predecessor).
func (c *Config) Version() uint64 { return c.version }

// IR is the configuration this was compiled from. It is equal to the IR
// given to Compile, and shares with the previous configuration's IR the
// services and backends that did not change.
func (c *Config) IR() *ir.Waypoint { return c.ir }

// Backend returns the backend with that key (nil when there is none).
func (c *Config) Backend(key string) *upstream.Backend { return c.backends[key] }

// Workloads reports how many addresses of workloads the configuration serves.
func (c *Config) Workloads() int { return len(c.workloads) }

// Ports are the service ports, in the order of the IR's services and their
// ports. The slice must not be modified.
func (c *Config) Ports() []*ServicePort { return c.ports }

// Lookup finds the service port a connection is for: by the address the
// client dialled, else by the hostname ztunnel passed (TLV 0xD1, "" when
// absent) and the dialled port, else, for workload traffic, by the
// workload the dialled IP belongs to (any port).
func (c *Config) Lookup(dst netip.AddrPort, hostname string) (Target, bool) {
	sp := c.byAddr[dst]
	if sp == nil && hostname != "" {
		sp = c.byHost[hostPort{hostname, dst.Port()}]
	}
	if sp == nil {
		// Workload traffic: addressed to a workload's IP, any port.
		ip := dst.Addr().Unmap()
		w := c.workloads[ip]
		if w == nil {
			return Target{}, false
		}
		sp = w.port(ip, dst.Port())
	}
	return Target{Config: c, Port: sp}, true
}

// Resolve finds an endpoint to dial for a service hostname and port the
// waypoint itself calls (an external authorizer): of the backend the
// translator resolved the authorizer to, else of the service port of that
// hostname. It reports false when the configuration knows no ready
// endpoint for it.
func (c *Config) Resolve(host string, port uint16) (string, bool) {
	if key, ok := c.authBackends[hostPort{host, port}]; ok {
		if b := c.backends[key]; b != nil {
			if ep, ok := b.Pick(); ok {
				return ep, true
			}
		}
	}
	if sp := c.byHost[hostPort{host, port}]; sp != nil && sp.DefaultBackend != nil {
		return sp.DefaultBackend.Pick()
	}
	return "", false
}

// Warning is something a service port's policies compiled with.
type Warning struct {
	// Service is "hostname:port".
	Service string
	// Kind is "RequestAuthentication" or "AuthorizationPolicy".
	Kind    string
	Message string
}

// Warnings are the compilation warnings of every service port, in port
// order.
func (c *Config) Warnings() []Warning {
	var out []Warning
	for _, i := range c.warned {
		sp := c.ports[i]
		for _, w := range sp.Authn.Warnings() {
			out = append(out, Warning{Service: sp.Name, Kind: "RequestAuthentication", Message: w})
		}
		for _, w := range sp.Authz.Warnings() {
			out = append(out, Warning{Service: sp.Name, Kind: "AuthorizationPolicy", Message: w})
		}
	}
	return out
}

// BackendsKept reports whether every backend is the one of the
// configuration this was compiled from (then so are the endpoints).
func (c *Config) BackendsKept() bool { return c.backendsKept }

// Endpoints is the set of endpoints (ip:port) of every backend.
func (c *Config) Endpoints() map[string]bool {
	keep := map[string]bool{}
	for _, b := range c.ir.Backends {
		for _, ep := range b.Endpoints {
			keep[ep] = true
		}
	}
	return keep
}
