// Package upstream sends requests and connections on to backends: it picks
// an endpoint of a backend and keeps pools of connections to endpoints.
// The waypoint always dials endpoint (pod) addresses, never service VIPs; in
// a cluster the pod's ztunnel captures the connection and wraps it in HBONE.
package upstream

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
)

// Backend is a compiled ir.Backend: its endpoints, their health, the
// locality tiers and a round-robin cursor.
type Backend struct {
	Key       string
	IR        *ir.Backend
	H2C       bool
	endpoints []string
	health    []*endpointHealth // parallel to endpoints
	index     map[string]int
	// tiers are the endpoints' indexes by closeness to the waypoint, the
	// closest first (locality.go), each endpoint as often as its weight
	// when the backend has weights; nil: one tier of every endpoint.
	tiers        [][]int32
	leastRequest bool
	random       bool
	// od is the DestinationRule's outlier detection (outlier.go); nil: the
	// Outlier's defaults.
	od *ir.OutlierDetection
	// conn is the DestinationRule's connection pool settings (nil: the
	// pool's defaults).
	conn *ConnOptions
	// hash, for a backend of consistent hashing, are the ring or Maglev
	// tables, one per tier (hash.go); nil otherwise.
	hash []hashTable
	next atomic.Uint32
	// order, for a backend with weighted endpoints (ir.Backend.Weights),
	// is the round-robin sequence of endpoint indexes, each as often as
	// its weight and spread out (weights.go); nil: each endpoint once.
	// With tiers or LEAST_REQUEST, the tiers carry the weights instead.
	order []int
	// named is set when some endpoint is a hostname (Pool.Resolve).
	named bool
}

// NewBackend compiles a backend with no locality of its own (every
// endpoint equally close); health state is shared through o so it
// survives configuration updates.
func NewBackend(key string, b *ir.Backend, o *Outlier) *Backend {
	return NewBackendAt(key, b, o, Place{})
}

// NewBackendAt compiles a backend for a waypoint at self: when the
// backend prefers close endpoints, they are ranked into tiers once here,
// so that a pick does no more than walk the closest tier.
func NewBackendAt(key string, b *ir.Backend, o *Outlier, self Place) *Backend {
	be := &Backend{Key: key, IR: b, H2C: b.Protocol == "H2C", endpoints: b.Endpoints,
		health: make([]*endpointHealth, len(b.Endpoints)), index: make(map[string]int, len(b.Endpoints)),
		leastRequest: b.LoadBalancer == ir.LoadBalancerLeastRequest, random: b.LoadBalancer == ir.LoadBalancerRandom}
	for i, ep := range b.Endpoints {
		be.health[i] = o.state(ep)
		be.index[ep] = i
		if _, ok := endpointHostname(ep); ok {
			be.named = true
		}
	}
	be.od = b.Outlier
	if cp := b.ConnectionPool; cp != nil {
		be.conn = &ConnOptions{ConnectTimeout: time.Duration(cp.ConnectTimeoutMs) * time.Millisecond,
			IdleTimeout: time.Duration(cp.IdleTimeoutMs) * time.Millisecond, MaxRequests: cp.MaxRequestsPerConnection}
	}
	be.tiers = tiers(b, self)
	if b.ConsistentHash != nil && len(b.Endpoints) > 0 {
		be.hash = buildHash(b, be.tiers)
	}
	if len(b.Weights) > 0 {
		if be.tiers == nil && !be.leastRequest && !be.random {
			be.order = weightedOrder(b.Endpoints, b.Weights)
		} else {
			be.tiers = weightedTiers(be.tiers, b)
		}
	}
	return be
}

// Pick returns an endpoint of the closest tier that has one not ejected
// by outlier detection: the next in round-robin order, or with
// LEAST_REQUEST the one with fewer requests in flight of two chosen at
// random. When every endpoint is ejected it picks among all of them
// (Envoy's panic mode). ok is false when the backend has no ready
// endpoint. It does not allocate.
func (b *Backend) Pick() (addr string, ok bool) {
	n := len(b.endpoints)
	if n == 0 {
		return "", false
	}
	if b.order != nil && !b.random {
		return b.pickWeighted()
	}
	now := nanotime()
	// One step of the round-robin cursor per pick, whichever tier serves.
	var start uint32
	if b.random {
		// RANDOM: a random place to start from in the tier (weighted
		// tiers repeat an endpoint as often as its weight).
		start = rand.Uint32()
	} else {
		start = b.next.Add(1) - 1
	}
	if b.tiers == nil {
		if i := b.pickIn(nil, n, now, start); i >= 0 {
			return b.endpoints[i], true
		}
	}
	for _, t := range b.tiers {
		if i := b.pickIn(t, len(t), now, start); i >= 0 {
			return b.endpoints[i], true
		}
	}
	return b.endpoints[int(start%uint32(n))], true // all ejected: panic mode
}

