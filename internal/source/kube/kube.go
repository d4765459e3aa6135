// Package kube is the cluster source: shared informers (the controller-runtime
// manager's cache) on every kind the translator reads, and one on istiod's
// mesh ConfigMap, turned into a source.Snapshot on demand. Kinds whose CRD is not installed (GRPCRoute,
// TCPRoute, ReferenceGrant, ServiceEntry, AuthorizationPolicy, DestinationRule,
// Telemetry, kgateway's TrafficPolicy and GatewayExtension) are left out
// of the snapshot and looked for again periodically, so installing a CRD
// later needs no restart.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"
	istiotelv1alpha1 "istio.io/client-go/pkg/apis/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// kind is one watched kind: how to make its objects and lists, and how to
// put a list into a Snapshot.
type kind struct {
	name     string
	required bool
	// status is true for kinds with a status subresource whose generation
	// moves with the spec: updates that change neither the generation nor
	// the labels and annotations (status writes, ours included) are not
	// changes to the translator.
	status bool
	// statusChanged, for a status kind, reports an update to the part of
	// the status the translator reads (a ServiceEntry's addresses), which
	// is a change even when nothing else moved.
	statusChanged func(oldObj, newObj any) bool
	obj           func() client.Object
	list          func() client.ObjectList
	fill          func(*source.Snapshot, client.ObjectList)
	// alt is an older API version to fall back to when this one is not
	// served (ReferenceGrant v1beta1).
	alt *kind
}

