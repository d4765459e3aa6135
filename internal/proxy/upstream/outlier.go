package upstream

import (
	"time"
)

// maxEjection is Envoy's default max_ejection_time: an ejection grows with
// the endpoint's ejections up to this (or the base time, when longer).
const maxEjection = 300 * time.Second

// Outcome records the outcome of an exchange with an endpoint: failed
// when no response came (a connect failure, a reset, an upstream timeout),
// else the response's status. Without a DestinationRule's outlier
// detection it is Report: gateway errors (502, 503, 504, connect failures)
// count. With one, its consecutive 5xx and gateway error counts, base
// ejection time, interval and maximum ejection percent decide, as Envoy's
// outlier detection does.
func (b *Backend) Outcome(ep string, status int, failed bool) {
	gateway := failed || status == 502 || status == 503 || status == 504
	if b.od == nil {
		b.Report(ep, !gateway)
		return
	}
	i, known := b.index[ep]
	if !known {
		return
	}
	h := b.health[i]
	od := b.od
	x5 := failed || status >= 500
	trip := false
	if gateway {
		trip = h.failures.Add(1) >= int32(od.ConsecutiveGatewayErrors) && od.ConsecutiveGatewayErrors > 0
	} else {
		h.failures.Store(0)
	}
	if x5 {
		trip = trip || (h.fails5xx.Add(1) >= int32(od.Consecutive5xx) && od.Consecutive5xx > 0)
	} else {
		h.fails5xx.Store(0)
	}
	if !trip {
		return
	}
	h.failures.Store(0)
	h.fails5xx.Store(0)
	now := nanotime()
	if h.ejected(now) {
		return
	}
	// Envoy ejects no more once this share of the endpoints is out.
	ejected := 0
	for _, o := range b.health {
		if o.ejected(now) {
			ejected++
		}
	}
	if uint64(ejected)*100 >= uint64(od.MaxEjectionPercent)*uint64(len(b.health)) {
		return
	}
	base := time.Duration(od.BaseEjectionMs) * time.Millisecond
	d := min(time.Duration(h.ejections.Add(1))*base, max(maxEjection, base))
	// Envoy lifts ejections at its interval's sweep.
	if iv := time.Duration(od.IntervalMs) * time.Millisecond; iv > 0 {
		d = (d + iv - 1) / iv * iv
	}
	h.ejectedUntil.Store(now + int64(d))
}

// HasOutlierPolicy reports whether the backend has a DestinationRule's
// outlier detection (then Outcome, not Report, says what counts).
func (b *Backend) HasOutlierPolicy() bool { return b.od != nil }
