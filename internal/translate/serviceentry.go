package translate

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	netv1alpha3 "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"

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
	out := &ir.Service{Kind: "ServiceEntry", Name: se.Name, Namespace: se.Namespace, Hostname: host}
	for _, a := range se.Spec.GetAddresses() {
		if ip, err := netip.ParseAddr(a); err == nil {
			out.VIPs = append(out.VIPs, ip.Unmap().String())
		}
	}
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
		t.out.Backends[key] = &ir.Backend{
			Service:   ir.NamespacedName{Namespace: se.Namespace, Name: host},
			Port:      port,
			Protocol:  backendProto,
			Endpoints: t.serviceEntryEndpoints(se, host, p),
		}
		out.Ports = append(out.Ports, &ir.ServicePort{Port: port, Name: p.GetName(), Protocol: proto, DefaultBackend: key})
	}
	sort.Slice(out.Ports, func(i, j int) bool { return out.Ports[i].Port < out.Ports[j].Port })
	return out
}

// serviceEntryEndpoints lists where a ServiceEntry port's traffic goes:
// its inline endpoints (or the pods its workloadSelector picks) for STATIC
// resolution; the endpoints' or the host's name for DNS resolution.
func (t *translator) serviceEntryEndpoints(se *istionet.ServiceEntry, host string, p *netv1alpha3.ServicePort) []string {
	target := p.GetTargetPort()
	if target == 0 {
		target = p.GetNumber()
	}
	portFor := func(ports map[string]uint32) uint32 {
		if n, ok := ports[p.GetName()]; ok && n != 0 {
			return n
		}
		return target
	}
	var out []string
	res := se.Spec.GetResolution()
	for _, ep := range se.Spec.GetEndpoints() {
		addr := ep.GetAddress()
		if addr == "" || strings.HasPrefix(addr, "unix://") {
			continue
		}
		if ip, err := netip.ParseAddr(addr); err == nil {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(portFor(ep.GetPorts()))).String())
		} else if res == netv1alpha3.ServiceEntry_DNS || res == netv1alpha3.ServiceEntry_DNS_ROUND_ROBIN {
			out = append(out, addr+":"+strconv.Itoa(int(portFor(ep.GetPorts()))))
		}
	}
	if sel := se.Spec.GetWorkloadSelector(); sel != nil && len(se.Spec.GetEndpoints()) == 0 {
		for _, pod := range t.snap.Pods {
			if pod.Namespace != se.Namespace || pod.Status.PodIP == "" || !labelSelectorMatches(sel.GetLabels(), pod.Labels) {
				continue
			}
			if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
				out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(target)).String())
			}
		}
	}
	if len(out) == 0 && len(se.Spec.GetEndpoints()) == 0 && se.Spec.GetWorkloadSelector() == nil &&
		(res == netv1alpha3.ServiceEntry_DNS || res == netv1alpha3.ServiceEntry_DNS_ROUND_ROBIN) {
		out = append(out, host+":"+strconv.Itoa(int(target)))
	}
	sort.Strings(out)
	return out
}
