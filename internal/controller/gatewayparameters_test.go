package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgatewaymigration "github.com/kgateway-dev/kgateway-waypoint/examples/kgateway-migration"
	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
)

// gatewayCondition is the Gateway's condition of that type ("" when absent)
// as "Status/Reason: message".
func gatewayCondition(ctx context.Context, t *testing.T, env *kubetest.Env, key types.NamespacedName, typ string) string {
	t.Helper()
	gw := &gwv1.Gateway{}
	if err := env.Client.Get(ctx, key, gw); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(gw.Status.Conditions, typ)
	if c == nil || c.ObservedGeneration != gw.Generation {
		return ""
	}
	return fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
}

// A Gateway whose spec.infrastructure.parametersRef names a kgateway
// GatewayParameters gets its replicas, pod labels, resources, node
// selector and tolerations on the real API server, the fields the waypoint
// does not implement named in a condition; a change to the
// GatewayParameters re-renders the Deployment live; a reference to a
// missing one is Accepted=False/InvalidParameters until it is created.
func TestGatewayParametersDeployLive(t *testing.T) {
	env, _ := startControllerCRDs(t, kubetest.All|kubetest.KgatewayGatewayParameters, controller.Options{})
	c, ctx := env.Client, context.Background()

	apply(t, c, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata: {name: waypoint-params, namespace: app}
spec:
  kube:
    deployment: {replicas: 2}
    envoyContainer:
      resources:
        requests: {cpu: 300m, memory: 200Mi}
    podTemplate:
      extraLabels: {team: payments}
      nodeSelector: {pool: mesh}
      tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
    sdsContainer:
      bootstrap: {logLevel: debug}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app}
spec:
  gatewayClassName: kgateway-waypoint
  infrastructure:
    parametersRef: {group: gateway.kgateway.dev, kind: GatewayParameters, name: waypoint-params}
  listeners: [{name: mesh, protocol: HBONE, port: 15008}, {name: proxy, protocol: istio.io/PROXY, port: 15088}]
`))
	key := types.NamespacedName{Namespace: "app", Name: "wp"}
	deployment := func(check func(*appsv1.Deployment) error) func() error {
		return func() error {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, key, d); err != nil {
				return err
			}
			return check(d)
		}
	}
	eventually(t, 30*time.Second, "the Deployment with the GatewayParameters' knobs", deployment(func(d *appsv1.Deployment) error {
		ps := d.Spec.Template.Spec
		r := ps.Containers[0].Resources
		switch {
		case ptr.Deref(d.Spec.Replicas, 0) != 2:
			return fmt.Errorf("replicas %v", d.Spec.Replicas)
		case d.Spec.Template.Labels["team"] != "payments":
			return fmt.Errorf("pod labels %v", d.Spec.Template.Labels)
		case !r.Requests.Cpu().Equal(resource.MustParse("300m")) || !r.Requests.Memory().Equal(resource.MustParse("200Mi")):
			return fmt.Errorf("resources %+v", r)
		case ps.NodeSelector["pool"] != "mesh":
			return fmt.Errorf("node selector %v", ps.NodeSelector)
		case len(ps.Tolerations) != 1 || ps.Tolerations[0].Key != "dedicated" || ps.Tolerations[0].Effect != corev1.TaintEffectNoSchedule:
			return fmt.Errorf("tolerations %v", ps.Tolerations)
		}
		return nil
	}))
	markReady(t, c, key, 2)
	eventually(t, 30*time.Second, "Accepted, and the unsupported section named", func() error {
		if a := gatewayCondition(ctx, t, env, key, "Accepted"); !strings.HasPrefix(a, "True/") {
			return fmt.Errorf("Accepted %q", a)
		}
		if u := gatewayCondition(ctx, t, env, key, status.ConditionUnsupportedParameters); !strings.HasPrefix(u, "True/UnsupportedFields") ||
			!strings.Contains(u, "spec.kube.sdsContainer") {
			return fmt.Errorf("%s %q", status.ConditionUnsupportedParameters, u)
		}
		return nil
	})

	// A change to the GatewayParameters re-renders the waypoint live.
	eventually(t, 10*time.Second, "updating the GatewayParameters", func() error {
		p := &kgw.GatewayParameters{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "app", Name: "waypoint-params"}, p); err != nil {
			return err
		}
		p.Spec.Kube.Deployment.Replicas = ptr.To[int32](3)
		p.Spec.Kube.PodTemplate.NodeSelector = map[string]string{"pool": "edge"}
		p.Spec.Kube.SdsContainer = nil
		return c.Update(ctx, p)
	})
	eventually(t, 30*time.Second, "the Deployment re-rendered", deployment(func(d *appsv1.Deployment) error {
		if ptr.Deref(d.Spec.Replicas, 0) != 3 || d.Spec.Template.Spec.NodeSelector["pool"] != "edge" {
			return fmt.Errorf("replicas %v, node selector %v", d.Spec.Replicas, d.Spec.Template.Spec.NodeSelector)
		}
		return nil
	}))
	eventually(t, 30*time.Second, "the unsupported condition gone", func() error {
		if u := gatewayCondition(ctx, t, env, key, status.ConditionUnsupportedParameters); u != "" {
			return fmt.Errorf("still %q", u)
		}
		return nil
	})

	// A reference to a GatewayParameters that does not exist.
	apply(t, c, []byte(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp2, namespace: app}
spec:
  gatewayClassName: kgateway-waypoint
  infrastructure:
    parametersRef: {group: gateway.kgateway.dev, kind: GatewayParameters, name: missing}
  listeners: [{name: mesh, protocol: HBONE, port: 15008}, {name: proxy, protocol: istio.io/PROXY, port: 15088}]
`))
	key2 := types.NamespacedName{Namespace: "app", Name: "wp2"}
	eventually(t, 30*time.Second, "Accepted=False/InvalidParameters", func() error {
		a := gatewayCondition(ctx, t, env, key2, "Accepted")
		if !strings.HasPrefix(a, "False/InvalidParameters") || !strings.Contains(a, "GatewayParameters app/missing not found") {
			return fmt.Errorf("Accepted %q", a)
		}
		return nil
	})
	if err := c.Get(ctx, key2, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a Gateway with missing parameters got a Deployment: %v", err)
	}
	// Creating it deploys the waypoint (the watch sees it).
	missing := &kgw.GatewayParameters{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: "app"},
		Spec: kgw.GatewayParametersSpec{Kube: &kgw.KubernetesProxyConfig{ServiceAccount: &kgw.ServiceAccount{ExtraLabels: map[string]string{"sa": "labelled"}}}}}
	if err := c.Create(ctx, missing); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the second waypoint deployed once its parameters exist", func() error {
		sa := &corev1.ServiceAccount{}
		if err := c.Get(ctx, key2, sa); err != nil {
			return err
		}
		if sa.Labels["sa"] != "labelled" {
			return fmt.Errorf("service account labels %v", sa.Labels)
		}
		if a := gatewayCondition(ctx, t, env, key2, "Accepted"); !strings.HasPrefix(a, "True/") {
			return fmt.Errorf("Accepted %q", a)
		}
		return nil
	})
}

