package kube_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
)

func TestMeshConfigMapName(t *testing.T) {
	for rev, want := range map[string]string{"": "istio", "default": "istio", "canary": "istio-canary", "1-24": "istio-1-24"} {
		if got := kube.MeshConfigMapName(rev); got != want {
			t.Errorf("MeshConfigMapName(%q) = %q, want %q", rev, got, want)
		}
	}
}

// The source follows istiod's mesh ConfigMap (revision-suffixed, in the
// Istio namespace) live: created, changed, made invalid (the last good one
// stays), deleted (Istio's defaults). Other ConfigMaps, the unsuffixed one
// included, are not the mesh config.
func TestSourceFollowsTheMeshConfigMap(t *testing.T) {
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
	src := kube.New(c, kube.Options{OnChange: func() { changes.Add(1) },
		Mesh: &kube.MeshConfigMap{Client: env.Clientset, Namespace: "istio-system", Name: kube.MeshConfigMapName("canary")}})
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
	mesh := func() string {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.MeshConfig == nil {
			return "default"
		}
		return string(snap.MeshConfig.PathNormalization)
	}
	if got := mesh(); got != "default" {
		t.Fatalf("no ConfigMap: mesh config %q, want Istio's default", got)
	}

	cms := env.Clientset.CoreV1().ConfigMaps("istio-system")
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := func(name, doc string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"}, Data: map[string]string{"mesh": doc}}
	}
	// The default revision's ConfigMap is not ours.
	if _, err := cms.Create(ctx, cm("istio", "pathNormalization: {normalization: NONE}"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := changes.Load()
	if _, err := cms.Create(ctx, cm("istio-canary", "pathNormalization: {normalization: MERGE_SLASHES}"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the mesh config", func() bool { return mesh() == string(ir.NormalizeMergeSlashes) })
	if changes.Load() == before {
		t.Error("OnChange was not called for the mesh ConfigMap")
	}

	if _, err := cms.Update(ctx, cm("istio-canary", "pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the changed mesh config", func() bool { return mesh() == string(ir.NormalizeDecodeAndMergeSlashes) })

	// An invalid document: the last good mesh config stays, and says why.
	if _, err := cms.Update(ctx, cm("istio-canary", "pathNormalisation: {}"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the invalid document to be reported", func() bool { return src.MeshConfigError() != "" })
	if got, e := mesh(), src.MeshConfigError(); got != string(ir.NormalizeDecodeAndMergeSlashes) || !strings.Contains(e, "pathNormalisation") {
		t.Errorf("after an invalid document: mesh config %q, error %q; want the last good one and the field named", got, e)
	}

	if err := cms.Delete(ctx, "istio-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Istio's defaults after the deletion", func() bool { return mesh() == "default" })
	if e := src.MeshConfigError(); e != "" {
		t.Errorf("after the deletion: error %q", e)
	}
}
