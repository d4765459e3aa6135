package meshconfig

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

const fullMesh = `
rootNamespace: mesh-root
trustDomain: example.org
trustDomainAliases: [old.example.org, cluster.local]
pathNormalization:
  normalization: DECODE_AND_MERGE_SLASHES
enableTracing: true
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 2.5s
    pathPrefix: /check
    failOpen: true
    clearRouteCache: true
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz, "x-user-*", "*-token"]
    includeAdditionalHeadersInCheck:
      x-added: fixed
    includeRequestBodyInCheck:
      maxRequestBytes: 4096
      allowPartialMessage: true
    headersToUpstreamOnAllow: [x-ext-authz-check-result, "x-auth-*"]
    headersToDownstreamOnDeny: [x-ext-authz-check-result, content-type]
    headersToDownstreamOnAllow: [set-cookie]
- name: grpc-authz
  envoyExtAuthzGrpc:
    service: bar/ext-authz-grpc.bar.svc.cluster.local
    port: 9000
    failOpen: false
    includeRequestBodyInCheck:
      maxRequestBytes: 10
      packAsBytes: true
- name: tracing
  zipkin:
    service: zipkin.istio-system.svc.cluster.local
    port: 9411
`

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(fullMesh))
	if err != nil {
		t.Fatal(err)
	}
	if c.RootNamespace != "mesh-root" || c.TrustDomain != "example.org" ||
		!reflect.DeepEqual(c.TrustDomainAliases, []string{"old.example.org", "cluster.local"}) {
		t.Errorf("root %q, trust domain %q, aliases %q", c.RootNamespace, c.TrustDomain, c.TrustDomainAliases)
	}
	if c.PathNormalization != ir.NormalizeDecodeAndMergeSlashes {
		t.Errorf("path normalization %s", c.PathNormalization)
	}
	if !c.Mesh.GetEnableTracing() {
		t.Error("Mesh does not hold the rest of the document")
	}
	if len(c.ExtAuthzProviders) != 2 {
		t.Fatalf("providers %v: want the two ext_authz ones, not zipkin", c.ExtAuthzProviders)
	}
	h := c.ExtAuthzProviders["http-authz"]
	wantHTTP := &ir.ExtAuthzProvider{
		Name: "http-authz", Kind: ir.ExtAuthzHTTP,
		Service: "ext-authz.foo.svc.cluster.local", Host: "ext-authz.foo.svc.cluster.local", Port: 8000,
		TimeoutMs: 2500, FailOpen: true, StatusOnError: 503, ClearRouteCache: true,
		Body:                            &ir.ExtAuthzBody{MaxRequestBytes: 4096, AllowPartialMessage: true},
		PathPrefix:                      "/check",
		IncludeRequestHeadersInCheck:    []string{"x-ext-authz", "x-user-*", "*-token"},
		IncludeAdditionalHeadersInCheck: map[string]string{"x-added": "fixed"},
		HeadersToUpstreamOnAllow:        []string{"x-ext-authz-check-result", "x-auth-*"},
		HeadersToDownstreamOnDeny:       []string{"x-ext-authz-check-result", "content-type"},
		HeadersToDownstreamOnAllow:      []string{"set-cookie"},
	}
	if !reflect.DeepEqual(h, wantHTTP) {
		t.Errorf("http provider\n got %+v\nwant %+v", h, wantHTTP)
	}
	g := c.ExtAuthzProviders["grpc-authz"]
	wantGRPC := &ir.ExtAuthzProvider{
		Name: "grpc-authz", Kind: ir.ExtAuthzGRPC,
		Service: "bar/ext-authz-grpc.bar.svc.cluster.local", Namespace: "bar", Host: "ext-authz-grpc.bar.svc.cluster.local",
		Port: 9000, TimeoutMs: 600000, StatusOnError: 403,
		Body: &ir.ExtAuthzBody{MaxRequestBytes: 10, PackAsBytes: true},
	}
	if !reflect.DeepEqual(g, wantGRPC) {
		t.Errorf("grpc provider\n got %+v\nwant %+v", g, wantGRPC)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, doc := range []string{"", "{}", "# only a comment\n", "defaultConfig:\n  discoveryAddress: istiod:15012\n"} {
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if c.RootNamespace != "istio-system" || c.TrustDomain != "cluster.local" || len(c.TrustDomainAliases) != 0 ||
			c.PathNormalization != ir.NormalizeBase || len(c.ExtAuthzProviders) != 0 {
			t.Errorf("%q: defaults %+v", doc, c)
		}
	}
}

