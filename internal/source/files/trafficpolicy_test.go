package files_test

import (
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
)

// kgateway TrafficPolicies load into the snapshot; a misspelt field or an
// unknown version is an error naming the object.
func TestLoadTrafficPolicy(t *testing.T) {
	snap, err := files.LoadBytes("tp.yaml", []byte(`apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: rl, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  rateLimit: {local: {tokenBucket: {maxTokens: 1, fillInterval: 1s}}}
  extAuth: {extensionRef: {name: a}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.TrafficPolicies) != 1 || snap.TrafficPolicies[0].Name != "rl" ||
		snap.TrafficPolicies[0].Spec.RateLimit.Local.TokenBucket.MaxTokens != 1 || snap.TrafficPolicies[0].Spec.ExtAuth == nil {
		t.Fatalf("snapshot: %+v", snap.TrafficPolicies)
	}
	for _, bad := range []struct{ doc, want string }{
		{"apiVersion: gateway.kgateway.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: typo, namespace: ns}\nspec: {rateLimt: {}}\n", "rateLimt"},
		{"apiVersion: gateway.kgateway.dev/v1beta9\nkind: TrafficPolicy\nmetadata: {name: v, namespace: ns}\nspec: {}\n", "v1beta9"},
	} {
		_, err := files.LoadBytes("bad.yaml", []byte(bad.doc))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("loading %q: %v, want an error naming %s", bad.doc, err, bad.want)
		}
	}
}
