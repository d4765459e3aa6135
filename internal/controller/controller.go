// Package controller wires the Kubernetes control plane: the cluster source
// (shared informers), the translator (the same as standalone's), the xDS
// server, the deployer and the status writer, in one controller-runtime
// manager with leader election. Every replica watches, translates and
// serves xDS; only the leader deploys and writes status.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	srckube "github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
	xdsserver "github.com/kgateway-dev/kgateway-waypoint/internal/xds/server"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds/tokenreview"
)

// Defaults.
const (
	DefaultControllerName = "kgateway.dev/kgateway-waypoint"
	// AnnotationInboundBinding tells istiod and ztunnel how to reach the
	// waypoint: the sandwich mode, PROXY protocol on 15088.
	AnnotationInboundBinding = "ambient.istio.io/waypoint-inbound-binding"
	InboundBinding           = "PROXY/15088"
)

// Options configure the controller.
type Options struct {
	GatewayClass   string
	ControllerName string
	// Translate carries the trust domain, cluster domain and root namespace
	// (those left empty come from the mesh config).
	Translate translate.Options
	// IstioNamespace and Revision locate istiod's mesh ConfigMap:
	// <IstioNamespace>/istio, or istio-<Revision> (followed live; absent:
	// Istio's default mesh config). IstioNamespace "" follows none.
	IstioNamespace string
	Revision       string
	// XDSAddress is where the xDS server listens (":15010").
	XDSAddress string
	// Deployer is what the proxies are deployed with (image, the xDS
	// address they dial, ...).
	Deployer deployer.Config
	// Debounce gathers bursts of changes into one translation (100ms).
	Debounce time.Duration
	// LeaderElection (with LeaderElectionNamespace) for several replicas.
	LeaderElection          bool
	LeaderElectionNamespace string
	MetricsAddress          string // "0" disables
	HealthAddress           string // "0" disables
	Logger                  *slog.Logger
}

// Controller is a configured control plane; Start runs it.
type Controller struct {
	opts   Options
	log    *slog.Logger
	mgr    manager.Manager
	source *srckube.Source
	dep    *deployer.Reconciler
	xds    *xdsserver.Server
	xdsLn  net.Listener
	status *status.Writer

	trigger chan struct{}
}

// New builds the controller on a cluster; the xDS listener is bound now so
// its address is known before Start.
func New(cfg *rest.Config, o Options) (*Controller, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.GatewayClass == "" {
		o.GatewayClass = translate.DefaultGatewayClass
	}
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.XDSAddress == "" {
		o.XDSAddress = ":15010"
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = "0"
	}
	if o.HealthAddress == "" {
		o.HealthAddress = "0"
	}
	if o.Deployer.CAAddress == "" && o.IstioNamespace != "" {
		// Native waypoints get their certificate from istiod (of the
		// revision, when one is followed), as Istio's agent does.
		istiod := "istiod"
		if o.Revision != "" && o.Revision != "default" {
			istiod += "-" + o.Revision
		}
		o.Deployer.CAAddress = istiod + "." + o.IstioNamespace + ".svc:15012"
	}
	if o.Deployer.TokenAudience == "" {
		o.Deployer.TokenAudience = deployer.DefaultTokenAudience
	}
	o.Translate.GatewayClass = o.GatewayClass
	ctrl.SetLogger(logr.FromSlogHandler(o.Logger.Handler()))

	cacheOpts := srckube.CacheOptions()
	for k, v := range deployer.CacheByObject() {
		cacheOpts.ByObject[k] = v
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.Scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddress},
		HealthProbeBindAddress:        o.HealthAddress,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              "kgateway-waypoint-controller",
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Controller{opts: o, log: o.Logger, mgr: mgr, trigger: make(chan struct{}, 1)}
	srcOpts := srckube.Options{OnChange: c.poke, Logger: o.Logger}
	if o.IstioNamespace != "" {
		srcOpts.Mesh = &srckube.MeshConfigMap{Client: cs, Namespace: o.IstioNamespace, Name: srckube.MeshConfigMapName(o.Revision)}
	}
	c.source = srckube.New(mgr.GetCache(), srcOpts)
	c.dep = deployer.New(mgr, deployer.Options{GatewayClass: o.GatewayClass, Config: o.Deployer,
		Notify: func(types.NamespacedName) { c.poke() }, Logger: o.Logger})
	if err := c.dep.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	c.xds = xdsserver.New(xdsserver.Options{Logger: o.Logger,
		Auth: &tokenreview.Authenticator{Client: cs.AuthenticationV1(), Audience: o.Deployer.TokenAudience}})
	c.status = &status.Writer{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), ControllerName: gwv1.GatewayController(o.ControllerName),
		GatewayClass: o.GatewayClass, ClusterDomain: o.Translate.ClusterDomain}
	c.xdsLn, err = net.Listen("tcp", o.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("xds address: %w", err)
	}
	for _, r := range []manager.Runnable{c.source, xdsRunnable{c}, loopRunnable{c}, classRunnable{c}} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	if o.HealthAddress != "0" {
		_ = mgr.AddHealthzCheck("ping", healthz.Ping)
		_ = mgr.AddReadyzCheck("synced", func(*http.Request) error {
			select {
			case <-c.source.Synced():
				return nil
			default:
				return errors.New("informers not synced")
			}
		})
	}
	return c, nil
}

