package deployer_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
)

// kube decodes a GatewayParameters manifest, strictly, and returns its
// spec.kube.
func kube(t *testing.T, doc string) *kgwv1alpha1.KubernetesProxyConfig {
	t.Helper()
	gwp := &kgwv1alpha1.GatewayParameters{}
	if err := yaml.UnmarshalStrict([]byte("apiVersion: gateway.kgateway.dev/v1alpha1\nkind: GatewayParameters\nmetadata: {name: p, namespace: ns}\n"+doc), gwp); err != nil {
		t.Fatal(err)
	}
	if err := gwp.Spec.Validate(); err != nil {
		t.Fatal(err)
	}
	return gwp.Spec.Kube
}

func render(t *testing.T, kubes ...*kgwv1alpha1.KubernetesProxyConfig) (*deployer.Objects, *deployer.Parameters) {
	t.Helper()
	p, err := deployer.KubeParameters(kubes...)
	if err != nil {
		t.Fatal(err)
	}
	gw := &gwv1.Gateway{}
	gw.Name, gw.Namespace, gw.Spec.GatewayClassName = "wp", "ns", class
	gw.Spec.Listeners = []gwv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}, {Name: "proxy", Port: 15088, Protocol: "istio.io/PROXY"}}
	return deployer.Desired(gw, p, deployer.Config{Image: "ghcr.io/kgateway-dev/kgateway-waypoint:test",
		XDSAddress: "x:1", ExtraArgs: []string{"--log-level", "info"}}), p
}

