package status_test

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
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
		Outcome: deployer.Outcome{Generation: gw.Generation, Deployed: true}, Service: wpSvc, Deployment: readyDeployment(1)}}
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

	// The served Service says so, in a condition of our own type.
	gotSvc := &corev1.Service{}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(svc), gotSvc))
	if b := meta.FindStatusCondition(gotSvc.Status.Conditions, status.ConditionWaypointBound); b == nil || b.Status != "True" ||
		b.Reason != "Bound" || b.Message != "served by waypoint ns/wp (kgateway.dev/kgateway-waypoint)" {
		t.Errorf("Service %s = %+v", status.ConditionWaypointBound, b)
	}
	if len(gotSvc.Status.Conditions) != 1 {
		t.Errorf("Service conditions = %+v, want only ours", gotSvc.Status.Conditions)
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
	rvGW, rvRoute, rvSvc := got.ResourceVersion, r.ResourceVersion, gotSvc.ResourceVersion
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), gw))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(route), route))
	wps[0].Gateway = gw
	must(t, w.Write(ctx, &source.Snapshot{Namespaces: snap.Namespaces, Services: []*corev1.Service{gotSvc, wpSvc}, Gateways: []*gwv1.Gateway{gw},
		HTTPRoutes: []*gwv1.HTTPRoute{route}}, wps))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), got))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(route), r))
	must(t, c.Get(ctx, client.ObjectKeyFromObject(svc), gotSvc))
	if got.ResourceVersion != rvGW || r.ResourceVersion != rvRoute || gotSvc.ResourceVersion != rvSvc {
		t.Errorf("a second write with nothing changed wrote: gateway %s -> %s, route %s -> %s, service %s -> %s",
			rvGW, got.ResourceVersion, rvRoute, r.ResourceVersion, rvSvc, gotSvc.ResourceVersion)
	}
}

// readyDeployment is a waypoint Deployment with n of 1 replicas ready.
func readyDeployment(n int32) *appsv1.Deployment {
	return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1))},
		Status: appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: n}}
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

// The Gateway gets its addresses and Programmed=True only once the
// waypoint Deployment has a ready replica (istiod steers traffic to a
// Gateway as soon as it has addresses). Without one, Programmed is False
// with reason NoReadyReplicas; addresses once published stay (istiod's
// waypoints.go: they "should never be removed after going ready").
func TestGatewayProgrammedOnlyWithReadyReplica(t *testing.T) {
	env := kubetest.Start(t, kubetest.GatewayAPICore)
	c, ctx := env.Client, context.Background()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}))
	wpSvc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "mesh", Port: 15008}}}}
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{
			{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}}}}
	must(t, c.Create(ctx, wpSvc))
	must(t, c.Create(ctx, gw))
	w := &status.Writer{Client: c, ControllerName: "kgateway.dev/kgateway-waypoint", GatewayClass: "kgateway-waypoint"}
	write := func(dep *appsv1.Deployment) *gwv1.Gateway {
		t.Helper()
		must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), gw))
		must(t, w.Write(ctx, &source.Snapshot{Gateways: []*gwv1.Gateway{gw}}, []status.Waypoint{{Gateway: gw, Verdict: translate.ValidateGateway(gw),
			Outcome: deployer.Outcome{Generation: gw.Generation, Deployed: true}, Service: wpSvc, Deployment: dep}}))
		got := &gwv1.Gateway{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(gw), got))
		return got
	}
	check := func(got *gwv1.Gateway, programmed, listener string, addresses int) {
		t.Helper()
		p := meta.FindStatusCondition(got.Status.Conditions, "Programmed")
		if p == nil || string(p.Status)+"/"+p.Reason != programmed {
			t.Errorf("Programmed = %+v, want %s", p, programmed)
		}
		if len(got.Status.Listeners) != 1 {
			t.Fatalf("listeners = %+v", got.Status.Listeners)
		}
		if l := meta.FindStatusCondition(got.Status.Listeners[0].Conditions, "Programmed"); l == nil || string(l.Status)+"/"+l.Reason != listener {
			t.Errorf("listener Programmed = %+v, want %s", l, listener)
		}
		if len(got.Status.Addresses) != addresses {
			t.Errorf("addresses = %v, want %d", got.Status.Addresses, addresses)
		}
	}

	// No Deployment yet, then one with no ready replica: no addresses.
	check(write(nil), "False/NoReadyReplicas", "False/Pending", 0)
	got := write(readyDeployment(0))
	check(got, "False/NoReadyReplicas", "False/Pending", 0)
	if msg := meta.FindStatusCondition(got.Status.Conditions, "Programmed").Message; msg !=
		"the waypoint Deployment ns/wp has no ready replica (0 of 1 ready); the addresses are published once one is ready" {
		t.Errorf("Programmed message = %q", msg)
	}
	// A ready replica: programmed, addresses published.
	got = write(readyDeployment(1))
	check(got, "True/Programmed", "True/Programmed", 2)
	if got.Status.Addresses[1].Value != wpSvc.Spec.ClusterIP {
		t.Errorf("addresses = %v, want the Service's cluster IP %s", got.Status.Addresses, wpSvc.Spec.ClusterIP)
	}
	// None ready any more: not programmed, the addresses stay.
	got = write(readyDeployment(0))
	check(got, "False/NoReadyReplicas", "False/Pending", 2)
	if msg := meta.FindStatusCondition(got.Status.Conditions, "Programmed").Message; msg !=
		"the waypoint Deployment ns/wp has no ready replica (0 of 1 ready); the addresses stay published, so the traffic istiod sends here fails until one is ready" {
		t.Errorf("Programmed message = %q", msg)
	}
	check(write(readyDeployment(1)), "True/Programmed", "True/Programmed", 2)
}

