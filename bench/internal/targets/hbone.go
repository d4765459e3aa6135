package targets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
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

// The native-HBONE rows (issue 14's cost): the client speaks mTLS HBONE to
// the waypoint's 15008, the waypoint mTLS HBONE to the destination pod's
// ztunnel, here ZtunnelStandIn in front of the backend. The TLS-cost
// reference does the same with HAProxy: TLS 1.3 with client certificates
// in, keep-alive TLS out to the stand-in's TLS port. Every certificate
// comes from internal/identity's CA, for the mesh's identities.
var (
	// WaypointID is the waypoint Gateway's ServiceAccount identity.
	WaypointID = identity.ID{TrustDomain: "cluster.local", Namespace: Namespace, ServiceAccount: "bench-waypoint"}
	// ClientID is the generator's (the client pod's ztunnel presents it).
	ClientID = identity.ID{TrustDomain: "cluster.local", Namespace: Namespace, ServiceAccount: ClientSA}
	// BackendID is the backend pod's, which its ztunnel (the stand-in)
	// presents.
	BackendID = identity.ID{TrustDomain: "cluster.local", Namespace: Namespace, ServiceAccount: ServiceName}
	// HAProxyID is what HAProxy presents on both sides.
	HAProxyID = identity.ID{TrustDomain: "cluster.local", Namespace: Namespace, ServiceAccount: "haproxy"}
)

// MeshCerts are the certificates of one run, in files under Dir.
type MeshCerts struct {
	Dir string
	// Root is the mesh root (root-cert.pem).
	Root string
	// WaypointDir and StandInDir hold cert-chain.pem, key.pem and
	// root-cert.pem (the waypoint's --cert-dir; the stand-in's).
	WaypointDir, StandInDir string
	// HAProxyPEM is HAProxy's certificate and key in one file (its crt).
	HAProxyPEM string
	// Client is the generator's certificate and roots.
	Client *identity.Bundle
	// CA issued them all.
	CA *identity.CA
}

