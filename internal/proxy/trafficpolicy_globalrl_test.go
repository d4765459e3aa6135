package proxy_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// rlsStandIn is a small in-process stand-in for a rate limit service (the
// real envoyproxy/ratelimit runs in test/e2e): a real gRPC
// envoy.service.ratelimit.v3.RateLimitService server on loopback that
// records what it is asked and allows `limit` calls per descriptor value
// set, then answers OVER_LIMIT.
type rlsStandIn struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu     sync.Mutex
	limit  uint32
	delay  time.Duration
	seen   []*rlsv3.RateLimitRequest
	counts map[string]uint32
	conns  atomic.Int32 // connections accepted
	auth   []string     // the :authority of each call
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (s *rlsStandIn) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, req)
	md, _ := metadata.FromIncomingContext(ctx)
	s.auth = append(s.auth, strings.Join(md.Get(":authority"), ","))
	key := ""
	for _, e := range req.GetDescriptors()[0].GetEntries() {
		key += e.GetKey() + "=" + e.GetValue() + ";"
	}
	s.counts[key]++
	n := s.counts[key]
	remaining := uint32(0)
	code := rlsv3.RateLimitResponse_OK
	if n > s.limit {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	} else {
		remaining = s.limit - n
	}
	var body []byte
	hdrs := []*corev3.HeaderValue{{Key: "x-rls-said", Value: code.String()}}
	if code == rlsv3.RateLimitResponse_OVER_LIMIT && strings.Contains(key, "x-user-id=carol") {
		body = []byte(`{"error":"slow down"}`)
		hdrs = append(hdrs, &corev3.HeaderValue{Key: "content-type", Value: "application/json"})
	}
	return &rlsv3.RateLimitResponse{
		OverallCode: code,
		RawBody:     body,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
			Code:               code,
			CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: "per-user", RequestsPerUnit: s.limit, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
			LimitRemaining:     remaining,
			DurationUntilReset: durationpb.New(42 * time.Second),
		}},
		ResponseHeadersToAdd: hdrs,
		RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-rls-upstream", Value: "seen"}},
	}, nil
}

func (s *rlsStandIn) requests() []*rlsv3.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rlsv3.RateLimitRequest(nil), s.seen...)
}

func startRLSStandIn(t *testing.T, limit uint32, delay time.Duration) (*rlsStandIn, netip.AddrPort) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.3.2:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &rlsStandIn{limit: limit, delay: delay, counts: map[string]uint32{}}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, rl)
	go func() { _ = s.Serve(countingListener{l, &rl.conns}) }()
	t.Cleanup(s.Stop)
	return rl, l.Addr().(*net.TCPAddr).AddrPort()
}

func globalRLManifests(backend, rls netip.AddrPort, extSpec string) string {
	return svcManifests(backend) + serviceManifest("ratelimit", "127.0.100.8", 8081, "grpc", "grpc", rls) + `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata: {name: global-ratelimit, namespace: ns}
spec:
  type: RateLimit
  rateLimit:
    grpcService:
      backendRef: {name: ratelimit, port: 8081}
` + extSpec + `
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: global, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]
  rateLimit:
    global:
      descriptors:
      - entries:
        - {type: Generic, generic: {key: service, value: svc}}
        - {type: Header, header: x-user-id}
      - entries:
        - {type: RemoteAddress}
        - {type: Path}
      extensionRef: {name: global-ratelimit}
`
}

