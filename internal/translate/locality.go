package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// Locality: which endpoints of a service the waypoint prefers, as Istio's
// waypoint (Envoy, configured by istiod) does.
//
// A Service asks for close endpoints with spec.trafficDistribution
// (PreferClose or PreferSameZone; PreferSameNode), else Istio's
// networking.istio.io/traffic-distribution annotation on the Service, else
// on its namespace (values compared without case; an unknown annotation
// value means any endpoint). This is istiod's GetTrafficDistribution. For
// PreferSameZone istiod gives Envoy the failover priority [network,
// region, zone], for PreferSameNode [network, region, zone, subzone,
// hostname]: an endpoint's tier is how many of those, in order, match the
// waypoint's own (a prefix), so PreferSameZone ranks the same zone of the
// same region first, then the same region, then any; one network here.
//
// Where an endpoint runs comes from its pod, as istiod reads it: the pod's
// topology.istio.io/locality (or legacy istio-locality) label
// ("region/zone/subzone", or dotted), else the topology labels of its node
// (topology.kubernetes.io/region and /zone, the failure-domain beta labels
// before them, topology.istio.io/subzone); the node is the EndpointSlice
// endpoint's nodeName, else the pod's. Where the node gives no zone, the
// EndpointSlice endpoint's zone is used (region then stays unknown).
//
// Where the waypoint itself runs: each waypoint pod learns its node's name
// from the downward API (NODE_NAME, spec.nodeName, set by the deployer)
// and finds that node's locality in ir.Waypoint.NodeLocalities, which
// lists the nodes that run this Gateway's pods. The node name, not the
// pod's own topology labels, because labels handed down in the env are
// fixed when the container starts and Kubernetes copies node topology
// labels onto pods only with an admission plugin; through the IR a node
// relabelled takes effect on the next configuration, without a restart.
const (
	AnnotationTrafficDistribution = "networking.istio.io/traffic-distribution"
	// AnnotationLoadBalancer on a Service picks how the waypoint balances
	// among its (closest) endpoints: ROUND_ROBIN (the default) or
	// LEAST_REQUEST, Istio's DestinationRule names; a DestinationRule's
	// load balancer wins over it (destinationrule.go).
	AnnotationLoadBalancer = "kgateway.dev/load-balancer"

	LabelTopologyRegion   = "topology.kubernetes.io/region"
	LabelTopologyZone     = "topology.kubernetes.io/zone"
	LabelTopologySubzone  = "topology.istio.io/subzone"
	LabelTopologyLocality = "topology.istio.io/locality"
	labelLegacyLocality   = "istio-locality"
	labelBetaRegion       = "failure-domain.beta.kubernetes.io/region"
	labelBetaZone         = "failure-domain.beta.kubernetes.io/zone"

	// ConditionLoadBalancing is our condition on a Service whose
	// load-balancing annotations have a value we do not know (written as
	// kgateway-waypoint.kgateway.dev/LoadBalancing, as status names ours).
	ConditionLoadBalancing = "LoadBalancing"
)

// localityIndex holds what locality needs of the snapshot; nil when no
// Service or namespace asks for close endpoints (nothing is indexed).
type localityIndex struct {
	nodes map[string]*corev1.Node
	pods  map[ir.NamespacedName]*corev1.Pod
}

