package translate

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// The listener rules, in one place: both modes (standalone and the
// controller, through the status writer and the deployer) read them from
// ValidateGateway, so they accept and refuse the same Gateways.
//
// A waypoint listener is {protocol: istio.io/PROXY, port: 15088} (the
// sandwich inbound ztunnel connects to, as the class's inbound binding
// PROXY/15088 says) or Istio's own waypoint listener {protocol: HBONE, port:
// 15008}, which selects native mode: the waypoint pod is not enrolled in
// ambient and terminates ztunnel's mTLS HBONE itself (ztunnel always sends
// HBONE to a waypoint's 15008; the binding only tells the waypoint pod's
// own ztunnel what to do, and a native pod has none). A Gateway with both
// stays in sandwich mode, on its PROXY listener. A listener takes no hostname and no tls
// (ztunnel terminates mTLS; routes attach to Services, not hostnames);
// allowedRoutes may name the namespaces (Same, All, Selector) and kinds
// (HTTPRoute, GRPCRoute, TCPRoute) that may attach through the Gateway.
//
// As Istio's waypoint does, a listener that breaks a rule is reported on
// its own (Accepted=False with the reason) and the others still serve:
// the Gateway is accepted (reason ListenersNotValid when some listener is
// not) while at least one listener is a waypoint listener. A Gateway with
// none, or with no listeners at all (which the API server refuses), is
// not accepted and nothing is served or deployed for it.

// HBONEPort is the port of Istio's waypoint listener (protocol HBONE).
const HBONEPort = 15008

// wantListener says what a waypoint Gateway should have, for messages.
const wantListener = "a waypoint takes the listener {name: mesh, protocol: istio.io/PROXY, port: 15088} (or Istio's {name: mesh, protocol: HBONE, port: 15008})"

// Verdict is the outcome of one condition: what status, reason and
// message the object carries for it.
type Verdict struct {
	Status  metav1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason"`
	Message string                 `json:"message,omitempty"`
}

// GatewayVerdict is what the listener rules conclude about a waypoint
// Gateway: its Accepted condition and, in spec order, each listener's.
type GatewayVerdict struct {
	Accepted  Verdict           `json:"accepted"`
	Listeners []ListenerVerdict `json:"listeners,omitempty"`
	// NativeHBONE: the accepted listeners select native mode (an HBONE
	// listener and no istio.io/PROXY one).
	NativeHBONE bool `json:"nativeHBONE,omitempty"`
}

// IsAccepted reports whether the Gateway runs as a waypoint.
func (v *GatewayVerdict) IsAccepted() bool { return v.Accepted.Status == metav1.ConditionTrue }

// ListenerVerdict is the conclusion about one listener.
type ListenerVerdict struct {
	Name         gwv1.SectionName `json:"name"`
	Accepted     Verdict          `json:"accepted"`
	ResolvedRefs Verdict          `json:"resolvedRefs"`
	Conflicted   Verdict          `json:"conflicted"`
	// SupportedKinds are the route kinds that may attach through the
	// listener (none when it is not accepted).
	SupportedKinds []gwv1.RouteGroupKind `json:"supportedKinds"`
	// AttachedRoutes counts the routes the waypoint accepted through this
	// listener: every route accepted through a served Service or
	// ServiceEntry, and the Gateway-parented routes that name this
	// listener (or no listener). Set by Translate; 0 from ValidateGateway.
	AttachedRoutes int32 `json:"attachedRoutes"`
}

// NotAcceptedError is Translate's error for a Gateway the listener rules
// refuse: nothing is served for it. Verdict says why, per listener.
type NotAcceptedError struct {
	Gateway ir.NamespacedName
	Verdict GatewayVerdict
}

func (e *NotAcceptedError) Error() string {
	return fmt.Sprintf("gateway %s is not accepted (%s): %s", e.Gateway, e.Verdict.Accepted.Reason, e.Verdict.Accepted.Message)
}

// routeKinds are the route kinds a waypoint listener supports.
var routeKinds = []gwv1.Kind{"HTTPRoute", "GRPCRoute", "TCPRoute"}

// listener is an accepted listener, as routes and captured services bind
// through it.
type listener struct {
	index    int // into GatewayVerdict.Listeners
	name     gwv1.SectionName
	port     gwv1.PortNumber
	from     gwv1.FromNamespaces
	selector labels.Selector // from Selector
	kinds    []gwv1.Kind
}