func TestParseNormalizationModes(t *testing.T) {
	for name, want := range map[string]ir.PathNormalization{
		"DEFAULT": ir.NormalizeBase, "NONE": ir.NormalizeNone, "BASE": ir.NormalizeBase,
		"MERGE_SLASHES": ir.NormalizeMergeSlashes, "DECODE_AND_MERGE_SLASHES": ir.NormalizeDecodeAndMergeSlashes,
	} {
		c, err := Parse([]byte("pathNormalization:\n  normalization: " + name + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.PathNormalization != want {
			t.Errorf("%s: got %s, want %s", name, c.PathNormalization, want)
		}
	}
}

func TestParseConfigMap(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |-\n" +
		"    trustDomain: td.example\n    extensionProviders:\n    - name: a\n      envoyExtAuthzGrpc: {service: a.ns.svc.cluster.local, port: 9000}\n"
	c, err := Parse([]byte(cm))
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "td.example" || c.ExtAuthzProviders["a"] == nil {
		t.Errorf("ConfigMap's data.mesh not read: %+v", c)
	}
	if _, err := Parse([]byte("kind: ConfigMap\ndata: {}\n")); err == nil || !strings.Contains(err.Error(), "data.mesh") {
		t.Errorf("ConfigMap without data.mesh: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(p, []byte(fullMesh), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.ExtAuthzProviders["grpc-authz"] == nil {
		t.Fatalf("Load: %v, %+v", err, c)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("trustDomian: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"trustDomian"`) {
		t.Errorf("Load error should name the file and the field: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	provider := func(kind, body string) string {
		return "extensionProviders:\n- name: p\n  " + kind + ":\n" + body
	}
	cases := []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"unknown top-level field", "trustDomian: x\n", []string{`unknown field "trustDomian"`}},
		{"unknown nested field", provider("envoyExtAuthzHttp", "    service: a.b\n    port: 80\n    includeHeaders: [x]\n"),
			[]string{`"extensionProviders[0].envoyExtAuthzHttp.includeHeaders"`}},
		{"unknown field in body settings", provider("envoyExtAuthzGrpc", "    service: a.b\n    port: 80\n    includeRequestBodyInCheck: {maxBytes: 3}\n"),
			[]string{`"extensionProviders[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxBytes"`}},
		{"unknown field in defaultConfig", "defaultConfig:\n  proxyMetadata: {A: b}\n  notAField: 1\n", []string{`"defaultConfig.notAField"`}},
		{"not yaml", "a: [1\n", []string{"not YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"mapping"}},
		{"bad enum", "pathNormalization:\n  normalization: SOMETIMES\n", []string{"invalid MeshConfig", "SOMETIMES"}},
		{"wrong type", "trustDomainAliases: 3\n", []string{"invalid MeshConfig"}},
		{"bad duration", provider("envoyExtAuthzGrpc", "    service: a.b\n    port: 80\n    timeout: soon\n"), []string{"invalid MeshConfig"}},
		{"two provider kinds", "extensionProviders:\n- name: p\n  envoyExtAuthzGrpc: {service: a.b, port: 1}\n  envoyExtAuthzHttp: {service: a.b, port: 1}\n",
			[]string{"invalid MeshConfig"}},
		{"no port", provider("envoyExtAuthzHttp", "    service: a.b\n"), []string{`extensionProviders[0] ("p")`, "port must be in the range [1, 65535], found 0"}},
		{"port too big", provider("envoyExtAuthzGrpc", "    service: a.b\n    port: 70000\n"), []string{"found 70000"}},
		{"no service", provider("envoyExtAuthzGrpc", "    port: 9000\n"), []string{"service must not be empty"}},
		{"bad service host", provider("envoyExtAuthzHttp", "    service: Bad_Host\n    port: 80\n"), []string{"neither a hostname nor an IP"}},
		{"bad service namespace", provider("envoyExtAuthzHttp", "    service: Not_NS/a.b\n    port: 80\n"), []string{"not a namespace"}},
		{"status not a number", provider("envoyExtAuthzHttp", "    service: a.b\n    port: 80\n    statusOnError: forbidden\n"), []string{`invalid statusOnError "forbidden"`}},
		{"status unknown to envoy", provider("envoyExtAuthzGrpc", "    service: a.b\n    port: 80\n    statusOnError: \"299\"\n"), []string{`unsupported statusOnError "299"`}},
		{"status as a number", provider("envoyExtAuthzGrpc", "    service: a.b\n    port: 80\n    statusOnError: 503\n"), []string{"invalid MeshConfig"}},
		{"path prefix without slash", provider("envoyExtAuthzHttp", "    service: a.b\n    port: 80\n    pathPrefix: check\n"), []string{"pathPrefix must begin with `/`"}},
		{"empty name", "extensionProviders:\n- envoyExtAuthzGrpc: {service: a.b, port: 1}\n", []string{"name must not be empty"}},
		{"duplicate name", "extensionProviders:\n- name: p\n  envoyExtAuthzGrpc: {service: a.b, port: 1}\n- name: p\n  envoyExtAuthzHttp: {service: a.b, port: 1}\n",
			[]string{`extensionProviders[1] ("p"): name must be unique`}},
		{"no kind", "extensionProviders:\n- name: p\n", []string{"no provider kind"}},
		{"all errors reported", "extensionProviders:\n- name: p\n  envoyExtAuthzHttp: {port: 0, pathPrefix: x}\n",
			[]string{"service must not be empty", "port must be", "pathPrefix must begin"}},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, w)
			}
		}
	}
}

// The proto (snake_case) field names are accepted as protojson accepts them.
func TestParseProtoNames(t *testing.T) {
	c, err := Parse([]byte("trust_domain: a.b\nextension_providers:\n- name: p\n  envoy_ext_authz_http: {service: a.b, port: 80, path_prefix: /x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "a.b" || c.ExtAuthzProviders["p"].PathPrefix != "/x" {
		t.Errorf("%+v", c)
	}
}

// What only istiod's ext_authz builder refuses keeps the provider, marked
// Invalid, so that CUSTOM policies naming it deny (and others still work).
func TestParseInvalidProviders(t *testing.T) {
	doc := `extensionProviders:
- name: wildcard
  envoyExtAuthzHttp: {service: a.b, port: 80, headersToUpstreamOnAllow: ["*"]}
- name: wildcard-deprecated
  envoyExtAuthzHttp: {service: a.b, port: 80, includeHeadersInCheck: ["*"]}
- name: zero-body
  envoyExtAuthzGrpc: {service: a.b, port: 80, includeRequestBodyInCheck: {allowPartialMessage: true}}
- name: negative-timeout
  envoyExtAuthzGrpc: {service: a.b, port: 80, timeout: -1s}
- name: prefix-wildcards-are-fine
  envoyExtAuthzHttp: {service: 10.0.0.1, port: 80, includeRequestHeadersInCheck: ["x-*", "*-y"], headersToDownstreamOnDeny: ["a*"]}
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"wildcard":            "headersToUpstreamOnAllow",
		"wildcard-deprecated": "includeHeadersInCheck",
		"zero-body":           "maxRequestBytes",
		"negative-timeout":    "timeout",
	} {
		p := c.ExtAuthzProviders[name]
		if p == nil || !strings.Contains(p.Invalid, want) {
			t.Errorf("%s: Invalid = %+v, want a reason about %s", name, p, want)
		}
	}
	if p := c.ExtAuthzProviders["prefix-wildcards-are-fine"]; p == nil || p.Invalid != "" || p.Host != "10.0.0.1" {
		t.Errorf("prefix-wildcards-are-fine: %+v", p)
	}
}

// The deprecated includeHeadersInCheck is used only when
// includeRequestHeadersInCheck is empty (istiod generateHTTPConfig).
func TestIncludeHeadersInCheckFallback(t *testing.T) {
	c, err := Parse([]byte(`extensionProviders:
- name: old
  envoyExtAuthzHttp: {service: a.b, port: 80, includeHeadersInCheck: [x-old]}
- name: both
  envoyExtAuthzHttp: {service: a.b, port: 80, includeHeadersInCheck: [x-old], includeRequestHeadersInCheck: [x-new]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ExtAuthzProviders["old"].IncludeRequestHeadersInCheck; !reflect.DeepEqual(got, []string{"x-old"}) {
		t.Errorf("old: %q", got)
	}
	if got := c.ExtAuthzProviders["both"].IncludeRequestHeadersInCheck; !reflect.DeepEqual(got, []string{"x-new"}) {
		t.Errorf("both: %q", got)
	}
}

// defaultHttpRetryPolicy becomes the waypoint's default retry as istiod's
// retry.ConvertPolicy reads it.
func TestDefaultRetry(t *testing.T) {
	for _, c := range []struct {
		mesh string
		want *ir.Retry
	}{
		{"", nil},
		{"defaultHttpRetryPolicy: {attempts: 0, retryOn: 5xx}", &ir.Retry{}},
		{"defaultHttpRetryPolicy: {attempts: 3}", &ir.Retry{Attempts: 3, Codes: []int{503}}},
		{"defaultHttpRetryPolicy: {attempts: 1, retryOn: 'connect-failure,refused-stream'}", &ir.Retry{Attempts: 1}},
		{"defaultHttpRetryPolicy: {attempts: 2, retryOn: 'gateway-error, 429,retriable-4xx,999', perTryTimeout: 1.5s, backoff: 0.02s}",
			&ir.Retry{Attempts: 2, Codes: []int{409, 429, 502, 503, 504}, PerTryTimeoutMs: 1500, BackoffMs: 20}},
	} {
		mc, err := Parse([]byte(c.mesh))
		if err != nil {
			t.Fatalf("%s: %v", c.mesh, err)
		}
		if !reflect.DeepEqual(mc.DefaultRetry, c.want) {
			t.Errorf("%s: default retry %+v, want %+v", c.mesh, mc.DefaultRetry, c.want)
		}
	}
	mc, err := Parse([]byte("defaultHttpRetryPolicy: {attempts: 4, retryOn: 5xx}"))
	if err != nil {
		t.Fatal(err)
	}
	if r := mc.DefaultRetry; r.Attempts != 4 || len(r.Codes) != 100 || r.Codes[0] != 500 || r.Codes[99] != 599 {
		t.Errorf("5xx: %+v, want every status 500 to 599", r)
	}
}