// XDSAddr is the bound xDS address.
func (c *Controller) XDSAddr() net.Addr { return c.xdsLn.Addr() }

// XDS exposes the xDS server (for its counters).
func (c *Controller) XDS() *xdsserver.Server { return c.xds }

// Start runs until ctx ends.
func (c *Controller) Start(ctx context.Context) error { return c.mgr.Start(ctx) }

func (c *Controller) poke() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

type xdsRunnable struct{ c *Controller }

func (xdsRunnable) NeedLeaderElection() bool { return false }
func (r xdsRunnable) Start(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.c.xds.Serve(r.c.xdsLn) }()
	r.c.log.Info("xds server listening", "address", r.c.xdsLn.Addr().String())
	select {
	case <-ctx.Done():
		r.c.xds.Stop()
		return nil
	case err := <-errc:
		return fmt.Errorf("xds server: %w", err)
	}
}

// classRunnable creates our GatewayClass when it is missing (leader only).
type classRunnable struct{ c *Controller }

func (classRunnable) NeedLeaderElection() bool { return true }
func (r classRunnable) Start(ctx context.Context) error {
	cl := r.c.mgr.GetClient()
	gc := &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: r.c.opts.GatewayClass,
			Annotations: map[string]string{AnnotationInboundBinding: InboundBinding}},
		Spec: gwv1.GatewayClassSpec{ControllerName: gwv1.GatewayController(r.c.opts.ControllerName),
			Description: ptrTo("Waypoints of the Istio ambient mesh run by kgateway-waypoint")},
	}
	for {
		err := cl.Create(ctx, gc)
		if err == nil {
			r.c.log.Info("created the GatewayClass", "name", gc.Name)
			break
		}
		if apierrors.IsAlreadyExists(err) {
			existing := &gwv1.GatewayClass{}
			if err := cl.Get(ctx, client.ObjectKey{Name: gc.Name}, existing); err == nil {
				switch {
				case existing.Spec.ControllerName != gc.Spec.ControllerName:
					r.c.log.Error("the GatewayClass belongs to another controller; its Gateways are not ours to run",
						"name", gc.Name, "controllerName", existing.Spec.ControllerName)
				case existing.Annotations[AnnotationInboundBinding] == "":
					// Without the binding, istiod would send HBONE to our
					// proxies: add it to a class created by someone else.
					patch := client.MergeFrom(existing.DeepCopy())
					if existing.Annotations == nil {
						existing.Annotations = map[string]string{}
					}
					existing.Annotations[AnnotationInboundBinding] = InboundBinding
					if err := cl.Patch(ctx, existing, patch); err != nil {
						r.c.log.Error("adding the inbound binding annotation to the GatewayClass", "name", gc.Name, "error", err.Error())
					} else {
						r.c.log.Info("added the inbound binding annotation to the GatewayClass", "name", gc.Name, "binding", InboundBinding)
					}
				}
			}
			break
		}
		r.c.log.Error("creating the GatewayClass; retrying", "name", gc.Name, "error", err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	r.c.poke()
	<-ctx.Done()
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// loopRunnable translates on every (debounced) change, feeds xDS and, on
// the leader, writes status.
type loopRunnable struct{ c *Controller }

func (loopRunnable) NeedLeaderElection() bool { return false }
func (r loopRunnable) Start(ctx context.Context) error {
	c := r.c
	if err := c.watchDeployments(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-c.source.Synced():
	}
	elected := c.mgr.Elected()
	retry := time.Duration(0)
	var retryC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.trigger:
		case <-retryC:
		case <-elected:
			elected = nil // once: write status as the new leader
		}
		// Debounce: let a burst of events settle.
		timer := time.NewTimer(c.opts.Debounce)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		select {
		case <-c.trigger:
		default:
		}
		isLeader := false
		select {
		case <-c.mgr.Elected():
			isLeader = true
		default:
		}
		if err := c.sync(ctx, isLeader); err != nil {
			retry = min(max(retry*2, 200*time.Millisecond), 10*time.Second)
			c.log.Warn("sync failed; retrying", "in", retry.String(), "error", err.Error())
			retryC = time.After(retry)
			continue
		}
		retry, retryC = 0, nil
	}
}

