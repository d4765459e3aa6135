package authz

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// baseRequest is an HTTP request from foo/bar to a service.
func baseRequest() *Request {
	return &Request{
		SourceIP:         netip.MustParseAddr("10.0.0.1"),
		SourcePrincipal:  "spiffe://cluster.local/ns/foo/sa/bar",
		DestinationIP:    netip.MustParseAddr("10.96.0.10"),
		DestinationPort:  8080,
		HTTP:             true,
		Method:           "GET",
		Host:             "svc.ns.svc.cluster.local:8080",
		Path:             "/api/v1/items",
		Headers:          http.Header{"X-Env": {"prod"}, "X-List": {"a,b,c"}, "User-Agent": {"curl/8"}},
		RequestPrincipal: "https://issuer.example.com/alice",
		SNI:              "svc.example.com",
	}
}

func pol(ns, name string, action ir.AuthzAction, rules ...*ir.AuthzRule) *ir.AuthzPolicy {
	return &ir.AuthzPolicy{Name: ir.NamespacedName{Namespace: ns, Name: name}, Action: action, Rules: rules}
}

func from(s ir.AuthzSource) *ir.AuthzRule  { return &ir.AuthzRule{From: []*ir.AuthzSource{&s}} }
func to(o ir.AuthzOperation) *ir.AuthzRule { return &ir.AuthzRule{To: []*ir.AuthzOperation{&o}} }
func when(k string, v ...string) *ir.AuthzRule {
	return &ir.AuthzRule{When: []*ir.AuthzCondition{{Key: k, Values: v}}}
}
func whenNot(k string, v ...string) *ir.AuthzRule {
	return &ir.AuthzRule{When: []*ir.AuthzCondition{{Key: k, NotValues: v}}}
}
func l(v ...string) []string { return v }

type mod func(*Request)

func tcp(r *Request)    { r.HTTP = false }
func noPeer(r *Request) { r.SourcePrincipal = "" }
func noJWT(r *Request)  { r.RequestPrincipal = "" }
func hdr(k string, v ...string) mod {
	return func(r *Request) {
		if v == nil {
			delete(r.Headers, k)
			return
		}
		r.Headers[k] = v
	}
}

