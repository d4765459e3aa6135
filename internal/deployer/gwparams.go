package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
)

// KindGatewayParameters is kgateway's parameters kind
// (gateway.kgateway.dev/v1alpha1), accepted beside ConfigMaps.
const KindGatewayParameters = "GatewayParameters"

func readGatewayParameters(ctx context.Context, r client.Reader, ns, name, what string) (*kgwv1alpha1.KubernetesProxyConfig, error) {
	gwp := &kgwv1alpha1.GatewayParameters{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gwp); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, paramsErr("%s: GatewayParameters %s/%s not found", what, ns, name)
		}
		if meta.IsNoMatchError(err) {
			return nil, paramsErr("%s: GatewayParameters %s/%s: the GatewayParameters CRD (gateway.kgateway.dev) is not installed", what, ns, name)
		}
		return nil, err // transient: retried
	}
	if err := gwp.Spec.Validate(); err != nil {
		return nil, paramsErr("%s: GatewayParameters %s/%s: %v", what, ns, name, err)
	}
	if len(gwp.Spec.SelfManaged) > 0 {
		return nil, paramsErr("%s: GatewayParameters %s/%s: spec.selfManaged is not supported: kgateway-waypoint always deploys the waypoint's proxies", what, ns, name)
	}
	return gwp.Spec.Kube, nil
}

// addKube lays one GatewayParameters' spec.kube over p: merged into Kube
// as kgateway merges a Gateway's GatewayParameters over its class's, and
// its replicas and resources over what a ConfigMap below set.
func (p *Parameters) addKube(kube *kgwv1alpha1.KubernetesProxyConfig) {
	if kube == nil {
		return
	}
	p.Kube = mergeKube(p.Kube, kube)
	if d := kube.Deployment; d != nil && d.Replicas != nil {
		p.Replicas = ptr.To(*d.Replicas)
	}
	if c := kube.EnvoyContainer; c != nil && c.Resources != nil {
		p.Resources = p.Kube.EnvoyContainer.Resources.DeepCopy()
	}
}

// mergeKube is kgateway's DeepMergeGatewayParameters on spec.kube: what
// src sets wins; maps merge key by key; lists are appended to dst's
// (tolerations, volumes, env, ...); a probe src gives a handler to
// replaces dst's handler. Neither input is modified.
func mergeKube(dst, src *kgwv1alpha1.KubernetesProxyConfig) *kgwv1alpha1.KubernetesProxyConfig {
	if dst == nil {
		return src.DeepCopy()
	}
	out := &kgwv1alpha1.KubernetesProxyConfig{}
	mergeJSONInto(out, dst, src, "")
	return out
}

// mergeJSONInto decodes the kgateway-style deep merge of src over dst (as
// JSON documents) into out.
// key names what is merged (one ending in "probe" is a probe, whose handler
// is replaced, not merged).
func mergeJSONInto(out, dst, src any, key string) {
	a, b := toMap(dst), toMap(src)
	merged := mergeMaps(a, b, key)
	raw, err := json.Marshal(merged)
	if err == nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		// Both sides decoded from the same types: this cannot happen.
		panic(fmt.Sprintf("deployer: merging parameters: %v", err))
	}
}

func toMap(v any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("deployer: encoding parameters: %v", err))
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return map[string]any{} // null
	}
	return m
}

var probeHandlers = []string{"exec", "httpGet", "tcpSocket", "grpc"}

func mergeMaps(dst, src map[string]any, key string) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	if strings.HasSuffix(strings.ToLower(key), "probe") {
		for _, h := range probeHandlers {
			if _, ok := src[h]; ok {
				for _, h := range probeHandlers {
					delete(out, h)
				}
				break
			}
		}
	}
	for k, sv := range src {
		dv, had := out[k]
		if !had {
			out[k] = sv
			continue
		}
		switch s := sv.(type) {
		case map[string]any:
			if d, ok := dv.(map[string]any); ok {
				out[k] = mergeMaps(d, s, k)
				continue
			}
			out[k] = s
		case []any:
			// An exec command replaces (kgateway: OverrideSlices).
			if d, ok := dv.([]any); ok && k != "command" {
				out[k] = append(slices.Clone(d), s...)
				continue
			}
			out[k] = s
		default:
			out[k] = sv
		}
	}
	return out
}

