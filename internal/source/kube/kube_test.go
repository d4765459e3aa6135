package kube_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	istiosec "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
)

// The source starts without the optional CRDs (GRPCRoute, TCPRoute, Istio),
// serves snapshots of what is there, and picks up the Istio CRDs when they
// are installed later, without a restart.
func TestSourceToleratesAbsentCRDs(t *testing.T) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	opts := kube.CacheOptions()
	opts.Scheme = scheme.Scheme
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	src := kube.New(c, kube.Options{OnChange: func() { changes.Add(1) }, Recheck: 200 * time.Millisecond})
	go func() { _ = c.Start(ctx) }()
	errc := make(chan error, 1)
	go func() { errc <- src.Start(ctx) }()
	select {
	case <-src.Synced():
	case err := <-errc:
		t.Fatalf("source: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("source did not sync")
	}
	served := src.Served()
	for k, want := range map[string]bool{"Gateway": true, "HTTPRoute": true, "ReferenceGrant": true,
		"GRPCRoute": false, "TCPRoute": false, "AuthorizationPolicy": false, "ServiceEntry": false} {
		if served[k] != want {
			t.Errorf("served[%s] = %v, want %v", k, served[k], want)
		}
	}

	cl := env.Client
	mustCreate(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{"istio.io/use-waypoint": "wp"}}}))
	mustCreate(t, cl.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}}}}))
	mustCreate(t, cl.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}))
	mustCreate(t, cl.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}))

	eventually(t, 10*time.Second, "the snapshot to hold the objects", func() bool {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range snap.Services {
			if s.Namespace == "ns" {
				names = append(names, s.Name)
			}
		}
		return len(snap.Gateways) == 1 && len(names) == 2 && names[0] == "a" && names[1] == "b" &&
			snap.AuthorizationPolicies == nil
	})
	if changes.Load() == 0 {
		t.Error("OnChange was never called")
	}

	// Install the Istio CRDs now: the source starts watching them.
	paths, err := kubetest.CRDPaths(kubetest.Istio)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: paths}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, cl.Create(ctx, &istiosec.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}))
	eventually(t, 20*time.Second, "the AuthorizationPolicy to appear in the snapshot", func() bool {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return src.Served()["AuthorizationPolicy"] && len(snap.AuthorizationPolicies) == 1
	})
}

func mustCreate(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