// TestRuleFields checks each field and its negation through one ALLOW policy in
// namespace "foo": the request is allowed exactly when the rule matches.
func TestRuleFields(t *testing.T) {
	cases := []struct {
		name string
		rule *ir.AuthzRule
		mods []mod
		opts Options
		want bool
	}{
		// principals
		{name: "principal exact", rule: from(ir.AuthzSource{Principals: l("cluster.local/ns/foo/sa/bar")}), want: true},
		{name: "principal written with spiffe://", rule: from(ir.AuthzSource{Principals: l("spiffe://cluster.local/ns/foo/sa/bar")}), want: true},
		{name: "principal other sa", rule: from(ir.AuthzSource{Principals: l("cluster.local/ns/foo/sa/baz")}), want: false},
		{name: "principal prefix", rule: from(ir.AuthzSource{Principals: l("cluster.local/ns/foo/*")}), want: true},
		{name: "principal suffix", rule: from(ir.AuthzSource{Principals: l("*/sa/bar")}), want: true},
		{name: "principal suffix miss", rule: from(ir.AuthzSource{Principals: l("*/sa/ba")}), want: false},
		{name: "principal presence", rule: from(ir.AuthzSource{Principals: l("*")}), want: true},
		{name: "principal presence without peer", rule: from(ir.AuthzSource{Principals: l("*")}), mods: []mod{noPeer}, want: false},
		{name: "principal requires spiffe identity", rule: from(ir.AuthzSource{Principals: l("cluster.local/ns/foo/sa/bar")}),
			mods: []mod{func(r *Request) { r.SourcePrincipal = "cluster.local/ns/foo/sa/bar" }}, want: false},
		{name: "notPrincipals hit", rule: from(ir.AuthzSource{NotPrincipals: l("cluster.local/ns/foo/sa/bar")}), want: false},
		{name: "notPrincipals miss", rule: from(ir.AuthzSource{NotPrincipals: l("cluster.local/ns/x/sa/y")}), want: true},
		{name: "notPrincipals * matches plaintext", rule: from(ir.AuthzSource{NotPrincipals: l("*")}), mods: []mod{noPeer}, want: true},
		{name: "when source.principal", rule: when("source.principal", "cluster.local/ns/foo/sa/bar"), want: true},
		{name: "when source.principal notValues", rule: whenNot("source.principal", "cluster.local/ns/foo/*"), want: false},

		// namespaces
		{name: "namespace exact", rule: from(ir.AuthzSource{Namespaces: l("foo")}), want: true},
		{name: "namespace other", rule: from(ir.AuthzSource{Namespaces: l("fo")}), want: false},
		{name: "namespace prefix", rule: from(ir.AuthzSource{Namespaces: l("f*")}), want: true},
		{name: "namespace suffix", rule: from(ir.AuthzSource{Namespaces: l("*oo")}), want: true},
		{name: "namespace infix wildcard", rule: from(ir.AuthzSource{Namespaces: l("f*o")}), want: true},
		{name: "namespace without peer", rule: from(ir.AuthzSource{Namespaces: l("*")}), mods: []mod{noPeer}, want: false},
		{name: "notNamespaces hit", rule: from(ir.AuthzSource{NotNamespaces: l("foo")}), want: false},
		{name: "notNamespaces matches plaintext", rule: from(ir.AuthzSource{NotNamespaces: l("foo")}), mods: []mod{noPeer}, want: true},
		{name: "when source.namespace", rule: when("source.namespace", "foo"), want: true},
		{name: "when source.namespace notValues", rule: whenNot("source.namespace", "foo"), want: false},

		// serviceAccounts
		{name: "serviceAccount ns/sa", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/bar")}), want: true},
		{name: "serviceAccount in policy namespace", rule: from(ir.AuthzSource{ServiceAccounts: l("bar")}), want: true},
		{name: "serviceAccount other namespace", rule: from(ir.AuthzSource{ServiceAccounts: l("x/bar")}), want: false},
		{name: "serviceAccount is not a prefix", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/ba")}), want: false},
		{name: "serviceAccount any trust domain", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/bar")}),
			mods: []mod{func(r *Request) { r.SourcePrincipal = "spiffe://other.td/ns/foo/sa/bar" }}, want: true},
		{name: "serviceAccount with extra segment before sa", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/bar")}),
			mods: []mod{func(r *Request) { r.SourcePrincipal = "spiffe://cluster.local/ns/foo/x/sa/bar/y" }}, want: true},
		{name: "serviceAccount empty segment before sa", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/bar")}),
			mods: []mod{func(r *Request) { r.SourcePrincipal = "spiffe://cluster.local/ns/foo//sa/bar" }}, want: false},
		{name: "serviceAccount trailing slash only", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/bar")}),
			mods: []mod{func(r *Request) { r.SourcePrincipal = "spiffe://cluster.local/ns/foo/sa/bar/" }}, want: false},
		{name: "serviceAccount wildcard is invalid (ALLOW drops rule)", rule: from(ir.AuthzSource{ServiceAccounts: l("foo/*")}), want: false},
		{name: "notServiceAccounts hit", rule: from(ir.AuthzSource{NotServiceAccounts: l("foo/bar")}), want: false},
		{name: "notServiceAccounts miss", rule: from(ir.AuthzSource{NotServiceAccounts: l("foo/baz")}), want: true},
		{name: "when source.serviceAccount", rule: when("source.serviceAccount", "foo/bar"), want: true},

		// ipBlocks
		{name: "ipBlocks cidr", rule: from(ir.AuthzSource{IPBlocks: l("10.0.0.0/24")}), want: true},
		{name: "ipBlocks single ip", rule: from(ir.AuthzSource{IPBlocks: l("10.0.0.1")}), want: true},
		{name: "ipBlocks miss", rule: from(ir.AuthzSource{IPBlocks: l("10.0.1.0/24")}), want: false},
		{name: "ipBlocks host bits set", rule: from(ir.AuthzSource{IPBlocks: l("10.0.0.77/24")}), want: true},
		{name: "ipBlocks ipv4-mapped source", rule: from(ir.AuthzSource{IPBlocks: l("10.0.0.1")}),
			mods: []mod{func(r *Request) { r.SourceIP = netip.MustParseAddr("::ffff:10.0.0.1") }}, want: true},
		{name: "ipBlocks bad cidr (ALLOW drops rule)", rule: from(ir.AuthzSource{IPBlocks: l("10.0.0.0/33", "10.0.0.1")}), want: false},
		{name: "notIpBlocks hit", rule: from(ir.AuthzSource{NotIPBlocks: l("10.0.0.0/8")}), want: false},
		{name: "notIpBlocks miss", rule: from(ir.AuthzSource{NotIPBlocks: l("192.168.0.0/16")}), want: true},
		{name: "when source.ip", rule: when("source.ip", "10.0.0.1"), want: true},
		{name: "when source.ip notValues", rule: whenNot("source.ip", "10.0.0.0/8"), want: false},

		// remoteIpBlocks
		{name: "remoteIpBlocks without XFF uses source", rule: from(ir.AuthzSource{RemoteIPBlocks: l("10.0.0.1")}), want: true},
		{name: "remoteIpBlocks uses rightmost XFF", rule: from(ir.AuthzSource{RemoteIPBlocks: l("5.6.7.8")}),
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4, 5.6.7.8")}, want: true},
		{name: "remoteIpBlocks not leftmost XFF", rule: from(ir.AuthzSource{RemoteIPBlocks: l("1.2.3.4")}),
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4, 5.6.7.8")}, want: false},
		{name: "remoteIpBlocks trusted hop", rule: from(ir.AuthzSource{RemoteIPBlocks: l("1.2.3.4")}), opts: Options{XFFNumTrustedHops: 1},
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4", "5.6.7.8")}, want: true},
		{name: "remoteIpBlocks invalid XFF falls back to source", rule: from(ir.AuthzSource{RemoteIPBlocks: l("10.0.0.1")}),
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4, garbage")}, want: true},
		{name: "remoteIpBlocks too few XFF entries falls back", rule: from(ir.AuthzSource{RemoteIPBlocks: l("10.0.0.1")}), opts: Options{XFFNumTrustedHops: 2},
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4, 5.6.7.8")}, want: true},
		{name: "remoteIpBlocks on TCP uses source", rule: from(ir.AuthzSource{RemoteIPBlocks: l("10.0.0.1")}),
			mods: []mod{tcp, hdr("X-Forwarded-For", "1.2.3.4")}, want: true},
		{name: "notRemoteIpBlocks hit", rule: from(ir.AuthzSource{NotRemoteIPBlocks: l("1.2.3.0/24")}),
			mods: []mod{hdr("X-Forwarded-For", "1.2.3.4")}, want: false},
		{name: "when remote.ip", rule: when("remote.ip", "1.2.3.4"), mods: []mod{hdr("X-Forwarded-For", "1.2.3.4")}, want: true},

		// requestPrincipals
		{name: "requestPrincipal exact", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/alice")}), want: true},
		{name: "requestPrincipal other sub", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/bob")}), want: false},
		{name: "requestPrincipal presence", rule: from(ir.AuthzSource{RequestPrincipals: l("*")}), want: true},
		{name: "requestPrincipal presence without JWT", rule: from(ir.AuthzSource{RequestPrincipals: l("*")}), mods: []mod{noJWT}, want: false},
		{name: "requestPrincipal any issuer", rule: from(ir.AuthzSource{RequestPrincipals: l("*/alice")}), want: true},
		{name: "requestPrincipal issuer suffix", rule: from(ir.AuthzSource{RequestPrincipals: l("*example.com/alice")}), want: true},
		{name: "requestPrincipal any subject", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/*")}), want: true},
		{name: "requestPrincipal subject suffix", rule: from(ir.AuthzSource{RequestPrincipals: l("*lice")}), want: true},
		{name: "notRequestPrincipals * without JWT", rule: from(ir.AuthzSource{NotRequestPrincipals: l("*")}), mods: []mod{noJWT}, want: true},
		{name: "notRequestPrincipals * with JWT", rule: from(ir.AuthzSource{NotRequestPrincipals: l("*")}), want: false},
		{name: "when request.auth.principal", rule: when("request.auth.principal", "https://issuer.example.com/alice"), want: true},

		// hosts
		{name: "host exact with port", rule: to(ir.AuthzOperation{Hosts: l("svc.ns.svc.cluster.local:8080")}), want: true},
		{name: "host case-insensitive", rule: to(ir.AuthzOperation{Hosts: l("SVC.NS.svc.cluster.local:8080")}), want: true},
		{name: "host without port does not match host:port", rule: to(ir.AuthzOperation{Hosts: l("svc.ns.svc.cluster.local")}), want: false},
		{name: "host suffix", rule: to(ir.AuthzOperation{Hosts: l("*.CLUSTER.local:8080")}), want: true},
		{name: "host prefix covers port", rule: to(ir.AuthzOperation{Hosts: l("svc.ns.svc.cluster.local*")}), want: true},
		{name: "host presence", rule: to(ir.AuthzOperation{Hosts: l("*")}), want: true},
		{name: "notHosts hit", rule: to(ir.AuthzOperation{NotHosts: l("svc.*")}), want: false},
		{name: "notHosts miss", rule: to(ir.AuthzOperation{NotHosts: l("other.*")}), want: true},

		// ports
		{name: "port", rule: to(ir.AuthzOperation{Ports: l("8080")}), want: true},
		{name: "port miss", rule: to(ir.AuthzOperation{Ports: l("80")}), want: false},
		{name: "port invalid (ALLOW drops rule)", rule: to(ir.AuthzOperation{Ports: l("http", "8080")}), want: false},
		{name: "port out of range (ALLOW drops rule)", rule: to(ir.AuthzOperation{Ports: l("70000", "8080")}), want: false},
		{name: "notPorts hit", rule: to(ir.AuthzOperation{NotPorts: l("8080")}), want: false},
		{name: "notPorts miss", rule: to(ir.AuthzOperation{NotPorts: l("9090")}), want: true},
		{name: "when destination.port", rule: when("destination.port", "8080"), want: true},
		{name: "when destination.port invalid (ALLOW drops rule)", rule: when("destination.port", "eighty"), want: false},

		// methods
		{name: "method", rule: to(ir.AuthzOperation{Methods: l("GET")}), want: true},
		{name: "method is case-sensitive", rule: to(ir.AuthzOperation{Methods: l("get")}), want: false},
		{name: "method prefix", rule: to(ir.AuthzOperation{Methods: l("G*")}), want: true},
		{name: "notMethods hit", rule: to(ir.AuthzOperation{NotMethods: l("GET", "HEAD")}), want: false},
		{name: "notMethods miss", rule: to(ir.AuthzOperation{NotMethods: l("POST")}), want: true},

		// paths
		{name: "path exact", rule: to(ir.AuthzOperation{Paths: l("/api/v1/items")}), want: true},
		{name: "path is case-sensitive", rule: to(ir.AuthzOperation{Paths: l("/API/v1/items")}), want: false},
		{name: "path prefix", rule: to(ir.AuthzOperation{Paths: l("/api/*")}), want: true},
		{name: "path suffix", rule: to(ir.AuthzOperation{Paths: l("*/items")}), want: true},
		{name: "path presence", rule: to(ir.AuthzOperation{Paths: l("*")}), want: true},
		{name: "path template one segment", rule: to(ir.AuthzOperation{Paths: l("/api/{*}/items")}), want: true},
		{name: "path template one segment miss", rule: to(ir.AuthzOperation{Paths: l("/{*}/items")}), want: false},
		{name: "path template any", rule: to(ir.AuthzOperation{Paths: l("/api/{**}")}), want: true},
		{name: "path template any then literal", rule: to(ir.AuthzOperation{Paths: l("/{**}/items")}), want: true},
		{name: "path template any requires separator", rule: to(ir.AuthzOperation{Paths: l("/api/v1/items/{**}")}), want: false},
		{name: "path template invalid (ALLOW drops rule)", rule: to(ir.AuthzOperation{Paths: l("/api/{*}x", "/api/v1/items")}), want: false},
		{name: "notPaths hit", rule: to(ir.AuthzOperation{NotPaths: l("/api/*")}), want: false},
		{name: "notPaths template miss", rule: to(ir.AuthzOperation{NotPaths: l("/admin/{**}")}), want: true},

		// request headers
		{name: "header exact", rule: when("request.headers[X-Env]", "prod"), want: true},
		{name: "header key case-insensitive", rule: when("request.headers[x-env]", "prod"), want: true},
		{name: "header prefix", rule: when("request.headers[X-Env]", "pr*"), want: true},
		{name: "header value case-sensitive", rule: when("request.headers[X-Env]", "PROD"), want: false},
		{name: "header presence", rule: when("request.headers[X-Env]", "*"), want: true},
		{name: "header presence missing", rule: when("request.headers[X-Missing]", "*"), want: false},
		{name: "header duplicates joined with comma", rule: when("request.headers[X-Env]", "a,b"), mods: []mod{hdr("X-Env", "a", "b")}, want: true},
		{name: "header duplicates are not matched one by one", rule: when("request.headers[X-Env]", "a"), mods: []mod{hdr("X-Env", "a", "b")}, want: false},
		{name: "header notValues hit", rule: whenNot("request.headers[X-Env]", "prod"), want: false},
		{name: "header notValues missing header", rule: whenNot("request.headers[X-Missing]", "x"), want: true},
		{name: "header host pseudo", rule: when("request.headers[:authority]", "svc.ns.*"), want: true},
		{name: "header bad key (ALLOW drops rule)", rule: when("request.headers[]", "x"), want: false},
		{name: "inline header element", rule: when("request.experimental.inline.headers[X-List]", "b"), want: true},
		{name: "inline header element prefix", rule: when("request.experimental.inline.headers[X-List]", "c*"), want: true},
		{name: "inline header element suffix", rule: when("request.experimental.inline.headers[X-List]", "*b"), want: true},
		{name: "inline header no element", rule: when("request.experimental.inline.headers[X-List]", "d"), want: false},

		// other conditions
		{name: "destination.ip", rule: when("destination.ip", "10.96.0.0/16"), want: true},
		{name: "destination.ip miss", rule: when("destination.ip", "10.97.0.0/16"), want: false},
		{name: "destination.ip notValues", rule: whenNot("destination.ip", "10.96.0.10"), want: false},
		{name: "connection.sni", rule: when("connection.sni", "*.example.com"), want: true},
		{name: "connection.sni miss", rule: when("connection.sni", "other.example.com"), want: false},
		{name: "connection.sni notValues", rule: whenNot("connection.sni", "svc.example.com"), want: false},
		{name: "audiences without a token", rule: when("request.auth.audiences", "*"), want: false},
		{name: "audiences notValues without a token", rule: whenNot("request.auth.audiences", "x"), want: true},
		{name: "claims without a token", rule: when("request.auth.claims[iss]", "*"), want: false},
		{name: "claims notValues without a token", rule: whenNot("request.auth.claims[groups]", "admin"), want: true},
		{name: "claims bad key (ALLOW drops rule)", rule: whenNot("request.auth.claims", "admin"), want: false},
		{name: "unknown key (ALLOW drops rule)", rule: when("source.user", "x"), want: false},
		{name: "envoy metadata key unsupported (ALLOW drops rule)", rule: when("experimental.envoy.filters.a.b[c]", "x"), want: false},

		// rule composition
		{name: "empty rule matches everything", rule: &ir.AuthzRule{}, want: true},
		{name: "from entries are ORed", rule: &ir.AuthzRule{From: []*ir.AuthzSource{{Namespaces: l("x")}, {Namespaces: l("foo")}}}, want: true},
		{name: "fields of a source are ANDed", rule: from(ir.AuthzSource{Namespaces: l("foo"), IPBlocks: l("1.1.1.1")}), want: false},
		{name: "values of a field are ORed", rule: from(ir.AuthzSource{Namespaces: l("x", "foo")}), want: true},
		{name: "values and notValues are ANDed", rule: from(ir.AuthzSource{Namespaces: l("foo"), NotNamespaces: l("f*")}), want: false},
		{name: "to entries are ORed", rule: &ir.AuthzRule{To: []*ir.AuthzOperation{{Methods: l("POST")}, {Paths: l("/api/*")}}}, want: true},
		{name: "when conditions are ANDed", rule: &ir.AuthzRule{When: []*ir.AuthzCondition{
			{Key: "request.headers[X-Env]", Values: l("prod")}, {Key: "destination.port", Values: l("9090")}}}, want: false},
		{name: "from AND to", rule: &ir.AuthzRule{From: []*ir.AuthzSource{{Namespaces: l("foo")}}, To: []*ir.AuthzOperation{{Methods: l("POST")}}}, want: false},
		{name: "nil source entry matches", rule: &ir.AuthzRule{From: []*ir.AuthzSource{nil}}, want: true},
		{name: "condition with neither values nor notValues", rule: &ir.AuthzRule{When: []*ir.AuthzCondition{{Key: "source.ip"}}}, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRequest()
			for _, m := range tc.mods {
				m(r)
			}
			e := Compile([]*ir.AuthzPolicy{pol("foo", "p", ir.AuthzAllow, tc.rule)}, tc.opts)
			d := e.Evaluate(r)
			if d.Allowed != tc.want {
				t.Fatalf("Allowed = %v, want %v (decision %+v, warnings %q)", d.Allowed, tc.want, d, e.Warnings())
			}
			if tc.want && (d.Policy != "foo/p" || d.Action != ir.AuthzAllow) {
				t.Fatalf("decision %+v, want policy foo/p ALLOW", d)
			}
			if !tc.want && (d.Policy != "" || d.Reason != ReasonNoAllowMatched) {
				t.Fatalf("decision %+v, want no policy and reason %q", d, ReasonNoAllowMatched)
			}
		})
	}
}

func TestActionsAndOrder(t *testing.T) {
	allowAll := func(name string) *ir.AuthzPolicy { return pol("ns", name, ir.AuthzAllow, &ir.AuthzRule{}) }
	denyAll := func(name string) *ir.AuthzPolicy { return pol("ns", name, ir.AuthzDeny, &ir.AuthzRule{}) }
	allowNone := func(name string) *ir.AuthzPolicy {
		return pol("ns", name, ir.AuthzAllow, to(ir.AuthzOperation{Methods: l("POST")}))
	}
	dry := func(p *ir.AuthzPolicy) *ir.AuthzPolicy { p.DryRun = true; return p }
	cases := []struct {
		name       string
		policies   []*ir.AuthzPolicy
		mods       []mod
		wantAllow  bool
		wantPolicy string
		wantAction ir.AuthzAction
		wantReason string
	}{
		{name: "no policy", wantAllow: true, wantReason: ReasonNoPolicy},
		{name: "deny beats allow", policies: []*ir.AuthzPolicy{allowAll("a"), denyAll("d")}, wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "no allow policy allows", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, to(ir.AuthzOperation{Methods: l("POST")}))},
			wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "allow policy matches", policies: []*ir.AuthzPolicy{allowNone("a"), allowAll("b")}, wantAllow: true, wantPolicy: "ns/b", wantAction: ir.AuthzAllow},
		{name: "allow policy present, none matches", policies: []*ir.AuthzPolicy{allowNone("a")}, wantReason: ReasonNoAllowMatched},
		{name: "empty action is ALLOW", policies: []*ir.AuthzPolicy{pol("ns", "x", "", to(ir.AuthzOperation{Methods: l("POST")}))}, wantReason: ReasonNoAllowMatched},
		{name: "first deny policy in Envoy order reported", policies: []*ir.AuthzPolicy{denyAll("z"), denyAll("b")}, wantPolicy: "ns/b", wantAction: ir.AuthzDeny},
		{name: "audit does not deny", policies: []*ir.AuthzPolicy{pol("ns", "au", ir.AuthzAudit, &ir.AuthzRule{})}, wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "audit does not allow", policies: []*ir.AuthzPolicy{pol("ns", "au", ir.AuthzAudit, &ir.AuthzRule{}), allowNone("a")}, wantReason: ReasonNoAllowMatched},
		{name: "dry-run deny does not deny", policies: []*ir.AuthzPolicy{dry(denyAll("d"))}, wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "dry-run allow does not enable default deny", policies: []*ir.AuthzPolicy{dry(allowNone("a"))}, wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "dry-run allow does not allow", policies: []*ir.AuthzPolicy{dry(allowAll("a")), allowNone("b")}, wantReason: ReasonNoAllowMatched},
		{name: "custom is the caller's: Evaluate ignores it", policies: []*ir.AuthzPolicy{pol("ns", "c", ir.AuthzCustom, &ir.AuthzRule{})},
			wantAllow: true, wantReason: ReasonNoAllowPolicy},

		// empty rules
		{name: "allow with nil rules denies all", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow)}, wantReason: ReasonNoAllowMatched},
		{name: "allow with empty rules slice denies all", policies: []*ir.AuthzPolicy{{Name: ir.NamespacedName{Namespace: "ns", Name: "a"}, Action: ir.AuthzAllow, Rules: []*ir.AuthzRule{}}},
			wantReason: ReasonNoAllowMatched},
		{name: "allow with nil rules plus allow-all", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow), allowAll("b")}, wantAllow: true, wantPolicy: "ns/b", wantAction: ir.AuthzAllow},
		{name: "allow with only a nil rule denies", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, nil)}, wantReason: ReasonNoAllowMatched},
		{name: "deny with nil rules matches nothing", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny)}, wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "deny with empty rule denies all", policies: []*ir.AuthzPolicy{denyAll("d")}, wantPolicy: "ns/d", wantAction: ir.AuthzDeny},

		// invalid keys and values
		{name: "deny with unknown key ignores the condition", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, &ir.AuthzRule{
			To: []*ir.AuthzOperation{{Methods: l("GET")}}, When: []*ir.AuthzCondition{{Key: "source.user", Values: l("x")}}})},
			wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "deny with bad cidr ignores the value", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, from(ir.AuthzSource{IPBlocks: l("nope", "10.0.0.0/8")}))},
			wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "deny keeps valid values", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, from(ir.AuthzSource{IPBlocks: l("nope", "192.168.0.0/16")}))},
			wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "deny whose values are all invalid matches more", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, to(ir.AuthzOperation{Ports: l("http")}))},
			wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "deny with bad header key", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, when("request.headers", "x"))},
			wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "allow with unknown key drops only that rule", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, when("bogus", "x"), &ir.AuthzRule{})},
			wantAllow: true, wantPolicy: "ns/a", wantAction: ir.AuthzAllow},
		{name: "invalid allow policy matches nothing", policies: []*ir.AuthzPolicy{{Name: ir.NamespacedName{Namespace: "ns", Name: "a"}, Action: ir.AuthzAllow,
			Rules: []*ir.AuthzRule{{}}, Invalid: "unreadable"}}, wantReason: ReasonNoAllowMatched},
		{name: "invalid deny policy matches everything", policies: []*ir.AuthzPolicy{{Name: ir.NamespacedName{Namespace: "ns", Name: "d"}, Action: ir.AuthzDeny,
			Rules: []*ir.AuthzRule{to(ir.AuthzOperation{Methods: l("POST")})}, Invalid: "unreadable"}}, wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "unknown action is an invalid deny", policies: []*ir.AuthzPolicy{pol("ns", "x", "MAYBE")}, wantPolicy: "ns/x", wantAction: ir.AuthzDeny},

		// TCP
		{name: "tcp: allow with HTTP-only field never matches", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, to(ir.AuthzOperation{Methods: l("GET"), Ports: l("8080")}))},
			mods: []mod{tcp}, wantReason: ReasonNoAllowMatched},
		{name: "http: same allow matches", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, to(ir.AuthzOperation{Methods: l("GET"), Ports: l("8080")}))},
			wantAllow: true, wantPolicy: "ns/a", wantAction: ir.AuthzAllow},
		{name: "tcp: HTTP-only field anywhere drops the whole allow rule", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow,
			&ir.AuthzRule{To: []*ir.AuthzOperation{{Ports: l("8080")}, {Paths: l("/x")}}})}, mods: []mod{tcp}, wantReason: ReasonNoAllowMatched},
		{name: "tcp: allow with L4 fields matches", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow,
			&ir.AuthzRule{From: []*ir.AuthzSource{{Namespaces: l("foo"), IPBlocks: l("10.0.0.0/8"), RemoteIPBlocks: l("10.0.0.1")}},
				To: []*ir.AuthzOperation{{Ports: l("8080")}}, When: []*ir.AuthzCondition{{Key: "connection.sni", Values: l("svc.*")}}})},
			mods: []mod{tcp}, wantAllow: true, wantPolicy: "ns/a", wantAction: ir.AuthzAllow},
		{name: "tcp: other allow rule still applies", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow,
			to(ir.AuthzOperation{Methods: l("GET")}), to(ir.AuthzOperation{Ports: l("8080")}))},
			mods: []mod{tcp}, wantAllow: true, wantPolicy: "ns/a", wantAction: ir.AuthzAllow},
		{name: "tcp: allow with request.headers when never matches", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, whenNot("request.headers[X-A]", "x"))},
			mods: []mod{tcp}, wantReason: ReasonNoAllowMatched},
		{name: "tcp: allow with requestPrincipals never matches", policies: []*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, from(ir.AuthzSource{NotRequestPrincipals: l("*")}))},
			mods: []mod{tcp, noJWT}, wantReason: ReasonNoAllowMatched},
		{name: "tcp: deny ignores HTTP-only fields", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, to(ir.AuthzOperation{Methods: l("POST"), Ports: l("8080")}))},
			mods: []mod{tcp}, wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "http: same deny does not match GET", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, to(ir.AuthzOperation{Methods: l("POST"), Ports: l("8080")}))},
			wantAllow: true, wantReason: ReasonNoAllowPolicy},
		{name: "tcp: deny with only HTTP fields denies all TCP", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, &ir.AuthzRule{
			From: []*ir.AuthzSource{{RequestPrincipals: l("*")}}, When: []*ir.AuthzCondition{{Key: "request.headers[X-A]", Values: l("1")}}})},
			mods: []mod{tcp}, wantPolicy: "ns/d", wantAction: ir.AuthzDeny},
		{name: "tcp: deny keeps L4 fields", policies: []*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, to(ir.AuthzOperation{Paths: l("/admin"), Ports: l("9090")}))},
			mods: []mod{tcp}, wantAllow: true, wantReason: ReasonNoAllowPolicy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRequest()
			for _, m := range tc.mods {
				m(r)
			}
			d := Compile(tc.policies, Options{}).Evaluate(r)
			if d.Allowed != tc.wantAllow || d.Policy != tc.wantPolicy || d.Action != tc.wantAction {
				t.Fatalf("decision %+v, want allowed=%v policy=%q action=%q", d, tc.wantAllow, tc.wantPolicy, tc.wantAction)
			}
			if tc.wantReason != "" && d.Reason != tc.wantReason {
				t.Fatalf("reason %q, want %q", d.Reason, tc.wantReason)
			}
			if tc.wantPolicy != "" && !strings.Contains(d.Reason, tc.wantPolicy) {
				t.Fatalf("reason %q does not name the policy %q", d.Reason, tc.wantPolicy)
			}
		})
	}
}

