// Package translate turns a source.Snapshot into the configuration of one
// waypoint (ir.Waypoint) plus the status conditions the objects should carry.
// It is a pure function: no I/O, no clocks, no randomness; the same snapshot
// always gives the same result.
package translate

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// NodeName, when set, is a node the waypoint runs on besides those of
	// the Gateway's pods (standalone's --node-name, with no pod of its
	// own): its locality is listed in ir.Waypoint.NodeLocalities too.
	NodeName string
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
	Waypoint *ir.Waypoint `json:"waypoint"`
	// Gateway is the verdict on the waypoint Gateway and its listeners
	// (ValidateGateway), with the routes attached to each listener.
	Gateway    GatewayVerdict `json:"gateway"`
	Conditions []Condition    `json:"conditions,omitempty"`
}

// Condition is one status condition the translator computed for an object
// other than the waypoint Gateway, in the shape of metav1.Condition plus
// the object (and, for routes, the parentRef) it belongs to.
type Condition struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Parent is, for a route, the spec.parentRefs entry this condition is
	// about; nil for a condition of the object itself.
	Parent  *ParentRef             `json:"parent,omitempty"`
	Type    string                 `json:"type"`
	Status  metav1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason"`
	Message string                 `json:"message,omitempty"`
}

// ParentRef is one entry of a route's spec.parentRefs: its index there and
// the reference as written (no defaults filled in).
type ParentRef struct {
	Index int                  `json:"index"`
	Ref   gwv1.ParentReference `json:"ref"`
}

// Key identifies a condition among a result's: the object, the parentRef
// index and the type (two results' conditions with one Key are the same
// condition, perhaps with another status).
func (c *Condition) Key() string {
	k := c.Kind + "|" + c.Namespace + "|" + c.Name + "|"
	if c.Parent != nil {
		k += strconv.Itoa(c.Parent.Index)
	}
	return k + "|" + c.Type
}

// ParentName names the condition's parentRef for people (logs):
// "Service ns/svc:8080", "Gateway ns/wp#mesh"; "" without one. Status
// matches conditions to parentRefs by Parent.Index, never by this name.
func (c *Condition) ParentName() string {
	if c.Parent == nil {
		return ""
	}
	return parentName(c.Parent.Ref, c.Namespace)
}

// Translate builds the configuration of one waypoint from a snapshot. It
// fails when the waypoint itself cannot be identified, and with a
// *NotAcceptedError when its Gateway breaks the listener rules
// (ValidateGateway); problems with other objects become conditions and
// never lose the rest of the config.
func Translate(snap *source.Snapshot, opts Options) (*Result, error) {
	opts.defaults(snap.MeshConfig)
	gw, err := findGateway(snap, opts)
	if err != nil {
		return nil, err
	}
	verdict, listeners := validateGateway(gw)
	if _, own := gw.Labels[LabelWaypointFor]; !own && verdict.IsAccepted() {
		for _, gc := range snap.GatewayClasses {
			if w, ok := gc.Labels[LabelWaypointFor]; ok && gc.Name == string(gw.Spec.GatewayClassName) && !validTrafficType(w) {
				verdict.Accepted = badTrafficType("its GatewayClass's", w)
			}
		}
	}
	if !verdict.IsAccepted() {
		return nil, &NotAcceptedError{Gateway: ir.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}, Verdict: verdict}
	}
	t := newTranslator(snap, opts, gw)
	t.verdict, t.listeners = verdict, listeners
	if verdict.NativeHBONE {
		t.out.HBONE, t.out.InboundPort = true, HBONEPort
		t.indexPods()
	}
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
