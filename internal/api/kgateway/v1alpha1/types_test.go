package v1alpha1_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	kgw "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
)

// A manifest as kgateway's docs write one, every field set.
const full = `apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: ns, labels: {a: b}}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: rule1}]
  targetSelectors: [{group: gateway.networking.k8s.io, kind: Gateway, matchLabels: {team: web}, sectionName: l}]
  rateLimit:
    local: {tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 100s}}
    global: {descriptors: [{entries: [{type: RemoteAddress}, {type: Generic, generic: {key: k, value: v}}, {type: Header, header: x-user}]}], extensionRef: {name: rl}}
  cors: {allowOrigins: [https://a.example], allowCredentials: true, maxAge: 5}
  csrf: {percentageEnabled: 100, additionalOrigins: [{exact: a.example, ignoreCase: true}]}
  headerModifiers:
    request: {set: [{name: a, value: b}], remove: [c]}
    response: {add: [{name: d, value: e}]}
  buffer: {maxRequestSize: 1Mi}
  timeouts: {request: 1s, streamIdle: 2s}
  retry: {attempts: 2, retryOn: [5xx], statusCodes: [503], perTryTimeout: 1s, backoffBaseInterval: 25ms}
  ai: {promptGuard: {}}
  transformation: {request: {set: [{name: x, value: y}]}}
  extProc: {extensionRef: {name: p}}
  extAuth: {extensionRef: {name: a}}
  autoHostRewrite: true
  rbac: {policy: {matchExpressions: ["true"]}}
status:
  ancestors:
  - ancestorRef: {name: gw}
    controllerName: kgateway.dev/kgateway
    conditions: [{type: Accepted, status: "True", reason: Valid, message: ok, lastTransitionTime: "2025-01-01T00:00:00Z"}]
`

