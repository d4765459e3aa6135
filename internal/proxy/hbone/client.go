package hbone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
)

// Target is where a tunnel goes.
type Target struct {
	// Address is the HBONE peer, the destination pod's IP:15008.
	Address string
	// Authority is the CONNECT :authority, the pod's IP:targetPort.
	Authority string
	// Identity, when set, is the SPIFFE identity the peer must prove (the
	// destination pod's ServiceAccount); else any identity of the trust
	// domain(s) is accepted.
	Identity string
	// Header is sent with the CONNECT (forwarded, baggage, traceparent).
	Header http.Header
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Identity is the certificate we present and the roots we verify with.
	Identity identity.Provider
	// TrustDomains returns the trust domain and aliases peers must be in.
	TrustDomains func() (string, []string)
	// Dial opens the TCP connection (default: a net.Dialer with
	// ConnectTimeout).
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	ConnectTimeout time.Duration
	// MaxStreamsPerConn caps the streams we open on one connection
	// (default MaxStreamsPerConn), within what the peer advertises.
	MaxStreamsPerConn int
	// IdleTimeout closes connections with no stream for that long
	// (default 90s).
	IdleTimeout time.Duration
}

// Pool opens tunnels: HTTP/2 connections pooled per (peer address,
// expected identity), many CONNECT streams on each. A rotation of our
// certificate applies to the connections opened after it; those open
// keep serving, so no stream is dropped.
type Pool struct {
	opts PoolOptions
	tr   *http2.Transport

	mu    sync.Mutex
	conns map[poolKey][]*clientConn
	dials map[poolKey]*pendingDial
}

type poolKey struct{ addr, identity string }

type clientConn struct {
	cc      *http2.ClientConn
	streams int // ours, open now
}