func TestDryRunResults(t *testing.T) {
	dryDeny := pol("ns", "dry-deny", ir.AuthzDeny, to(ir.AuthzOperation{Methods: l("GET")}))
	dryDeny.DryRun = true
	dryAllow := pol("ns", "dry-allow", ir.AuthzAllow, to(ir.AuthzOperation{Methods: l("POST")}))
	dryAllow.DryRun = true
	audit := pol("ns", "audit", ir.AuthzAudit, to(ir.AuthzOperation{Paths: l("/api/*")}))
	e := Compile([]*ir.AuthzPolicy{dryDeny, dryAllow, audit}, Options{})
	if e.Empty() {
		t.Fatal("Empty() with dry-run and audit policies")
	}
	d := e.Evaluate(baseRequest())
	if !d.Allowed {
		t.Fatalf("dry-run/audit policies changed the decision: %+v", d)
	}
	want := []DryRunResult{
		{Policy: "ns/audit", Action: ir.AuthzAudit, Matched: true},
		{Policy: "ns/dry-allow", Action: ir.AuthzAllow, DryRun: true, Matched: false},
		{Policy: "ns/dry-deny", Action: ir.AuthzDeny, DryRun: true, Matched: true},
	}
	if len(d.DryRunResults) != len(want) {
		t.Fatalf("DryRunResults %+v, want %+v", d.DryRunResults, want)
	}
	for i := range want {
		if d.DryRunResults[i] != want[i] {
			t.Fatalf("DryRunResults[%d] = %+v, want %+v", i, d.DryRunResults[i], want[i])
		}
	}
	if d := Compile([]*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, &ir.AuthzRule{})}, Options{}).Evaluate(baseRequest()); d.DryRunResults != nil {
		t.Fatalf("DryRunResults without dry-run policies: %+v", d.DryRunResults)
	}
}

