package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
)

// On the real API server: a DestinationRule written as v1beta1 (a user's
// sticky-session rule) reaches the waypoint's proxy over xDS as a
// consistent hash on the cookie; the field the waypoint does not honour is
// named in our condition in status.kgatewayWaypoint; a change of the rule
// and its deletion reach the proxy too.
func TestDestinationRuleReachesTheProxy(t *testing.T) {
	env, ctl := startController(t)
	c := env.Client
	ctx := context.Background()
	apply(t, c, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart-sticky, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: cart-session, path: /, ttl: 600s}
    connectionPool: {tcp: {maxConnections: 100}}
`))
	var token string
	eventually(t, 20*time.Second, "the waypoint's ServiceAccount and a token for it", func() error {
		tr, err := env.Clientset.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "wp", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"kgateway-waypoint"}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		token = tr.Status.Token
		return nil
	})
	proxy := runProxy(t, ctl.XDSAddr().String(), token, ir.NamespacedName{Namespace: "shop", Name: "wp"})
	waitFor := func(what string, ok func(b *ir.Backend) error) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() error {
			w := proxy.last()
			if w == nil {
				return fmt.Errorf("no configuration yet")
			}
			b := w.Backends["shop/cart:80"]
			if b == nil {
				return fmt.Errorf("no backend shop/cart:80 in %v", w.Backends)
			}
			return ok(b)
		})
	}
	waitFor("the cookie hash", func(b *ir.Backend) error {
		ch := b.ConsistentHash
		if ch == nil || ch.Cookie == nil || fmt.Sprint(*ch.Cookie) != fmt.Sprint(ir.HashCookie{Name: "cart-session", Path: "/", Generate: true, TTLSeconds: 600}) {
			return fmt.Errorf("consistent hash %+v", ch)
		}
		return nil
	})
	key := types.NamespacedName{Namespace: "shop", Name: "cart-sticky"}
	eventually(t, 20*time.Second, "our condition on the DestinationRule", func() error {
		if got := ourIstioCondition(t, c, "DestinationRule", key, status.ConditionWaypointAccepted); got != "True/UnsupportedValue" {
			return fmt.Errorf("WaypointAccepted = %q", got)
		}
		u := istioObject("DestinationRule")
		if err := c.Get(ctx, key, u); err != nil {
			return err
		}
		list, _, _ := unstructured.NestedSlice(u.Object, "status", status.IstioStatusField, "conditions")
		if len(list) != 1 || !strings.Contains(fmt.Sprint(list[0].(map[string]any)["message"]), "trafficPolicy.connectionPool") {
			return fmt.Errorf("conditions %v do not name trafficPolicy.connectionPool", list)
		}
		return nil
	})

	u := istioObject("DestinationRule")
	if err := c.Get(ctx, key, u); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, map[string]any{"consistentHash": map[string]any{"httpHeaderName": "X-User"}},
		"spec", "trafficPolicy", "loadBalancer"); err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(u.Object, "spec", "trafficPolicy", "connectionPool")
	if err := c.Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	waitFor("the header hash", func(b *ir.Backend) error {
		if ch := b.ConsistentHash; ch == nil || ch.Header != "x-user" || ch.Cookie != nil {
			return fmt.Errorf("consistent hash %+v", ch)
		}
		return nil
	})
	eventually(t, 20*time.Second, "the condition without unsupported fields", func() error {
		if got := ourIstioCondition(t, c, "DestinationRule", key, status.ConditionWaypointAccepted); got != "True/Accepted" {
			return fmt.Errorf("WaypointAccepted = %q", got)
		}
		return nil
	})
	if err := c.Delete(ctx, u); err != nil {
		t.Fatal(err)
	}
	waitFor("no hash once the rule is deleted", func(b *ir.Backend) error {
		if b.ConsistentHash != nil {
			return fmt.Errorf("consistent hash %+v", b.ConsistentHash)
		}
		return nil
	})
}
