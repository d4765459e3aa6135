package targets

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
	xdsserver "github.com/kgateway-dev/kgateway-waypoint/internal/xds/server"
)

// benchToken is the one token the bench's xDS server takes (benchAuth).
const benchToken = "meshbench"

// benchAuth stands in for the controller's TokenReview (there is no API
// server here): the bench's token is the waypoint Gateway's ServiceAccount.
type benchAuth struct{ gw ir.NamespacedName }

func (a benchAuth) Authenticate(_ context.Context, token string) (xds.Identity, error) {
	if token != benchToken {
		return xds.Identity{}, fmt.Errorf("unknown token")
	}
	return xds.Identity{Namespace: a.gw.Namespace, ServiceAccount: a.gw.Name}, nil
}

// StartWaypointProxy runs the waypoint as a cluster's waypoint pod does:
// the data-plane-only binary (env.ProxyBin, cmd/kgateway-waypoint-proxy)
// fed over xDS. The configuration is the same translation of the same
// manifests as the "waypoint" target's, served by the controller's xDS
// server (internal/xds/server) in this process; only its start-up and a
// keep-alive now and then run here while the proxy is measured.
func StartWaypointProxy(env *Env, o Opts) (*Target, error) {
	dir := filepath.Join(env.Dir, "waypoint-proxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	manifests := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(manifests, []byte(WaypointManifests(env.Backend)), 0o644); err != nil {
		return nil, err
	}
	snap, err := files.Load([]string{manifests}, nil)
	if err != nil {
		return nil, err
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		return nil, err
	}
	gw := res.Waypoint.Gateway
	srv := xdsserver.New(xdsserver.Options{Auth: benchAuth{gw: gw}})
	if _, err := srv.Set(map[ir.NamespacedName]*ir.Waypoint{gw: res.Waypoint}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(benchToken), 0o600); err != nil {
		srv.Stop()
		return nil, err
	}
	in, err := FreePort("127.0.0.1")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	st, err := FreePort("127.0.0.1")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	p, err := start(env.Dir, "waypoint-proxy", o.CPUs, env.ProxyBin, "--xds-address", ln.Addr().String(),
		"--gateway", gw.String(), "--token-file", token, "--inbound-address", in.String(), "--status-address", st.String(),
		"--metrics-address", "127.0.0.1:0", "--admin-address", "off")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	if err := WaitReady(p, st.String()); err != nil {
		p.Stop()
		srv.Stop()
		return nil, err
	}
	return &Target{Name: "waypoint-proxy", Addr: in.String(), H2CAddr: in.String(), PROXY: true, Proc: p, cleanup: srv.Stop}, nil
}
