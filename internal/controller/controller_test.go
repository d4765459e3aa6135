package controller_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	waypoint "github.com/kgateway-dev/kgateway-waypoint/examples/waypoint"
	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startController(t *testing.T, pre ...client.Object) (*kubetest.Env, *controller.Controller) {
	return startControllerWith(t, controller.Options{}, pre...)
}

// startControllerWith starts a controller with o (its addresses, logger
// and deployer settings filled in for the test).
func startControllerWith(t *testing.T, o controller.Options, pre ...client.Object) (*kubetest.Env, *controller.Controller) {
	return startControllerCRDs(t, kubetest.All, o, pre...)
}

// startControllerCRDs is startControllerWith on an API server that serves
// the CRD sets crds (kubetest.All and the optional ones, e.g. kgateway's).
func startControllerCRDs(t *testing.T, crds int, o controller.Options, pre ...client.Object) (*kubetest.Env, *controller.Controller) {
	env := kubetest.Start(t, crds)
	for _, o := range pre {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	o.XDSAddress, o.Logger = "127.0.0.1:0", testLogger()
	o.Deployer = deployer.Config{Image: "kgateway-waypoint:test", XDSAddress: "xds.example:15010"}
	c, err := controller.New(env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Start(ctx); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return env, c
}

// apply creates every object of a YAML stream.
func apply(t *testing.T, c client.Client, data []byte) {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(context.Background(), u); err != nil {
			t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

func example(t *testing.T, name string) []byte {
	b, err := waypoint.Manifests.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// markReady stands in for kube-controller-manager, which envtest does not
// run: once the waypoint Deployment exists, it writes the status the
// Deployment controller would once that many of its pods are ready (there is no
// kubelet either, so there are no pods).
func markReady(t *testing.T, c client.Client, key types.NamespacedName, ready int32) {
	t.Helper()
	eventually(t, 20*time.Second, "the waypoint Deployment's status written by the stand-in", func() error {
		d := &appsv1.Deployment{}
		if err := c.Get(context.Background(), key, d); err != nil {
			return err
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: replicas - ready}
		return c.Status().Update(context.Background(), d)
	})
}

// ourIstioCondition is "status/reason" of our condition typ in an Istio
// object's status.kgatewayWaypoint ("<none>" when absent).
func ourIstioCondition(t *testing.T, c client.Client, kind string, key types.NamespacedName, typ string) string {
	t.Helper()
	u := istioObject(kind)
	if err := c.Get(context.Background(), key, u); err != nil {
		t.Fatal(err)
	}
	list, _, _ := unstructured.NestedSlice(u.Object, "status", status.IstioStatusField, "conditions")
	for _, e := range list {
		m := e.(map[string]any)
		if m["type"] == typ {
			return fmt.Sprint(m["status"], "/", m["reason"])
		}
	}
	return "<none>"
}

func istioObject(kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	switch kind {
	case "AuthorizationPolicy":
		u.SetAPIVersion("security.istio.io/v1")
	case "Telemetry":
		u.SetAPIVersion("telemetry.istio.io/v1")
	default:
		u.SetAPIVersion("networking.istio.io/v1")
	}
	u.SetKind(kind)
	return u
}

func cond(conds []metav1.Condition, typ string) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return "<none>"
	}
	return string(c.Status) + "/" + c.Reason
}

func TestController(t *testing.T) {
	env, ctl := startController(t)
	c := env.Client
	ctx := context.Background()

	// The GatewayClass is created with the inbound binding and accepted.
	gc := &gwv1.GatewayClass{}
	eventually(t, 20*time.Second, "the accepted GatewayClass", func() error {
		if err := c.Get(ctx, types.NamespacedName{Name: "kgateway-waypoint"}, gc); err != nil {
			return err
		}
		if got := cond(gc.Status.Conditions, "Accepted"); got != "True/Accepted" {
			return fmt.Errorf("Accepted = %s", got)
		}
		return nil
	})
	if gc.Annotations["ambient.istio.io/waypoint-inbound-binding"] != "PROXY/15088" || gc.Spec.ControllerName != "kgateway.dev/kgateway-waypoint" {
		t.Errorf("GatewayClass = %+v", gc.Annotations)
	}

	// The seed: namespace, httpbin, curl, the waypoint and the route.
	apply(t, c, example(t, "httpbin-mesh.yaml"))
	apply(t, c, example(t, "waypoint-gw.yaml"))
	apply(t, c, example(t, "waypoint-http-route.yaml"))
	key := types.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"}

	markReady(t, c, key, 1)
	gw := &gwv1.Gateway{}
	svc := &corev1.Service{}
	eventually(t, 20*time.Second, "the programmed Gateway with addresses", func() error {
		if err := c.Get(ctx, key, gw); err != nil {
			return err
		}
		if err := c.Get(ctx, key, svc); err != nil {
			return err
		}
		if a, p := cond(gw.Status.Conditions, "Accepted"), cond(gw.Status.Conditions, "Programmed"); a != "True/Accepted" || p != "True/Programmed" {
			return fmt.Errorf("Accepted %s, Programmed %s", a, p)
		}
		if len(gw.Status.Addresses) != 2 {
			return fmt.Errorf("addresses %v", gw.Status.Addresses)
		}
		if len(gw.Status.Listeners) != 1 || gw.Status.Listeners[0].AttachedRoutes != 1 {
			return fmt.Errorf("listeners %+v", gw.Status.Listeners)
		}
		return nil
	})
	a := gw.Status.Addresses
	if *a[0].Type != gwv1.HostnameAddressType || a[0].Value != "httpbin-waypoint.httpbin.svc.cluster.local" ||
		*a[1].Type != gwv1.IPAddressType || a[1].Value != svc.Spec.ClusterIP {
		t.Errorf("addresses = %v, want the Service FQDN and %s", a, svc.Spec.ClusterIP)
	}
	if got := cond(gw.Status.Listeners[0].Conditions, "Accepted"); got != "True/Accepted" {
		t.Errorf("listener Accepted = %s", got)
	}

	// Route parent status: ours, next to another controller's entry that
	// must survive.
	route := &gwv1.HTTPRoute{}
	rkey := types.NamespacedName{Namespace: "httpbin", Name: "httpbin-traversed-waypoint"}
	eventually(t, 10*time.Second, "the route's parent status", func() error {
		if err := c.Get(ctx, rkey, route); err != nil {
			return err
		}
		if len(route.Status.Parents) != 1 || route.Status.Parents[0].ControllerName != "kgateway.dev/kgateway-waypoint" ||
			cond(route.Status.Parents[0].Conditions, "Accepted") != "True/Accepted" ||
			cond(route.Status.Parents[0].Conditions, "ResolvedRefs") != "True/ResolvedRefs" {
			return fmt.Errorf("parents %+v", route.Status.Parents)
		}
		return nil
	})
	otherRef := gwv1.ParentReference{Name: "someone-elses-gateway"}
	route.Status.Parents = append(route.Status.Parents, gwv1.RouteParentStatus{ParentRef: otherRef, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: metav1.Now(), ObservedGeneration: route.Generation}}})
	if err := c.Status().Update(ctx, route); err != nil {
		t.Fatal(err)
	}
	route.Spec.ParentRefs = append(route.Spec.ParentRefs, otherRef)
	if err := c.Update(ctx, route); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "our parent status for the new generation, theirs untouched", func() error {
		if err := c.Get(ctx, rkey, route); err != nil {
			return err
		}
		ours, theirs := 0, 0
		for _, p := range route.Status.Parents {
			switch p.ControllerName {
			case "kgateway.dev/kgateway-waypoint":
				if meta.FindStatusCondition(p.Conditions, "Accepted").ObservedGeneration == route.Generation {
					ours++
				}
			case "example.com/other":
				theirs++
			}
		}
		if ours != 1 || theirs != 1 {
			return fmt.Errorf("parents %+v", route.Status.Parents)
		}
		return nil
	})

	// A proxy with its ServiceAccount's real token gets its configuration.
	token := func(ns, sa string) string {
		tr, err := env.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"kgateway-waypoint"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	proxy := runProxy(t, ctl.XDSAddr().String(), token("httpbin", "httpbin-waypoint"), ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})
	eventually(t, 10*time.Second, "the configuration over xDS", func() error {
		w := proxy.last()
		if w == nil || len(w.Services) != 1 || w.Services[0].Name != "httpbin" || len(w.Services[0].Ports[0].Routes) != 1 {
			return fmt.Errorf("config %+v", w)
		}
		return nil
	})

	// A change reaches the connected proxy within a second.
	start := time.Now()
	apply(t, c, example(t, "httpbin-authz.yaml"))
	eventually(t, time.Second, "the policy at the proxy", func() error {
		if w := proxy.last(); len(w.Services[0].Ports[0].Policies) != 1 {
			return errors.New("no policy yet")
		}
		return nil
	})
	t.Logf("the policy reached the proxy %v after it was created", time.Since(start).Round(time.Millisecond))
	eventually(t, 10*time.Second, "the policy's WaypointAccepted condition", func() error {
		if got := ourIstioCondition(t, c, "AuthorizationPolicy", types.NamespacedName{Namespace: "httpbin", Name: "httpbin-authz-svc"},
			status.ConditionWaypointAccepted); got != "True/Accepted" {
			return fmt.Errorf("ours = %s", got)
		}
		return nil
	})

	// Foreign and unauthenticated proxies get nothing.
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "intruder", Namespace: "httpbin"}}); err != nil {
		t.Fatal(err)
	}
	rejected := ctl.XDS().Stats().Rejected
	foreign := runProxy(t, ctl.XDSAddr().String(), token("httpbin", "intruder"), ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})
	anon := runProxy(t, ctl.XDSAddr().String(), "", ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})
	wrongAudience := func() string {
		tr, err := env.Clientset.CoreV1().ServiceAccounts("httpbin").CreateToken(ctx, "httpbin-waypoint", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"some-other-audience"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}()
	aud := runProxy(t, ctl.XDSAddr().String(), wrongAudience, ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})
	eventually(t, 10*time.Second, "three rejections", func() error {
		if n := ctl.XDS().Stats().Rejected - rejected; n < 3 {
			return fmt.Errorf("%d rejected", n)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if foreign.last() != nil || anon.last() != nil || aud.last() != nil {
		t.Error("a foreign or unauthenticated proxy got a configuration")
	}

	// A Gateway with an HTTP listener is not accepted, says why, and gets
	// neither a Deployment nor addresses.
	if err := c.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "httpbin"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint",
			Listeners: []gwv1.Listener{{Name: "web", Protocol: "HTTP", Port: 80}}}}); err != nil {
		t.Fatal(err)
	}
	bad := &gwv1.Gateway{}
	eventually(t, 10*time.Second, "the rejected Gateway", func() error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: "httpbin", Name: "bad"}, bad); err != nil {
			return err
		}
		if got := cond(bad.Status.Conditions, "Accepted"); got != "False/ListenersNotValid" {
			return fmt.Errorf("Accepted %s", got)
		}
		if len(bad.Status.Listeners) != 1 || cond(bad.Status.Listeners[0].Conditions, "Accepted") != "False/UnsupportedProtocol" {
			return fmt.Errorf("listeners %+v", bad.Status.Listeners)
		}
		return nil
	})
	if msg := meta.FindStatusCondition(bad.Status.Conditions, "Accepted").Message; !bytes.Contains([]byte(msg), []byte("istio.io/PROXY, port: 15088")) {
		t.Errorf("the message does not say what to change: %q", msg)
	}
	if len(bad.Status.Addresses) != 0 {
		t.Errorf("a rejected Gateway has addresses %v", bad.Status.Addresses)
	}

	// Status writes settle: nothing is rewritten while nothing changes.
	rv := func() string {
		g := &gwv1.Gateway{}
		if err := c.Get(ctx, key, g); err != nil {
			t.Fatal(err)
		}
		r := &gwv1.HTTPRoute{}
		if err := c.Get(ctx, rkey, r); err != nil {
			t.Fatal(err)
		}
		return g.ResourceVersion + "/" + r.ResourceVersion
	}
	before := rv()
	time.Sleep(2 * time.Second)
	if after := rv(); after != before {
		t.Errorf("status keeps being rewritten: %s -> %s", before, after)
	}
}

