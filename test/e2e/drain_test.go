package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrainsWithoutLosingRequests: on SIGTERM readiness fails at
// once, requests in flight finish (with connection: close), new
// connections are refused after the drain delay, and the process exits 0.
func TestSIGTERMDrainsWithoutLosingRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.231.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(800 * time.Millisecond) // a request still in flight when SIGTERM arrives
		fmt.Fprint(w, "slow but complete")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	pod := ln.Addr().(*net.TCPAddr).AddrPort()

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(seedManifests(pod)), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.232.1"), freeAddr(t, "127.0.232.1")
	p := start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status,
		"--drain-delay", "300ms", "--drain-timeout", "5s")
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	const inFlight = 4
	results := make(chan string, inFlight)
	for i := 0; i < inFlight; i++ {
		c := dialWaypoint(t, inbound)
		go func() {
			resp, body := c.send("GET", "/slow")
			results <- fmt.Sprintf("%d %s close=%v", resp.StatusCode, body, resp.Close)
		}()
	}
	time.Sleep(200 * time.Millisecond) // the requests are now upstream
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 150*time.Millisecond, "readiness to fail right after SIGTERM", func() bool { return !ready(status) })
	for i := 0; i < inFlight; i++ {
		select {
		case got := <-results:
			if got != "200 slow but complete close=true" {
				t.Errorf("in-flight request: %s", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an in-flight request never completed")
		}
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after draining")
	}
	if c, err := net.DialTimeout("tcp", inbound, time.Second); err == nil {
		_ = c.Close()
		t.Error("the listener still accepts after the drain")
	}
}
