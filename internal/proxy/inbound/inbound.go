// Package inbound is the waypoint's front door in kgateway's "sandwich" mode:
// the pod's ztunnel terminates HBONE and opens a plain TCP connection that
// starts with a PROXY protocol v2 header carrying the original source, the
// address the client dialled (service VIP:port) and, in TLV 0xD0, the
// client's SPIFFE identity. The listener reads that header, asks the
// Handler how to serve the destination, and then serves HTTP/1.1, HTTP/2
// prior knowledge (h2c) or plain TCP on the rest of the connection.
package inbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/config"
)

// TLV types ztunnel writes into the PROXY v2 header.
const (
	// TLVPeerIdentity carries the client's SPIFFE identity
	// ("spiffe://cluster.local/ns/httpbin/sa/curl").
	TLVPeerIdentity proxyproto.PP2Type = 0xD0
	// TLVServiceHostname carries the service hostname the client addressed,
	// when ztunnel knows it (newer ztunnels).
	TLVServiceHostname proxyproto.PP2Type = 0xD1
)

// ConnInfo is what the PROXY header says about a connection.
type ConnInfo struct {
	// Source is the client's address (pod IP:port).
	Source netip.AddrPort
	// Destination is the address the client dialled: a service VIP:port.
	Destination netip.AddrPort
	// Identity is the client's SPIFFE identity, "" when ztunnel sent none.
	Identity string
	// Hostname is the service hostname from TLV 0xD1, "" when absent.
	Hostname string
	// Baggage and Traceparent are the CONNECT's headers of those names
	// (native HBONE only), for telemetry and tracing.
	Baggage     string
	Traceparent string
	// Target is the service port the connection was classified to, with
	// the configuration generation it belongs to (Handler.Classify).
	Target config.Target
}

type ctxKey struct{}

// Info returns the ConnInfo of the connection a request arrived on: from
// the HTTP/1 writer, or the HTTP/2 request's context.
func Info(w http.ResponseWriter, r *http.Request) *ConnInfo {
	if iw, ok := w.(interface{ Info() *ConnInfo }); ok {
		return iw.Info()
	}
	return InfoFromContext(r.Context())
}

// OnClientGone registers f to run when the client of the request leaves:
// the HTTP/1 connection closes (HTTP/2: the request's context ends, which
// the handler sees itself). It reports whether the writer supports it.
func OnClientGone(w http.ResponseWriter, f func()) bool {
	if gw, ok := w.(interface{ OnClientGone(func()) }); ok {
		gw.OnClientGone(f)
		return true
	}
	return false
}

// InfoFromContext returns the ConnInfo of the connection a request arrived on.
func InfoFromContext(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(ctxKey{}).(*ConnInfo)
	return ci
}

// Handler serves the connections the listener accepts.
type Handler interface {
	// Classify finds the service port a connection is for, in the
	// configuration in force; its protocol says whether to serve HTTP or
	// TCP. ok=false refuses the connection (a destination this waypoint
	// does not serve).
	Classify(info *ConnInfo) (target config.Target, ok bool)
	// ServeHTTP serves one request; InfoFromContext gives its connection.
	http.Handler
	// ServeTCP serves a TCP connection; r holds bytes already read from conn.
	ServeTCP(ctx context.Context, conn net.Conn, r io.Reader, info *ConnInfo)
}

// Options are the listener's limits.
type Options struct {
	// AllowedSources are the peer address ranges that may open
	// connections, that is speak PROXY protocol to the waypoint; a
	// connection from any other peer is closed at accept, before a byte is
	// read, and counted (RefusedSource). The peer is the socket's remote
	// address, never the source the PROXY header claims. Empty: any peer
	// (see docs/reliability.md for why that is the default).
	AllowedSources []netip.Prefix
	// HeaderTimeout bounds the wait for the PROXY header (default 5s).
	HeaderTimeout time.Duration
	// MaxConnections bounds the connections served at once (default
	// 50,000); past it new connections are closed at once and counted.
	MaxConnections int
	// HTTP are the HTTP/1.1 limits.
	HTTP HTTPOptions
	// OnConn, when set, is told when a served connection opens and closes,
	// with its protocol: "http1", "h2c" or "tcp" (for metrics).
	OnConn func(protocol string, opened bool)
	Logger *slog.Logger
}

