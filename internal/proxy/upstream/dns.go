package upstream

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// DNSOptions configure the resolver of hostname endpoints (a ServiceEntry
// of resolution DNS or DNS_ROUND_ROBIN lists its hosts, or its endpoints'
// names, as host:port).
type DNSOptions struct {
	// Servers are the DNS servers asked, in order (host:port); empty: the
	// nameservers of /etc/resolv.conf, on port 53.
	Servers []string
	// Timeout bounds one query to one server (default 5s).
	Timeout time.Duration
	// MinTTL is the shortest time an answer is kept before it is asked
	// again (default 1s; a TTL of 0 would otherwise ask continually);
	// MaxTTL the longest (default 1h).
	MinTTL, MaxTTL time.Duration
	// RetryMax caps the wait before asking again after a failure (it
	// doubles from MinTTL; default 30s).
	RetryMax time.Duration
	Logger   *slog.Logger
}

func (o *DNSOptions) defaults() {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MinTTL == 0 {
		o.MinTTL = time.Second
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = time.Hour
	}
	if o.RetryMax == 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DNSStats count the resolver's work, for metrics.
type DNSStats struct {
	// Resolved, Empty and Failed count the resolutions that gave
	// addresses, that the servers answered with none (NXDOMAIN, or no A
	// and no AAAA record) and that got no answer (timeouts, SERVFAIL, ...).
	Resolved, Empty, Failed uint64
	// Stale is the number of hostnames served from their last good answer
	// because asking again failed.
	Stale int
}

// Resolver resolves the hostnames of endpoints, with a cache: each name is
// asked when a configuration first lists it, then again when its answer's
// TTL runs out (in the background, so no request waits for DNS except the
// first to a name never answered yet). An answer is replaced only by
// another answer: when asking again fails, the last good answer stays in
// use (logged, counted, and reported in DNSStats.Stale) and the name is
// asked again with backoff. Connections to a name go round its addresses.
type Resolver struct {
	opts    DNSOptions
	servers []string
	log     *slog.Logger

	resolved, empty, failed atomic.Uint64

	mu     sync.Mutex
	hosts  map[string]*dnsHost
	closed bool
}

type dnsHost struct {
	name  string
	ready chan struct{} // closed once the first resolution ended
	once  sync.Once
	addrs atomic.Pointer[[]netip.Addr]
	next  atomic.Uint32
	// lastErr is why the last resolution gave no addresses ("" when it did).
	lastErr atomic.Pointer[string]

	// Guarded by Resolver.mu.
	timer    *time.Timer
	retired  bool
	failures int
	stale    bool
}

// NewResolver makes a resolver; it asks nothing until Retain or Lookup
// names a host.
func NewResolver(o DNSOptions) *Resolver {
	o.defaults()
	servers := o.Servers
	if len(servers) == 0 {
		servers = systemNameservers("/etc/resolv.conf")
	}
	return &Resolver{opts: o, servers: servers, log: o.Logger, hosts: map[string]*dnsHost{}}
}

// systemNameservers reads the nameserver lines of a resolv.conf file
// (127.0.0.1:53 when there are none).
func systemNameservers(path string) []string {
	var out []string
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "nameserver" {
				if a, err := netip.ParseAddr(fields[1]); err == nil {
					out = append(out, netip.AddrPortFrom(a, 53).String())
				}
			}
		}
		_ = f.Close()
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:53"}
	}
	return out
}

// ParseDNSServers checks DNS server addresses: IP:port, or an IP (port
// 53). They are returned as IP:port.
func ParseDNSServers(list []string) ([]string, error) {
	var out []string
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
			out = append(out, ap.String())
		} else if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		} else {
			return nil, fmt.Errorf("%q is not an IP address or IP:port", s)
		}
	}
	return out, nil
}

// Servers are the DNS servers the resolver asks.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Stats reports the counts so far.
func (r *Resolver) Stats() DNSStats {
	s := DNSStats{Resolved: r.resolved.Load(), Empty: r.empty.Load(), Failed: r.failed.Load()}
	r.mu.Lock()
	for _, h := range r.hosts {
		if h.stale {
			s.Stale++
		}
	}
	r.mu.Unlock()
	return s
}

// Retain makes the names the resolver follows exactly hosts: new ones are
// asked now, the others forgotten.
func (r *Resolver) Retain(hosts map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for name, h := range r.hosts {
		if !hosts[name] {
			h.retired = true
			if h.timer != nil {
				h.timer.Stop()
			}
			delete(r.hosts, name)
		}
	}
	for name := range hosts {
		r.hostLocked(name)
	}
}

// hostLocked finds or starts following a name; r.mu is held.
func (r *Resolver) hostLocked(name string) *dnsHost {
	h := r.hosts[name]
	if h == nil {
		h = &dnsHost{name: name, ready: make(chan struct{})}
		r.hosts[name] = h
		go r.refresh(h)
	}
	return h
}

