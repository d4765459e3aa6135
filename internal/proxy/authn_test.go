package proxy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// signer makes RS256 tokens and the inline JWKS that verifies them.
type signer struct {
	key  *rsa.PrivateKey
	jwks string
}

func newSigner(t *testing.T) *signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, jwks: string(b)}
}

func (s *signer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRequestAuthenticationAndRequestPrincipals(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	s := newSigner(t)
	jwks, _ := json.Marshal(s.jwks)
	w := startWaypoint(t, svcManifests(b.addr)+`
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  jwtRules:
  - issuer: https://issuer.example
    jwks: `+string(jwks)+`
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
`+policy("need-alice-admins", svcTarget, "ALLOW", `  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admins"]}]
`))
	exp := time.Now().Add(time.Hour).Unix()
	alice := s.token(t, map[string]any{"iss": "https://issuer.example", "sub": "alice", "exp": exp, "groups": []string{"dev", "admins"}})
	bob := s.token(t, map[string]any{"iss": "https://issuer.example", "sub": "bob", "exp": exp, "groups": []string{"admins"}})
	expired := s.token(t, map[string]any{"iss": "https://issuer.example", "sub": "alice", "exp": time.Now().Add(-time.Hour).Unix(), "groups": []string{"admins"}})

	resp, body := w.do(vip, curlID, get("/", "Authorization", "Bearer "+alice))
	if resp.StatusCode != 200 {
		t.Fatalf("alice: %d %q", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if got := e.Headers["X-Jwt-Sub"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("claim header upstream: %q", got)
	}
	if _, ok := e.Headers["Authorization"]; ok {
		t.Error("the token was forwarded although forwardOriginalToken is false")
	}
	if resp, _ := w.do(vip, curlID, get("/", "Authorization", "Bearer "+bob)); resp.StatusCode != 403 {
		t.Errorf("bob (valid token, wrong principal): %d, want 403", resp.StatusCode)
	}
	resp, body = w.do(vip, curlID, get("/", "Authorization", "Bearer "+expired))
	if resp.StatusCode != 401 || body != "Jwt is expired" || !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Bearer") {
		t.Errorf("expired token: %d %q www-authenticate %q", resp.StatusCode, body, resp.Header.Get("Www-Authenticate"))
	}
	if resp, _ := w.do(vip, curlID, get("/", "Authorization", "Bearer not.a.jwt")); resp.StatusCode != 401 {
		t.Errorf("garbage token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := w.do(vip, curlID, get("/")); resp.StatusCode != 403 {
		t.Errorf("no token: %d, want 403 from the ALLOW policy (no request principal)", resp.StatusCode)
	}
}

// startAuthorizer is an HTTP ext_authz server: it allows requests carrying
// x-allow: yes (adding x-ext-user upstream) and denies others with 401.
func startAuthorizer(t *testing.T) (string, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.1.5:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Allow") == "yes" {
			w.Header().Set("X-Ext-User", "alice")
			w.WriteHeader(200)
			return
		}
		w.Header().Set("X-Ext-Reason", "no allow header")
		w.WriteHeader(401)
		_, _ = io.WriteString(w, "denied by ext")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	return ap.Addr().String(), ap.Port()
}

func TestCustomPolicyWithExternalAuthorizer(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	host, port := startAuthorizer(t)
	mesh := `extensionProviders:
- name: ext-http
  envoyExtAuthzHttp:
    service: ` + host + `
    port: ` + strconv.Itoa(int(port)) + `
    includeRequestHeadersInCheck: [x-allow]
    headersToUpstreamOnAllow: [x-ext-user]
    headersToDownstreamOnDeny: [x-ext-reason]
`
	manifests := svcManifests(b.addr) + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  action: CUSTOM
  provider: {name: ext-http}
  rules: [{to: [{operation: {paths: ["/ext/*"]}}]}]
`
	w, _ := startWithMesh(t, manifests, mesh, proxy.Options{}, inbound.Options{})
	resp, body := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes"))
	if resp.StatusCode != 200 {
		t.Fatalf("allowed by the authorizer: %d %q", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body).Headers["X-Ext-User"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("headersToUpstreamOnAllow: backend got x-ext-user %q", got)
	}
	resp, body = w.do(vip, curlID, get("/ext/b"))
	if resp.StatusCode != 401 || body != "denied by ext" || resp.Header.Get("X-Ext-Reason") != "no allow header" {
		t.Errorf("denied by the authorizer: %d %q reason %q", resp.StatusCode, body, resp.Header.Get("X-Ext-Reason"))
	}
	if resp, _ := w.do(vip, curlID, get("/public")); resp.StatusCode != 200 {
		t.Errorf("a path the CUSTOM policy does not select: %d", resp.StatusCode)
	}

	// A provider the mesh config does not define: the selected requests are denied.
	w2, _ := startWithMesh(t, strings.Replace(manifests, "name: ext-http}", "name: nowhere}", 1), mesh, proxy.Options{}, inbound.Options{})
	if resp, _ := w2.do(vip, curlID, get("/ext/a", "X-Allow", "yes")); resp.StatusCode != 403 {
		t.Errorf("unknown provider: %d, want 403", resp.StatusCode)
	}
	if resp, _ := w2.do(vip, curlID, get("/public")); resp.StatusCode != 200 {
		t.Errorf("unknown provider, unselected path: %d", resp.StatusCode)
	}
}

// The external authorizers come with each configuration: a provider the
// mesh config adds is used from the next update on, one whose settings
// change gets a new client, and the authorizer's Service (in a namespace
// the waypoint does not serve) is reached at the endpoint the translator
// resolved it to, which no name lookup could find.
func TestCustomPolicyFollowsTheConfiguration(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	host, port := startAuthorizer(t)
	authzSvc := fmt.Sprintf(`---
apiVersion: v1
kind: Namespace
metadata: {name: authz}
---
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: authz}
spec:
  clusterIP: 127.0.100.9
  ports: [{name: http, port: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-authz-1
  namespace: authz
  labels: {kubernetes.io/service-name: ext-authz}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints:
- addresses: [%q]
`, port, host)
	manifests := svcManifests(b.addr) + authzSvc + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  action: CUSTOM
  provider: {name: ext-http}
  rules: [{to: [{operation: {paths: ["/ext/*"]}}]}]
`
	mesh := func(headers string) string {
		return `extensionProviders:
- name: ext-http
  envoyExtAuthzHttp:
    service: ext-authz.authz.svc.cluster.local
    port: 9000
    includeRequestHeadersInCheck: [` + headers + `]
    headersToUpstreamOnAllow: [x-ext-user]
`
	}
	w, _ := startWithMesh(t, manifests, "", proxy.Options{}, inbound.Options{})
	update := func(meshDoc string) {
		t.Helper()
		snap, err := files.LoadBytes("m.yaml", []byte(manifests))
		if err != nil {
			t.Fatal(err)
		}
		if snap.MeshConfig, err = meshconfig.Parse([]byte(meshDoc)); err != nil {
			t.Fatal(err)
		}
		res, err := translate.Translate(snap, translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.proxy.Update(res.Waypoint); err != nil {
			t.Fatal(err)
		}
	}
	if resp, _ := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes")); resp.StatusCode != 403 {
		t.Fatalf("no provider yet: %d, want 403", resp.StatusCode)
	}

	update(mesh("x-allow"))
	resp, body := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes"))
	if resp.StatusCode != 200 {
		t.Fatalf("provider added: %d %q, want 200 from the authorizer", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body).Headers["X-Ext-User"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("headersToUpstreamOnAllow: backend got x-ext-user %q", got)
	}
	if resp, body := w.do(vip, curlID, get("/ext/b")); resp.StatusCode != 401 || body != "denied by ext" {
		t.Errorf("denied by the authorizer: %d %q", resp.StatusCode, body)
	}

	// The provider no longer sends x-allow: a new client, which the
	// authorizer then denies.
	update(mesh("x-other"))
	if resp, body := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes")); resp.StatusCode != 401 {
		t.Errorf("provider changed: %d %q, want 401 (x-allow no longer sent)", resp.StatusCode, body)
	}

	// The provider gone again: denied without asking.
	update("{}")
	if resp, _ := w.do(vip, curlID, get("/ext/a", "X-Allow", "yes")); resp.StatusCode != 403 {
		t.Errorf("provider removed: %d, want 403", resp.StatusCode)
	}
}
