package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	netv1alpha3 "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// selectServiceEntries serves the ServiceEntries that opt into this
// waypoint (their own istio.io/use-waypoint label, else their namespace's),
// one ir.Service per host. Clients reach them by the entry's addresses, or
// by hostname when ztunnel passes it (PROXY TLV 0xD1).
func (t *translator) selectServiceEntries() {
	for _, se := range t.snap.ServiceEntries {
		r := t.capture.decide(se.Namespace, se.Labels, trafficKindService)
		// Or this Gateway is the entry's weighted canary (canary.go).
		r, why := t.captureCanary("ServiceEntry", &se.ObjectMeta, r)
		if why != nil {
			t.cond(*why)
		}
		if r != CaptureBound {
			if c := t.capture.notBound("ServiceEntry", se.Namespace, se.Name, r); c != nil {
				t.cond(*c)
			}
			continue
		}
		key := ir.NamespacedName{Namespace: se.Namespace, Name: se.Name}
		for _, host := range se.Spec.GetHosts() {
			s := t.serviceEntryHost(se, host)
			t.out.Services = append(t.out.Services, s)
			t.servedSE[key] = append(t.servedSE[key], s)
		}
	}
}

func (t *translator) sortServices() {
	// A stable sort: services that compare equal keep their order. The
	// snapshot is usually in this order already, which costs one pass.
	cmpServices := func(a, b *ir.Service) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Hostname, b.Hostname)
	}
	if !slices.IsSortedFunc(t.out.Services, cmpServices) {
		slices.SortStableFunc(t.out.Services, cmpServices)
	}
}

func (t *translator) serviceEntryHost(se *istionet.ServiceEntry, host string) *ir.Service {
	out := &ir.Service{Kind: "ServiceEntry", Name: se.Name, Namespace: se.Namespace, Hostname: host,
		VIPs: serviceEntryVIPs(se, host)}
	for _, p := range se.Spec.GetPorts() {
		proto := ir.ProtocolTCP
		backendProto := "TCP"
		// As Istio's protocols: gRPC-Web is HTTP, but not HTTP/2.
		switch strings.ToUpper(p.GetProtocol()) {
		case "HTTP", "GRPC-WEB":
			proto, backendProto = ir.ProtocolHTTP, "HTTP1"
		case "HTTP2", "GRPC":
			proto, backendProto = ir.ProtocolHTTP, "H2C"
		}
		port := uint16(p.GetNumber())
		key := ir.BackendKey(se.Namespace, "ServiceEntry/"+host, port)
		eps, weights, mesh := t.serviceEntryEndpoints(se, host, p)
		t.out.Backends[key] = &ir.Backend{
			Service:   ir.NamespacedName{Namespace: se.Namespace, Name: host},
			Port:      port,
			Protocol:  backendProto,
			Endpoints: eps,
			Weights:   weights,
			HBONE:     mesh,
		}
		out.Ports = append(out.Ports, &ir.ServicePort{Port: port, Name: p.GetName(), Protocol: proto, DefaultBackend: key})
	}
	sort.Slice(out.Ports, func(i, j int) bool { return out.Ports[i].Port < out.Ports[j].Port })
	return out
}

// autoAllocateLabel opts a ServiceEntry out of istiod's address
// auto-allocation ("false").
const autoAllocateLabel = "networking.istio.io/enable-autoallocate-ip"

// serviceEntryVIPs are the addresses clients reach a host of the entry by,
// as istiod gives them to ztunnel (ambient services.go,
// constructServiceEntries): spec.addresses (IPs, or single-address CIDRs)
// for every host; when there are none, the addresses istiod's
// auto-allocation wrote in status.addresses for this host (ipallocate),
// unless resolution is NONE, the entry opts out with
// networking.istio.io/enable-autoallocate-ip: "false", or the host is a
// wildcard (auto-allocated only for DYNAMIC_DNS).
func serviceEntryVIPs(se *istionet.ServiceEntry, host string) []string {
	var vips []string
	add := func(a netip.Addr) {
		if s := a.Unmap().String(); !slices.Contains(vips, s) {
			vips = append(vips, s)
		}
	}
	for _, a := range se.Spec.GetAddresses() {
		if ip, err := netip.ParseAddr(a); err == nil {
			add(ip)
		} else if pfx, err := netip.ParsePrefix(a); err == nil && pfx.IsSingleIP() {
			add(pfx.Addr())
		}
		// A wider CIDR is no address a connection can be looked up by
		// (the proxy's lookup is by exact VIP): left out.
	}
	res := se.Spec.GetResolution()
	if len(se.Spec.GetAddresses()) > 0 || res == netv1alpha3.ServiceEntry_NONE ||
		strings.EqualFold(se.Labels[autoAllocateLabel], "false") ||
		(strings.HasPrefix(host, "*") && res != netv1alpha3.ServiceEntry_DYNAMIC_DNS) {
		return vips
	}
	for _, a := range se.Status.GetAddresses() {
		if a.GetHost() != host {
			continue
		}
		if ip, err := netip.ParseAddr(a.GetValue()); err == nil {
			add(ip)
		}
	}
	return vips
}

