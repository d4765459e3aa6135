package translate

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	netv1alpha3 "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// LabelTunnel is how a workload says it speaks HBONE itself
// ("networking.istio.io/tunnel: http", Istio's model.SupportsTunnel).
const LabelTunnel = "networking.istio.io/tunnel"

// selectWorkloads serves the workloads whose own traffic comes to this
// waypoint (istio.io/waypoint-for: workload or all): the Pods,
// WorkloadEntries and ServiceEntry endpoints the capture rules bind, as
// istiod builds its workloads (workloads.go: a pod that has finished or
// has no IP is no workload; a WorkloadEntry's spec.labels and
// metadata.labels are merged, the metadata winning; a ServiceEntry's
// endpoint is decided by its own labels in the entry's namespace). Only
// workloads with an IP address can be addressed, so a WorkloadEntry or
// endpoint whose address is a hostname is left out.
func (t *translator) selectWorkloads() {
	if !t.capture.takes(trafficKindWorkload) {
		return
	}
	t.out.WorkloadPort = &ir.ServicePort{Protocol: ir.ProtocolDetect}
	for _, p := range t.snap.Pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		addrs := podIPs(p)
		if len(addrs) == 0 || t.capture.decide(p.Namespace, p.Labels, trafficKindWorkload) != CaptureBound {
			continue
		}
		w := &ir.Workload{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, Addresses: addrs,
			Identity: t.identity(p.Namespace, p.Spec.ServiceAccountName)}
		w.HBONE = t.out.HBONE && t.podInAmbient(p)
		t.out.Workloads = append(t.out.Workloads, w)
	}
	for _, we := range t.snap.WorkloadEntries {
		l := we.Labels
		if len(we.Spec.GetLabels()) > 0 {
			l = maps.Clone(we.Spec.GetLabels())
			maps.Copy(l, we.Labels)
		}
		addr, ok := ipAddress(we.Spec.GetAddress())
		if !ok || t.capture.decide(we.Namespace, l, trafficKindWorkload) != CaptureBound {
			continue
		}
		t.out.Workloads = append(t.out.Workloads, &ir.Workload{Kind: "WorkloadEntry", Namespace: we.Namespace, Name: we.Name,
			Addresses: []string{addr}, Identity: t.identity(we.Namespace, we.Spec.GetServiceAccount()),
			HBONE: t.out.HBONE && speaksHBONE(l, we.Annotations)})
	}
	for _, se := range t.snap.ServiceEntries {
		for _, ep := range se.Spec.GetEndpoints() {
			addr, ok := ipAddress(ep.GetAddress())
			if !ok || t.capture.decide(se.Namespace, ep.GetLabels(), trafficKindWorkload) != CaptureBound {
				continue
			}
			t.out.Workloads = append(t.out.Workloads, endpointWorkload(t, se.Namespace, se.Name, addr, ep,
				t.out.HBONE && speaksHBONE(se.Labels, se.Annotations)))
		}
	}
	slices.SortStableFunc(t.out.Workloads, func(a, b *ir.Workload) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name),
			slices.Compare(a.Addresses, b.Addresses))
	})
}

func endpointWorkload(t *translator, ns, name, addr string, ep *netv1alpha3.WorkloadEntry, hbone bool) *ir.Workload {
	return &ir.Workload{Kind: "ServiceEntry", Namespace: ns, Name: name, Addresses: []string{addr},
		Identity: t.identity(ns, ep.GetServiceAccount()), HBONE: hbone}
}

// identity is the SPIFFE identity of a service account ("default" when empty).
func (t *translator) identity(ns, sa string) string {
	return "spiffe://" + t.opts.TrustDomain + "/ns/" + ns + "/sa/" + cmp.Or(sa, "default")
}

// podInAmbient is inAmbient for any mode (the pod index is native mode's).
func (t *translator) podInAmbient(p *corev1.Pod) bool {
	if v, ok := p.Labels[LabelDataplaneMode]; ok {
		return v == "ambient"
	}
	ns := t.namespaces[p.Namespace]
	return ns != nil && ns.Labels[LabelDataplaneMode] == "ambient"
}

// speaksHBONE reports whether a WorkloadEntry or ServiceEntry endpoint is
// reached over HBONE, as istiod sets its tunnel protocol
// (setTunnelProtocol): ambient.istio.io/redirection: enabled, or the
// tunnel label http.
func speaksHBONE(labels, annotations map[string]string) bool {
	return annotations[annotationAmbientRedirect] == "enabled" || labels[LabelTunnel] == "http"
}

// podIPs are a pod's IPs (status.podIPs, else status.podIP), canonical;
// nil when one does not parse (istiod then builds no workload).
func podIPs(p *corev1.Pod) []string {
	var raw []string
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw = []string{p.Status.PodIP}
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		a, ok := ipAddress(r)
		if !ok {
			return nil
		}
		out = append(out, a)
	}
	return out
}

// ipAddress is s as a canonical IP address; false when s is not one.
func ipAddress(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", false
	}
	return a.Unmap().String(), true
}
