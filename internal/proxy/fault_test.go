package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// load runs workers that each keep one connection through the waypoint and
// send requests back to back until stop is closed. Failures are recorded
// with the time they happened.
type load struct {
	ok       atomic.Int64
	mu       sync.Mutex
	failures []time.Time
	reasons  []string
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startLoad(t *testing.T, w *waypoint, workers int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					_ = c.Close()
				}
			}()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if c == nil {
					var err error
					c, err = meshclient.Dial(context.Background(), w.addr, meshclient.Conn{Source: clientAddr, Destination: netip.MustParseAddrPort(vip), Identity: curlID})
					if err != nil {
						l.fail("dial: " + err.Error())
						continue
					}
					br = bufio.NewReader(c)
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, "GET /load HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
					l.fail("write: " + err.Error())
					_ = c.Close()
					c = nil
					continue
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					l.fail("read: " + err.Error())
					_ = c.Close()
					c = nil
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					l.fail(fmt.Sprintf("status %d", resp.StatusCode))
				} else {
					l.ok.Add(1)
				}
				if resp.Close {
					_ = c.Close()
					c = nil
				}
			}
		}()
	}
	return l
}

func (l *load) fail(reason string) {
	l.mu.Lock()
	l.failures = append(l.failures, time.Now())
	l.reasons = append(l.reasons, reason)
	l.mu.Unlock()
}

func (l *load) finish() (ok int64, failures []time.Time, reasons []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failures, l.reasons
}

// settleGoroutines waits for the goroutine count to come back near base.
func settleGoroutines(t *testing.T, base int, slack int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		if n = runtime.NumGoroutine(); n <= base+slack {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Fatalf("goroutines leaked: %d now, %d before (+%d allowed)\n%s", n, base, slack, buf)
}

func TestBackendKilledDuringLoad(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackendOn(t, "b", netip.AddrPortFrom(netip.MustParseAddr("127.0.1.2"), a.addr.Port()).String(), false)
	w := startWaypoint(t, svcManifests(a.addr, b.addr))
	l := startLoad(t, w, 8)
	time.Sleep(400 * time.Millisecond)
	killed := time.Now()
	_ = b.srv.Close() // the pod dies: its listener and open connections go
	time.Sleep(600 * time.Millisecond)
	ok, failures, reasons := l.finish()
	if ok < 100 {
		t.Fatalf("only %d requests succeeded", ok)
	}
	for i, f := range failures {
		if f.Before(killed) || f.After(killed.Add(200*time.Millisecond)) {
			t.Errorf("failure at %v (kill at %v): %s — only requests in flight on the dead pod may fail", f.Sub(killed), 0, reasons[i])
		}
	}
	if len(failures) > 8 {
		t.Errorf("%d failures, more than the 8 requests that can be in flight: %v", len(failures), reasons)
	}
	if !w.proxy.EndpointEjected(b.addr.String()) {
		t.Error("the dead endpoint was not ejected by outlier detection")
	}
	t.Logf("%d ok, %d failed at the kill", ok, len(failures))
}

func TestEndpointRemovedAndReloadsUnderLoad(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.1", false)
	b := startBackendOn(t, "b", netip.AddrPortFrom(netip.MustParseAddr("127.0.1.2"), a.addr.Port()).String(), false)
	w := startWaypoint(t, svcManifests(a.addr, b.addr))
	base := runtime.NumGoroutine()
	l := startLoad(t, w, 8)
	time.Sleep(200 * time.Millisecond)
	// Remove b from the config: zero failures, b stops getting traffic.
	w.apply(svcManifests(a.addr))
	time.Sleep(100 * time.Millisecond)
	hitsB := b.Hits()
	// 50 reloads alternating the endpoint set, under load.
	for i := 0; i < 50; i++ {
		if i%2 == 0 {
			w.apply(svcManifests(a.addr, b.addr))
		} else {
			w.apply(svcManifests(a.addr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok, failures, reasons := l.finish()
	if len(failures) > 0 {
		t.Fatalf("%d failures during removal and 50 reloads (%d ok): %v", len(failures), ok, reasons)
	}
	if ok < 100 {
		t.Fatalf("only %d requests", ok)
	}
	if w.proxy.Version() != 52 {
		t.Errorf("config version %d, want 52 (1 + 1 removal + 50 reloads)", w.proxy.Version())
	}
	if b.Hits() == hitsB {
		t.Error("b never served after being re-added by the reloads")
	}
	w.proxy.Close() // idle upstream connections
	settleGoroutines(t, base, 4)
}

func TestSlowBackendTimesOutWithoutPileUp(t *testing.T) {
	var inHandler atomic.Int64
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler.Add(1)
		defer inHandler.Add(-1)
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done(): // the waypoint cancelled the upstream request
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	w := startWaypoint(t, svcManifests(ln.Addr().(*net.TCPAddr).AddrPort())+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - timeouts: {request: 100ms}
    backendRefs: [{name: svc, port: 80}]
`)
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	var got504 atomic.Int64
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := w.do(vip, curlID, get("/slow"))
			if resp.StatusCode == 504 {
				got504.Add(1)
			}
		}()
	}
	wg.Wait()
	if got504.Load() != 20 {
		t.Fatalf("%d of 20 slow requests got 504", got504.Load())
	}
	deadline := time.Now().Add(3 * time.Second)
	for inHandler.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := inHandler.Load(); n != 0 {
		t.Fatalf("%d upstream requests still running after their timeout: nothing must pile up", n)
	}
	w.proxy.Close()
	settleGoroutines(t, base, 4)
}

func TestClientDisconnectsCancelUpstream(t *testing.T) {
	var cancelled atomic.Int64
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				cancelled.Add(1)
			}
			return
		}
		// /download: stream until the client goes away.
		for i := 0; i < 1000; i++ {
			if _, err := w.Write([]byte(strings.Repeat("x", 1024))); err != nil {
				cancelled.Add(1)
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(5 * time.Millisecond):
			case <-r.Context().Done():
				cancelled.Add(1)
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	w := startWaypoint(t, svcManifests(ln.Addr().(*net.TCPAddr).AddrPort()))
	base := runtime.NumGoroutine()

	// Mid-request: promise a 1 MB upload (streamed upstream), send 100 KB,
	// hang up.
	c := w.dial(vip, curlID)
	_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("u", 100<<10))
	time.Sleep(100 * time.Millisecond)
	_ = c.Close()
	// Mid-response: read a little of a long stream, hang up.
	c2 := w.dial(vip, curlID)
	_, _ = io.WriteString(c2, "GET /download HTTP/1.1\r\nHost: svc\r\n\r\n")
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(c2, buf); err != nil {
		t.Fatal(err)
	}
	_ = c2.Close()

	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cancelled.Load() != 2 {
		t.Fatalf("upstream saw %d of 2 exchanges cancelled when the client left", cancelled.Load())
	}
	w.proxy.Close()
	settleGoroutines(t, base, 4)
}
