package v1alpha1

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GatewayParameters is kgateway 2.1's deployment settings for the proxies
// of a Gateway, referenced from a GatewayClass's spec.parametersRef or a
// Gateway's spec.infrastructure.parametersRef. Written by hand from
// kgateway 2.1's api/v1alpha1/gateway_parameters_types.go and
// kube_types.go, same JSON names. The sections that configure containers
// the waypoint does not run (sdsContainer, istio, stats, aiExtension,
// agentgateway) and selfManaged are kept as raw JSON, so that a manifest
// carrying them decodes and the deployer can name them on the Gateway.
type GatewayParameters struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GatewayParametersSpec `json:"spec,omitempty"`
	// Status is empty: kgateway 2.1 does not implement it either.
	Status GatewayParametersStatus `json:"status,omitempty"`
}

// GatewayParametersList is a list of GatewayParameters.
type GatewayParametersList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GatewayParameters `json:"items"`
}

// GatewayParametersSpec: exactly one of kube and selfManaged (the CRD
// checks it).
type GatewayParametersSpec struct {
	Kube        *KubernetesProxyConfig `json:"kube,omitempty"`
	SelfManaged json.RawMessage        `json:"selfManaged,omitempty"`
}

// GatewayParametersStatus is kgateway's (empty) status.
type GatewayParametersStatus struct{}

// KubernetesProxyConfig is spec.kube: the objects provisioned for a Gateway.
type KubernetesProxyConfig struct {
	Deployment     *ProxyDeployment `json:"deployment,omitempty"`
	EnvoyContainer *EnvoyContainer  `json:"envoyContainer,omitempty"`
	PodTemplate    *Pod             `json:"podTemplate,omitempty"`
	Service        *Service         `json:"service,omitempty"`
	ServiceAccount *ServiceAccount  `json:"serviceAccount,omitempty"`

	// FloatingUserID unsets runAsUser in the security contexts
	// (deprecated in kgateway for omitDefaultSecurityContext).
	FloatingUserID *bool `json:"floatingUserId,omitempty"`
	// OmitDefaultSecurityContext leaves the security contexts to the
	// platform (OpenShift): only the user's, if any, are rendered.
	OmitDefaultSecurityContext *bool `json:"omitDefaultSecurityContext,omitempty"`

	// Not meaningful for the waypoint's single proxy container: reported.
	SdsContainer json.RawMessage `json:"sdsContainer,omitempty"`
	Istio        json.RawMessage `json:"istio,omitempty"`
	Stats        json.RawMessage `json:"stats,omitempty"`
	AiExtension  json.RawMessage `json:"aiExtension,omitempty"`
	Agentgateway json.RawMessage `json:"agentgateway,omitempty"`
}

// ProxyDeployment is spec.kube.deployment.
type ProxyDeployment struct {
	Replicas *int32                     `json:"replicas,omitempty"`
	Strategy *appsv1.DeploymentStrategy `json:"strategy,omitempty"`
}

// EnvoyContainer is spec.kube.envoyContainer: for the waypoint, its one
// proxy container.
type EnvoyContainer struct {
	Bootstrap         *EnvoyBootstrap              `json:"bootstrap,omitempty"`
	Image             *Image                       `json:"image,omitempty"`
	SecurityContext   *corev1.SecurityContext      `json:"securityContext,omitempty"`
	Resources         *corev1.ResourceRequirements `json:"resources,omitempty"`
	Env               []corev1.EnvVar              `json:"env,omitempty"`
	ExtraVolumeMounts []corev1.VolumeMount         `json:"extraVolumeMounts,omitempty"`
}

// EnvoyBootstrap is Envoy's log level and its per-component levels.
type EnvoyBootstrap struct {
	LogLevel           *string           `json:"logLevel,omitempty"`
	ComponentLogLevels map[string]string `json:"componentLogLevels,omitempty"`
}

// Image is a container image by parts; unset parts keep the default's.
type Image struct {
	Registry   *string            `json:"registry,omitempty"`
	Repository *string            `json:"repository,omitempty"`
	Tag        *string            `json:"tag,omitempty"`
	Digest     *string            `json:"digest,omitempty"`
	PullPolicy *corev1.PullPolicy `json:"pullPolicy,omitempty"`
}