func kinds() []*kind {
	return []*kind{
		{name: "Namespace", required: true, obj: func() client.Object { return &corev1.Namespace{} },
			list: func() client.ObjectList { return &corev1.NamespaceList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.Namespaces = ptrs(l.(*corev1.NamespaceList).Items) }},
		{name: "Service", required: true, obj: func() client.Object { return &corev1.Service{} },
			list: func() client.ObjectList { return &corev1.ServiceList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.Services = ptrs(l.(*corev1.ServiceList).Items) }},
		{name: "EndpointSlice", required: true, obj: func() client.Object { return &discoveryv1.EndpointSlice{} },
			list: func() client.ObjectList { return &discoveryv1.EndpointSliceList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.EndpointSlices = ptrs(l.(*discoveryv1.EndpointSliceList).Items)
			}},
		{name: "Pod", required: true, obj: func() client.Object { return &corev1.Pod{} },
			list: func() client.ObjectList { return &corev1.PodList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.Pods = ptrs(l.(*corev1.PodList).Items) }},
		{name: "Node", required: true, status: true, obj: func() client.Object { return &corev1.Node{} },
			list: func() client.ObjectList { return &corev1.NodeList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.Nodes = ptrs(l.(*corev1.NodeList).Items) }},
		{name: "GatewayClass", required: true, status: true, obj: func() client.Object { return &gwv1.GatewayClass{} },
			list: func() client.ObjectList { return &gwv1.GatewayClassList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.GatewayClasses = ptrs(l.(*gwv1.GatewayClassList).Items)
			}},
		{name: "Gateway", required: true, status: true, obj: func() client.Object { return &gwv1.Gateway{} },
			list: func() client.ObjectList { return &gwv1.GatewayList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.Gateways = ptrs(l.(*gwv1.GatewayList).Items) }},
		{name: "HTTPRoute", required: true, status: true, obj: func() client.Object { return &gwv1.HTTPRoute{} },
			list: func() client.ObjectList { return &gwv1.HTTPRouteList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.HTTPRoutes = ptrs(l.(*gwv1.HTTPRouteList).Items) }},
		{name: "GRPCRoute", status: true, obj: func() client.Object { return &gwv1.GRPCRoute{} },
			list: func() client.ObjectList { return &gwv1.GRPCRouteList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.GRPCRoutes = ptrs(l.(*gwv1.GRPCRouteList).Items) }},
		{name: "TCPRoute", status: true, obj: func() client.Object { return &gwv1.TCPRoute{} },
			list: func() client.ObjectList { return &gwv1.TCPRouteList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) { s.TCPRoutes = ptrs(l.(*gwv1.TCPRouteList).Items) }},
		{name: "ReferenceGrant", status: true, obj: func() client.Object { return &gwv1.ReferenceGrant{} },
			list: func() client.ObjectList { return &gwv1.ReferenceGrantList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.ReferenceGrants = ptrs(l.(*gwv1.ReferenceGrantList).Items)
			},
			alt: &kind{name: "ReferenceGrant v1beta1", status: true, obj: func() client.Object { return &gwv1beta1.ReferenceGrant{} },
				list: func() client.ObjectList { return &gwv1beta1.ReferenceGrantList{} },
				fill: func(s *source.Snapshot, l client.ObjectList) {
					for i := range l.(*gwv1beta1.ReferenceGrantList).Items {
						g := &l.(*gwv1beta1.ReferenceGrantList).Items[i]
						s.ReferenceGrants = append(s.ReferenceGrants, &gwv1.ReferenceGrant{
							TypeMeta:   metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "ReferenceGrant"},
							ObjectMeta: g.ObjectMeta, Spec: g.Spec})
					}
				}}},
		{name: "ServiceEntry", status: true, statusChanged: serviceEntryAddressesChanged,
			obj:  func() client.Object { return &istionet.ServiceEntry{} },
			list: func() client.ObjectList { return &istionet.ServiceEntryList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.ServiceEntries = l.(*istionet.ServiceEntryList).Items
			}},
		{name: "WorkloadEntry", status: true, obj: func() client.Object { return &istionet.WorkloadEntry{} },
			list: func() client.ObjectList { return &istionet.WorkloadEntryList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.WorkloadEntries = l.(*istionet.WorkloadEntryList).Items
			}},
		{name: "AuthorizationPolicy", status: true, obj: func() client.Object { return &istiosec.AuthorizationPolicy{} },
			list: func() client.ObjectList { return &istiosec.AuthorizationPolicyList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.AuthorizationPolicies = l.(*istiosec.AuthorizationPolicyList).Items
			}},
		{name: "RequestAuthentication", status: true, obj: func() client.Object { return &istiosec.RequestAuthentication{} },
			list: func() client.ObjectList { return &istiosec.RequestAuthenticationList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.RequestAuthentications = l.(*istiosec.RequestAuthenticationList).Items
			}},
		// --- kgateway TrafficPolicy (begin) ---
		{name: "TrafficPolicy", status: true, obj: func() client.Object { return &kgwv1alpha1.TrafficPolicy{} },
			list: func() client.ObjectList { return &kgwv1alpha1.TrafficPolicyList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.TrafficPolicies = ptrs(l.(*kgwv1alpha1.TrafficPolicyList).Items)
			}},
		{name: "GatewayExtension", status: true, obj: func() client.Object { return &kgwv1alpha1.GatewayExtension{} },
			list: func() client.ObjectList { return &kgwv1alpha1.GatewayExtensionList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.GatewayExtensions = ptrs(l.(*kgwv1alpha1.GatewayExtensionList).Items)
			}},
		// --- kgateway TrafficPolicy (end) ---
		// --- Telemetry API (telemetry branch) ---
		{name: "Telemetry", status: true, obj: func() client.Object { return &istiotel.Telemetry{} },
			list: func() client.ObjectList { return &istiotel.TelemetryList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.Telemetries = l.(*istiotel.TelemetryList).Items
			},
			// Istio before 1.22 serves only v1alpha1 (the same schema).
			alt: &kind{name: "Telemetry v1alpha1", status: true, obj: func() client.Object { return &istiotelv1alpha1.Telemetry{} },
				list: func() client.ObjectList { return &istiotelv1alpha1.TelemetryList{} },
				fill: func(s *source.Snapshot, l client.ObjectList) {
					for _, o := range l.(*istiotelv1alpha1.TelemetryList).Items {
						s.Telemetries = append(s.Telemetries, &istiotel.Telemetry{
							TypeMeta:   metav1.TypeMeta{APIVersion: "telemetry.istio.io/v1alpha1", Kind: "Telemetry"},
							ObjectMeta: o.ObjectMeta, Spec: *o.Spec.DeepCopy()})
					}
				}}},
		// --- end Telemetry API ---
		// --- DestinationRule (issue 15, branch dr): optional, as the
		// other Istio kinds; v1 (objects written as v1beta1 or v1alpha3
		// are served as v1 too: one schema). ---
		{name: "DestinationRule", status: true, obj: func() client.Object { return &istionet.DestinationRule{} },
			list: func() client.ObjectList { return &istionet.DestinationRuleList{} },
			fill: func(s *source.Snapshot, l client.ObjectList) {
				s.DestinationRules = l.(*istionet.DestinationRuleList).Items
			}},
		// --- end DestinationRule ---
	}
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// Source is the cluster source. Create it with New, add it to the manager
// (it is a manager.Runnable), and call Snapshot once Synced is closed.
type Source struct {
	cache    cache.Cache
	log      *slog.Logger
	onChange func()
	recheck  time.Duration

	kinds []*kind
	mesh  *meshWatch // nil: no mesh ConfigMap followed

	mu     sync.Mutex
	active map[string]*activeKind // by kind name: informers that are running
	synced chan struct{}
}

