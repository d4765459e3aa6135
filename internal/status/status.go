// Package status writes what the controller concluded onto the objects:
// GatewayClass and Gateway conditions, the Gateway's addresses and listener
// status, route parent status (only the parents this controller owns), and
// our own conditions on the objects istiod writes status on too (Services,
// ServiceEntries, AuthorizationPolicies: conditions.go). Gateway API
// writes start from the object's current status and are skipped when
// nothing changes, so our own writes cannot cause more writes; they carry
// the resourceVersion, so a concurrent writer makes the write fail (and the
// controller retries) rather than be overwritten. The writes on istiod's
// objects are server-side applies of our own fields only, with our own
// field manager, so istiod's entries and ours never replace each other.
package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// Waypoint is what the controller knows about one Gateway of our class.
type Waypoint struct {
	Gateway *gwv1.Gateway
	// Verdict is the listener rules' (translate.ValidateGateway, or the
	// translation's, which also counts the attached routes).
	Verdict translate.GatewayVerdict
	// Result is the translation (nil when it failed or the Gateway is not
	// accepted).
	Result *translate.Result
	// Outcome is the deployer's; Deployed is false until it has run.
	Outcome deployer.Outcome
	// Service is the waypoint's own Service, once it exists.
	Service *corev1.Service
	// Deployment is the waypoint's own Deployment, once it exists: the
	// Gateway is programmed, and its addresses published, only while it
	// has a ready replica.
	Deployment *appsv1.Deployment
}

// Writer writes status with one client.
type Writer struct {
	Client         client.Client
	ControllerName gwv1.GatewayController
	GatewayClass   string
	// ClusterDomain is the DNS suffix of Service names (cluster.local).
	ClusterDomain string
	// Reader reads Istio objects from the API server (our conditions in
	// their status are not in the typed cache); Client when nil.
	Reader client.Reader
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu      sync.Mutex
	applied map[string]applied // by Istio object, what we last know of our conditions
	seen    map[string]bool
}