// newLocalityIndex indexes the nodes and pods when some Service or
// namespace names a traffic distribution.
func newLocalityIndex(snap *source.Snapshot) *localityIndex {
	wanted := slices.ContainsFunc(snap.Namespaces, func(n *corev1.Namespace) bool {
		return n.Annotations[AnnotationTrafficDistribution] != ""
	}) || slices.ContainsFunc(snap.Services, func(s *corev1.Service) bool {
		return s.Spec.TrafficDistribution != nil || s.Annotations[AnnotationTrafficDistribution] != ""
	}) || slices.ContainsFunc(snap.ServiceEntries, func(se *istionet.ServiceEntry) bool {
		return se.Annotations[AnnotationTrafficDistribution] != ""
	})
	if !wanted {
		return nil
	}
	x := &localityIndex{nodes: make(map[string]*corev1.Node, len(snap.Nodes)), pods: make(map[ir.NamespacedName]*corev1.Pod, len(snap.Pods))}
	for _, n := range snap.Nodes {
		x.nodes[n.Name] = n
	}
	for _, p := range snap.Pods {
		x.pods[ir.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	return x
}

// trafficDistribution is istiod's GetTrafficDistribution: "" (any
// endpoint) or an ir.TrafficDistribution constant.
func trafficDistribution(svc *corev1.Service, ns *corev1.Namespace) string {
	if td := svc.Spec.TrafficDistribution; td != nil {
		switch *td {
		case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone:
			return ir.TrafficDistributionPreferSameZone
		case corev1.ServiceTrafficDistributionPreferSameNode:
			return ir.TrafficDistributionPreferSameNode
		}
	}
	v, ok := distributionAnnotation(svc.Annotations)
	if !ok && ns != nil {
		v, _ = distributionAnnotation(ns.Annotations)
	}
	return v
}

// distributionAnnotation reads networking.istio.io/traffic-distribution:
// ok is false when it is absent or empty; an unknown value is "" (any).
func distributionAnnotation(a map[string]string) (string, bool) {
	v := a[AnnotationTrafficDistribution]
	if v == "" {
		return "", false
	}
	switch strings.ToLower(v) {
	case "preferclose", "prefersamezone":
		return ir.TrafficDistributionPreferSameZone, true
	case "prefersamenode":
		return ir.TrafficDistributionPreferSameNode, true
	}
	return "", true
}

// loadBalancer reads the Service's kgateway.dev/load-balancer annotation:
// "" (round robin) or ir.LoadBalancerLeastRequest; ok is false for a
// value it does not know (round robin then).
func loadBalancer(svc *corev1.Service) (lb string, ok bool) {
	switch v := svc.Annotations[AnnotationLoadBalancer]; strings.ToUpper(v) {
	case "", "ROUND_ROBIN":
		return "", true
	case ir.LoadBalancerLeastRequest:
		return ir.LoadBalancerLeastRequest, true
	}
	return "", false
}

// localize sets a service port's backend's load balancer, traffic
// distribution and endpoint localities. It only reads the translator.
func (t *translator) localize(svc *corev1.Service, p *corev1.ServicePort, b *ir.Backend) {
	b.LoadBalancer, _ = loadBalancer(svc)
	if t.loc == nil {
		return
	}
	b.TrafficDistribution = trafficDistribution(svc, t.namespaces[svc.Namespace])
	if b.TrafficDistribution == "" {
		return
	}
	var out []ir.EndpointLocality
	for _, es := range t.slices[ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(es, p)
		if !ok {
			continue
		}
		for i := range es.Endpoints {
			e := &es.Endpoints[i]
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			l, node := t.loc.endpointLocality(es, e)
			if l == (ir.Locality{}) && node == "" {
				continue
			}
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				out = append(out, ir.EndpointLocality{Endpoint: netip.AddrPortFrom(addr.Unmap(), uint16(port)).String(), Locality: l, Node: node})
			}
		}
	}
	slices.SortFunc(out, func(a, b ir.EndpointLocality) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	b.Localities = slices.CompactFunc(out, func(a, b ir.EndpointLocality) bool { return a.Endpoint == b.Endpoint })
}

// endpointLocality is where an EndpointSlice endpoint runs, and its node.
func (x *localityIndex) endpointLocality(es *discoveryv1.EndpointSlice, e *discoveryv1.Endpoint) (ir.Locality, string) {
	var pod *corev1.Pod
	if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
		pod = x.pods[ir.NamespacedName{Namespace: cmp.Or(e.TargetRef.Namespace, es.Namespace), Name: e.TargetRef.Name}]
	}
	node := ""
	if e.NodeName != nil {
		node = *e.NodeName
	}
	if node == "" && pod != nil {
		node = pod.Spec.NodeName
	}
	if pod != nil {
		if l, ok := podLocality(pod.Labels); ok {
			return l, node
		}
	}
	l := nodeLocality(x.nodes[node])
	if l.Zone == "" && e.Zone != nil {
		l.Zone = *e.Zone
	}
	return l, node
}

// podLocality reads a pod's topology.istio.io/locality label, else its
// istio-locality label: "region/zone/subzone", or with dots when it has
// no slash (label values cannot hold a slash).
func podLocality(labels map[string]string) (ir.Locality, bool) {
	v, ok := labels[LabelTopologyLocality]
	if !ok {
		v, ok = labels[labelLegacyLocality]
	}
	if !ok || v == "" {
		return ir.Locality{}, false
	}
	if !strings.Contains(v, "/") {
		v = strings.ReplaceAll(v, ".", "/")
	}
	return parseLocality(v), true
}

// parseLocality reads Istio's "region/zone/subzone" (parts may be missing).
func parseLocality(v string) ir.Locality {
	parts := strings.SplitN(v, "/", 3)
	parts = append(parts, "", "")
	return ir.Locality{Region: parts[0], Zone: parts[1], Subzone: parts[2]}
}

// nodeLocality reads a node's topology labels (nil: none).
func nodeLocality(n *corev1.Node) ir.Locality {
	if n == nil {
		return ir.Locality{}
	}
	return ir.Locality{
		Region:  cmp.Or(n.Labels[LabelTopologyRegion], n.Labels[labelBetaRegion]),
		Zone:    cmp.Or(n.Labels[LabelTopologyZone], n.Labels[labelBetaZone]),
		Subzone: n.Labels[LabelTopologySubzone],
	}
}

// nodeLocalities lists, when a backend prefers close endpoints, the
// localities of the nodes that run the Gateway's pods (by the deployer's
// gateway-name label) and of Options.NodeName, for each proxy to find its
// own.
func (t *translator) nodeLocalities() {
	t.localizeServiceEntries()
	if t.loc == nil || !t.anyDistribution() {
		return
	}
	out := map[string]ir.Locality{}
	if n := t.loc.nodes[t.opts.NodeName]; n != nil {
		out[n.Name] = nodeLocality(n)
	}
	for _, p := range t.snap.Pods {
		if p.Namespace != t.gw.Namespace || p.Labels[LabelGatewayName] != t.gw.Name || p.Spec.NodeName == "" {
			continue
		}
		out[p.Spec.NodeName] = nodeLocality(t.loc.nodes[p.Spec.NodeName])
	}
	if len(out) > 0 {
		t.out.NodeLocalities = out
	}
}

func (t *translator) anyDistribution() bool {
	for _, b := range t.out.Backends {
		if b.TrafficDistribution != "" {
			return true
		}
	}
	return false
}

// loadBalancingConditions reports served Services whose traffic
// distribution or load balancer annotation has a value we do not know
// (the annotation is then ignored, as istiod ignores it).
func (t *translator) loadBalancingConditions() {
	for _, s := range t.out.Services {
		if s.Kind != "" {
			continue
		}
		svc := t.services[ir.NamespacedName{Namespace: s.Namespace, Name: s.Name}]
		if svc == nil {
			continue
		}
		var problems []string
		if v, ok := distributionAnnotation(svc.Annotations); ok && v == "" {
			problems = append(problems, fmt.Sprintf("%s %q is not PreferClose, PreferSameZone or PreferSameNode: any endpoint is used", AnnotationTrafficDistribution, svc.Annotations[AnnotationTrafficDistribution]))
		}
		if _, ok := loadBalancer(svc); !ok {
			problems = append(problems, fmt.Sprintf("%s %q is not ROUND_ROBIN or LEAST_REQUEST: round robin is used", AnnotationLoadBalancer, svc.Annotations[AnnotationLoadBalancer]))
		}
		if len(problems) > 0 {
			t.cond(Condition{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Type: ConditionLoadBalancing,
				Status: "False", Reason: "InvalidAnnotation", Message: strings.Join(problems, "; ")})
		}
	}
}

// localizeServiceEntries gives the backends of the ServiceEntries this
// waypoint serves their traffic distribution, as istiod reads it for a
// ServiceEntry (the annotation on it, else on its namespace), and their
// endpoints' localities by IP: an inline endpoint's locality, a
// WorkloadEntry's of the entry's namespace, a pod's (its label, else its
// node's).
func (t *translator) localizeServiceEntries() {
	if t.loc == nil {
		return
	}
	for _, se := range t.snap.ServiceEntries {
		hosts := t.servedSE[ir.NamespacedName{Namespace: se.Namespace, Name: se.Name}]
		if len(hosts) == 0 {
			continue
		}
		td, ok := distributionAnnotation(se.Annotations)
		if !ok {
			if ns := t.namespaces[se.Namespace]; ns != nil {
				td, _ = distributionAnnotation(ns.Annotations)
			}
		}
		if td == "" {
			continue
		}
		where := t.entryPlaces(se)
		for _, h := range hosts {
			for _, p := range h.Ports {
				b := t.out.Backends[p.DefaultBackend]
				if b == nil {
					continue
				}
				b.TrafficDistribution = td
				b.Localities = nil
				for _, ep := range b.Endpoints {
					ap, err := netip.ParseAddrPort(ep)
					if err != nil {
						continue // a DNS name: no locality
					}
					if l, ok := where[ap.Addr()]; ok {
						l.Endpoint = ep
						b.Localities = append(b.Localities, l)
					}
				}
			}
		}
	}
}

// entryPlaces are where the workloads a ServiceEntry can reach run, by IP.
func (t *translator) entryPlaces(se *istionet.ServiceEntry) map[netip.Addr]ir.EndpointLocality {
	out := map[netip.Addr]ir.EndpointLocality{}
	add := func(ip string, l ir.EndpointLocality) {
		if a, err := netip.ParseAddr(ip); err == nil && (l.Locality != (ir.Locality{}) || l.Node != "") {
			if _, seen := out[a.Unmap()]; !seen {
				out[a.Unmap()] = l
			}
		}
	}
	for _, ep := range se.Spec.GetEndpoints() {
		add(ep.GetAddress(), ir.EndpointLocality{Locality: parseLocality(ep.GetLocality())})
	}
	for _, we := range t.snap.WorkloadEntries {
		if we.Namespace == se.Namespace {
			add(we.Spec.GetAddress(), ir.EndpointLocality{Locality: parseLocality(we.Spec.GetLocality())})
		}
	}
	for _, p := range t.snap.Pods {
		if p.Namespace != se.Namespace || p.Status.PodIP == "" {
			continue
		}
		l, ok := podLocality(p.Labels)
		if !ok {
			l = nodeLocality(t.loc.nodes[p.Spec.NodeName])
		}
		add(p.Status.PodIP, ir.EndpointLocality{Locality: l, Node: p.Spec.NodeName})
	}
	return out
}
