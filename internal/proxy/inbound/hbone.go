package inbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// HBONEOptions configure the native HBONE listener (port 15008): the
// waypoint terminates ztunnel's mTLS and HTTP/2 CONNECT itself.
type HBONEOptions struct {
	// Identity gives the waypoint's certificate and the mesh roots, read
	// at every handshake so a rotation takes effect on the next one.
	Identity identity.Provider
	// TrustDomains returns the trust domain and its aliases in force; a
	// peer identity outside them is refused.
	TrustDomains func() (string, []string)
	// HandshakeTimeout bounds the TLS handshake (default 10s).
	HandshakeTimeout time.Duration
	// MaxConcurrentStreams is advertised in SETTINGS and enforced (default:
	// Options.HTTP.MaxConcurrentStreams).
	MaxConcurrentStreams uint32
}

// HBONEStats count the HBONE listener's handshakes, streams and refusals.
type HBONEStats struct {
	Handshakes         atomic.Uint64 // completed mTLS handshakes
	RefusedNoCert      atomic.Uint64 // client presented no certificate
	RefusedUntrusted   atomic.Uint64 // certificate not of the mesh roots
	RefusedExpired     atomic.Uint64 // certificate expired or not yet valid
	RefusedTrustDomain atomic.Uint64 // identity outside the trust domain(s)
	RefusedIdentity    atomic.Uint64 // no usable SPIFFE identity in the certificate
	RefusedTLSVersion  atomic.Uint64 // client offered no TLS 1.3
	RefusedALPN        atomic.Uint64 // client did not offer h2
	RefusedHandshake   atomic.Uint64 // any other handshake failure (timeout, garbage, no certificate of ours)
	Streams            atomic.Uint64 // CONNECT streams answered 200
	StreamsBadRequest  atomic.Uint64 // 400: not CONNECT, or :authority not IP:port
	StreamsNoIdentity  atomic.Uint64 // 401: no peer identity
	StreamsUnknownDest atomic.Uint64 // 503: a destination this waypoint does not serve
}

// HBONEStats returns the HBONE listener's counters.
func (s *Server) HBONEStats() *HBONEStats { return &s.hstats }

var (
	errTLSVersion = errors.New("HBONE requires TLS 1.3")
	errALPN       = errors.New("HBONE requires ALPN h2")
	errNoBundle   = errors.New("no certificate of our own yet")
)

// hboneConnKey carries a tunnel connection's facts to its streams.
type hboneConnKey struct{}

type hboneConn struct {
	peer     netip.AddrPort // the TCP peer (the source ztunnel)
	local    net.Addr
	identity string
}

// hboneState is the HBONE side of a Server, made on first use.
type hboneState struct {
	h2    *http2.Server
	base  *http.Server // its Shutdown sends GOAWAY on every connection
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *Server) hboneServer(o *HBONEOptions) *hboneState {
	s.hboneOnce.Do(func() {
		streams := o.MaxConcurrentStreams
		if streams == 0 {
			streams = uint32(s.opts.HTTP.MaxConcurrentStreams)
		}
		hs := &hboneState{conns: map[net.Conn]struct{}{}}
		hs.h2 = &http2.Server{
			MaxConcurrentStreams:         streams,
			MaxReadFrameSize:             hbone.MaxFrameSize,
			MaxUploadBufferPerConnection: hbone.ConnectionWindow,
			MaxUploadBufferPerStream:     hbone.StreamWindow,
			IdleTimeout:                  s.opts.HTTP.IdleTimeout,
			ReadIdleTimeout:              30 * time.Second,
			PingTimeout:                  15 * time.Second,
		}
		hs.base = &http.Server{Handler: http.HandlerFunc(s.serveConnect)}
		_ = http2.ConfigureServer(hs.base, hs.h2)
		s.mu.Lock()
		s.hbone = hs
		s.mu.Unlock()
	})
	return s.hbone
}

