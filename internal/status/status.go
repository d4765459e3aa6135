// Package status writes what the controller concluded onto the objects:
// GatewayClass and Gateway conditions, the Gateway's addresses and listener
// status, route parent status (only the parents this controller owns) and
// AuthorizationPolicy binding conditions. Every write starts from the
// object's current status and is skipped when nothing changes, so our own
// writes cannot cause more writes; updates carry the resourceVersion, so a
// concurrent writer makes the write fail (and the controller retries) rather
// than be overwritten.
package status

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1alpha1 "istio.io/api/meta/v1alpha1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
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
	// Result is the translation (nil when it failed).
	Result *translate.Result
	// Outcome is the deployer's; Deployed is false until it has run.
	Outcome deployer.Outcome
	// Service is the waypoint's own Service, once it exists.
	Service *corev1.Service
}

// Writer writes status with one client.
type Writer struct {
	Client         client.Client
	ControllerName gwv1.GatewayController
	GatewayClass   string
	// ClusterDomain is the DNS suffix of Service names (cluster.local).
	ClusterDomain string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
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
	refs := routeRefIndex(snap)
	for i := range wps {
		errs = append(errs, w.gateway(ctx, &wps[i], refs))
	}
	conds := map[string][]translate.Condition{} // by kind/ns/name
	for _, wp := range wps {
		if wp.Result == nil || !GatewayAccepted(&wp) {
			continue
		}
		for _, c := range wp.Result.Conditions {
			k := c.Kind + "/" + c.Namespace + "/" + c.Name
			conds[k] = append(conds[k], c)
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
	for _, p := range snap.AuthorizationPolicies {
		errs = append(errs, w.policy(ctx, p, conds["AuthorizationPolicy/"+p.Namespace+"/"+p.Name]))
	}
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
	return deployer.ValidateListeners(wp.Gateway).Message == "" && wp.Outcome.ParametersError == ""
}

// refLookup finds a route's parentRefs by kind, namespace and name.
type refLookup func(kind, ns, name string) []gwv1.ParentReference

func routeRefIndex(snap *source.Snapshot) refLookup {
	idx := map[string][]gwv1.ParentReference{}
	for _, r := range snap.HTTPRoutes {
		idx["HTTPRoute/"+r.Namespace+"/"+r.Name] = r.Spec.ParentRefs
	}
	for _, r := range snap.GRPCRoutes {
		idx["GRPCRoute/"+r.Namespace+"/"+r.Name] = r.Spec.ParentRefs
	}
	for _, r := range snap.TCPRoutes {
		idx["TCPRoute/"+r.Namespace+"/"+r.Name] = r.Spec.ParentRefs
	}
	return func(kind, ns, name string) []gwv1.ParentReference { return idx[kind+"/"+ns+"/"+name] }
}

func (w *Writer) gateway(ctx context.Context, wp *Waypoint, refs refLookup) error {
	gw := wp.Gateway
	upd := gw.DeepCopy()
	gen := gw.Generation
	lv := deployer.ValidateListeners(gw)
	accepted := metav1.Condition{Type: string(gwv1.GatewayConditionAccepted), ObservedGeneration: gen, LastTransitionTime: w.now()}
	programmed := metav1.Condition{Type: string(gwv1.GatewayConditionProgrammed), ObservedGeneration: gen, LastTransitionTime: w.now()}
	var addrs []gwv1.GatewayStatusAddress
	switch {
	case lv.Message != "":
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonListenersNotValid), lv.Message
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "the Gateway is not accepted"
	case wp.Outcome.ParametersError != "":
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalidParameters), wp.Outcome.ParametersError
		programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonInvalid), "the Gateway is not accepted"
	default:
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionTrue, string(gwv1.GatewayReasonAccepted), "the waypoint is deployed by kgateway-waypoint"
		addrs = w.addresses(wp.Service)
		switch {
		case wp.Outcome.Error != "":
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonPending), "deploying: "+wp.Outcome.Error
		case !wp.Outcome.Deployed || wp.Outcome.Generation != gen:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonPending), "waiting for the deployer"
		case len(addrs) == 0:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionFalse, string(gwv1.GatewayReasonAddressNotAssigned), "waiting for the waypoint Service's cluster IP"
		default:
			programmed.Status, programmed.Reason, programmed.Message = metav1.ConditionTrue, string(gwv1.GatewayReasonProgrammed), "the waypoint's proxies get their configuration over xDS"
		}
	}
	meta.SetStatusCondition(&upd.Status.Conditions, accepted)
	meta.SetStatusCondition(&upd.Status.Conditions, programmed)
	upd.Status.Addresses = addrs
	upd.Status.Listeners = w.listeners(wp, lv, programmed.Status == metav1.ConditionTrue, gw.Status.Listeners, refs)
	if equality.Semantic.DeepEqual(gw.Status, upd.Status) {
		return nil
	}
	return w.update(ctx, upd)
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

