package upstream

import (
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// TestOutcomeDestinationRule: a DestinationRule's outlier detection ejects
// on consecutive 5xx or gateway errors as set, a success in between resets
// the count, and no more than maxEjectionPercent of the endpoints go.
func TestOutcomeDestinationRule(t *testing.T) {
	eps := []string{"10.3.0.1:80", "10.3.0.2:80", "10.3.0.3:80", "10.3.0.4:80"}
	o := NewOutlier()
	b := NewBackend("ns/svc:80", &ir.Backend{Endpoints: eps, Outlier: &ir.OutlierDetection{
		Consecutive5xx: 3, ConsecutiveGatewayErrors: 2, IntervalMs: 1000, BaseEjectionMs: 30000, MaxEjectionPercent: 50}}, o)
	b.Outcome(eps[0], 500, false)
	b.Outcome(eps[0], 500, false)
	b.Outcome(eps[0], 200, false) // resets
	b.Outcome(eps[0], 500, false)
	b.Outcome(eps[0], 500, false)
	if o.Ejected(eps[0]) {
		t.Fatal("ejected after 2 5xx in a row (a success between), want 3")
	}
	b.Outcome(eps[0], 500, false)
	if !o.Ejected(eps[0]) {
		t.Fatal("not ejected after 3 5xx in a row")
	}
	b.Outcome(eps[1], 503, false)
	b.Outcome(eps[1], 0, true)
	if !o.Ejected(eps[1]) {
		t.Fatal("not ejected after 2 gateway errors in a row")
	}
	// Half of the endpoints are out: the cap holds the third.
	for range 5 {
		b.Outcome(eps[2], 0, true)
	}
	if o.Ejected(eps[2]) {
		t.Fatal("ejected past maxEjectionPercent 50")
	}
	// Without the rule, 500 does not count; gateway errors do (5 in a row).
	o2 := NewOutlier()
	d := NewBackend("ns/svc:80", &ir.Backend{Endpoints: eps}, o2)
	for range 10 {
		d.Outcome(eps[0], 500, false)
	}
	if o2.Ejected(eps[0]) {
		t.Fatal("default detection ejected on 500s")
	}
	for range 5 {
		d.Outcome(eps[0], 502, false)
	}
	if !o2.Ejected(eps[0]) {
		t.Fatal("default detection did not eject after 5 502s")
	}
}

// TestOutcomeDisabledCounts: counts of 0 never eject.
func TestOutcomeDisabledCounts(t *testing.T) {
	eps := []string{"10.3.1.1:80", "10.3.1.2:80"}
	o := NewOutlier()
	b := NewBackend("ns/svc:80", &ir.Backend{Endpoints: eps, Outlier: &ir.OutlierDetection{BaseEjectionMs: 1000, MaxEjectionPercent: 100}}, o)
	for range 20 {
		b.Outcome(eps[0], 0, true)
	}
	if o.Ejected(eps[0]) {
		t.Fatal("ejected with both counts 0")
	}
}