// The migration guide's manifests (kgateway's own waypoint guide, in
// examples/kgateway-migration) apply unchanged to the real API server with
// our CRDs, and the waypoint Deployment carries the knobs of the user's
// GatewayParameters; the SDS sidecar section is named on the Gateway.
func TestKgatewayMigrationManifestsDeploy(t *testing.T) {
	env := kubetest.Start(t, kubetest.All|kubetest.KgatewayTrafficPolicy|kubetest.KgatewayGatewayParameters)
	c, ctx := env.Client, context.Background()
	ctl, err := controller.New(env.Config, controller.Options{XDSAddress: "127.0.0.1:0", Logger: testLogger(),
		Deployer: deployer.Config{Image: "ghcr.io/kgateway-dev/kgateway-waypoint:test", XDSAddress: "xds.example:15010",
			ExtraArgs: []string{"--log-level", "info"}}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ctl.Start(cctx); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	apply(t, c, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: httpbin, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin2, namespace: httpbin, labels: {istio.io/use-waypoint: kgateway-waypoint}}
spec: {ports: [{name: http, port: 8000, targetPort: http, appProtocol: http}], selector: {app: httpbin2}}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin3, namespace: httpbin, labels: {istio.io/use-waypoint: kgateway-waypoint}}
spec: {ports: [{name: http, port: 8000, targetPort: http, appProtocol: http}], selector: {app: httpbin3}}
`))
	for _, f := range []string{"01-waypoint.yaml", "02-header-control.yaml", "03-transformation.yaml", "04-local-ratelimit.yaml", "05-authorization.yaml"} {
		b, err := kgatewaymigration.Manifests.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		apply(t, c, b)
	}
	key := types.NamespacedName{Namespace: "httpbin", Name: "kgateway-waypoint"}
	eventually(t, 30*time.Second, "the waypoint deployed with the user's GatewayParameters", func() error {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, key, d); err != nil {
			return err
		}
		ps := d.Spec.Template.Spec
		ct := ps.Containers[0]
		switch {
		case ptr.Deref(d.Spec.Replicas, 0) != 2:
			return fmt.Errorf("replicas %v", d.Spec.Replicas)
		case d.Spec.Template.Labels["team"] != "httpbin":
			return fmt.Errorf("pod labels %v", d.Spec.Template.Labels)
		case !ct.Resources.Requests.Cpu().Equal(resource.MustParse("250m")) || !ct.Resources.Limits.Memory().Equal(resource.MustParse("512Mi")):
			return fmt.Errorf("resources %+v", ct.Resources)
		case ps.NodeSelector["kubernetes.io/os"] != "linux":
			return fmt.Errorf("node selector %v", ps.NodeSelector)
		case len(ps.Tolerations) != 1 || ps.Tolerations[0].Value != "mesh":
			return fmt.Errorf("tolerations %v", ps.Tolerations)
		case !strings.HasSuffix(strings.Join(ct.Args, " "), "--log-level info --log-level debug"):
			return fmt.Errorf("args %q: want the Envoy log level as the proxy's, last", ct.Args)
		}
		sa := &corev1.ServiceAccount{}
		if err := c.Get(ctx, key, sa); err != nil {
			return err
		}
		if sa.Annotations["example.com/owner"] != "httpbin-team" {
			return fmt.Errorf("service account annotations %v", sa.Annotations)
		}
		return nil
	})
	markReady(t, c, key, 2)
	eventually(t, 30*time.Second, "Accepted, Programmed, and the SDS section named", func() error {
		for typ, want := range map[string]string{"Accepted": "True/", "Programmed": "True/",
			status.ConditionUnsupportedParameters: "True/UnsupportedFields"} {
			if got := gatewayCondition(ctx, t, env, key, typ); !strings.HasPrefix(got, want) {
				return fmt.Errorf("%s %q", typ, got)
			}
		}
		if got := gatewayCondition(ctx, t, env, key, status.ConditionUnsupportedParameters); !strings.Contains(got, "spec.kube.sdsContainer") {
			return fmt.Errorf("unsupported %q", got)
		}
		return nil
	})
}