type pendingDial struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// NewPool builds a pool.
func NewPool(o PoolOptions) *Pool {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	if o.MaxStreamsPerConn == 0 {
		o.MaxStreamsPerConn = MaxStreamsPerConn
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	return &Pool{opts: o, conns: map[poolKey][]*clientConn{}, dials: map[poolKey]*pendingDial{},
		tr: &http2.Transport{
			MaxReadFrameSize:           MaxFrameSize,
			StrictMaxConcurrentStreams: true,
			IdleConnTimeout:            o.IdleTimeout,
			ReadIdleTimeout:            30 * time.Second,
			PingTimeout:                15 * time.Second,
		}}
}

// Dial opens a tunnel to t: a CONNECT stream answered 200. Any other
// answer is an error wrapping ErrRefused with the status.
func (p *Pool) Dial(ctx context.Context, t Target) (net.Conn, error) {
	key := poolKey{t.Address, t.Identity}
	for attempt := 0; ; attempt++ {
		cc, err := p.get(ctx, key)
		if err != nil {
			return nil, err
		}
		c, err := p.open(ctx, cc, key, t)
		if err == nil {
			return c, nil
		}
		// A pooled connection that went away between the pick and the
		// stream: try once more on a fresh one.
		if attempt == 0 && !errors.Is(err, ErrRefused) && ctx.Err() == nil {
			p.drop(key, cc)
			continue
		}
		return nil, err
	}
}

// get returns a connection with room for a stream, reserving it, or dials
// one (one dial per key at a time; others wait for it).
func (p *Pool) get(ctx context.Context, key poolKey) (*clientConn, error) {
	for {
		p.mu.Lock()
		list := p.conns[key]
		kept := list[:0]
		var pick *clientConn
		for _, c := range list {
			st := c.cc.State()
			if st.Closed || st.Closing {
				continue
			}
			kept = append(kept, c)
			if pick == nil && c.streams < p.opts.MaxStreamsPerConn && c.cc.ReserveNewRequest() {
				pick = c
			}
		}
		p.conns[key] = kept
		if pick != nil {
			pick.streams++
			p.mu.Unlock()
			return pick, nil
		}
		pd := p.dials[key]
		if pd == nil {
			pd = &pendingDial{done: make(chan struct{})}
			p.dials[key] = pd
			p.mu.Unlock()
			pd.cc, pd.err = p.dialConn(ctx, key)
			p.mu.Lock()
			delete(p.dials, key)
			if pd.err == nil {
				p.conns[key] = append(p.conns[key], pd.cc)
			}
			p.mu.Unlock()
			close(pd.done)
			if pd.err != nil {
				return nil, pd.err
			}
			continue // take a stream of it like everyone else
		}
		p.mu.Unlock()
		select {
		case <-pd.done:
			if pd.err != nil {
				return nil, pd.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *Pool) drop(key poolKey, c *clientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.conns[key]
	for i, x := range list {
		if x == c {
			p.conns[key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	_ = c.cc.Close()
}

func (p *Pool) release(c *clientConn) {
	p.mu.Lock()
	c.streams--
	p.mu.Unlock()
}

// dialConn opens an mTLS HTTP/2 connection to key.addr, verifying the
// peer's identity.
func (p *Pool) dialConn(ctx context.Context, key poolKey) (*clientConn, error) {
	b := p.opts.Identity.Current()
	if b == nil {
		return nil, errors.New("HBONE: no certificate of our own yet")
	}
	dctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	raw, err := p.opts.Dial(dctx, "tcp", key.addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{*b.Certificate},
		// The peer is checked by its SPIFFE identity, not a host name.
		InsecureSkipVerify: true, //nolint:gosec // VerifyPeerCertificate checks chain and identity
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			td, aliases := p.opts.TrustDomains()
			id, err := identity.Verify(rawCerts, b.Roots, td, aliases, time.Now())
			if err != nil {
				return err
			}
			if key.identity != "" && id.String() != key.identity {
				return fmt.Errorf("%w: %s, want %s", identity.ErrWrongIdentity, id, key.identity)
			}
			return nil
		},
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("HBONE handshake with %s: %w", key.addr, err)
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		_ = tc.Close()
		return nil, fmt.Errorf("HBONE peer %s did not negotiate h2", key.addr)
	}
	cc, err := p.tr.NewClientConn(tc)
	if err != nil {
		_ = tc.Close()
		return nil, err
	}
	return &clientConn{cc: cc}, nil
}

// open sends the CONNECT on cc and waits for the answer.
func (p *Pool) open(ctx context.Context, c *clientConn, key poolKey, t Target) (net.Conn, error) {
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(context.Background()) // the stream's life
	hdr := t.Header
	if hdr == nil {
		hdr = http.Header{}
	}
	req := (&http.Request{
		Method:        http.MethodConnect,
		Host:          t.Authority,
		URL:           &url.URL{Host: t.Authority},
		Header:        hdr,
		Body:          pr,
		ContentLength: -1,
	}).WithContext(sctx)
	stop := context.AfterFunc(ctx, cancel) // the caller's deadline bounds the answer
	resp, err := c.cc.RoundTrip(req)       //nolint:bodyclose // the tunnel's Close closes it
	stopped := stop()
	if err != nil || !stopped {
		cancel()
		_ = pw.Close()
		p.release(c)
		if err == nil {
			_ = resp.Body.Close()
			err = ctx.Err()
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		cancel()
		_ = pw.Close()
		p.release(c)
		return nil, fmt.Errorf("%w: %s answered %d for %s", ErrRefused, key.addr, resp.StatusCode, t.Authority)
	}
	var once sync.Once
	done := func() { once.Do(func() { p.release(c) }) }
	local := &net.TCPAddr{}
	remote, _ := net.ResolveTCPAddr("tcp", t.Authority)
	return NewConn(Stream{
		R: resp.Body,
		W: pw,
		Close: func() error {
			_ = pw.Close()
			err := resp.Body.Close() // resets the stream if the peer is not done
			cancel()
			done()
			return err
		},
		AbortWrite: cancel,
		CloseWrite: pw.Close, // END_STREAM once the body's bytes are sent
		Local:      local,
		Remote:     remote,
	}), nil
}

// Close closes every pooled connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, list := range p.conns {
		for _, c := range list {
			_ = c.cc.Close()
		}
		delete(p.conns, k)
	}
}

// Conns reports the open connections to addr (for tests and stats).
func (p *Pool) Conns(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, list := range p.conns {
		if k.addr == addr {
			n += len(list)
		}
	}
	return n
}
