package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// trafficDistribution is istiod's GetTrafficDistribution: the spec field
// (known values only), else the Service's annotation (an unknown value is
// any, and stops there), else the namespace's.
func TestTrafficDistributionPrecedence(t *testing.T) {
	spec := func(v string) *string { return &v }
	for _, c := range []struct {
		name    string
		spec    *string
		svc, ns string
		want    string
	}{
		{"nothing", nil, "", "", ""},
		{"spec PreferClose", spec("PreferClose"), "", "", ir.TrafficDistributionPreferSameZone},
		{"spec PreferSameZone", spec("PreferSameZone"), "", "", ir.TrafficDistributionPreferSameZone},
		{"spec PreferSameNode wins over the annotation", spec("PreferSameNode"), "PreferClose", "", ir.TrafficDistributionPreferSameNode},
		{"unknown spec value: the annotation", spec("Future"), "PreferSameNode", "", ir.TrafficDistributionPreferSameNode},
		{"annotation, any case", nil, "preferCLOSE", "", ir.TrafficDistributionPreferSameZone},
		{"annotation wins over the namespace", nil, "PreferSameZone", "PreferSameNode", ir.TrafficDistributionPreferSameZone},
		{"unknown annotation: any, not the namespace", nil, "Nearby", "PreferClose", ""},
		{"namespace", nil, "", "PreferSameNode", ir.TrafficDistributionPreferSameNode},
		{"unknown namespace value", nil, "", "Any", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := &corev1.Service{Spec: corev1.ServiceSpec{TrafficDistribution: c.spec}}
			if c.svc != "" {
				svc.Annotations = map[string]string{AnnotationTrafficDistribution: c.svc}
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationTrafficDistribution: c.ns}}}
			if got := trafficDistribution(svc, ns); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// A pod's locality label: slashes, or dots when there is no slash; parts
// may be missing.
func TestPodLocalityLabel(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   ir.Locality
		ok     bool
	}{
		{map[string]string{LabelTopologyLocality: "r/z/s"}, ir.Locality{Region: "r", Zone: "z", Subzone: "s"}, true},
		{map[string]string{LabelTopologyLocality: "r.z.s"}, ir.Locality{Region: "r", Zone: "z", Subzone: "s"}, true},
		{map[string]string{LabelTopologyLocality: "r/z.1"}, ir.Locality{Region: "r", Zone: "z.1"}, true},
		{map[string]string{LabelTopologyLocality: "r"}, ir.Locality{Region: "r"}, true},
		{map[string]string{labelLegacyLocality: "old.z", LabelTopologyLocality: "new"}, ir.Locality{Region: "new"}, true},
		{map[string]string{labelLegacyLocality: "old.z"}, ir.Locality{Region: "old", Zone: "z"}, true},
		{map[string]string{}, ir.Locality{}, false},
	} {
		got, ok := podLocality(c.labels)
		if got != c.want || ok != c.ok {
			t.Errorf("%v: got %+v %v, want %+v %v", c.labels, got, ok, c.want, c.ok)
		}
	}
}
