package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
)

// A kgateway TrafficPolicy attached through an HTTPRoute of a served
// Service gets this controller's entry in status.ancestors (the waypoint
// Gateway, our controllerName, Accepted/Attached, PartiallyInvalid naming
// the field the waypoint leaves out), next to another controller's entry,
// which stays; a policy that stops attaching loses our entry.
func TestTrafficPolicyStatus(t *testing.T) {
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: limit, namespace: app}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  rateLimit:
    local:
      tokenBucket: {maxTokens: 10, fillInterval: 1s}
  extAuth:
    extensionRef: {name: authz}
`))
	key := types.NamespacedName{Namespace: "app", Name: "limit"}
	// Another controller's entry (kgateway's own, during a migration).
	p := &kgw.TrafficPolicy{}
	if err := c.Get(ctx, key, p); err != nil {
		t.Fatal(err)
	}
	other := gwv1.PolicyAncestorStatus{AncestorRef: gwv1.ParentReference{Name: "other-gw"}, ControllerName: "kgateway.dev/kgateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Valid", Message: "theirs", LastTransitionTime: metav1.Now()}}}
	p.Status.Ancestors = []gwv1.PolicyAncestorStatus{other}
	if err := c.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	ours := func(p *kgw.TrafficPolicy) *gwv1.PolicyAncestorStatus {
		for i := range p.Status.Ancestors {
			if p.Status.Ancestors[i].ControllerName == controller.DefaultControllerName {
				return &p.Status.Ancestors[i]
			}
		}
		return nil
	}
	eventually(t, 30*time.Second, "our ancestor entry on the TrafficPolicy", func() error {
		if err := c.Get(ctx, key, p); err != nil {
			return err
		}
		a := ours(p)
		if a == nil {
			return fmt.Errorf("no entry of ours: %+v", p.Status.Ancestors)
		}
		if a.AncestorRef.Name != "wp" || a.AncestorRef.Kind == nil || *a.AncestorRef.Kind != "Gateway" ||
			a.AncestorRef.Namespace == nil || *a.AncestorRef.Namespace != "app" {
			return fmt.Errorf("ancestorRef %+v, want Gateway app/wp", a.AncestorRef)
		}
		if got := cond(a.Conditions, "Accepted"); got != "True/Valid" {
			return fmt.Errorf("Accepted %s", got)
		}
		if got := cond(a.Conditions, "Attached"); got != "True/Attached" {
			return fmt.Errorf("Attached %s", got)
		}
		if got := cond(a.Conditions, "PartiallyInvalid"); got != "True/UnsupportedValue" {
			return fmt.Errorf("PartiallyInvalid %s", got)
		}
		return nil
	})
	for _, c := range ours(p).Conditions {
		if c.Type == "PartiallyInvalid" && !strings.Contains(c.Message, "extAuth") {
			t.Errorf("PartiallyInvalid does not name extAuth: %q", c.Message)
		}
	}
	found := false
	for _, a := range p.Status.Ancestors {
		if a.ControllerName == "kgateway.dev/kgateway" && a.AncestorRef.Name == "other-gw" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the other controller's entry was dropped: %+v", p.Status.Ancestors)
	}
	// Retarget the policy at a route that does not exist: it attaches to
	// nothing of this waypoint, and our entry goes.
	p.Spec.TargetRefs[0].Name = "gone"
	if err := c.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "our entry removed", func() error {
		if err := c.Get(ctx, key, p); err != nil {
			return err
		}
		if ours(p) != nil {
			return fmt.Errorf("still ours: %+v", ours(p))
		}
		if len(p.Status.Ancestors) != 1 {
			return fmt.Errorf("ancestors %+v, want only the other controller's", p.Status.Ancestors)
		}
		return nil
	})
}
