package load

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is a minimal keep-alive HTTP/1.1 server on a real loopback socket
// that records, per connection, its client address and requests.
type server struct {
	ln     net.Listener
	status string
	mu     sync.Mutex
	conns  []*serverConn
}

type serverConn struct {
	c        net.Conn
	remote   netip.Addr
	requests int
}

func newServer(t *testing.T, status string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, status: status}
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			_ = c.c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := &serverConn{c: c, remote: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()}
			s.mu.Lock()
			s.conns = append(s.conns, sc)
			s.mu.Unlock()
			go s.serve(sc)
		}
	}()
	return s
}

func (s *server) serve(sc *serverConn) {
	br := bufio.NewReader(sc.c)
	for {
		for { // the request head; the generator sends no body
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		s.mu.Lock()
		sc.requests++
		s.mu.Unlock()
		if _, err := sc.c.Write([]byte("HTTP/1.1 " + s.status + "\r\nContent-Length: 5\r\nTraversed-Waypoint: x\r\n\r\nhello")); err != nil {
			return
		}
	}
}

func (s *server) snapshot() []serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]serverConn, len(s.conns))
	for i, c := range s.conns {
		out[i] = *c
	}
	return out
}

// Dispatch sends exactly the scheduled requests (rate × window, counted by
// intended time, so however slow the machine), spread round robin over
// every connection.
func TestDispatchSpreadsTheRateOverConnections(t *testing.T) {
	s := newServer(t, "200 OK")
	res, err := Run(context.Background(), Options{
		Addr: s.ln.Addr().String(), Conns: 20, Rate: 400, Dispatch: true, ReadBuffer: 4 << 10,
		Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond, Expect: "traversed-waypoint", BodyLen: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.TotalErrors != 0 {
		t.Fatalf("%d errors, first: %s", res.TotalErrors, res.FirstError)
	}
	if res.Requests < 99 || res.Requests > 101 { // 400/s × 0.25 s, ±1 at the window's edges
		t.Fatalf("%d requests in the window, want 100", res.Requests)
	}
	conns := s.snapshot()
	if len(conns) != 20 {
		t.Fatalf("%d connections, want 20", len(conns))
	}
	total := 0
	for i, c := range conns {
		total += c.requests
		// 120 scheduled requests (warm-up and window) over 20 connections.
		if c.requests < 5 || c.requests > 7 {
			t.Errorf("connection %d carried %d requests, want 6", i, c.requests)
		}
	}
	if total < 119 || total > 121 {
		t.Errorf("server saw %d requests, want 120", total)
	}
}

func TestDispatchIsHTTP1OpenLoopOnly(t *testing.T) {
	for _, o := range []Options{{Dispatch: true, Duration: time.Second}, {Dispatch: true, H2C: true, Rate: 10, Duration: time.Second}} {
		if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "Dispatch") {
			t.Errorf("%+v: error %v, want one about Dispatch", o, err)
		}
	}
}

// OpenIdle leaves every connection open after its one request, from the
// loopback sources asked for; Closed sees the ones the server closed, and
// Close resets the rest.
func TestOpenIdle(t *testing.T) {
	s := newServer(t, "200 OK")
	set, err := OpenIdle(context.Background(), IdleOptions{
		Addr: s.ln.Addr().String(), Conns: 50, Source: LoopbackSource, Expect: "traversed-waypoint", BodyLen: 5,
		Header: func(int) ([]byte, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if set.Len() != 50 {
		t.Fatalf("Len %d, want 50", set.Len())
	}
	conns := s.snapshot()
	if len(conns) != 50 {
		t.Fatalf("server saw %d connections, want 50", len(conns))
	}
	for i, c := range conns {
		if c.requests != 1 || c.remote != netip.MustParseAddr("127.0.10.1") {
			t.Fatalf("connection %d: %d requests from %s, want 1 from 127.0.10.1", i, c.requests, c.remote)
		}
	}
	if n := set.Closed(); n != 0 {
		t.Fatalf("Closed = %d before the server closed any", n)
	}
	for _, c := range conns[:10] {
		_ = c.c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for set.Closed() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("Closed = %d, want the 10 the server closed", set.Closed())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenIdleFailsOnABadResponse(t *testing.T) {
	s := newServer(t, "403 Forbidden")
	_, err := OpenIdle(context.Background(), IdleOptions{Addr: s.ln.Addr().String(), Conns: 5})
	if err == nil || !strings.Contains(err.Error(), "status 403") || !strings.Contains(err.Error(), "of 5") {
		t.Fatalf("error %v, want the 403 and which connection", err)
	}
}

func TestLoopbackSource(t *testing.T) {
	for i, want := range map[int]string{
		0: "127.0.10.1", PerSource - 1: "127.0.10.1", PerSource: "127.0.10.2",
		249 * PerSource: "127.0.10.250", 250 * PerSource: "127.0.11.1",
	} {
		if got := LoopbackSource(i); got != netip.MustParseAddr(want) {
			t.Errorf("LoopbackSource(%d) = %s, want %s", i, got, want)
		}
	}
}
