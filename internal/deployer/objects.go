package deployer

import (
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// Labels, annotations and ports of a waypoint's objects.
const (
	LabelGatewayName     = "gateway.networking.k8s.io/gateway-name"
	LabelGatewayClass    = "gateway.networking.k8s.io/gateway-class-name"
	LabelManagedBy       = "app.kubernetes.io/managed-by"
	LabelAppName         = "app.kubernetes.io/name"
	LabelDataplaneMode   = "istio.io/dataplane-mode"
	LabelUseWaypoint     = "istio.io/use-waypoint"
	AnnotationDNSCapture = "ambient.istio.io/dns-capture"
	// ManagedBy is the value of LabelManagedBy on every object we create;
	// the cleanup only ever deletes objects that carry it.
	ManagedBy = "kgateway-waypoint"

	// The ports of the waypoint listeners translate.ValidateGateway accepts.
	PortHBONE   = translate.HBONEPort
	PortProxy   = translate.DefaultInboundPort
	PortStatus  = 15021
	PortMetrics = 15020

	// ProxyCommand is what a waypoint pod runs: the image's data-plane-only
	// binary (cmd/kgateway-waypoint-proxy), with the flags of
	// `kgateway-waypoint proxy`.
	ProxyCommand = "/kgateway-waypoint-proxy"

	// TokenDir and TokenFile locate the projected ServiceAccount token the
	// proxy presents to the xDS server.
	TokenDir  = "/var/run/secrets/kgateway-waypoint"
	TokenFile = xds.DefaultTokenFile
	// DefaultTokenAudience is the audience of that token; the xDS server
	// reviews tokens for it.
	DefaultTokenAudience = "kgateway-waypoint"

	// Native HBONE (an HBONE listener only): the proxy gets its certificate
	// from the Istio CA with a projected token of audience istio-ca, and
	// trusts the mesh root of the istio-ca-root-cert ConfigMap, both
	// mounted where Istio's agent has them.
	CATokenDir          = "/var/run/secrets/tokens"
	CATokenAudience     = "istio-ca"
	CARootDir           = "/var/run/secrets/istio"
	CARootConfigMap     = "istio-ca-root-cert"
	DefaultCAAddress    = "istiod.istio-system.svc:15012"
	DefaultTrustDomain  = "cluster.local"
	nativeDataplaneMode = "none"
)

// Config is what the deployer needs besides the Gateway.
type Config struct {
	// Image is the kgateway-waypoint image the proxy runs.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// XDSAddress is the controller's xDS service (host:port) the proxy dials.
	XDSAddress string
	// TokenAudience of the projected token (DefaultTokenAudience when empty).
	TokenAudience string
	// ExtraArgs are appended to the proxy's command line (log level, ...).
	ExtraArgs []string
	// CAAddress is the Istio CA native waypoints get their certificate
	// from (DefaultCAAddress when empty); TrustDomain the mesh's
	// (DefaultTrustDomain when empty).
	CAAddress   string
	TrustDomain string
}

// Objects are the desired objects of one waypoint. HPA and PDB are nil when
// the parameters do not ask for them.
type Objects struct {
	ServiceAccount *corev1.ServiceAccount
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	HPA            *autoscalingv2.HorizontalPodAutoscaler
	PDB            *policyv1.PodDisruptionBudget
}

// List returns the objects that exist in the desired state, in apply order.
func (o *Objects) List() []client.Object {
	out := []client.Object{o.ServiceAccount, o.Service, o.Deployment}
	if o.HPA != nil {
		out = append(out, o.HPA)
	}
	if o.PDB != nil {
		out = append(out, o.PDB)
	}
	return out
}

// Desired computes a waypoint's objects: all named after the Gateway, in its
// namespace, owned by it. It is a pure function of its inputs.
func Desired(gw *gwv1.Gateway, p *Parameters, cfg Config) *Objects {
	if p == nil {
		p = &Parameters{}
	}
	aud := cfg.TokenAudience
	if aud == "" {
		aud = DefaultTokenAudience
	}
	name, ns := gw.Name, gw.Namespace
	owner := metav1.OwnerReference{
		APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway", Name: gw.Name, UID: gw.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
	var infraLabels, infraAnnotations map[string]string
	if inf := gw.Spec.Infrastructure; inf != nil {
		infraLabels = map[string]string{}
		for k, v := range inf.Labels {
			infraLabels[string(k)] = string(v)
		}
		infraAnnotations = map[string]string{}
		for k, v := range inf.Annotations {
			infraAnnotations[string(k)] = string(v)
		}
	}
	labels := func(extra map[string]string) map[string]string {
		l := map[string]string{}
		maps.Copy(l, infraLabels)
		l[LabelGatewayName] = name
		l[LabelGatewayClass] = string(gw.Spec.GatewayClassName)
		l[LabelManagedBy] = ManagedBy
		l[LabelAppName] = name
		maps.Copy(l, extra)
		return l
	}
	annotations := func(extra map[string]string) map[string]string {
		if len(infraAnnotations) == 0 && len(extra) == 0 {
			return nil
		}
		a := map[string]string{}
		maps.Copy(a, infraAnnotations)
		maps.Copy(a, extra)
		return a
	}
	meta := func(extraLabels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(extraLabels),
			Annotations: annotations(nil), OwnerReferences: []metav1.OwnerReference{owner}}
	}
	selector := map[string]string{LabelGatewayName: name}
	native := translate.ValidateGateway(gw).NativeHBONE

	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(nil),
		// The proxy uses only its projected xDS token, never the API token.
		AutomountServiceAccountToken: ptr.To(false),
	}

	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		// istio.io/use-waypoint: none keeps a namespace-wide label from
		// looping the waypoint's own traffic into itself.
		ObjectMeta: meta(map[string]string{LabelUseWaypoint: "none"}),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector,
			Ports: []corev1.ServicePort{
				// ztunnel only accepts a waypoint whose Service has 15008.
				{Name: "mesh", Port: PortHBONE, TargetPort: intstr.FromInt32(PortHBONE), Protocol: corev1.ProtocolTCP},
				{Name: "proxy", Port: PortProxy, TargetPort: intstr.FromInt32(PortProxy), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	if native {
		// The waypoint itself listens on 15008; nothing else is exposed.
		svc.Spec.Ports = svc.Spec.Ports[:1]
	}

	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if p.Resources != nil {
		resources = *p.Resources
	}
	inboundPort := int32(PortProxy)
	if native {
		inboundPort = PortHBONE
	}
	args := []string{
		"--xds-address", cfg.XDSAddress,
		"--gateway", ns + "/" + name,
		"--token-file", TokenFile,
		"--inbound-address", "0.0.0.0:" + strconv.Itoa(int(inboundPort)),
		"--status-address", "0.0.0.0:" + strconv.Itoa(PortStatus),
		"--metrics-address", "0.0.0.0:" + strconv.Itoa(PortMetrics),
	}
	args = append(args, cfg.ExtraArgs...)
	args = append(args, p.Limits...)
	pullPolicy := cfg.ImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	mode := "ambient" // sandwich: the pod's own ztunnel terminates HBONE
	podAnn := map[string]string{
		AnnotationDNSCapture:   "false",
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(PortMetrics),
		"prometheus.io/path":   "/stats/prometheus",
	}
	if native {
		mode = nativeDataplaneMode // the waypoint terminates HBONE itself
		delete(podAnn, AnnotationDNSCapture)
	}
	podLabels := labels(map[string]string{LabelDataplaneMode: mode})
	podAnnotations := annotations(podAnn)
	readiness := &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz/ready", Port: intstr.FromInt32(PortStatus), Scheme: corev1.URISchemeHTTP}},
		PeriodSeconds: 2, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
	startup := readiness.DeepCopy()
	startup.PeriodSeconds, startup.FailureThreshold = 1, 60
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(nil),
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            name,
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](60),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](65532),
						RunAsGroup:     ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "proxy",
						Image:           cfg.Image,
						ImagePullPolicy: pullPolicy,
						Command:         []string{ProxyCommand},
						Args:            args,
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							// The node, for the proxy's locality (--node-name): the
							// configuration gives each node of the waypoint's
							// pods its locality, so relabelling a node needs
							// no restart (translate/locality.go).
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
						},
						Ports: []corev1.ContainerPort{
							{Name: inboundPortName(native), ContainerPort: inboundPort, Protocol: corev1.ProtocolTCP},
							{Name: "status", ContainerPort: PortStatus, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: PortMetrics, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: readiness,
						StartupProbe:   startup,
						Resources:      resources,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr.To(true),
							Privileged:               ptr.To(false),
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "xds-token", MountPath: TokenDir, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{
						Name: "xds-token",
						VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience: aud, ExpirationSeconds: ptr.To[int64](3600), Path: "xds-token"}}},
						}},
					}},
				},
			},
		},
	}
	if native {
		nativeIdentity(&dep.Spec.Template.Spec, cfg)
	}
	if p.HPA == nil {
		r := int32(1)
		if p.Replicas != nil {
			r = *p.Replicas
		}
		dep.Spec.Replicas = &r
	}

	out := &Objects{ServiceAccount: sa, Deployment: dep, Service: svc}
	applyKube(out, p.Kube, labels, infraLabels, infraAnnotations)
	if p.HPA != nil {
		spec := *p.HPA.DeepCopy()
		spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name}
		if len(spec.Metrics) == 0 {
			spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](80)}}}}
		}
		out.HPA = &autoscalingv2.HorizontalPodAutoscaler{
			TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
			ObjectMeta: meta(nil),
			Spec:       spec,
		}
	}
	if p.PDB != nil {
		spec := *p.PDB.DeepCopy()
		spec.Selector = &metav1.LabelSelector{MatchLabels: selector}
		out.PDB = &policyv1.PodDisruptionBudget{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: meta(nil),
			Spec:       spec,
		}
	}
	return out
}

func inboundPortName(native bool) string {
	if native {
		return "hbone"
	}
	return "proxy"
}

// nativeIdentity gives a native waypoint's pod what the Istio CA client
// needs, as Istio's agent has it: the istio-ca token, the mesh root, and
// the CA's address, trust domain and the pod's ServiceAccount in the
// environment.
func nativeIdentity(spec *corev1.PodSpec, cfg Config) {
	caAddr := cfg.CAAddress
	if caAddr == "" {
		caAddr = DefaultCAAddress
	}
	td := cfg.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	c := &spec.Containers[0]
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "CA_ADDR", Value: caAddr},
		corev1.EnvVar{Name: "TRUST_DOMAIN", Value: td},
		corev1.EnvVar{Name: "SERVICE_ACCOUNT", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
	)
	c.VolumeMounts = append(c.VolumeMounts,
		corev1.VolumeMount{Name: "istio-token", MountPath: CATokenDir, ReadOnly: true},
		corev1.VolumeMount{Name: "istiod-ca-cert", MountPath: CARootDir, ReadOnly: true},
	)
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: CATokenAudience, ExpirationSeconds: ptr.To[int64](43200), Path: "istio-token"}}},
		}}},
		corev1.Volume{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: CARootConfigMap}}}},
	)
}
