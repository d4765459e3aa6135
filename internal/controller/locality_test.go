package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// On the real API server: a PreferClose Service's backend carries its
// endpoints' localities, and the waypoint's proxies are told the locality
// of the node their pod is bound to; binding the pod (as the scheduler
// does) and relabelling the node reach the proxy over xDS, with no
// restart. The test stands in for the scheduler (the binding) and the
// endpoint controller (the EndpointSlice).
func TestLocalityReachesTheProxyLive(t *testing.T) {
	env, ctl := startController(t)
	c := env.Client
	ctx := context.Background()
	apply(t, c, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: loc, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: loc}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Node
metadata: {name: wp-node, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: zone-b}}
---
apiVersion: v1
kind: Pod
metadata: {name: wp-1, namespace: loc, labels: {gateway.networking.k8s.io/gateway-name: wp}}
spec: {containers: [{name: proxy, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: loc, annotations: {kgateway.dev/load-balancer: RANDOM}}
spec:
  trafficDistribution: PreferClose
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: loc, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.1.0.1], nodeName: node-b}
`))
	var token string
	eventually(t, 20*time.Second, "the waypoint's ServiceAccount and a token for it", func() error {
		tr, err := env.Clientset.CoreV1().ServiceAccounts("loc").CreateToken(ctx, "wp", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"kgateway-waypoint"}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		token = tr.Status.Token
		return nil
	})
	proxy := runProxy(t, ctl.XDSAddr().String(), token, ir.NamespacedName{Namespace: "loc", Name: "wp"})
	waitFor := func(what string, ok func(w *ir.Waypoint) error) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() error {
			w := proxy.last()
			if w == nil {
				return fmt.Errorf("no configuration yet")
			}
			return ok(w)
		})
	}
	waitFor("the backend's localities", func(w *ir.Waypoint) error {
		b := w.Backends["loc/web:80"]
		if b == nil || b.TrafficDistribution != ir.TrafficDistributionPreferSameZone || len(b.Localities) != 1 ||
			b.Localities[0] != (ir.EndpointLocality{Endpoint: "10.1.0.1:8080", Locality: ir.Locality{Region: "r1", Zone: "zone-b"}, Node: "node-b"}) {
			return fmt.Errorf("backend %+v", b)
		}
		if len(w.NodeLocalities) != 0 {
			return fmt.Errorf("node localities %v before the pod is bound", w.NodeLocalities)
		}
		return nil
	})
	if err := env.Clientset.CoreV1().Pods("loc").Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "wp-1", Namespace: "loc"},
		Target: corev1.ObjectReference{Kind: "Node", Name: "wp-node"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the bound pod's node locality", func(w *ir.Waypoint) error {
		if l, ok := w.NodeLocalities["wp-node"]; !ok || l != (ir.Locality{Region: "r1", Zone: "zone-a"}) {
			return fmt.Errorf("node localities %v", w.NodeLocalities)
		}
		return nil
	})
	// An annotation value we do not know is said on the Service, in our
	// condition type.
	eventually(t, 20*time.Second, "the Service's LoadBalancing condition", func() error {
		svc := &corev1.Service{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "loc", Name: "web"}, svc); err != nil {
			return err
		}
		if got := cond(svc.Status.Conditions, "kgateway-waypoint.kgateway.dev/LoadBalancing"); got != "False/InvalidAnnotation" {
			return fmt.Errorf("LoadBalancing = %q in %v", got, svc.Status.Conditions)
		}
		return nil
	})
	node := &corev1.Node{}
	if err := c.Get(ctx, types.NamespacedName{Name: "wp-node"}, node); err != nil {
		t.Fatal(err)
	}
	node.Labels["topology.kubernetes.io/zone"] = "zone-b"
	if err := c.Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitFor("the relabelled node's locality", func(w *ir.Waypoint) error {
		if l := w.NodeLocalities["wp-node"]; l.Zone != "zone-b" {
			return fmt.Errorf("node localities %v", w.NodeLocalities)
		}
		return nil
	})
}