// HTTPOptions are limits of the HTTP front.
type HTTPOptions struct {
	// MaxHeaderBytes bounds the request line and headers (default 60 KiB,
	// as Envoy's default max_request_headers_kb); past it: 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time to read a request's headers
	// (default 10s); a slow client gets 408 and the connection closes.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request in flight
	// (default 1h, Envoy's default).
	IdleTimeout time.Duration
	// MaxHeaders bounds the number of request header fields (default 100,
	// Envoy's max_headers_count); past it: 431.
	MaxHeaders int
	// MaxRequestsPerConnection closes an HTTP/1 connection after that many
	// requests (0: unlimited, Envoy's default).
	MaxRequestsPerConnection int
	// MaxConcurrentStreams bounds the streams of one HTTP/2 connection
	// (default 100).
	MaxConcurrentStreams int
	// AllowCustomMethods serves methods outside the registered set (any
	// token); by default they get 400, as Envoy answers.
	AllowCustomMethods bool
}

// Stats count what the listener refused and why; read them with Load.
type Stats struct {
	Accepted           atomic.Uint64
	Active             atomic.Int64
	RefusedSource      atomic.Uint64 // peer outside AllowedSources
	RefusedHeader      atomic.Uint64 // no or malformed PROXY v2 header
	RefusedDestination atomic.Uint64 // (VIP, port) not served
	RefusedOverLimit   atomic.Uint64 // MaxConnections reached
	BadRequests        atomic.Uint64 // HTTP/1 requests refused (4xx/5xx before the handler)
	Panics             atomic.Uint64
}

func (o *Options) defaults() {
	if o.HeaderTimeout == 0 {
		o.HeaderTimeout = 5 * time.Second
	}
	if o.HTTP.MaxHeaderBytes == 0 {
		o.HTTP.MaxHeaderBytes = 60 << 10
	}
	if o.HTTP.ReadHeaderTimeout == 0 {
		o.HTTP.ReadHeaderTimeout = 10 * time.Second
	}
	if o.HTTP.IdleTimeout == 0 {
		o.HTTP.IdleTimeout = time.Hour
	}
	if o.HTTP.MaxHeaders == 0 {
		o.HTTP.MaxHeaders = 100
	}
	if o.HTTP.MaxConcurrentStreams == 0 {
		o.HTTP.MaxConcurrentStreams = 100
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 50000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.AllowedSources = unmapPrefixes(o.AllowedSources)
}

// unmapPrefixes writes IPv4-mapped IPv6 ranges (::ffff:10.0.0.0/104) as
// the IPv4 ranges they are, since peers are compared unmapped.
func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// peerAllowed reports whether the connection's remote address is in one of
// the allowed ranges (an empty list allows every peer).
func peerAllowed(remote net.Addr, allowed []netip.Prefix) bool {
	if len(allowed) == 0 {
		return true
	}
	var ip netip.Addr
	if a, ok := remote.(*net.TCPAddr); ok {
		ip = a.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		ip = ap.Addr()
	}
	// A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; a
	// link-local peer carries a zone. Prefixes match neither.
	ip = ip.Unmap().WithZone("")
	for _, p := range allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Server accepts PROXY-protocol connections and serves them.
type Server struct {
	h    Handler
	opts Options
	h2   *http.Server
	h2ln *chanListener

	mu        sync.Mutex
	conns     map[net.Conn]*connState
	listeners map[net.Listener]struct{}
	closed    bool
	draining  atomic.Bool
	wg        sync.WaitGroup
	stats     Stats
	limitLog  rateLimiter
	sourceLog rateLimiter

	// The native HBONE listener's state (hbone.go).
	hstats    HBONEStats
	hboneOnce sync.Once
	hbone     *hboneState
}

// Stats returns the listener's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// connState says whether an HTTP/1 connection is between requests, so a
// drain can close it without cutting a request short.
type connState struct{ idle atomic.Bool }

// NewServer builds a server for a handler.
func NewServer(h Handler, opts Options) *Server {
	opts.defaults()
	s := &Server{h: h, opts: opts, conns: map[net.Conn]*connState{}, listeners: map[net.Listener]struct{}{}}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	s.h2ln = newChanListener()
	s.h2 = &http.Server{
		Handler:           &h2Guard{h: h, allowCustom: opts.HTTP.AllowCustomMethods, stats: &s.stats, log: opts.Logger},
		Protocols:         &protos,
		ReadHeaderTimeout: opts.HTTP.ReadHeaderTimeout,
		IdleTimeout:       opts.HTTP.IdleTimeout,
		MaxHeaderBytes:    opts.HTTP.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: opts.HTTP.MaxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*prefaceConn); ok {
				return context.WithValue(ctx, ctxKey{}, pc.info)
			}
			return ctx
		},
	}
	go func() { _ = s.h2.Serve(s.h2ln) }()
	return s
}

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	return s.acceptLoop(ln, func(c net.Conn) {
		if !peerAllowed(c.RemoteAddr(), s.opts.AllowedSources) {
			s.stats.RefusedSource.Add(1)
			if s.sourceLog.allow() {
				s.opts.Logger.Warn("connection from a peer outside the allowed PROXY protocol sources; closed",
					"remote", c.RemoteAddr().String())
			}
			_ = c.Close()
			return
		}
		if s.stats.Active.Load() >= int64(s.opts.MaxConnections) {
			s.stats.RefusedOverLimit.Add(1)
			if s.limitLog.allow() {
				s.opts.Logger.Warn("connection limit reached; closing new connections", "limit", s.opts.MaxConnections)
			}
			_ = c.Close()
			return
		}
		st := &connState{}
		if !s.track(c, st) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go s.serveConn(c, st)
	})
}

