package translate

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// translator holds the indexes of one translation.
type translator struct {
	snap *source.Snapshot
	opts Options
	gw   *gwv1.Gateway

	namespaces map[string]*corev1.Namespace
	services   map[ir.NamespacedName]*corev1.Service
	slices     map[ir.NamespacedName][]*discoveryv1.EndpointSlice // by service

	out        *ir.Waypoint
	served     map[ir.NamespacedName]*ir.Service   // Services of this waypoint
	servedSE   map[ir.NamespacedName][]*ir.Service // ServiceEntries of this waypoint, one per host
	conditions []Condition
}

func newTranslator(snap *source.Snapshot, opts Options, gw *gwv1.Gateway) *translator {
	t := &translator{
		snap:       snap,
		opts:       opts,
		gw:         gw,
		namespaces: map[string]*corev1.Namespace{},
		services:   map[ir.NamespacedName]*corev1.Service{},
		slices:     map[ir.NamespacedName][]*discoveryv1.EndpointSlice{},
		served:     map[ir.NamespacedName]*ir.Service{},
		servedSE:   map[ir.NamespacedName][]*ir.Service{},
	}
	for _, ns := range snap.Namespaces {
		t.namespaces[ns.Name] = ns
	}
	for _, s := range snap.Services {
		t.services[ir.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, es := range snap.EndpointSlices {
		svc := es.Labels[LabelServiceName]
		if svc == "" {
			continue
		}
		k := ir.NamespacedName{Namespace: es.Namespace, Name: svc}
		t.slices[k] = append(t.slices[k], es)
	}
	t.out = &ir.Waypoint{
		Gateway:            ir.NamespacedName{Namespace: gw.Namespace, Name: gw.Name},
		TrustDomain:        opts.TrustDomain,
		TrustDomainAliases: opts.TrustDomainAliases,
		InboundPort:        InboundPort(gw),
		Backends:           map[string]*ir.Backend{},
	}
	return t
}

func (t *translator) run() *Result {
	t.gatewayConditions()
	if t.servesServices() {
		t.selectServices()
		t.selectServiceEntries()
		t.sortServices()
	}
	t.resolveLookups()
	t.attachRoutes()
	t.attachPolicies()
	t.attachRequestAuthentications()
	sort.Slice(t.conditions, func(i, j int) bool { return conditionLess(t.conditions[i], t.conditions[j]) })
	return &Result{Waypoint: t.out, Conditions: t.conditions}
}

func (t *translator) cond(c Condition) { t.conditions = append(t.conditions, c) }

// gatewayConditions validates the waypoint's listeners: one istio.io/PROXY
// listener, one HBONE listener, or none at all (the sandwich default).
func (t *translator) gatewayConditions() {
	base := Condition{Kind: "Gateway", Namespace: t.gw.Namespace, Name: t.gw.Name, Type: "Accepted"}
	var bad []string
	for _, l := range t.gw.Spec.Listeners {
		switch l.Protocol {
		case ProtocolPROXY, ProtocolHBONE:
		default:
			bad = append(bad, fmt.Sprintf("listener %q has protocol %q", l.Name, l.Protocol))
		}
	}
	if len(bad) > 0 {
		base.Status, base.Reason = "False", "UnsupportedProtocol"
		base.Message = strings.Join(bad, "; ") + ": a waypoint takes one listener of protocol istio.io/PROXY (port 15088) or HBONE (port 15008), or no listener"
	} else {
		base.Status, base.Reason = "True", "Accepted"
	}
	t.cond(base)
}

// servesServices reports whether the Gateway takes service-addressed traffic
// (istio.io/waypoint-for: service or all, the default being service).
func (t *translator) servesServices() bool {
	v := t.gw.Labels[LabelWaypointFor]
	if v == "" {
		for _, gc := range t.snap.GatewayClasses {
			if gc.Name == string(t.gw.Spec.GatewayClassName) {
				v = gc.Labels[LabelWaypointFor]
			}
		}
	}
	return v == "" || v == "service" || v == "all"
}

// useWaypoint reads the waypoint an object's labels name: (namespace, name).
// ok is false when the object names none; opted out reports the value "none".
func useWaypoint(labels map[string]string, defaultNS string) (ns, name string, ok, optedOut bool) {
	name, ok = labels[LabelUseWaypoint]
	if !ok || name == "" {
		return "", "", false, false
	}
	if name == "none" {
		return "", "", false, true
	}
	ns = labels[LabelUseWaypointNamespace]
	if ns == "" {
		ns = defaultNS
	}
	return ns, name, true, false
}

// selectServices finds the services whose own istio.io/use-waypoint label, or
// else their namespace's, names this Gateway.
func (t *translator) selectServices() {
	for _, svc := range t.snap.Services {
		wns, wname, ok, optedOut := useWaypoint(svc.Labels, svc.Namespace)
		if !ok && !optedOut {
			if ns := t.namespaces[svc.Namespace]; ns != nil {
				wns, wname, ok, _ = useWaypoint(ns.Labels, svc.Namespace)
			}
		}
		if !ok || wns != t.gw.Namespace || wname != t.gw.Name {
			continue
		}
		if svc.Namespace != t.gw.Namespace && !t.admitsNamespace(svc.Namespace) {
			t.cond(Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: "WaypointBound",
				Status: "False", Reason: "NotAllowed",
				Message: fmt.Sprintf("waypoint %s/%s does not allow namespace %s (listener allowedRoutes.namespaces)", t.gw.Namespace, t.gw.Name, svc.Namespace)})
			continue
		}
		if s := t.service(svc); s != nil {
			t.out.Services = append(t.out.Services, s)
			t.served[ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = s
		}
	}
}

// admitsNamespace applies the waypoint listener's allowedRoutes.namespaces
// to a service or route from another namespace (default: Same).
func (t *translator) admitsNamespace(ns string) bool {
	for _, l := range t.gw.Spec.Listeners {
		if l.Protocol != ProtocolPROXY && l.Protocol != ProtocolHBONE {
			continue
		}
		if l.AllowedRoutes == nil || l.AllowedRoutes.Namespaces == nil || l.AllowedRoutes.Namespaces.From == nil {
			return false
		}
		switch *l.AllowedRoutes.Namespaces.From {
		case gwv1.NamespacesFromAll:
			return true
		case gwv1.NamespacesFromSelector:
			if sel := l.AllowedRoutes.Namespaces.Selector; sel != nil {
				if n := t.namespaces[ns]; n != nil && labelSelectorMatches(sel.MatchLabels, n.Labels) {
					return true
				}
			}
		}
	}
	return false
}

// labelSelectorMatches applies matchLabels (matchExpressions are not used by
// waypoint listeners in practice; an empty selector matches everything).
func labelSelectorMatches(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// service converts a Kubernetes Service into the IR, or nil when it cannot be
// addressed through a waypoint (no cluster IP, ExternalName).
func (t *translator) service(svc *corev1.Service) *ir.Service {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	vips := clusterIPs(svc)
	if len(vips) == 0 {
		t.cond(Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: "WaypointBound",
			Status: "False", Reason: "NoClusterIP",
			Message: "the service has no cluster IP, so no traffic can be addressed to it through the waypoint"})
		return nil
	}
	out := &ir.Service{
		Name:      svc.Name,
		Namespace: svc.Namespace,
		Hostname:  svc.Name + "." + svc.Namespace + ".svc." + t.opts.ClusterDomain,
		VIPs:      vips,
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue // UDP and SCTP do not pass through waypoints
		}
		proto := ir.ProtocolTCP
		if IsHTTP(p) {
			proto = ir.ProtocolHTTP
		}
		out.Ports = append(out.Ports, &ir.ServicePort{
			Port:           uint16(p.Port),
			Name:           p.Name,
			Protocol:       proto,
			DefaultBackend: t.backendFor(svc, p),
		})
	}
	sort.Slice(out.Ports, func(i, j int) bool { return out.Ports[i].Port < out.Ports[j].Port })
	return out
}

func clusterIPs(svc *corev1.Service) []string {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.Unmap().String())
		}
	}
	return out
}

