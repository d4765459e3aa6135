package v1alpha1_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
)

// A GatewayParameters with every field of kgateway 2.1's spec.kube set.
const fullParams = `apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata: {name: p, namespace: ns, labels: {a: b}}
spec:
  kube:
    deployment: {replicas: 2, strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 100%}}}
    envoyContainer:
      bootstrap: {logLevel: debug, componentLogLevels: {upstream: trace}}
      image: {registry: r.example, repository: wp, tag: v1, digest: "sha256:0", pullPolicy: Always}
      securityContext: {runAsUser: 1, capabilities: {drop: [ALL]}}
      resources: {requests: {cpu: 100m}, limits: {memory: 1Gi}}
      env: [{name: A, value: b}]
      extraVolumeMounts: [{name: v, mountPath: /v}]
    podTemplate:
      extraLabels: {l: v}
      extraAnnotations: {a: v}
      securityContext: {fsGroup: 3, sysctls: [{name: net.x, value: "1"}]}
      imagePullSecrets: [{name: s}]
      nodeSelector: {n: v}
      affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: zone}}]}}
      tolerations: [{key: k, operator: Exists, tolerationSeconds: 5}]
      gracefulShutdown: {enabled: true, sleepTimeSeconds: 3}
      terminationGracePeriodSeconds: 60
      startupProbe: {tcpSocket: {port: 1}}
      readinessProbe: {httpGet: {path: /r, port: 2}}
      livenessProbe: {exec: {command: [x]}}
      topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]
      extraVolumes: [{name: v, emptyDir: {}}]
      priorityClassName: high
    service:
      type: NodePort
      clusterIP: 10.0.0.1
      extraLabels: {s: v}
      extraAnnotations: {s: v}
      ports: [{port: 15088, nodePort: 30000}]
      externalTrafficPolicy: Local
      loadBalancerClass: example.com/lb
      loadBalancerSourceRanges: [10.0.0.0/8]
      ipFamilies: [IPv4]
      ipFamilyPolicy: SingleStack
    serviceAccount: {extraLabels: {sa: v}, extraAnnotations: {sa: v}}
    floatingUserId: true
    omitDefaultSecurityContext: false
    sdsContainer: {image: {tag: "1"}}
    istio: {istioProxyContainer: {logLevel: info}}
    stats: {enabled: true}
    aiExtension: {enabled: false}
    agentgateway: {enabled: false}
`

// mutate changes every value reachable from v (strings, numbers, booleans,
// map entries, raw JSON bytes), in place.
func mutate(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			mutate(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				mutate(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			mutate(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			mutate(e)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint8, reflect.Uint16:
		if v.Kind() == reflect.Uint8 || v.Kind() == reflect.Uint16 {
			v.SetUint(v.Uint() + 1)
		} else {
			v.SetInt(v.Int() + 1)
		}
	case reflect.Bool:
		v.SetBool(!v.Bool())
	}
}

// Every field decodes under kgateway's JSON names (strictly), and the
// hand-written DeepCopy shares nothing with the original.
func TestGatewayParametersDecodeAndDeepCopy(t *testing.T) {
	var p kgw.GatewayParameters
	if err := yaml.UnmarshalStrict([]byte(fullParams), &p); err != nil {
		t.Fatal(err)
	}
	if err := p.Spec.Validate(); err != nil {
		t.Fatal(err)
	}
	k := p.Spec.Kube
	if *k.Deployment.Replicas != 2 || *k.EnvoyContainer.Image.Tag != "v1" || k.PodTemplate.Tolerations[0].Key != "k" ||
		*k.Service.Ports[0].NodePort != 30000 || !strings.Contains(string(k.SdsContainer), "image") {
		t.Fatalf("decoded %+v", k)
	}
	cp := p.DeepCopy()
	if !reflect.DeepEqual(&p, cp) {
		t.Fatal("the copy differs")
	}
	before, _ := json.Marshal(&p)
	mutate(reflect.ValueOf(cp))
	after, _ := json.Marshal(&p)
	if string(before) != string(after) {
		t.Errorf("changing the copy changed the original:\n%s\n%s", before, after)
	}
	if changed, _ := json.Marshal(cp); string(changed) == string(before) {
		t.Error("the mutation changed nothing: the test proves nothing")
	}
	l := &kgw.GatewayParametersList{Items: []kgw.GatewayParameters{p}}
	lc := l.DeepCopyObject().(*kgw.GatewayParametersList)
	*lc.Items[0].Spec.Kube.Deployment.Replicas = 9
	if *l.Items[0].Spec.Kube.Deployment.Replicas != 2 {
		t.Error("the list copy shares items")
	}
}
