package files

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDirectoryRecursiveMultiDocument(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", `# comment only document
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: skipped, namespace: ns}
spec: {}
---
`)
	writeFile(t, dir, "sub/deeper/b.yml", `apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec: {action: DENY}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: from-list, namespace: ns}
  spec: {ports: [{port: 81}]}
`)
	writeFile(t, dir, "notes.txt", "not a manifest")
	writeFile(t, dir, ".hidden/c.yaml", "this: [is not read")
	snap, err := Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Namespaces) != 1 || len(snap.Services) != 2 || len(snap.HTTPRoutes) != 1 || len(snap.AuthorizationPolicies) != 1 {
		t.Fatalf("loaded %d namespaces, %d services, %d routes, %d policies",
			len(snap.Namespaces), len(snap.Services), len(snap.HTTPRoutes), len(snap.AuthorizationPolicies))
	}
	if snap.Services[0].Namespace != "default" {
		t.Errorf("a Service without namespace lands in %q, want default", snap.Services[0].Namespace)
	}
	if snap.AuthorizationPolicies[0].Spec.GetAction().String() != "DENY" {
		t.Errorf("policy action %v", snap.AuthorizationPolicies[0].Spec.GetAction())
	}
}

func TestLoadErrorsNameFileObjectAndReason(t *testing.T) {
	cases := []struct {
		name, content string
		object, why   string
	}{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {portz: []}\n", "Service ns/s", "portz"},
		{"unknown policy field", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: {actoin: DENY}\n", "AuthorizationPolicy ns/p", "actoin"},
		{"bad enum", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: {action: MAYBE}\n", "AuthorizationPolicy ns/p", "MAYBE"},
		{"unsupported version", "apiVersion: gateway.networking.k8s.io/v9\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\n", "HTTPRoute ns/r", "not supported"},
		{"no name", "apiVersion: v1\nkind: Service\nmetadata: {namespace: ns}\n", "document 1", "metadata.name"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1", "kind are required"},
		{"bad YAML", "apiVersion: v1\nkind: [\n", "document 1", ""},
		{"bad cluster IP", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {clusterIP: 10.0.0.300}\n", "Service ns/s", "not an IP"},
		{"bad port", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{port: 0}]}\n", "Service ns/s", "between 1 and 65535"},
		{"namespaced cluster object", "apiVersion: v1\nkind: Namespace\nmetadata: {name: nsx, namespace: x}\n", "Namespace nsx", "cluster-scoped"},
		{"gateway without class", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: ns}\nspec: {listeners: []}\n", "Gateway ns/g", "gatewayClassName"},
		{"duplicate", "apiVersion: v1\nkind: Namespace\nmetadata: {name: nsx}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: nsx}\n", "Namespace nsx", "defined twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "m.yaml", tc.content)
			_, err := Load([]string{path}, nil)
			var le *LoadError
			if !errors.As(err, &le) || len(le.Errors) == 0 {
				t.Fatalf("want a LoadError, got %v", err)
			}
			oe := le.Errors[0]
			if oe.File != path || oe.Object != tc.object || !strings.Contains(oe.Reason, tc.why) {
				t.Errorf("got file %q object %q reason %q; want object %q and a reason mentioning %q",
					oe.File, oe.Object, oe.Reason, tc.object, tc.why)
			}
		})
	}
}

func TestLoadMissingPath(t *testing.T) {
	if _, err := Load([]string{filepath.Join(t.TempDir(), "nope")}, nil); err == nil {
		t.Fatal("a missing path must be an error")
	}
	if _, err := Load(nil, nil); err == nil {
		t.Fatal("no path must be an error")
	}
}

func TestLoadRequestAuthentication(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "ra.yaml", `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  targetRefs:
  - {kind: Service, group: "", name: httpbin}
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks.json
    audiences: [a, b]
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    forwardOriginalToken: true
    timeout: 3s
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: old, namespace: ns}
spec:
  selector: {matchLabels: {app: x}}
  jwtRules: [{issuer: other, jwks: '{"keys":[]}'}]
