package dataplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
	xdsserver "github.com/kgateway-dev/kgateway-waypoint/internal/xds/server"
)

type auth struct{}

func (auth) Authenticate(_ context.Context, token string) (xds.Identity, error) {
	if token == "t" {
		return xds.Identity{Namespace: "ns", ServiceAccount: "wp"}, nil
	}
	return xds.Identity{}, errors.New("bad token")
}

func status(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort is a port no socket holds right now on any IPv4 address: the
// runner binds the inbound on 0.0.0.0, which a socket on the same port of
// any other address (a test's backend on 127.0.1.x, an outgoing
// connection's local port) refuses, so probing 127.0.0.1 alone is not
// enough.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func portOf(a net.Addr) uint16 {
	if a == nil {
		return 0
	}
	return uint16(a.(*net.TCPAddr).Port)
}

// setInboundPort makes the server's configuration for gw put the inbound
// on a free port, and waits until the runner has bound it; it returns the
// port. A free port can still be taken by another process before the
// runner binds it, which the runner rightly refuses (NACK,
// TestXDSRunnerKeepsConfigOnBindFailure): then it tries another port, a
// few times.
func setInboundPort(t *testing.T, srv *xdsserver.Server, r *dataplane.Runner, gw ir.NamespacedName) uint16 {
	t.Helper()
	for range 3 {
		p := freePort(t)
		nacks := srv.Stats().NACKs
		if _, err := srv.Set(map[ir.NamespacedName]*ir.Waypoint{gw: {Gateway: gw, TrustDomain: "cluster.local", InboundPort: p}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("the inbound to be bound on port %d", p), func() bool {
			return portOf(r.InboundAddr()) == p || srv.Stats().NACKs > nacks
		})
		if portOf(r.InboundAddr()) == p {
			return p
		}
		if !strings.Contains(r.LastError(), "address already in use") {
			t.Fatalf("the configuration with inbound port %d was refused: %s", p, r.LastError())
		}
		t.Logf("port %d was taken before the runner could bind it; trying another", p)
	}
	t.Fatal("no free port could be bound")
	return 0
}

// The proxy's runner, fed over xDS: ready only after the first
// configuration; the inbound listener is bound on the configuration's
// InboundPort (no --inbound-address) and follows it when it changes; the
// configuration stays in force while the controller is gone.
func TestXDSRunnerFollowsTheConfiguration(t *testing.T) {
	srv := xdsserver.New(xdsserver.Options{Auth: auth{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	gw := ir.NamespacedName{Namespace: "ns", Name: "wp"}
	feed := &xds.Feed{Client: xds.Client{Address: ln.Addr().String(), Gateway: gw,
		Token: func() (string, error) { return "t", nil }, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}}
	r, err := dataplane.Run(dataplane.Options{StatusAddress: "127.0.0.1:0", MetricsAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0"},
		feed, dataplane.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ready := "http://" + r.StatusAddr().String() + "/healthz/ready"
	waitFor(t, "the proxy to subscribe", func() bool { return srv.Stats().Streams == 1 })
	if code, _ := status(t, ready); code != 503 || r.InboundAddr() != nil {
		t.Fatalf("before any configuration: ready %d, inbound %v; want 503 and no listener", code, r.InboundAddr())
	}

	p1 := setInboundPort(t, srv, r, gw)
	waitFor(t, "readiness", func() bool { code, _ := status(t, ready); return code == 200 })
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p1))))
	if err != nil {
		t.Fatalf("dialling the inbound port: %v", err)
	}
	_ = c.Close()

	// The Gateway's PROXY listener moves: so does the inbound.
	p2 := setInboundPort(t, srv, r, gw)
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p2)))); err != nil {
		t.Errorf("dialling the new inbound port: %v", err)
	} else {
		_ = c.Close()
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p1)))); err == nil {
		_ = c.Close()
		t.Errorf("the old inbound port %d still accepts", p1)
	}

	// The controller goes away: the configuration stays in force.
	refused := srv.Stats().NACKs // ports taken before the runner bound them
	srv.Stop()
	waitFor(t, "the proxy to see the controller go", func() bool { return feed.Debug()["connected"] == false })
	if code, _ := status(t, ready); code != 200 || r.Version() != 2 {
		t.Errorf("after the controller went away: ready %d, version %d; want 200 and 2", code, r.Version())
	}
	_, body := status(t, "http://"+r.StatusAddr().String()+"/debug/status")
	var dbg map[string]any
	if err := json.Unmarshal([]byte(body), &dbg); err != nil {
		t.Fatalf("/debug/status: %v: %s", err, body)
	}
	if dbg["feed"] != "xds" || dbg["gateway"] != "ns/wp" || dbg["version"] != float64(2) || dbg["lastError"] != "" ||
		dbg["received"] != float64(2+refused) || dbg["nacked"] != float64(refused) {
		t.Errorf("/debug/status = %s", body)
	}
	if _, body := status(t, "http://"+r.MetricsAddr().String()+"/stats/prometheus"); !strings.Contains(body, "# TYPE") {
		t.Errorf("metrics: %.500s", body)
	}
}

// A configuration the proxy cannot put in force (its inbound port is
// taken) is refused whole (NACKed): the one in force stays, listener and
// all.
func TestXDSRunnerKeepsConfigOnBindFailure(t *testing.T) {
	srv := xdsserver.New(xdsserver.Options{Auth: auth{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	gw := ir.NamespacedName{Namespace: "ns", Name: "wp"}
	feed := &xds.Feed{Client: xds.Client{Address: ln.Addr().String(), Gateway: gw, Token: func() (string, error) { return "t", nil }}}
	r, err := dataplane.Run(dataplane.Options{StatusAddress: "127.0.0.1:0", MetricsAddress: "off", AdminAddress: "off"}, feed, dataplane.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p1 := setInboundPort(t, srv, r, gw)
	if r.Version() != 1 {
		t.Fatalf("version %d after the first configuration", r.Version())
	}
	refused := srv.Stats().NACKs
	// A port taken by someone else: the listener cannot move there.
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	if _, err := srv.Set(map[ir.NamespacedName]*ir.Waypoint{gw: {Gateway: gw, TrustDomain: "cluster.local", InboundPort: portOf(taken.Addr())}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACK", func() bool { return srv.Stats().NACKs == refused+1 })
	if got := portOf(r.InboundAddr()); got != p1 || r.Version() != 1 || r.Applied().InboundPort != p1 ||
		!strings.Contains(r.LastError(), "address already in use") {
		t.Errorf("after a port that cannot be bound: inbound on %d (want %d), version %d (want 1), last error %q",
			got, p1, r.Version(), r.LastError())
	}
}