// Write brings every status in line with the waypoints. It returns the
// joined errors of the writes that failed (conflicts included); the caller
// retries.
func (w *Writer) Write(ctx context.Context, snap *source.Snapshot, wps []Waypoint) error {
	var errs []error
	for _, gc := range snap.GatewayClasses {
		if gc.Name == w.GatewayClass && gc.Spec.ControllerName == w.ControllerName {
			errs = append(errs, w.gatewayClass(ctx, gc))
		}
	}
	for i := range wps {
		errs = append(errs, w.gateway(ctx, &wps[i]))
	}
	conds := map[string][]translate.Condition{} // by kind/ns/name
	for _, wp := range wps {
		if wp.Result == nil || !GatewayAccepted(&wp) {
			continue
		}
		bound := map[string]bool{}
		for _, c := range wp.Result.Conditions {
			k := c.Kind + "/" + c.Namespace + "/" + c.Name
			conds[k] = append(conds[k], c)
			if c.Type == "WaypointBound" {
				bound[k] = true
			}
		}
		if wp.Result.Waypoint == nil {
			continue
		}
		// The services this waypoint serves are bound to it: say so,
		// unless the translator said otherwise.
		for _, s := range wp.Result.Waypoint.Services {
			kind := "Service"
			if s.Kind != "" {
				kind = s.Kind
			}
			k := kind + "/" + s.Namespace + "/" + s.Name
			if bound[k] {
				continue
			}
			bound[k] = true
			conds[k] = append(conds[k], translate.Condition{Kind: kind, Namespace: s.Namespace, Name: s.Name,
				Type: "WaypointBound", Status: metav1.ConditionTrue, Reason: "Bound",
				Message: fmt.Sprintf("served by waypoint %s/%s (%s)", wp.Gateway.Namespace, wp.Gateway.Name, w.ControllerName)})
		}
	}
	for _, r := range snap.HTTPRoutes {
		errs = append(errs, w.route(ctx, r, &r.Status.RouteStatus, r.Spec.ParentRefs, conds["HTTPRoute/"+r.Namespace+"/"+r.Name]))
	}
	for _, r := range snap.GRPCRoutes {
		errs = append(errs, w.route(ctx, r, &r.Status.RouteStatus, r.Spec.ParentRefs, conds["GRPCRoute/"+r.Namespace+"/"+r.Name]))
	}
	for _, r := range snap.TCPRoutes {
		errs = append(errs, w.route(ctx, r, &r.Status.RouteStatus, r.Spec.ParentRefs, conds["TCPRoute/"+r.Namespace+"/"+r.Name]))
	}
	// --- kgateway TrafficPolicy (begin) ---
	for _, p := range snap.TrafficPolicies {
		errs = append(errs, w.trafficPolicy(ctx, p, conds[translate.KindTrafficPolicy+"/"+p.Namespace+"/"+p.Name]))
	}
	// --- kgateway TrafficPolicy (end) ---
	for _, s := range snap.Services {
		errs = append(errs, w.service(ctx, s, onlyType(conds["Service/"+s.Namespace+"/"+s.Name], "WaypointBound", translate.ConditionLoadBalancing)))
	}
	w.mu.Lock()
	if w.applied == nil {
		w.applied, w.seen = map[string]applied{}, map[string]bool{}
	}
	w.mu.Unlock()
	for _, se := range snap.ServiceEntries {
		errs = append(errs, w.istio(ctx, se, onlyType(conds["ServiceEntry/"+se.Namespace+"/"+se.Name], "WaypointBound")))
	}
	for _, p := range snap.AuthorizationPolicies {
		if len(p.Spec.GetTargetRefs()) == 0 && p.Spec.GetTargetRef() == nil && !w.remembers(p) {
			continue // not a waypoint policy, and none we wrote on
		}
		errs = append(errs, w.istio(ctx, p, onlyType(conds["AuthorizationPolicy/"+p.Namespace+"/"+p.Name], "WaypointAccepted")))
	}
	// --- Telemetry API (telemetry branch) ---
	for _, tm := range snap.Telemetries {
		c := conds["Telemetry/"+tm.Namespace+"/"+tm.Name]
		if len(c) == 0 && !w.remembers(tm) {
			continue // not about a waypoint, and none we wrote on
		}
		errs = append(errs, w.istio(ctx, tm, onlyType(c, "WaypointAccepted")))
	}
	// --- end Telemetry API ---
	// --- DestinationRule (issue 15, branch dr) ---
	for _, dr := range snap.DestinationRules {
		k := "DestinationRule/" + dr.Namespace + "/" + dr.Name
		if len(conds[k]) == 0 && !w.remembers(dr) {
			continue // not applied by any of our waypoints, and none we wrote on
		}
		errs = append(errs, w.istio(ctx, dr, onlyType(conds[k], "WaypointAccepted")))
	}
	// --- end DestinationRule ---
	w.forgetUnseen()
	return errors.Join(errs...)
}

func (w *Writer) now() metav1.Time {
	if w.Now != nil {
		return metav1.NewTime(w.Now().Truncate(time.Second))
	}
	return metav1.NewTime(time.Now().Truncate(time.Second))
}

