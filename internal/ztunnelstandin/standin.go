// Package ztunnelstandin stands in for a destination pod's ztunnel, which
// cannot run here: it terminates mTLS HBONE (TLS 1.3, ALPN h2, a client
// certificate of the mesh required) on x/net/http2 and connects each
// CONNECT stream to its :authority, the pod's own address, as ztunnel
// hands an inbound tunnel to the application. It is a stand-in, not part
// of the product: the demo (demo --hbone), meshbench's native-HBONE rows
// and the proxy's HBONE tests use it as the far side of the waypoint's
// outbound HBONE.
package ztunnelstandin

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// Server is one pod's ztunnel stand-in. Fill it, then Serve.
type Server struct {
	// Bundle is the pod's certificate and the mesh roots its clients'
	// certificates are verified against.
	Bundle *identity.Bundle
	// TrustDomain is the clients' trust domain ("cluster.local" when empty).
	TrustDomain string
	// Peer, when set, is told each verified client identity; an error
	// refuses the handshake.
	Peer func(identity.ID) error
	// Allow, when set, reports whether a CONNECT to authority may be
	// dialled; others get 400.
	Allow func(authority netip.AddrPort) bool

	// Tunnels counts the CONNECT streams carried to their destination.
	Tunnels atomic.Int64
}

// TLSConfig is the stand-in's server TLS with alpn: TLS 1.3 only, a mesh
// client certificate required and checked by Peer.
func (s *Server) TLSConfig(alpn ...string) *tls.Config {
	td := s.TrustDomain
	if td == "" {
		td = "cluster.local"
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: alpn, Certificates: []tls.Certificate{*s.Bundle.Certificate},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := identity.Verify(raw, s.Bundle.Roots, td, nil, time.Now())
			if err != nil {
				return err
			}
			if s.Peer != nil {
				return s.Peer(id)
			}
			return nil
		},
	}
}

// Serve accepts HBONE connections on ln until it is closed, and returns
// the Accept error that ended it.
func (s *Server) Serve(ln net.Listener) error {
	cfg := s.TLSConfig("h2")
	h2s := &http2.Server{
		MaxConcurrentStreams:         1000,
		MaxReadFrameSize:             hbone.MaxFrameSize,
		MaxUploadBufferPerConnection: hbone.ConnectionWindow,
		MaxUploadBufferPerStream:     hbone.StreamWindow,
	}
	handler := http.HandlerFunc(s.connect)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.Handshake() != nil {
				_ = c.Close()
				return
			}
			_ = tc.SetDeadline(time.Time{})
			h2s.ServeConn(tc, &http2.ServeConnOpts{Handler: handler})
		}()
	}
}

// connect serves one CONNECT stream: 200, then bytes both ways until the
// destination closes.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ap, err := netip.ParseAddrPort(r.Host)
	if err != nil || (s.Allow != nil && !s.Allow(ap)) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	up, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer func() { _ = up.Close() }()
	s.Tunnels.Add(1)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	go func() {
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(up, r.Body, buf)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil || rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
