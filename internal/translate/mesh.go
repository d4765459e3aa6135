package translate

import (
	"maps"
	"slices"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// meshSettings copies what the data plane needs from the mesh config into
// the waypoint: path normalization, the default retry policy and the
// external authorizers, each with the backend it is reached by.
func (t *translator) meshSettings() {
	mc := t.snap.MeshConfig
	if mc == nil {
		return
	}
	t.out.PathNormalization = mc.PathNormalization
	if mc.DefaultRetry != nil {
		r := *mc.DefaultRetry
		r.Codes = slices.Clone(r.Codes)
		t.out.DefaultRetry = &r
	}
	if len(mc.ExtAuthzProviders) == 0 {
		return
	}
	t.out.ExtAuthzProviders = make(map[string]*ir.ExtAuthzProvider, len(mc.ExtAuthzProviders))
	for _, name := range slices.Sorted(maps.Keys(mc.ExtAuthzProviders)) {
		// A copy: the snapshot's mesh config is shared and never written.
		p := *mc.ExtAuthzProviders[name]
		p.Backend = t.authorizerBackend(p.Namespace, p.Host, p.Port)
		t.out.ExtAuthzProviders[name] = &p
	}
}

// authorizerBackend finds the service an external authorizer's host names,
// as istiod looks the provider's service up in its registry: a Kubernetes
// Service (name.namespace.svc.<cluster domain>, or the shorter
// name.namespace.svc and name.namespace), else a ServiceEntry host, in the
// provider's namespace when it names one. It returns the key of the
// backend for the port, "" when there is none (the proxy then dials the
// host itself).
func (t *translator) authorizerBackend(namespace, host string, port uint16) string {
	host = strings.TrimSuffix(host, ".")
	if namespace == "*" || namespace == "." {
		namespace = ""
	}
	if name, rest, ok := strings.Cut(host, "."); ok {
		ns, suffix, _ := strings.Cut(rest, ".")
		if (suffix == "" || suffix == "svc" || suffix == "svc."+t.opts.ClusterDomain) && (namespace == "" || namespace == ns) {
			if svc := t.services[ir.NamespacedName{Namespace: ns, Name: name}]; svc != nil {
				if sp := servicePort(svc, int32(port)); sp != nil {
					return t.backendFor(svc, sp)
				}
				return ""
			}
		}
	}
	for _, se := range t.snap.ServiceEntries {
		if (namespace != "" && se.Namespace != namespace) || !slices.Contains(se.Spec.GetHosts(), host) {
			continue
		}
		for _, p := range se.Spec.GetPorts() {
			if p.GetNumber() != uint32(port) {
				continue
			}
			key := ir.BackendKey(se.Namespace, "ServiceEntry/"+host, port)
			if _, ok := t.out.Backends[key]; !ok {
				t.serviceEntryHost(se, host) // registers the host's backends
			}
			return key
		}
	}
	return ""
}
