package xds_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
	xdsserver "github.com/kgateway-dev/kgateway-waypoint/internal/xds/server"
)

type fakeAuth map[string]xds.Identity

func (f fakeAuth) Authenticate(_ context.Context, token string) (xds.Identity, error) {
	if id, ok := f[token]; ok {
		return id, nil
	}
	return xds.Identity{}, errors.New("unknown token")
}

var (
	wp    = ir.NamespacedName{Namespace: "ns", Name: "wp"}
	other = ir.NamespacedName{Namespace: "ns", Name: "other"}
	auth  = fakeAuth{"wp-token": {Namespace: "ns", ServiceAccount: "wp"}, "other-token": {Namespace: "ns", ServiceAccount: "other"}}
)

func config(gw ir.NamespacedName, port uint16) *ir.Waypoint {
	return &ir.Waypoint{Gateway: gw, TrustDomain: "cluster.local", InboundPort: port}
}

func startServer(t *testing.T, addr string) (*xdsserver.Server, string) {
	t.Helper()
	s := xdsserver.New(xdsserver.Options{Auth: auth})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return s, l.Addr().String()
}

type recorder struct {
	mu   sync.Mutex
	got  []*ir.Waypoint
	fail error
	ch   chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 100)} }

func (r *recorder) apply(w *ir.Waypoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { r.ch <- struct{}{} }()
	if r.fail != nil {
		return r.fail
	}
	r.got = append(r.got, w)
	return nil
}

func (r *recorder) last() *ir.Waypoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return nil
	}
	return r.got[len(r.got)-1]
}

func runClient(t *testing.T, addr, token string, gw ir.NamespacedName, r *recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &xds.Client{Address: addr, Gateway: gw, NodeID: "test", Apply: r.apply,
		Token: func() (string, error) { return token, nil }, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushAndUpdate(t *testing.T) {
	s, addr := startServer(t, "127.0.0.1:0")
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15088), other: config(other, 15088)}); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	runClient(t, addr, "wp-token", wp, r)
	waitFor(t, 5*time.Second, "the first configuration", func() bool { return r.last() != nil })
	if r.last().Gateway != wp {
		t.Fatalf("got %v", r.last().Gateway)
	}

	// A change reaches the proxy within a second; a change to another
	// waypoint does not reach it at all.
	n := len(r.got)
	start := time.Now()
	changed, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15099), other: config(other, 15088)})
	if err != nil || len(changed) != 1 || changed[0] != "ns/wp" {
		t.Fatalf("changed %v, %v", changed, err)
	}
	waitFor(t, time.Second, "the update", func() bool { l := r.last(); return l != nil && l.InboundPort == 15099 })
	t.Logf("update applied after %v", time.Since(start))
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15099), other: config(other, 15077)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	r.mu.Lock()
	if len(r.got) != n+1 {
		t.Errorf("applied %d configurations, want %d (a change to another waypoint was pushed)", len(r.got), n+1)
	}
	r.mu.Unlock()
	// An unchanged set pushes nothing.
	if changed, _ := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15099), other: config(other, 15077)}); len(changed) != 0 {
		t.Errorf("unchanged set reported changes %v", changed)
	}
	waitFor(t, time.Second, "the ACKs", func() bool { return s.Stats().ACKs >= 2 })
}

func TestForeignAndUnauthenticated(t *testing.T) {
	s, addr := startServer(t, "127.0.0.1:0")
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15088)}); err != nil {
		t.Fatal(err)
	}
	foreign, anon := newRecorder(), newRecorder()
	runClient(t, addr, "other-token", wp, foreign) // another waypoint's ServiceAccount
	runClient(t, addr, "forged", wp, anon)         // no valid token
	waitFor(t, 5*time.Second, "both to be rejected", func() bool { return s.Stats().Rejected >= 2 })
	time.Sleep(300 * time.Millisecond)
	if foreign.last() != nil || anon.last() != nil {
		t.Fatal("a foreign or unauthenticated proxy got a configuration")
	}
}

func TestNACKKeepsConfig(t *testing.T) {
	s, addr := startServer(t, "127.0.0.1:0")
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15088)}); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	runClient(t, addr, "wp-token", wp, r)
	waitFor(t, 5*time.Second, "the first configuration", func() bool { return r.last() != nil })
	r.mu.Lock()
	r.fail = errors.New("cannot compile")
	r.mu.Unlock()
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15099)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the NACK", func() bool { return s.Stats().NACKs == 1 })
	if r.last().InboundPort != 15088 {
		t.Error("the rejected configuration replaced the one in force")
	}
}

func TestReconnect(t *testing.T) {
	s, addr := startServer(t, "127.0.0.1:0")
	if _, err := s.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15088)}); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	runClient(t, addr, "wp-token", wp, r)
	waitFor(t, 5*time.Second, "the first configuration", func() bool { return r.last() != nil })
	s.Stop() // the controller goes away; the proxy keeps its configuration
	time.Sleep(300 * time.Millisecond)
	if r.last() == nil || r.last().InboundPort != 15088 {
		t.Fatal("configuration lost")
	}
	s2, _ := startServer(t, addr) // and comes back on the same address
	if _, err := s2.Set(map[ir.NamespacedName]*ir.Waypoint{wp: config(wp, 15100)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the configuration from the new server", func() bool { return r.last().InboundPort == 15100 })
}