func TestTrustDomainAliases(t *testing.T) {
	cases := []struct {
		name      string
		opts      Options
		principal string // policy value
		peer      string
		want      bool
	}{
		{"alias in policy matches trust domain", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "td-old/ns/foo/sa/bar", "spiffe://td-new/ns/foo/sa/bar", true},
		{"trust domain in policy matches alias", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "td-new/ns/foo/sa/bar", "spiffe://td-old/ns/foo/sa/bar", true},
		{"cluster.local in policy means the trust domain", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "cluster.local/ns/foo/sa/bar", "spiffe://td-old/ns/foo/sa/bar", true},
		{"cluster.local replaced, not kept", Options{TrustDomain: "example.org"}, "cluster.local/ns/foo/sa/bar", "spiffe://cluster.local/ns/foo/sa/bar", false},
		{"cluster.local replaced by trust domain", Options{TrustDomain: "example.org"}, "cluster.local/ns/foo/sa/bar", "spiffe://example.org/ns/foo/sa/bar", true},
		{"unrelated trust domain kept as is", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "other/ns/foo/sa/bar", "spiffe://td-new/ns/foo/sa/bar", false},
		{"unrelated trust domain exact", Options{TrustDomain: "td-new"}, "other/ns/foo/sa/bar", "spiffe://other/ns/foo/sa/bar", true},
		{"prefix principal expanded", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "td-old/ns/foo/sa/*", "spiffe://td-new/ns/foo/sa/bar", true},
		{"wildcard trust domain not expanded", Options{TrustDomain: "td-new", TrustDomainAliases: l("td-old")}, "*/ns/foo/sa/bar", "spiffe://anything/ns/foo/sa/bar", true},
		{"suffix trust domain kept for matching td", Options{TrustDomain: "new-td", TrustDomainAliases: l("old-td")}, "*-td/ns/foo/sa/bar", "spiffe://old-td/ns/foo/sa/bar", true},
		{"default trust domain", Options{}, "cluster.local/ns/foo/sa/bar", "spiffe://cluster.local/ns/foo/sa/bar", true},
		{"no alias without configuration", Options{}, "td-old/ns/foo/sa/bar", "spiffe://cluster.local/ns/foo/sa/bar", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, neg := range []bool{false, true} {
				src := ir.AuthzSource{Principals: l(tc.principal)}
				if neg {
					src = ir.AuthzSource{NotPrincipals: l(tc.principal)}
				}
				r := baseRequest()
				r.SourcePrincipal = tc.peer
				d := Compile([]*ir.AuthzPolicy{pol("foo", "p", ir.AuthzAllow, from(src))}, tc.opts).Evaluate(r)
				if d.Allowed != (tc.want != neg) {
					t.Fatalf("negated=%v: Allowed = %v, want %v", neg, d.Allowed, tc.want != neg)
				}
			}
		})
	}
}