// Every spec.kube knob kgateway users set that has a meaning for the
// waypoint's one proxy container lands in the rendered objects.
func TestGatewayParametersKnobs(t *testing.T) {
	o, p := render(t, kube(t, `spec:
  kube:
    deployment:
      replicas: 3
      strategy: {type: Recreate}
    envoyContainer:
      bootstrap: {logLevel: trace}
      image: {registry: registry.example.com, repository: mirror/kgateway-waypoint, tag: v9, pullPolicy: Always}
      resources:
        requests: {cpu: 500m, memory: 256Mi}
        limits: {memory: 512Mi}
      securityContext: {readOnlyRootFilesystem: false}
      env: [{name: EXTRA, value: "1"}]
      extraVolumeMounts: [{name: extra, mountPath: /extra}]
    podTemplate:
      extraLabels: {team: payments, gateway.networking.k8s.io/gateway-name: hijack}
      extraAnnotations: {example.com/note: hi}
      securityContext: {fsGroup: 2000}
      imagePullSecrets: [{name: regcred}]
      nodeSelector: {pool: mesh}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]
      tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
      terminationGracePeriodSeconds: 90
      gracefulShutdown: {enabled: true, sleepTimeSeconds: 7}
      livenessProbe: {httpGet: {path: /healthz/ready, port: 15021}, periodSeconds: 10}
      topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]
      extraVolumes: [{name: extra, emptyDir: {}}]
      priorityClassName: mesh-critical
    service:
      type: LoadBalancer
      extraLabels: {svc: s1}
      extraAnnotations: {service.beta.kubernetes.io/aws-load-balancer-internal: "true"}
      ports: [{port: 15088, nodePort: 30088}]
      externalTrafficPolicy: Local
      loadBalancerClass: example.com/internal
      loadBalancerSourceRanges: [10.0.0.0/8]
      ipFamilyPolicy: PreferDualStack
    serviceAccount:
      extraLabels: {sa: a1}
      extraAnnotations: {eks.amazonaws.com/role-arn: arn}
`))
	if len(p.Unsupported) != 0 {
		t.Errorf("unsupported %q, want none", p.Unsupported)
	}
	dep := o.Deployment
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", dep.Spec.Replicas)
	}
	if dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("strategy %+v", dep.Spec.Strategy)
	}
	pod := dep.Spec.Template
	if pod.Labels["team"] != "payments" || pod.Labels[deployer.LabelGatewayName] != "wp" || pod.Labels[deployer.LabelDataplaneMode] != "ambient" {
		t.Errorf("pod labels %v: want the extra label, ours kept", pod.Labels)
	}
	if pod.Annotations["example.com/note"] != "hi" || pod.Annotations["prometheus.io/port"] == "" {
		t.Errorf("pod annotations %v", pod.Annotations)
	}
	ps := pod.Spec
	if ps.SecurityContext.FSGroup == nil || *ps.SecurityContext.FSGroup != 2000 || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("pod security context %+v: want fsGroup merged over ours", ps.SecurityContext)
	}
	if ps.PriorityClassName != "mesh-critical" {
		t.Errorf("priority class %q", ps.PriorityClassName)
	}
	if len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("image pull secrets %v", ps.ImagePullSecrets)
	}
	if ps.NodeSelector["pool"] != "mesh" {
		t.Errorf("node selector %v", ps.NodeSelector)
	}
	if ps.Affinity == nil || ps.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key != "zone" {
		t.Errorf("affinity %+v", ps.Affinity)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0].Key != "dedicated" || ps.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %v", ps.Tolerations)
	}
	if *ps.TerminationGracePeriodSeconds != 90 {
		t.Errorf("grace period %d", *ps.TerminationGracePeriodSeconds)
	}
	if len(ps.TopologySpreadConstraints) != 1 || ps.TopologySpreadConstraints[0].TopologyKey != "zone" {
		t.Errorf("topology spread %v", ps.TopologySpreadConstraints)
	}
	if !slices.ContainsFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == "extra" && v.EmptyDir != nil }) ||
		!slices.ContainsFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == "xds-token" }) {
		t.Errorf("volumes %v: want ours and the extra one", ps.Volumes)
	}
	c := ps.Containers[0]
	if c.Image != "registry.example.com/mirror/kgateway-waypoint:v9" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %q %s", c.Image, c.ImagePullPolicy)
	}
	if !c.Resources.Requests.Cpu().Equal(resource.MustParse("500m")) || !c.Resources.Limits.Memory().Equal(resource.MustParse("512Mi")) {
		t.Errorf("resources %+v", c.Resources)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("resources %+v: the parameters' resources replace the default, no CPU limit", c.Resources)
	}
	if *c.SecurityContext.ReadOnlyRootFilesystem || !*c.SecurityContext.RunAsNonRoot || c.SecurityContext.Capabilities == nil {
		t.Errorf("container security context %+v: want readOnlyRootFilesystem false merged over ours", c.SecurityContext)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "EXTRA" && e.Value == "1" }) ||
		!slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" }) {
		t.Errorf("env %v", c.Env)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "extra" && m.MountPath == "/extra" }) {
		t.Errorf("mounts %v", c.VolumeMounts)
	}
	// Envoy's trace is the proxy's debug, after the controller's level.
	if i := slices.Index(c.Args, "debug"); i < 1 || c.Args[i-1] != "--log-level" || i < slices.Index(c.Args, "info") {
		t.Errorf("args %q: want --log-level debug after the controller's", c.Args)
	}
	if i := slices.Index(c.Args, "--drain-delay"); i < 0 || c.Args[i+1] != "7s" {
		t.Errorf("args %q: want --drain-delay 7s", c.Args)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz/ready" || c.LivenessProbe.PeriodSeconds != 10 {
		t.Errorf("liveness %+v", c.LivenessProbe)
	}
	svc := o.Service
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != "Local" ||
		ptr.Deref(svc.Spec.LoadBalancerClass, "") != "example.com/internal" || len(svc.Spec.LoadBalancerSourceRanges) != 1 ||
		ptr.Deref(svc.Spec.IPFamilyPolicy, "") != corev1.IPFamilyPolicyPreferDualStack {
		t.Errorf("service %+v", svc.Spec)
	}
	if svc.Labels["svc"] != "s1" || svc.Labels[deployer.LabelUseWaypoint] != "none" ||
		svc.Annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] != "true" {
		t.Errorf("service metadata %v %v", svc.Labels, svc.Annotations)
	}
	for _, sp := range svc.Spec.Ports {
		if want := map[int32]int32{15088: 30088}[sp.Port]; sp.NodePort != want {
			t.Errorf("port %d nodePort %d, want %d", sp.Port, sp.NodePort, want)
		}
	}
	sa := o.ServiceAccount
	if sa.Labels["sa"] != "a1" || sa.Labels[deployer.LabelManagedBy] != deployer.ManagedBy || sa.Annotations["eks.amazonaws.com/role-arn"] != "arn" {
		t.Errorf("service account %v %v", sa.Labels, sa.Annotations)
	}
}

