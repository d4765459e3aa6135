package hbone_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// echoPeer is an HBONE server on x/net/http2: CONNECT streams are echoed.
func echoPeer(t *testing.T, cert *identity.Bundle, maxStreams uint32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*cert.Certificate},
		ClientAuth: tls.RequireAnyClientCert}
	h2s := &http2.Server{MaxConcurrentStreams: maxStreams}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.Host == "10.0.0.1:503" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				if tc.Handshake() != nil {
					_ = c.Close()
					return
				}
				h2s.ServeConn(tc, &http2.ServeConnOpts{Handler: h})
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

type certs struct {
	ca        *identity.CA
	pod, mine *identity.Bundle
}

func newCerts(t *testing.T) certs {
	t.Helper()
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pod, _ := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "pod"}, time.Hour)
	mine, _ := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "waypoint"}, time.Hour)
	return certs{ca, pod, mine}
}

func td() (string, []string) { return "cluster.local", nil }

func TestPoolManyStreamsOnOneConnection(t *testing.T) {
	c := newCerts(t)
	addr := echoPeer(t, c.pod, 250)
	p := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(c.mine), TrustDomains: td})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 150)
	var open []net.Conn
	var mu sync.Mutex
	for range 150 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := p.Dial(ctx, hbone.Target{Address: addr, Authority: "10.0.0.1:80", Identity: "spiffe://cluster.local/ns/ns/sa/pod"})
			if err != nil {
				errs <- err
				return
			}
			if _, err := conn.Write([]byte("ping")); err != nil {
				errs <- err
				return
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
				errs <- errors.New("echo: " + string(b))
				return
			}
			mu.Lock()
			open = append(open, conn)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// 150 streams open at once, 100 per connection at most: two connections.
	if n := p.Conns(addr); n != 2 {
		t.Fatalf("%d connections for 150 concurrent streams, want 2", n)
	}
	for _, c := range open {
		_ = c.Close()
	}
	// Closed streams free their room: the next ones reuse the connections.
	for range 10 {
		conn, err := p.Dial(ctx, hbone.Target{Address: addr, Authority: "10.0.0.1:80", Identity: "spiffe://cluster.local/ns/ns/sa/pod"})
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
	}
	if n := p.Conns(addr); n != 2 {
		t.Fatalf("%d connections after reuse, want 2", n)
	}
	// Connections are per destination identity: another expected
	// identity (here: any of the trust domain) gets its own.
	conn, err := p.Dial(ctx, hbone.Target{Address: addr, Authority: "10.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if n := p.Conns(addr); n != 3 {
		t.Fatalf("%d connections, want a third for the other identity", n)
	}
}

func TestPoolVerifiesThePeer(t *testing.T) {
	c := newCerts(t)
	addr := echoPeer(t, c.pod, 0)
	p := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(c.mine), TrustDomains: td})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Dial(ctx, hbone.Target{Address: addr, Authority: "10.0.0.1:80", Identity: "spiffe://cluster.local/ns/ns/sa/other"})
	if !errors.Is(err, identity.ErrWrongIdentity) {
		t.Fatalf("wrong identity: %v", err)
	}
	// A peer of another mesh's CA.
	other, _ := identity.NewCA("cluster.local", time.Hour)
	stranger, _ := other.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "pod"}, time.Hour)
	addr2 := echoPeer(t, stranger, 0)
	if _, err := p.Dial(ctx, hbone.Target{Address: addr2, Authority: "10.0.0.1:80"}); !errors.Is(err, identity.ErrUntrusted) {
		t.Fatalf("untrusted peer: %v", err)
	}
	// A non-200 answer is an error naming the status.
	if _, err := p.Dial(ctx, hbone.Target{Address: addr, Authority: "10.0.0.1:503"}); !errors.Is(err, hbone.ErrRefused) {
		t.Fatalf("503: %v", err)
	}
}

// TestConnReadDeadlineKeepsTheStream: a read deadline wakes a blocked Read
// with a timeout, and the stream still works afterwards, as a socket does.
func TestConnReadDeadlineKeepsTheStream(t *testing.T) {
	c := newCerts(t)
	addr := echoPeer(t, c.pod, 0)
	p := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(c.mine), TrustDomains: td})
	defer p.Close()
	conn, err := p.Dial(context.Background(), hbone.Target{Address: addr, Authority: "10.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	b := make([]byte, 8)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := conn.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	var ne net.Error
	if _, err := conn.Read(b); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a passed deadline stays passed: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, b[:5]); err != nil || string(b[:5]) != "again" {
		t.Fatalf("after the deadline: %q %v", b[:5], err)
	}
	// Close wakes a blocked Read.
	done := make(chan error, 1)
	go func() { _, err := conn.Read(b); done <- err }()
	_ = conn.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
