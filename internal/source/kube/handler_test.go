package kube

import (
	"testing"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	netv1alpha3 "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Which ServiceEntry updates are changes to the translator: its spec (the
// generation), labels, and status.addresses; not its conditions, so that
// status writes (ours with them) never retrigger a translation.
func TestServiceEntryUpdateFilter(t *testing.T) {
	var k *kind
	for _, c := range kinds() {
		if c.name == "ServiceEntry" {
			k = c
		}
	}
	calls := 0
	s := &Source{onChange: func() { calls++ }}
	h := s.handler(k)
	base := func() *istionet.ServiceEntry {
		return &istionet.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "ns", Generation: 1, ResourceVersion: "1"},
			Status: netv1alpha3.ServiceEntryStatus{Addresses: []*netv1alpha3.ServiceEntryAddress{{Host: "a.example.com", Value: "240.240.0.1"}}}}
	}
	for _, tc := range []struct {
		name   string
		change func(*istionet.ServiceEntry)
		want   int
	}{
		{"resourceVersion only", func(e *istionet.ServiceEntry) { e.ResourceVersion = "2" }, 0},
		{"conditions", func(e *istionet.ServiceEntry) {
			e.Status.Conditions = []*metav1alpha1.IstioCondition{{Type: "kgateway.dev/WaypointBound", Status: "True"}}
		}, 0},
		{"observedGeneration", func(e *istionet.ServiceEntry) { e.Status.ObservedGeneration = 1 }, 0},
		{"address value", func(e *istionet.ServiceEntry) { e.Status.Addresses[0].Value = "240.240.0.2" }, 1},
		{"address host", func(e *istionet.ServiceEntry) { e.Status.Addresses[0].Host = "b.example.com" }, 1},
		{"address added", func(e *istionet.ServiceEntry) {
			e.Status.Addresses = append(e.Status.Addresses, &netv1alpha3.ServiceEntryAddress{Host: "a.example.com", Value: "2001:2::f0f0:1"})
		}, 1},
		{"addresses withdrawn", func(e *istionet.ServiceEntry) { e.Status.Addresses = nil }, 1},
		{"generation", func(e *istionet.ServiceEntry) { e.Generation = 2 }, 1},
		{"labels", func(e *istionet.ServiceEntry) { e.Labels = map[string]string{"istio.io/use-waypoint": "wp"} }, 1},
	} {
		calls = 0
		n := base()
		tc.change(n)
		h.OnUpdate(base(), n)
		if calls != tc.want {
			t.Errorf("%s: OnChange called %d times, want %d", tc.name, calls, tc.want)
		}
	}
}
