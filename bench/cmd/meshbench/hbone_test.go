package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/load"
	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/targets"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// TestHBONETargetsDoTheJob runs the native-HBONE rows as meshbench does,
// over real sockets: the waypoint (the real binary, built here) with mTLS
// HBONE in and out to the ztunnel stand-in, and HAProxy with TLS in and
// out to the stand-in's TLS port; the generator's load gets the job done
// (the route's response header, the backend's body) with no error, through
// the stand-in, and strangers are refused.
func TestHBONETargetsDoTheJob(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() { _ = targets.ServeBackend(ln) }()
	env := &targets.Env{Dir: t.TempDir(), Backend: ln.Addr().(*net.TCPAddr).AddrPort()}
	if env.Certs, err = targets.NewMeshCerts(filepath.Join(env.Dir, "certs")); err != nil {
		t.Fatal(err)
	}
	pod, err := targets.LoadBundle(env.Certs.StandInDir)
	if err != nil {
		t.Fatal(err)
	}
	if pod.ID != targets.BackendID {
		t.Fatalf("the stand-in is %s, want the backend pod's %s", pod.ID, targets.BackendID)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hl.Close(); _ = tl.Close() }()
	z := &targets.ZtunnelStandIn{}
	go func() { _ = z.Serve(hl, tl, pod, env.Backend) }()
	env.StandInHBONE, env.StandInTLS = hl.Addr().(*net.TCPAddr).AddrPort(), tl.Addr().(*net.TCPAddr).AddrPort()

	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env.WaypointBin = filepath.Join(env.Dir, "kgateway-waypoint")
	if err := buildWaypoint(context.Background(), root, env.WaypointBin); err != nil {
		t.Fatal(err)
	}
	b := &bench{cfg: config{warmup: 200 * time.Millisecond}}
	run := func(t *testing.T, tg *targets.Target) {
		t.Helper()
		o := b.loadOptions(tg, 4)
		if o.Dial == nil || o.Header != nil || o.Expect != targets.AddedHeader {
			t.Fatalf("load options: dial %v, PROXY header %v, expect %q", o.Dial != nil, o.Header != nil, o.Expect)
		}
		o.Rate, o.Duration = 400, time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := load.Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if res.TotalErrors != 0 || res.Requests < 300 {
			t.Fatalf("%s: %d requests, %d errors (first: %s)", tg.Name, res.Requests, res.TotalErrors, res.FirstError)
		}
		t.Logf("%s: %d requests, p99 %.3f ms", tg.Name, res.Requests, res.Latency.P99)
	}

	t.Run("waypoint-hbone", func(t *testing.T) {
		tg, err := targets.StartWaypointHBONE(env, targets.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Stop()
		before := z.HBONE.Tunnels.Load()
		run(t, tg)
		if z.HBONE.Tunnels.Load() == before {
			t.Fatal("the waypoint did not reach the backend over HBONE through the stand-in")
		}
		if z.TLSConns.Load() != 0 {
			t.Fatal("TLS connections to the stand-in from the waypoint row")
		}
		// A client of the mesh the ALLOW policy does not name: 403.
		stranger, err := env.Certs.CA.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "elsewhere", ServiceAccount: "stranger"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if code := hboneGet(t, tg.Addr, stranger); code != http.StatusForbidden {
			t.Fatalf("a stranger of the mesh got %d, want 403", code)
		}
		// A certificate of another CA: no tunnel at all.
		other, _ := identity.NewCA("cluster.local", time.Hour)
		foreign, _ := other.IssueBundle(targets.ClientID, time.Hour)
		foreign.Roots = env.Certs.Client.Roots // it trusts the waypoint; the waypoint must not trust it
		pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(foreign), TrustDomains: func() (string, []string) { return "cluster.local", nil }})
		defer pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pool.Dial(ctx, hbone.Target{Address: tg.Addr, Authority: netip.AddrPortFrom(targets.ServiceVIP, targets.ServicePort).String()}); err == nil {
			_ = c.Close()
			t.Fatal("a client certificate of another CA got a tunnel")
		}
	})

	t.Run("haproxy-tls", func(t *testing.T) {
		if _, err := exec.LookPath("haproxy"); err != nil {
			t.Skip("haproxy is not installed here (go run ./bench/cmd/meshbench installs it)")
		}
		tg, err := targets.StartHAProxyTLS(env, targets.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Stop()
		before := z.TLSConns.Load()
		run(t, tg)
		if z.TLSConns.Load() == before {
			t.Fatal("HAProxy did not reach the backend over TLS through the stand-in")
		}
		// HAProxy requires a client certificate of the mesh root.
		other, _ := identity.NewCA("cluster.local", time.Hour)
		foreign, _ := other.IssueBundle(targets.ClientID, time.Hour)
		c, err := tls.Dial("tcp", tg.Addr, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*foreign.Certificate},
			InsecureSkipVerify: true}) //nolint:gosec // only the refusal is checked
		if err == nil {
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, rerr := http.ReadResponse(bufio.NewReader(c), nil); rerr == nil {
				t.Fatalf("a client certificate of another CA got %d", resp.StatusCode)
			}
		}
		c2, err := tls.Dial("tcp", tg.Addr, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) //nolint:gosec // only the refusal is checked
		if err == nil {
			defer func() { _ = c2.Close() }()
			_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, rerr := http.ReadResponse(bufio.NewReader(c2), nil); rerr == nil {
				t.Fatalf("a client without a certificate got %d", resp.StatusCode)
			}
		}
	})
}

// hboneGet sends one GET through an HBONE tunnel to the waypoint as id.
func hboneGet(t *testing.T, addr string, id *identity.Bundle) int {
	t.Helper()
	pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(id), TrustDomains: func() (string, []string) { return "cluster.local", nil }})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pool.Dial(ctx, hbone.Target{Address: addr, Authority: netip.AddrPortFrom(targets.ServiceVIP, targets.ServicePort).String(),
		Identity: targets.WaypointID.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	host := targets.ServiceName + "." + targets.Namespace + ".svc.cluster.local:8080"
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
