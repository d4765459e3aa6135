package v1alpha1

import (
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyObject implements runtime.Object.
func (in *GatewayParameters) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *GatewayParametersList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy copies the parameters.
func (in *GatewayParameters) DeepCopy() *GatewayParameters {
	if in == nil {
		return nil
	}
	out := &GatewayParameters{}
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the parameters into out.
func (in *GatewayParameters) DeepCopyInto(out *GatewayParameters) {
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec = GatewayParametersSpec{Kube: in.Spec.Kube.DeepCopy(), SelfManaged: cloneRaw(in.Spec.SelfManaged)}
	out.Status = in.Status
}

// DeepCopy copies the list.
func (in *GatewayParametersList) DeepCopy() *GatewayParametersList {
	if in == nil {
		return nil
	}
	out := &GatewayParametersList{TypeMeta: in.TypeMeta}
	out.ListMeta = *in.ListMeta.DeepCopy()
	if in.Items != nil {
		out.Items = make([]GatewayParameters, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

// DeepCopy copies spec.kube.
func (in *KubernetesProxyConfig) DeepCopy() *KubernetesProxyConfig {
	if in == nil {
		return nil
	}
	out := &KubernetesProxyConfig{
		FloatingUserID:             clonePtr(in.FloatingUserID),
		OmitDefaultSecurityContext: clonePtr(in.OmitDefaultSecurityContext),
		SdsContainer:               cloneRaw(in.SdsContainer),
		Istio:                      cloneRaw(in.Istio),
		Stats:                      cloneRaw(in.Stats),
		AiExtension:                cloneRaw(in.AiExtension),
		Agentgateway:               cloneRaw(in.Agentgateway),
	}
	if d := in.Deployment; d != nil {
		out.Deployment = &ProxyDeployment{Replicas: clonePtr(d.Replicas), Strategy: d.Strategy.DeepCopy()}
	}
	if c := in.EnvoyContainer; c != nil {
		oc := &EnvoyContainer{
			SecurityContext: c.SecurityContext.DeepCopy(),
			Resources:       c.Resources.DeepCopy(),
		}
		if b := c.Bootstrap; b != nil {
			oc.Bootstrap = &EnvoyBootstrap{LogLevel: clonePtr(b.LogLevel), ComponentLogLevels: maps.Clone(b.ComponentLogLevels)}
		}
		if im := c.Image; im != nil {
			oc.Image = &Image{Registry: clonePtr(im.Registry), Repository: clonePtr(im.Repository), Tag: clonePtr(im.Tag),
				Digest: clonePtr(im.Digest), PullPolicy: clonePtr(im.PullPolicy)}
		}
		oc.Env = deepCopySlice(c.Env, func(e *corev1.EnvVar) corev1.EnvVar { return *e.DeepCopy() })
		oc.ExtraVolumeMounts = deepCopySlice(c.ExtraVolumeMounts, func(m *corev1.VolumeMount) corev1.VolumeMount { return *m.DeepCopy() })
		out.EnvoyContainer = oc
	}
	if p := in.PodTemplate; p != nil {
		op := &Pod{
			ExtraLabels:                   maps.Clone(p.ExtraLabels),
			ExtraAnnotations:              maps.Clone(p.ExtraAnnotations),
			SecurityContext:               p.SecurityContext.DeepCopy(),
			ImagePullSecrets:              slices.Clone(p.ImagePullSecrets),
			NodeSelector:                  maps.Clone(p.NodeSelector),
			Affinity:                      p.Affinity.DeepCopy(),
			TerminationGracePeriodSeconds: clonePtr(p.TerminationGracePeriodSeconds),
			StartupProbe:                  p.StartupProbe.DeepCopy(),
			ReadinessProbe:                p.ReadinessProbe.DeepCopy(),
			LivenessProbe:                 p.LivenessProbe.DeepCopy(),
			PriorityClassName:             clonePtr(p.PriorityClassName),
		}
		op.Tolerations = deepCopySlice(p.Tolerations, func(t *corev1.Toleration) corev1.Toleration { return *t.DeepCopy() })
		op.TopologySpreadConstraints = deepCopySlice(p.TopologySpreadConstraints,
			func(t *corev1.TopologySpreadConstraint) corev1.TopologySpreadConstraint { return *t.DeepCopy() })
		op.ExtraVolumes = deepCopySlice(p.ExtraVolumes, func(v *corev1.Volume) corev1.Volume { return *v.DeepCopy() })
		if g := p.GracefulShutdown; g != nil {
			op.GracefulShutdown = &GracefulShutdownSpec{Enabled: clonePtr(g.Enabled), SleepTimeSeconds: clonePtr(g.SleepTimeSeconds)}
		}
		out.PodTemplate = op
	}
	if s := in.Service; s != nil {
		os := &Service{
			Type: clonePtr(s.Type), ClusterIP: clonePtr(s.ClusterIP),
			ExtraLabels: maps.Clone(s.ExtraLabels), ExtraAnnotations: maps.Clone(s.ExtraAnnotations),
			ExternalTrafficPolicy:    clonePtr(s.ExternalTrafficPolicy),
			LoadBalancerClass:        clonePtr(s.LoadBalancerClass),
			LoadBalancerSourceRanges: slices.Clone(s.LoadBalancerSourceRanges),
			IPFamilies:               slices.Clone(s.IPFamilies),
			IPFamilyPolicy:           clonePtr(s.IPFamilyPolicy),
		}
		os.Ports = deepCopySlice(s.Ports, func(p *Port) Port { return Port{Port: p.Port, NodePort: clonePtr(p.NodePort)} })
		out.Service = os
	}
	if sa := in.ServiceAccount; sa != nil {
		out.ServiceAccount = &ServiceAccount{ExtraLabels: maps.Clone(sa.ExtraLabels), ExtraAnnotations: maps.Clone(sa.ExtraAnnotations)}
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cloneRaw(r json.RawMessage) json.RawMessage {
	if r == nil {
		return nil
	}
	return slices.Clone(r)
}

func deepCopySlice[T any](in []T, cp func(*T) T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i := range in {
		out[i] = cp(&in[i])
	}
	return out
}
