package translate

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestCaptureDecisions is the table of istiod's capture rules
// (waypoints.go fetchWaypointForTarget / ForService / ForWorkload /
// ForInstance): object label × namespace label × waypoint-for ×
// allowedRoutes → bound, or the reason not. The waypoint is wp in
// namespace "wpns"; objects live in "wpns" or in "apps".
func TestCaptureDecisions(t *testing.T) {
	nsLabels := map[string]map[string]string{
		"wpns":        {},
		"apps":        {"team": "blue"},
		"apps-ns":     {LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "wpns", "team": "blue"},
		"apps-ns-red": {LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "wpns", "team": "red"},
		"wpns-ns":     {LabelUseWaypoint: "wp"},
		"ns-none":     {LabelUseWaypoint: "none"},
		"ns-other":    {LabelUseWaypoint: "other"},
		// A namespace label names a waypoint in the object's namespace
		// unless the namespace's own use-waypoint-namespace says otherwise.
		"ns-samename": {LabelUseWaypoint: "wp"},
	}
	same, all, sel, none := gwv1.NamespacesFromSame, gwv1.NamespacesFromAll, gwv1.NamespacesFromSelector, gwv1.NamespacesFromNone
	us := map[string]string{LabelUseWaypoint: "wp"}
	usFrom := map[string]string{LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "wpns"}
	optOut := map[string]string{LabelUseWaypoint: "none"}
	other := map[string]string{LabelUseWaypoint: "other"}
	cases := []struct {
		name    string
		ns      string // the object's namespace
		labels  map[string]string
		kind    string // service or workload
		for_    string // istio.io/waypoint-for ("" unset)
		from    gwv1.FromNamespaces
		classed bool // waypoint-for on the GatewayClass instead of the Gateway
		want    CaptureReason
	}{
		// Object label, same namespace.
		{"service label", "wpns", us, "service", "", same, false, CaptureBound},
		{"service label, waypoint-for service", "wpns", us, "service", "service", same, false, CaptureBound},
		{"service label, waypoint-for all", "wpns", us, "service", "all", same, false, CaptureBound},
		{"service label, waypoint-for workload", "wpns", us, "service", "workload", same, false, CaptureUnsupportedTrafficType},
		{"service label, waypoint-for none", "wpns", us, "service", "none", same, false, CaptureUnsupportedTrafficType},
		{"pod label, default waypoint-for (service)", "wpns", us, "workload", "", same, false, CaptureUnsupportedTrafficType},
		{"pod label, waypoint-for workload", "wpns", us, "workload", "workload", same, false, CaptureBound},
		{"pod label, waypoint-for all", "wpns", us, "workload", "all", same, false, CaptureBound},
		{"pod label, waypoint-for service", "wpns", us, "workload", "service", same, false, CaptureUnsupportedTrafficType},
		{"pod label, waypoint-for on the class", "wpns", us, "workload", "workload", same, true, CaptureBound},
		{"service label, class says workload", "wpns", us, "service", "workload", same, true, CaptureUnsupportedTrafficType},
		{"object names another waypoint", "wpns", other, "service", "", same, false, CaptureOtherWaypoint},
		{"object opts out", "wpns", optOut, "workload", "all", all, false, CaptureOptedOut},
		{"no label anywhere", "wpns", nil, "service", "", all, false, CaptureNoWaypoint},
		// Namespace label.
		{"namespace label", "wpns-ns", nil, "service", "", all, false, CaptureOtherWaypoint}, // names wp in wpns-ns, not wpns
		{"namespace label, use-waypoint-namespace", "apps-ns", nil, "service", "", all, false, CaptureBound},
		{"namespace label, pods with waypoint-for all", "apps-ns", nil, "workload", "all", all, false, CaptureBound},
		{"namespace label, pods with waypoint-for service", "apps-ns", nil, "workload", "service", all, false, CaptureUnsupportedTrafficType},
		{"namespace none", "ns-none", nil, "service", "", all, false, CaptureOptedOut},
		{"namespace names another", "ns-other", nil, "service", "", all, false, CaptureOtherWaypoint},
		{"namespace label names wp of the object's namespace", "ns-samename", nil, "service", "", all, false, CaptureOtherWaypoint},
		// The object's own label wins over its namespace's, both ways.
		{"object none beats namespace us", "apps-ns", optOut, "service", "", all, false, CaptureOptedOut},
		{"object other beats namespace us (no fallback)", "apps-ns", other, "service", "", all, false, CaptureOtherWaypoint},
		{"object us beats namespace none", "ns-none", map[string]string{LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "wpns"}, "service", "", all, false, CaptureBound},
		// use-waypoint-namespace × allowedRoutes.
		{"cross-namespace, Same", "apps", usFrom, "service", "", same, false, CaptureNotAllowed},
		{"cross-namespace, All", "apps", usFrom, "service", "", all, false, CaptureBound},
		{"cross-namespace, Selector matches", "apps", usFrom, "service", "", sel, false, CaptureBound},
		{"cross-namespace, Selector does not match", "apps-ns-red", nil, "service", "", sel, false, CaptureNotAllowed},
		{"cross-namespace, None (istiod: Same)", "apps", usFrom, "service", "", none, false, CaptureNotAllowed},
		{"same namespace, None (istiod: Same)", "wpns", us, "service", "", none, false, CaptureBound},
		{"same namespace, Selector not matching it", "wpns", us, "service", "", sel, false, CaptureNotAllowed},
		{"use-waypoint-namespace without use-waypoint", "wpns", map[string]string{LabelUseWaypointNamespace: "wpns"}, "service", "", all, false, CaptureNoWaypoint},
		{"not allowed is reported before the traffic type", "apps", usFrom, "workload", "service", same, false, CaptureNotAllowed},
		// istio.io/ingress-use-waypoint is for ingress gateways: no capture of its own.
		{"ingress-use-waypoint beside use-waypoint", "wpns", map[string]string{LabelUseWaypoint: "wp", LabelIngressUseWaypoint: "true"}, "service", "", same, false, CaptureBound},
		{"ingress-use-waypoint alone", "wpns", map[string]string{LabelIngressUseWaypoint: "true"}, "service", "", same, false, CaptureNoWaypoint},
		// Waypoints themselves.
		{"a waypoint's own service", "wpns", map[string]string{LabelUseWaypoint: "wp", LabelGatewayManaged: ManagedMeshController}, "service", "", same, false, CaptureWaypointInstance},
		{"a pod of this waypoint", "wpns", map[string]string{LabelGatewayName: "wp"}, "workload", "all", same, false, CaptureWaypointInstance},
		{"a pod of another waypoint", "wpns", map[string]string{LabelGatewayName: "ready", LabelUseWaypoint: "wp"}, "workload", "all", same, false, CaptureWaypointInstance},
		{"a pod naming a gateway that is no waypoint", "wpns", map[string]string{LabelGatewayName: "not-ready", LabelUseWaypoint: "wp"}, "workload", "all", same, false, CaptureBound},
		{"gateway-name on a service is no exemption", "wpns", map[string]string{LabelGatewayName: "wp", LabelUseWaypoint: "wp"}, "service", "", same, false, CaptureBound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "wpns", Name: "wp", Labels: map[string]string{}},
				Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint", Listeners: []gwv1.Listener{{
					Name: "mesh", Protocol: ProtocolPROXY, Port: 15088,
					AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &tc.from,
						Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}},
				}}}}
			gc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "kgateway-waypoint", Labels: map[string]string{}}}
			if tc.for_ != "" {
				if tc.classed {
					gc.Labels[LabelWaypointFor] = tc.for_
				} else {
					gw.Labels[LabelWaypointFor] = tc.for_
				}
			}
			c := newCapturer(gw, gc, func(ns string) map[string]string { return nsLabels[ns] },
				func(ns, name string) bool { return ns == "wpns" && (name == "wp" || name == "ready") })
			if got := c.decide(tc.ns, tc.labels, tc.kind); got != tc.want {
				t.Errorf("decide(%s, %v, %s) with waypoint-for %q, from %s = %s, want %s", tc.ns, tc.labels, tc.kind, tc.for_, tc.from, got, tc.want)
			}
		})
	}
}