// pickIn picks among the m endpoints of tier t (nil: every endpoint),
// skipping ejected ones, round robin from start; -1 when all are ejected.
func (b *Backend) pickIn(t []int32, m int, now int64, start uint32) int {
	at := func(k int) int {
		if t == nil {
			return k
		}
		return int(t[k])
	}
	if b.leastRequest && m > 1 {
		// Two distinct choices at random; the healthy one with fewer
		// requests in flight wins (the first on a tie).
		x := int(rand.Uint32N(uint32(m)))
		y := int(rand.Uint32N(uint32(m - 1)))
		if y >= x {
			y++
		}
		i, j := at(x), at(y)
		hi, hj := b.health[i], b.health[j]
		switch ei, ej := hi.ejected(now), hj.ejected(now); {
		case !ei && !ej:
			if hj.inflight.Load() < hi.inflight.Load() {
				return j
			}
			return i
		case !ei:
			return i
		case !ej:
			return j
		}
		// Both ejected: the first healthy one from a random place.
		for k := 1; k < m; k++ {
			if i := at((x + k) % m); !b.health[i].ejected(now) {
				return i
			}
		}
		return -1
	}
	for k := 0; k < m; k++ {
		i := at(int((start + uint32(k)) % uint32(m)))
		if !b.health[i].ejected(now) {
			return i
		}
	}
	return -1
}

// Begin counts a request (or TCP connection) in flight to an endpoint
// Pick returned, for LEAST_REQUEST; End, called once for each Begin when
// it is over, uncounts it. The count is the endpoint's, across
// configurations.
func (b *Backend) Begin(ep string) {
	if i, ok := b.index[ep]; ok {
		b.health[i].inflight.Add(1)
	}
}

// End ends what Begin counted.
func (b *Backend) End(ep string) {
	if i, ok := b.index[ep]; ok {
		b.health[i].inflight.Add(-1)
	}
}

// Report records the outcome of an exchange with an endpoint: ok false
// for a connection failure or a gateway error (502, 503, 504).
func (b *Backend) Report(ep string, ok bool) {
	i, known := b.index[ep]
	if !known {
		return
	}
	b.health[i].report(ok)
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
	// MaxResponseHeaderBytes bounds an upstream response head, status line
	// and headers (default 60 KiB, Envoy's max_response_headers_kb); past
	// it the exchange fails with a ProtocolError (502 UPE).
	MaxResponseHeaderBytes int
	// MaxResponseHeaders bounds its header fields (default 100, Envoy's
	// max_headers_count).
	MaxResponseHeaders int
	// OnDial, when set, is told of every dial's outcome, and OnClose of
	// every upstream connection closing (for metrics).
	OnDial  func(err error)
	OnClose func()
	// Identity, when set, is the waypoint's certificate for native HBONE:
	// endpoints that SetMesh names are reached over HBONE with it.
	Identity identity.Provider
	// HBONEPort is the port tunnels go to on an endpoint's pod IP
	// (default 15008; tests and the demo use free ports).
	HBONEPort uint16
	// DNS configures the resolver of hostname endpoints (dns.go).
	DNS DNSOptions
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
	if o.MaxResponseHeaderBytes == 0 {
		o.MaxResponseHeaderBytes = 60 << 10
	}
	if o.MaxResponseHeaders == 0 {
		o.MaxResponseHeaders = 100
	}
	if o.HBONEPort == 0 {
		o.HBONEPort = hbone.Port
	}
}

// Pool holds the keep-alive connection pools to endpoints: one for
// HTTP/1.1 and one for HTTP/2 in clear text (h2c).
type Pool struct {
	opts   Options
	dialer *net.Dialer
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	H1     *H1Client
	H2C    *http.Transport
	// hbone tunnels to mesh endpoints (native mode; nil otherwise), mesh
	// says which (hbone.go).
	hbone *hbone.Pool
	mesh  atomic.Pointer[Mesh]
	// dns resolves hostname endpoints (Resolve).
	dns *Resolver
}

