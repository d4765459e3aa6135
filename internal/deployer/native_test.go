package deployer_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
)

func gatewayWith(protocols ...string) *gwv1.Gateway {
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "kgateway-waypoint"}}
	for _, p := range protocols {
		l := gwv1.Listener{Name: gwv1.SectionName("l-" + p), Protocol: gwv1.ProtocolType(p), Port: 15088}
		if p == "HBONE" {
			l.Port = 15008
		}
		gw.Spec.Listeners = append(gw.Spec.Listeners, l)
	}
	return gw
}

func TestDesiredNativeHBONE(t *testing.T) {
	cfg := deployer.Config{Image: "img", XDSAddress: "xds:15010", CAAddress: "istiod-canary.istio-system.svc:15012"}
	o := deployer.Desired(gatewayWith("HBONE"), nil, cfg)
	pod := o.Deployment.Spec.Template
	if got := pod.Labels[deployer.LabelDataplaneMode]; got != "none" {
		t.Errorf("native pod dataplane-mode %q, want none", got)
	}
	if _, ok := pod.Annotations[deployer.AnnotationDNSCapture]; ok {
		t.Error("a native pod carries the ambient dns-capture annotation")
	}
	if ports := o.Service.Spec.Ports; len(ports) != 1 || ports[0].Port != 15008 || ports[0].TargetPort.IntValue() != 15008 {
		t.Errorf("native Service ports %+v, want 15008 only", ports)
	}
	c := pod.Spec.Containers[0]
	if i := slices.Index(c.Args, "--inbound-address"); i < 0 || c.Args[i+1] != "0.0.0.0:15008" {
		t.Errorf("args %v: the inbound must be 15008", c.Args)
	}
	if len(c.Ports) == 0 || c.Ports[0].ContainerPort != 15008 {
		t.Errorf("container ports %+v", c.Ports)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["CA_ADDR"].Value != cfg.CAAddress || env["TRUST_DOMAIN"].Value != "cluster.local" ||
		env["SERVICE_ACCOUNT"].ValueFrom == nil || env["SERVICE_ACCOUNT"].ValueFrom.FieldRef.FieldPath != "spec.serviceAccountName" {
		t.Errorf("env %+v", env)
	}
	var token *corev1.ServiceAccountTokenProjection
	var root *corev1.ConfigMapVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken.Audience == "istio-ca" {
			token = v.Projected.Sources[0].ServiceAccountToken
		}
		if v.ConfigMap != nil {
			root = v.ConfigMap
		}
	}
	if token == nil || token.Path != "istio-token" {
		t.Fatalf("no istio-ca token projection: %+v", pod.Spec.Volumes)
	}
	if root == nil || root.Name != "istio-ca-root-cert" {
		t.Fatalf("no istio-ca-root-cert mount: %+v", pod.Spec.Volumes)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	// Where the proxy's --ca-token-file and --ca-root-cert defaults look.
	if mounts["/var/run/secrets/tokens"] == "" || mounts["/var/run/secrets/istio"] == "" {
		t.Errorf("mounts %v", mounts)
	}
}

// A sandwich Gateway, and one with both listeners, stay as they were.
func TestDesiredSandwichUnchanged(t *testing.T) {
	for _, gw := range []*gwv1.Gateway{gatewayWith("istio.io/PROXY"), gatewayWith("istio.io/PROXY", "HBONE")} {
		o := deployer.Desired(gw, nil, deployer.Config{Image: "img", XDSAddress: "xds:15010"})
		pod := o.Deployment.Spec.Template
		if pod.Labels[deployer.LabelDataplaneMode] != "ambient" || len(o.Service.Spec.Ports) != 2 {
			t.Errorf("%v: mode %q, %d Service ports", gw.Spec.Listeners, pod.Labels[deployer.LabelDataplaneMode], len(o.Service.Spec.Ports))
		}
		for _, e := range pod.Spec.Containers[0].Env {
			if e.Name == "CA_ADDR" {
				t.Errorf("%v: a sandwich pod gets the CA settings", gw.Spec.Listeners)
			}
		}
	}
}