// update writes obj's status; a conflict or a vanished object is reported
// as such so the caller retries with a fresher view.
func (w *Writer) update(ctx context.Context, obj client.Object) error {
	err := w.Client.Status().Update(ctx, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status of %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

func (w *Writer) gatewayClass(ctx context.Context, gc *gwv1.GatewayClass) error {
	upd := gc.DeepCopy()
	meta.SetStatusCondition(&upd.Status.Conditions, metav1.Condition{
		Type: string(gwv1.GatewayClassConditionStatusAccepted), Status: metav1.ConditionTrue,
		Reason: string(gwv1.GatewayClassReasonAccepted), Message: "kgateway-waypoint runs the waypoints of this class",
		ObservedGeneration: gc.Generation, LastTransitionTime: w.now(),
	})
	if equality.Semantic.DeepEqual(gc.Status, upd.Status) {
		return nil
	}
	return w.update(ctx, upd)
}

// GatewayAccepted reports whether the waypoint's listeners and parameters
// are valid: only then is it deployed, addressed and configured.
func GatewayAccepted(wp *Waypoint) bool {
	return wp.Verdict.IsAccepted() && wp.Outcome.ParametersError == ""
}

func (w *Writer) gateway(ctx context.Context, wp *Waypoint) error {
	gw := wp.Gateway
	upd := gw.DeepCopy()
	gen := gw.Generation
	v := wp.Verdict.Accepted
	accepted := metav1.Condition{Type: string(gwv1.GatewayConditionAccepted), ObservedGeneration: gen, LastTransitionTime: w.now()}
	programmed := metav1.Condition{Type: string(gwv1.GatewayConditionProgrammed), ObservedGeneration: gen, LastTransitionTime: w.now()}
	var addrs []gwv1.GatewayStatusAddress
	switch {
	case !wp.Verdict.IsAccepted():
		accepted.Status, accepted.Reason, accepted.Message = v.Status, v.Reason, v.Message
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "the Gateway is not accepted"
	case wp.Outcome.ParametersError != "":
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalidParameters), wp.Outcome.ParametersError
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "the Gateway is not accepted"
	default:
		accepted.Status, accepted.Reason, accepted.Message = v.Status, v.Reason, v.Message
		if accepted.Message == "" {
			accepted.Message = "the waypoint is deployed by kgateway-waypoint"
		}
		addrs = w.addresses(wp.Service)
		ready, replicas := readyReplicas(wp.Deployment)
		switch {
		case wp.Outcome.Error != "":
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonPending), "deploying: "+wp.Outcome.Error
		case !wp.Outcome.Deployed || wp.Outcome.Generation != gen:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonPending), "waiting for the deployer"
		case len(addrs) == 0:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonAddressNotAssigned), "waiting for the waypoint Service's cluster IP"
		case ready == 0:
			programmed.Status, programmed.Reason = metav1.ConditionFalse, ReasonNoReadyReplicas
			programmed.Message = fmt.Sprintf("the waypoint Deployment %s/%s has no ready replica (%d of %d ready)", gw.Namespace, gw.Name, ready, replicas)
			if len(gw.Status.Addresses) == 0 {
				programmed.Message += "; the addresses are published once one is ready"
			} else {
				programmed.Message += "; the addresses stay published, so the traffic istiod sends here fails until one is ready"
			}
		default:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionTrue, string(gwv1.GatewayReasonProgrammed), "the waypoint's proxies get their configuration over xDS"
		}
		// istiod steers the services' traffic to the waypoint as soon as
		// the Gateway has addresses, so they are published only once the
		// Deployment has a ready replica. Once published they stay while
		// the Gateway is accepted, as istiod expects ("should never be
		// removed after going ready", ambient/waypoints.go): taking them
		// away would make istiod send the traffic around the waypoint,
		// past its policies, rather than fail while it has no ready pod.
		if ready == 0 && len(gw.Status.Addresses) == 0 {
			addrs = nil
		}
	}
	meta.SetStatusCondition(&upd.Status.Conditions, accepted)
	meta.SetStatusCondition(&upd.Status.Conditions, programmed)
	if un := wp.Outcome.ParametersUnsupported; un != "" && GatewayAccepted(wp) {
		meta.SetStatusCondition(&upd.Status.Conditions, metav1.Condition{
			Type: ConditionUnsupportedParameters, Status: metav1.ConditionTrue, Reason: ReasonUnsupportedFields,
			Message:            "the waypoint does not implement these GatewayParameters fields (the rest is deployed): " + un,
			ObservedGeneration: gen, LastTransitionTime: w.now(),
		})
	} else {
		meta.RemoveStatusCondition(&upd.Status.Conditions, ConditionUnsupportedParameters)
	}
	upd.Status.Addresses = addrs
	upd.Status.Listeners = w.listeners(wp, programmed.Status == metav1.ConditionTrue, gw.Status.Listeners)
	if equality.Semantic.DeepEqual(gw.Status, upd.Status) {
		return nil
	}
	return w.update(ctx, upd)
}