type activeKind struct {
	k        *kind // the version in use (k or k.alt)
	informer cache.Informer
}

// Options tune a Source.
type Options struct {
	// OnChange is called (from informer goroutines; it must not block) after
	// any object the translator reads changes.
	OnChange func()
	// Recheck is how often absent CRDs are looked for again (default 30s).
	Recheck time.Duration
	// Mesh is istiod's mesh ConfigMap, followed live into the snapshots'
	// MeshConfig; nil follows none (Istio's defaults).
	Mesh   *MeshConfigMap
	Logger *slog.Logger
}

// New makes a source on a manager's cache.
func New(c cache.Cache, o Options) *Source {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnChange == nil {
		o.OnChange = func() {}
	}
	if o.Recheck == 0 {
		o.Recheck = 30 * time.Second
	}
	s := &Source{cache: c, log: o.Logger, onChange: o.OnChange, recheck: o.Recheck,
		kinds: kinds(), active: map[string]*activeKind{}, synced: make(chan struct{})}
	if o.Mesh != nil {
		s.mesh = newMeshWatch(*o.Mesh, o.Logger, o.OnChange)
	}
	return s
}

// NeedLeaderElection: every replica serves xDS, so every replica watches.
func (s *Source) NeedLeaderElection() bool { return false }

// Synced is closed once the informers of every installed kind have synced.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Start starts the informers (it blocks until ctx ends). It fails when a
// required kind (core kinds, GatewayClass, Gateway, HTTPRoute) is not served.
func (s *Source) Start(ctx context.Context) error {
	for _, k := range s.kinds {
		ok, err := s.activate(ctx, k, true)
		if err != nil {
			return err
		}
		if !ok {
			if k.required {
				return fmt.Errorf("%s is not served by the API server: install the Gateway API CRDs (standard channel)", k.name)
			}
			s.log.Info("kind not served by the API server; it is left out until its CRD is installed", "kind", k.name)
		}
	}
	if s.mesh != nil {
		if err := s.mesh.start(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	close(s.synced)
	s.onChange()
	t := time.NewTicker(s.recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.recheckAbsent(ctx)
		}
	}
}

// recheckAbsent starts the informers of kinds whose CRD has appeared.
func (s *Source) recheckAbsent(ctx context.Context) {
	for _, k := range s.kinds {
		s.mu.Lock()
		_, on := s.active[k.name]
		s.mu.Unlock()
		if on {
			continue
		}
		ok, err := s.activate(ctx, k, false)
		if err != nil {
			s.log.Error("starting an informer", "kind", k.name, "error", err.Error())
			continue
		}
		if ok {
			s.log.Info("kind now served by the API server; watching it", "kind", k.name)
		}
	}
}

// activate starts the informer of k (or of its older version) and waits for
// it to sync. ok is false when neither version is served.
func (s *Source) activate(ctx context.Context, k *kind, first bool) (bool, error) {
	for v := k; v != nil; v = v.alt {
		inf, err := s.cache.GetInformer(ctx, v.obj(), cache.BlockUntilSynced(true))
		if meta.IsNoMatchError(err) || discovery.IsGroupDiscoveryFailedError(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("informer for %s: %w", v.name, err)
		}
		if _, err := inf.AddEventHandler(s.handler(v)); err != nil {
			return false, fmt.Errorf("event handler for %s: %w", v.name, err)
		}
		s.mu.Lock()
		s.active[k.name] = &activeKind{k: v, informer: inf}
		s.mu.Unlock()
		if !first {
			s.onChange()
		}
		return true, nil
	}
	return false, nil
}

func (s *Source) handler(k *kind) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.onChange() },
		UpdateFunc: func(oldObj, newObj any) {
			if k.status && !specChanged(oldObj, newObj) &&
				(k.statusChanged == nil || !k.statusChanged(oldObj, newObj)) {
				return
			}
			if op, ok := oldObj.(*corev1.Pod); ok {
				if np, ok := newObj.(*corev1.Pod); ok && !podChanged(op, np) {
					return
				}
			}
			s.onChange()
		},
		DeleteFunc: func(any) { s.onChange() },
	}
}

// specChanged is false for updates that only touched the status (or nothing
// the translator reads: resourceVersion, managedFields).
func specChanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	if !ok1 || !ok2 {
		return true
	}
	return o.GetGeneration() != n.GetGeneration() ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
}

