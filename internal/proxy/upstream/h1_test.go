package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newClient() *H1Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return NewH1Client(d.DialContext, 4, time.Minute)
}

// server runs an HTTP server on loopback counting its connections.
func server(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &conns
}

func do(t *testing.T, c *H1Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, string(body)
}

func TestH1KeepAliveReuse(t *testing.T) {
	addr, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
	})
	c := newClient()
	defer c.CloseIdleConnections()
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("POST", "http://"+addr+"/p?q=1", strings.NewReader("body"))
		if code, body := do(t, c, req); code != 200 || body != "POST /p?q=1 body" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 sequential requests, want 1", n)
	}
}

func TestH1ConnectionCloseIsNotReused(t *testing.T) {
	addr, conns := server(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	c := newClient()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		if code, body := do(t, c, req); code != 200 || body != "bye" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (the server closes each)", n)
	}
}

func TestH1StaleIdleConnectionRetried(t *testing.T) {
	// A raw server that answers one request per connection, then closes
	// without saying so: the pooled connection is stale on the next use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer func() { _ = conn.Close() }()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	c := newClient()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		if code, body := do(t, c, req); code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
		time.Sleep(20 * time.Millisecond) // let the server's close arrive
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestH1EarlyResponseToALargeUpload(t *testing.T) {
	// The upstream refuses without reading a 1 MB body: no deadlock.
	addr, _ := server(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	c := newClient()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(strings.Repeat("x", 1<<20)))
	done := make(chan int, 1)
	go func() {
		code, _ := do(t, c, req)
		done <- code
	}()
	select {
	case code := <-done:
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deadlocked on an early response")
	}
}

func TestH1InformationalSkippedAndCancellation(t *testing.T) {
	addr, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "final")
	})
	c := newClient()
	req, _ := http.NewRequest("GET", "http://"+addr+"/hints", nil)
	if code, body := do(t, c, req); code != 200 || body != "final" {
		t.Fatalf("%d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/hang", nil)
	start := time.Now()
	if _, err := c.RoundTrip(req); err == nil {
		t.Fatal("a hanging upstream must fail at the context deadline")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v, want about 100ms", d)
	}
}