// listeners computes each listener's status. attachedRoutes counts the
// routes accepted by this waypoint (through a Service it serves or through
// the Gateway itself; a Gateway parentRef with a sectionName or port counts
// only on that listener).
func (w *Writer) listeners(wp *Waypoint, lv deployer.ListenerValidation, programmed bool, old []gwv1.ListenerStatus, refs refLookup) []gwv1.ListenerStatus {
	gw := wp.Gateway
	if len(gw.Spec.Listeners) == 0 {
		return nil
	}
	counts := attachedRoutes(wp, refs)
	prev := map[gwv1.SectionName][]metav1.Condition{}
	for _, l := range old {
		prev[l.Name] = l.Conditions
	}
	group := gwv1.Group(gwv1.GroupName)
	var out []gwv1.ListenerStatus
	for _, l := range gw.Spec.Listeners {
		conds := append([]metav1.Condition(nil), prev[l.Name]...)
		set := func(typ string, ok bool, reason, msg string) {
			st := metav1.ConditionTrue
			if !ok {
				st = metav1.ConditionFalse
			}
			meta.SetStatusCondition(&conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg,
				ObservedGeneration: gw.Generation, LastTransitionTime: w.now()})
		}
		ls := gwv1.ListenerStatus{Name: l.Name}
		if bad, isBad := lv.Invalid[l.Name]; isBad {
			set(string(gwv1.ListenerConditionAccepted), false, bad[0], bad[1])
			set(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), "the listener is not accepted")
			ls.SupportedKinds = []gwv1.RouteGroupKind{}
		} else {
			set(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "")
			if programmed {
				set(string(gwv1.ListenerConditionProgrammed), true, string(gwv1.ListenerReasonProgrammed), "")
			} else {
				set(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonPending), "the waypoint is not programmed yet")
			}
			ls.SupportedKinds = []gwv1.RouteGroupKind{{Group: &group, Kind: "HTTPRoute"}, {Group: &group, Kind: "GRPCRoute"}, {Group: &group, Kind: "TCPRoute"}}
			ls.AttachedRoutes = counts(l)
		}
		set(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "")
		set(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "")
		ls.Conditions = conds
		out = append(out, ls)
	}
	return out
}

