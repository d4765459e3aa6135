package deployer_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	srckube "github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
)

// On the real API server, without the GatewayParameters CRD at first: a
// Gateway naming a GatewayParameters is InvalidParameters ("not
// installed"); once the CRD is installed and the object created, the
// deployer sees it (no restart) and the Gateway's GatewayParameters
// override its class's ConfigMap (replicas) while the class's other keys
// stay (the disruption budget); then with a GatewayParameters on the class
// too, the two merge as kgateway's (labels by key, tolerations appended).
func TestGatewayParametersPrecedenceAndLateCRD(t *testing.T) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	c, ctx := env.Client, context.Background()
	opts := srckube.CacheOptions()
	for k, v := range deployer.CacheByObject() {
		opts.ByObject[k] = v
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme.Scheme, Cache: opts,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	d := deployer.New(mgr, deployer.Options{GatewayClass: class, Logger: testLogger(), Recheck: 200 * time.Millisecond,
		Config: deployer.Config{Image: "ghcr.io/kgateway-dev/kgateway-waypoint:test", XDSAddress: "x.example:15010"}})
	must(t, d.SetupWithManager(mgr))
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	newNS(t, c, "params")
	newNS(t, c, "app")
	must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "class-params", Namespace: "params"},
		Data: map[string]string{"replicas": "5", "podDisruptionBudget": "minAvailable: 1"}}))
	cmRef := &gwv1.ParametersReference{Group: "", Kind: "ConfigMap", Name: "class-params", Namespace: ptr.To(gwv1.Namespace("params"))}
	gc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec: gwv1.GatewayClassSpec{ControllerName: "kgateway.dev/kgateway-waypoint", ParametersRef: cmRef}}
	must(t, c.Create(ctx, gc))
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "app"},
		Spec: gwv1.GatewaySpec{GatewayClassName: class,
			Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}},
			Infrastructure: &gwv1.GatewayInfrastructure{ParametersRef: &gwv1.LocalParametersReference{
				Group: kgwv1alpha1.Group, Kind: "GatewayParameters", Name: "gw-params"}}}}
	must(t, c.Create(ctx, gw))
	key := types.NamespacedName{Namespace: "app", Name: "wp"}
	eventually(t, "InvalidParameters without the CRD", func() error {
		o, ok := d.Outcome(key)
		if !ok || !strings.Contains(o.ParametersError, "GatewayParameters CRD (gateway.kgateway.dev) is not installed") {
			return fmt.Errorf("outcome %+v", o)
		}
		return nil
	})

	// Install the CRD, then the Gateway's GatewayParameters.
	paths, err := kubetest.CRDPaths(kubetest.KgatewayGatewayParameters)
	must(t, err)
	raw, err := os.ReadFile(paths[0])
	must(t, err)
	crd := &unstructured.Unstructured{}
	must(t, yaml.Unmarshal(raw, &crd.Object))
	must(t, c.Create(ctx, crd))
	gwp := func(name, ns, spec string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		must(t, yaml.Unmarshal([]byte(fmt.Sprintf("apiVersion: gateway.kgateway.dev/v1alpha1\nkind: GatewayParameters\nmetadata: {name: %s, namespace: %s}\n%s", name, ns, spec)), &u.Object))
		return u
	}
	eventually(t, "the Gateway's GatewayParameters created", func() error {
		return c.Create(ctx, gwp("gw-params", "app", `spec:
  kube:
    deployment: {replicas: 2}
    podTemplate:
      extraLabels: {team: gateway}
      tolerations: [{key: gateway, operator: Exists}]
`))
	})
	dep := &appsv1.Deployment{}
	eventually(t, "deployed: the Gateway's replicas over the class's ConfigMap", func() error {
		if err := c.Get(ctx, key, dep); err != nil {
			return err
		}
		if ptr.Deref(dep.Spec.Replicas, 0) != 2 || dep.Spec.Template.Labels["team"] != "gateway" {
			return fmt.Errorf("replicas %v, labels %v", dep.Spec.Replicas, dep.Spec.Template.Labels)
		}
		return c.Get(ctx, key, &policyv1.PodDisruptionBudget{})
	})

	// The class's parameters become a GatewayParameters too.
	must(t, c.Create(ctx, gwp("class-params", "params", `spec:
  kube:
    deployment: {replicas: 7}
    podTemplate:
      extraLabels: {team: class, tier: mesh}
      tolerations: [{key: class, operator: Exists}]
`)))
	must(t, c.Get(ctx, types.NamespacedName{Name: class}, gc))
	gc.Spec.ParametersRef = &gwv1.ParametersReference{Group: kgwv1alpha1.Group, Kind: "GatewayParameters", Name: "class-params",
		Namespace: ptr.To(gwv1.Namespace("params"))}
	must(t, c.Update(ctx, gc))
	eventually(t, "the class's and the Gateway's GatewayParameters merged", func() error {
		if err := c.Get(ctx, key, dep); err != nil {
			return err
		}
		l, tol := dep.Spec.Template.Labels, dep.Spec.Template.Spec.Tolerations
		if ptr.Deref(dep.Spec.Replicas, 0) != 2 || l["team"] != "gateway" || l["tier"] != "mesh" ||
			len(tol) != 2 || tol[0].Key != "class" || tol[1].Key != "gateway" {
			return fmt.Errorf("replicas %v, labels %v, tolerations %v", dep.Spec.Replicas, l, tol)
		}
		// The ConfigMap's disruption budget is no longer asked for.
		if err := c.Get(ctx, key, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the PodDisruptionBudget is still there: %v", err)
		}
		return nil
	})
}