// TestCaptureListener: the allowedRoutes that decide are those of the
// listener istiod picks: the inbound binding's (its port, or the PROXY
// listener when it names no port), else {HBONE, 15008}, else Same.
func TestCaptureListener(t *testing.T) {
	all, sel := gwv1.NamespacesFromAll, gwv1.NamespacesFromSelector
	listener := func(name string, proto gwv1.ProtocolType, port gwv1.PortNumber, from *gwv1.FromNamespaces) gwv1.Listener {
		l := gwv1.Listener{Name: gwv1.SectionName(name), Protocol: proto, Port: port}
		if from != nil {
			l.AllowedRoutes = &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: from,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}}
		}
		return l
	}
	cases := []struct {
		name       string
		gwBinding  string // "" none
		gcBinding  string
		listeners  []gwv1.Listener
		wantFrom   gwv1.FromNamespaces
		wantSelect bool
	}{
		{"no binding: our default PROXY/15088", "", "", []gwv1.Listener{listener("mesh", ProtocolPROXY, 15088, &all)}, all, false},
		{"class binding by port", "", "PROXY/15088", []gwv1.Listener{listener("hbone", ProtocolHBONE, 15008, &sel), listener("mesh", ProtocolPROXY, 15088, &all)}, all, false},
		{"gateway binding wins over the class's", "PROXY/15008", "PROXY/15088", []gwv1.Listener{listener("hbone", ProtocolHBONE, 15008, &sel), listener("mesh", ProtocolPROXY, 15088, &all)}, sel, true},
		{"binding without port: the PROXY listener", "PROXY", "", []gwv1.Listener{listener("hbone", ProtocolHBONE, 15008, &sel), listener("mesh", ProtocolPROXY, 15088, &all)}, all, false},
		{"native: no 15088 listener, the HBONE one", "", "PROXY/15088", []gwv1.Listener{listener("mesh", ProtocolHBONE, 15008, &all)}, all, false},
		{"no matching listener: Same", "", "PROXY/15088", []gwv1.Listener{listener("mesh", ProtocolHBONE, 15009, &all)}, gwv1.NamespacesFromSame, false},
		{"no allowedRoutes: Same", "", "", []gwv1.Listener{listener("mesh", ProtocolPROXY, 15088, nil)}, gwv1.NamespacesFromSame, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "wpns", Name: "wp", Annotations: map[string]string{}},
				Spec: gwv1.GatewaySpec{Listeners: tc.listeners}}
			gc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
			if tc.gwBinding != "" {
				gw.Annotations[AnnotationInboundBinding] = tc.gwBinding
			}
			if tc.gcBinding != "" {
				gc.Annotations[AnnotationInboundBinding] = tc.gcBinding
			}
			from, s := captureListener(gw, gc)
			if from != tc.wantFrom || (s != nil) != tc.wantSelect {
				t.Errorf("captureListener = %s, selector %v; want %s, selector %v", from, s, tc.wantFrom, tc.wantSelect)
			}
		})
	}
}

// TestWaypointForValidated: a value of istio.io/waypoint-for istiod sends
// no traffic for refuses the Gateway with a clear reason; the four values
// are accepted.
func TestWaypointForValidated(t *testing.T) {
	for _, v := range []string{"service", "workload", "all", "none", "Service", "pods", ""} {
		gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "wpns", Name: "wp", Labels: map[string]string{LabelWaypointFor: v}},
			Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{{Name: "mesh", Protocol: ProtocolPROXY, Port: 15088}}}}
		verdict := ValidateGateway(gw)
		valid := validTrafficType(v)
		if verdict.IsAccepted() != valid {
			t.Errorf("waypoint-for %q: accepted %v, want %v (%s)", v, verdict.IsAccepted(), valid, verdict.Accepted.Message)
		}
		if !valid && (verdict.Accepted.Reason != string(gwv1.GatewayReasonInvalidParameters) || verdict.Accepted.Message != fmt.Sprintf(
			"the Gateway's label istio.io/waypoint-for: %q is not a traffic type: want service, workload, all or none", v)) {
			t.Errorf("waypoint-for %q: verdict %+v", v, verdict.Accepted)
		}
	}
}
