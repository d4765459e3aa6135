package translate

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The weighted waypoint canary of Istio 1.31: a Service (or ServiceEntry,
// or their namespace) names a primary waypoint (istio.io/use-waypoint) and
// a canary one (istio.io/use-waypoint-canary, in the namespace of
// istio.io/use-waypoint-canary-namespace, default the object's), and
// istio.io/use-waypoint-canary-weight (an annotation, an integer 0 to 100,
// default 0) is the share of new connections ztunnel sends to the canary.
// istiod does the split (the workload API's weighted waypoints); each
// waypoint only has to serve the service. So this Gateway serves a
// service that names it as its canary, as it serves one that names it as
// its waypoint, when istiod would send it traffic (pilot's ambient
// ResolveUseWaypointCanary and buildWeightedWaypoints):
//
//   - the canary is read from the level that names the primary: the
//     namespace's canary labels and weight count only when the object
//     sets no istio.io/use-waypoint of its own ("none" included: then it
//     has no waypoint at all);
//   - "" and "none" name no canary;
//   - a weight that is not an integer in [0, 100] cancels the canary;
//   - a canary equal to the primary is the primary;
//   - the primary must exist (a Gateway in the snapshot, of any class).
//
// Whether the Gateway admits the namespace and takes service traffic is
// checked as for a primary.
const (
	LabelUseWaypointCanary            = "istio.io/use-waypoint-canary"
	LabelUseWaypointCanaryNamespace   = "istio.io/use-waypoint-canary-namespace"
	AnnotationUseWaypointCanaryWeight = "istio.io/use-waypoint-canary-weight"
)

// captureCanary re-decides an object that the capture rules found not to
// name this Gateway as its waypoint (r): CaptureBound when it names it as
// its canary and the Gateway would take it as its primary (namespace
// admitted, service traffic), as istiod's resolveCanaryWaypoint checks;
// else r, with a Condition when a canary naming this Gateway is refused.
func (t *translator) captureCanary(kind string, o *metav1.ObjectMeta, r CaptureReason) (CaptureReason, *Condition) {
	if r != CaptureOtherWaypoint && r != CaptureNoWaypoint {
		return r, nil
	}
	ok, why := t.canaryCheck(kind, o)
	switch {
	case !ok:
		return r, why
	case !t.capture.admits(o.Namespace):
		return CaptureNotAllowed, nil
	case !t.capture.takes(trafficKindService):
		return CaptureUnsupportedTrafficType, nil
	}
	return CaptureBound, nil
}

// canaryCheck reports whether this Gateway is the canary waypoint of an
// object (kind "Service" or "ServiceEntry"). A Condition (not nil) says
// why a canary naming this Gateway is not served. Whether the Gateway
// admits the object's namespace and takes service traffic is
// captureCanary's to check, as for a primary.
func (t *translator) canaryCheck(kind string, o *metav1.ObjectMeta) (bool, *Condition) {
	pns, pname, primaryOK := t.primaryWaypoint(o)
	labels, annotations := o.Labels, o.Annotations
	if _, own := o.Labels[LabelUseWaypoint]; !own {
		if ns := t.namespaces[o.Namespace]; ns != nil {
			if _, declared := o.Labels[LabelUseWaypointCanary]; !declared {
				if _, nsDeclared := ns.Labels[LabelUseWaypointCanary]; nsDeclared {
					labels = ns.Labels
				}
			}
			if _, ok := o.Annotations[AnnotationUseWaypointCanaryWeight]; !ok {
				annotations = ns.Annotations
			}
		}
	}
	name := labels[LabelUseWaypointCanary]
	if name == "" || name == "none" {
		return false, nil
	}
	ns := o.Namespace
	if v, ok := labels[LabelUseWaypointCanaryNamespace]; ok {
		ns = v
	}
	if ns != t.gw.Namespace || name != t.gw.Name {
		return false, nil
	}
	refuse := func(reason, msg string) (bool, *Condition) {
		return false, &Condition{Kind: kind, Namespace: o.Namespace, Name: o.Name, Type: "WaypointBound",
			Status: "False", Reason: reason, Message: msg}
	}
	if !primaryOK {
		return refuse("NoPrimaryWaypoint", fmt.Sprintf("names waypoint %s/%s as its canary but has no istio.io/use-waypoint: a canary needs a primary waypoint", ns, name))
	}
	if pns == ns && pname == name {
		return false, nil // the primary: served as such
	}
	if v, ok := annotations[AnnotationUseWaypointCanaryWeight]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 100 {
			return refuse("CanaryInvalidWeight", fmt.Sprintf("%s %q is not an integer in [0,100], so istiod ignores the canary waypoint %s/%s", AnnotationUseWaypointCanaryWeight, v, ns, name))
		}
	}
	for _, g := range t.snap.Gateways {
		if g.Namespace == pns && g.Name == pname {
			return true, nil
		}
	}
	return refuse("NoPrimaryWaypoint", fmt.Sprintf("names waypoint %s/%s as its canary, but its primary waypoint %s/%s does not exist", ns, name, pns, pname))
}

// primaryWaypoint is the object's istio.io/use-waypoint (and
// -namespace), else its namespace's, as istiod's fetchWaypointForTarget
// reads them: "none" on the object means none.
func (t *translator) primaryWaypoint(o *metav1.ObjectMeta) (ns, name string, ok bool) {
	labels := o.Labels
	if _, own := labels[LabelUseWaypoint]; !own {
		n := t.namespaces[o.Namespace]
		if n == nil {
			return "", "", false
		}
		labels = n.Labels
	}
	name = labels[LabelUseWaypoint]
	if name == "" || name == "none" {
		return "", "", false
	}
	ns = o.Namespace
	if v, ok := labels[LabelUseWaypointNamespace]; ok {
		ns = v
	}
	return ns, name, true
}