// checkKube names the fields set that the waypoint does not implement and
// refuses the values it cannot deploy.
func (p *Parameters) checkKube() error {
	k := p.Kube
	if k == nil {
		return nil
	}
	var un []string
	raw := func(name string, v json.RawMessage) {
		if len(v) > 0 && string(v) != "null" {
			un = append(un, "spec.kube."+name)
		}
	}
	raw("sdsContainer", k.SdsContainer)
	raw("istio", k.Istio)
	raw("stats", k.Stats)
	raw("aiExtension", k.AiExtension)
	raw("agentgateway", k.Agentgateway)
	if c := k.EnvoyContainer; c != nil {
		if b := c.Bootstrap; b != nil {
			if len(b.ComponentLogLevels) > 0 {
				un = append(un, "spec.kube.envoyContainer.bootstrap.componentLogLevels")
			}
			if b.LogLevel != nil {
				if _, ok := proxyLogLevel(*b.LogLevel); !ok {
					return paramsErr("spec.kube.envoyContainer.bootstrap.logLevel: %q is not one of trace, debug, info, warn, error, critical, off", *b.LogLevel)
				}
			}
		}
		if isEnvoyImage(c.Image) {
			un = append(un, "spec.kube.envoyContainer.image (kgateway's Envoy image cannot run the waypoint: left out)")
		}
	}
	if pt := k.PodTemplate; pt != nil && pt.GracefulShutdown != nil && pt.GracefulShutdown.SleepTimeSeconds != nil && *pt.GracefulShutdown.SleepTimeSeconds < 0 {
		return paramsErr("spec.kube.podTemplate.gracefulShutdown.sleepTimeSeconds: must not be negative")
	}
	if s := k.Service; s != nil {
		if s.Type != nil && *s.Type == corev1.ServiceTypeExternalName {
			return paramsErr("spec.kube.service.type: an ExternalName Service cannot expose the waypoint's pods")
		}
		for i, sp := range s.Ports {
			if int32(sp.Port) != PortHBONE && int32(sp.Port) != PortProxy {
				un = append(un, fmt.Sprintf("spec.kube.service.ports[%d] (port %d: the waypoint Service has ports %d and %d only)", i, sp.Port, PortHBONE, PortProxy))
			}
		}
	}
	p.Unsupported = un
	return nil
}

// proxyLogLevel maps Envoy's log levels to the proxy's --log-level.
func proxyLogLevel(l string) (string, bool) {
	switch strings.ToLower(l) {
	case "trace", "debug":
		return "debug", true
	case "info":
		return "info", true
	case "warn", "warning":
		return "warn", true
	case "error", "critical", "off":
		return "error", true
	}
	return "", false
}

// isEnvoyImage is kgateway's own Envoy image (envoy-wrapper), which a
// migrated GatewayParameters may still name.
func isEnvoyImage(im *kgwv1alpha1.Image) bool {
	return im != nil && im.Repository != nil && (*im.Repository == "envoy-wrapper" || strings.HasSuffix(*im.Repository, "/envoy-wrapper"))
}

// splitImage splits an image reference into registry, repository, tag and
// digest (registry "" when the reference has none).
func splitImage(ref string) (registry, repository, tag, digest string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	if i := strings.Index(ref, "/"); i >= 0 {
		first := ref[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			registry, ref = first, ref[i+1:]
		}
	}
	return registry, ref, tag, digest
}