// ConditionUnsupportedParameters is on a Gateway whose kgateway
// GatewayParameters set fields the waypoint does not implement (named in
// the message, reason ReasonUnsupportedFields); absent when there are none.
const (
	ConditionUnsupportedParameters = ConditionDomain + "/UnsupportedParameters"
	ReasonUnsupportedFields        = "UnsupportedFields"
)

// ReasonNoReadyReplicas is the Gateway's Programmed=False reason while the
// waypoint Deployment has no ready replica.
const ReasonNoReadyReplicas = "NoReadyReplicas"

// readyReplicas are the Deployment's ready and desired replicas.
func readyReplicas(d *appsv1.Deployment) (ready, desired int32) {
	if d == nil {
		return 0, 0
	}
	desired = 1
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	return d.Status.ReadyReplicas, desired
}

// addresses are the Service's FQDN (istiod and ztunnel prefer it) and its
// cluster IPs.
func (w *Writer) addresses(svc *corev1.Service) []gwv1.GatewayStatusAddress {
	if svc == nil || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	domain := w.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	host, ip := gwv1.HostnameAddressType, gwv1.IPAddressType
	out := []gwv1.GatewayStatusAddress{{Type: &host, Value: svc.Name + "." + svc.Namespace + ".svc." + domain}}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, a := range ips {
		out = append(out, gwv1.GatewayStatusAddress{Type: &ip, Value: a})
	}
	return out
}

// listeners writes each listener's status from the verdict: Accepted,
// ResolvedRefs and Conflicted as the listener rules concluded, Programmed
// when the listener is accepted and the waypoint programmed, the
// supported kinds and the routes attached through it.
func (w *Writer) listeners(wp *Waypoint, programmed bool, old []gwv1.ListenerStatus) []gwv1.ListenerStatus {
	gw := wp.Gateway
	prev := map[gwv1.SectionName][]metav1.Condition{}
	for _, l := range old {
		prev[l.Name] = l.Conditions
	}
	// The verdict has the Gateway's listeners, in spec order.
	var out []gwv1.ListenerStatus
	for i := range wp.Verdict.Listeners {
		lv := &wp.Verdict.Listeners[i]
		conds := append([]metav1.Condition(nil), prev[lv.Name]...)
		set := func(typ gwv1.ListenerConditionType, v translate.Verdict) {
			meta.SetStatusCondition(&conds, metav1.Condition{Type: string(typ), Status: v.Status, Reason: v.Reason, Message: truncate(v.Message),
				ObservedGeneration: gw.Generation, LastTransitionTime: w.now()})
		}
		set(gwv1.ListenerConditionAccepted, lv.Accepted)
		switch {
		case lv.Accepted.Status != metav1.ConditionTrue:
			set(gwv1.ListenerConditionProgrammed, translate.Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.ListenerReasonInvalid), Message: "the listener is not accepted"})
		case programmed:
			set(gwv1.ListenerConditionProgrammed, translate.Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.ListenerReasonProgrammed)})
		default:
			set(gwv1.ListenerConditionProgrammed, translate.Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.ListenerReasonPending), Message: "the waypoint is not programmed yet"})
		}
		set(gwv1.ListenerConditionResolvedRefs, lv.ResolvedRefs)
		set(gwv1.ListenerConditionConflicted, lv.Conflicted)
		kinds := lv.SupportedKinds
		if kinds == nil {
			kinds = []gwv1.RouteGroupKind{}
		}
		out = append(out, gwv1.ListenerStatus{Name: lv.Name, SupportedKinds: kinds, AttachedRoutes: lv.AttachedRoutes, Conditions: conds})
	}
	return out
}