// serviceEntryAddressesChanged reports a change of a ServiceEntry's
// status.addresses (istiod's auto-allocated VIPs, which the translator
// serves). The conditions in the same status (istiod's, and ours) are no
// change: our own status writes must not trigger a translation.
func serviceEntryAddressesChanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*istionet.ServiceEntry)
	n, ok2 := newObj.(*istionet.ServiceEntry)
	if !ok1 || !ok2 {
		return true
	}
	a, b := o.Status.GetAddresses(), n.Status.GetAddresses()
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if a[i].GetHost() != b[i].GetHost() || a[i].GetValue() != b[i].GetValue() {
			return true
		}
	}
	return false
}

// podChanged is false for pod updates that change nothing the translator
// reads (most pod updates are container status changes).
func podChanged(o, n *corev1.Pod) bool {
	if o.Status.PodIP != n.Status.PodIP || len(o.Status.PodIPs) != len(n.Status.PodIPs) ||
		o.Spec.NodeName != n.Spec.NodeName || // bound to a node: its locality (translate/locality.go)
		!maps.Equal(o.Labels, n.Labels) || o.Status.Phase != n.Status.Phase ||
		!o.DeletionTimestamp.Equal(n.DeletionTimestamp) {
		return true
	}
	for i := range o.Status.PodIPs {
		if o.Status.PodIPs[i] != n.Status.PodIPs[i] {
			return true
		}
	}
	return false
}

// MeshConfigError is why the mesh ConfigMap's document is not in force
// ("" when it is, or when none is followed).
func (s *Source) MeshConfigError() string {
	if s.mesh == nil {
		return ""
	}
	_, err := s.mesh.config()
	return err
}

// Served reports which optional kinds are being watched.
func (s *Source) Served() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, k := range s.kinds {
		_, out[k.name] = s.active[k.name]
	}
	return out
}

// Snapshot lists every watched kind from the informers' stores. Objects are
// shared with the cache and must not be modified (the translator never
// does). Lists are sorted by namespace/name, so equal cluster states give
// equal snapshots.
func (s *Source) Snapshot(ctx context.Context) (*source.Snapshot, error) {
	s.mu.Lock()
	active := make([]*activeKind, 0, len(s.active))
	for _, k := range s.kinds {
		if a := s.active[k.name]; a != nil {
			active = append(active, a)
		}
	}
	s.mu.Unlock()
	snap := &source.Snapshot{}
	if s.mesh != nil {
		snap.MeshConfig, _ = s.mesh.config()
	}
	for _, a := range active {
		l := a.k.list()
		if err := s.cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing %s: %w", a.k.name, err)
		}
		a.k.fill(snap, l)
	}
	sortSnapshot(snap)
	return snap, nil
}

func sortObjs[P metav1.Object](s []P) {
	sort.SliceStable(s, func(i, j int) bool {
		if a, b := s[i].GetNamespace(), s[j].GetNamespace(); a != b {
			return a < b
		}
		return s[i].GetName() < s[j].GetName()
	})
}

func sortSnapshot(s *source.Snapshot) {
	sortObjs(s.Namespaces)
	sortObjs(s.Services)
	sortObjs(s.EndpointSlices)
	sortObjs(s.Pods)
	sortObjs(s.GatewayClasses)
	sortObjs(s.Gateways)
	sortObjs(s.HTTPRoutes)
	sortObjs(s.GRPCRoutes)
	sortObjs(s.TCPRoutes)
	sortObjs(s.ReferenceGrants)
	sortObjs(s.ServiceEntries)
	sortObjs(s.WorkloadEntries)
	sortObjs(s.AuthorizationPolicies)
	sortObjs(s.RequestAuthentications)
	sortObjs(s.TrafficPolicies) // kgateway TrafficPolicy
	sortObjs(s.GatewayExtensions)
	sortObjs(s.Telemetries)      // Telemetry API (telemetry branch)
	sortObjs(s.DestinationRules) // DestinationRule (branch dr)
}

// CacheOptions are the manager cache settings the source expects: managed
// fields stripped from every object, and Pods reduced to what the
// translator reads (metadata and IPs), since a cluster has many; Nodes to
// their name and labels (their region and zone).
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:  {Transform: slimPod},
			&corev1.Node{}: {Transform: slimNode},
		},
	}
}

// slimPod keeps a Pod's identity, labels and addresses.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Generation: p.Generation, Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, ServiceAccountName: p.Spec.ServiceAccountName},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs,
			HostIP: p.Status.HostIP, Conditions: p.Status.Conditions},
	}, nil
}

// slimNode keeps a Node's name and labels: the translator reads only its
// topology labels, and a Node's status is large and changes often.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			Generation: n.Generation, Labels: n.Labels, DeletionTimestamp: n.DeletionTimestamp,
		},
	}, nil
}