// A GatewayClass of ours created by someone else gets the inbound binding
// annotation, without which istiod would not use the sandwich mode.
func TestExistingClassGetsInboundBinding(t *testing.T) {
	env, _ := startController(t, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "kgateway-waypoint"},
		Spec: gwv1.GatewayClassSpec{ControllerName: "kgateway.dev/kgateway-waypoint"}})
	eventually(t, 20*time.Second, "the annotation and Accepted", func() error {
		gc := &gwv1.GatewayClass{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Name: "kgateway-waypoint"}, gc); err != nil {
			return err
		}
		if gc.Annotations["ambient.istio.io/waypoint-inbound-binding"] != "PROXY/15088" || cond(gc.Status.Conditions, "Accepted") != "True/Accepted" {
			return fmt.Errorf("annotations %v, conditions %v", gc.Annotations, gc.Status.Conditions)
		}
		return nil
	})
}

type proxyRecorder struct {
	mu  sync.Mutex
	got *ir.Waypoint
}

func (p *proxyRecorder) last() *ir.Waypoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}

func runProxy(t *testing.T, addr, token string, gw ir.NamespacedName) *proxyRecorder {
	p := &proxyRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &xds.Client{Address: addr, Gateway: gw, NodeID: "test", Token: func() (string, error) { return token, nil },
		Apply: func(w *ir.Waypoint) error {
			p.mu.Lock()
			p.got = w
			p.mu.Unlock()
			return nil
		}, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}
