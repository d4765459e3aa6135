package status_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

func ptr[T any](v T) *T { return &v }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The writer puts the translator's typed results on the objects of a real
// API server: the Gateway's Accepted (True, ListenersNotValid: one
// listener is not a waypoint listener) and each listener's conditions,
// supported kinds and attached routes as the verdict says; a route's
// status.parents entry per parentRef, matched by its index (two refs to
// one Service's ports, by sectionName, stay apart), next to another
// controller's entry that it leaves alone. A second write with nothing
// changed writes nothing.
func TestWriteFromVerdicts(t *testing.T) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	c, ctx := env.Client, context.Background()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{"istio.io/use-waypoint": "wp"}}}))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	wpSvc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "mesh", Port: 15008}}}}
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{
			{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}, {Name: "web", Protocol: "HTTP", Port: 80}}}}
	route := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
			{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: "svc", SectionName: ptr(gwv1.SectionName("http"))},
			{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: "svc", SectionName: ptr(gwv1.SectionName("grpc"))},
			{Name: "wp", SectionName: ptr(gwv1.SectionName("web"))},
			{Name: "someone-elses"},
		}}}}
	for _, o := range []client.Object{svc, wpSvc, gw, route} {
		must(t, c.Create(ctx, o))
	}
	other := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "someone-elses"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: metav1.Now()}}}
	route.Status.Parents = []gwv1.RouteParentStatus{other}
	must(t, c.Status().Update(ctx, route))

	// What the controller does: a snapshot of the objects as the API
	// server has them, translated, then written.
	for _, o := range []client.Object{svc, wpSvc, gw, route} {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(o), o))
	}
	ns := &corev1.Namespace{}
	must(t, c.Get(ctx, client.ObjectKey{Name: "ns"}, ns))
	snap := &source.Snapshot{Namespaces: []*corev1.Namespace{ns}, Services: []*corev1.Service{svc, wpSvc},
		Gateways: []*gwv1.Gateway{gw}, HTTPRoutes: []*gwv1.HTTPRoute{route}}
	res, err := translate.Translate(snap, translate.Options{})
	must(t, err)
	w := &status.Writer{Client: c, ControllerName: "kgateway.dev/kgateway-waypoint", GatewayClass: "kgateway-waypoint"}
	wps := []status.Waypoint{{Gateway: gw, Verdict: res.Gateway, Result: res,
		Outcome: deployer.Outcome{Generation: gw.Generation, Deployed: true}, Service: wpSvc}}
	must(t, w.Write(ctx, snap, wps))

	got := &gwv1.Gateway{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), got))
	if a := meta.FindStatusCondition(got.Status.Conditions, "Accepted"); a == nil || a.Status != "True" || a.Reason != "ListenersNotValid" {
		t.Errorf("Gateway Accepted = %+v, want True/ListenersNotValid", a)
	}
	if p := meta.FindStatusCondition(got.Status.Conditions, "Programmed"); p == nil || p.Status != "True" {
		t.Errorf("Gateway Programmed = %+v", p)
	}
	if len(got.Status.Addresses) != 2 || got.Status.Addresses[0].Value != "wp.ns.svc.cluster.local" || got.Status.Addresses[1].Value != wpSvc.Spec.ClusterIP {
		t.Errorf("addresses = %+v", got.Status.Addresses)
	}
	if len(got.Status.Listeners) != 2 {
		t.Fatalf("listeners = %+v", got.Status.Listeners)
	}
	mesh, web := got.Status.Listeners[0], got.Status.Listeners[1]
	want := func(l gwv1.ListenerStatus, typ, statusReason string) {
		t.Helper()
		c := meta.FindStatusCondition(l.Conditions, typ)
		if c == nil || string(c.Status)+"/"+c.Reason != statusReason {
			t.Errorf("listener %s: %s = %+v, want %s", l.Name, typ, c, statusReason)
		}
	}
	want(mesh, "Accepted", "True/Accepted")
	want(mesh, "Programmed", "True/Programmed")
	want(mesh, "ResolvedRefs", "True/ResolvedRefs")
	want(mesh, "Conflicted", "False/NoConflicts")
	want(web, "Accepted", "False/UnsupportedProtocol")
	want(web, "Programmed", "False/Invalid")
	if mesh.AttachedRoutes != 1 || len(mesh.SupportedKinds) != 3 || web.AttachedRoutes != 0 || len(web.SupportedKinds) != 0 {
		t.Errorf("mesh %d routes %v, web %d routes %v", mesh.AttachedRoutes, mesh.SupportedKinds, web.AttachedRoutes, web.SupportedKinds)
	}

	r := &gwv1.HTTPRoute{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(route), r))
	// Theirs first (kept), then ours in parentRefs order; none for their parent.
	if len(r.Status.Parents) != 4 || r.Status.Parents[0].ControllerName != "example.com/other" {
		t.Fatalf("parents = %+v", r.Status.Parents)
	}
	for i, wantParent := range []struct {
		ref      gwv1.ParentReference
		accepted string
	}{
		{route.Spec.ParentRefs[0], "True/Accepted"},
		{route.Spec.ParentRefs[1], "False/NoMatchingParent"},
		{route.Spec.ParentRefs[2], "False/NoMatchingParent"},
	} {
		p := r.Status.Parents[i+1]
		a := meta.FindStatusCondition(p.Conditions, "Accepted")
		if p.ControllerName != "kgateway.dev/kgateway-waypoint" || p.ParentRef.Name != wantParent.ref.Name ||
			!ptrEqual(p.ParentRef.Port, wantParent.ref.Port) || !ptrEqual(p.ParentRef.SectionName, wantParent.ref.SectionName) ||
			a == nil || string(a.Status)+"/"+a.Reason != wantParent.accepted {
			t.Errorf("parent %d = %+v, want %+v with Accepted %s", i+1, p, wantParent.ref, wantParent.accepted)
		}
	}

	// Nothing changed: nothing is written.
	rvGW, rvRoute := got.ResourceVersion, r.ResourceVersion
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), gw))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(route), route))
	wps[0].Gateway = gw
	must(t, w.Write(ctx, &source.Snapshot{Namespaces: snap.Namespaces, Services: snap.Services, Gateways: []*gwv1.Gateway{gw},
		HTTPRoutes: []*gwv1.HTTPRoute{route}}, wps))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), got))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(route), r))
	if got.ResourceVersion != rvGW || r.ResourceVersion != rvRoute {
		t.Errorf("a second write with nothing changed wrote: gateway %s -> %s, route %s -> %s", rvGW, got.ResourceVersion, rvRoute, r.ResourceVersion)
	}
}