// A probe the GatewayParameters give with another handler replaces our
// handler (a probe has one), its other fields merged over ours.
func TestGatewayParametersProbeHandler(t *testing.T) {
	o, _ := render(t, kube(t, "spec: {kube: {podTemplate: {readinessProbe: {tcpSocket: {port: 15021}, periodSeconds: 5}}}}\n"))
	r := o.Deployment.Spec.Template.Spec.Containers[0].ReadinessProbe
	if r.TCPSocket == nil || r.HTTPGet != nil || r.PeriodSeconds != 5 || r.FailureThreshold != 3 {
		t.Errorf("readiness probe %+v: want the tcpSocket handler only, periodSeconds 5, our failureThreshold", r)
	}
	o, _ = render(t, kube(t, "spec: {kube: {podTemplate: {readinessProbe: {periodSeconds: 9}}}}\n"))
	if r := o.Deployment.Spec.Template.Spec.Containers[0].ReadinessProbe; r.HTTPGet == nil || r.HTTPGet.Path != "/healthz/ready" || r.PeriodSeconds != 9 {
		t.Errorf("readiness probe %+v: want our handler kept, periodSeconds 9", r)
	}
}

// A Gateway's GatewayParameters merge over its class's as kgateway's deep
// merge: scalars replaced, maps by key, lists appended.
func TestGatewayParametersMerge(t *testing.T) {
	class := kube(t, `spec:
  kube:
    deployment: {replicas: 2}
    envoyContainer:
      resources: {limits: {memory: 1Gi}}
    podTemplate:
      extraLabels: {team: a, tier: mesh}
      nodeSelector: {pool: mesh}
      tolerations: [{key: one, operator: Exists}]
`)
	gateway := kube(t, `spec:
  kube:
    deployment: {replicas: 4}
    envoyContainer:
      resources: {requests: {cpu: 250m}}
    podTemplate:
      extraLabels: {team: b}
      tolerations: [{key: two, operator: Exists}]
`)
	o, _ := render(t, class, gateway)
	pod := o.Deployment.Spec.Template
	if *o.Deployment.Spec.Replicas != 4 {
		t.Errorf("replicas %d, want the Gateway's 4", *o.Deployment.Spec.Replicas)
	}
	if pod.Labels["team"] != "b" || pod.Labels["tier"] != "mesh" {
		t.Errorf("labels %v: want team from the Gateway's, tier from the class's", pod.Labels)
	}
	if pod.Spec.NodeSelector["pool"] != "mesh" {
		t.Errorf("node selector %v: the class's kept", pod.Spec.NodeSelector)
	}
	if len(pod.Spec.Tolerations) != 2 || pod.Spec.Tolerations[0].Key != "one" || pod.Spec.Tolerations[1].Key != "two" {
		t.Errorf("tolerations %v: want the class's then the Gateway's", pod.Spec.Tolerations)
	}
	r := pod.Spec.Containers[0].Resources
	if !r.Limits.Memory().Equal(resource.MustParse("1Gi")) || !r.Requests.Cpu().Equal(resource.MustParse("250m")) {
		t.Errorf("resources %+v: want the class's limit and the Gateway's request", r)
	}
	// The inputs are not modified by the merge.
	if class.PodTemplate.ExtraLabels["team"] != "a" || len(class.PodTemplate.Tolerations) != 1 {
		t.Errorf("the class's parameters were modified: %+v", class.PodTemplate)
	}
}

// Sections for containers the waypoint does not run are named, never
// silently dropped; kgateway's Envoy image is not put in the waypoint's
// pod.
func TestGatewayParametersUnsupported(t *testing.T) {
	o, p := render(t, kube(t, `spec:
  kube:
    sdsContainer: {image: {tag: "1"}}
    istio: {istioProxyContainer: {logLevel: debug}}
    stats: {enabled: true}
    envoyContainer:
      image: {registry: quay.io/solo-io, repository: envoy-wrapper, tag: 2.1.0}
      bootstrap: {componentLogLevels: {upstream: debug}}
    service:
      ports: [{port: 8080, nodePort: 30080}]
`))
	got := strings.Join(p.Unsupported, "; ")
	for _, want := range []string{"spec.kube.sdsContainer", "spec.kube.istio", "spec.kube.stats",
		"spec.kube.envoyContainer.bootstrap.componentLogLevels", "spec.kube.envoyContainer.image", "spec.kube.service.ports[0]"} {
		if !strings.Contains(got, want) {
			t.Errorf("unsupported %q: want %s named", got, want)
		}
	}
	if c := o.Deployment.Spec.Template.Spec.Containers[0]; c.Image != "ghcr.io/kgateway-dev/kgateway-waypoint:test" {
		t.Errorf("image %q: kgateway's Envoy image must not replace the waypoint's", c.Image)
	}
}

