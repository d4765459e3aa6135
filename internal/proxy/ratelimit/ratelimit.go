// Package ratelimit is the waypoint's local rate limiting: Envoy's token
// bucket (envoy.filters.http.local_ratelimit), as kgateway's TrafficPolicy
// rateLimit.local configures it.
//
// A Bucket holds up to MaxTokens tokens and gains TokensPerFill every
// FillInterval, continuously (Envoy's timer-less atomic token bucket: the
// tokens a fill brings arrive spread over the interval rather than all at
// its end); it starts full. Taking a token is one atomic compare-and-swap
// on one word: no lock, no allocation, no timer.
package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// epoch anchors the monotonic clock.
var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// Bucket is one token bucket, shared by every request it limits.
type Bucket struct {
	// empty is the (monotonic) time at which the bucket was, or would
	// have been, empty: the tokens it holds at now are (now-empty)/cost,
	// at most max.
	empty atomic.Int64
	cost  int64 // nanoseconds one token takes to come back, ≥ 1
	full  int64 // cost × max tokens
	now   func() int64
	spec  ir.TokenBucket
}

// New returns a full bucket. A spec with no tokens or no interval (which
// the translator never produces) is given one token a second.
func New(spec ir.TokenBucket) *Bucket { return newBucket(spec, monotonic) }

func newBucket(spec ir.TokenBucket, now func() int64) *Bucket {
	maxTokens, perFill, interval := int64(spec.MaxTokens), int64(spec.TokensPerFill), spec.FillIntervalMs
	if maxTokens < 1 {
		maxTokens = 1
	}
	if perFill < 1 {
		perFill = 1
	}
	if interval < 1 {
		interval = 1000
	}
	cost := max(interval*int64(time.Millisecond)/perFill, 1)
	b := &Bucket{cost: cost, full: cost * maxTokens, now: now, spec: spec}
	b.empty.Store(now() - b.full)
	return b
}

// Allow takes a token, and reports false when there is none.
func (b *Bucket) Allow() bool {
	now := b.now()
	for {
		old := b.empty.Load()
		base := old
		if now-base > b.full {
			base = now - b.full // full: the tokens beyond max were never kept
		}
		next := base + b.cost
		if next > now {
			return false
		}
		if b.empty.CompareAndSwap(old, next) {
			return true
		}
	}
}

// Tokens is the number of whole tokens in the bucket now (for tests and
// the config dump).
func (b *Bucket) Tokens() int64 {
	d := b.now() - b.empty.Load()
	return min(d, b.full) / b.cost
}

// Registry keeps the buckets across configurations, by key: an update that
// leaves a bucket's key and settings alone leaves its tokens alone, as
// Envoy keeps a filter's state across route updates that do not change it.
type Registry struct {
	mu      sync.Mutex
	buckets map[string]*Bucket
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{buckets: map[string]*Bucket{}} }

// Get returns the bucket of spec.Key: the one there when its settings are
// spec's, else a new full one (which replaces it). A nil registry gives a
// new bucket every time.
func (r *Registry) Get(spec ir.TokenBucket) *Bucket {
	if r == nil {
		return New(spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.buckets[spec.Key]; b != nil && b.spec == spec {
		return b
	}
	b := New(spec)
	r.buckets[spec.Key] = b
	return b
}

// Retain forgets the buckets whose keys are not in keep (those of the
// configuration now in force).
func (r *Registry) Retain(keep map[string]bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.buckets {
		if !keep[k] {
			delete(r.buckets, k)
		}
	}
}

// Len is the number of buckets kept.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
