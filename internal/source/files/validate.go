package files

import (
	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"

	"bufio"
	"bytes"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func newBufReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

// validate rejects objects the Kubernetes API server would refuse in ways the
// translator cannot report as a status condition: without them the waypoint
// could not even address the object.
func validate(obj any) error {
	switch o := obj.(type) {
	case *corev1.Service:
		return validateService(o)
	case *discoveryv1.EndpointSlice:
		return validateEndpointSlice(o)
	case *gwv1.Gateway:
		if o.Spec.GatewayClassName == "" {
			return fmt.Errorf("spec.gatewayClassName is required")
		}
	case *kgwv1alpha1.GatewayParameters:
		// What kgateway's CRD checks; the deployment knobs themselves
		// mean nothing to standalone.
		return o.Spec.Validate()
	}
	return nil
}

func validateService(s *corev1.Service) error {
	if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
		return fmt.Errorf("metadata.name %q: %s", s.Name, errs[0])
	}
	ips := s.Spec.ClusterIPs
	if s.Spec.ClusterIP != "" && len(ips) == 0 {
		ips = []string{s.Spec.ClusterIP}
	}
	for i, ip := range ips {
		if ip == corev1.ClusterIPNone {
			continue
		}
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("spec.clusterIPs[%d]: %q is not an IP address", i, ip)
		}
	}
	if s.Spec.ClusterIP != "" && len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIP != s.Spec.ClusterIPs[0] {
		return fmt.Errorf("spec.clusterIP %q must equal spec.clusterIPs[0] %q", s.Spec.ClusterIP, s.Spec.ClusterIPs[0])
	}
	seen := map[int32]bool{}
	for i, p := range s.Spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("spec.ports[%d].port %d: must be between 1 and 65535", i, p.Port)
		}
		if seen[p.Port] && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return fmt.Errorf("spec.ports[%d].port %d: duplicate port", i, p.Port)
		}
		seen[p.Port] = true
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			return fmt.Errorf("spec.ports[%d].name: required when a service has more than one port", i)
		}
		if tp := p.TargetPort; tp.IntVal < 0 || tp.IntVal > 65535 {
			return fmt.Errorf("spec.ports[%d].targetPort %d: must be between 1 and 65535", i, tp.IntVal)
		}
	}
	return nil
}

func validateEndpointSlice(e *discoveryv1.EndpointSlice) error {
	for i, ep := range e.Endpoints {
		for j, a := range ep.Addresses {
			if e.AddressType == discoveryv1.AddressTypeFQDN {
				continue
			}
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("endpoints[%d].addresses[%d]: %q is not an IP address", i, j, a)
			}
		}
	}
	for i, p := range e.Ports {
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			return fmt.Errorf("ports[%d].port %d: must be between 1 and 65535", i, *p.Port)
		}
	}
	return nil
}
