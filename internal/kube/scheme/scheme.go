// Package scheme is the runtime.Scheme of the controller: the Kubernetes
// built-in types, Gateway API (v1, v1beta1) and the Istio types the
// waypoint reads (networking, security), and kgateway's TrafficPolicy.
package scheme

import (
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"
	istiotelv1alpha1 "istio.io/client-go/pkg/apis/telemetry/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
)

// Scheme knows every type the controller reads or writes.
var Scheme = New()

// New builds a fresh Scheme with the same types.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(gwv1.Install(s))
	utilruntime.Must(gwv1beta1.Install(s))
	utilruntime.Must(istionet.AddToScheme(s))
	utilruntime.Must(istiosec.AddToScheme(s))
	// --- kgateway TrafficPolicy (begin) ---
	utilruntime.Must(kgwv1alpha1.AddToScheme(s))
	// --- kgateway TrafficPolicy (end) ---
	utilruntime.Must(istiotel.AddToScheme(s))         // Telemetry API (telemetry branch)
	utilruntime.Must(istiotelv1alpha1.AddToScheme(s)) // Telemetry API (telemetry branch)
	return s
}