func TestEmptyAndWarnings(t *testing.T) {
	if !Compile(nil, Options{}).Empty() {
		t.Fatal("no policies: Empty() = false")
	}
	var nilEval *Evaluator
	if !nilEval.Empty() || !nilEval.Evaluate(baseRequest()).Allowed {
		t.Fatal("nil evaluator must allow")
	}
	custom := Compile([]*ir.AuthzPolicy{pol("ns", "c", ir.AuthzCustom, &ir.AuthzRule{}), nil}, Options{})
	if custom.Empty() {
		t.Fatal("only CUSTOM: Empty() = true, but the caller must still ask the provider")
	}
	if prov, pol, ok := custom.Custom(baseRequest()); !ok || pol != "ns/c" {
		t.Fatalf("Custom() = %q %q %v, want the matching policy", prov, pol, ok)
	}
	e := Compile([]*ir.AuthzPolicy{pol("ns", "d", ir.AuthzDeny, when("bogus", "x"), from(ir.AuthzSource{IPBlocks: l("x")}))}, Options{})
	if e.Empty() {
		t.Fatal("deny policy: Empty() = true")
	}
	if w := e.Warnings(); len(w) != 2 || !strings.Contains(w[0], "bogus") || !strings.Contains(w[1], `"x"`) {
		t.Fatalf("warnings %q", w)
	}
	if d := e.Evaluate(nil); d.Allowed {
		t.Fatal("nil request allowed")
	}
}

