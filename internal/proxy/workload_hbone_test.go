package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

const nativeWorkloadManifests = `
apiVersion: v1
kind: Namespace
metadata: {name: httpbin, labels: {istio.io/use-waypoint: waypoint, istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: httpbin, labels: {istio.io/waypoint-for: workload}}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: HBONE, port: 15008}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-pod, namespace: httpbin}
spec: {serviceAccountName: httpbin, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 127.0.0.1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: curl-only, namespace: httpbin}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{from: [{source: {principals: [cluster.local/ns/httpbin/sa/curl]}}]}]
`

// TestNativeWorkloadTraffic: in native mode a CONNECT whose :authority is
// a pod IP:port of a workload of the waypoint is served (HTTP detected,
// the Gateway's policy deciding) and goes on over HBONE to that pod, with
// the waypoint's certificate and the pod's identity required.
func TestNativeWorkloadTraffic(t *testing.T) {
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	podCert, _ := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin"}, time.Hour)
	be := startBackend(t, "httpbin", "127.0.0.1", false)
	z := startDestZtunnel(t, "127.0.0.1", podCert)
	_, zport, _ := net.SplitHostPort(z.addr)
	var hp uint16
	_, _ = fmt.Sscan(zport, &hp)
	n := startNative(t, ca, hp)
	snap, err := files.LoadBytes("native.yaml", []byte(nativeWorkloadManifests))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.proxy.Update(res.Waypoint); err != nil {
		t.Fatal(err)
	}
	get := func(sa string) (int, string) {
		b, err := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: sa}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(b), TrustDomains: func() (string, []string) { return "cluster.local", nil }})
		defer pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pool.Dial(ctx, hbone.Target{Address: n.addr, Authority: be.addr.String(),
			Identity: "spiffe://cluster.local/ns/httpbin/sa/waypoint"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /pod HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := get("curl")
	if code != 200 {
		t.Fatalf("curl: %d %s", code, body)
	}
	if e := decodeEcho(t, body); e.Backend != "httpbin" || e.Path != "/pod" || len(e.Headers["X-Request-Id"]) != 1 {
		t.Fatalf("the pod saw %+v", e)
	}
	if got := z.clients(); len(got) != 1 || got[0] != "spiffe://cluster.local/ns/httpbin/sa/waypoint" {
		t.Fatalf("the pod's ztunnel saw clients %v, want the waypoint once", got)
	}
	if code, body := get("notcurl"); code != 403 || body != "RBAC: access denied" {
		t.Fatalf("notcurl: %d %q", code, body)
	}
}