// A Gateway the listener rules refuse gets Accepted=False with the
// verdict's reason and message, its listeners' reasons, and no addresses.
func TestWriteRefusedGateway(t *testing.T) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	c, ctx := env.Client, context.Background()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}))
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{
			{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15089}}}}
	must(t, c.Create(ctx, gw))
	v := translate.ValidateGateway(gw)
	w := &status.Writer{Client: c, ControllerName: "kgateway.dev/kgateway-waypoint", GatewayClass: "kgateway-waypoint"}
	must(t, w.Write(ctx, &source.Snapshot{Gateways: []*gwv1.Gateway{gw}}, []status.Waypoint{{Gateway: gw, Verdict: v,
		Service: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.9"}}}}))
	got := &gwv1.Gateway{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), got))
	a := meta.FindStatusCondition(got.Status.Conditions, "Accepted")
	if a == nil || a.Status != "False" || a.Reason != "ListenersNotValid" || a.Message != v.Accepted.Message {
		t.Errorf("Accepted = %+v, want the verdict %+v", a, v.Accepted)
	}
	if len(got.Status.Addresses) != 0 || len(got.Status.Listeners) != 1 {
		t.Fatalf("status = %+v", got.Status)
	}
	if l := meta.FindStatusCondition(got.Status.Listeners[0].Conditions, "Accepted"); l == nil || l.Reason != "PortUnavailable" {
		t.Errorf("listener Accepted = %+v", l)
	}
}

func ptrEqual[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
