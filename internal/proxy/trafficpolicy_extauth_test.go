package proxy_test

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// kgateway's extAuth through a GatewayExtension: a real
// envoy.service.auth.v3.Authorization server on loopback (go-control-plane's
// generated service) checks the requests; the rule whose policy disables
// extAuth is not checked.
type allowHeaderAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	checks atomic.Int32
}

func (a *allowHeaderAuthorizer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.checks.Add(1)
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-allow"] == "yes" {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: "denied by ext auth"}}}, nil
}

func TestTrafficPolicyExtAuth(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.3.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authz := &allowHeaderAuthorizer{}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, authz)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	authAddr := l.Addr().(*net.TCPAddr).AddrPort()

	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(a.addr)+serviceManifest("ext-authz", "127.0.100.9", 9000, "grpc", "grpc", netip.AddrPortFrom(authAddr.Addr(), authAddr.Port()))+`
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata: {name: basic-auth, namespace: ns}
spec:
  type: ExtAuth
  extAuth:
    grpcService:
      backendRef: {name: ext-authz, port: 9000}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /public}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: gateway.kgateway.dev, kind: TrafficPolicy, name: no-auth}
    backendRefs: [{name: svc, port: 80}]
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: auth, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]
  extAuth:
    extensionRef: {name: basic-auth}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: no-auth, namespace: ns}
spec:
  extAuth: {disable: {}}
`)
	resp, body := w.do(vip, curlID, get("/private"))
	if resp.StatusCode != 403 || body != "denied by ext auth" {
		t.Fatalf("without the header: %d %q, want the authorizer's 403", resp.StatusCode, body)
	}
	if resp, body := w.do(vip, curlID, get("/private", "X-Allow", "yes")); resp.StatusCode != 200 {
		t.Fatalf("allowed: %d %q", resp.StatusCode, body)
	}
	checks := authz.checks.Load()
	if checks != 2 {
		t.Fatalf("%d checks, want 2", checks)
	}
	if resp, body := w.do(vip, curlID, get("/public")); resp.StatusCode != 200 {
		t.Fatalf("the rule with extAuth disabled: %d %q", resp.StatusCode, body)
	}
	if authz.checks.Load() != checks {
		t.Fatal("the rule with extAuth disabled was checked")
	}
	if a.Hits() != 2 {
		t.Fatalf("backend saw %d requests, want 2", a.Hits())
	}

	// A GatewayExtension that is not there: fail closed.
	w.apply(svcManifests(a.addr) + `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: auth, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]
  extAuth:
    extensionRef: {name: missing}
`)
	if resp, _ := w.do(vip, curlID, get("/private", "X-Allow", "yes")); resp.StatusCode != 403 {
		t.Fatalf("a missing GatewayExtension: %d, want 403 (denied)", resp.StatusCode)
	}
}
