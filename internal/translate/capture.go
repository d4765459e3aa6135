package translate

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The capture rules: which Services, ServiceEntries, Pods, WorkloadEntries
// and ServiceEntry endpoints send their traffic to this waypoint. istiod
// decides it (pilot/pkg/serviceregistry/kube/controller/ambient,
// waypoints.go fetchWaypointForTarget, fetchWaypointForService,
// fetchWaypointForWorkload, fetchWaypointForInstance) and tells ztunnel;
// the waypoint must serve exactly what istiod sends it, so the rules here
// follow istiod's, in istiod's order:
//
//  1. A Service labelled gateway.istio.io/managed=istio.io-mesh-controller
//     (a waypoint's own Service), and a Pod or WorkloadEntry that is an
//     instance of a waypoint (its gateway.networking.k8s.io/gateway-name
//     names a waypoint Gateway of its namespace), get no waypoint.
//  2. The object's own istio.io/use-waypoint label decides when it is set:
//     "none" opts out; another name is that waypoint, in the namespace of
//     the object's istio.io/use-waypoint-namespace label (default: the
//     object's namespace). The namespace's label is then not looked at,
//     even when the object names a waypoint that is not this one.
//  3. Else the Namespace's istio.io/use-waypoint (with the Namespace's own
//     istio.io/use-waypoint-namespace) decides, "none" being no waypoint.
//  4. The waypoint must admit the object's namespace: the
//     allowedRoutes.namespaces of the listener the inbound binding names
//     (ambient.istio.io/waypoint-inbound-binding on the Gateway, else its
//     GatewayClass: the listener of its port, or the istio.io/PROXY one),
//     else of the {HBONE, 15008} listener, else Same. From Same, and None
//     (which istiod treats as Same), admit the Gateway's namespace only.
//  5. The waypoint's istio.io/waypoint-for (the Gateway's label, else its
//     GatewayClass's, default service) must take the traffic: service or
//     all for Services and ServiceEntries, workload or all for Pods,
//     WorkloadEntries and ServiceEntry endpoints.

// Labels and values of the capture rules.
const (
	LabelGatewayName          = "gateway.networking.k8s.io/gateway-name"
	LabelGatewayManaged       = "gateway.istio.io/managed"
	ManagedMeshController     = "istio.io-mesh-controller"
	LabelIngressUseWaypoint   = "istio.io/ingress-use-waypoint"
	AnnotationInboundBinding  = "ambient.istio.io/waypoint-inbound-binding"
	defaultInboundBinding     = "PROXY/15088" // what our controller puts on our GatewayClass
	waypointNone              = "none"
	TrafficService            = "service"
	TrafficWorkload           = "workload"
	TrafficAll                = "all"
	TrafficNone               = "none"
	trafficKindService        = TrafficService
	trafficKindWorkload       = TrafficWorkload
	annotationAmbientRedirect = "ambient.istio.io/redirection"
)

// CaptureReason is the outcome of the capture rules for one object.
type CaptureReason string

const (
	// CaptureBound: the object's traffic comes to this waypoint.
	CaptureBound CaptureReason = "Bound"
	// CaptureNoWaypoint: neither the object nor its namespace names a waypoint.
	CaptureNoWaypoint CaptureReason = "NoWaypoint"
	// CaptureOptedOut: the object (or, without a label of its own, its
	// namespace) says istio.io/use-waypoint: none.
	CaptureOptedOut CaptureReason = "OptedOut"
	// CaptureOtherWaypoint: the label names another waypoint.
	CaptureOtherWaypoint CaptureReason = "OtherWaypoint"
	// CaptureNotAllowed: this waypoint's listener does not admit the
	// object's namespace.
	CaptureNotAllowed CaptureReason = "NotAllowed"
	// CaptureUnsupportedTrafficType: this waypoint's istio.io/waypoint-for
	// does not take this kind of traffic.
	CaptureUnsupportedTrafficType CaptureReason = "UnsupportedTrafficType"
	// CaptureWaypointInstance: the object is a waypoint itself.
	CaptureWaypointInstance CaptureReason = "WaypointInstance"
)

// capturer applies the capture rules for one waypoint Gateway. It only
// reads: one is shared by the goroutines that translate services.
type capturer struct {
	gwNS, gwName string
	// traffic is the waypoint's istio.io/waypoint-for, as written (""
	// when neither the Gateway nor its class says: service).
	traffic string
	// from and selector are the admitting listener's allowedRoutes.namespaces.
	from     gwv1.FromNamespaces
	selector labels.Selector
	// namespaceLabels gives a namespace's labels (nil when unknown).
	namespaceLabels func(ns string) map[string]string
	// isWaypoint reports whether a Gateway (namespace, name) is a waypoint
	// a pod can be an instance of.
	isWaypoint func(ns, name string) bool
}

// newCapturer builds the capture rules of gw, whose class is gc (nil when
// not in the snapshot).
func newCapturer(gw *gwv1.Gateway, gc *gwv1.GatewayClass, nsLabels func(string) map[string]string, isWaypoint func(ns, name string) bool) *capturer {
	c := &capturer{gwNS: gw.Namespace, gwName: gw.Name, traffic: waypointFor(gw, gc), namespaceLabels: nsLabels, isWaypoint: isWaypoint}
	c.from, c.selector = captureListener(gw, gc)
	return c
}

// waypointFor is the Gateway's istio.io/waypoint-for, else its class's ("" when neither has one).
func waypointFor(gw *gwv1.Gateway, gc *gwv1.GatewayClass) string {
	if v, ok := gw.Labels[LabelWaypointFor]; ok {
		return v
	}
	if gc != nil {
		if v, ok := gc.Labels[LabelWaypointFor]; ok {
			return v
		}
	}
	return ""
}