// image is the proxy image: the controller's, with the parts the
// GatewayParameters set replaced.
func image(def string, im *kgwv1alpha1.Image) string {
	if im == nil || isEnvoyImage(im) || (im.Registry == nil && im.Repository == nil && im.Tag == nil && im.Digest == nil) {
		return def
	}
	reg, repo, tag, dig := splitImage(def)
	if im.Registry != nil {
		reg = *im.Registry
	}
	if im.Repository != nil {
		repo = *im.Repository
	}
	if im.Tag != nil {
		tag = *im.Tag
	}
	if im.Digest != nil {
		dig = *im.Digest
	}
	out := repo
	if reg != "" {
		out = reg + "/" + repo
	}
	if tag != "" {
		out += ":" + tag
	}
	if dig != "" {
		out += "@" + dig
	}
	return out
}

// applyKube applies the GatewayParameters' spec.kube to the desired
// objects. The Gateway's spec.infrastructure labels and annotations win
// over the extra ones (as in kgateway), and our own labels (the selector
// among them) over both.
func applyKube(o *Objects, k *kgwv1alpha1.KubernetesProxyConfig, ours func(map[string]string) map[string]string, infraLabels, infraAnnotations map[string]string) {
	if k == nil {
		return
	}
	if sa := k.ServiceAccount; sa != nil {
		o.ServiceAccount.Labels = withExtra(o.ServiceAccount.Labels, sa.ExtraLabels, infraLabels, ours(nil))
		o.ServiceAccount.Annotations = withExtraAnn(o.ServiceAccount.Annotations, sa.ExtraAnnotations, infraAnnotations)
	}
	if s := k.Service; s != nil {
		svc := o.Service
		svc.Labels = withExtra(svc.Labels, s.ExtraLabels, infraLabels, ours(map[string]string{LabelUseWaypoint: "none"}))
		svc.Annotations = withExtraAnn(svc.Annotations, s.ExtraAnnotations, infraAnnotations)
		if s.Type != nil {
			svc.Spec.Type = *s.Type
		}
		if s.ClusterIP != nil {
			svc.Spec.ClusterIP = *s.ClusterIP
		}
		if s.ExternalTrafficPolicy != nil {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicy(*s.ExternalTrafficPolicy)
		}
		if s.LoadBalancerClass != nil {
			svc.Spec.LoadBalancerClass = ptr.To(*s.LoadBalancerClass)
		}
		svc.Spec.LoadBalancerSourceRanges = slices.Clone(s.LoadBalancerSourceRanges)
		svc.Spec.IPFamilies = slices.Clone(s.IPFamilies)
		if s.IPFamilyPolicy != nil {
			svc.Spec.IPFamilyPolicy = ptr.To(*s.IPFamilyPolicy)
		}
		for _, sp := range s.Ports {
			for i := range svc.Spec.Ports {
				if svc.Spec.Ports[i].Port == int32(sp.Port) && sp.NodePort != nil {
					svc.Spec.Ports[i].NodePort = int32(*sp.NodePort)
				}
			}
		}
	}
	dep := o.Deployment
	if d := k.Deployment; d != nil && d.Strategy != nil {
		dep.Spec.Strategy = *d.Strategy.DeepCopy()
	}
	pod := &dep.Spec.Template
	c := &pod.Spec.Containers[0]
	omit := ptr.Deref(k.OmitDefaultSecurityContext, false)
	if omit {
		pod.Spec.SecurityContext, c.SecurityContext = nil, nil
	}
	if pt := k.PodTemplate; pt != nil {
		pod.Labels = withExtra(pod.Labels, pt.ExtraLabels, infraLabels, pod.Labels)
		pod.Annotations = withExtraAnn(pod.Annotations, pt.ExtraAnnotations, infraAnnotations)
		if pt.SecurityContext != nil {
			sc := &corev1.PodSecurityContext{}
			mergeJSONInto(sc, pod.Spec.SecurityContext, pt.SecurityContext, "securityContext")
			pod.Spec.SecurityContext = sc
		}
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, pt.ImagePullSecrets...)
		if len(pt.NodeSelector) > 0 {
			pod.Spec.NodeSelector = maps.Clone(pt.NodeSelector)
		}
		pod.Spec.Affinity = pt.Affinity.DeepCopy()
		for i := range pt.Tolerations {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, *pt.Tolerations[i].DeepCopy())
		}
		if pt.PriorityClassName != nil {
			pod.Spec.PriorityClassName = *pt.PriorityClassName
		}
		if pt.TerminationGracePeriodSeconds != nil {
			pod.Spec.TerminationGracePeriodSeconds = ptr.To(*pt.TerminationGracePeriodSeconds)
		}
		c.StartupProbe = mergeProbe(c.StartupProbe, pt.StartupProbe)
		c.ReadinessProbe = mergeProbe(c.ReadinessProbe, pt.ReadinessProbe)
		c.LivenessProbe = mergeProbe(c.LivenessProbe, pt.LivenessProbe)
		for i := range pt.TopologySpreadConstraints {
			pod.Spec.TopologySpreadConstraints = append(pod.Spec.TopologySpreadConstraints, *pt.TopologySpreadConstraints[i].DeepCopy())
		}
		for i := range pt.ExtraVolumes {
			pod.Spec.Volumes = append(pod.Spec.Volumes, *pt.ExtraVolumes[i].DeepCopy())
		}
		if g := pt.GracefulShutdown; g != nil && ptr.Deref(g.Enabled, false) && g.SleepTimeSeconds != nil {
			// Envoy's pre-stop sleep while health checks fail is the
			// proxy's drain delay.
			c.Args = append(c.Args, "--drain-delay", strconv.FormatInt(*g.SleepTimeSeconds, 10)+"s")
		}
	}
	if ec := k.EnvoyContainer; ec != nil {
		c.Image = image(c.Image, ec.Image)
		if ec.Image != nil && ec.Image.PullPolicy != nil && !isEnvoyImage(ec.Image) {
			c.ImagePullPolicy = *ec.Image.PullPolicy
		}
		if ec.SecurityContext != nil {
			sc := &corev1.SecurityContext{}
			mergeJSONInto(sc, c.SecurityContext, ec.SecurityContext, "securityContext")
			c.SecurityContext = sc
		}
		for i := range ec.Env {
			c.Env = append(c.Env, *ec.Env[i].DeepCopy())
		}
		c.VolumeMounts = append(c.VolumeMounts, ec.ExtraVolumeMounts...)
		if b := ec.Bootstrap; b != nil && b.LogLevel != nil {
			if l, ok := proxyLogLevel(*b.LogLevel); ok {
				c.Args = append(c.Args, "--log-level", l)
			}
		}
	}
	if ptr.Deref(k.FloatingUserID, false) {
		if pod.Spec.SecurityContext != nil {
			pod.Spec.SecurityContext.RunAsUser = nil
		}
		if c.SecurityContext != nil {
			c.SecurityContext.RunAsUser = nil
		}
	}
}