func TestPathTemplateCompile(t *testing.T) {
	for _, tc := range []struct {
		tmpl  string
		ok    bool
		match []string
		miss  []string
	}{
		{"/{*}", true, l("/a", "/a~b"), l("/", "/a/b", "/a*")},
		{"/{**}", true, l("/", "/a", "/a/b/c", "/a//b"), l("", "/a b")},
		{"/a/{*}/c", true, l("/a/b/c"), l("/a//c", "/a/b/b/c", "/a/b/c/")},
		{"/a/{**}/c", true, l("/a//c", "/a/b/c", "/a/b/d/c"), l("/a/c", "/a/b/d")},
		{"/a/{*}/", true, l("/a/b/"), l("/a/b", "/a/b/c")},
		{"/a/{**}/{*}", false, nil, nil},
		{"/a/{**}/{**}", false, nil, nil},
		{"a/{*}", false, nil, nil},
		{"/a{*}", false, nil, nil},
		{"/a/{*}//b", false, nil, nil},
		{"/a b/{*}", false, nil, nil},
	} {
		pt, err := compilePathTemplate(tc.tmpl)
		if (err == nil) != tc.ok {
			t.Fatalf("%q: err = %v, want ok=%v", tc.tmpl, err, tc.ok)
		}
		for _, p := range tc.match {
			if !pt.match(p) {
				t.Errorf("%q should match %q", tc.tmpl, p)
			}
		}
		for _, p := range tc.miss {
			if pt.match(p) {
				t.Errorf("%q should not match %q", tc.tmpl, p)
			}
		}
	}
}