// hboneTLS is the listener's TLS configuration: TLS 1.3 only, ALPN h2, a
// client certificate required and verified against the roots in force and
// the trust domains. Each refusal is counted by its reason.
func (s *Server) hboneTLS(o *HBONEOptions) *tls.Config {
	st := &s.hstats
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
				st.RefusedTLSVersion.Add(1)
				return nil, errTLSVersion
			}
			if !slices.Contains(hello.SupportedProtos, "h2") {
				st.RefusedALPN.Add(1)
				return nil, errALPN
			}
			b := o.Identity.Current()
			if b == nil {
				st.RefusedHandshake.Add(1)
				return nil, errNoBundle
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				NextProtos:   []string{"h2"},
				Certificates: []tls.Certificate{*b.Certificate},
				// Verified below, where each reason is told apart.
				ClientAuth: tls.RequestClientCert,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					td, aliases := o.TrustDomains()
					_, err := identity.Verify(raw, b.Roots, td, aliases, time.Now())
					if err != nil {
						countRefusal(st, err)
					}
					return err
				},
			}, nil
		},
	}
}

func countRefusal(st *HBONEStats, err error) {
	switch {
	case errors.Is(err, identity.ErrNoCertificate):
		st.RefusedNoCert.Add(1)
	case errors.Is(err, identity.ErrExpired):
		st.RefusedExpired.Add(1)
	case errors.Is(err, identity.ErrTrustDomain):
		st.RefusedTrustDomain.Add(1)
	case errors.Is(err, identity.ErrBadIdentity):
		st.RefusedIdentity.Add(1)
	default:
		st.RefusedUntrusted.Add(1)
	}
}

// ServeHBONE accepts mTLS HBONE connections on ln until it is closed and
// serves each CONNECT stream as a connection to its :authority, through
// the same classification and HTTP/1.1, h2c or TCP serving as a PROXY
// protocol connection.
func (s *Server) ServeHBONE(ln net.Listener, o HBONEOptions) error {
	if o.Identity == nil || o.TrustDomains == nil {
		return errors.New("HBONE listener without an identity provider or trust domains")
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	hs := s.hboneServer(&o)
	cfg := s.hboneTLS(&o)
	return s.acceptLoop(ln, func(c net.Conn) {
		if s.stats.Active.Load() >= int64(s.opts.MaxConnections) {
			s.stats.RefusedOverLimit.Add(1)
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go s.serveHBONEConn(hs, c, cfg, o.HandshakeTimeout)
	})
}

func (s *Server) serveHBONEConn(hs *hboneState, c net.Conn, cfg *tls.Config, timeout time.Duration) {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			s.opts.Logger.Error("panic serving an HBONE connection; closed it", "panic", r)
		}
		_ = c.Close()
	}()
	hs.mu.Lock()
	if s.isClosed() {
		hs.mu.Unlock()
		return
	}
	hs.conns[c] = struct{}{}
	hs.mu.Unlock()
	defer func() {
		hs.mu.Lock()
		delete(hs.conns, c)
		hs.mu.Unlock()
	}()
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Refusals with a reason were counted where they were found.
		if !s.hboneRefusalCounted(err) {
			s.hstats.RefusedHandshake.Add(1)
		}
		s.opts.Logger.Debug("HBONE handshake refused", "remote", c.RemoteAddr().String(), "reason", err.Error())
		return
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != "h2" || cs.Version != tls.VersionTLS13 || len(cs.PeerCertificates) == 0 {
		s.hstats.RefusedHandshake.Add(1)
		return
	}
	id, err := identity.FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		s.hstats.RefusedIdentity.Add(1)
		return
	}
	s.hstats.Handshakes.Add(1)
	hc := &hboneConn{local: c.LocalAddr(), identity: id.String()}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		hc.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	hs.h2.ServeConn(tc, &http2.ServeConnOpts{
		Context:    context.WithValue(context.Background(), hboneConnKey{}, hc),
		BaseConfig: hs.base,
		Handler:    http.HandlerFunc(s.serveConnect),
	})
}

// hboneRefusalCounted tells the handshake errors whose reason the TLS
// configuration has counted already.
func (s *Server) hboneRefusalCounted(err error) bool {
	return errors.Is(err, errTLSVersion) || errors.Is(err, errALPN) || errors.Is(err, errNoBundle) ||
		errors.Is(err, identity.ErrNoCertificate) || errors.Is(err, identity.ErrUntrusted) ||
		errors.Is(err, identity.ErrExpired) || errors.Is(err, identity.ErrTrustDomain) ||
		errors.Is(err, identity.ErrBadIdentity)
}

