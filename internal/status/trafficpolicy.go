package status

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// trafficPolicy rewrites this controller's entries of a kgateway
// TrafficPolicy's status.ancestors (one per waypoint Gateway the policy
// reaches, with kgateway's Accepted and Attached conditions, and
// PartiallyInvalid naming what the waypoint leaves out), leaving other
// controllers' entries (kgateway's own) alone. The ancestors list is
// atomic in kgateway's CRD (no list type), so a server-side apply would
// replace every controller's entries: like a route's parents, it is read,
// changed and written back with its resourceVersion.
func (w *Writer) trafficPolicy(ctx context.Context, p *kgw.TrafficPolicy, conds []translate.Condition) error {
	var refs []gwv1.ParentReference
	byRef := map[int][]translate.Condition{}
	for _, c := range conds {
		if c.Parent == nil {
			continue
		}
		i := -1
		for j, r := range refs {
			if equality.Semantic.DeepEqual(r, c.Parent.Ref) {
				i = j
			}
		}
		if i < 0 {
			i = len(refs)
			refs = append(refs, c.Parent.Ref)
		}
		byRef[i] = append(byRef[i], c)
	}
	st := &p.Status
	ours := false
	for _, a := range st.Ancestors {
		if a.ControllerName == w.ControllerName {
			ours = true
		}
	}
	if len(refs) == 0 && !ours {
		return nil
	}
	var want []gwv1.PolicyAncestorStatus
	for _, a := range st.Ancestors {
		if a.ControllerName != w.ControllerName {
			want = append(want, a)
		}
	}
	prevOf := func(ref gwv1.ParentReference) []metav1.Condition {
		for _, a := range st.Ancestors {
			if a.ControllerName == w.ControllerName && equality.Semantic.DeepEqual(a.AncestorRef, ref) {
				return a.Conditions
			}
		}
		return nil
	}
	for i, ref := range refs {
		cs := byRef[i]
		var conditions []metav1.Condition
		for _, c := range prevOf(ref) {
			if hasType(cs, c.Type) {
				conditions = append(conditions, c)
			}
		}
		for _, c := range mergeSameType(cs) {
			meta.SetStatusCondition(&conditions, metav1.Condition{Type: c.Type, Status: c.Status,
				Reason: c.Reason, Message: truncate(c.Message), ObservedGeneration: p.Generation, LastTransitionTime: w.now()})
		}
		want = append(want, gwv1.PolicyAncestorStatus{AncestorRef: ref, ControllerName: w.ControllerName, Conditions: conditions})
		if len(want) == 16 { // the API's limit
			break
		}
	}
	if equality.Semantic.DeepEqual(st.Ancestors, want) || (len(st.Ancestors) == 0 && len(want) == 0) {
		return nil
	}
	upd := p.DeepCopy()
	upd.Status.Ancestors = want
	return w.update(ctx, upd)
}
