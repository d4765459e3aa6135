package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// istiod's mesh ConfigMap (revision canary) reaches the proxies through
// the translator, and a change to it is streamed to a connected proxy:
// path normalization, the external authorizers (resolved to the Service's
// backend) and the trust domain.
func TestMeshConfigMapReachesTheProxies(t *testing.T) {
	env, ctl := startControllerWith(t, controller.Options{IstioNamespace: "istio-system", Revision: "canary"})
	c := env.Client
	ctx := context.Background()
	apply(t, c, example(t, "httpbin-mesh.yaml"))
	apply(t, c, example(t, "waypoint-gw.yaml"))
	if err := c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext-authz", Namespace: "httpbin"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}}}); err != nil {
		t.Fatal(err)
	}
	var token string
	eventually(t, 20*time.Second, "the waypoint's ServiceAccount and a token for it", func() error {
		tr, err := env.Clientset.CoreV1().ServiceAccounts("httpbin").CreateToken(ctx, "httpbin-waypoint", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"kgateway-waypoint"}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		token = tr.Status.Token
		return nil
	})
	proxy := runProxy(t, ctl.XDSAddr().String(), token, ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})
	eventually(t, 10*time.Second, "a first configuration, with Istio's default mesh config", func() error {
		w := proxy.last()
		if w == nil || w.PathNormalization != "" || w.ExtAuthzProviders != nil || w.TrustDomain != "cluster.local" {
			return fmt.Errorf("config %+v", w)
		}
		return nil
	})

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-canary", Namespace: "istio-system"},
		Data: map[string]string{"mesh": `trustDomain: example.org
pathNormalization: {normalization: MERGE_SLASHES}
extensionProviders:
- name: ext
  envoyExtAuthzHttp: {service: ext-authz.httpbin.svc.cluster.local, port: 8000}
`}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the mesh config at the proxy", func() error {
		w := proxy.last()
		p := w.ExtAuthzProviders["ext"]
		if w.PathNormalization != ir.NormalizeMergeSlashes || w.TrustDomain != "example.org" || p == nil || p.Backend != "httpbin/ext-authz:8000" {
			return fmt.Errorf("normalization %q, trust domain %q, providers %v", w.PathNormalization, w.TrustDomain, w.ExtAuthzProviders)
		}
		return nil
	})

	cm.Data["mesh"] = "pathNormalization: {normalization: NONE}\n"
	if err := c.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the changed mesh config at the proxy", func() error {
		w := proxy.last()
		if w.PathNormalization != ir.NormalizeNone || w.ExtAuthzProviders != nil || w.TrustDomain != "cluster.local" {
			return fmt.Errorf("normalization %q, trust domain %q, providers %v", w.PathNormalization, w.TrustDomain, w.ExtAuthzProviders)
		}
		return nil
	})
}
