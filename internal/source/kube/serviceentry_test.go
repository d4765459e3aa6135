package kube_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	netv1alpha3 "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/kube"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// istiod writes a ServiceEntry's auto-allocated addresses into its status
// after the entry exists: that status-only update reaches the translator
// (OnChange, and the snapshot holds the addresses), while a status update
// that only touches conditions (istiod's, or our own status writes) does
// not.
func TestServiceEntryStatusAddressesPickedUp(t *testing.T) {
	env := kubetest.Start(t, kubetest.All)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	opts := kube.CacheOptions()
	opts.Scheme = scheme.Scheme
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	src := kube.New(c, kube.Options{OnChange: func() { changes.Add(1) }})
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

	cl := env.Client
	mustCreate(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ext", Labels: map[string]string{"istio.io/use-waypoint": "wp"}}}))
	mustCreate(t, cl.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ext"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}}}}))
	se := &istionet.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "ext"},
		Spec: netv1alpha3.ServiceEntry{Hosts: []string{"api.example.com"}, Resolution: netv1alpha3.ServiceEntry_DNS,
			Ports: []*netv1alpha3.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}}}
	mustCreate(t, cl.Create(ctx, se))
	snapshotEntry := func() *istionet.ServiceEntry {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range snap.ServiceEntries {
			if e.Name == "ext" {
				return e
			}
		}
		return nil
	}
	eventually(t, 10*time.Second, "the ServiceEntry in the snapshot", func() bool { return snapshotEntry() != nil })
	// The resourceVersion the snapshot holds moves with every update the
	// informer saw, so waiting for it waits for the event.
	waitSeen := func(rv string) {
		t.Helper()
		eventually(t, 10*time.Second, "the informer to see resourceVersion "+rv, func() bool {
			e := snapshotEntry()
			return e != nil && e.ResourceVersion == rv
		})
	}
	waitSeen(se.ResourceVersion)
	before := changes.Load()

	// A status update with conditions only (ours, say), then istiod's
	// allocation. Handlers run in event order, so once the allocation was
	// counted the conditions update was handled too: one change in all.
	se.Status.Conditions = []*metav1alpha1.IstioCondition{{Type: "kgateway.dev/WaypointBound", Status: "True", Reason: "Bound"}}
	if err := cl.Status().Update(ctx, se); err != nil {
		t.Fatal(err)
	}
	se.Status.Addresses = []*netv1alpha3.ServiceEntryAddress{{Host: "api.example.com", Value: "240.240.0.1"}}
	if err := cl.Status().Update(ctx, se); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "OnChange for the status.addresses update", func() bool { return changes.Load() > before })
	waitSeen(se.ResourceVersion)
	got := snapshotEntry().Status.GetAddresses()
	if len(got) != 1 || got[0].GetValue() != "240.240.0.1" || got[0].GetHost() != "api.example.com" {
		t.Fatalf("snapshot status.addresses = %v", got)
	}
	// And the translator serves the host on it.
	snap, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{Gateway: ir.NamespacedName{Namespace: "ext", Name: "wp"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Waypoint.Services); n != 1 || !slices.Equal(res.Waypoint.Services[0].VIPs, []string{"240.240.0.1"}) {
		t.Fatalf("served services %v, want api.example.com on 240.240.0.1", res.Waypoint.Services)
	}

	// A reallocation (another value) is a change too.
	se.Status.Addresses[0].Value = "240.240.0.7"
	if err := cl.Status().Update(ctx, se); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "OnChange for the reallocation", func() bool { return changes.Load() > before+1 })
	waitSeen(se.ResourceVersion)
	if n := changes.Load(); n != before+2 {
		t.Fatalf("OnChange called %d times for the conditions, allocation and reallocation updates, want 2", n-before)
	}
}
