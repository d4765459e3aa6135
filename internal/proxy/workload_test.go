package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// workloadManifests is a waypoint for workload and service traffic
// (waypoint-for: all) in namespace ns, with a pod for each ip (captured
// through the namespace label), and a pod "outside" in a namespace that
// does not use the waypoint.
func workloadManifests(outsideIP string, ips ...string) string {
	s := `
apiVersion: v1
kind: Namespace
metadata: {name: ns, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: v1
kind: Namespace
metadata: {name: elsewhere}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: ns, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Pod
metadata: {name: outside, namespace: elsewhere}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: "` + outsideIP + `"}
`
	for i, ip := range ips {
		s += fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata: {name: pod-%d, namespace: ns}
spec: {serviceAccountName: app, containers: [{name: c, image: x}]}
status: {phase: Running, podIP: %q}
`, i, ip)
	}
	return s
}

const gatewayTarget = `{group: gateway.networking.k8s.io, kind: Gateway, name: wp}`

// Traffic addressed to a pod IP:port of a workload the waypoint serves
// reaches that pod on that port, whatever the port, as HTTP (detected
// from the first bytes) through the waypoint's L7 (x-request-id,
// server: envoy); the policies that target the Gateway authorize it.
func TestWorkloadTrafficHTTP(t *testing.T) {
	a := startBackend(t, "a", "127.0.3.1", false)
	b := startBackend(t, "b", "127.0.3.2", false)
	w := startWaypoint(t, workloadManifests("127.0.3.9", "127.0.3.1", "127.0.3.2")+
		policy("deny-admin", gatewayTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/admin"]}}]}]`))
	for _, tc := range []struct {
		be   *backend
		path string
	}{{a, "/get"}, {b, "/get"}, {a, "/other"}} {
		resp, body := w.do(tc.be.addr.String(), curlID, get(tc.path))
		if resp.StatusCode != 200 {
			t.Fatalf("%s%s: status %d: %s", tc.be.addr, tc.path, resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if e.Backend != tc.be.name || e.Path != tc.path {
			t.Errorf("request to %s%s reached %s%s", tc.be.addr, tc.path, e.Backend, e.Path)
		}
		if len(e.Headers["X-Request-Id"]) != 1 || resp.Header.Get("Server") != "envoy" {
			t.Errorf("not served through the waypoint's L7: request headers %v, server %q", e.Headers, resp.Header.Get("Server"))
		}
	}
	hits := a.Hits()
	resp, body := w.do(a.addr.String(), curlID, get("/admin"))
	if resp.StatusCode != 403 || body != "RBAC: access denied" {
		t.Fatalf("Gateway-targeted DENY: status %d %q", resp.StatusCode, body)
	}
	if a.Hits() != hits {
		t.Error("a denied request reached the pod")
	}
}

// A Service-targeted policy is not the workload's: it authorizes the
// service's traffic only.
func TestWorkloadTrafficIgnoresServicePolicies(t *testing.T) {
	a := startBackend(t, "a", "127.0.3.1", false)
	w := startWaypoint(t, workloadManifests("127.0.3.9", "127.0.3.1")+
		serviceManifest("svc", "127.0.100.1", 80, "http", "", a.addr)+
		policy("deny-svc", svcTarget, "DENY", `  rules: [{}]`))
	if resp, _ := w.do("127.0.100.1:80", curlID, get("/")); resp.StatusCode != 403 {
		t.Fatalf("service traffic: status %d, want 403", resp.StatusCode)
	}
	if resp, body := w.do(a.addr.String(), curlID, get("/")); resp.StatusCode != 200 || decodeEcho(t, body).Backend != "a" {
		t.Fatalf("workload traffic: status %d %q", resp.StatusCode, body)
	}
}

// Bytes that are not HTTP are proxied as TCP to the pod; a Gateway-
// targeted policy's L4 fields authorize them.
func TestWorkloadTrafficTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.3.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				data, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo:"), data...))
			}()
		}
	}()
	ep := ln.Addr().String()
	w := startWaypoint(t, workloadManifests("127.0.3.9", "127.0.3.1")+
		policy("only-curl", gatewayTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`))
	for _, msg := range []string{"\x00\x01binary", "hello there", "get lowercase"} {
		c := w.dial(ep, curlID)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("%q: got %q, %v", msg, got, err)
		}
	}
	c := w.dial(ep, notCurlID)
	_, _ = c.Write([]byte("hello"))
	expectClosed(t, c)
}

// h2c prior knowledge to a workload is served as HTTP/2 and sent on to the
// pod in HTTP/2.
func TestWorkloadTrafficH2C(t *testing.T) {
	b := startBackend(t, "a", "127.0.3.1", true)
	w := startWaypoint(t, workloadManifests("127.0.3.9", "127.0.3.1"))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return meshclient.Dial(ctx, w.addr, meshclient.Conn{Source: clientAddr, Destination: b.addr, Identity: curlID})
		},
		TLSClientConfig: &tls.Config{},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("http://pod/h2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("proto %s status %d", resp.Proto, resp.StatusCode)
	}
	if e := decodeEcho(t, string(body)); e.Proto != "HTTP/2.0" || e.Path != "/h2" {
		t.Errorf("pod saw %s %s", e.Proto, e.Path)
	}
}

// A pod IP the waypoint does not serve (unknown, or a pod whose namespace
// does not use the waypoint) is closed, as an unknown VIP is; so is any
// workload traffic when the waypoint takes service traffic only.
func TestWorkloadTrafficNotServed(t *testing.T) {
	a := startBackend(t, "a", "127.0.3.1", false)
	out := startBackend(t, "out", "127.0.3.9", false)
	w := startWaypoint(t, workloadManifests("127.0.3.9", "127.0.3.1"))
	for _, dst := range []string{"127.0.3.7:80", out.addr.String()} {
		c := w.dial(dst, curlID)
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		expectClosed(t, c)
	}
	if out.Hits() != 0 {
		t.Error("a pod not served by the waypoint was reached")
	}
	// The same pod, the waypoint for services only.
	svcOnly := startWaypoint(t, waypointManifests+`---
apiVersion: v1
kind: Pod
metadata: {name: pod-0, namespace: ns}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: "127.0.3.1"}
`)
	c := svcOnly.dial(a.addr.String(), curlID)
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	expectClosed(t, c)
	if a.Hits() != 0 {
		t.Error("workload traffic served by a service-only waypoint")
	}
	if cur := svcOnly.proxy.Current(); cur == nil || len(cur.Workloads) != 0 || cur.WorkloadPort != nil {
		t.Errorf("a service-only waypoint has workloads: %+v", cur)
	}
}