// acceptLoop registers ln, then accepts connections until it is closed,
// counting each and handing it to handle; a temporary failure (out of
// file descriptors) backs off and keeps serving.
func (s *Server) acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	s.mu.Lock()
	if s.closed || s.draining.Load() {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.stats.Accepted.Add(1)
		handle(c)
	}
}

// track registers a connection (st != nil) or forgets it (st == nil).
func (s *Server) track(c net.Conn, st *connState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st != nil {
		if s.closed {
			return false
		}
		s.conns[c] = st
		s.stats.Active.Add(1)
	} else if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.stats.Active.Add(-1)
	}
	return true
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown drains gracefully: it stops accepting, closes HTTP/1
// connections as soon as they are between requests (responses in flight
// end with "connection: close"), sends HTTP/2 GOAWAY, and lets TCP
// connections finish. When ctx ends first, whatever is left is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	h2done := make(chan struct{})
	go func() {
		_ = s.h2.Shutdown(ctx)
		if hs := s.hboneState(); hs != nil {
			_ = hs.base.Shutdown(ctx) // GOAWAY on every HBONE connection
		}
		close(h2done)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c, st := range s.conns {
			if st.idle.Load() {
				_ = c.Close()
			}
		}
		s.mu.Unlock()
		if n == 0 {
			<-h2done
			return s.Close()
		}
		select {
		case <-ctx.Done():
			_ = s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes every connection at once (the graceful drain belongs to the
// caller: stop accepting, wait, then Close).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	if hs := s.hboneState(); hs != nil {
		hs.mu.Lock()
		for c := range hs.conns {
			_ = c.Close()
		}
		hs.mu.Unlock()
	}
	_ = s.h2.Close()
	s.wg.Wait()
	return nil
}

// serveConn reads the PROXY header and dispatches the connection.
func (s *Server) serveConn(c net.Conn, st *connState) {
	defer s.wg.Done()
	defer s.track(c, nil)
	handedOff := false
	defer func() {
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			s.opts.Logger.Error("panic serving a connection; closed it", "panic", r, "remote", c.RemoteAddr().String())
		}
		if !handedOff {
			_ = c.Close()
		}
	}()
	br := getReader(c) // pooled: serveHTTP1 gives it back when the connection idles
	info, err := s.readProxyHeader(c, br)
	if err != nil {
		s.stats.RefusedHeader.Add(1)
		s.opts.Logger.Debug("refused connection", "remote", c.RemoteAddr().String(), "reason", err.Error())
		return
	}
	target, ok := s.h.Classify(info)
	if !ok {
		s.stats.RefusedDestination.Add(1)
		s.opts.Logger.Debug("refused connection to a destination this waypoint does not serve",
			"destination", info.Destination.String(), "source", info.Source.String(), "identity", info.Identity)
		return
	}
	handedOff = s.dispatch(c, br, info, target, st)
}

