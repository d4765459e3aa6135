package status

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// Our condition types on objects istiod writes status on too (Service,
// ServiceEntry, AuthorizationPolicy). istiod owns `istio.io/WaypointBound`
// (Services and ServiceEntries, field manager istio-ambient-service),
// `WaypointAccepted` (AuthorizationPolicies, istio-ambient-waypoint-policy)
// and `ZtunnelAccepted` (istio-ambient-ztunnel-policy); we never write
// those. Ours carry our own domain, are server-side applied with our own
// field manager, and say what this waypoint concluded: whether it serves
// the service, whether it enforces the policy.
const (
	ConditionDomain = "kgateway-waypoint.kgateway.dev"
	// ConditionWaypointBound is on Services and ServiceEntries that name
	// one of our waypoints: True when it serves them, else False with why.
	ConditionWaypointBound = ConditionDomain + "/WaypointBound"
	// ConditionWaypointAccepted is on AuthorizationPolicies that target
	// one of our waypoints or the services it serves, and on
	// DestinationRules our waypoints apply (which fields they honour).
	ConditionWaypointAccepted = ConditionDomain + "/WaypointAccepted"
	// FieldManager is the server-side apply field manager of these writes.
	FieldManager = "kgateway-waypoint-status"
	// IstioStatusField is where our conditions go in an Istio object's
	// status: `status.kgatewayWaypoint.conditions`. The Istio CRDs'
	// status.conditions is an atomic list for server-side apply (no
	// list-type in their schema), so whoever applies it last replaces
	// everyone's entries: istiod's forced apply would erase ours, ours
	// istiod's. Their status preserves unknown fields, so a field of our
	// own is kept, and owned by us alone, whatever istiod applies.
	IstioStatusField = "kgatewayWaypoint"
)

// ours maps a translator condition type (WaypointBound, WaypointAccepted)
// to our own condition type.
func ours(typ string) string { return ConditionDomain + "/" + typ }

func isOurs(typ string) bool { return strings.HasPrefix(typ, ConditionDomain+"/") }

// desiredConditions turns the translator's conditions for one object into
// metav1.Conditions of our types, sorted by type; a condition whose status
// is unchanged keeps its lastTransitionTime from cur.
func (w *Writer) desiredConditions(conds []translate.Condition, cur []metav1.Condition, gen int64) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range mergeSameType(conds) {
		typ := ours(c.Type)
		reason := c.Reason
		if reason == "" {
			reason = "Unknown"
		}
		mc := metav1.Condition{Type: typ, Status: c.Status, Reason: reason, Message: truncate(c.Message),
			ObservedGeneration: gen, LastTransitionTime: w.now()}
		for _, p := range cur {
			if p.Type == typ && p.Status == c.Status {
				mc.LastTransitionTime = p.LastTransitionTime
			}
		}
		out = append(out, mc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func sameConditions(a, b []metav1.Condition) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
			x.ObservedGeneration != y.ObservedGeneration || !x.LastTransitionTime.Equal(&y.LastTransitionTime) {
			return false
		}
	}
	return true
}

