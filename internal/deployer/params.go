package deployer

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
)

// Parameters are the deployment settings the GatewayClass's
// spec.parametersRef and the Gateway's spec.infrastructure.parametersRef
// give, each a ConfigMap or a kgateway GatewayParameters (gwparams.go; see
// ResolveParameters for how they merge). Each key of a ConfigMap's data is
// one setting (YAML); a Gateway's ConfigMap overrides its class's key by
// key:
//
//	replicas: "2"
//	resources: |
//	  requests: {cpu: 200m, memory: 256Mi}
//	  limits: {memory: 1Gi}
//	horizontalPodAutoscaler: |      # a HorizontalPodAutoscalerSpec (autoscaling/v2)
//	  minReplicas: 2                 # without scaleTargetRef: the waypoint's Deployment
//	  maxReplicas: 10
//	podDisruptionBudget: |           # a PodDisruptionBudgetSpec (policy/v1)
//	  minAvailable: 1                # without selector: the waypoint's pods
//	limits: |                        # the proxy's limit flags, by name
//	  max-connections: 20000
//	  connect-timeout: 5s
//
// With an autoscaler, replicas is left to it. The limits are the proxy's
// flags that dataplane.LimitFlags lists (checked here as the proxy parses
// them); they come after the controller's --proxy-arg arguments, so a
// Gateway's parameters win over the chart's proxy.limits.
type Parameters struct {
	Replicas  *int32
	Resources *corev1.ResourceRequirements
	HPA       *autoscalingv2.HorizontalPodAutoscalerSpec
	PDB       *policyv1.PodDisruptionBudgetSpec
	// Limits are the limit flags as arguments ("--max-connections=20000").
	Limits []string

	// Kube is the merged spec.kube of the kgateway GatewayParameters
	// referenced (nil: none); its replicas and resources are in Replicas
	// and Resources. Unsupported names the fields set that the waypoint
	// does not implement (reported on the Gateway).
	Kube        *kgwv1alpha1.KubernetesProxyConfig
	Unsupported []string
}

// ConfigMap data keys.
const (
	KeyReplicas  = "replicas"
	KeyResources = "resources"
	KeyHPA       = "horizontalPodAutoscaler"
	KeyPDB       = "podDisruptionBudget"
	KeyLimits    = "limits"
)

// ParametersError is a problem with the parameters: the Gateway is not
// accepted (reason InvalidParameters) until it is fixed.
type ParametersError struct{ Msg string }

func (e *ParametersError) Error() string { return e.Msg }

func paramsErr(format string, args ...any) error {
	return &ParametersError{Msg: fmt.Sprintf(format, args...)}
}

// ResolveParameters reads the class's and the Gateway's parameters (each
// a ConfigMap or a kgateway GatewayParameters) and merges them: the class's
// first, then the Gateway's over them, as kgateway does. A ConfigMap
// overrides what the level below set key by key; a GatewayParameters'
// replicas and resources override too, and two GatewayParameters merge as
// kgateway's deep merge (mergeKube). class may be nil.
func ResolveParameters(ctx context.Context, r client.Reader, class *gwv1.GatewayClass, gw *gwv1.Gateway) (*Parameters, error) {
	p := &Parameters{}
	if class != nil && class.Spec.ParametersRef != nil {
		ref := class.Spec.ParametersRef
		what := "GatewayClass " + class.Name + " parametersRef"
		if ref.Namespace == nil || *ref.Namespace == "" {
			return nil, paramsErr("%s needs a namespace (ConfigMaps and GatewayParameters are namespaced)", what)
		}
		if err := p.addLevel(ctx, r, string(ref.Group), string(ref.Kind), string(*ref.Namespace), ref.Name, what); err != nil {
			return nil, err
		}
	}
	if gw.Spec.Infrastructure != nil && gw.Spec.Infrastructure.ParametersRef != nil {
		ref := gw.Spec.Infrastructure.ParametersRef
		if err := p.addLevel(ctx, r, string(ref.Group), string(ref.Kind), gw.Namespace, ref.Name,
			"spec.infrastructure.parametersRef"); err != nil {
			return nil, err
		}
	}
	if err := p.checkKube(); err != nil {
		return nil, err
	}
	return p, nil
}

