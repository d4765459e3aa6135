// Package deployer runs each accepted waypoint Gateway of our class (the
// listener rules are translate.ValidateGateway's): a
// ServiceAccount, a Deployment running `kgateway-waypoint-proxy` (the
// data-plane binary, with the flags of `kgateway-waypoint proxy`) and a
// ClusterIP Service (plus an HPA and a PodDisruptionBudget when the
// parameters ask for them), applied with server-side apply, owned by the
// Gateway. When the Gateway goes (or stops being ours, or valid), the
// objects are deleted — by the garbage collector through the owner
// references in a cluster, and by the deployer itself as well, so that
// nothing depends on the collector running.
package deployer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// FieldOwner is our server-side apply field manager.
const FieldOwner = "kgateway-waypoint"

// Outcome is what the deployer last did for a Gateway; the status writer
// reports it.
type Outcome struct {
	// Generation of the Gateway the outcome is for.
	Generation int64
	// Deployed is true once every object was applied.
	Deployed bool
	// ParametersError is set when the parameters are invalid (the Gateway
	// is then not accepted, reason InvalidParameters).
	ParametersError string
	// ParametersUnsupported names the GatewayParameters fields set that
	// the waypoint does not implement (the Gateway reports them).
	ParametersUnsupported string
	// ListenersError is set when the listener rules refuse the Gateway
	// (translate.ValidateGateway): nothing is deployed.
	ListenersError string
	// Error is the last transient failure (it is retried).
	Error string
}

// Reconciler is the deployer controller.
type Reconciler struct {
	client    client.Client
	apiReader client.Reader
	class     string
	cfg       Config
	log       *slog.Logger
	notify    func(types.NamespacedName)
	recheck   time.Duration

	mu       sync.Mutex
	outcomes map[types.NamespacedName]Outcome
}

// Options of the deployer.
type Options struct {
	// GatewayClass is the class whose Gateways we deploy.
	GatewayClass string
	Config       Config
	// Notify is called after a Gateway's outcome changed.
	Notify func(types.NamespacedName)
	// Recheck is how often an absent GatewayParameters CRD is looked for
	// again (default 30s).
	Recheck time.Duration
	Logger  *slog.Logger
}

// CacheByObject restricts the manager's cache of the kinds only we create
// to our own objects (label app.kubernetes.io/managed-by).
func CacheByObject() map[client.Object]cache.ByObject {
	ours := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	return map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:                     {Label: ours},
		&corev1.ServiceAccount{}:                 {Label: ours},
		&autoscalingv2.HorizontalPodAutoscaler{}: {Label: ours},
		&policyv1.PodDisruptionBudget{}:          {Label: ours},
	}
}

// New makes the deployer; SetupWithManager registers it.
func New(mgr ctrl.Manager, o Options) *Reconciler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Notify == nil {
		o.Notify = func(types.NamespacedName) {}
	}
	if o.Recheck == 0 {
		o.Recheck = 30 * time.Second
	}
	return &Reconciler{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), class: o.GatewayClass,
		cfg: o.Config, log: o.Logger, notify: o.Notify, recheck: o.Recheck, outcomes: map[types.NamespacedName]Outcome{}}
}

// SetupWithManager watches Gateways, the objects they own, GatewayClasses,
// parameter ConfigMaps (metadata only) and, once their CRD is served,
// kgateway's GatewayParameters.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named("deployer").
		// Tests run several managers in one process; a process runs one.
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		For(&gwv1.Gateway{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&gwv1.GatewayClass{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysOfClass)).
		WatchesMetadata(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysOfConfigMap)).
		Build(r)
	if err != nil {
		return err
	}
	return mgr.Add(&paramsWatch{r: r, mgr: mgr, ctrl: c, recheck: r.recheck})
}

// Outcome reports the deployer's last outcome for a Gateway.
func (r *Reconciler) Outcome(gw types.NamespacedName) (Outcome, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.outcomes[gw]
	return o, ok
}

func (r *Reconciler) setOutcome(gw types.NamespacedName, o *Outcome) {
	r.mu.Lock()
	old, had := r.outcomes[gw]
	switch {
	case o == nil && !had:
		r.mu.Unlock()
		return
	case o == nil:
		delete(r.outcomes, gw)
	case had && old == *o:
		r.mu.Unlock()
		return
	default:
		r.outcomes[gw] = *o
	}
	r.mu.Unlock()
	r.notify(gw)
}

