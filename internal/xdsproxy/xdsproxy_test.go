package xdsproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xdsproxy"
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

// Readiness waits for the first configuration, which then stays in force
// while the controller is gone.
func TestReadyOnlyAfterFirstConfig(t *testing.T) {
	srv := xds.NewServer(xds.ServerOptions{Auth: auth{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	gw := ir.NamespacedName{Namespace: "ns", Name: "wp"}
	r, err := xdsproxy.Start(xdsproxy.Options{XDSAddress: ln.Addr().String(), Gateway: gw,
		Token:          func() (string, error) { return "t", nil },
		InboundAddress: "127.0.0.1:0", DataPlane: dataplane.Options{StatusAddress: "127.0.0.1:0", MetricsAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ready := "http://" + r.StatusAddr().String() + "/healthz/ready"
	time.Sleep(300 * time.Millisecond) // connected, but nothing to apply yet
	if code, _ := status(t, ready); code != 503 {
		t.Fatalf("ready before any configuration: %d", code)
	}
	if _, err := srv.Set(map[ir.NamespacedName]*ir.Waypoint{gw: {Gateway: gw, TrustDomain: "cluster.local", InboundPort: 15088}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "readiness", func() bool { code, _ := status(t, ready); return code == 200 })

	srv.Stop()
	time.Sleep(300 * time.Millisecond)
	if code, _ := status(t, ready); code != 200 || r.Version() != 1 {
		t.Errorf("after the controller went away: ready %d, version %d", code, r.Version())
	}
	if _, body := status(t, "http://"+r.MetricsAddr().String()+"/stats/prometheus"); !strings.Contains(body, "# TYPE") {
		t.Errorf("metrics: %.500s", body)
	}
}