// dispatch serves a connection whose destination is classified: TCP, or
// HTTP/1.1 or h2c by its first bytes. It reports whether the connection
// was handed to the h2c server, which then owns it. The PROXY listener and
// the HBONE listener (each CONNECT stream) share it.
func (s *Server) dispatch(c net.Conn, br *bufio.Reader, info *ConnInfo, target config.Target, st *connState) (handedOff bool) {
	info.Target = target
	ctx := context.WithValue(context.Background(), ctxKey{}, info)
	proto := target.Protocol()
	if proto == ir.ProtocolDetect {
		// Workload traffic: HTTP or TCP by its first bytes.
		_ = c.SetReadDeadline(time.Now().Add(s.opts.HTTP.ReadHeaderTimeout))
		isHTTP, err := detectHTTP(br, s.opts.HTTP.AllowCustomMethods)
		if err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Time{})
		proto = ir.ProtocolTCP
		if isHTTP {
			proto = ir.ProtocolHTTP
		}
	}
	if proto == ir.ProtocolTCP {
		s.connEvent("tcp", true)
		defer s.connEvent("tcp", false)
		s.h.ServeTCP(ctx, c, br, info)
		return false
	}
	// HTTP: HTTP/2 prior knowledge starts with the client preface.
	_ = c.SetReadDeadline(time.Now().Add(s.opts.HTTP.ReadHeaderTimeout))
	isH2, err := hasH2Preface(br)
	if err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Time{})
	if isH2 {
		s.connEvent("h2c", true)
		defer s.connEvent("h2c", false)
		pc := &prefaceConn{Conn: c, r: br, info: info, done: make(chan struct{})}
		if s.h2ln.deliver(pc) {
			<-pc.done // keep the connection tracked until http.Server closes it
			return true
		}
		return false
	}
	s.connEvent("http1", true)
	defer s.connEvent("http1", false)
	serveHTTP1(ctx, c, br, s.h, &s.opts.HTTP, s.opts.Logger, st, s.draining.Load, &s.stats)
	return false
}

// h2Guard refuses HTTP/2 requests the waypoint does not serve, before the
// handler sees them, exactly as the HTTP/1 reader refuses them: CONNECT
// (405), methods outside the registered set, an invalid :authority, and a
// :path that is neither origin-form nor "*" for OPTIONS (400). x/net/http2
// has already refused control characters in header values and malformed
// pseudo-headers (a stream error).
type h2Guard struct {
	h           http.Handler
	allowCustom bool
	stats       *Stats
	log         *slog.Logger
}

