package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ztunnelstandin"
)

// Native HBONE (demo --hbone): the demo also stands in for the mesh CA
// (a local one it creates, issuing each workload its SPIFFE certificate),
// for the curl pod's ztunnel as an HBONE client, and for the httpbin pod's
// ztunnel as an HBONE server in front of httpbin.

var (
	waypointID = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin-waypoint"}
	curlID     = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "curl"}
	httpbinID  = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin"}
)

// meshCA holds the demo's CA and what it issued.
type meshCA struct {
	ca      *identity.CA
	certDir string // the waypoint's cert-chain.pem, key.pem, root-cert.pem
	curl    *hbone.Pool
	ztunnel net.Listener // the httpbin pod's ztunnel
	standIn *ztunnelstandin.Server
	// strangers counts the httpbin pod's ztunnel's clients other than the
	// waypoint.
	strangers atomic.Int64
}

// setupMesh creates the CA, the waypoint's certificate files and the
// httpbin pod's ztunnel.
func (d *demo) setupMesh() error {
	ca, err := identity.NewCA("cluster.local", 24*time.Hour)
	if err != nil {
		return err
	}
	m := &meshCA{ca: ca}
	d.mesh = m
	if m.certDir, err = os.MkdirTemp("", "kgateway-waypoint-demo-certs-"); err != nil {
		return err
	}
	chain, key, err := ca.Issue(waypointID, 24*time.Hour)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{identity.CertChainFile: chain, identity.KeyFile: key, identity.RootCertFile: ca.RootPEM()} {
		if err := os.WriteFile(filepath.Join(m.certDir, name), b, 0o600); err != nil {
			return err
		}
	}
	d.say("# stand-in mesh CA: issued %s (files in %s)", waypointID, m.certDir)
	curl, err := ca.IssueBundle(curlID, 24*time.Hour)
	if err != nil {
		return err
	}
	m.curl = hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(curl),
		TrustDomains: func() (string, []string) { return "cluster.local", nil }})
	pod, err := ca.IssueBundle(httpbinID, 24*time.Hour)
	if err != nil {
		return err
	}
	if m.ztunnel, err = listenLoopback(httpbinPod, hbone.Port); err != nil {
		return fmt.Errorf("starting the httpbin pod's ztunnel: %w", err)
	}
	m.serveZtunnel(pod)
	d.say("# stand-in ztunnel of the httpbin pod: HBONE on %s as %s", m.ztunnel.Addr(), httpbinID)
	return nil
}

func (m *meshCA) close() {
	if m.curl != nil {
		m.curl.Close()
	}
	if m.ztunnel != nil {
		_ = m.ztunnel.Close()
	}
	if m.certDir != "" {
		_ = os.RemoveAll(m.certDir)
	}
}

// serveZtunnel serves the httpbin pod's ztunnel: HBONE with the pod's
// certificate, clients of the mesh only, each CONNECT to the pod itself.
func (m *meshCA) serveZtunnel(pod *identity.Bundle) {
	m.standIn = &ztunnelstandin.Server{
		Bundle: pod,
		Peer: func(id identity.ID) error {
			if id != waypointID {
				m.strangers.Add(1)
			}
			return nil
		},
		Allow: func(ap netip.AddrPort) bool { return ap.Addr() == httpbinPod },
	}
	go func() { _ = m.standIn.Serve(m.ztunnel) }()
}

// hboneGateway is waypoint-gw.yaml with Istio's waypoint listener, which
// selects native HBONE.
func hboneGateway(gw []byte) ([]byte, error) {
	s := string(gw)
	old := "    protocol: istio.io/PROXY\n    port: 15088\n"
	if !strings.Contains(s, old) {
		return nil, fmt.Errorf("waypoint-gw.yaml has no istio.io/PROXY listener to replace")
	}
	s = strings.Replace(s, old, "    protocol: HBONE\n    port: 15008\n", 1)
	return []byte("# demo --hbone: Istio's waypoint listener, native HBONE.\n" + s), nil
}

// podManifest is the httpbin pod as the API server would hold it: the
// EndpointSlice points at it, and its ServiceAccount is the identity the
// waypoint expects of the pod's ztunnel.
func podManifest(pod netip.AddrPort) string {
	return fmt.Sprintf(`# Written by the demo in place of the Kubernetes API server.
apiVersion: v1
kind: Pod
metadata:
  name: httpbin-demo
  namespace: httpbin
  labels: {app: httpbin}
spec:
  serviceAccountName: httpbin
  containers: [{name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0}]
status:
  podIP: %s
`, pod.Addr())
}

// dialHBONE opens a connection as the curl pod's ztunnel does in native
// mode: a CONNECT to the service VIP:port over mTLS HBONE with the curl
// certificate, to the waypoint whose identity it checks.
func (d *demo) dialHBONE(ctx context.Context, src netip.AddrPort) (net.Conn, error) {
	hdr := http.Header{}
	hdr.Set("Forwarded", fmt.Sprintf(`for="%s"`, src))
	return d.mesh.curl.Dial(ctx, hbone.Target{
		Address:   d.runner.InboundAddr().String(),
		Authority: netip.AddrPortFrom(serviceVIP, servicePort).String(),
		Identity:  waypointID.String(),
		Header:    hdr,
	})
}

// checkMesh says what the httpbin pod's ztunnel saw: the waypoint reached
// httpbin over HBONE with its own certificate.
func (d *demo) checkMesh() {
	n, strangers := d.mesh.standIn.Tunnels.Load(), d.mesh.strangers.Load()
	d.say("\n# the httpbin pod's ztunnel carried %d HBONE tunnels from %s (%d from other clients)", n, waypointID, strangers)
	d.expect(n > 0, "--hbone: the waypoint never reached httpbin over HBONE")
	d.expect(strangers == 0, "--hbone: %d tunnels to httpbin came from a client other than the waypoint", strangers)
}
