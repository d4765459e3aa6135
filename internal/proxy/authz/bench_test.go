package authz

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// benchPolicies returns n policies where only the last one matches
// benchRequest, so Evaluate walks all of them.
func benchPolicies(n int) []*ir.AuthzPolicy {
	var out []*ir.AuthzPolicy
	for i := 0; i < n-1; i++ {
		ns := fmt.Sprintf("team-%03d", i)
		if i%3 == 0 {
			out = append(out, &ir.AuthzPolicy{
				Name:   ir.NamespacedName{Namespace: ns, Name: "deny-admin"},
				Action: ir.AuthzDeny,
				Rules: []*ir.AuthzRule{{
					From: []*ir.AuthzSource{{Namespaces: []string{"blocked-" + ns, "quarantine-*"}}, {IPBlocks: []string{"192.168.0.0/16"}}},
					To:   []*ir.AuthzOperation{{Paths: []string{"/admin/*"}, NotMethods: []string{"GET"}}},
				}},
			})
			continue
		}
		out = append(out, &ir.AuthzPolicy{
			Name:   ir.NamespacedName{Namespace: ns, Name: "allow-clients"},
			Action: ir.AuthzAllow,
			Rules: []*ir.AuthzRule{{
				From: []*ir.AuthzSource{{Principals: []string{"cluster.local/ns/" + ns + "/sa/app", "cluster.local/ns/" + ns + "/sa/worker-*"}}},
				To:   []*ir.AuthzOperation{{Methods: []string{"GET", "POST"}, Paths: []string{"/api/{*}/items", "/v1/*"}, Hosts: []string{"*.svc.cluster.local:8080"}}},
				When: []*ir.AuthzCondition{{Key: "request.headers[X-Env]", Values: []string{"prod", "staging"}}},
			}},
		})
	}
	out = append(out, &ir.AuthzPolicy{
		Name:   ir.NamespacedName{Namespace: "zz", Name: "allow-frontend"},
		Action: ir.AuthzAllow,
		Rules: []*ir.AuthzRule{
			{
				From: []*ir.AuthzSource{{Namespaces: []string{"frontend"}, NotIPBlocks: []string{"192.168.0.0/16"}}},
				To:   []*ir.AuthzOperation{{Methods: []string{"GET"}, Paths: []string{"/api/{**}"}}},
				When: []*ir.AuthzCondition{{Key: "request.headers[X-Env]", Values: []string{"prod"}}, {Key: "remote.ip", NotValues: []string{"203.0.113.0/24"}}},
			},
			{
				From: []*ir.AuthzSource{{ServiceAccounts: []string{"frontend/web"}}},
				To:   []*ir.AuthzOperation{{Ports: []string{"9000"}}},
			},
		},
	})
	return out
}

func benchRequest(httpReq bool) *Request {
	r := &Request{
		SourceIP:         netip.MustParseAddr("10.1.2.3"),
		SourcePrincipal:  "spiffe://cluster.local/ns/frontend/sa/web",
		DestinationIP:    netip.MustParseAddr("10.96.0.10"),
		DestinationPort:  8080,
		HTTP:             true,
		Method:           "GET",
		Host:             "svc.ns.svc.cluster.local:8080",
		Path:             "/api/v1/items/42",
		Headers:          http.Header{"X-Env": {"prod"}, "X-Forwarded-For": {"198.51.100.7, 10.1.2.3"}, "User-Agent": {"bench"}},
		RequestPrincipal: "",
	}
	if !httpReq {
		r.HTTP = false
		r.DestinationPort = 9000
	}
	return r
}

func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		for _, httpReq := range []bool{true, false} {
			name := fmt.Sprintf("policies=%d/http=%v", n, httpReq)
			b.Run(name, func(b *testing.B) {
				e := Compile(benchPolicies(n), Options{})
				r := benchRequest(httpReq)
				if d := e.Evaluate(r); !d.Allowed || d.Policy != "zz/allow-frontend" {
					b.Fatalf("unexpected decision %+v", d)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e.Evaluate(r)
				}
			})
		}
	}
}

func TestBenchPoliciesWalkEverything(t *testing.T) {
	// Guard for the benchmark: only the last policy matches, for HTTP and TCP.
	for _, n := range []int{1, 10, 100} {
		pols := benchPolicies(n)
		for _, httpReq := range []bool{true, false} {
			d := Compile(pols[len(pols)-1:], Options{}).Evaluate(benchRequest(httpReq))
			if !d.Allowed {
				t.Fatalf("n=%d http=%v: last policy does not match: %+v", n, httpReq, d)
			}
			if n > 1 {
				d = Compile(pols[:len(pols)-1], Options{}).Evaluate(benchRequest(httpReq))
				if d.Allowed || d.Policy != "" {
					t.Fatalf("n=%d http=%v: an earlier policy decided: %+v", n, httpReq, d)
				}
			}
		}
	}
}