func (s *Server) hboneState() *hboneState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hbone
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// hboneReply answers a CONNECT that is refused.
func hboneReply(w http.ResponseWriter, status int, msg string) {
	w.Header()["Content-Type"] = []string{"text/plain"}
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(msg))}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// serveConnect serves one CONNECT stream: its :authority is the original
// destination, the forwarded header the original source; answered 200,
// the stream's bytes are a connection to that destination.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	hc, _ := r.Context().Value(hboneConnKey{}).(*hboneConn)
	if r.Method != http.MethodConnect {
		s.hstats.StreamsBadRequest.Add(1)
		hboneReply(w, http.StatusBadRequest, "HBONE accepts CONNECT only")
		return
	}
	dst, err := netip.ParseAddrPort(r.Host)
	if err != nil || dst.Port() == 0 {
		s.hstats.StreamsBadRequest.Add(1)
		hboneReply(w, http.StatusBadRequest, "CONNECT :authority is not IP:port")
		return
	}
	if hc == nil || hc.identity == "" {
		s.hstats.StreamsNoIdentity.Add(1)
		hboneReply(w, http.StatusUnauthorized, "no peer identity")
		return
	}
	info := &ConnInfo{
		Source:      hc.peer,
		Destination: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()),
		Identity:    hc.identity,
		Baggage:     r.Header.Get("Baggage"),
		Traceparent: r.Header.Get("Traceparent"),
	}
	if src, host, ok := parseForwarded(r.Header.Get("Forwarded")); ok {
		if src.IsValid() {
			info.Source = src
		}
		info.Hostname = host
	}
	target, ok := s.h.Classify(info)
	if !ok {
		s.hstats.StreamsUnknownDest.Add(1)
		s.stats.RefusedDestination.Add(1)
		hboneReply(w, http.StatusServiceUnavailable, "no such destination on this waypoint")
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	s.hstats.Streams.Add(1)
	remote := net.TCPAddrFromAddrPort(info.Source)
	c := hbone.NewConn(hbone.Stream{
		R:     r.Body,
		W:     w,
		Flush: rc.Flush,
		Close: func() error {
			// Stops a blocked body read; the stream ends when this
			// handler returns (END_STREAM).
			return rc.SetReadDeadline(time.Unix(1, 0))
		},
		AbortWrite: func() { _ = rc.SetWriteDeadline(time.Unix(1, 0)) }, // resets the stream
		Local:      hc.local,
		Remote:     remote,
	})
	st := &connState{}
	if !s.track(c, st) {
		_ = c.Close()
		return
	}
	defer s.track(c, nil)
	handedOff := false
	defer func() {
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			s.opts.Logger.Error("panic serving an HBONE stream; closed it", "panic", r)
		}
		if !handedOff {
			_ = c.Close()
		}
	}()
	br := bufio.NewReaderSize(c, 4096)
	handedOff = s.dispatch(c, br, info, target, st)
}

// parseForwarded reads ztunnel's forwarded header (RFC 7239):
// for="<ip:port>";host=<service host>. ok is false when it is absent or
// malformed; src is invalid when for= is not an IP:port.
func parseForwarded(v string) (src netip.AddrPort, host string, ok bool) {
	if v == "" {
		return netip.AddrPort{}, "", false
	}
	// Only the first element: ztunnel sends one.
	v, _, _ = strings.Cut(v, ",")
	for _, pair := range strings.Split(v, ";") {
		k, val, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found {
			return netip.AddrPort{}, "", false
		}
		val = strings.Trim(val, `"`)
		switch strings.ToLower(k) {
		case "for":
			if ap, err := netip.ParseAddrPort(val); err == nil {
				src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			} else if a, err := netip.ParseAddr(strings.Trim(val, "[]")); err == nil {
				src = netip.AddrPortFrom(a.Unmap(), 0)
			}
		case "host":
			if validAuthority(val) {
				host = val
			}
		}
	}
	return src, host, true
}