func (r *Reconciler) gatewaysOfClass(ctx context.Context, obj client.Object) []reconcile.Request {
	if obj.GetName() != r.class {
		return nil
	}
	return r.gatewayRequests(ctx, func(*gwv1.Gateway) bool { return true })
}

func (r *Reconciler) gatewaysOfConfigMap(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.gatewaysOfParameters(ctx, obj, "", "ConfigMap")
}

func (r *Reconciler) gatewaysOfGatewayParameters(ctx context.Context, obj *kgwv1alpha1.GatewayParameters) []reconcile.Request {
	return r.gatewaysOfParameters(ctx, obj, kgwv1alpha1.Group, KindGatewayParameters)
}

// gatewaysOfParameters are the Gateways whose parameters (their class's,
// or their own) are obj, of group and kind.
func (r *Reconciler) gatewaysOfParameters(ctx context.Context, obj client.Object, group, kind string) []reconcile.Request {
	sameGroup := func(g gwv1.Group) bool { return string(g) == group || (group == "" && g == "core") }
	gc := &gwv1.GatewayClass{}
	classRefs := false
	if err := r.client.Get(ctx, client.ObjectKey{Name: r.class}, gc); err == nil && gc.Spec.ParametersRef != nil {
		ref := gc.Spec.ParametersRef
		classRefs = string(ref.Kind) == kind && sameGroup(ref.Group) && ref.Name == obj.GetName() &&
			ref.Namespace != nil && string(*ref.Namespace) == obj.GetNamespace()
	}
	return r.gatewayRequests(ctx, func(gw *gwv1.Gateway) bool {
		if classRefs {
			return true
		}
		inf := gw.Spec.Infrastructure
		return gw.Namespace == obj.GetNamespace() && inf != nil && inf.ParametersRef != nil &&
			string(inf.ParametersRef.Kind) == kind && sameGroup(inf.ParametersRef.Group) && inf.ParametersRef.Name == obj.GetName()
	})
}

func (r *Reconciler) gatewayRequests(ctx context.Context, keep func(*gwv1.Gateway) bool) []reconcile.Request {
	var gws gwv1.GatewayList
	if err := r.client.List(ctx, &gws); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range gws.Items {
		gw := &gws.Items[i]
		if string(gw.Spec.GatewayClassName) == r.class && keep(gw) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}})
		}
	}
	return out
}

// Reconcile brings one Gateway's objects to the desired state.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	gw := &gwv1.Gateway{}
	err := r.client.Get(ctx, req.NamespacedName, gw)
	if apierrors.IsNotFound(err) {
		r.log.Debug("gateway gone: cleaning up", "gateway", req.String())
		r.setOutcome(req.NamespacedName, nil)
		return reconcile.Result{}, r.cleanup(ctx, req.NamespacedName)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if string(gw.Spec.GatewayClassName) != r.class || gw.DeletionTimestamp != nil {
		r.log.Debug("gateway not ours or being deleted: cleaning up", "gateway", req.String())
		r.setOutcome(req.NamespacedName, nil)
		return reconcile.Result{}, r.cleanup(ctx, req.NamespacedName)
	}
	out := Outcome{Generation: gw.Generation}
	if v := translate.ValidateGateway(gw); !v.IsAccepted() {
		out.ListenersError = v.Accepted.Message
		r.log.Debug("gateway listeners invalid: cleaning up", "gateway", req.String())
		r.setOutcome(req.NamespacedName, &out)
		return reconcile.Result{}, r.cleanup(ctx, req.NamespacedName)
	}
	class := &gwv1.GatewayClass{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: r.class}, class); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		class = nil
	}
	params, err := ResolveParameters(ctx, r.apiReader, class, gw)
	var pe *ParametersError
	if errors.As(err, &pe) {
		// Keep what runs: a typo in the parameters must not take the
		// waypoint down. The Gateway reports it.
		out.ParametersError = pe.Msg
		r.setOutcome(req.NamespacedName, &out)
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	out.ParametersUnsupported = strings.Join(params.Unsupported, ", ")
	objs := Desired(gw, params, r.cfg)
	for _, obj := range objs.List() {
		if err := r.apply(ctx, obj); err != nil {
			out.Error = err.Error()
			r.setOutcome(req.NamespacedName, &out)
			return reconcile.Result{}, err
		}
	}
	// Objects the parameters no longer ask for.
	var stale []client.Object
	if objs.HPA == nil {
		stale = append(stale, &autoscalingv2.HorizontalPodAutoscaler{})
	}
	if objs.PDB == nil {
		stale = append(stale, &policyv1.PodDisruptionBudget{})
	}
	if err := r.deleteOurs(ctx, req.NamespacedName, stale); err != nil {
		return reconcile.Result{}, err
	}
	out.Deployed = true
	r.setOutcome(req.NamespacedName, &out)
	return reconcile.Result{}, nil
}