// What the design of our conditions on Istio objects rests on, checked on
// the real API server with the Istio CRDs: their status.conditions is an
// atomic list for server-side apply (a forced apply by one manager
// replaces every entry of the others), while a field of our own under
// status (which preserves unknown fields) survives istiod's applies and
// goes when we apply without it. A Service's status.conditions is a map
// keyed by type: each manager's entries survive the others' applies.
func TestServerSideApplyOfStatus(t *testing.T) {
	env := kubetest.Start(t, kubetest.Istio)
	c, ctx := env.Client, context.Background()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}))
	ap := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": "p", "namespace": "ns"}, "spec": map[string]any{"action": "DENY"}}}
	must(t, c.Create(ctx, ap))
	apply := func(obj client.Object, manager, status string) map[string]any {
		t.Helper()
		body := `{"apiVersion":"` + obj.GetObjectKind().GroupVersionKind().GroupVersion().String() + `","kind":"` +
			obj.GetObjectKind().GroupVersionKind().Kind + `","metadata":{"name":"` + obj.GetName() + `"},"status":` + status + `}`
		must(t, c.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, []byte(body)), client.FieldOwner(manager), client.ForceOwnership))
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
		must(t, c.Get(ctx, client.ObjectKeyFromObject(obj), u))
		st, _ := u.Object["status"].(map[string]any)
		return st
	}
	condTypes := func(st map[string]any, path ...string) []string {
		list, _, _ := unstructured.NestedSlice(st, path...)
		var out []string
		for _, e := range list {
			out = append(out, e.(map[string]any)["type"].(string))
		}
		return out
	}
	istiod := `{"conditions":[{"type":"WaypointAccepted","status":"True","reason":"Accepted","message":"bound"}]}`
	apply(ap, "istio-ambient-waypoint-policy", istiod)
	st := apply(ap, status.FieldManager, `{"conditions":[{"type":"`+status.ConditionWaypointAccepted+`","status":"True","reason":"Accepted"}]}`)
	if got := condTypes(st, "conditions"); len(got) != 1 || got[0] != status.ConditionWaypointAccepted {
		t.Errorf("status.conditions after a second manager's apply = %v: the list is not atomic any more, revisit IstioStatusField", got)
	}
	apply(ap, "istio-ambient-waypoint-policy", istiod)
	st = apply(ap, status.FieldManager, `{"`+status.IstioStatusField+`":{"conditions":[{"type":"`+status.ConditionWaypointAccepted+`","status":"True","reason":"Accepted"}]}}`)
	if got := condTypes(st, "conditions"); len(got) != 1 || got[0] != "WaypointAccepted" {
		t.Errorf("istiod's status.conditions after our apply of our own field = %v", got)
	}
	st = apply(ap, "istio-ambient-waypoint-policy", istiod)
	if got, ours := condTypes(st, "conditions"), condTypes(st, status.IstioStatusField, "conditions"); len(got) != 1 || got[0] != "WaypointAccepted" ||
		len(ours) != 1 || ours[0] != status.ConditionWaypointAccepted {
		t.Errorf("after istiod's apply: istiod's %v, ours %v", got, ours)
	}
	st = apply(ap, status.FieldManager, `{}`)
	if got, ours := condTypes(st, "conditions"), condTypes(st, status.IstioStatusField, "conditions"); len(got) != 1 || ours != nil {
		t.Errorf("after our empty apply: istiod's %v, ours %v (want ours gone)", got, ours)
	}

	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	must(t, c.Create(ctx, svc))
	svc.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
	cond := func(typ string) string {
		return `{"type":"` + typ + `","status":"True","reason":"Bound","message":"m","lastTransitionTime":"2026-01-01T00:00:00Z"}`
	}
	apply(svc, "istio-ambient-service", `{"conditions":[`+cond("istio.io/WaypointBound")+`]}`)
	apply(svc, status.FieldManager, `{"conditions":[`+cond(status.ConditionWaypointBound)+`]}`)
	st = apply(svc, "istio-ambient-service", `{"conditions":[`+cond("istio.io/WaypointBound")+`]}`)
	if got := condTypes(st, "conditions"); len(got) != 2 {
		t.Errorf("Service conditions after both applies = %v, want both", got)
	}
	st = apply(svc, status.FieldManager, `{}`)
	if got := condTypes(st, "conditions"); len(got) != 1 || got[0] != "istio.io/WaypointBound" {
		t.Errorf("Service conditions after our empty apply = %v, want istiod's only", got)
	}
}
