package telemetry

import "strings"

// Peer is one end of a request as Istio's metrics describe it. Empty fields
// are reported with Istio's defaults ("unknown", or "latest" for a source's
// canonical revision).
type Peer struct {
	// Principal is the SPIFFE identity, e.g.
	// spiffe://cluster.local/ns/default/sa/curl (Istio reports it with the
	// spiffe:// scheme).
	Principal string
	// Namespace is the workload's namespace. When empty it is taken from the
	// principal's /ns/<namespace>/ segment, as Istio does.
	Namespace string
	// Workload is the owning workload's name (Deployment, Job, ... or the pod).
	Workload string
	// App and Version are the pod's app and version labels.
	App, Version string
	// CanonicalService and CanonicalRevision are the pod's
	// service.istio.io/canonical-name and canonical-revision labels.
	CanonicalService, CanonicalRevision string
	// Cluster is the Istio cluster ID the workload runs in.
	Cluster string

	// contradicted is set by ParseBaggage when the baggage names another
	// namespace than the one already known (the identity's).
	contradicted bool
}

// PeerFromPrincipal returns a Peer with the principal and the namespace it
// names ("spiffe://td/ns/<namespace>/sa/<sa>"); nothing else is known.
func PeerFromPrincipal(principal string) Peer {
	return Peer{Principal: principal, Namespace: NamespaceFromPrincipal(principal)}
}

// NamespaceFromPrincipal returns the <namespace> of "<...>/ns/<namespace>/...",
// or "" when the principal has no such segment. It does not allocate.
func NamespaceFromPrincipal(principal string) string {
	const key = "/ns/"
	i := strings.Index(principal, key)
	if i < 0 {
		return ""
	}
	rest := principal[i+len(key):]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return rest[:j]
	}
	return rest
}

// ParseBaggage fills the fields of p that are still empty from a W3C baggage
// header in the encoding Istio's metadata exchange uses:
// k8s.namespace.name, k8s.cluster.name, service.name (canonical service),
// service.version (canonical revision), app.name, app.version and the
// workload as k8s.deployment.name, k8s.pod.name, k8s.job.name or
// k8s.cronjob.name (k8s.instance.name and unknown keys are ignored). Values
// are substrings of the header: no allocation.
//
// The header comes from the client, so its values are claims: the metrics
// use them only as far as the client's identity backs them (see labels.go;
// a baggage namespace that contradicts the identity's discards them all).
func ParseBaggage(baggage string, p *Peer) {
	for baggage != "" {
		var member string
		if i := strings.IndexByte(baggage, ','); i >= 0 {
			member, baggage = baggage[:i], baggage[i+1:]
		} else {
			member, baggage = baggage, ""
		}
		if i := strings.IndexByte(member, ';'); i >= 0 { // member properties
			member = member[:i]
		}
		eq := strings.IndexByte(member, '=')
		if eq < 0 {
			continue
		}
		key := strings.TrimSpace(member[:eq])
		val := strings.TrimSpace(member[eq+1:])
		if val == "" {
			continue
		}
		var field *string
		switch key {
		case "k8s.namespace.name":
			field = &p.Namespace
		case "k8s.cluster.name":
			field = &p.Cluster
		case "service.name":
			field = &p.CanonicalService
		case "service.version":
			field = &p.CanonicalRevision
		case "app.name":
			field = &p.App
		case "app.version":
			field = &p.Version
		case "k8s.deployment.name", "k8s.pod.name", "k8s.job.name", "k8s.cronjob.name":
			field = &p.Workload
		default:
			continue
		}
		if *field == "" {
			*field = val
		} else if field == &p.Namespace && *field != val {
			p.contradicted = true
		}
	}
}