// route rewrites this controller's entries of a route's status.parents from
// the translator's conditions, leaving other controllers' entries alone.
func (w *Writer) route(ctx context.Context, obj client.Object, st *gwv1.RouteStatus, refs []gwv1.ParentReference, conds []translate.Condition) error {
	byParent := map[int][]translate.Condition{} // by index into refs
	for _, c := range conds {
		if c.Parent != nil {
			byParent[c.Parent.Index] = append(byParent[c.Parent.Index], c)
		}
	}
	ours := false
	for _, p := range st.Parents {
		if p.ControllerName == w.ControllerName {
			ours = true
		}
	}
	if len(byParent) == 0 && !ours {
		return nil
	}
	var want []gwv1.RouteParentStatus
	prevOf := func(pr gwv1.ParentReference) []metav1.Condition {
		for _, p := range st.Parents {
			if p.ControllerName == w.ControllerName && equality.Semantic.DeepEqual(p.ParentRef, pr) {
				return p.Conditions
			}
		}
		return nil
	}
	for _, p := range st.Parents {
		if p.ControllerName != w.ControllerName {
			want = append(want, p)
		}
	}
	for i, pr := range refs {
		cs := byParent[i]
		if len(cs) == 0 {
			continue
		}
		conditions := append([]metav1.Condition(nil), prevOf(pr)...)
		// Drop condition types we no longer report (PartiallyInvalid).
		kept := conditions[:0]
		for _, c := range conditions {
			if hasType(cs, c.Type) {
				kept = append(kept, c)
			}
		}
		conditions = kept
		for _, c := range mergeSameType(cs) {
			meta.SetStatusCondition(&conditions, metav1.Condition{Type: c.Type, Status: c.Status,
				Reason: c.Reason, Message: truncate(c.Message), ObservedGeneration: obj.GetGeneration(), LastTransitionTime: w.now()})
		}
		want = append(want, gwv1.RouteParentStatus{ParentRef: pr, ControllerName: w.ControllerName, Conditions: conditions})
		if len(want) == 32 { // the API's limit
			break
		}
	}
	if equality.Semantic.DeepEqual(st.Parents, want) || (len(st.Parents) == 0 && len(want) == 0) {
		return nil
	}
	upd := obj.DeepCopyObject().(client.Object)
	switch u := upd.(type) {
	case *gwv1.HTTPRoute:
		u.Status.Parents = want
	case *gwv1.GRPCRoute:
		u.Status.Parents = want
	case *gwv1.TCPRoute:
		u.Status.Parents = want
	}
	return w.update(ctx, upd)
}

func hasType(cs []translate.Condition, typ string) bool {
	for _, c := range cs {
		if c.Type == typ {
			return true
		}
	}
	return false
}

// mergeSameType folds conditions of one type (for one parentRef, or one
// policy, from several waypoints): False wins.
func mergeSameType(cs []translate.Condition) []translate.Condition {
	var out []translate.Condition
	idx := map[string]int{}
	for _, c := range cs {
		i, ok := idx[c.Type]
		if !ok {
			idx[c.Type] = len(out)
			out = append(out, c)
			continue
		}
		if out[i].Status == "True" && c.Status != "True" {
			out[i] = c
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// truncate keeps messages within metav1.Condition's 32768 bytes.
func truncate(s string) string {
	if len(s) > 32000 {
		return s[:32000] + "..."
	}
	return s
}

// onlyType keeps the conditions of one type.
func onlyType(cs []translate.Condition, types ...string) []translate.Condition {
	var out []translate.Condition
	for _, c := range cs {
		if slices.Contains(types, c.Type) {
			out = append(out, c)
		}
	}
	return out
}
