// Package upstream sends requests and connections on to backends: it picks
// an endpoint of a backend and keeps pools of connections to endpoints.
// The waypoint always dials endpoint (pod) addresses, never service VIPs; in
// a cluster the pod's ztunnel captures the connection and wraps it in HBONE.
package upstream

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Backend is a compiled ir.Backend: its endpoints and a round-robin cursor.
type Backend struct {
	Key       string
	IR        *ir.Backend
	H2C       bool
	endpoints []string
	next      atomic.Uint32
}

// NewBackend compiles a backend.
func NewBackend(key string, b *ir.Backend) *Backend {
	return &Backend{Key: key, IR: b, H2C: b.Protocol == "H2C", endpoints: b.Endpoints}
}

// Pick returns the next endpoint in round-robin order; ok is false when the
// backend has no ready endpoint.
func (b *Backend) Pick() (addr string, ok bool) {
	n := len(b.endpoints)
	if n == 0 {
		return "", false
	}
	i := b.next.Add(1) - 1
	return b.endpoints[int(i%uint32(n))], true
}

// Options tune the connection pools.
type Options struct {
	// ConnectTimeout bounds a TCP connect to an endpoint (default 10s, as
	// Istio's default connectTimeout).
	ConnectTimeout time.Duration
	// MaxIdlePerEndpoint is the number of idle keep-alive connections kept
	// per endpoint (default 64).
	MaxIdlePerEndpoint int
	// IdleTimeout closes upstream connections idle that long (default 90s).
	IdleTimeout time.Duration
}

func (o *Options) defaults() {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxIdlePerEndpoint == 0 {
		o.MaxIdlePerEndpoint = 64
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
}

// Pool holds the keep-alive connection pools to endpoints: one for
// HTTP/1.1 and one for HTTP/2 in clear text (h2c).
type Pool struct {
	opts   Options
	dialer *net.Dialer
	H1     *http.Transport
	H2C    *http.Transport
}

// NewPool builds the pools.
func NewPool(opts Options) *Pool {
	opts.defaults()
	d := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	p := &Pool{opts: opts, dialer: d}
	p.H1 = &http.Transport{
		Proxy:                 nil, // never honour HTTP_PROXY: we are the proxy
		DialContext:           d.DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   opts.MaxIdlePerEndpoint,
		IdleConnTimeout:       opts.IdleTimeout,
		DisableCompression:    true, // pass bodies through untouched
		ForceAttemptHTTP2:     false,
		ResponseHeaderTimeout: 0, // route timeouts bound requests, not the pool
		ExpectContinueTimeout: time.Second,
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	p.H2C = &http.Transport{
		Proxy:              nil,
		DialContext:        d.DialContext,
		Protocols:          &h2c,
		DisableCompression: true,
		IdleConnTimeout:    opts.IdleTimeout,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
	return p
}

// Transport returns the round tripper for a backend.
func (p *Pool) Transport(b *Backend) http.RoundTripper {
	if b.H2C {
		return p.H2C
	}
	return p.H1
}

// Dial opens a TCP connection to an endpoint, for TCP services.
func (p *Pool) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return p.dialer.DialContext(ctx, "tcp", addr)
}

// Close releases idle connections.
func (p *Pool) Close() {
	p.H1.CloseIdleConnections()
	p.H2C.CloseIdleConnections()
}

// InheritCursor continues the round-robin sequence of the backend this one
// replaces.
func (b *Backend) InheritCursor(old *Backend) { b.next.Store(old.next.Load()) }