// httpProtocols are the application protocols the waypoint parses as HTTP.
var httpProtocols = []string{"http", "http2", "grpc", "grpc-web"}

// IsHTTP reports whether a service port carries HTTP: its appProtocol, or
// else its name prefix, is http, http2, grpc or grpc-web (or the Kubernetes
// names kubernetes.io/h2c and kubernetes.io/ws).
func IsHTTP(p *corev1.ServicePort) bool {
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		ap := strings.ToLower(*p.AppProtocol)
		switch ap {
		case "kubernetes.io/h2c", "kubernetes.io/ws", "http", "http2", "grpc", "grpc-web":
			return true
		}
		return false
	}
	return namePrefixIn(p.Name, httpProtocols)
}

// isH2C reports whether the port's upstream speaks HTTP/2 in clear text.
func isH2C(p *corev1.ServicePort) bool {
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		switch strings.ToLower(*p.AppProtocol) {
		case "kubernetes.io/h2c", "http2", "grpc":
			return true
		}
		return false
	}
	return namePrefixIn(p.Name, []string{"http2", "grpc"})
}

// namePrefixIn applies Istio's port naming convention: "<protocol>[-<suffix>]".
func namePrefixIn(name string, protocols []string) bool {
	name = strings.ToLower(name)
	for _, proto := range protocols {
		if name == proto || strings.HasPrefix(name, proto+"-") {
			return true
		}
	}
	return false
}