// attachedRoutes returns a per-listener counter of the distinct routes
// the waypoint accepted.
func attachedRoutes(wp *Waypoint, refs refLookup) func(gwv1.Listener) int32 {
	type route struct{ kind, ns, name string }
	viaService := map[route]bool{}
	viaGateway := map[route]bool{}
	if wp.Result != nil {
		gwParent := "Gateway " + wp.Gateway.Namespace + "/" + wp.Gateway.Name
		for _, c := range wp.Result.Conditions {
			if c.Type != "Accepted" || c.Status != "True" || c.Parent == "" || c.Kind == "AuthorizationPolicy" {
				continue
			}
			r := route{c.Kind, c.Namespace, c.Name}
			if c.Parent == gwParent || strings.HasPrefix(c.Parent, gwParent+":") || strings.HasPrefix(c.Parent, gwParent+"#") {
				viaGateway[r] = true
			} else {
				viaService[r] = true
			}
		}
	}
	return func(l gwv1.Listener) int32 {
		seen := map[route]bool{}
		for r := range viaService {
			seen[r] = true
		}
		for r := range viaGateway {
			if seen[r] {
				continue
			}
			// A Gateway parentRef names a listener by sectionName or port,
			// or all of them.
			for _, pr := range refs(r.kind, r.ns, r.name) {
				if isGatewayRef(pr, r.ns, wp.Gateway) &&
					(pr.SectionName == nil || *pr.SectionName == l.Name) && (pr.Port == nil || *pr.Port == l.Port) {
					seen[r] = true
					break
				}
			}
		}
		return int32(len(seen))
	}
}

func isGatewayRef(pr gwv1.ParentReference, routeNS string, gw *gwv1.Gateway) bool {
	g, k, ns := parentGKN(pr, routeNS)
	return g == gwv1.GroupName && k == "Gateway" && ns == gw.Namespace && string(pr.Name) == gw.Name
}

// parentGKN is a parentRef's group, kind and namespace with the defaults.
func parentGKN(pr gwv1.ParentReference, routeNS string) (string, string, string) {
	g, k, ns := gwv1.GroupName, "Gateway", routeNS
	if pr.Group != nil {
		g = string(*pr.Group)
	}
	if pr.Kind != nil {
		k = string(*pr.Kind)
	}
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	if g == "core" {
		g = ""
	}
	return g, k, ns
}

// parentName is the translator's name for a parentRef.
func parentName(pr gwv1.ParentReference, routeNS string) string {
	return translate.ParentName(pr, routeNS)
}

// route rewrites this controller's entries of a route's status.parents from
// the translator's conditions, leaving other controllers' entries alone.
func (w *Writer) route(ctx context.Context, obj client.Object, st *gwv1.RouteStatus, refs []gwv1.ParentReference, conds []translate.Condition) error {
	byParent := map[string][]translate.Condition{}
	for _, c := range conds {
		byParent[c.Parent] = append(byParent[c.Parent], c)
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
	for _, pr := range refs {
		cs := byParent[parentName(pr, obj.GetNamespace())]
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
			meta.SetStatusCondition(&conditions, metav1.Condition{Type: c.Type, Status: metav1.ConditionStatus(c.Status),
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

// mergeSameType folds conditions of one type for one parent name (two
// parentRefs to the same Service on different ports): False wins.
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

// policy merges the translator's condition types into an
// AuthorizationPolicy's Istio status conditions.
func (w *Writer) policy(ctx context.Context, p *istiosec.AuthorizationPolicy, conds []translate.Condition) error {
	if len(conds) == 0 {
		return nil
	}
	merged := mergeSameType(conds)
	upd := p.DeepCopy()
	changed := false
	for _, c := range merged {
		var cur *metav1alpha1.IstioCondition
		for _, ic := range upd.Status.Conditions {
			if ic.Type == c.Type {
				cur = ic
			}
		}
		msg := c.Message
		if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason && cur.Message == msg && cur.ObservedGeneration == p.Generation {
			continue
		}
		changed = true
		now := timestamppb.New(w.now().Time)
		if cur == nil {
			cur = &metav1alpha1.IstioCondition{Type: c.Type, LastTransitionTime: now}
			upd.Status.Conditions = append(upd.Status.Conditions, cur)
		} else if cur.Status != c.Status {
			cur.LastTransitionTime = now
		}
		cur.Status, cur.Reason, cur.Message, cur.ObservedGeneration = c.Status, c.Reason, msg, p.Generation
	}
	if !changed {
		return nil
	}
	return w.update(ctx, upd)
}
