package hist

import (
	"math"
	"sync"
	"testing"
	"time"
)

// within reports whether got is within rel (relative) of want.
func within(got, want, rel float64) bool { return math.Abs(got-want) <= rel*want }

func TestPercentilesOfAUniformSpread(t *testing.T) {
	h := New()
	// 1..10000 µs, once each: p50 = 5 ms, p90 = 9 ms, p99 = 9.9 ms, p99.9 = 9.99 ms.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := h.Summary()
	if s.Count != 10000 {
		t.Fatalf("count %d, want 10000", s.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50, 5}, {"p90", s.P90, 9}, {"p99", s.P99, 9.9}, {"p99.9", s.P999, 9.99},
		{"max", s.Max, 10}, {"mean", s.Mean, 5.0005},
	} {
		if !within(c.got, c.want, 0.002) {
			t.Errorf("%s = %.4f ms, want %.4f ms (±0.2%%)", c.name, c.got, c.want)
		}
	}
}

func TestTailIsNotHiddenByTheMedian(t *testing.T) {
	// 990 fast requests and 10 stalled ones (a 1% tail): p50 stays fast,
	// p99.9 and max show the stall, p99 sits on the boundary.
	h := New()
	for i := 0; i < 990; i++ {
		h.Record(200 * time.Microsecond)
	}
	for i := 0; i < 10; i++ {
		h.Record(50 * time.Millisecond)
	}
	s := h.Summary()
	if !within(s.P50, 0.2, 0.002) || !within(s.P90, 0.2, 0.002) {
		t.Errorf("p50/p90 = %.4f/%.4f ms, want 0.2", s.P50, s.P90)
	}
	if !within(s.P999, 50, 0.002) || !within(s.Max, 50, 0.002) {
		t.Errorf("p99.9/max = %.3f/%.3f ms, want 50", s.P999, s.Max)
	}
}

func TestClampsAndMergesConcurrently(t *testing.T) {
	a, b := New(), New()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				a.Record(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	b.Record(0)             // clamped up to 100 ns
	b.Record(2 * time.Hour) // clamped down to 60 s
	a.Merge(b)
	s := a.Summary()
	if s.Count != 1002 {
		t.Fatalf("count %d, want 1002", s.Count)
	}
	if !within(s.Max, 60000, 0.002) {
		t.Errorf("max %.1f ms, want 60000 (clamped)", s.Max)
	}
	if (&H{h: New().h}).Summary() != (Summary{}) {
		t.Error("an empty histogram must summarise to zeros")
	}
}