// The descriptor the service gets, the limit it enforces (429 with an
// empty body and x-envoy-ratelimited), its headers on both answers, the
// x-ratelimit-* headers, and no call when the header entry has no value.
func TestTrafficPolicyGlobalRateLimit(t *testing.T) {
	rl, rlsAddr := startRLSStandIn(t, 2, 0)
	a := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, globalRLManifests(a.addr, rlsAddr, "    domain: api-gateway\n    xRateLimitHeaders: DraftVersion03\n"))

	for i := range 2 {
		resp, body := w.do(vip, curlID, get("/get?x=1", "X-User-Id", "alice"))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d within the limit: %d %q", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Rls-Said"); got != "OK" {
			t.Errorf("the service's response header on an allowed request: %q", got)
		}
		if got, want := resp.Header.Get("X-Ratelimit-Remaining"), []string{"1", "0"}[i]; got != want {
			t.Errorf("x-ratelimit-remaining %q, want %q", got, want)
		}
		if got := resp.Header.Get("X-Ratelimit-Limit"); got != `2, 2;w=60;name="per-user"` {
			t.Errorf("x-ratelimit-limit %q", got)
		}
		if got := resp.Header.Get("X-Ratelimit-Reset"); got != "42" {
			t.Errorf("x-ratelimit-reset %q", got)
		}
		if resp.Header.Get("X-Envoy-Ratelimited") != "" {
			t.Error("x-envoy-ratelimited on an allowed request")
		}
		if got := decodeEcho(t, body).Headers["X-Rls-Upstream"]; len(got) != 1 || got[0] != "seen" {
			t.Errorf("the service's request header upstream: %q", got)
		}
	}
	resp, body := w.do(vip, curlID, get("/get?x=1", "X-User-Id", "alice"))
	if resp.StatusCode != 429 || body != "" || resp.Header.Get("X-Envoy-Ratelimited") != "true" ||
		resp.Header.Get("X-Rls-Said") != "OVER_LIMIT" || resp.Header.Get("X-Ratelimit-Remaining") != "0" {
		t.Fatalf("over the limit: %d %q %v, want 429, no body, x-envoy-ratelimited", resp.StatusCode, body, resp.Header)
	}
	// Another user has a descriptor of its own.
	if resp, body := w.do(vip, curlID, get("/get?x=1", "X-User-Id", "bob")); resp.StatusCode != 200 {
		t.Fatalf("another user: %d %q", resp.StatusCode, body)
	}
	if a.Hits() != 3 {
		t.Fatalf("backend saw %d requests, want 3", a.Hits())
	}
	reqs := rl.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d calls, want 4", len(reqs))
	}
	d := reqs[0]
	var got []string
	for _, e := range d.GetDescriptors()[0].GetEntries() {
		got = append(got, e.GetKey()+"="+e.GetValue())
	}
	want := []string{"service=svc", "x-user-id=alice", "remote_address=" + clientAddr.Addr().String(), "path=/get?x=1"}
	if d.GetDomain() != "api-gateway" || len(d.GetDescriptors()) != 1 || len(got) != len(want) {
		t.Fatalf("request %v, want domain api-gateway and one descriptor %v", d, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("descriptor entries %v, want %v", got, want)
		}
	}
	// The service's body and content type on its 429.
	for range 2 {
		w.do(vip, curlID, get("/get", "X-User-Id", "carol"))
	}
	resp, body = w.do(vip, curlID, get("/get", "X-User-Id", "carol"))
	if resp.StatusCode != 429 || body != `{"error":"slow down"}` || len(resp.Header.Values("Content-Type")) != 1 ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("over the limit with the service's body: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// A header value that is not UTF-8 is still counted (a call that could
	// not be sent would fail open past the limit).
	for i := range 3 {
		resp, _ := w.do(vip, curlID, get("/get", "X-User-Id", "\xffmallory"))
		if want := []int{200, 200, 429}[i]; resp.StatusCode != want {
			t.Fatalf("non-UTF-8 user, request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	// No x-user-id: the descriptor cannot be built, the service is not asked.
	calls := len(rl.requests())
	if resp, body := w.do(vip, curlID, get("/get")); resp.StatusCode != 200 {
		t.Fatalf("without the header entry's header: %d %q", resp.StatusCode, body)
	}
	if n := len(rl.requests()); n != calls {
		t.Fatalf("%d calls after a request without x-user-id, want still %d", n, calls)
	}
}

// A service that is gone or too slow: failOpen (kgateway's default) lets
// the request through; failOpen false answers 500 without a body.
func TestTrafficPolicyGlobalRateLimitFailure(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	l, err := net.Listen("tcp", "127.0.3.3:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().(*net.TCPAddr).AddrPort()
	_ = l.Close() // nothing listens there any more

	w := startWaypoint(t, globalRLManifests(a.addr, dead, "    domain: d\n"))
	if resp, body := w.do(vip, curlID, get("/get", "X-User-Id", "u")); resp.StatusCode != 200 {
		t.Fatalf("dead service, failOpen by default: %d %q, want 200", resp.StatusCode, body)
	}
	w.apply(globalRLManifests(a.addr, dead, "    domain: d\n    failOpen: false\n"))
	if resp, body := w.do(vip, curlID, get("/get", "X-User-Id", "u")); resp.StatusCode != 500 || body != "" {
		t.Fatalf("dead service, failOpen false: %d %q, want 500 without a body", resp.StatusCode, body)
	}

	// A service slower than the timeout is a failure too.
	slow, slowAddr := startRLSStandIn(t, 100, 2*time.Second)
	w.apply(globalRLManifests(a.addr, slowAddr, "    domain: d\n    failOpen: false\n    timeout: 100ms\n"))
	start := time.Now()
	resp, _ := w.do(vip, curlID, get("/get", "X-User-Id", "u"))
	if resp.StatusCode != 500 || time.Since(start) > time.Second {
		t.Fatalf("slow service, failOpen false: %d after %v, want 500 within the 100ms timeout", resp.StatusCode, time.Since(start))
	}
	w.apply(globalRLManifests(a.addr, slowAddr, "    domain: d\n    timeout: 100ms\n"))
	start = time.Now()
	if resp, _ := w.do(vip, curlID, get("/get", "X-User-Id", "u")); resp.StatusCode != 200 || time.Since(start) > time.Second {
		t.Fatalf("slow service, failOpen: %d after %v, want 200 within the timeout", resp.StatusCode, time.Since(start))
	}
	_ = slow
}

// The client of a rate limit service is kept across configurations that
// leave its GatewayExtension alone (one connection), and replaced when the
// extension changes.
func TestTrafficPolicyGlobalRateLimitClientKept(t *testing.T) {
	rl, rlsAddr := startRLSStandIn(t, 100, 0)
	a := startBackend(t, "a", "127.0.1.1", false)
	ext := "    domain: d1\n"
	w := startWaypoint(t, globalRLManifests(a.addr, rlsAddr, ext))
	call := func() {
		t.Helper()
		if resp, body := w.do(vip, curlID, get("/get", "X-User-Id", "u")); resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	call()
	// An unrelated change: another service.
	w.apply(globalRLManifests(a.addr, rlsAddr, ext) + serviceManifest("other", "127.0.100.7", 80, "http", "", a.addr))
	call()
	if n := rl.conns.Load(); n != 1 {
		t.Fatalf("%d connections to the service after an unrelated update, want 1 (the client kept)", n)
	}
	w.apply(strings.Replace(globalRLManifests(a.addr, rlsAddr, "    domain: d2\n"),
		"backendRef: {name: ratelimit, port: 8081}", "backendRef: {name: ratelimit, port: 8081}\n      authority: rl.example", 1))
	call()
	if n := rl.conns.Load(); n != 2 {
		t.Fatalf("%d connections after the extension changed, want 2 (a new client)", n)
	}
	reqs := rl.requests()
	if len(reqs) != 3 || reqs[1].GetDomain() != "d1" || reqs[2].GetDomain() != "d2" {
		t.Fatalf("domains of the calls: %v", reqs)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.auth[0] != "outbound_.8081_._.ratelimit.ns.svc.cluster.local" || rl.auth[2] != "rl.example" {
		t.Fatalf(":authority of the calls %q, want the cluster name, then grpcService.authority", rl.auth)
	}
}