// backendFor returns the key of the backend for a service port, creating it
// with the service's ready endpoints.
func (t *translator) backendFor(svc *corev1.Service, p *corev1.ServicePort) string {
	key := ir.BackendKey(svc.Namespace, svc.Name, uint16(p.Port))
	if _, ok := t.out.Backends[key]; ok {
		return key
	}
	proto := "HTTP1"
	switch {
	case !IsHTTP(p):
		proto = "TCP"
	case isH2C(p):
		proto = "H2C"
	}
	t.out.Backends[key] = &ir.Backend{
		Service:   ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name},
		Port:      uint16(p.Port),
		Protocol:  proto,
		Endpoints: t.endpoints(svc, p),
	}
	return key
}

// endpoints lists the ready endpoints of a service port from its
// EndpointSlices, as IP:port, sorted and without duplicates.
func (t *translator) endpoints(svc *corev1.Service, p *corev1.ServicePort) []string {
	seen := map[string]bool{}
	var out []string
	for _, es := range t.slices[ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32 = -1
		for _, ep := range es.Ports {
			name := ""
			if ep.Name != nil {
				name = *ep.Name
			}
			if name == p.Name && ep.Port != nil {
				port = *ep.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, e := range es.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				s := netip.AddrPortFrom(addr.Unmap(), uint16(port)).String()
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func conditionLess(a, b Condition) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	if a.Parent != b.Parent {
		return a.Parent < b.Parent
	}
	return a.Type < b.Type
}

// resolveLookups finds the Services behind the hostnames the waypoint
// calls itself (name.namespace.svc.<cluster domain>:port).
func (t *translator) resolveLookups() {
	for _, hp := range t.opts.Lookups {
		host, portStr, ok := strings.Cut(hp, ":")
		port, err := strconv.Atoi(portStr)
		if !ok || err != nil {
			continue
		}
		name, rest, ok := strings.Cut(host, ".")
		ns, suffix, _ := strings.Cut(rest, ".")
		if !ok || (suffix != "" && suffix != "svc."+t.opts.ClusterDomain && suffix != "svc") {
			continue
		}
		svc := t.services[ir.NamespacedName{Namespace: ns, Name: name}]
		if svc == nil {
			continue
		}
		if sp := servicePort(svc, int32(port)); sp != nil {
			if t.out.Lookups == nil {
				t.out.Lookups = map[string]string{}
			}
			t.out.Lookups[hp] = t.backendFor(svc, sp)
		}
	}
}