func TestDecodeAndDeepCopy(t *testing.T) {
	var p kgw.TrafficPolicy
	if err := yaml.UnmarshalStrict([]byte(full), &p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.RateLimit.Local.TokenBucket.FillInterval != "100s" || p.Spec.Cors.HTTPCORSFilter == nil ||
		len(p.Spec.Cors.AllowOrigins) != 1 || p.Spec.Buffer.MaxRequestSize.Value() != 1<<20 || p.Spec.ExtAuth == nil || p.Spec.ExtAuth.ExtensionRef.Name != "a" {
		t.Fatalf("decoded %+v", p.Spec)
	}
	cp := p.DeepCopy()
	if !reflect.DeepEqual(&p, cp) {
		t.Fatal("the copy differs")
	}
	// The copy shares nothing: changing it leaves the original alone.
	before, _ := json.Marshal(&p)
	cp.Spec.TargetRefs[0].Name = "other"
	*cp.Spec.TargetRefs[0].SectionName = "other"
	cp.Spec.TargetSelectors[0].MatchLabels["team"] = "z"
	*cp.Spec.RateLimit.Local.TokenBucket.TokensPerFill = 9
	cp.Spec.RateLimit.Global.ExtensionRef.Name = "other"
	cp.Spec.RateLimit.Global.Descriptors[0].Entries[1].Generic.Value = "other"
	*cp.Spec.RateLimit.Global.Descriptors[0].Entries[2].Header = "other"
	cp.Spec.Cors.AllowOrigins[0] = "changed"
	*cp.Spec.Cors.AllowCredentials = false
	*cp.Spec.Csrf.AdditionalOrigins[0].Exact = "changed"
	cp.Spec.HeaderModifiers.Request.Set[0].Value = "changed"
	*cp.Spec.Timeouts.Request = "9s"
	cp.Spec.Retry.RetryOn[0] = "changed"
	cp.Spec.ExtAuth.ExtensionRef.Name = "changed"
	cp.Status.Ancestors[0].Conditions[0].Message = "changed"
	cp.Labels["a"] = "changed"
	after, _ := json.Marshal(&p)
	if string(before) != string(after) {
		t.Fatalf("changing the copy changed the original:\n%s\n%s", before, after)
	}
	// A typo is refused by strict decoding.
	if err := yaml.UnmarshalStrict([]byte("spec: {rateLimt: {}}\n"), &kgw.TrafficPolicy{}); err == nil {
		t.Fatal("a misspelt field decoded")
	}
}

func TestListDeepCopy(t *testing.T) {
	l := &kgw.TrafficPolicyList{Items: []kgw.TrafficPolicy{{}}}
	l.Items[0].Name = "a"
	c := l.DeepCopyObject().(*kgw.TrafficPolicyList)
	c.Items[0].Name = "b"
	if l.Items[0].Name != "a" {
		t.Fatal("the list copy shares its items")
	}
}

func TestGatewayExtensionDeepCopy(t *testing.T) {
	var g kgw.GatewayExtension
	doc := `apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata: {name: basic-auth, namespace: ns}
spec:
  type: ExtAuth
  extAuth:
    grpcService: {backendRef: {name: ext-authz, port: 9000}, requestTimeout: 1s}
    headersToForward: [cookie]
    withRequestBody: {maxRequestBytes: 10}
`
	if err := yaml.UnmarshalStrict([]byte(doc), &g); err != nil {
		t.Fatal(err)
	}
	cp := g.DeepCopy()
	if !reflect.DeepEqual(&g, cp) {
		t.Fatal("the copy differs")
	}
	cp.Spec.ExtAuth.GrpcService.BackendRef.Name = "other"
	*cp.Spec.ExtAuth.GrpcService.BackendRef.Port = 1
	cp.Spec.ExtAuth.HeadersToForward[0] = "x"
	cp.Spec.ExtAuth.WithRequestBody.MaxRequestBytes = 1
	if g.Spec.ExtAuth.GrpcService.BackendRef.Name != "ext-authz" || *g.Spec.ExtAuth.GrpcService.BackendRef.Port != 9000 ||
		g.Spec.ExtAuth.HeadersToForward[0] != "cookie" || g.Spec.ExtAuth.WithRequestBody.MaxRequestBytes != 10 {
		t.Fatalf("changing the copy changed the original: %+v", g.Spec.ExtAuth)
	}
	var rl kgw.GatewayExtension
	rlDoc := `apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata: {name: global-ratelimit, namespace: ns}
spec:
  type: RateLimit
  rateLimit:
    grpcService: {backendRef: {name: ratelimit, port: 8081}}
    domain: api-gateway
    failOpen: false
    timeout: 250ms
    xRateLimitHeaders: DraftVersion03
`
	if err := yaml.UnmarshalStrict([]byte(rlDoc), &rl); err != nil {
		t.Fatal(err)
	}
	rc := rl.DeepCopy()
	if !reflect.DeepEqual(&rl, rc) || rl.Spec.RateLimit.Domain != "api-gateway" || *rl.Spec.RateLimit.FailOpen {
		t.Fatalf("rate limit extension: %+v", rl.Spec.RateLimit)
	}
	*rc.Spec.RateLimit.FailOpen, *rc.Spec.RateLimit.Timeout = true, "1s"
	rc.Spec.RateLimit.GrpcService.BackendRef.Name = "other"
	if *rl.Spec.RateLimit.FailOpen || *rl.Spec.RateLimit.Timeout != "250ms" || rl.Spec.RateLimit.GrpcService.BackendRef.Name != "ratelimit" {
		t.Fatalf("changing the copy changed the original: %+v", rl.Spec.RateLimit)
	}
	l := &kgw.GatewayExtensionList{Items: []kgw.GatewayExtension{g}}
	lc := l.DeepCopyObject().(*kgw.GatewayExtensionList)
	lc.Items[0].Name = "x"
	if l.Items[0].Name != "basic-auth" {
		t.Fatal("the list copy shares its items")
	}
}