// applyStatus server-side applies body to obj's status subresource as
// FieldManager. Only the fields in body are ours: every other manager's
// (istiod's) stay as they are, and fields we applied before and left out
// now are removed.
func (w *Writer) applyStatus(ctx context.Context, obj client.Object, status map[string]any) (string, error) {
	gvk, err := apiutil.GVKForObject(obj, scheme.Scheme)
	if err != nil {
		return "", err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvk.GroupVersion().String(), "kind": gvk.Kind,
		"metadata": map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()},
		"status":   status,
	}}
	body, err := json.Marshal(u.Object)
	if err != nil {
		return "", err
	}
	err = w.Client.Status().Patch(ctx, u, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("status of %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return u.GetResourceVersion(), nil
}

func conditionsJSON(cs []metav1.Condition) []any {
	out := make([]any, 0, len(cs))
	for _, c := range cs {
		m, err := runtimeToMap(c)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

func runtimeToMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// service writes our WaypointBound condition on a Service: its
// status.conditions is a map keyed by type for server-side apply, so our
// entry and istiod's istio.io/WaypointBound live side by side. With no
// condition left (the Service no longer names our waypoint), our entry is
// removed.
func (w *Writer) service(ctx context.Context, svc *corev1.Service, conds []translate.Condition) error {
	var cur []metav1.Condition
	for _, c := range svc.Status.Conditions {
		if isOurs(c.Type) {
			cur = append(cur, c)
		}
	}
	sort.Slice(cur, func(i, j int) bool { return cur[i].Type < cur[j].Type })
	want := w.desiredConditions(conds, cur, svc.Generation)
	if sameConditions(cur, want) {
		return nil
	}
	st := map[string]any{}
	if len(want) > 0 {
		st["conditions"] = conditionsJSON(want)
	}
	_, err := w.applyStatus(ctx, svc, st)
	return err
}

// applied is what we last know of our conditions on an Istio object, as of
// its resourceVersion: the typed objects of the cache drop the fields of
// status Istio's types do not know, ours among them.
type applied struct {
	uid             types.UID
	resourceVersion string
	conditions      []metav1.Condition
}

// istio writes our conditions on an AuthorizationPolicy or a ServiceEntry,
// in status.kgatewayWaypoint (IstioStatusField), leaving status.conditions
// to istiod. With none left, our field is removed.
func (w *Writer) istio(ctx context.Context, obj client.Object, conds []translate.Condition) error {
	key := fmt.Sprintf("%T/%s/%s", obj, obj.GetNamespace(), obj.GetName())
	w.mu.Lock()
	memo, known := w.applied[key]
	w.mu.Unlock()
	if !known || memo.uid != obj.GetUID() || memo.resourceVersion != obj.GetResourceVersion() {
		// Changed since we last looked (or never looked): read our field.
		cur, rv, err := w.readIstio(ctx, obj)
		if err != nil {
			return err
		}
		memo = applied{uid: obj.GetUID(), resourceVersion: rv, conditions: cur}
	}
	want := w.desiredConditions(conds, memo.conditions, obj.GetGeneration())
	if !sameConditions(memo.conditions, want) {
		st := map[string]any{}
		if len(want) > 0 {
			st[IstioStatusField] = map[string]any{"conditions": conditionsJSON(want)}
		}
		rv, err := w.applyStatus(ctx, obj, st)
		if err != nil {
			return err
		}
		memo = applied{uid: obj.GetUID(), resourceVersion: rv, conditions: want}
	}
	w.mu.Lock()
	w.applied[key] = memo
	w.seen[key] = true
	w.mu.Unlock()
	return nil
}

// readIstio reads our conditions of an Istio object from the API server
// (status.kgatewayWaypoint.conditions).
func (w *Writer) readIstio(ctx context.Context, obj client.Object) ([]metav1.Condition, string, error) {
	gvk, err := apiutil.GVKForObject(obj, scheme.Scheme)
	if err != nil {
		return nil, "", err
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	r := w.Reader
	if r == nil {
		r = w.Client
	}
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, obj.GetResourceVersion(), nil
		}
		return nil, "", fmt.Errorf("reading %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	// Absent, or not a list (not ours to read): none.
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", IstioStatusField, "conditions")
	var cur []metav1.Condition
	for _, item := range raw {
		b, err := json.Marshal(item)
		if err != nil {
			continue
		}
		var c metav1.Condition
		if json.Unmarshal(b, &c) == nil && isOurs(c.Type) {
			cur = append(cur, c)
		}
	}
	sort.Slice(cur, func(i, j int) bool { return cur[i].Type < cur[j].Type })
	return cur, u.GetResourceVersion(), nil
}

// forgetUnseen drops what we remembered of Istio objects the last Write did
// not visit (deleted ones).
func (w *Writer) forgetUnseen() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.applied {
		if !w.seen[k] {
			delete(w.applied, k)
		}
	}
	w.seen = map[string]bool{}
}

// remembers reports whether we know of our conditions on obj.
func (w *Writer) remembers(obj client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.applied[fmt.Sprintf("%T/%s/%s", obj, obj.GetNamespace(), obj.GetName())]
	return ok
}
