// Package hist records latencies in an HDR histogram (HdrHistogram's Go
// implementation) and reports the percentiles the benchmark prints.
//
// Values are recorded in nanoseconds from 100 ns to 60 s with three
// significant digits: every recorded value is kept to within 0.1%.
package hist

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	lowest  = 100                     // ns: the smallest distinguishable value
	highest = int64(60 * time.Second) // ns: larger values are clamped
	digits  = 3                       // significant digits kept
)

// H is a latency histogram safe for concurrent use.
type H struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// New returns an empty histogram.
func New() *H { return &H{h: hdrhistogram.New(lowest, highest, digits)} }

// Record adds one latency. Values outside [100ns, 60s] are clamped.
func (h *H) Record(d time.Duration) {
	v := int64(d)
	if v < lowest {
		v = lowest
	}
	if v > highest {
		v = highest
	}
	h.mu.Lock()
	_ = h.h.RecordValue(v) // cannot fail: v is within the trackable range
	h.mu.Unlock()
}

// Reset empties the histogram.
func (h *H) Reset() {
	h.mu.Lock()
	h.h.Reset()
	h.mu.Unlock()
}

// Merge adds every value of o into h.
func (h *H) Merge(o *H) {
	o.mu.Lock()
	snap := o.h.Export()
	o.mu.Unlock()
	other := hdrhistogram.Import(snap)
	h.mu.Lock()
	h.h.Merge(other)
	h.mu.Unlock()
}

// Summary is a histogram's count and percentiles, in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary computes the percentiles recorded so far. An empty histogram
// gives zeros.
func (h *H) Summary() Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.h.TotalCount(),
		Mean:  h.h.Mean() / 1e6,
		P50:   ms(h.h.ValueAtQuantile(50)),
		P90:   ms(h.h.ValueAtQuantile(90)),
		P99:   ms(h.h.ValueAtQuantile(99)),
		P999:  ms(h.h.ValueAtQuantile(99.9)),
		Max:   ms(h.h.Max()),
	}
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }
