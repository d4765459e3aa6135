package translate

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// LabelDataplaneMode enrols a pod (or every pod of a namespace) in the
// ambient mesh: "ambient"; "none" on a pod opts it out.
const LabelDataplaneMode = "istio.io/dataplane-mode"

// indexPods makes the pods findable by the EndpointSlices' targetRefs
// (native mode: a mesh endpoint is reached over HBONE with its pod's
// identity).
func (t *translator) indexPods() {
	t.pods = make(map[ir.NamespacedName]*corev1.Pod, len(t.snap.Pods))
	for _, p := range t.snap.Pods {
		t.pods[ir.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
}

// inAmbient reports whether a pod is enrolled in the ambient mesh, as
// istiod decides it: its own istio.io/dataplane-mode label, else its
// namespace's, must be "ambient".
func (t *translator) inAmbient(p *corev1.Pod) bool {
	if v, ok := p.Labels[LabelDataplaneMode]; ok {
		return v == "ambient"
	}
	ns := t.namespaces[p.Namespace]
	return ns != nil && ns.Labels[LabelDataplaneMode] == "ambient"
}

// meshEndpoints lists the ready endpoints of a service port whose pod is
// in the ambient mesh, with the pod's SPIFFE identity, sorted by endpoint.
// An endpoint without a Pod targetRef, or whose pod is not known or not
// enrolled, is left out: it gets plain TCP.
func (t *translator) meshEndpoints(svc *corev1.Service, p *corev1.ServicePort) []ir.MeshEndpoint {
	var out []ir.MeshEndpoint
	for _, es := range t.slices[ir.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] {
		port, ok := slicePort(es, p)
		if !ok {
			continue
		}
		for _, e := range es.Endpoints {
			if (e.Conditions.Ready != nil && !*e.Conditions.Ready) || e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
				continue
			}
			ns := cmp.Or(e.TargetRef.Namespace, es.Namespace)
			pod := t.pods[ir.NamespacedName{Namespace: ns, Name: e.TargetRef.Name}]
			if pod == nil || !t.inAmbient(pod) {
				continue
			}
			id := "spiffe://" + t.opts.TrustDomain + "/ns/" + pod.Namespace + "/sa/" + cmp.Or(pod.Spec.ServiceAccountName, "default")
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				out = append(out, ir.MeshEndpoint{Endpoint: netip.AddrPortFrom(addr.Unmap(), uint16(port)).String(), Identity: id})
			}
		}
	}
	slices.SortFunc(out, func(a, b ir.MeshEndpoint) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return slices.CompactFunc(out, func(a, b ir.MeshEndpoint) bool { return a.Endpoint == b.Endpoint })
}
