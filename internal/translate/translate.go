// Package translate turns a source.Snapshot into the configuration of one
// waypoint (ir.Waypoint) plus the status conditions the objects should carry.
// It is a pure function: no I/O, no clocks, no randomness; the same snapshot
// always gives the same result.
package translate

import (
	"fmt"
	"runtime"
	"sort"
	"sync"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// Well-known names.
const (
	// DefaultGatewayClass is the GatewayClass our waypoints use.
	DefaultGatewayClass = "kgateway-waypoint"
	// ProtocolPROXY is the listener protocol of the sandwich inbound.
	ProtocolPROXY gwv1.ProtocolType = "istio.io/PROXY"
	// ProtocolHBONE is the listener protocol of the native HBONE inbound.
	ProtocolHBONE gwv1.ProtocolType = "HBONE"
	// DefaultInboundPort is the PROXY listener port when the Gateway has none.
	DefaultInboundPort = 15088

	LabelUseWaypoint          = "istio.io/use-waypoint"
	LabelUseWaypointNamespace = "istio.io/use-waypoint-namespace"
	LabelWaypointFor          = "istio.io/waypoint-for"
	LabelServiceName          = "kubernetes.io/service-name"
	AnnotationDryRun          = "istio.io/dry-run"
)

// Options are the translator's settings.
type Options struct {
	// Gateway picks the waypoint. Empty: the only Gateway of GatewayClass.
	Gateway ir.NamespacedName
	// GatewayClass is our class name (DefaultGatewayClass when empty).
	GatewayClass string
	// TrustDomain, TrustDomainAliases and RootNamespace override the mesh
	// config's trustDomain, trustDomainAliases and rootNamespace when set
	// (flags given explicitly); empty (nil) takes the mesh config's, whose
	// defaults are "cluster.local", none and "istio-system".
	//
	// TrustDomain is the SPIFFE trust domain of the mesh.
	TrustDomain string
	// TrustDomainAliases are treated as equal to TrustDomain by policies.
	TrustDomainAliases []string
	// RootNamespace is Istio's root namespace: policies there may target
	// the GatewayClass.
	RootNamespace string
	// ClusterDomain is the DNS suffix of services ("cluster.local" when empty).
	ClusterDomain string
}

// defaults fills the options left empty, from the mesh config (nil: Istio's
// defaults) where it has the setting.
func (o *Options) defaults(mc *meshconfig.Config) {
	if o.GatewayClass == "" {
		o.GatewayClass = DefaultGatewayClass
	}
	if mc != nil {
		if o.TrustDomain == "" {
			o.TrustDomain = mc.TrustDomain
		}
		if o.TrustDomainAliases == nil {
			o.TrustDomainAliases = mc.TrustDomainAliases
		}
		if o.RootNamespace == "" {
			o.RootNamespace = mc.RootNamespace
		}
	}
	if o.TrustDomain == "" {
		o.TrustDomain = meshconfig.DefaultTrustDomain
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = meshconfig.DefaultRootNamespace
	}
}

// Result is the outcome of one translation.
type Result struct {
	Waypoint   *ir.Waypoint `json:"waypoint"`
	Conditions []Condition  `json:"conditions,omitempty"`
}

// Condition is one status condition the translator computed for an object,
// in the shape of metav1.Condition plus the object (and, for routes and
// policies, the parent) it belongs to.
type Condition struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Parent names the parentRef (routes) or target (policies) this condition
	// is about, e.g. "Service httpbin/httpbin"; empty for the object itself.
	Parent  string `json:"parent,omitempty"`
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Translate builds the configuration of one waypoint from a snapshot. It
// fails only when the waypoint itself cannot be identified; problems with
// other objects become conditions and never lose the rest of the config.
func Translate(snap *source.Snapshot, opts Options) (*Result, error) {
	opts.defaults(snap.MeshConfig)
	gw, err := findGateway(snap, opts)
	if err != nil {
		return nil, err
	}
	t := newTranslator(snap, opts, gw)
	return t.run(), nil
}

// findGateway picks the waypoint Gateway named by opts, or the only one of our class.
func findGateway(snap *source.Snapshot, opts Options) (*gwv1.Gateway, error) {
	if opts.Gateway.Name != "" {
		for _, g := range snap.Gateways {
			if g.Namespace == opts.Gateway.Namespace && g.Name == opts.Gateway.Name {
				if string(g.Spec.GatewayClassName) != opts.GatewayClass {
					return nil, fmt.Errorf("gateway %s has class %q, not %q", opts.Gateway, g.Spec.GatewayClassName, opts.GatewayClass)
				}
				return g, nil
			}
		}
		return nil, fmt.Errorf("gateway %s not found in the manifests", opts.Gateway)
	}
	var found []*gwv1.Gateway
	for _, g := range snap.Gateways {
		if string(g.Spec.GatewayClassName) == opts.GatewayClass {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no Gateway of class %q in the manifests", opts.GatewayClass)
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, g := range found {
		names[i] = g.Namespace + "/" + g.Name
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%d Gateways of class %q (%v): choose one with --gateway NAMESPACE/NAME", len(found), opts.GatewayClass, names)
}

// InboundPort returns the port of the Gateway's istio.io/PROXY listener, or
// DefaultInboundPort when it has none.
func InboundPort(gw *gwv1.Gateway) uint16 {
	for _, l := range gw.Spec.Listeners {
		if l.Protocol == ProtocolPROXY {
			return uint16(l.Port)
		}
	}
	return DefaultInboundPort
}

// FindGateway exposes the gateway choice to callers that need the Gateway
// object itself before translating (to pick the inbound port).
func FindGateway(snap *source.Snapshot, opts Options) (*gwv1.Gateway, error) {
	opts.defaults(snap.MeshConfig)
	return findGateway(snap, opts)
}

// parallelMin is the number of items (services) from which parallel spreads
// the work over the CPUs; below it, one goroutine does it all. A variable
// so that tests can run small snapshots both ways.
var parallelMin = 2048

// parallel calls fn on consecutive ranges [lo, hi) covering [0, n): on the
// calling goroutine when n is small, else on up to GOMAXPROCS goroutines (at
// most 8) at once, returning when all are done. fn must only write what
// belongs to its range, so that the outcome is the same either way.
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
