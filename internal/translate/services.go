package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
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
	// verdict is the Gateway's (accepted); listeners its accepted listeners.
	verdict   GatewayVerdict
	listeners []*listener
	// attached are the routes accepted through a served Service or
	// ServiceEntry (viaService) or through each listener, for the
	// listeners' attachedRoutes.
	viaService map[routeKey]bool
	viaGateway map[int]map[routeKey]bool // by listener index

	namespaces map[string]*corev1.Namespace
	services   map[ir.NamespacedName]*corev1.Service
	slices     map[ir.NamespacedName][]*discoveryv1.EndpointSlice // by service
	pods       map[ir.NamespacedName]*corev1.Pod                  // native mode only (indexPods)
	capture    *capturer
	loc        *localityIndex                    // nil: no traffic distribution (locality.go)
	drPods     map[ir.NamespacedName]*corev1.Pod // DestinationRule subsets (destinationrule.go), on first use

	out        *ir.Waypoint
	served     map[ir.NamespacedName]*ir.Service   // Services of this waypoint
	servedSE   map[ir.NamespacedName][]*ir.Service // ServiceEntries of this waypoint, one per host
	conditions []Condition

	tp *tpIndex // kgateway TrafficPolicies (trafficpolicy.go)
}

func newTranslator(snap *source.Snapshot, opts Options, gw *gwv1.Gateway) *translator {
	// The maps are sized for the snapshot up front: at 10,000 services,
	// growing them step by step is a visible part of a translation.
	t := &translator{
		snap:       snap,
		opts:       opts,
		gw:         gw,
		namespaces: make(map[string]*corev1.Namespace, len(snap.Namespaces)),
		services:   make(map[ir.NamespacedName]*corev1.Service, len(snap.Services)),
		slices:     make(map[ir.NamespacedName][]*discoveryv1.EndpointSlice, len(snap.EndpointSlices)),
		served:     make(map[ir.NamespacedName]*ir.Service, len(snap.Services)),
		servedSE:   map[ir.NamespacedName][]*ir.Service{},
		viaService: map[routeKey]bool{},
		viaGateway: map[int]map[routeKey]bool{},
		loc:        newLocalityIndex(snap),
	}
	for _, ns := range snap.Namespaces {
		t.namespaces[ns.Name] = ns
	}
	for _, s := range snap.Services {
		t.services[ir.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	// Reading each slice's service-name label is most of the indexing
	// (one object and one label map per slice): done on every CPU first.
	owners := make([]string, len(snap.EndpointSlices))
	parallel(len(owners), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			owners[i] = snap.EndpointSlices[i].Labels[LabelServiceName]
		}
	})
	for i, es := range snap.EndpointSlices {
		if owners[i] == "" {
			continue
		}
		k := ir.NamespacedName{Namespace: es.Namespace, Name: owners[i]}
		t.slices[k] = append(t.slices[k], es)
	}
	t.capture = newCapturer(gw, t.gatewayClass(), t.namespaceLabels, t.isWaypoint)
	t.out = &ir.Waypoint{
		Gateway:            ir.NamespacedName{Namespace: gw.Namespace, Name: gw.Name},
		TrustDomain:        opts.TrustDomain,
		TrustDomainAliases: opts.TrustDomainAliases,
		// An accepted PROXY listener is on DefaultInboundPort (native
		// mode moves it to HBONEPort: Translate).
		InboundPort: DefaultInboundPort,
		Backends:    make(map[string]*ir.Backend, 2*len(snap.Services)),
	}
	return t
}

func (t *translator) run() *Result {
	t.selectServices()
	t.selectServiceEntries()
	t.sortServices()
	t.selectWorkloads()
	t.meshSettings()
	t.indexTrafficPolicies() // kgateway TrafficPolicy
	t.attachRoutes()
	t.gatewayTraffic() // kgateway TrafficPolicy
	t.attachPolicies()
	t.attachRequestAuthentications()
	t.telemetry() // Telemetry API (telemetry branch)
	t.nodeLocalities()
	t.destinationRules()
	t.loadBalancingConditions()
	t.extAuthProviders()        // kgateway TrafficPolicy
	t.rateLimitProviders()      // kgateway TrafficPolicy
	t.trafficPolicyConditions() // kgateway TrafficPolicy
	sortConditions(t.conditions)
	t.countAttachedRoutes()
	return &Result{Waypoint: t.out, Gateway: t.verdict, Conditions: t.conditions}
}

func (t *translator) cond(c Condition) { t.conditions = append(t.conditions, c) }

// gatewayClass is the waypoint Gateway's class, nil when not in the snapshot.
func (t *translator) gatewayClass() *gwv1.GatewayClass {
	for _, gc := range t.snap.GatewayClasses {
		if gc.Name == string(t.gw.Spec.GatewayClassName) {
			return gc
		}
	}
	return nil
}

// isWaypoint reports whether the Gateway ns/name is a waypoint a pod can
// be an instance of: this one, or one istiod knows as a waypoint (it has
// status.addresses).
func (t *translator) isWaypoint(ns, name string) bool {
	if ns == t.gw.Namespace && name == t.gw.Name {
		return true
	}
	for _, g := range t.snap.Gateways {
		if g.Namespace == ns && g.Name == name {
			return len(g.Status.Addresses) > 0
		}
	}
	return false
}

