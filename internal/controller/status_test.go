package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1alpha1 "istio.io/api/meta/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
)

// waypointGateway creates namespace ns and a sandwich waypoint Gateway wp
// in it.
func waypointGateway(t *testing.T, c client.Client, ns string) types.NamespacedName {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: ns},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint",
			Listeners: []gwv1.Listener{{Name: "mesh", Protocol: "istio.io/PROXY", Port: 15088}}}}); err != nil {
		t.Fatal(err)
	}
	return types.NamespacedName{Namespace: ns, Name: "wp"}
}

// The controller follows the waypoint Deployment's readiness (the test
// stands in for kube-controller-manager, which writes it in a cluster):
// no addresses and Programmed=False/NoReadyReplicas until a replica is
// ready, then Programmed=True with the addresses; when none is ready any
// more, Programmed=False again while the addresses stay (istiod's
// contract: they are never removed once the waypoint went ready).
func TestGatewayFollowsDeploymentReadiness(t *testing.T) {
	env, _ := startController(t)
	c, ctx := env.Client, context.Background()
	key := waypointGateway(t, c, "app")
	gw := &gwv1.Gateway{}
	waitGateway := func(what, programmed string, addresses int) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() error {
			if err := c.Get(ctx, key, gw); err != nil {
				return err
			}
			if got := cond(gw.Status.Conditions, "Programmed"); got != programmed || len(gw.Status.Addresses) != addresses {
				return fmt.Errorf("Programmed %s, addresses %v", got, gw.Status.Addresses)
			}
			return nil
		})
	}
	waitGateway("a Gateway without a ready replica", "False/NoReadyReplicas", 0)
	// It stays so: the deployer is done, only readiness is missing.
	if err := c.Get(ctx, key, gw); err != nil {
		t.Fatal(err)
	}
	if a := cond(gw.Status.Conditions, "Accepted"); a != "True/Accepted" {
		t.Errorf("Accepted = %s", a)
	}
	markReady(t, c, key, 1)
	waitGateway("the programmed Gateway with its addresses", "True/Programmed", 2)
	markReady(t, c, key, 0)
	waitGateway("Programmed withdrawn, the addresses kept", "False/NoReadyReplicas", 2)
	if msg := meta.FindStatusCondition(gw.Status.Conditions, "Programmed").Message; !strings.Contains(msg, "0 of 1 ready") {
		t.Errorf("Programmed message = %q", msg)
	}
	markReady(t, c, key, 1)
	waitGateway("programmed again", "True/Programmed", 2)
}

// istiodApply writes status as istiod's ambient status queue does: a
// server-side apply of status.conditions (Istio's IstioCondition, as
// jsonpb writes it), forced, with istiod's field manager for that kind of
// condition. istiod itself cannot run here; this is the one write of its
// that matters to us.
func istiodApply(t *testing.T, c client.Client, obj client.Object, apiVersion, kind, manager string, gen int64, typ, st, reason, msg string) {
	t.Helper()
	patch := struct {
		metav1.TypeMeta
		metav1.ObjectMeta `json:"metadata"`
		Status            struct {
			Conditions []any `json:"conditions"`
		} `json:"status"`
	}{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}, ObjectMeta: metav1.ObjectMeta{Name: obj.GetName()}}
	patch.Status.Conditions = []any{&metav1alpha1.IstioCondition{Type: typ, Status: st, Reason: reason, Message: msg,
		ObservedGeneration: gen, LastTransitionTime: timestamppb.Now()}}
	body, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Status().Patch(context.Background(), obj, client.RawPatch(types.ApplyPatchType, body),
		client.FieldOwner(manager), client.ForceOwnership); err != nil {
		t.Fatalf("istiod's apply on %s %s: %v\n%s", kind, obj.GetName(), err, body)
	}
}

// istiodCondition is "status/reason/message" of istiod's condition typ in
// status.conditions ("<none>" when absent).
func istiodCondition(t *testing.T, c client.Client, u *unstructured.Unstructured, typ string) string {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), u); err != nil {
		t.Fatal(err)
	}
	list, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, e := range list {
		m := e.(map[string]any)
		if m["type"] == typ {
			return fmt.Sprint(m["status"], "/", m["reason"], "/", m["message"])
		}
	}
	return "<none>"
}