// networkLabel is the label that puts a namespace (the root namespace:
// the mesh's own network) on a network.
const networkLabel = "topology.istio.io/network"

// serviceEntryEndpoints lists where a ServiceEntry port's traffic goes,
// as istiod builds the entry's workloads (ambient workloads.go): its
// inline endpoints, else the Pods and WorkloadEntries of its namespace its
// workloadSelector picks; with DNS resolution and neither, the host
// itself. An endpoint's port is its ports map's entry for the port's
// name, else the targetPort, else the port number. Hostname endpoints
// (the proxy resolves them, and follows their TTL) are kept only for DNS
// and DNS_ROUND_ROBIN resolution. Endpoints on another network than the
// mesh's (the root namespace's topology.istio.io/network) are reached only
// through that network's gateway, which this waypoint does not do: left
// out. weights holds the endpoints whose weight is not 1; mesh, in native
// mode, the selected pods enrolled in ambient, with their identity (as a
// Service's, hbone.go).
func (t *translator) serviceEntryEndpoints(se *istionet.ServiceEntry, host string, p *netv1alpha3.ServicePort) (out []string, weights map[string]uint32, mesh []ir.MeshEndpoint) {
	target := p.GetTargetPort()
	if target == 0 {
		target = p.GetNumber()
	}
	res := se.Spec.GetResolution()
	dns := res == netv1alpha3.ServiceEntry_DNS || res == netv1alpha3.ServiceEntry_DNS_ROUND_ROBIN
	localNet := ""
	if ns := t.namespaces[t.opts.RootNamespace]; ns != nil {
		localNet = ns.Labels[networkLabel]
	}
	seen := map[string]bool{}
	all := map[string]uint32{}
	addEndpoint := func(we *netv1alpha3.WorkloadEntry) string {
		addr := we.GetAddress()
		if addr == "" || strings.HasPrefix(addr, "unix://") || (we.GetNetwork() != "" && we.GetNetwork() != localNet) {
			return ""
		}
		port := target
		if n, ok := we.GetPorts()[p.GetName()]; ok && n != 0 {
			port = n
		}
		var ep string
		if ip, err := netip.ParseAddr(addr); err == nil {
			ep = netip.AddrPortFrom(ip.Unmap(), uint16(port)).String()
		} else if dns {
			ep = addr + ":" + strconv.Itoa(int(port))
		} else {
			return ""
		}
		w := max(we.GetWeight(), 1) // 0: the default, 1
		if !seen[ep] {
			seen[ep] = true
			out = append(out, ep)
			all[ep] = w
		} else {
			all[ep] += w // listed twice: both shares
		}
		return ep
	}
	for _, ep := range se.Spec.GetEndpoints() {
		addEndpoint(ep)
	}
	sel := se.Spec.GetWorkloadSelector().GetLabels()
	if len(se.Spec.GetEndpoints()) == 0 && len(sel) > 0 {
		for _, pod := range t.snap.Pods {
			if pod.Namespace != se.Namespace || pod.Status.PodIP == "" || !podServing(pod) ||
				!labelSelectorMatches(sel, pod.Labels) {
				continue
			}
			ep := addEndpoint(&netv1alpha3.WorkloadEntry{Address: pod.Status.PodIP})
			if ep != "" && t.pods != nil && t.inAmbient(pod) {
				mesh = append(mesh, ir.MeshEndpoint{Endpoint: ep,
					Identity: "spiffe://" + t.opts.TrustDomain + "/ns/" + pod.Namespace + "/sa/" + cmp.Or(pod.Spec.ServiceAccountName, "default")})
			}
		}
		for _, we := range t.snap.WorkloadEntries {
			if we.Namespace != se.Namespace || !labelSelectorMatches(sel, workloadEntryLabels(we)) {
				continue
			}
			addEndpoint(&we.Spec)
		}
	}
	if len(se.Spec.GetEndpoints()) == 0 && se.Spec.GetWorkloadSelector() == nil && dns && !strings.HasPrefix(host, "*") {
		addEndpoint(&netv1alpha3.WorkloadEntry{Address: host})
	}
	sort.Strings(out)
	for ep, w := range all {
		if w != 1 {
			if weights == nil {
				weights = map[string]uint32{}
			}
			weights[ep] = w
		}
	}
	slices.SortFunc(mesh, func(a, b ir.MeshEndpoint) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	mesh = slices.CompactFunc(mesh, func(a, b ir.MeshEndpoint) bool { return a.Endpoint == b.Endpoint })
	return out, weights, mesh
}

// podServing reports whether a selected pod takes traffic, as istiod marks
// a pod workload healthy: not terminal, Ready, not being deleted.
func podServing(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// workloadEntryLabels are a WorkloadEntry's labels as istiod reads them:
// spec.labels and metadata.labels merged, metadata's winning.
func workloadEntryLabels(we *istionet.WorkloadEntry) map[string]string {
	if len(we.Spec.GetLabels()) == 0 {
		return we.Labels
	}
	m := make(map[string]string, len(we.Spec.GetLabels())+len(we.Labels))
	for k, v := range we.Spec.GetLabels() {
		m[k] = v
	}
	for k, v := range we.Labels {
		m[k] = v
	}
	return m
}