// selectServices finds the services whose own istio.io/use-waypoint label, or
// else their namespace's, names this Gateway.
//
// Each Service is translated on its own (selectService reads the indexes
// and writes only its serviceOut), so large snapshots are translated on
// every CPU; the results are then added in snapshot order, which gives
// exactly what one loop over the services would.
func (t *translator) selectServices() {
	svcs := t.snap.Services
	outs := make([]serviceOut, len(svcs))
	parallel(len(svcs), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t.selectService(svcs[i], &outs[i])
		}
	})
	for i := range outs {
		o := &outs[i]
		t.conditions = append(t.conditions, o.conds...)
		for _, b := range o.backends {
			t.addBackend(b.key, b.backend)
		}
		if o.service != nil {
			t.out.Services = append(t.out.Services, o.service)
			t.served[ir.NamespacedName{Namespace: o.service.Namespace, Name: o.service.Name}] = o.service
		}
	}
}

// serviceOut is what translating one Service produced, to be added to the
// translation in snapshot order.
type serviceOut struct {
	service  *ir.Service
	conds    []Condition
	backends []keyedBackend
	inline   [2]keyedBackend // backends' storage for up to 2 ports
}

type keyedBackend struct {
	key     string
	backend *ir.Backend
}

// selectService translates svc into out when it is one of this waypoint's
// services (the capture rules: capture.go). It only reads the translator.
func (t *translator) selectService(svc *corev1.Service, out *serviceOut) {
	r := t.capture.decide(svc.Namespace, svc.Labels, trafficKindService)
	// Or this Gateway is the service's weighted canary (canary.go).
	r, why := t.captureCanary("Service", &svc.ObjectMeta, r)
	if why != nil {
		out.conds = append(out.conds, *why)
	}
	if r != CaptureBound {
		if c := t.capture.notBound("Service", svc.Namespace, svc.Name, r); c != nil {
			out.conds = append(out.conds, *c)
		}
		return
	}
	out.service = t.service(svc, out)
}

// namespaceLabels are a namespace's labels, nil when it is not in the
// snapshot (a selector then admits nothing).
func (t *translator) namespaceLabels(ns string) map[string]string {
	if n := t.namespaces[ns]; n != nil {
		if n.Labels == nil {
			return map[string]string{}
		}
		return n.Labels
	}
	return nil
}

// labelSelectorMatches applies a label map as a selector (a ServiceEntry's
// workloadSelector): every label must match; an empty one matches all.
func labelSelectorMatches(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// service converts a Kubernetes Service into the IR, or nil when it cannot be
// addressed through a waypoint (no cluster IP, ExternalName). Its conditions
// and the backends of its ports go to out.
func (t *translator) service(svc *corev1.Service, out *serviceOut) *ir.Service {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		out.conds = append(out.conds, Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: "WaypointBound",
			Status: "False", Reason: "NoClusterIP",
			Message: "an ExternalName service has no cluster IP, so no traffic can be addressed to it through the waypoint (use a ServiceEntry)"})
		return nil
	}
	vips := clusterIPs(svc)
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	if headless {
		// Clients dial a headless service's pods by their IPs (the DNS
		// answer), which ztunnel sends to a waypoint only as workload
		// traffic: to the pods' own waypoint (selectWorkloads). The
		// service is still bound as istiod binds it, reachable here by
		// its hostname, with its routes and policies.
		out.conds = append(out.conds, Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: "WaypointBound",
			Status: "True", Reason: "Headless",
			Message: "a headless service is reached by its pods' IPs: that traffic comes through a waypoint only as workload traffic, when the pods use one (istio.io/use-waypoint on the pods or their namespace, with istio.io/waypoint-for: workload or all)"})
	}
	if len(vips) == 0 && !headless {
		out.conds = append(out.conds, Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: "WaypointBound",
			Status: "False", Reason: "NoClusterIP",
			Message: "the service has no cluster IP, so no traffic can be addressed to it through the waypoint"})
		return nil
	}
	s := &ir.Service{
		Name:      svc.Name,
		Namespace: svc.Namespace,
		Hostname:  svc.Name + "." + svc.Namespace + ".svc." + t.opts.ClusterDomain,
		VIPs:      vips,
	}
	n := 0
	for i := range svc.Spec.Ports {
		if passes(&svc.Spec.Ports[i]) {
			n++
		}
	}
	if n == 0 {
		return s // Ports stays nil
	}
	// One allocation for the ports of a service, one for the pointers.
	ports := make([]ir.ServicePort, n)
	if n <= len(out.inline) {
		out.backends = out.inline[:0]
	} else {
		out.backends = make([]keyedBackend, 0, n)
	}
	s.Ports = make([]*ir.ServicePort, 0, n)
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if !passes(p) {
			continue // UDP and SCTP do not pass through waypoints
		}
		proto := ir.ProtocolTCP
		if IsHTTP(p) {
			proto = ir.ProtocolHTTP
		}
		key, b := t.newBackend(svc, p)
		out.backends = append(out.backends, keyedBackend{key, b})
		sp := &ports[len(s.Ports)]
		*sp = ir.ServicePort{
			Port:           uint16(p.Port),
			Name:           p.Name,
			Protocol:       proto,
			DefaultBackend: key,
		}
		s.Ports = append(s.Ports, sp)
	}
	if !slices.IsSortedFunc(s.Ports, func(a, b *ir.ServicePort) int { return cmp.Compare(a.Port, b.Port) }) {
		sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].Port < s.Ports[j].Port })
	}
	return s
}

