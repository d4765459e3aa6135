package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ztunnelstandin"
)

// destZtunnel is the destination pod's ztunnel (the stand-in, on
// x/net/http2 as Istio's own Go HBONE server is written): mTLS with the
// pod's certificate, each CONNECT dialled to its :authority and copied.
// It records the identity of each client.
type destZtunnel struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func startDestZtunnel(t *testing.T, ip string, pod *identity.Bundle) *destZtunnel {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	z := &destZtunnel{addr: ln.Addr().String()}
	s := &ztunnelstandin.Server{Bundle: pod, Peer: func(id identity.ID) error {
		z.mu.Lock()
		z.seen = append(z.seen, id.String())
		z.mu.Unlock()
		return nil
	}}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close() })
	return z
}

func (z *destZtunnel) clients() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.seen...)
}

const nativeManifests = `
apiVersion: v1
kind: Namespace
metadata: {name: httpbin, labels: {istio.io/use-waypoint: waypoint, istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: httpbin}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: HBONE, port: 15008}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: httpbin}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 8000, targetPort: %[1]d}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: httpbin-1, namespace: httpbin, labels: {kubernetes.io/service-name: httpbin}}
addressType: IPv4
ports: [{name: http, port: %[1]d}]
endpoints: [{addresses: [127.0.0.1], targetRef: {kind: Pod, name: httpbin-pod, namespace: httpbin}}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-pod, namespace: httpbin, labels: {istio.io/dataplane-mode: %[2]s}}
spec: {serviceAccountName: %[3]s, containers: [{name: c, image: i}]}
status: {podIP: 127.0.0.1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: curl-only, namespace: httpbin}
spec:
  targetRefs: [{kind: Service, group: "", name: httpbin}]
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/httpbin/sa/curl]}}]}]
`

type nativeWaypoint struct {
	proxy *proxy.Proxy
	srv   *inbound.Server
	addr  string
	ca    *identity.CA
}

func (n *nativeWaypoint) apply(t *testing.T, backendPort uint16, mode, sa string) {
	t.Helper()
	snap, err := files.LoadBytes("native.yaml", fmt.Appendf(nil, nativeManifests, backendPort, mode, sa))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Waypoint.HBONE {
		t.Fatal("an HBONE listener did not select native mode")
	}
	if err := n.proxy.Update(res.Waypoint); err != nil {
		t.Fatal(err)
	}
}

func startNative(t *testing.T, ca *identity.CA, hbonePort uint16) *nativeWaypoint {
	t.Helper()
	wb, err := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "waypoint"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	own := identity.NewStatic(wb)
	p := proxy.New(proxy.Options{Upstream: upstream.Options{Identity: own, HBONEPort: hbonePort}})
	n := &nativeWaypoint{proxy: p, ca: ca}
	n.srv = inbound.NewServer(p, inbound.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	go func() {
		_ = n.srv.ServeHBONE(ln, inbound.HBONEOptions{Identity: own, TrustDomains: func() (string, []string) {
			w := p.Current()
			return w.TrustDomain, w.TrustDomainAliases
		}})
	}()
	t.Cleanup(func() {
		_ = n.srv.Close()
		p.Close()
	})
	return n
}

// client opens tunnels to the waypoint as the source ztunnel does, with
// the client workload's certificate.
func (n *nativeWaypoint) get(t *testing.T, sa, path string) (int, string) {
	t.Helper()
	b, err := n.ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: sa}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(b), TrustDomains: func() (string, []string) { return "cluster.local", nil }})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pool.Dial(ctx, hbone.Target{Address: n.addr, Authority: "10.96.0.10:8000",
		Identity: "spiffe://cluster.local/ns/httpbin/sa/waypoint"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: httpbin:8000\r\nConnection: close\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestNativeHBONEBothWays: a request arrives over mTLS HBONE with the
// client's certificate, is authorized by that identity, and leaves over
// HBONE to the pod's ztunnel with the waypoint's certificate, the pod's
// identity checked.
func TestNativeHBONEBothWays(t *testing.T) {
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
	n.apply(t, be.addr.Port(), "ambient", "httpbin")

	code, body := n.get(t, "curl", "/headers")
	if code != 200 {
		t.Fatalf("curl: %d %s", code, body)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Backend != "httpbin" || e.Path != "/headers" {
		t.Fatalf("backend answered %q (%v)", body, err)
	}
	if len(e.Headers["X-Request-Id"]) != 1 {
		t.Errorf("no x-request-id reached the backend: the waypoint did not serve L7")
	}
	if got := z.clients(); len(got) != 1 || got[0] != "spiffe://cluster.local/ns/httpbin/sa/waypoint" {
		t.Fatalf("the destination ztunnel saw clients %v, want the waypoint's identity once", got)
	}
	// The source identity is the client certificate's: notcurl is denied.
	if code, body := n.get(t, "notcurl", "/headers"); code != 403 || body != "RBAC: access denied" {
		t.Fatalf("notcurl: %d %q", code, body)
	}

	// The pod's ServiceAccount is not the identity its ztunnel proves:
	// the tunnel is refused and the request fails, never sent in clear.
	n.apply(t, be.addr.Port(), "ambient", "impostor")
	hits := be.hits
	if code, _ := n.get(t, "curl", "/headers"); code != 503 {
		t.Fatalf("wrong destination identity: %d, want 503", code)
	}
	if be.hits != hits {
		t.Fatal("the request reached the backend despite the wrong identity")
	}

	// A pod outside the mesh gets plain TCP, straight to the backend.
	before := len(z.clients())
	n.apply(t, be.addr.Port(), "none", "httpbin")
	if code, _ := n.get(t, "curl", "/headers"); code != 200 {
		t.Fatalf("plain endpoint: %d", code)
	}
	if len(z.clients()) != before {
		t.Fatal("a pod outside the mesh was reached over HBONE")
	}
}