// addLevel reads one parametersRef and lays it over p.
func (p *Parameters) addLevel(ctx context.Context, r client.Reader, group, kind, ns, name, what string) error {
	if group == kgwv1alpha1.Group && kind == KindGatewayParameters {
		kube, err := readGatewayParameters(ctx, r, ns, name, what)
		if err != nil {
			return err
		}
		if _, err := KubeParameters(kube); err != nil {
			return paramsErr("%s: GatewayParameters %s/%s: %s", what, ns, name, err.Error())
		}
		p.addKube(kube)
		return nil
	}
	data, err := readConfigMap(ctx, r, group, kind, ns, name, what)
	if err != nil {
		return err
	}
	q, err := ParseParameters(data)
	if err != nil {
		return paramsErr("%s (ConfigMap %s/%s): %s", what, ns, name, err.Error())
	}
	p.overlay(q)
	return nil
}

// overlay sets what q sets.
func (p *Parameters) overlay(q *Parameters) {
	if q.Replicas != nil {
		p.Replicas = q.Replicas
	}
	if q.Resources != nil {
		p.Resources = q.Resources
	}
	if q.HPA != nil {
		p.HPA = q.HPA
	}
	if q.PDB != nil {
		p.PDB = q.PDB
	}
	if q.Limits != nil {
		p.Limits = q.Limits
	}
}

func readConfigMap(ctx context.Context, r client.Reader, group, kind, ns, name, what string) (map[string]string, error) {
	if (group != "" && group != "core") || kind != "ConfigMap" {
		return nil, paramsErr("%s: %s.%s is not supported; reference a ConfigMap (group \"\", kind ConfigMap) or a GatewayParameters (group %s)",
			what, kind, group, kgwv1alpha1.Group)
	}
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, paramsErr("%s: ConfigMap %s/%s not found", what, ns, name)
		}
		return nil, err // transient: retried
	}
	return cm.Data, nil
}

// ParseParameters reads the data keys of a parameters ConfigMap.
func ParseParameters(data map[string]string) (*Parameters, error) {
	p := &Parameters{}
	var problems []string
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := data[k]
		var err error
		switch k {
		case KeyReplicas:
			var n int64
			n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err == nil && n < 0 {
				err = fmt.Errorf("must not be negative")
			}
			r := int32(n)
			p.Replicas = &r
		case KeyResources:
			p.Resources = &corev1.ResourceRequirements{}
			err = yaml.UnmarshalStrict([]byte(v), p.Resources)
		case KeyHPA:
			p.HPA = &autoscalingv2.HorizontalPodAutoscalerSpec{}
			err = yaml.UnmarshalStrict([]byte(v), p.HPA)
			if err == nil && p.HPA.MaxReplicas < 1 {
				err = fmt.Errorf("maxReplicas must be at least 1")
			}
			if err == nil && p.HPA.MinReplicas != nil && *p.HPA.MinReplicas > p.HPA.MaxReplicas {
				err = fmt.Errorf("minReplicas %d is above maxReplicas %d", *p.HPA.MinReplicas, p.HPA.MaxReplicas)
			}
		case KeyPDB:
			p.PDB = &policyv1.PodDisruptionBudgetSpec{}
			err = yaml.UnmarshalStrict([]byte(v), p.PDB)
			if err == nil && (p.PDB.MinAvailable == nil) == (p.PDB.MaxUnavailable == nil) {
				err = fmt.Errorf("set exactly one of minAvailable and maxUnavailable")
			}
		case KeyLimits:
			p.Limits, err = parseLimits(v)
		default:
			err = fmt.Errorf("unknown key (known: %s, %s, %s, %s, %s)", KeyReplicas, KeyResources, KeyHPA, KeyPDB, KeyLimits)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", k, err))
		}
	}
	if len(problems) > 0 {
		return nil, paramsErr("invalid parameters: %s", strings.Join(problems, "; "))
	}
	return p, nil
}

// parseLimits reads the limits key: a YAML mapping of limit flag names
// (without "--") to values.
func parseLimits(v string) ([]string, error) {
	var raw map[string]any
	if err := yaml.UnmarshalStrict([]byte(v), &raw); err != nil {
		return nil, fmt.Errorf("want a mapping of flag names to values: %w", err)
	}
	limits := make(map[string]string, len(raw))
	for name, val := range raw {
		switch x := val.(type) {
		case string:
			limits[name] = x
		case float64:
			limits[name] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			return nil, fmt.Errorf("%s: want a number or a duration, found %v", name, val)
		}
	}
	return dataplane.LimitArgs(limits)
}
