// Package chart checks the Helm chart's RBAC: the controller gets the
// verbs its work needs and nothing more.
package chart

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// rules renders rbac.yaml well enough to read its rules: template
// expressions become placeholders (the chart is also rendered for real by
// helm in test/e2e).
func rules(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile("../../install/helm/kgateway-waypoint/templates/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^\s*\{\{-?\s*include.*\}\}\s*$`).ReplaceAllString(string(data), "")
	text = regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(text, "templated")
	out := map[string][]rbacv1.PolicyRule{}
	for _, doc := range strings.Split(text, "\n---") {
		var obj struct {
			Kind  string              `json:"kind"`
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("rbac.yaml: %v\n%s", err, doc)
		}
		if obj.Kind == "ClusterRole" || obj.Kind == "Role" {
			out[obj.Kind] = append(out[obj.Kind], obj.Rules...)
		}
	}
	return out
}

// grants flattens rules into "group/resource: verb" lines, sorted.
func grants(rs []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					line := g + "/" + res + ": " + v
					if len(r.ResourceNames) > 0 {
						line += " (only " + strings.Join(r.ResourceNames, ",") + ")"
					}
					out = append(out, line)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestControllerRBACIsLeastPrivilege(t *testing.T) {
	r := rules(t)
	cluster := grants(r["ClusterRole"])
	write := map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}
	// Every write the controller may do, cluster-wide: the deployer's own
	// objects, status, the GatewayClass it owns, TokenReviews.
	allowedWrites := map[string]bool{
		"/serviceaccounts": true, "/services": true, "apps/deployments": true,
		"autoscaling/horizontalpodautoscalers": true, "policy/poddisruptionbudgets": true,
		"gateway.networking.k8s.io/gatewayclasses": true, "gateway.networking.k8s.io/gateways/finalizers": true,
		"gateway.networking.k8s.io/gatewayclasses/status": true, "gateway.networking.k8s.io/gateways/status": true,
		"gateway.networking.k8s.io/httproutes/status": true, "gateway.networking.k8s.io/grpcroutes/status": true,
		"gateway.networking.k8s.io/tcproutes/status": true, "security.istio.io/authorizationpolicies/status": true,
		"/services/status": true, "networking.istio.io/serviceentries/status": true,
		"authentication.k8s.io/tokenreviews":          true,
		"gateway.kgateway.dev/trafficpolicies/status": true, // kgateway TrafficPolicy ancestors
		"networking.istio.io/destinationrules/status": true,
		"telemetry.istio.io/telemetries/status":       true,
	}
	for _, rule := range r["ClusterRole"] {
		for _, v := range rule.Verbs {
			if v == "*" {
				t.Errorf("wildcard verb in %v", rule)
			}
		}
		for _, res := range rule.Resources {
			if res == "*" || res == "secrets" {
				t.Errorf("the controller must not get %q: %v", res, rule)
			}
			for _, g := range rule.APIGroups {
				for _, v := range rule.Verbs {
					if write[v] && !allowedWrites[g+"/"+res] {
						t.Errorf("unexpected write %s on %s/%s", v, g, res)
					}
				}
			}
		}
	}
	// The GatewayClass may be patched only by name (the class it owns).
	for _, rule := range r["ClusterRole"] {
		for _, res := range rule.Resources {
			if res == "gatewayclasses" && contains(rule.Verbs, "patch") && len(rule.ResourceNames) == 0 {
				t.Error("patch on every GatewayClass: must be limited to ours by resourceNames")
			}
		}
	}
	// Everything the translator reads is readable.
	for _, need := range []string{"/namespaces: watch", "/services: watch", "/pods: watch", "discovery.k8s.io/endpointslices: watch",
		"gateway.networking.k8s.io/httproutes: watch", "security.istio.io/authorizationpolicies: watch",
		"security.istio.io/requestauthentications: watch", "networking.istio.io/serviceentries: watch",
		"gateway.kgateway.dev/trafficpolicies: watch", "gateway.kgateway.dev/gatewayextensions: watch",
		"networking.istio.io/destinationrules: watch", "telemetry.istio.io/telemetries: watch",
		"gateway.kgateway.dev/gatewayparameters: watch", "/configmaps: get"} {
		if !contains(cluster, need) {
			t.Errorf("missing %q", need)
		}
	}
	// Our conditions on Services, ServiceEntries and AuthorizationPolicies
	// are server-side applied (patch), never updated: a full status update
	// would replace istiod's conditions.
	for _, res := range []string{"/services/status", "networking.istio.io/serviceentries/status", "security.istio.io/authorizationpolicies/status",
		"networking.istio.io/destinationrules/status"} {
		if !contains(cluster, res+": patch") {
			t.Errorf("missing %s: patch", res)
		}
		if contains(cluster, res+": update") {
			t.Errorf("%s: update is granted; only patch (server-side apply) is needed", res)
		}
	}
	// Leader election stays namespaced.
	for _, g := range grants(r["Role"]) {
		if !strings.HasPrefix(g, "coordination.k8s.io/leases") && !strings.Contains(g, "/events") {
			t.Errorf("unexpected namespaced grant %s", g)
		}
	}
	t.Logf("cluster-wide grants:\n%s", strings.Join(cluster, "\n"))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
