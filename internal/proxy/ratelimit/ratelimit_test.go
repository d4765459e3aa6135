package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

type clock struct{ t atomic.Int64 }

func (c *clock) now() int64              { return c.t.Load() }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestBucketBurstThenRefill(t *testing.T) {
	c := &clock{}
	c.t.Store(int64(time.Hour))
	b := newBucket(ir.TokenBucket{MaxTokens: 3, TokensPerFill: 1, FillIntervalMs: 100}, c.now)
	for i := range 3 {
		if !b.Allow() {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if b.Allow() {
		t.Fatal("a fourth request with no token left was allowed")
	}
	c.advance(99 * time.Millisecond)
	if b.Allow() {
		t.Fatal("allowed before a fill interval passed")
	}
	c.advance(time.Millisecond)
	if !b.Allow() {
		t.Fatal("refused after one fill interval")
	}
	if b.Allow() {
		t.Fatal("one fill gave more than one token")
	}
	// A long idle refills to the maximum, never beyond.
	c.advance(time.Hour)
	if got := b.Tokens(); got != 3 {
		t.Fatalf("tokens after an hour = %d, want the maximum 3", got)
	}
	for range 3 {
		if !b.Allow() {
			t.Fatal("refused within the refilled burst")
		}
	}
	if b.Allow() {
		t.Fatal("the bucket held more than maxTokens")
	}
}

func TestBucketTokensPerFill(t *testing.T) {
	c := &clock{}
	b := newBucket(ir.TokenBucket{MaxTokens: 10, TokensPerFill: 5, FillIntervalMs: 1000}, c.now)
	for range 10 {
		b.Allow()
	}
	if b.Allow() {
		t.Fatal("allowed with an empty bucket")
	}
	c.advance(time.Second)
	n := 0
	for b.Allow() {
		n++
	}
	if n != 5 {
		t.Fatalf("one interval brought %d tokens, want tokensPerFill 5", n)
	}
}

// Concurrent takers never get more tokens than the bucket holds.
func TestBucketConcurrent(t *testing.T) {
	c := &clock{}
	b := newBucket(ir.TokenBucket{MaxTokens: 100, TokensPerFill: 1, FillIntervalMs: 1000}, c.now)
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if b.Allow() {
					got.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got.Load() != 100 {
		t.Fatalf("%d requests allowed from a bucket of 100", got.Load())
	}
}

func TestRegistryKeepsBuckets(t *testing.T) {
	r := NewRegistry()
	spec := ir.TokenBucket{Key: "a", MaxTokens: 1, TokensPerFill: 1, FillIntervalMs: 60000}
	b := r.Get(spec)
	if !b.Allow() {
		t.Fatal("a new bucket is not full")
	}
	if r.Get(spec) != b {
		t.Fatal("the same key and settings gave another bucket")
	}
	spec2 := spec
	spec2.MaxTokens = 2
	if b2 := r.Get(spec2); b2 == b || !b2.Allow() {
		t.Fatal("changed settings kept the old bucket")
	}
	r.Retain(map[string]bool{})
	if r.Len() != 0 {
		t.Fatal("Retain kept a bucket no configuration uses")
	}
}

func BenchmarkAllow(b *testing.B) {
	bk := New(ir.TokenBucket{MaxTokens: 1 << 30, TokensPerFill: 1 << 30, FillIntervalMs: 1})
	b.ReportAllocs()
	for b.Loop() {
		bk.Allow()
	}
}
