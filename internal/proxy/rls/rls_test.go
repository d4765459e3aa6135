package rls

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func TestCompileAndBuild(t *testing.T) {
	if _, err := Compile(&ir.GlobalRateLimit{Provider: "p"}); err == nil {
		t.Error("no entries compiled")
	}
	if _, err := Compile(&ir.GlobalRateLimit{Entries: []ir.RateLimitEntry{{Kind: "cookie"}}}); err == nil {
		t.Error("an unknown kind compiled")
	}
	if d, err := Compile(nil); d != nil || err != nil {
		t.Error("nil did not stay nil")
	}
	d, err := Compile(&ir.GlobalRateLimit{Entries: []ir.RateLimitEntry{
		{Kind: ir.RateLimitGeneric, Key: "k", Value: "v"},
		{Kind: ir.RateLimitHeader, Key: "x-user", Header: "x-user"},
		{Kind: ir.RateLimitRemoteAddress, Key: "remote_address"},
		{Kind: ir.RateLimitPath, Key: "path"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-User": {"a", "b"}}
	got := d.Build(Request{Headers: h, PathWithQuery: "/p?q=1", Remote: netip.MustParseAddr("::ffff:10.0.0.1")})
	want := []string{"k=v", "x-user=a", "remote_address=10.0.0.1", "path=/p?q=1"}
	if got == nil || len(got.GetEntries()) != len(want) {
		t.Fatalf("built %v, want %v", got, want)
	}
	for i, e := range got.GetEntries() {
		if e.GetKey()+"="+e.GetValue() != want[i] {
			t.Fatalf("entry %d: %s=%s, want %s", i, e.GetKey(), e.GetValue(), want[i])
		}
	}
	// A value that is not UTF-8 is made sendable, not a failed call.
	bad := d.Build(Request{Headers: http.Header{"X-User": {"a\xffb"}}, PathWithQuery: "/\xfe", Remote: netip.MustParseAddr("10.0.0.1")})
	if v := bad.GetEntries()[1].GetValue(); v != "a!b" || bad.GetEntries()[3].GetValue() != "/!" {
		t.Errorf("sanitized values %q %q", v, bad.GetEntries()[3].GetValue())
	}
	if _, err := proto.Marshal(bad); err != nil {
		t.Errorf("the sanitized descriptor does not marshal: %v", err)
	}
	if d.Build(Request{Headers: http.Header{}, Remote: netip.MustParseAddr("10.0.0.1")}) != nil {
		t.Error("a descriptor without its header was built")
	}
	if d.Build(Request{Headers: h}) != nil {
		t.Error("a descriptor without a remote address was built")
	}
}

// decide as Envoy's filter: OVER_LIMIT is the only refusal; the draft 03
// headers come from the status with the fewest remaining, the quota
// policy lists every status with a known unit.
func TestDecide(t *testing.T) {
	statuses := []*rlsv3.RateLimitResponse_DescriptorStatus{
		{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_HOUR},
			LimitRemaining: 50, DurationUntilReset: durationpb.New(time.Hour)},
		{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "s", RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND},
			LimitRemaining: 3, DurationUntilReset: durationpb.New(time.Second)},
		{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 7, Unit: rlsv3.RateLimitResponse_RateLimit_UNKNOWN}, LimitRemaining: 5},
		{LimitRemaining: 0}, // no current limit: left out
	}
	r := decide(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_UNKNOWN, Statuses: statuses}, true)
	if r.Outcome != OK || r.Headers.Get("X-Envoy-Ratelimited") != "" {
		t.Fatalf("UNKNOWN: %+v, want OK", r)
	}
	if got := r.Headers.Get("X-Ratelimit-Limit"); got != `10, 100;w=3600, 10;w=1;name="s"` {
		t.Errorf("x-ratelimit-limit %q", got)
	}
	if r.Headers.Get("X-Ratelimit-Remaining") != "3" || r.Headers.Get("X-Ratelimit-Reset") != "1" {
		t.Errorf("remaining/reset %v", r.Headers)
	}
	r = decide(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: statuses}, false)
	if r.Outcome != OverLimit || r.Headers.Get("X-Envoy-Ratelimited") != "true" || r.Headers.Get("X-Ratelimit-Limit") != "" {
		t.Fatalf("OVER_LIMIT without draft headers: %+v", r)
	}
}
