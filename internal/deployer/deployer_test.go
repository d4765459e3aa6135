package deployer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	srckube "github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
)

const class = "kgateway-waypoint"

func startDeployer(t *testing.T) (client.Client, *deployer.Reconciler) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	opts := srckube.CacheOptions()
	for k, v := range deployer.CacheByObject() {
		opts.ByObject[k] = v
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme.Scheme, Cache: opts,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	d := deployer.New(mgr, deployer.Options{GatewayClass: class, Logger: testLogger(), Config: deployer.Config{
		Image: "ghcr.io/kgateway-dev/kgateway-waypoint:test", XDSAddress: "kgateway-waypoint.kgateway-system.svc:15010"}})
	if err := d.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return env.Client, d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
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

func newNS(t *testing.T, c client.Client, name string) {
	must(t, c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
}

func TestDeployer(t *testing.T) {
	c, d := startDeployer(t)
	ctx := context.Background()
	must(t, c.Create(ctx, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec: gwv1.GatewayClassSpec{ControllerName: "kgateway.dev/kgateway-waypoint"}}))

	t.Run("objects", func(t *testing.T) {
		newNS(t, c, "objects")
		gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "objects"},
			Spec: gwv1.GatewaySpec{GatewayClassName: class,
				Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}},
				Infrastructure: &gwv1.GatewayInfrastructure{
					Labels:      map[gwv1.LabelKey]gwv1.LabelValue{"team": "payments"},
					Annotations: map[gwv1.AnnotationKey]gwv1.AnnotationValue{"example.com/owner": "alice"},
				}}}
		must(t, c.Create(ctx, gw))
		key := types.NamespacedName{Namespace: "objects", Name: "wp"}
		dep, svc, sa := &appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}
		eventually(t, "the Deployment, Service and ServiceAccount", func() error {
			if err := c.Get(ctx, key, dep); err != nil {
				return err
			}
			if err := c.Get(ctx, key, svc); err != nil {
				return err
			}
			return c.Get(ctx, key, sa)
		})
		checkOwned(t, gw, &dep.ObjectMeta, &svc.ObjectMeta, &sa.ObjectMeta)
		for _, m := range []*metav1.ObjectMeta{&dep.ObjectMeta, &svc.ObjectMeta, &sa.ObjectMeta, &dep.Spec.Template.ObjectMeta} {
			wantLabel(t, m, "gateway.networking.k8s.io/gateway-name", "wp")
			wantLabel(t, m, "team", "payments")
			wantAnnotation(t, m, "example.com/owner", "alice")
		}
		pod := dep.Spec.Template
		wantLabel(t, &pod.ObjectMeta, "istio.io/dataplane-mode", "ambient")
		wantAnnotation(t, &pod.ObjectMeta, "ambient.istio.io/dns-capture", "false")
		wantAnnotation(t, &pod.ObjectMeta, "prometheus.io/scrape", "true")
		wantAnnotation(t, &pod.ObjectMeta, "prometheus.io/port", "15020")
		wantAnnotation(t, &pod.ObjectMeta, "prometheus.io/path", "/stats/prometheus")
		wantLabel(t, &svc.ObjectMeta, "istio.io/use-waypoint", "none")
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("ServiceAccount should not automount the API token")
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
			t.Errorf("replicas = %v, want 1", dep.Spec.Replicas)
		}
		if pod.Spec.ServiceAccountName != "wp" {
			t.Errorf("serviceAccountName = %q", pod.Spec.ServiceAccountName)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("containers: %d", len(pod.Spec.Containers))
		}
		ct := pod.Spec.Containers[0]
		wantArgs := fmt.Sprint([]string{"--xds-address", "kgateway-waypoint.kgateway-system.svc:15010",
			"--gateway", "objects/wp", "--token-file", "/var/run/secrets/kgateway-waypoint/xds-token",
			"--inbound-address", "0.0.0.0:15088", "--status-address", "0.0.0.0:15021", "--metrics-address", "0.0.0.0:15020"})
		if fmt.Sprint(ct.Args) != wantArgs {
			t.Errorf("args = %v, want %v", ct.Args, wantArgs)
		}
		if fmt.Sprint(ct.Command) != "[/kgateway-waypoint-proxy]" {
			t.Errorf("command = %v, want the image's data-plane binary [/kgateway-waypoint-proxy]", ct.Command)
		}
		ports := map[int32]string{}
		for _, p := range ct.Ports {
			ports[p.ContainerPort] = p.Name
		}
		if ports[15088] == "" || ports[15021] == "" || ports[15020] == "" {
			t.Errorf("container ports = %v, want 15088, 15021, 15020", ports)
		}
		// The proxy's node through the downward API, for its locality
		// (--node-name defaults to $NODE_NAME), as the API server stored it.
		var nodeName *corev1.EnvVar
		for i := range ct.Env {
			if ct.Env[i].Name == "NODE_NAME" {
				nodeName = &ct.Env[i]
			}
		}
		if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("NODE_NAME env = %+v, want the pod's spec.nodeName", nodeName)
		}
		rp := ct.ReadinessProbe
		if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz/ready" || rp.HTTPGet.Port.IntValue() != 15021 {
			t.Errorf("readiness probe = %+v", rp)
		}
		sc := ct.SecurityContext
		if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
			*sc.Privileged || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container securityContext = %+v", sc)
		}
		if pod.Spec.SecurityContext == nil || !*pod.Spec.SecurityContext.RunAsNonRoot {
			t.Error("pod must run as non-root")
		}
		if ct.Resources.Requests.Cpu().IsZero() || ct.Resources.Limits.Memory().IsZero() {
			t.Errorf("resources = %+v", ct.Resources)
		}
		if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Projected == nil ||
			pod.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken == nil ||
			pod.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken.Audience != "kgateway-waypoint" {
			t.Errorf("projected token volume = %+v", pod.Spec.Volumes)
		}
		if len(ct.VolumeMounts) != 1 || ct.VolumeMounts[0].MountPath != "/var/run/secrets/kgateway-waypoint" {
			t.Errorf("volume mounts = %+v", ct.VolumeMounts)
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ClusterIP == "" {
			t.Errorf("service type %s, clusterIP %q", svc.Spec.Type, svc.Spec.ClusterIP)
		}
		sports := map[int32]bool{}
		for _, p := range svc.Spec.Ports {
			sports[p.Port] = true
		}
		if !sports[15008] || !sports[15088] || len(sports) != 2 {
			t.Errorf("service ports = %v, want 15008 and 15088", svc.Spec.Ports)
		}
		if svc.Spec.Selector["gateway.networking.k8s.io/gateway-name"] != "wp" {
			t.Errorf("service selector = %v", svc.Spec.Selector)
		}
		eventually(t, "the outcome", func() error {
			if o, ok := d.Outcome(key); !ok || !o.Deployed {
				return fmt.Errorf("outcome %+v", o)
			}
			return nil
		})

		// Drift is repaired: a changed image goes back.
		dep.Spec.Template.Spec.Containers[0].Image = "evil"
		must(t, c.Update(ctx, dep))
		eventually(t, "the image to be restored", func() error {
			must(t, c.Get(ctx, key, dep))
			if img := dep.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/kgateway-dev/kgateway-waypoint:test" {
				return fmt.Errorf("image %s", img)
			}
			return nil
		})

		// Deleting the Gateway removes everything.
		must(t, c.Delete(ctx, gw))
		eventually(t, "the objects to be deleted", func() error {
			for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}} {
				err := c.Get(ctx, key, o)
				if err == nil {
					return fmt.Errorf("%T still there", o)
				}
				if !apierrors.IsNotFound(err) {
					return err
				}
			}
			return nil
		})
	})

	t.Run("parameters", func(t *testing.T) {
		newNS(t, c, "params")
		key := types.NamespacedName{Namespace: "params", Name: "wp"}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "wp-params", Namespace: "params"},
			Data: map[string]string{"replicas": "3", "resources": "requests: {cpu: 250m, memory: 300Mi}\n",
				"limits": "max-connections: 7\nheader-timeout: 3s\n"}}
		must(t, c.Create(ctx, cm))
		gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "params"},
			Spec: gwv1.GatewaySpec{GatewayClassName: class,
				Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}},
				Infrastructure: &gwv1.GatewayInfrastructure{ParametersRef: &gwv1.LocalParametersReference{
					Group: "", Kind: "ConfigMap", Name: "wp-params"}}}}
		must(t, c.Create(ctx, gw))
		dep := &appsv1.Deployment{}
		eventually(t, "3 replicas with the resources", func() error {
			if err := c.Get(ctx, key, dep); err != nil {
				return err
			}
			r := dep.Spec.Template.Spec.Containers[0].Resources
			if *dep.Spec.Replicas != 3 || r.Requests.Cpu().String() != "250m" || r.Requests.Memory().String() != "300Mi" {
				return fmt.Errorf("replicas %d, resources %v", *dep.Spec.Replicas, r)
			}
			return nil
		})
		if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--max-connections=7") || !slices.Contains(args, "--header-timeout=3s") {
			t.Errorf("the limits parameter is not in the proxy's args: %q", args)
		}

		// An autoscaler and a disruption budget.
		cm.Data = map[string]string{
			"horizontalPodAutoscaler": "minReplicas: 2\nmaxReplicas: 5\n",
			"podDisruptionBudget":     "minAvailable: 1\n",
		}
		must(t, c.Update(ctx, cm))
		hpa, pdb := &autoscalingv2.HorizontalPodAutoscaler{}, &policyv1.PodDisruptionBudget{}
		eventually(t, "the HPA and the PDB", func() error {
			if err := c.Get(ctx, key, hpa); err != nil {
				return err
			}
			return c.Get(ctx, key, pdb)
		})
		checkOwned(t, gw, &hpa.ObjectMeta, &pdb.ObjectMeta)
		if hpa.Spec.ScaleTargetRef.Name != "wp" || hpa.Spec.ScaleTargetRef.Kind != "Deployment" ||
			*hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 5 || len(hpa.Spec.Metrics) != 1 {
			t.Errorf("hpa spec = %+v", hpa.Spec)
		}
		if pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels["gateway.networking.k8s.io/gateway-name"] != "wp" {
			t.Errorf("pdb spec = %+v", pdb.Spec)
		}

		// Invalid parameters: reported, and what runs is kept.
		cm.Data = map[string]string{"replicas": "many"}
		must(t, c.Update(ctx, cm))
		eventually(t, "the parameters error", func() error {
			if o, _ := d.Outcome(key); o.ParametersError == "" {
				return fmt.Errorf("outcome %+v", o)
			}
			return nil
		})
		must(t, c.Get(ctx, key, dep))

		// Dropping them removes the HPA and the PDB.
		cm.Data = map[string]string{"replicas": "2"}
		must(t, c.Update(ctx, cm))
		eventually(t, "the HPA and the PDB to go, 2 replicas", func() error {
			if err := c.Get(ctx, key, &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("hpa: %v", err)
			}
			if err := c.Get(ctx, key, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("pdb: %v", err)
			}
			must(t, c.Get(ctx, key, dep))
			if *dep.Spec.Replicas != 2 {
				return fmt.Errorf("replicas %d", *dep.Spec.Replicas)
			}
			return nil
		})

		// The class's parameters apply, the Gateway's override them.
		must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "class-params", Namespace: "params"},
			Data: map[string]string{"replicas": "4", "podDisruptionBudget": "maxUnavailable: 1\n"}}))
		gc := &gwv1.GatewayClass{}
		must(t, c.Get(ctx, types.NamespacedName{Name: class}, gc))
		ns := gwv1.Namespace("params")
		gc.Spec.ParametersRef = &gwv1.ParametersReference{Group: "", Kind: "ConfigMap", Name: "class-params", Namespace: &ns}
		must(t, c.Update(ctx, gc))
		eventually(t, "the class's PDB with the Gateway's replicas", func() error {
			if err := c.Get(ctx, key, pdb); err != nil {
				return err
			}
			must(t, c.Get(ctx, key, dep))
			if *dep.Spec.Replicas != 2 {
				return fmt.Errorf("replicas %d", *dep.Spec.Replicas)
			}
			return nil
		})
		gc.Spec.ParametersRef = nil
		must(t, c.Update(ctx, gc))
	})

	t.Run("invalid listeners", func(t *testing.T) {
		newNS(t, c, "invalid")
		key := types.NamespacedName{Namespace: "invalid", Name: "wp"}
		must(t, c.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "invalid"},
			Spec: gwv1.GatewaySpec{GatewayClassName: class,
				Listeners: []gwv1.Listener{{Name: "web", Protocol: "HTTP", Port: 80}}}}))
		eventually(t, "the listeners error", func() error {
			if o, _ := d.Outcome(key); o.ListenersError == "" {
				return fmt.Errorf("outcome %+v", o)
			}
			return nil
		})
		if err := c.Get(ctx, key, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("a Gateway with invalid listeners got a Deployment (%v)", err)
		}
	})

	t.Run("other class", func(t *testing.T) {
		newNS(t, c, "other")
		must(t, c.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "other"},
			Spec: gwv1.GatewaySpec{GatewayClassName: "istio-waypoint",
				Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "HBONE", Port: 15008}}}}))
		time.Sleep(time.Second)
		if err := c.Get(ctx, types.NamespacedName{Namespace: "other", Name: "wp"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("a Gateway of another class got a Deployment (%v)", err)
		}
	})
}