// apply server-side-applies one object as FieldOwner, taking ownership of
// every field it sets.
func (r *Reconciler) apply(ctx context.Context, obj client.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	stripNullCreationTimestamps(m)
	u := &unstructured.Unstructured{Object: m}
	if err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// stripNullCreationTimestamps removes the "creationTimestamp: null" that
// typed templates carry (spec.template.metadata).
func stripNullCreationTimestamps(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case map[string]any:
			if k == "metadata" {
				if ts, ok := t["creationTimestamp"]; ok && ts == nil {
					delete(t, "creationTimestamp")
				}
			}
			stripNullCreationTimestamps(t)
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					stripNullCreationTimestamps(em)
				}
			}
		}
	}
}

// cleanup deletes all the waypoint's objects.
func (r *Reconciler) cleanup(ctx context.Context, gw types.NamespacedName) error {
	return r.deleteOurs(ctx, gw, []client.Object{&policyv1.PodDisruptionBudget{}, &autoscalingv2.HorizontalPodAutoscaler{},
		&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}})
}

// deleteOurs deletes the waypoint's objects of the given kinds, only those
// that carry our labels for this Gateway.
func (r *Reconciler) deleteOurs(ctx context.Context, gw types.NamespacedName, kinds []client.Object) error {
	var errs []error
	for _, obj := range kinds {
		if err := r.client.Get(ctx, gw, obj); err != nil {
			if !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		l := obj.GetLabels()
		if l[LabelManagedBy] != ManagedBy || l[LabelGatewayName] != gw.Name {
			continue // not ours: a user's object of the same name
		}
		uid := obj.GetUID()
		err := r.client.Delete(ctx, obj, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
			continue
		}
		r.log.Info("deleted", "kind", fmt.Sprintf("%T", obj), "namespace", gw.Namespace, "name", gw.Name)
	}
	return errors.Join(errs...)
}

// paramsWatch adds the deployer's watch on kgateway's GatewayParameters
// once the CRD is served (it is optional: a cluster without kgateway's
// CRDs uses ConfigMaps), looking for it again every recheck, so that
// installing the CRD later needs no restart.
type paramsWatch struct {
	r       *Reconciler
	mgr     ctrl.Manager
	ctrl    controller.Controller
	recheck time.Duration
}

// NeedLeaderElection: the deployer runs on the leader.
func (w *paramsWatch) NeedLeaderElection() bool { return true }

func (w *paramsWatch) Start(ctx context.Context) error {
	gk := schema.GroupKind{Group: kgwv1alpha1.Group, Kind: KindGatewayParameters}
	t := time.NewTicker(w.recheck)
	defer t.Stop()
	for {
		_, err := w.mgr.GetRESTMapper().RESTMapping(gk, kgwv1alpha1.GroupVersion.Version)
		switch {
		case err == nil:
			src := source.Kind(w.mgr.GetCache(), &kgwv1alpha1.GatewayParameters{},
				handler.TypedEnqueueRequestsFromMapFunc(w.r.gatewaysOfGatewayParameters))
			if err := w.ctrl.Watch(src); err != nil {
				return fmt.Errorf("watching GatewayParameters: %w", err)
			}
			// Its initial list enqueues the Gateways that referenced
			// GatewayParameters before the CRD was served.
			w.r.log.Info("watching kgateway GatewayParameters")
			return nil
		case !meta.IsNoMatchError(err) && !discovery.IsGroupDiscoveryFailedError(err):
			w.r.log.Error("looking for the GatewayParameters CRD", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