// Our conditions and istiod's live side by side on the real API server,
// whoever writes first and however often the other rewrites: istiod's
// WaypointAccepted on an AuthorizationPolicy (field manager
// istio-ambient-waypoint-policy) and its istio.io/WaypointBound on a
// Service and a ServiceEntry (istio-ambient-service), played by the test
// exactly as istiod applies them, next to ours. Ours go when they no longer
// apply (the use-waypoint label removed); istiod's stay.
func TestStatusNextToIstiod(t *testing.T) {
	env, _ := startController(t)
	c, ctx := env.Client, context.Background()
	key := waypointGateway(t, c, "app")
	markReady(t, c, key, 1)
	eventually(t, 20*time.Second, "the programmed Gateway", func() error {
		gw := &gwv1.Gateway{}
		if err := c.Get(ctx, key, gw); err != nil {
			return err
		}
		if got := cond(gw.Status.Conditions, "Programmed"); got != "True/Programmed" {
			return fmt.Errorf("Programmed %s", got)
		}
		return nil
	})

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "app"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	se := istioObject("ServiceEntry")
	se.SetName("se")
	se.SetNamespace("app")
	se.Object["spec"] = map[string]any{"hosts": []any{"ext.example.com"}, "addresses": []any{"240.240.0.1"},
		"ports": []any{map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}}, "resolution": "STATIC",
		"location": "MESH_EXTERNAL", "endpoints": []any{map[string]any{"address": "192.0.2.10"}}}
	ap := istioObject("AuthorizationPolicy")
	ap.SetName("pol")
	ap.SetNamespace("app")
	ap.Object["spec"] = map[string]any{"targetRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "svc"}},
		"action": "ALLOW", "rules": []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{"namespaces": []any{"app"}}}}}}}
	for _, o := range []client.Object{se, ap} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svcU := &unstructured.Unstructured{}
	svcU.SetAPIVersion("v1")
	svcU.SetKind("Service")
	svcU.SetName("svc")
	svcU.SetNamespace("app")

	istiod := func(msg string) {
		t.Helper()
		istiodApply(t, c, svc, "v1", "Service", "istio-ambient-service", 0, "istio.io/WaypointBound", "True", "WaypointAccepted", msg)
		istiodApply(t, c, se, "networking.istio.io/v1", "ServiceEntry", "istio-ambient-service", 0, "istio.io/WaypointBound", "True", "WaypointAccepted", msg)
		istiodApply(t, c, ap, "security.istio.io/v1", "AuthorizationPolicy", "istio-ambient-waypoint-policy", ap.GetGeneration(), "WaypointAccepted", "True", "Accepted", msg)
	}
	// istiod's three, as they are now.
	theirs := func() string {
		return istiodCondition(t, c, svcU, "istio.io/WaypointBound") + " | " + istiodCondition(t, c, se, "istio.io/WaypointBound") +
			" | " + istiodCondition(t, c, ap, "WaypointAccepted")
	}
	// Ours: the Service's in status.conditions, the Istio objects' in
	// status.kgatewayWaypoint; with the observed generation.
	oursNow := func() string {
		s := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), s); err != nil {
			t.Fatal(err)
		}
		out := "<none>"
		if b := meta.FindStatusCondition(s.Status.Conditions, status.ConditionWaypointBound); b != nil {
			out = fmt.Sprintf("%s/%s@%d", b.Status, b.Reason, b.ObservedGeneration)
		}
		return out + " | " + ourIstioCondition(t, c, "ServiceEntry", client.ObjectKeyFromObject(se), status.ConditionWaypointBound) +
			" | " + ourIstioCondition(t, c, "AuthorizationPolicy", client.ObjectKeyFromObject(ap), status.ConditionWaypointAccepted)
	}
	waitFor := func(what string, want func() string, ours, theirsWant string) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() error {
			o, th := want(), theirs()
			if o != ours || th != theirsWant {
				return fmt.Errorf("ours %q (want %q), istiod's %q (want %q)", o, ours, th, theirsWant)
			}
			return nil
		})
	}
	generations := func() (int64, int64) {
		s := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), s); err != nil {
			t.Fatal(err)
		}
		p := istioObject("AuthorizationPolicy")
		if err := c.Get(ctx, client.ObjectKeyFromObject(ap), p); err != nil {
			t.Fatal(err)
		}
		return s.Generation, p.GetGeneration()
	}
	oursWithoutGen := func() string {
		s := strings.Split(oursNow(), " | ")
		s[0] = strings.Split(s[0], "@")[0]
		return strings.Join(s, " | ")
	}

	// 1. istiod first: its conditions are there before ours (the objects
	// name no waypoint of ours yet, so we write nothing on them).
	istiod("attached")
	istiodWant := func(msg string) string {
		return "True/WaypointAccepted/" + msg + " | True/WaypointAccepted/" + msg + " | True/Accepted/" + msg
	}
	if got := theirs(); got != istiodWant("attached") {
		t.Fatalf("istiod's conditions as applied: %s", got)
	}
	label := func(v string) {
		t.Helper()
		for _, o := range []client.Object{&corev1.Service{}, istioObject("ServiceEntry")} {
			name := "svc"
			if _, ok := o.(*unstructured.Unstructured); ok {
				name = "se"
			}
			if err := c.Get(ctx, types.NamespacedName{Namespace: "app", Name: name}, o); err != nil {
				t.Fatal(err)
			}
			l := o.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			if v == "" {
				delete(l, "istio.io/use-waypoint")
			} else {
				l["istio.io/use-waypoint"] = v
			}
			o.SetLabels(l)
			if err := c.Update(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	label("wp")
	waitFor("ours next to istiod's", oursWithoutGen, "True/Bound | True/Bound | True/Accepted", istiodWant("attached"))

	// 2. istiod rewrites after us: ours stay.
	istiod("rewritten")
	if o, th := oursWithoutGen(), theirs(); o != "True/Bound | True/Bound | True/Accepted" || th != istiodWant("rewritten") {
		t.Errorf("after istiod rewrote: ours %q, istiod's %q", o, th)
	}

	// 3. We rewrite after istiod (new generations of the Service and the
	// policy): istiod's stay.
	s := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), s); err != nil {
		t.Fatal(err)
	}
	s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "http-alt", Port: 8080})
	if err := c.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(ap), ap); err != nil {
		t.Fatal(err)
	}
	ap.Object["spec"].(map[string]any)["action"] = "DENY"
	if err := c.Update(ctx, ap); err != nil {
		t.Fatal(err)
	}
	svcGen, apGen := generations()
	eventually(t, 20*time.Second, "ours rewritten for the new generations", func() error {
		p := istioObject("AuthorizationPolicy")
		if err := c.Get(ctx, client.ObjectKeyFromObject(ap), p); err != nil {
			return err
		}
		list, _, _ := unstructured.NestedSlice(p.Object, "status", status.IstioStatusField, "conditions")
		if len(list) != 1 || fmt.Sprint(list[0].(map[string]any)["observedGeneration"]) != fmt.Sprint(apGen) {
			return fmt.Errorf("the policy's conditions %v, want observedGeneration %d", list, apGen)
		}
		if o := oursNow(); !strings.HasPrefix(o, fmt.Sprintf("True/Bound@%d |", svcGen)) {
			return fmt.Errorf("ours %q, want the Service's at generation %d", o, svcGen)
		}
		return nil
	})
	if th := theirs(); th != istiodWant("rewritten") {
		t.Errorf("after we rewrote: istiod's %q", th)
	}
	// Our writes settle: nothing of ours is rewritten while nothing changes.
	rvs := func() string {
		out := ""
		for _, o := range []*unstructured.Unstructured{svcU, se, ap} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Fatal(err)
			}
			out += o.GetResourceVersion() + " "
		}
		return out
	}
	before := rvs()
	time.Sleep(2 * time.Second)
	if after := rvs(); after != before {
		t.Errorf("our conditions keep being rewritten: %s-> %s", before, after)
	}
	istiod("rewritten again")
	if o, th := oursWithoutGen(), theirs(); o != "True/Bound | True/Bound | True/Accepted" || th != istiodWant("rewritten again") {
		t.Errorf("after istiod rewrote again: ours %q, istiod's %q", o, th)
	}

	// 4. The label goes: ours go (the policy's too: its target is no
	// longer served), istiod's stay.
	label("")
	waitFor("ours removed, istiod's kept", oursWithoutGen, "<none> | <none> | <none>", istiodWant("rewritten again"))
	u := istioObject("AuthorizationPolicy")
	if err := c.Get(ctx, client.ObjectKeyFromObject(ap), u); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedMap(u.Object, "status", status.IstioStatusField); found {
		t.Errorf("status.%s is still on the policy: %v", status.IstioStatusField, u.Object["status"])
	}
}