// watchDeployments resyncs when a waypoint Deployment (ours: the cache
// holds only those) is created or deleted or its ready replicas change: the
// Gateway is programmed, and its addresses published, only while one is
// ready.
func (c *Controller) watchDeployments(ctx context.Context) error {
	inf, err := c.mgr.GetCache().GetInformer(ctx, &appsv1.Deployment{})
	if err != nil {
		return fmt.Errorf("informer for Deployments: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.poke() },
		UpdateFunc: func(o, n any) {
			od, ok1 := o.(*appsv1.Deployment)
			nd, ok2 := n.(*appsv1.Deployment)
			if !ok1 || !ok2 || od.Status.ReadyReplicas != nd.Status.ReadyReplicas ||
				!equalReplicas(od.Spec.Replicas, nd.Spec.Replicas) {
				c.poke()
			}
		},
		DeleteFunc: func(any) { c.poke() },
	})
	if err != nil {
		return fmt.Errorf("event handler for Deployments: %w", err)
	}
	return nil
}

func equalReplicas(a, b *int32) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// sync is one pass: snapshot, translate every waypoint, push, write status.
func (c *Controller) sync(ctx context.Context, leader bool) error {
	snap, err := c.source.Snapshot(ctx)
	if err != nil {
		return err
	}
	services := map[types.NamespacedName]*corev1.Service{}
	for _, s := range snap.Services {
		services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	var wps []status.Waypoint
	configs := map[ir.NamespacedName]*ir.Waypoint{}
	for _, gw := range snap.Gateways {
		if string(gw.Spec.GatewayClassName) != c.opts.GatewayClass {
			continue
		}
		key := types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}
		wp := status.Waypoint{Gateway: gw}
		wp.Outcome, _ = c.dep.Outcome(key)
		if svc := services[key]; svc != nil && svc.Labels[deployer.LabelManagedBy] == deployer.ManagedBy {
			wp.Service = svc
		}
		dep := &appsv1.Deployment{}
		if err := c.mgr.GetClient().Get(ctx, key, dep); err == nil && dep.Labels[deployer.LabelGatewayName] == gw.Name {
			wp.Deployment = dep
		} else if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		opts := c.opts.Translate
		opts.Gateway = ir.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}
		res, err := translate.Translate(snap, opts)
		var refused *translate.NotAcceptedError
		switch {
		case errors.As(err, &refused):
			// Nothing is served; the status says why.
			wp.Verdict = refused.Verdict
		case err != nil:
			c.log.Error("translating a waypoint", "gateway", key.String(), "error", err.Error())
			wp.Verdict = translate.ValidateGateway(gw)
		default:
			wp.Result, wp.Verdict = res, res.Gateway
			if status.GatewayAccepted(&wp) {
				configs[opts.Gateway] = res.Waypoint
			}
		}
		wps = append(wps, wp)
	}
	changed, err := c.xds.Set(configs)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		c.log.Info("configuration pushed", "waypoints", changed)
	}
	if !leader {
		return nil
	}
	return c.status.Write(ctx, snap, wps)
}