// takes reports whether the waypoint takes traffic of kind (service or workload).
func (c *capturer) takes(kind string) bool {
	switch c.traffic {
	case "", TrafficService:
		return kind == trafficKindService
	case TrafficWorkload:
		return kind == trafficKindWorkload
	case TrafficAll:
		return true
	}
	return false // none, or a value istiod knows no traffic for
}

// captureListener finds the listener whose allowedRoutes.namespaces decide
// which namespaces may use the waypoint, as istiod does (makeAllowedRoutes):
// the listener the inbound binding names, else the {HBONE, 15008} one; no
// listener: Same.
func captureListener(gw *gwv1.Gateway, gc *gwv1.GatewayClass) (gwv1.FromNamespaces, labels.Selector) {
	binding, ok := gw.Annotations[AnnotationInboundBinding]
	if !ok && gc != nil {
		binding, ok = gc.Annotations[AnnotationInboundBinding]
	}
	if !ok {
		// Our controller puts the binding on our class; a class read
		// from files may lack it.
		binding = defaultInboundBinding
	}
	proto, port, _ := strings.Cut(binding, "/")
	ls := gw.Spec.Listeners
	for i := range ls {
		switch {
		case port != "" && fmt.Sprint(ls[i].Port) == port:
			return listenerNamespaces(&ls[i])
		case port == "" && proto == "PROXY" && ls[i].Protocol == ProtocolPROXY:
			return listenerNamespaces(&ls[i])
		}
	}
	for i := range ls {
		if ls[i].Protocol == ProtocolHBONE && ls[i].Port == HBONEPort {
			return listenerNamespaces(&ls[i])
		}
	}
	return gwv1.NamespacesFromSame, nil
}

func listenerNamespaces(l *gwv1.Listener) (gwv1.FromNamespaces, labels.Selector) {
	if l.AllowedRoutes == nil || l.AllowedRoutes.Namespaces == nil || l.AllowedRoutes.Namespaces.From == nil {
		return gwv1.NamespacesFromSame, nil
	}
	from := *l.AllowedRoutes.Namespaces.From
	var sel labels.Selector
	if from == gwv1.NamespacesFromSelector {
		// A selector that does not parse admits nothing (the listener
		// is refused for it too: ValidateGateway).
		sel = labels.Nothing()
		if s, err := metav1.LabelSelectorAsSelector(l.AllowedRoutes.Namespaces.Selector); err == nil && l.AllowedRoutes.Namespaces.Selector != nil {
			sel = s
		}
	}
	return from, sel
}

// admits reports whether the waypoint admits objects of namespace ns.
func (c *capturer) admits(ns string) bool {
	switch c.from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSelector:
		l := c.namespaceLabels(ns)
		return l != nil && c.selector.Matches(labels.Set(l))
	}
	return ns == c.gwNS // Same, and None as istiod reads it
}

// named reads the waypoint a label set names: ok false when it names none;
// none reports the value "none".
func named(l map[string]string, defaultNS string) (ns, name string, ok, none bool) {
	name, ok = l[LabelUseWaypoint]
	if !ok {
		return "", "", false, false
	}
	if name == waypointNone {
		return "", "", false, true
	}
	ns = defaultNS
	if v, found := l[LabelUseWaypointNamespace]; found {
		ns = v
	}
	return ns, name, true, false
}

// decide applies the rules to an object of namespace ns with labels l,
// whose traffic is of kind (service or workload).
func (c *capturer) decide(ns string, l map[string]string, kind string) CaptureReason {
	if kind == trafficKindService && l[LabelGatewayManaged] == ManagedMeshController {
		return CaptureWaypointInstance
	}
	if kind == trafficKindWorkload {
		if gw := l[LabelGatewayName]; gw != "" && c.isWaypoint(ns, gw) {
			return CaptureWaypointInstance
		}
	}
	wns, wname, ok, none := named(l, ns)
	if none {
		return CaptureOptedOut
	}
	if !ok {
		nsl := c.namespaceLabels(ns)
		wns, wname, ok, none = named(nsl, ns)
		if none {
			return CaptureOptedOut
		}
		if !ok {
			return CaptureNoWaypoint
		}
	}
	if wns != c.gwNS || wname != c.gwName {
		return CaptureOtherWaypoint
	}
	if !c.admits(ns) {
		return CaptureNotAllowed
	}
	if !c.takes(kind) {
		return CaptureUnsupportedTrafficType
	}
	return CaptureBound
}

// notBound is the WaypointBound condition of a Service or ServiceEntry that
// names this waypoint but is not bound to it; nil when the reason does
// not concern this waypoint.
func (c *capturer) notBound(kind, ns, name string, r CaptureReason) *Condition {
	cond := &Condition{Kind: kind, Namespace: ns, Name: name, Type: "WaypointBound", Status: "False", Reason: string(r)}
	switch r {
	case CaptureNotAllowed:
		cond.Message = fmt.Sprintf("waypoint %s/%s does not allow namespace %s (listener allowedRoutes.namespaces)", c.gwNS, c.gwName, ns)
	case CaptureUnsupportedTrafficType:
		cond.Message = fmt.Sprintf("waypoint %s/%s has istio.io/waypoint-for: %s and takes no service traffic (want service or all)", c.gwNS, c.gwName, c.trafficLabel())
	default:
		return nil
	}
	return cond
}

func (c *capturer) trafficLabel() string {
	if c.traffic == "" {
		return TrafficService
	}
	return c.traffic
}

// validTrafficType reports whether v is a value of istio.io/waypoint-for.
func validTrafficType(v string) bool {
	switch v {
	case TrafficService, TrafficWorkload, TrafficAll, TrafficNone:
		return true
	}
	return false
}