// Close stops every background resolution.
func (r *Resolver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for name, h := range r.hosts {
		h.retired = true
		if h.timer != nil {
			h.timer.Stop()
		}
		h.once.Do(func() { close(h.ready) })
		delete(r.hosts, name)
	}
}

// Lookup returns the next address of a name, from the cache; only a name
// never answered yet waits for its first resolution (bounded by ctx).
func (r *Resolver) Lookup(ctx context.Context, name string) (netip.Addr, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return netip.Addr{}, errors.New("dns: resolver closed")
	}
	h := r.hostLocked(name)
	r.mu.Unlock()
	select {
	case <-h.ready:
	case <-ctx.Done():
		return netip.Addr{}, fmt.Errorf("dns: waiting for %s: %w", name, ctx.Err())
	}
	addrs := h.addrs.Load()
	if addrs == nil || len(*addrs) == 0 {
		why := "no answer"
		if e := h.lastErr.Load(); e != nil && *e != "" {
			why = *e
		}
		return netip.Addr{}, fmt.Errorf("dns: no address for %s: %s", name, why)
	}
	i := h.next.Add(1) - 1
	return (*addrs)[int(i%uint32(len(*addrs)))], nil
}

// refresh asks for a name once and schedules the next time.
func (r *Resolver) refresh(h *dnsHost) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout*time.Duration(2*len(r.servers)+1))
	addrs, ttl, err := r.resolve(ctx, h.name)
	cancel()
	r.mu.Lock()
	defer h.once.Do(func() { close(h.ready) })
	defer r.mu.Unlock()
	if h.retired {
		return
	}
	var next time.Duration
	switch {
	case err == nil:
		r.resolved.Add(1)
		old := h.addrs.Swap(&addrs)
		h.lastErr.Store(nil)
		if h.stale {
			r.log.Info("endpoint hostname resolved again", "host", h.name, "addresses", addrs)
		} else if old == nil || !slices.Equal(*old, addrs) {
			r.log.Debug("endpoint hostname resolved", "host", h.name, "addresses", addrs, "ttl", ttl.String())
		}
		h.failures, h.stale = 0, false
		next = min(max(ttl, r.opts.MinTTL), r.opts.MaxTTL)
	case errors.Is(err, errNoAddress):
		// The servers say the name has no address: that is an answer, and
		// the endpoint has none until it gets one.
		r.empty.Add(1)
		none := []netip.Addr{}
		h.addrs.Store(&none)
		msg := err.Error()
		h.lastErr.Store(&msg)
		r.log.Warn("endpoint hostname has no address", "host", h.name, "error", msg)
		h.failures++
		h.stale = false
		next = r.backoff(h.failures)
	default:
		r.failed.Add(1)
		msg := err.Error()
		h.failures++
		if cur := h.addrs.Load(); cur != nil && len(*cur) > 0 {
			h.stale = true
			r.log.Warn("endpoint hostname resolution failed; keeping the last answer", "host", h.name,
				"addresses", *cur, "error", msg, "failures", h.failures)
		} else {
			h.lastErr.Store(&msg)
			r.log.Warn("endpoint hostname resolution failed", "host", h.name, "error", msg, "failures", h.failures)
		}
		next = r.backoff(h.failures)
	}
	h.timer = time.AfterFunc(next, func() { r.refresh(h) })
}

// backoff is the wait before asking again after n failures in a row.
func (r *Resolver) backoff(n int) time.Duration {
	d := r.opts.MinTTL
	for i := 1; i < n && d < r.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryMax)
}

// errNoAddress is an answer without addresses (NXDOMAIN, or no record).
var errNoAddress = errors.New("no A or AAAA record")

