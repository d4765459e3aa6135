package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kgateway-dev/kgateway-waypoint/internal/status"
)

// On the real API server: the controller watches Telemetry objects, and a
// Telemetry targeting a waypoint gets our WaypointAccepted condition (in
// status.kgatewayWaypoint): False with UnsupportedValue for a provider the
// mesh config lacks, True once the Telemetry uses the built-in envoy one.
func TestTelemetryStatus(t *testing.T) {
	env, _ := startController(t)
	c, ctx := env.Client, context.Background()
	waypointGateway(t, c, "tel")
	tm := istioObject("Telemetry")
	tm.SetName("logs")
	tm.SetNamespace("tel")
	tm.Object["spec"] = map[string]any{
		"targetRefs":    []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "wp"}},
		"accessLogging": []any{map[string]any{"providers": []any{map[string]any{"name": "nowhere"}}}},
	}
	if err := c.Create(ctx, tm); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "tel", Name: "logs"}
	want := func(w string) {
		t.Helper()
		eventually(t, 20*time.Second, "the Telemetry's condition "+w, func() error {
			if got := ourIstioCondition(t, c, "Telemetry", key, status.ConditionWaypointAccepted); got != w {
				return fmt.Errorf("condition %s", got)
			}
			return nil
		})
	}
	want("False/UnsupportedValue")

	cur := istioObject("Telemetry")
	if err := c.Get(ctx, key, cur); err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"].(map[string]any)["accessLogging"] = []any{map[string]any{"providers": []any{map[string]any{"name": "envoy"}}}}
	if err := c.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	want("True/Accepted")
}