// admits reports whether the listener lets objects of namespace ns (the
// Gateway's own being gwNS) attach; nsLabels are that namespace's labels.
func (l *listener) admits(ns, gwNS string, nsLabels map[string]string) bool {
	switch l.from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSelector:
		return nsLabels != nil && l.selector.Matches(labels.Set(nsLabels))
	case gwv1.NamespacesFromNone:
		return false
	}
	return ns == gwNS
}

// admitsKind reports whether routes of kind may attach through the listener.
func (l *listener) admitsKind(kind string) bool {
	return slices.Contains(l.kinds, gwv1.Kind(kind))
}

// ValidateGateway applies the listener rules to a Gateway. It reads only
// the Gateway, so the deployer can ask before anything is translated.
func ValidateGateway(gw *gwv1.Gateway) GatewayVerdict {
	v, _ := validateGateway(gw)
	return v
}

func validateGateway(gw *gwv1.Gateway) (GatewayVerdict, []*listener) {
	var v GatewayVerdict
	ls := gw.Spec.Listeners
	if len(ls) == 0 {
		v.Accepted = Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.GatewayReasonListenersNotValid),
			Message: "the Gateway has no listeners (the Gateway API requires at least one): " + wantListener}
		return v, nil
	}
	names := map[gwv1.SectionName]int{}
	distinct := map[string]int{}
	for _, l := range ls {
		names[l.Name]++
		distinct[distinctKey(&l)]++
	}
	var accepted []*listener
	var refused []string // "name: message" of the listeners not accepted
	for i := range ls {
		l := &ls[i]
		lv := ListenerVerdict{
			Name:         l.Name,
			Accepted:     Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.ListenerReasonAccepted)},
			ResolvedRefs: Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.ListenerReasonResolvedRefs)},
			Conflicted:   Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.ListenerReasonNoConflicts)},
		}
		kinds, bad := allowedKinds(l.AllowedRoutes)
		if len(bad) > 0 {
			lv.ResolvedRefs = Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.ListenerReasonInvalidRouteKinds),
				Message: fmt.Sprintf("route kinds %s are not supported: a waypoint listener takes HTTPRoute, GRPCRoute and TCPRoute", strings.Join(bad, ", "))}
		}
		from, sel, selErr := allowedNamespaces(l.AllowedRoutes)
		var problems []string
		reason := ""
		refuse := func(r gwv1.ListenerConditionReason, msg string) {
			if reason == "" {
				reason = string(r)
			}
			problems = append(problems, msg)
		}
		if distinct[distinctKey(l)] > 1 {
			lv.Conflicted = Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.ListenerReasonHostnameConflict),
				Message: "another listener has the same port, protocol and hostname; neither is used"}
			refuse(gwv1.ListenerReasonHostnameConflict, "another listener has the same port, protocol and hostname; neither is used")
		}
		if names[l.Name] > 1 {
			refuse(gwv1.ListenerReasonUnsupportedValue, fmt.Sprintf("the name %q is used by %d listeners; names must be unique", l.Name, names[l.Name]))
		}
		switch {
		case l.Protocol == ProtocolPROXY && l.Port != DefaultInboundPort:
			refuse(gwv1.ListenerReasonPortUnavailable, fmt.Sprintf("the istio.io/PROXY listener must use port %d (ztunnel connects there: the inbound binding is PROXY/%d), not %d",
				DefaultInboundPort, DefaultInboundPort, l.Port))
		case l.Protocol == ProtocolHBONE && l.Port != HBONEPort:
			refuse(gwv1.ListenerReasonPortUnavailable, fmt.Sprintf("the HBONE listener must use port %d, not %d", HBONEPort, l.Port))
		case l.Protocol != ProtocolPROXY && l.Protocol != ProtocolHBONE:
			refuse(gwv1.ListenerReasonUnsupportedProtocol, fmt.Sprintf("protocol %s is not a waypoint protocol", l.Protocol))
		}
		if l.Hostname != nil && *l.Hostname != "" {
			refuse(gwv1.ListenerReasonUnsupportedValue, fmt.Sprintf("hostname %q: a waypoint listener takes no hostname (routes attach to Services)", *l.Hostname))
		}
		if l.TLS != nil {
			refuse(gwv1.ListenerReasonUnsupportedValue, "tls: a waypoint listener takes no tls (ztunnel terminates mTLS)")
		}
		if selErr != "" {
			refuse(gwv1.ListenerReasonUnsupportedValue, selErr)
		}
		if reason != "" {
			msg := strings.Join(problems, "; ")
			lv.Accepted = Verdict{Status: metav1.ConditionFalse, Reason: reason, Message: msg + "; " + wantListener}
			lv.SupportedKinds = []gwv1.RouteGroupKind{}
			refused = append(refused, fmt.Sprintf("listener %q: %s", l.Name, msg))
		} else {
			lv.SupportedKinds = supportedKinds(kinds)
			accepted = append(accepted, &listener{index: i, name: l.Name, port: l.Port, from: from, selector: sel, kinds: kinds})
		}
		v.Listeners = append(v.Listeners, lv)
	}
	switch {
	case len(accepted) == 0:
		v.Accepted = Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.GatewayReasonListenersNotValid),
			Message: strings.Join(refused, "; ") + ". No listener is a waypoint listener: " + wantListener}
	case len(refused) > 0:
		using := make([]string, len(accepted))
		for i, l := range accepted {
			using[i] = string(l.name)
		}
		v.Accepted = Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.GatewayReasonListenersNotValid),
			Message: strings.Join(refused, "; ") + ". The waypoint serves through " + strings.Join(using, ", ")}
	default:
		v.Accepted = Verdict{Status: metav1.ConditionTrue, Reason: string(gwv1.GatewayReasonAccepted)}
	}
	if w, ok := gw.Labels[LabelWaypointFor]; ok && !validTrafficType(w) {
		v.Accepted = badTrafficType("the Gateway's", w)
	}
	proxy, hbone := false, false
	for _, l := range accepted {
		proxy = proxy || ls[l.index].Protocol == ProtocolPROXY
		hbone = hbone || ls[l.index].Protocol == ProtocolHBONE
	}
	v.NativeHBONE = hbone && !proxy
	return v, accepted
}