// resolve asks the servers in turn for a name's IPv4 addresses, else its
// IPv6 ones (IPv4 preferred, as Istio's DNS clusters). The TTL is the
// shortest of the records used.
func (r *Resolver) resolve(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	fqdn := name
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	qname, err := dnsmessage.NewName(fqdn)
	if err != nil {
		return nil, 0, fmt.Errorf("bad hostname %q: %w", name, err)
	}
	var errs []error
	for _, server := range r.servers {
		addrs, ttl, err := r.exchange(ctx, server, qname, dnsmessage.TypeA)
		if err == nil && len(addrs) == 0 {
			addrs, ttl, err = r.exchange(ctx, server, qname, dnsmessage.TypeAAAA)
		}
		switch {
		case err == nil && len(addrs) == 0:
			return nil, ttl, fmt.Errorf("%s: %w", server, errNoAddress)
		case err == nil:
			slices.SortFunc(addrs, netip.Addr.Compare)
			return slices.Compact(addrs), ttl, nil
		case errors.Is(err, errNoAddress):
			return nil, 0, fmt.Errorf("%s: %w", server, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, errors.Join(errs...)
}

// exchange sends one query to one server over UDP (again over TCP when the
// answer is truncated) and returns the addresses of the type asked.
func (r *Resolver) exchange(ctx context.Context, server string, name dnsmessage.Name, qtype dnsmessage.Type) ([]netip.Addr, time.Duration, error) {
	id := uint16(rand.Uint32())
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	q := dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}
	if err := b.StartQuestions(); err != nil {
		return nil, 0, err
	}
	if err := b.Question(q); err != nil {
		return nil, 0, err
	}
	msg, err := b.Finish()
	if err != nil {
		return nil, 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	resp, err := exchangeUDP(qctx, server, msg, id)
	if err != nil {
		return nil, 0, err
	}
	addrs, ttl, truncated, err := parseAnswer(resp, id, q)
	if truncated {
		if resp, err = exchangeTCP(qctx, server, msg); err != nil {
			return nil, 0, err
		}
		addrs, ttl, _, err = parseAnswer(resp, id, q)
	}
	return addrs, ttl, err
}

func exchangeUDP(ctx context.Context, server string, msg []byte, id uint16) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Datagrams that are not the answer to this query are dropped.
		if n >= 2 && binary.BigEndian.Uint16(buf) == id {
			return buf[:n], nil
		}
	}
}

func exchangeTCP(ctx context.Context, server string, msg []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// parseAnswer reads the addresses of a response to q (the records of q's
// type in the answer section, whatever CNAMEs led to them).
func parseAnswer(resp []byte, id uint16, q dnsmessage.Question) (addrs []netip.Addr, ttl time.Duration, truncated bool, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return nil, 0, false, err
	}
	if h.ID != id || !h.Response {
		return nil, 0, false, errors.New("not the answer to the query")
	}
	if h.Truncated {
		return nil, 0, true, nil
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, 0, false, fmt.Errorf("%w (NXDOMAIN)", errNoAddress)
	default:
		return nil, 0, false, fmt.Errorf("server answered %s", h.RCode)
	}
	got, err := p.Question()
	if err != nil || got.Type != q.Type || !strings.EqualFold(got.Name.String(), q.Name.String()) {
		return nil, 0, false, errors.New("the answer is to another question")
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, 0, false, err
	}
	minTTL := uint32(0)
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, 0, false, err
		}
		switch {
		case rh.Type == dnsmessage.TypeA && q.Type == dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return nil, 0, false, err
			}
			addrs = append(addrs, netip.AddrFrom4(a.A))
		case rh.Type == dnsmessage.TypeAAAA && q.Type == dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return nil, 0, false, err
			}
			addrs = append(addrs, netip.AddrFrom16(a.AAAA).Unmap())
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, 0, false, err
			}
			continue
		}
		if len(addrs) == 1 || rh.TTL < minTTL {
			minTTL = rh.TTL
		}
	}
	return addrs, time.Duration(minTTL) * time.Second, false, nil
}

// HostnamesOf lists the hostnames among a configuration's endpoints.
func HostnamesOf(w *ir.Waypoint) map[string]bool {
	out := map[string]bool{}
	if w == nil {
		return out
	}
	for _, b := range w.Backends {
		for _, ep := range b.Endpoints {
			if host, ok := endpointHostname(ep); ok {
				out[host] = true
			}
		}
	}
	return out
}

// endpointHostname is the host of a host:port endpoint whose host is a
// name, not an IP address.
func endpointHostname(ep string) (string, bool) {
	if _, err := netip.ParseAddrPort(ep); err == nil {
		return "", false
	}
	host, _, err := net.SplitHostPort(ep)
	if err != nil || host == "" {
		return "", false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", false
	}
	return host, true
}

// Resolve turns an endpoint of a backend into the address to connect to:
// itself when it is an IP:port, else its name resolved from the cache.
// A name that cannot be resolved is a connection failure (a *net.OpError
// of op "dial"), so it is retried on another endpoint and answered 503
// as a refused connection would be.
func (p *Pool) Resolve(ctx context.Context, b *Backend, ep string) (string, error) {
	if b != nil && !b.named {
		return ep, nil
	}
	host, ok := endpointHostname(ep)
	if !ok {
		return ep, nil
	}
	_, port, _ := net.SplitHostPort(ep)
	a, err := p.dns.Lookup(ctx, host)
	if err != nil {
		return "", &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	n, _ := strconv.Atoi(port)
	return netip.AddrPortFrom(a, uint16(n)).String(), nil
}

// SetHostnames makes the resolver follow the hostnames of a configuration
// (HostnamesOf) and forget the others.
func (p *Pool) SetHostnames(hosts map[string]bool) { p.dns.Retain(hosts) }

// DNSStats reports the resolver's counts.
func (p *Pool) DNSStats() DNSStats { return p.dns.Stats() }