`)
	snap, err := Load([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.RequestAuthentications) != 2 {
		t.Fatalf("loaded %d RequestAuthentications, want 2", len(snap.RequestAuthentications))
	}
	ra := snap.RequestAuthentications[0]
	r := ra.Spec.GetJwtRules()[0]
	if ra.Name != "jwt" || ra.Spec.GetTargetRefs()[0].GetName() != "httpbin" || r.GetIssuer() != "https://issuer.example.com" ||
		r.GetJwksUri() != "https://issuer.example.com/jwks.json" || len(r.GetAudiences()) != 2 ||
		r.GetFromHeaders()[0].GetPrefix() != "Bearer " || r.GetFromParams()[0] != "token" || r.GetFromCookies()[0] != "session" ||
		r.GetOutputPayloadToHeader() != "x-jwt-payload" || r.GetOutputClaimToHeaders()[0].GetClaim() != "sub" ||
		!r.GetForwardOriginalToken() || r.GetTimeout().AsDuration().Seconds() != 3 {
		t.Errorf("RequestAuthentication decoded wrongly: %v", ra.Spec.String())
	}
	if snap.RequestAuthentications[1].Spec.GetJwtRules()[0].GetJwks() != `{"keys":[]}` {
		t.Errorf("v1beta1 inline jwks: %v", snap.RequestAuthentications[1].Spec.String())
	}

	for _, tc := range []struct{ name, spec, why string }{
		{"unknown rule field", "jwtRules: [{issuer: x, jwksUrl: http://x}]", "jwksUrl"},
		{"unknown spec field", "jwtRule: [{issuer: x}]", "jwtRule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "bad.yaml", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec: {"+
				tc.spec+"}\n")
			_, err := Load([]string{p}, nil)
			var le *LoadError
			if !errors.As(err, &le) || le.Errors[0].Object != "RequestAuthentication ns/r" || !strings.Contains(le.Errors[0].Reason, tc.why) {
				t.Fatalf("want a LoadError on RequestAuthentication ns/r mentioning %q, got %v", tc.why, err)
			}
		})
	}
}

// DestinationRules load in v1, v1beta1 and v1alpha3, strictly (a
// misspelt field is an error, not a rule that silently does less).
func TestLoadDestinationRule(t *testing.T) {
	var docs []string
	for _, v := range []string{"v1", "v1beta1", "v1alpha3"} {
		docs = append(docs, `apiVersion: networking.istio.io/`+v+`
kind: DestinationRule
metadata: {name: dr-`+v+`, namespace: ns}
spec:
  host: svc
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: s, ttl: 60s}}
  subsets: [{name: v1, labels: {version: v1}}]
`)
	}
	snap, err := Load([]string{writeFile(t, t.TempDir(), "dr.yaml", strings.Join(docs, "---\n"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.DestinationRules) != 3 {
		t.Fatalf("loaded %d DestinationRules, want 3", len(snap.DestinationRules))
	}
	for _, dr := range snap.DestinationRules {
		c := dr.Spec.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash().GetHttpCookie()
		if dr.Spec.GetHost() != "svc" || c.GetName() != "s" || c.GetTtl().AsDuration().Seconds() != 60 || dr.Spec.GetSubsets()[0].GetLabels()["version"] != "v1" {
			t.Errorf("%s decoded wrongly: %v", dr.Name, dr.Spec.String())
		}
	}
	p := writeFile(t, t.TempDir(), "bad.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: ns}\n"+
		"spec: {host: svc, trafficPolicy: {loadBalancer: {consistentHash: {httpCookies: {name: s}}}}}\n")
	_, err = Load([]string{p}, nil)
	var le *LoadError
	if !errors.As(err, &le) || le.Errors[0].Object != "DestinationRule ns/r" || !strings.Contains(le.Errors[0].Reason, "httpCookies") {
		t.Fatalf("want a LoadError on DestinationRule ns/r naming httpCookies, got %v", err)
	}
}