// passes reports whether a service port's traffic can pass through a
// waypoint (TCP; UDP and SCTP cannot).
func passes(p *corev1.ServicePort) bool {
	return p.Protocol == "" || p.Protocol == corev1.ProtocolTCP
}

func clusterIPs(svc *corev1.Service) []string {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			if a.Is4() {
				// ParseAddr takes only the canonical dotted form of an
				// IPv4 address, so the string is already what String
				// would return; keep it rather than allocate a copy.
				out = append(out, ip)
				continue
			}
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
	_, b := t.newBackend(svc, p)
	t.out.Backends[key] = b
	return key
}

// addBackend adds a backend built by newBackend unless one with its key
// exists: the first one built for a key is the one kept, as backendFor does.
func (t *translator) addBackend(key string, b *ir.Backend) {
	if _, ok := t.out.Backends[key]; !ok {
		t.out.Backends[key] = b
	}
}

// newBackend builds the backend of a service port and returns it with its
// key. It only reads the translator.
func (t *translator) newBackend(svc *corev1.Service, p *corev1.ServicePort) (string, *ir.Backend) {
	proto := "HTTP1"
	switch {
	case !IsHTTP(p):
		proto = "TCP"
	case isH2C(p):
		proto = "H2C"
	}
	b := &ir.Backend{
		Service:   ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name},
		Port:      uint16(p.Port),
		Protocol:  proto,
		Endpoints: t.endpoints(svc, p),
	}
	if t.pods != nil {
		b.HBONE = t.meshEndpoints(svc, p)
	}
	t.localize(svc, p, b)
	return ir.BackendKey(svc.Namespace, svc.Name, uint16(p.Port)), b
}

// endpoints lists the ready endpoints of a service port from its
// EndpointSlices, as IP:port, sorted and without duplicates.
func (t *translator) endpoints(svc *corev1.Service, p *corev1.ServicePort) []string {
	// The addresses are written one after the other into one buffer that
	// becomes one string; each endpoint is a substring of it (at 10,000
	// services, one allocation per endpoint and a set to find duplicates
	// were a third of the translation).
	type span struct{ from, to int }
	var spansBuf [8]span
	spans := spansBuf[:0]
	var bufArr [8 * len("255.255.255.255:65535")]byte
	buf := bufArr[:0]
	for _, es := range t.slices[ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(es, p)
		if !ok {
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
				from := len(buf)
				buf = netip.AddrPortFrom(addr.Unmap(), uint16(port)).AppendTo(buf)
				spans = append(spans, span{from, len(buf)})
			}
		}
	}
	if len(spans) == 0 {
		return nil
	}
	all := string(buf)
	out := make([]string, len(spans))
	for i, sp := range spans {
		out[i] = all[sp.from:sp.to]
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sortConditions sorts conditions by conditionLess exactly as
// sort.Slice(cs, less) would, equal conditions included: slices.SortFunc
// runs the same pdqsort, here on pointers, so that the conditions are
// neither copied for each comparison nor swapped (at 10,000 services,
// sort.Slice on the values was a tenth of a translation).
func sortConditions(cs []Condition) {
	ps := make([]*Condition, len(cs))
	for i := range cs {
		ps[i] = &cs[i]
	}
	slices.SortFunc(ps, func(a, b *Condition) int {
		switch {
		case conditionLess(a, b):
			return -1
		case conditionLess(b, a):
			return 1
		}
		return 0
	})
	sorted := make([]Condition, len(cs))
	for i, p := range ps {
		sorted[i] = *p
	}
	copy(cs, sorted)
}

func conditionLess(a, b *Condition) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	if pa, pb := parentIndex(a), parentIndex(b); pa != pb {
		return pa < pb
	}
	return a.Type < b.Type
}

// parentIndex orders a route's conditions by parentRef, the object's own first.
func parentIndex(c *Condition) int {
	if c.Parent == nil {
		return -1
	}
	return c.Parent.Index
}

// slicePort is the target port an EndpointSlice gives the service port p
// (matched by name, the last one listed winning); ok is false when it
// gives none.
func slicePort(es *discoveryv1.EndpointSlice, p *corev1.ServicePort) (port int32, ok bool) {
	for _, ep := range es.Ports {
		name := ""
		if ep.Name != nil {
			name = *ep.Name
		}
		if name == p.Name && ep.Port != nil {
			port, ok = *ep.Port, true
		}
	}
	return port, ok && port >= 0
}