// distinctKey is what tells listeners apart (the Gateway API's port,
// protocol and hostname).
func distinctKey(l *gwv1.Listener) string {
	h := ""
	if l.Hostname != nil {
		h = string(*l.Hostname)
	}
	return fmt.Sprintf("%d/%s/%s", l.Port, l.Protocol, h)
}

// allowedKinds returns the route kinds a listener admits (all the waypoint
// supports when it names none) and the ones it names that are not supported.
func allowedKinds(ar *gwv1.AllowedRoutes) ([]gwv1.Kind, []string) {
	if ar == nil || len(ar.Kinds) == 0 {
		return routeKinds, nil
	}
	var kinds []gwv1.Kind
	var bad []string
	for _, k := range ar.Kinds {
		group := gwv1.GroupName
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group != gwv1.GroupName || !slices.Contains(routeKinds, k.Kind) {
			bad = append(bad, string(k.Kind)+"."+group)
			continue
		}
		if !slices.Contains(kinds, k.Kind) {
			kinds = append(kinds, k.Kind)
		}
	}
	return kinds, bad
}

func supportedKinds(kinds []gwv1.Kind) []gwv1.RouteGroupKind {
	out := make([]gwv1.RouteGroupKind, len(kinds))
	for i, k := range kinds {
		g := gwv1.Group(gwv1.GroupName)
		out[i] = gwv1.RouteGroupKind{Group: &g, Kind: k}
	}
	return out
}

// allowedNamespaces reads allowedRoutes.namespaces (default Same); a
// non-empty problem means the selector cannot be used.
func allowedNamespaces(ar *gwv1.AllowedRoutes) (gwv1.FromNamespaces, labels.Selector, string) {
	if ar == nil || ar.Namespaces == nil || ar.Namespaces.From == nil {
		return gwv1.NamespacesFromSame, nil, ""
	}
	from := *ar.Namespaces.From
	switch from {
	case gwv1.NamespacesFromSame, gwv1.NamespacesFromAll, gwv1.NamespacesFromNone:
		return from, nil, ""
	case gwv1.NamespacesFromSelector:
		if ar.Namespaces.Selector == nil {
			return from, nil, "allowedRoutes.namespaces: from Selector needs a selector"
		}
		sel, err := metav1.LabelSelectorAsSelector(ar.Namespaces.Selector)
		if err != nil {
			return from, nil, fmt.Sprintf("allowedRoutes.namespaces.selector: %v", err)
		}
		return from, sel, ""
	}
	return from, nil, fmt.Sprintf("allowedRoutes.namespaces.from %q: want Same, All, Selector or None", from)
}

// badTrafficType is the Accepted verdict of a Gateway whose
// istio.io/waypoint-for (whose is "the Gateway's" or "its GatewayClass's")
// has a value istiod sends no traffic for: nothing would reach the waypoint.
func badTrafficType(whose, value string) Verdict {
	return Verdict{Status: metav1.ConditionFalse, Reason: string(gwv1.GatewayReasonInvalidParameters),
		Message: fmt.Sprintf("%s label %s: %q is not a traffic type: want service, workload, all or none", whose, LabelWaypointFor, value)}
}