func checkOwned(t *testing.T, gw *gwv1.Gateway, metas ...*metav1.ObjectMeta) {
	t.Helper()
	for _, m := range metas {
		if len(m.OwnerReferences) != 1 || m.OwnerReferences[0].UID != gw.UID || m.OwnerReferences[0].Kind != "Gateway" ||
			m.OwnerReferences[0].Controller == nil || !*m.OwnerReferences[0].Controller {
			t.Errorf("%s: owner references %+v, want the Gateway as controller", m.Name, m.OwnerReferences)
		}
		if m.ManagedFields == nil {
			continue
		}
		applied := false
		for _, f := range m.ManagedFields {
			if f.Manager == deployer.FieldOwner && f.Operation == metav1.ManagedFieldsOperationApply {
				applied = true
			}
		}
		if !applied {
			t.Errorf("%s: not server-side applied by %s: %+v", m.Name, deployer.FieldOwner, m.ManagedFields)
		}
	}
}

func wantLabel(t *testing.T, m *metav1.ObjectMeta, k, v string) {
	t.Helper()
	if m.Labels[k] != v {
		t.Errorf("%s: label %s = %q, want %q", m.Name, k, m.Labels[k], v)
	}
}

func wantAnnotation(t *testing.T, m *metav1.ObjectMeta, k, v string) {
	t.Helper()
	if m.Annotations[k] != v {
		t.Errorf("%s: annotation %s = %q, want %q", m.Name, k, m.Annotations[k], v)
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