// Values the waypoint cannot deploy are refused (the Gateway then reports
// InvalidParameters).
func TestGatewayParametersInvalid(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"spec: {kube: {envoyContainer: {bootstrap: {logLevel: loud}}}}\n", "logLevel"},
		{"spec: {kube: {service: {type: ExternalName}}}\n", "ExternalName"},
	} {
		_, err := deployer.KubeParameters(kube(t, c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.doc, err, c.want)
		}
	}
}

// omitDefaultSecurityContext leaves the security contexts out (OpenShift);
// floatingUserId unsets runAsUser.
func TestGatewayParametersSecurityContextSwitches(t *testing.T) {
	o, _ := render(t, kube(t, "spec: {kube: {omitDefaultSecurityContext: true}}\n"))
	if ps := o.Deployment.Spec.Template.Spec; ps.SecurityContext != nil || ps.Containers[0].SecurityContext != nil {
		t.Errorf("security contexts %+v %+v, want none", ps.SecurityContext, ps.Containers[0].SecurityContext)
	}
	o, _ = render(t, kube(t, "spec: {kube: {omitDefaultSecurityContext: true, podTemplate: {securityContext: {fsGroup: 7}}}}\n"))
	if ps := o.Deployment.Spec.Template.Spec; ps.SecurityContext == nil || ps.SecurityContext.RunAsUser != nil || *ps.SecurityContext.FSGroup != 7 {
		t.Errorf("pod security context %+v: want the user's only", ps.SecurityContext)
	}
	o, _ = render(t, kube(t, "spec: {kube: {floatingUserId: true}}\n"))
	if ps := o.Deployment.Spec.Template.Spec; ps.SecurityContext.RunAsUser != nil || ps.SecurityContext.RunAsNonRoot == nil {
		t.Errorf("pod security context %+v: want runAsUser unset, the rest kept", ps.SecurityContext)
	}
	o, _ = render(t)
	if ps := o.Deployment.Spec.Template.Spec; ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser != 65532 {
		t.Errorf("default pod security context %+v", ps.SecurityContext)
	}
}

// The image parts a GatewayParameters sets replace the controller's image's.
func TestGatewayParametersImageParts(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"{tag: v2}", "ghcr.io/kgateway-dev/kgateway-waypoint:v2"},
		{"{registry: localhost:5000}", "localhost:5000/kgateway-dev/kgateway-waypoint:test"},
		{"{repository: me/wp, digest: 'sha256:abc'}", "ghcr.io/me/wp:test@sha256:abc"},
	} {
		o, _ := render(t, kube(t, "spec: {kube: {envoyContainer: {image: "+c.doc+"}}}\n"))
		if got := o.Deployment.Spec.Template.Spec.Containers[0].Image; got != c.want {
			t.Errorf("image %s: %q, want %q", c.doc, got, c.want)
		}
	}
}

// The Gateway's spec.infrastructure labels and annotations win over a
// GatewayParameters' extra ones on the same key, as in kgateway.
func TestGatewayParametersInfrastructureWins(t *testing.T) {
	p, err := deployer.KubeParameters(kube(t, `spec:
  kube:
    podTemplate: {extraLabels: {team: gwp, only: gwp}, extraAnnotations: {owner: gwp}}
    service: {extraLabels: {team: gwp}}
    serviceAccount: {extraAnnotations: {owner: gwp}}
`))
	if err != nil {
		t.Fatal(err)
	}
	gw := &gwv1.Gateway{}
	gw.Name, gw.Namespace, gw.Spec.GatewayClassName = "wp", "ns", class
	gw.Spec.Infrastructure = &gwv1.GatewayInfrastructure{
		Labels:      map[gwv1.LabelKey]gwv1.LabelValue{"team": "infra"},
		Annotations: map[gwv1.AnnotationKey]gwv1.AnnotationValue{"owner": "infra"},
	}
	o := deployer.Desired(gw, p, deployer.Config{XDSAddress: "x:1"})
	pod := o.Deployment.Spec.Template
	if pod.Labels["team"] != "infra" || pod.Labels["only"] != "gwp" || pod.Annotations["owner"] != "infra" {
		t.Errorf("pod %v %v: want the infrastructure's team and owner, the GatewayParameters' only", pod.Labels, pod.Annotations)
	}
	if o.Service.Labels["team"] != "infra" || o.ServiceAccount.Annotations["owner"] != "infra" {
		t.Errorf("service %v, service account %v", o.Service.Labels, o.ServiceAccount.Annotations)
	}
}
