package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
)

// rateLimit.global on the real API server: our CRDs take kgateway's
// manifests and give kgateway's defaults (failOpen true, timeout 100ms,
// xRateLimitHeaders Off), refuse an entry type kgateway does not have, and
// the controller reports the policy accepted, or naming the missing
// extension.
func TestTrafficPolicyGlobalRateLimitStatus(t *testing.T) {
	env, _ := startControllerCRDs(t, kubetest.All|kubetest.KgatewayTrafficPolicy, controller.Options{})
	c, ctx := env.Client, context.Background()

	apply(t, c, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratelimit, namespace: app, labels: {istio.io/use-waypoint: none}}
spec: {ports: [{name: grpc, port: 8081, appProtocol: grpc}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata: {name: global-ratelimit, namespace: app}
spec:
  type: RateLimit
  rateLimit:
    grpcService:
      backendRef: {name: ratelimit, port: 8081}
    domain: api-gateway
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: global, namespace: app}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  rateLimit:
    global:
      descriptors:
      - entries:
        - {type: RemoteAddress}
        - {type: Generic, generic: {key: service, value: web}}
      extensionRef: {name: global-ratelimit}
`))
	ext := &kgw.GatewayExtension{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "app", Name: "global-ratelimit"}, ext); err != nil {
		t.Fatal(err)
	}
	if rl := ext.Spec.RateLimit; rl == nil || rl.FailOpen == nil || !*rl.FailOpen || rl.Timeout == nil || *rl.Timeout != "100ms" ||
		rl.XRateLimitHeaders != "Off" || rl.Domain != "api-gateway" {
		t.Fatalf("the API server's defaults: %+v", ext.Spec.RateLimit)
	}

	// An entry type kgateway 2.1 does not have is refused by the schema.
	bad := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: app}
spec:
  rateLimit:
    global:
      descriptors: [{entries: [{type: Cookie}]}]
      extensionRef: {name: global-ratelimit}
`), &bad.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "Cookie") {
		t.Fatalf("an unknown entry type: %v, want refused", err)
	}

	key := types.NamespacedName{Namespace: "app", Name: "global"}
	p := &kgw.TrafficPolicy{}
	conds := func() (map[string]string, string, error) {
		if err := c.Get(ctx, key, p); err != nil {
			return nil, "", err
		}
		for _, a := range p.Status.Ancestors {
			if a.ControllerName == controller.DefaultControllerName {
				m, msg := map[string]string{}, ""
				for _, cd := range a.Conditions {
					m[cd.Type] = string(cd.Status) + "/" + cd.Reason
					if cd.Type == "PartiallyInvalid" {
						msg = cd.Message
					}
				}
				return m, msg, nil
			}
		}
		return nil, "", fmt.Errorf("no entry of ours: %+v", p.Status.Ancestors)
	}
	eventually(t, 30*time.Second, "the policy accepted", func() error {
		m, _, err := conds()
		if err != nil {
			return err
		}
		if m["Accepted"] != "True/Valid" || m["Attached"] != "True/Attached" || m["PartiallyInvalid"] != "" {
			return fmt.Errorf("conditions %v, want accepted and attached, nothing left out", m)
		}
		return nil
	})
	// Pointed at a GatewayExtension that does not exist: reported.
	p.Spec.RateLimit.Global.ExtensionRef.Name = "nowhere"
	if err := c.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the missing extension reported", func() error {
		m, msg, err := conds()
		if err != nil {
			return err
		}
		if m["PartiallyInvalid"] != "True/UnsupportedValue" || !strings.Contains(msg, "GatewayExtension app/nowhere not found") {
			return fmt.Errorf("conditions %v %q, want the missing extension named", m, msg)
		}
		return nil
	})
}