func mergeProbe(dst, src *corev1.Probe) *corev1.Probe {
	if src == nil {
		return dst
	}
	out := &corev1.Probe{}
	mergeJSONInto(out, dst, src, "probe")
	return out
}

// withExtra adds extra labels to l, then the infrastructure ones and the
// required ones back over them.
func withExtra(l, extra, infra, required map[string]string) map[string]string {
	if len(extra) == 0 {
		return l
	}
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, extra)
	maps.Copy(out, infra)
	for _, k := range []string{LabelGatewayName, LabelGatewayClass, LabelManagedBy, LabelAppName, LabelDataplaneMode, LabelUseWaypoint} {
		if v, ok := required[k]; ok {
			out[k] = v
		}
	}
	return out
}

func withExtraAnn(a, extra, infra map[string]string) map[string]string {
	if len(extra) == 0 {
		return a
	}
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, extra)
	maps.Copy(out, infra)
	return out
}

// KubeParameters lays GatewayParameters' spec.kube values over each other
// in order (the class's first, then the Gateway's), as ResolveParameters
// does, and checks the result.
func KubeParameters(kubes ...*kgwv1alpha1.KubernetesProxyConfig) (*Parameters, error) {
	p := &Parameters{}
	for _, k := range kubes {
		p.addKube(k)
	}
	if err := p.checkKube(); err != nil {
		return nil, err
	}
	return p, nil
}