// jwtClaims is the payload of a validated token as authn.Result.Claims
// gives it (decoded JSON).
func jwtClaims(r *Request) {
	r.RequestClaims = map[string]any{
		"iss":    "https://issuer.example.com",
		"sub":    "alice",
		"aud":    []any{"api.example.com", "web.example.com"},
		"azp":    "web-client",
		"groups": []any{"dev", "ops", 3.0},
		"role":   "admin",
		"org":    map[string]any{"team": "blue", "size": 4.0, "tags": []any{"eu", "prod"}},
		"a.b":    "dotted",
		"a[b]":   "bracketed",
		"scope":  []any{"read", "write"},
		"n":      42.0,
		"ok":     true,
	}
}

func claim(k string, v any) mod {
	return func(r *Request) {
		if r.RequestClaims == nil {
			jwtClaims(r)
		}
		if v == nil {
			delete(r.RequestClaims, k)
			return
		}
		r.RequestClaims[k] = v
	}
}

// TestJWTClaims covers request.auth.* against the claims of a validated
// token, as Istio's RBAC matches the jwt_authn payload: strings, any string
// element of a list, nested objects, wildcards, notValues.
func TestJWTClaims(t *testing.T) {
	withJWT := []mod{jwtClaims}
	cases := []struct {
		name string
		rule *ir.AuthzRule
		mods []mod
		want bool
	}{
		{name: "claim string exact", rule: when("request.auth.claims[role]", "admin"), want: true},
		{name: "claim string other", rule: when("request.auth.claims[role]", "viewer"), want: false},
		{name: "claim string prefix", rule: when("request.auth.claims[role]", "adm*"), want: true},
		{name: "claim string suffix", rule: when("request.auth.claims[role]", "*min"), want: true},
		{name: "claim presence", rule: when("request.auth.claims[role]", "*"), want: true},
		{name: "claim presence of an empty string", rule: when("request.auth.claims[role]", "*"), mods: []mod{claim("role", "")}, want: false},
		{name: "claim missing", rule: when("request.auth.claims[missing]", "*"), want: false},
		{name: "claim values are ORed", rule: when("request.auth.claims[role]", "viewer", "admin"), want: true},
		{name: "list claim: any element", rule: when("request.auth.claims[groups]", "ops"), want: true},
		{name: "list claim: element prefix", rule: when("request.auth.claims[groups]", "o*"), want: true},
		{name: "list claim: no element", rule: when("request.auth.claims[groups]", "admin"), want: false},
		{name: "list claim: not the joined list", rule: when("request.auth.claims[groups]", "dev,ops"), want: false},
		{name: "list claim: numbers never match", rule: when("request.auth.claims[groups]", "3"), want: false},
		{name: "Go string list", rule: when("request.auth.claims[groups]", "ops"), mods: []mod{claim("groups", []string{"dev", "ops"})}, want: true},
		{name: "number claim never matches", rule: when("request.auth.claims[n]", "42"), want: false},
		{name: "number claim presence", rule: when("request.auth.claims[n]", "*"), want: false},
		{name: "boolean claim never matches", rule: when("request.auth.claims[ok]", "true"), want: false},
		{name: "object claim never matches", rule: when("request.auth.claims[org]", "*"), want: false},
		{name: "nested claim", rule: when("request.auth.claims[org][team]", "blue"), want: true},
		{name: "nested claim other value", rule: when("request.auth.claims[org][team]", "red"), want: false},
		{name: "nested list claim", rule: when("request.auth.claims[org][tags]", "prod"), want: true},
		{name: "nested through a string", rule: when("request.auth.claims[role][x]", "*"), want: false},
		{name: "nested missing", rule: when("request.auth.claims[org][missing]", "*"), want: false},
		{name: "dotted name is one claim", rule: when("request.auth.claims[a.b]", "dotted"), want: true},
		{name: "dotted name is not nested", rule: when("request.auth.claims[org.team]", "blue"), want: false},
		{name: "inner brackets make one claim name", rule: when("request.auth.claims[a[b]]", "bracketed"), want: true},
		{name: "notValues hit", rule: whenNot("request.auth.claims[groups]", "dev"), want: false},
		{name: "notValues miss", rule: whenNot("request.auth.claims[groups]", "admin"), want: true},
		{name: "notValues on a missing claim", rule: whenNot("request.auth.claims[missing]", "x"), want: true},
		{name: "space-delimited scope", rule: when("request.auth.claims[scope]", "write"), want: true},
		{name: "empty brackets (ALLOW drops rule)", rule: when("request.auth.claims[]", "*"), want: false},
		{name: "unbalanced brackets (ALLOW drops rule)", rule: when("request.auth.claims[a", "*"), want: false},
		{name: "text after the prefix (ALLOW drops rule)", rule: when("request.auth.claimsx[role]", "admin"), want: false},

		{name: "audiences list", rule: when("request.auth.audiences", "web.example.com"), want: true},
		{name: "audiences suffix", rule: when("request.auth.audiences", "*.example.com"), want: true},
		{name: "audiences miss", rule: when("request.auth.audiences", "other"), want: false},
		{name: "audiences string", rule: when("request.auth.audiences", "api"), mods: []mod{claim("aud", "api")}, want: true},
		{name: "audiences notValues", rule: whenNot("request.auth.audiences", "api.example.com"), want: false},
		{name: "presenter", rule: when("request.auth.presenter", "web-client"), want: true},
		{name: "presenter miss", rule: when("request.auth.presenter", "cli"), want: false},
		{name: "presenter missing", rule: when("request.auth.presenter", "*"), mods: []mod{claim("azp", nil)}, want: false},

		{name: "principal from iss and sub", rule: when("request.auth.principal", "https://issuer.example.com/alice"), want: true},
		{name: "claims win over RequestPrincipal", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/bob")}),
			mods: []mod{claim("sub", "bob")}, want: true},
		{name: "sub containing a slash", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/*")}),
			mods: []mod{claim("sub", "a/b")}, want: true},
		{name: "principal needs sub", rule: from(ir.AuthzSource{RequestPrincipals: l("*")}), mods: []mod{claim("sub", nil)}, want: false},
		{name: "principal needs a string iss", rule: from(ir.AuthzSource{RequestPrincipals: l("*")}), mods: []mod{claim("iss", 1.0)}, want: false},
		{name: "empty sub matches an empty subject", rule: from(ir.AuthzSource{RequestPrincipals: l("https://issuer.example.com/")}),
			mods: []mod{claim("sub", "")}, want: true},
		{name: "notRequestPrincipals", rule: from(ir.AuthzSource{NotRequestPrincipals: l("*/alice")}), want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRequest()
			for _, m := range append(append([]mod(nil), withJWT...), tc.mods...) {
				m(r)
			}
			e := Compile([]*ir.AuthzPolicy{pol("foo", "p", ir.AuthzAllow, tc.rule)}, Options{})
			if d := e.Evaluate(r); d.Allowed != tc.want {
				t.Fatalf("Allowed = %v, want %v (decision %+v, warnings %q)", d.Allowed, tc.want, d, e.Warnings())
			}
			// On TCP the claims are HTTP-only: an ALLOW rule using them never matches.
			r.HTTP = false
			if d := e.Evaluate(r); d.Allowed && len(tc.rule.When)+len(tc.rule.From) > 0 {
				t.Fatalf("TCP: an ALLOW rule with JWT attributes matched: %+v", d)
			}
		})
	}
	// DENY with an unparsable claim key ignores the condition (denies more).
	e := Compile([]*ir.AuthzPolicy{pol("foo", "d", ir.AuthzDeny, when("request.auth.claims[]", "x"))}, Options{})
	if d := e.Evaluate(baseRequest()); d.Allowed {
		t.Fatalf("DENY with a bad claim key must match: %+v", d)
	}
}

