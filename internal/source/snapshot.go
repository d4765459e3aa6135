// Package source defines the Snapshot: the set of Kubernetes objects the
// translator reads, and Istio's mesh config. Two sources fill it — files
// (standalone mode, package source/files, with the --mesh-config file) and a
// cluster (controller mode, with istiod's mesh ConfigMap) — so both modes
// share one translator.
package source

import (
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
)

// Snapshot is one consistent view of the objects that matter to waypoints.
// Objects are real API types. A Snapshot is never modified after it is built.
type Snapshot struct {
	Namespaces     []*corev1.Namespace
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
	// Nodes give endpoints their region and zone (topology labels).
	Nodes                  []*corev1.Node
	GatewayClasses         []*gwv1.GatewayClass
	Gateways               []*gwv1.Gateway
	HTTPRoutes             []*gwv1.HTTPRoute
	GRPCRoutes             []*gwv1.GRPCRoute
	TCPRoutes              []*gwv1.TCPRoute
	ReferenceGrants        []*gwv1.ReferenceGrant
	ServiceEntries         []*istionet.ServiceEntry
	WorkloadEntries        []*istionet.WorkloadEntry
	AuthorizationPolicies  []*istiosec.AuthorizationPolicy
	RequestAuthentications []*istiosec.RequestAuthentication

	// --- kgateway TrafficPolicy (begin) ---
	// TrafficPolicies are kgateway's gateway.kgateway.dev/v1alpha1
	// TrafficPolicies (docs/trafficpolicy.md).
	TrafficPolicies []*kgwv1alpha1.TrafficPolicy
	// GatewayExtensions are the external services TrafficPolicies name
	// (extAuth's ext_authz server).
	GatewayExtensions []*kgwv1alpha1.GatewayExtension
	// --- kgateway TrafficPolicy (end) ---

	// --- Telemetry API (telemetry branch) ---
	// Telemetries are telemetry.istio.io Telemetry objects (v1, v1alpha1).
	Telemetries []*istiotel.Telemetry
	// --- end Telemetry API ---
	// --- DestinationRule (issue 15, branch dr) ---
	// DestinationRules: networking.istio.io v1 (v1beta1 and v1alpha3
	// share the schema and decode into it).
	DestinationRules []*istionet.DestinationRule
	// --- end DestinationRule ---
	// MeshConfig is Istio's mesh config, parsed; nil is Istio's default
	// mesh config (no mesh config file, or no mesh ConfigMap).
	MeshConfig *meshconfig.Config
}