// NewMeshCerts creates a CA and issues every identity of the rows.
func NewMeshCerts(dir string) (*MeshCerts, error) {
	ca, err := identity.NewCA("cluster.local", 48*time.Hour)
	if err != nil {
		return nil, err
	}
	m := &MeshCerts{Dir: dir, Root: filepath.Join(dir, identity.RootCertFile),
		WaypointDir: filepath.Join(dir, "waypoint"), StandInDir: filepath.Join(dir, "ztunnel-standin"),
		HAProxyPEM: filepath.Join(dir, "haproxy.pem"), CA: ca}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(m.Root, ca.RootPEM(), 0o600); err != nil {
		return nil, err
	}
	for d, id := range map[string]identity.ID{m.WaypointDir: WaypointID, m.StandInDir: BackendID} {
		chain, key, err := ca.Issue(id, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		for name, b := range map[string][]byte{identity.CertChainFile: chain, identity.KeyFile: key, identity.RootCertFile: ca.RootPEM()} {
			if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	chain, key, err := ca.Issue(HAProxyID, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(m.HAProxyPEM, append(append(chain, '\n'), key...), 0o600); err != nil {
		return nil, err
	}
	if m.Client, err = ca.IssueBundle(ClientID, 24*time.Hour); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadBundle reads a cert-chain.pem, key.pem, root-cert.pem directory.
func LoadBundle(dir string) (*identity.Bundle, error) {
	var b [3][]byte
	for i, name := range []string{identity.CertChainFile, identity.KeyFile, identity.RootCertFile} {
		var err error
		if b[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return identity.NewBundle(b[0], b[1], b[2])
}

// allowOnly refuses every peer but the allowed ones.
func allowOnly(allowed ...identity.ID) func(identity.ID) error {
	return func(id identity.ID) error {
		for _, a := range allowed {
			if id == a {
				return nil
			}
		}
		return fmt.Errorf("peer %s is not allowed", id)
	}
}

// ZtunnelStandIn stands in for the destination pod's ztunnel: it
// terminates mTLS HBONE (TLS 1.3, ALPN h2, the waypoint's certificate
// required; x/net/http2 with hbone's window and frame sizes) and connects
// each CONNECT stream to its :authority, which must be the backend (the
// pod's own address), as ztunnel hands inbound tunnels to the application.
// On its TLS listener it terminates TLS 1.3 with client certificates (HAProxy's) and
// connects to the backend: the TLS-terminating backend of the HAProxy
// TLS-cost reference.
type ZtunnelStandIn struct {
	// HBONE is the HBONE side; its Tunnels counts the CONNECT streams
	// carried to the backend.
	HBONE ztunnelstandin.Server
	// TLSConns counts the TLS connections carried to the backend.
	TLSConns atomic.Int64
}

// Serve serves hboneLn and tlsLn (either may be nil) with b, the backend
// pod's certificate, until they are closed.
func (z *ZtunnelStandIn) Serve(hboneLn, tlsLn net.Listener, b *identity.Bundle, backend netip.AddrPort) error {
	errc := make(chan error, 2)
	n := 0
	if hboneLn != nil {
		n++
		go func() { errc <- z.serveHBONE(hboneLn, b, backend) }()
	}
	if tlsLn != nil {
		n++
		go func() { errc <- z.serveTLS(tlsLn, b, backend) }()
	}
	if n == 0 {
		return errors.New("ztunnel stand-in: no listener")
	}
	return <-errc
}

func (z *ZtunnelStandIn) serveHBONE(ln net.Listener, b *identity.Bundle, backend netip.AddrPort) error {
	z.HBONE.Bundle, z.HBONE.Peer = b, allowOnly(WaypointID)
	z.HBONE.Allow = func(ap netip.AddrPort) bool { return ap == backend }
	return z.HBONE.Serve(ln)
}

func (z *ZtunnelStandIn) serveTLS(ln net.Listener, b *identity.Bundle, backend netip.AddrPort) error {
	cfg := (&ztunnelstandin.Server{Bundle: b, Peer: allowOnly(HAProxyID)}).TLSConfig("http/1.1")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer func() { _ = c.Close() }()
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.Handshake() != nil {
				return
			}
			_ = tc.SetDeadline(time.Time{})
			up, err := net.DialTimeout("tcp", backend.String(), 5*time.Second)
			if err != nil {
				return
			}
			defer func() { _ = up.Close() }()
			z.TLSConns.Add(1)
			go func() {
				buf := make([]byte, 32<<10)
				_, _ = io.CopyBuffer(up, tc, buf)
				_ = up.(*net.TCPConn).CloseWrite()
			}()
			buf := make([]byte, 32<<10)
			_, _ = io.CopyBuffer(tc, up, buf)
		}()
	}
}

// StartZtunnelStandIn runs the stand-in as its own process (self is this
// program, serving it under the "ztunnel-standin" argument), so that its
// CPU is counted apart from the proxies'. It fills env's stand-in
// addresses.
func StartZtunnelStandIn(env *Env, self string) (*Proc, error) {
	h, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	t, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	p, err := start(env.Dir, "ztunnel-standin", "", self, "ztunnel-standin", "--hbone-listen", h.String(),
		"--tls-listen", t.String(), "--cert-dir", env.Certs.StandInDir, "--backend", env.Backend.String())
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, h.String(), t.String()); err != nil {
		p.Stop()
		return nil, err
	}
	env.StandInHBONE, env.StandInTLS = h, t
	return p, nil
}

// RunZtunnelStandIn is the stand-in process's main.
func RunZtunnelStandIn(hboneAddr, tlsAddr, certDir, backend string) error {
	b, err := LoadBundle(certDir)
	if err != nil {
		return err
	}
	be, err := netip.ParseAddrPort(backend)
	if err != nil {
		return err
	}
	var hl, tl net.Listener
	if hboneAddr != "" {
		if hl, err = net.Listen("tcp", hboneAddr); err != nil {
			return err
		}
	}
	if tlsAddr != "" {
		if tl, err = net.Listen("tcp", tlsAddr); err != nil {
			return err
		}
	}
	return new(ZtunnelStandIn).Serve(hl, tl, b, be)
}

// HBONEManifests is WaypointManifests in native mode: the Gateway's
// listener {protocol: HBONE, port: 15008}, and the backend's endpoint a
// pod of the ambient mesh (the EndpointSlice's targetRef, the Pod with its
// ServiceAccount and IP), so the waypoint reaches it over HBONE and
// expects its identity.
func HBONEManifests(backend netip.AddrPort) string {
	s := WaypointManifests(backend)
	s = strings.Replace(s, "    protocol: istio.io/PROXY\n    port: 15088\n", "    protocol: HBONE\n    port: 15008\n", 1)
	s = strings.Replace(s, fmt.Sprintf("- addresses: [\"%s\"]\n", backend.Addr()),
		fmt.Sprintf("- addresses: [\"%s\"]\n  targetRef: {kind: Pod, name: %s-0, namespace: %s}\n", backend.Addr(), ServiceName, Namespace), 1)
	return s + fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s-0
  namespace: %[2]s
  labels: {app: %[1]s}
spec:
  serviceAccountName: %[1]s
  containers: [{name: %[1]s, image: meshbench-backend}]
status:
  podIP: %[3]s
`, ServiceName, Namespace, backend.Addr())
}

// StartWaypointHBONE runs our waypoint (the real binary, standalone) in
// native mode: inbound mTLS HBONE with the waypoint's certificate files
// (--cert-dir), outbound HBONE to the stand-in (the backend pod's ztunnel,
// on --upstream-hbone-port since it cannot have 15008 here).
func StartWaypointHBONE(env *Env, o Opts) (*Target, error) {
	if env.Certs == nil || !env.StandInHBONE.IsValid() {
		return nil, errors.New("waypoint-hbone needs the mesh certificates and the ztunnel stand-in")
	}
	p, in, err := startStandalone(env, o, "waypoint-hbone", HBONEManifests(env.Backend),
		"--cert-dir", env.Certs.WaypointDir, "--upstream-hbone-port", fmt.Sprint(env.StandInHBONE.Port()))
	if err != nil {
		return nil, err
	}
	pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(env.Certs.Client),
		TrustDomains: func() (string, []string) { return "cluster.local", nil }})
	target := hbone.Target{Address: in.String(), Authority: netip.AddrPortFrom(ServiceVIP, ServicePort).String(),
		Identity: WaypointID.String()}
	return &Target{Name: "waypoint-hbone", Addr: in.String(), Proc: p, Terminator: env.StandIn, cleanup: pool.Close,
		Dial: func(ctx context.Context, _ int) (net.Conn, error) { return pool.Dial(ctx, target) }}, nil
}

// StartHAProxyTLS runs HAProxy as the TLS-cost reference: the same HTTP
// job (HAProxyConfig's) behind TLS 1.3 with client certificates required
// (bind ... ssl crt ... ca-file ... verify required), and keep-alive TLS
// 1.3 to the stand-in's TLS port in front of the backend (server ... ssl
// verify required ca-file ... crt ...).
func StartHAProxyTLS(env *Env, o Opts) (*Target, error) {
	if env.Certs == nil || !env.StandInTLS.IsValid() {
		return nil, errors.New("haproxy-tls needs the mesh certificates and the ztunnel stand-in")
	}
	in, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(env.Dir, "haproxy-tls.cfg")
	maxconn := max(4096, o.Conns+1024)
	strict := uint64(2*maxconn+128) <= FileLimit()
	if err := os.WriteFile(cfg, []byte(HAProxyTLSConfig(in.String(), env.StandInTLS, env.Certs, maxconn, strict)), 0o644); err != nil {
		return nil, err
	}
	p, err := start(env.Dir, "haproxy-tls", o.CPUs, "haproxy", "-db", "-f", cfg)
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, in.String()); err != nil {
		p.Stop()
		return nil, err
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
		Certificates: []tls.Certificate{*env.Certs.Client.Certificate},
		// HAProxy's certificate carries its SPIFFE identity, no DNS name:
		// verified as the mesh verifies peers.
		InsecureSkipVerify: true, //nolint:gosec // verified below against the mesh root and identity
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := identity.Verify(raw, env.Certs.Client.Roots, "cluster.local", nil, time.Now())
			if err == nil && id != HAProxyID {
				err = fmt.Errorf("HAProxy presented %s", id)
			}
			return err
		},
	}
	addr := in.String()
	return &Target{Name: "haproxy-tls", Addr: addr, Proc: p, Terminator: env.StandIn,
		Dial: func(ctx context.Context, _ int) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}
			return d.DialContext(ctx, "tcp", addr)
		}}, nil
}

// HAProxyTLSConfig is HAProxyConfig's job with TLS on both sides (no PROXY
// protocol: the client is authenticated by its certificate).
func HAProxyTLSConfig(listen string, upstream netip.AddrPort, c *MeshCerts, maxconn int, strictLimits bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    maxconn %d\n    ssl-default-bind-options ssl-min-ver TLSv1.3\n    ssl-default-server-options ssl-min-ver TLSv1.3\n", maxconn)
	if !strictLimits {
		b.WriteString("    no strict-limits\n")
	}
	fmt.Fprintf(&b, `defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
    option http-keep-alive
frontend mesh-tls
    bind %[1]s ssl crt %[2]s ca-file %[3]s verify required alpn http/1.1
    http-response add-header %[4]s %[5]s
    default_backend backend-tls
backend backend-tls
    http-reuse always
    server b1 %[6]s ssl verify required ca-file %[3]s crt %[2]s alpn http/1.1
`, listen, c.HAProxyPEM, c.Root, AddedHeader, AddedValue, upstream)
	return b.String()
}