// Service is spec.kube.service.
type Service struct {
	Type                  *corev1.ServiceType `json:"type,omitempty"`
	ClusterIP             *string             `json:"clusterIP,omitempty"`
	ExtraLabels           map[string]string   `json:"extraLabels,omitempty"`
	ExtraAnnotations      map[string]string   `json:"extraAnnotations,omitempty"`
	Ports                 []Port              `json:"ports,omitempty"`
	ExternalTrafficPolicy *string             `json:"externalTrafficPolicy,omitempty"`

	// Later kgateway 2.x fields, accepted too.
	LoadBalancerClass        *string                `json:"loadBalancerClass,omitempty"`
	LoadBalancerSourceRanges []string               `json:"loadBalancerSourceRanges,omitempty"`
	IPFamilies               []corev1.IPFamily      `json:"ipFamilies,omitempty"`
	IPFamilyPolicy           *corev1.IPFamilyPolicy `json:"ipFamilyPolicy,omitempty"`
}

// Port adds a node port to the Service port of that number.
type Port struct {
	Port     uint16  `json:"port"`
	NodePort *uint16 `json:"nodePort,omitempty"`
}

// ServiceAccount is spec.kube.serviceAccount.
type ServiceAccount struct {
	ExtraLabels      map[string]string `json:"extraLabels,omitempty"`
	ExtraAnnotations map[string]string `json:"extraAnnotations,omitempty"`
}

// Pod is spec.kube.podTemplate.
type Pod struct {
	ExtraLabels                   map[string]string                 `json:"extraLabels,omitempty"`
	ExtraAnnotations              map[string]string                 `json:"extraAnnotations,omitempty"`
	SecurityContext               *corev1.PodSecurityContext        `json:"securityContext,omitempty"`
	ImagePullSecrets              []corev1.LocalObjectReference     `json:"imagePullSecrets,omitempty"`
	NodeSelector                  map[string]string                 `json:"nodeSelector,omitempty"`
	Affinity                      *corev1.Affinity                  `json:"affinity,omitempty"`
	Tolerations                   []corev1.Toleration               `json:"tolerations,omitempty"`
	GracefulShutdown              *GracefulShutdownSpec             `json:"gracefulShutdown,omitempty"`
	TerminationGracePeriodSeconds *int64                            `json:"terminationGracePeriodSeconds,omitempty"`
	StartupProbe                  *corev1.Probe                     `json:"startupProbe,omitempty"`
	ReadinessProbe                *corev1.Probe                     `json:"readinessProbe,omitempty"`
	LivenessProbe                 *corev1.Probe                     `json:"livenessProbe,omitempty"`
	TopologySpreadConstraints     []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	ExtraVolumes                  []corev1.Volume                   `json:"extraVolumes,omitempty"`
	// A later kgateway 2.x field, accepted too.
	PriorityClassName *string `json:"priorityClassName,omitempty"`
}

// GracefulShutdownSpec is Envoy's pre-stop sleep.
type GracefulShutdownSpec struct {
	Enabled          *bool  `json:"enabled,omitempty"`
	SleepTimeSeconds *int64 `json:"sleepTimeSeconds,omitempty"`
}

// Validate checks what kgateway's CRD schema checks, for the manifests
// that reach us without an API server (the files source): exactly one of
// kube and selfManaged, no negative replicas, a known Service type.
func (in *GatewayParametersSpec) Validate() error {
	if (in.Kube != nil) == (len(in.SelfManaged) > 0) {
		return fmt.Errorf("spec: exactly one of the fields in [kube selfManaged] must be set")
	}
	k := in.Kube
	if k == nil {
		return nil
	}
	if d := k.Deployment; d != nil && d.Replicas != nil && *d.Replicas < 0 {
		return fmt.Errorf("spec.kube.deployment.replicas: must not be negative")
	}
	if s := k.Service; s != nil && s.Type != nil {
		switch *s.Type {
		case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
		default:
			return fmt.Errorf("spec.kube.service.type: %q is not one of ClusterIP, NodePort, LoadBalancer, ExternalName", *s.Type)
		}
	}
	return nil
}
