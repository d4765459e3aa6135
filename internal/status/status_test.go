package status_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

func ptr[T any](v T) *T { return &v }

// A Gateway without listeners (which the Gateway API CRDs refuse, so the
// integration tests cannot create it) is the sandwich default: accepted,
// addressed, no listener status. attachedRoutes counts the routes the
// waypoint accepted through its Services on every listener, and a
// Gateway-parented route only on the listener it names.
func TestNoListenersAndAttachedRoutes(t *testing.T) {
	bare := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "ns", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint"}}
	two := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "two", Namespace: "ns", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{
			{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}, {Name: "hbone", Protocol: "HBONE", Port: 15008}}}}
	viaGateway := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "r-gw", Namespace: "ns"},
		Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
			{Name: "two", SectionName: ptr(gwv1.SectionName("hbone"))}}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(bare, two, viaGateway).
		WithStatusSubresource(&gwv1.Gateway{}, &gwv1.HTTPRoute{}).Build()
	svc := func(name, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: corev1.ServiceSpec{ClusterIP: ip}}
	}
	res := &translate.Result{Conditions: []translate.Condition{
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r-svc", Parent: "Service ns/a", Type: "Accepted", Status: "True", Reason: "Accepted"},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r-svc", Parent: "Service ns/b", Type: "Accepted", Status: "True", Reason: "Accepted"},
		{Kind: "GRPCRoute", Namespace: "ns", Name: "g-svc", Parent: "Service ns/a", Type: "Accepted", Status: "True", Reason: "Accepted"},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r-no", Parent: "Service ns/a", Type: "Accepted", Status: "False", Reason: "NoMatchingParent"},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r-gw", Parent: "Gateway ns/two#hbone", Type: "Accepted", Status: "True", Reason: "Accepted"},
	}}
	w := &status.Writer{Client: c, ControllerName: "kgateway.dev/kgateway-waypoint", GatewayClass: "kgateway-waypoint"}
	err := w.Write(context.Background(), &source.Snapshot{HTTPRoutes: []*gwv1.HTTPRoute{viaGateway}}, []status.Waypoint{
		{Gateway: bare, Outcome: deployer.Outcome{Generation: 1, Deployed: true}, Service: svc("bare", "10.0.0.9")},
		{Gateway: two, Result: res, Outcome: deployer.Outcome{Generation: 1, Deployed: true}, Service: svc("two", "10.0.0.10")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := &gwv1.Gateway{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "bare"}, got); err != nil {
		t.Fatal(err)
	}
	if a := meta.FindStatusCondition(got.Status.Conditions, "Accepted"); a == nil || a.Status != "True" {
		t.Errorf("a Gateway without listeners: Accepted = %+v", a)
	}
	if len(got.Status.Addresses) != 2 || got.Status.Addresses[0].Value != "bare.ns.svc.cluster.local" || got.Status.Listeners != nil {
		t.Errorf("status = %+v", got.Status)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "two"}, got); err != nil {
		t.Fatal(err)
	}
	counts := map[gwv1.SectionName]int32{}
	for _, l := range got.Status.Listeners {
		counts[l.Name] = l.AttachedRoutes
	}
	// r-svc and g-svc on both; r-gw only on hbone; r-no never.
	if counts["mesh"] != 2 || counts["hbone"] != 3 {
		t.Errorf("attachedRoutes = %v, want mesh 2, hbone 3", counts)
	}
	r := &gwv1.HTTPRoute{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(viaGateway), r); err != nil {
		t.Fatal(err)
	}
	if len(r.Status.Parents) != 1 || r.Status.Parents[0].ParentRef.Name != "two" {
		t.Errorf("route parents = %+v", r.Status.Parents)
	}
}