func (g *h2Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, msg := 0, ""
	switch {
	case r.Method == http.MethodConnect:
		status, msg = http.StatusMethodNotAllowed, "CONNECT is not supported on this listener"
	case !MethodAllowed(r.Method, g.allowCustom):
		status, msg = http.StatusBadRequest, "unknown HTTP method"
	case !validAuthority(r.Host):
		status, msg = http.StatusBadRequest, "invalid :authority"
	case r.RequestURI == "*":
		if r.Method != http.MethodOptions {
			status, msg = http.StatusBadRequest, "asterisk-form is only valid for OPTIONS"
		}
	case r.RequestURI == "" || r.RequestURI[0] != '/' || strings.IndexByte(r.RequestURI, '#') >= 0:
		status, msg = http.StatusBadRequest, "malformed :path"
	}
	if status == 0 {
		g.h.ServeHTTP(w, r)
		return
	}
	g.stats.BadRequests.Add(1)
	g.log.Debug("refused HTTP/2 request", "reason", msg)
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(msg))}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// hasH2Preface reports whether the connection starts with the HTTP/2 client
// preface. It reads only as far as the bytes keep matching, so a short
// HTTP/1 request is not held up waiting for 24 bytes.
func hasH2Preface(br *bufio.Reader) (bool, error) {
	for n := 1; n <= len(h2Preface); n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			return false, err
		}
		if b[n-1] != h2Preface[n-1] {
			return false, nil
		}
	}
	return true, nil
}

// readProxyHeader reads and checks the PROXY v2 header.
func (s *Server) readProxyHeader(c net.Conn, br *bufio.Reader) (*ConnInfo, error) {
	_ = c.SetReadDeadline(time.Now().Add(s.opts.HeaderTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	// Only v2 is accepted: check the signature before the library, which
	// would also take the text v1 form.
	sig, err := br.Peek(12)
	if err != nil {
		return nil, fmt.Errorf("reading PROXY header: %w", err)
	}
	if string(sig) != "\r\n\r\n\x00\r\nQUIT\n" {
		return nil, errors.New("no PROXY protocol v2 header")
	}
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, fmt.Errorf("malformed PROXY v2 header: %w", err)
	}
	return ParseHeader(h)
}

// ParseHeader extracts the connection facts from a PROXY v2 header. It
// refuses LOCAL commands, non-TCP transports and malformed TLVs.
func ParseHeader(h *proxyproto.Header) (*ConnInfo, error) {
	if h.Version != 2 {
		return nil, errors.New("PROXY protocol v1 is not accepted")
	}
	if h.Command != proxyproto.PROXY {
		return nil, errors.New("PROXY header with the LOCAL command carries no addresses")
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return nil, fmt.Errorf("PROXY header transport %v is not TCP", h.TransportProtocol)
	}
	info := &ConnInfo{
		Source:      src.AddrPort(),
		Destination: dst.AddrPort(),
	}
	info.Source = netip.AddrPortFrom(info.Source.Addr().Unmap(), info.Source.Port())
	info.Destination = netip.AddrPortFrom(info.Destination.Addr().Unmap(), info.Destination.Port())
	tlvs, err := h.TLVs()
	if err != nil {
		return nil, fmt.Errorf("malformed PROXY v2 TLVs: %w", err)
	}
	for _, t := range tlvs {
		switch t.Type {
		case TLVPeerIdentity:
			if info.Identity != "" {
				return nil, errors.New("PROXY header carries two identity TLVs")
			}
			id := string(t.Value)
			if id == "" || !utf8.ValidString(id) || len(id) > 2048 {
				return nil, errors.New("PROXY header identity TLV is not a valid identity")
			}
			info.Identity = id
		case TLVServiceHostname:
			if !utf8.ValidString(string(t.Value)) {
				return nil, errors.New("PROXY header hostname TLV is not valid UTF-8")
			}
			info.Hostname = string(t.Value)
		}
	}
	return info, nil
}

// prefaceConn is a connection whose first bytes sit in a bufio.Reader; it
// carries the ConnInfo to http.Server's ConnContext.
type prefaceConn struct {
	net.Conn
	r    *bufio.Reader
	info *ConnInfo
	once sync.Once
	done chan struct{}
}

func (c *prefaceConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *prefaceConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// chanListener hands connections to an http.Server.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// rateLimiter allows one event per second (for log lines about limits).
type rateLimiter struct{ last atomic.Int64 }

func (r *rateLimiter) allow() bool {
	now := time.Now().Unix()
	last := r.last.Load()
	return now != last && r.last.CompareAndSwap(last, now)
}

func (s *Server) connEvent(protocol string, opened bool) {
	if s.opts.OnConn != nil {
		s.opts.OnConn(protocol, opened)
	}
}