func TestClaimPath(t *testing.T) {
	for key, want := range map[string][]string{
		"request.auth.claims[a]":       {"a"},
		"request.auth.claims[a][b][c]": {"a", "b", "c"},
		"request.auth.claims[a.b]":     {"a.b"},
		"request.auth.claims[a[b]]":    {"a[b]"},
		"request.auth.claims[a][b]c]":  {"a][b]c"},
		"request.auth.claims[a][]":     {"a", ""},
		"request.auth.claims[]":        nil,
		"request.auth.claims":          nil,
		"request.auth.claims[a":        nil,
		"request.auth.claimsx[a]":      nil,
	} {
		got, ok := claimPath(key)
		if ok != (want != nil) || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("claimPath(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}

func TestNoAllocationsWithJWTConditions(t *testing.T) {
	p := pol("ns", "jwt", ir.AuthzAllow, &ir.AuthzRule{
		From: []*ir.AuthzSource{{RequestPrincipals: l("https://issuer.example.com/*")}},
		When: []*ir.AuthzCondition{
			{Key: "request.auth.claims[org][team]", Values: l("blue")},
			{Key: "request.auth.claims[groups]", Values: l("admin", "op*")},
			{Key: "request.auth.audiences", Values: l("*.example.com")},
			{Key: "request.auth.presenter", NotValues: l("cli")},
		},
	})
	e := Compile([]*ir.AuthzPolicy{p}, Options{})
	withClaims := baseRequest()
	jwtClaims(withClaims)
	for _, tc := range []struct {
		r    *Request
		want bool
	}{{baseRequest(), false}, {withClaims, true}} {
		var d Decision
		if allocs := testing.AllocsPerRun(200, func() { d = e.Evaluate(tc.r) }); allocs != 0 {
			t.Fatalf("claims=%v: %v allocs per Evaluate, want 0", tc.r.RequestClaims != nil, allocs)
		}
		if d.Allowed != tc.want {
			t.Fatalf("claims=%v: decision %+v", tc.r.RequestClaims != nil, d)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	e := Compile(benchPolicies(10), Options{TrustDomainAliases: l("old.td")})
	for _, r := range []*Request{benchRequest(true), benchRequest(false)} {
		var d Decision
		allocs := testing.AllocsPerRun(200, func() { d = e.Evaluate(r) })
		if allocs != 0 {
			t.Fatalf("HTTP=%v: %v allocs per Evaluate, want 0", r.HTTP, allocs)
		}
		if !d.Allowed {
			t.Fatalf("HTTP=%v: benchmark request denied: %+v", r.HTTP, d)
		}
	}
}

func TestTrustDomains(t *testing.T) {
	r := baseRequest()
	r.SourcePrincipal = "spiffe://td-a/ns/foo/sa/bar"
	cases := []struct {
		src  ir.AuthzSource
		want bool
	}{
		{ir.AuthzSource{TrustDomains: l("td-a")}, true},
		{ir.AuthzSource{TrustDomains: l("td-b")}, false},
		{ir.AuthzSource{TrustDomains: l("td-*")}, true},
		{ir.AuthzSource{NotTrustDomains: l("td-a")}, false},
		{ir.AuthzSource{NotTrustDomains: l("other")}, true},
	}
	for _, tc := range cases {
		e := Compile([]*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, from(tc.src))}, Options{})
		if got := e.Evaluate(r).Allowed; got != tc.want {
			t.Errorf("%+v: allowed %v, want %v", tc.src, got, tc.want)
		}
	}
	r.SourcePrincipal = ""
	e := Compile([]*ir.AuthzPolicy{pol("ns", "a", ir.AuthzAllow, from(ir.AuthzSource{TrustDomains: l("*")}))}, Options{})
	if e.Evaluate(r).Allowed {
		t.Error("a source without identity has no trust domain")
	}
}

func TestCustomMatching(t *testing.T) {
	p1 := pol("ns", "a-ext", ir.AuthzCustom, to(ir.AuthzOperation{Paths: l("/ext/*")}))
	p1.Provider = "ext-http"
	p2 := pol("ns", "b-ext", ir.AuthzCustom, to(ir.AuthzOperation{Methods: l("DELETE")}))
	p2.Provider = "ext-grpc"
	e := Compile([]*ir.AuthzPolicy{p1, p2, pol("ns", "d", ir.AuthzDeny, &ir.AuthzRule{})}, Options{})
	r := baseRequest()
	r.Path = "/ext/x"
	if prov, pol, ok := e.Custom(r); !ok || prov != "ext-http" || pol != "ns/a-ext" {
		t.Errorf("Custom(/ext/x) = %q %q %v", prov, pol, ok)
	}
	r.Path, r.Method = "/other", "DELETE"
	if prov, _, ok := e.Custom(r); !ok || prov != "ext-grpc" {
		t.Errorf("Custom(DELETE) = %q %v", prov, ok)
	}
	r.Method = "GET"
	if _, _, ok := e.Custom(r); ok {
		t.Error("no CUSTOM policy matches GET /other")
	}
	if got := e.CustomProviders(); len(got) != 2 || got[0] != "ext-http" || got[1] != "ext-grpc" {
		t.Errorf("CustomProviders() = %v", got)
	}
	if e.Evaluate(r).Allowed {
		t.Error("the DENY policy still applies after CUSTOM")
	}
}
