package files_test

import (
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
)

// kgateway GatewayParameters load (standalone deploys nothing, so they stay
// out of the snapshot) but are still checked as kgateway's CRD checks them:
// a misspelt field, both kube and selfManaged, a negative replica count or
// an unknown Service type fail the load, naming the object.
func TestLoadGatewayParameters(t *testing.T) {
	ok := `apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata: {name: waypoint, namespace: ns}
spec:
  kube:
    deployment: {replicas: 2}
    podTemplate: {extraLabels: {team: a}, tolerations: [{key: k, operator: Exists}]}
    service: {type: ClusterIP}
    sdsContainer: {image: {tag: x}}
`
	snap, err := files.LoadBytes("gwp.yaml", []byte(ok))
	if err != nil {
		t.Fatalf("a valid GatewayParameters: %v", err)
	}
	if len(snap.Gateways) != 0 || len(snap.TrafficPolicies) != 0 {
		t.Fatalf("snapshot: %+v", snap)
	}
	head := "apiVersion: gateway.kgateway.dev/v1alpha1\nkind: GatewayParameters\nmetadata: {name: bad, namespace: ns}\n"
	for _, bad := range []struct{ spec, want string }{
		{"spec: {kube: {deploymnt: {replicas: 1}}}\n", "deploymnt"},
		{"spec: {kube: {}, selfManaged: {}}\n", "exactly one"},
		{"spec: {}\n", "exactly one"},
		{"spec: {kube: {deployment: {replicas: -1}}}\n", "replicas"},
		{"spec: {kube: {service: {type: Internal}}}\n", "Internal"},
	} {
		_, err := files.LoadBytes("bad.yaml", []byte(head+bad.spec))
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "bad") {
			t.Errorf("loading %q: %v, want an error naming the object and %s", bad.spec, err, bad.want)
		}
	}
}