// NewPool builds the pools.
func NewPool(opts Options) *Pool {
	opts.defaults()
	d := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	p := &Pool{opts: opts, dialer: d, dial: d.DialContext, dns: NewResolver(opts.DNS)}
	base := d.DialContext
	if opts.Identity != nil {
		p.hbone = hbone.NewPool(hbone.PoolOptions{Identity: opts.Identity, TrustDomains: p.trustDomains,
			Dial: d.DialContext, ConnectTimeout: opts.ConnectTimeout, IdleTimeout: opts.IdleTimeout})
		base = p.dialMesh
		p.dial = base
	}
	if opts.OnDial != nil || opts.OnClose != nil {
		p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := base(ctx, network, addr)
			if opts.OnDial != nil {
				opts.OnDial(err)
			}
			if err != nil || opts.OnClose == nil {
				return c, err
			}
			return &notifyConn{Conn: c, onClose: opts.OnClose}, nil
		}
	}
	p.H1 = NewH1Client(p.dial, opts.MaxIdlePerEndpoint, opts.IdleTimeout)
	p.H1.MaxHeaderBytes, p.H1.MaxHeaders = opts.MaxResponseHeaderBytes, opts.MaxResponseHeaders
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	p.H2C = &http.Transport{
		Proxy:                  nil,
		DialContext:            p.dial,
		Protocols:              &h2c,
		DisableCompression:     true,
		IdleConnTimeout:        opts.IdleTimeout,
		MaxResponseHeaderBytes: int64(opts.MaxResponseHeaderBytes),
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

// ConnOptions are a backend's own connection settings (a
// DestinationRule's connectionPool); zero fields: the pool's.
type ConnOptions struct {
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	MaxRequests    uint32
}

// Conn is the backend's connection settings; nil: the pool's defaults.
func (b *Backend) Conn() *ConnOptions { return b.conn }

// ConnectTimeout is how long a connect to the backend's endpoints may
// take: the backend's own, else def.
func (b *Backend) ConnectTimeout(def time.Duration) time.Duration {
	if b.conn != nil && b.conn.ConnectTimeout > 0 {
		return b.conn.ConnectTimeout
	}
	return def
}

// Dial opens a TCP connection to an endpoint, for TCP services (a
// hostname endpoint to an address of its name, as Resolve gives).
func (p *Pool) Dial(ctx context.Context, addr string) (net.Conn, error) {
	addr, err := p.Resolve(ctx, nil, addr)
	if err != nil {
		return nil, err
	}
	return p.dial(ctx, "tcp", addr)
}

// Close releases idle connections.
func (p *Pool) Close() {
	p.H1.CloseIdleConnections()
	p.H2C.CloseIdleConnections()
	if p.hbone != nil {
		p.hbone.Close()
	}
	p.dns.Close()
}

// Outlier is passive outlier detection, Envoy style: an endpoint with
// Consecutive gateway failures in a row is ejected for EjectFor times the
// number of its ejections so far (capped at ten), then tried again.
type Outlier struct {
	Consecutive int32
	EjectFor    time.Duration

	mu  sync.Mutex
	eps map[string]*endpointHealth
}

// NewOutlier returns detection with Envoy's defaults (5 failures, 30s).
func NewOutlier() *Outlier {
	return &Outlier{Consecutive: 5, EjectFor: 30 * time.Second, eps: map[string]*endpointHealth{}}
}

type endpointHealth struct {
	o            *Outlier
	failures     atomic.Int32
	ejections    atomic.Int32
	fails5xx     atomic.Int32 // 5xx in a row, for a DestinationRule's consecutive5xxErrors
	inflight     atomic.Int32 // requests and connections (Backend.Begin)
	ejectedUntil atomic.Int64 // monotonic nanoseconds
}

func (o *Outlier) state(ep string) *endpointHealth {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.eps[ep]
	if h == nil {
		h = &endpointHealth{o: o}
		o.eps[ep] = h
	}
	return h
}

// Retain forgets endpoints that are no longer in any backend.
func (o *Outlier) Retain(keep map[string]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for ep := range o.eps {
		if !keep[ep] {
			delete(o.eps, ep)
		}
	}
}

func (h *endpointHealth) ejected(now int64) bool { return h.ejectedUntil.Load() > now }

func (h *endpointHealth) report(ok bool) {
	if ok {
		h.failures.Store(0)
		return
	}
	if h.failures.Add(1) < h.o.Consecutive {
		return
	}
	h.failures.Store(0)
	n := min(h.ejections.Add(1), 10)
	h.ejectedUntil.Store(nanotime() + int64(n)*int64(h.o.EjectFor))
}

// Ejected reports whether an endpoint is ejected now (for tests and stats).
func (o *Outlier) Ejected(ep string) bool {
	o.mu.Lock()
	h := o.eps[ep]
	o.mu.Unlock()
	return h != nil && h.ejected(nanotime())
}

// InFlight is the number of requests and connections in flight to an
// endpoint (Backend.Begin), for tests and stats.
func (o *Outlier) InFlight(ep string) int {
	o.mu.Lock()
	h := o.eps[ep]
	o.mu.Unlock()
	if h == nil {
		return 0
	}
	return int(h.inflight.Load())
}

var clockStart = time.Now()

// nanotime is a monotonic clock reading.
func nanotime() int64 { return int64(time.Since(clockStart)) }

// InheritCursor continues the round-robin sequence of the backend this one
// replaces.
func (b *Backend) InheritCursor(old *Backend) { b.next.Store(old.next.Load()) }

// notifyConn reports its Close once.
type notifyConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *notifyConn) Close() error {
	c.once.Do(c.onClose)
	return c.Conn.Close()
}
