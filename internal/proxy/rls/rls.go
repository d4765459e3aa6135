// Package rls is the waypoint's global rate limiting: a client of a rate
// limit service speaking envoy.service.ratelimit.v3.RateLimitService over
// gRPC (github.com/envoyproxy/ratelimit and the like), as Envoy's ratelimit
// HTTP filter (envoy.filters.http.ratelimit) is configured by kgateway for
// a TrafficPolicy's rateLimit.global (source/extensions/filters/http/
// ratelimit and filters/common/ratelimit in Envoy):
//
//   - one ShouldRateLimit call per request, with the provider's domain and
//     one descriptor built from the precompiled entries (Compile); when an
//     entry has no value for the request (a header that is absent) there
//     is no descriptor and no call;
//   - OVER_LIMIT: 429 with the service's raw_body (empty by default) and
//     x-envoy-ratelimited: true; any other overall code lets the request
//     through (Envoy's client treats all but OVER_LIMIT as OK);
//   - response_headers_to_add go on the client's response (the 429 or the
//     upstream's), request_headers_to_add on the upstream request, and with
//     XRateLimitHeaders the x-ratelimit-limit, -remaining and -reset
//     headers (draft-polli-ratelimit-headers-03) computed from the
//     descriptor statuses;
//   - a call that fails or outlives the provider's timeout is an error:
//     with FailOpen the request goes on untouched, otherwise it gets 500.
package rls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Descriptor is a compiled ir.GlobalRateLimit's entries.
type Descriptor struct {
	entries []entry
}

type entry struct {
	kind       string
	key, value string // value: fixed (generic)
	header     string // canonical header name (header)
}

// Compile precompiles the entries of g (nil stays nil).
func Compile(g *ir.GlobalRateLimit) (*Descriptor, error) {
	if g == nil {
		return nil, nil
	}
	if len(g.Entries) == 0 {
		return nil, errors.New("global rate limit without entries")
	}
	d := &Descriptor{entries: make([]entry, 0, len(g.Entries))}
	for _, e := range g.Entries {
		switch e.Kind {
		case ir.RateLimitGeneric, ir.RateLimitRemoteAddress, ir.RateLimitPath:
			d.entries = append(d.entries, entry{kind: e.Kind, key: e.Key, value: e.Value})
		case ir.RateLimitHeader:
			if e.Header == "" {
				return nil, errors.New("global rate limit header entry without a header")
			}
			d.entries = append(d.entries, entry{kind: e.Kind, key: e.Key, header: http.CanonicalHeaderKey(e.Header)})
		default:
			return nil, fmt.Errorf("global rate limit entry of unknown kind %q", e.Kind)
		}
	}
	return d, nil
}

// Request is what a descriptor is built from.
type Request struct {
	Headers http.Header
	// PathWithQuery is the :path (normalized path and query).
	PathWithQuery string
	// Remote is the client's address.
	Remote netip.Addr
}

// Build returns the request's descriptor, or nil when an entry has no
// value for it (no call is made then, as in Envoy).
func (d *Descriptor) Build(r Request) *rlcommon.RateLimitDescriptor {
	out := &rlcommon.RateLimitDescriptor{Entries: make([]*rlcommon.RateLimitDescriptor_Entry, len(d.entries))}
	for i := range d.entries {
		e := &d.entries[i]
		v := e.value
		switch e.kind {
		case ir.RateLimitHeader:
			vs := r.Headers[e.header]
			if len(vs) == 0 {
				return nil
			}
			v = vs[0]
		case ir.RateLimitPath:
			v = r.PathWithQuery
		case ir.RateLimitRemoteAddress:
			if !r.Remote.IsValid() {
				return nil
			}
			v = r.Remote.Unmap().String()
		}
		out.Entries[i] = &rlcommon.RateLimitDescriptor_Entry{Key: e.key, Value: validUTF8(v)}
	}
	return out
}

// validUTF8 replaces the bytes of s that are not UTF-8 with '!' (as Envoy's
// sanitizeUtf8String for ext_authz): a proto3 string must be valid UTF-8,
// and a value that could not be sent would make the call fail, so that a
// client could choose to fail open past the limit.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			b[i] = '!'
		}
		i += n
	}
	return string(b)
}

// Outcome is what the service decided.
type Outcome int

// The outcomes.
const (
	OK        Outcome = iota // go on
	OverLimit                // 429
	Error                    // the call failed: FailOpen decides
)

// Result is one call's outcome. Headers are for the client's response
// (and Body for the 429), RequestHeaders for the upstream request.
type Result struct {
	Outcome        Outcome
	Headers        http.Header
	RequestHeaders http.Header
	Body           []byte
	Err            error
}

// Options configure New.
type Options struct {
	// Resolve maps the provider's host and port to an address to dial, on
	// every new connection. Required.
	Resolve func(host string, port uint16) (string, error)
	// ConnectTimeout bounds a connect (default 10s).
	ConnectTimeout time.Duration
}

// Client calls one provider's service. It is safe for concurrent use.
type Client struct {
	p    *ir.RateLimitProvider
	conn *grpc.ClientConn
	rls  rlsv3.RateLimitServiceClient
}

// New returns a client for p. The connection is made on the first call
// and kept (one HTTP/2 connection).
func New(p *ir.RateLimitProvider, opts Options) (*Client, error) {
	if p == nil {
		return nil, errors.New("rls: nil provider")
	}
	if p.Invalid != "" {
		return nil, fmt.Errorf("rls: provider %q is invalid: %s", p.Name, p.Invalid)
	}
	if opts.Resolve == nil {
		return nil, errors.New("rls: Options.Resolve is required")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	d := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		addr, err := opts.Resolve(p.Host, p.Port)
		if err != nil {
			return nil, fmt.Errorf("resolve %s:%d: %w", p.Host, p.Port, err)
		}
		return d.DialContext(ctx, "tcp", addr)
	}
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithAuthority(authority(p)),
	)
	if err != nil {
		return nil, fmt.Errorf("rls: provider %q: %w", p.Name, err)
	}
	return &Client{p: p, conn: conn, rls: rlsv3.NewRateLimitServiceClient(conn)}, nil
}

// authority is the provider's, else the outbound cluster name with "|"
// replaced by "_." (as the ext_authz gRPC client names it).
func authority(p *ir.RateLimitProvider) string {
	if p.Authority != "" {
		return p.Authority
	}
	return strings.ReplaceAll(fmt.Sprintf("outbound|%d||%s", p.Port, p.Host), "|", "_.")
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Provider is the client's provider.
func (c *Client) Provider() *ir.RateLimitProvider { return c.p }

// ShouldRateLimit asks the service about one descriptor.
func (c *Client) ShouldRateLimit(ctx context.Context, d *rlcommon.RateLimitDescriptor) Result {
	if c.p.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.p.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	resp, err := c.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: c.p.Domain, Descriptors: []*rlcommon.RateLimitDescriptor{d}})
	if err != nil {
		return Result{Outcome: Error, Err: err}
	}
	return decide(resp, c.p.XRateLimitHeaders)
}

// decide turns a response into a result (Envoy's Filter::complete).
func decide(resp *rlsv3.RateLimitResponse, xrl bool) Result {
	res := Result{Outcome: OK}
	if hs := resp.GetResponseHeadersToAdd(); len(hs) > 0 {
		res.Headers = http.Header{}
		addHeaders(res.Headers, hs)
	}
	if hs := resp.GetRequestHeadersToAdd(); len(hs) > 0 {
		res.RequestHeaders = http.Header{}
		addHeaders(res.RequestHeaders, hs)
	}
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		res.Outcome = OverLimit
		res.Body = resp.GetRawBody()
		if res.Headers == nil {
			res.Headers = http.Header{}
		}
		res.Headers["X-Envoy-Ratelimited"] = []string{"true"}
	}
	if xrl {
		xRateLimitHeaders(&res, resp.GetStatuses())
	}
	return res
}

func addHeaders(h http.Header, hs []*corev3.HeaderValue) {
	for _, kv := range hs {
		k := http.CanonicalHeaderKey(kv.GetKey())
		if k == "" {
			continue
		}
		v := kv.GetValue()
		if v == "" {
			v = string(kv.GetRawValue())
		}
		h[k] = append(h[k], v)
	}
}

// xRateLimitHeaders adds the draft 03 headers as Envoy's
// XRateLimitHeaderUtils::create: the limit and remaining of the status
// with the fewest remaining, the quota policy of every status with a
// known unit ("<limit>, <limit>;w=<window>[;name=\"...\"]..."), and its
// reset in seconds.
func xRateLimitHeaders(res *Result, statuses []*rlsv3.RateLimitResponse_DescriptorStatus) {
	var min *rlsv3.RateLimitResponse_DescriptorStatus
	var policy strings.Builder
	for _, s := range statuses {
		lim := s.GetCurrentLimit()
		if lim == nil {
			continue
		}
		if min == nil || s.GetLimitRemaining() < min.GetLimitRemaining() {
			min = s
		}
		if w := window(lim.GetUnit()); w > 0 {
			fmt.Fprintf(&policy, ", %d;w=%d", lim.GetRequestsPerUnit(), w)
			if n := lim.GetName(); n != "" {
				fmt.Fprintf(&policy, ";name=%q", n)
			}
		}
	}
	if min == nil {
		return
	}
	if res.Headers == nil {
		res.Headers = http.Header{}
	}
	res.Headers["X-Ratelimit-Limit"] = append(res.Headers["X-Ratelimit-Limit"],
		strconv.FormatUint(uint64(min.GetCurrentLimit().GetRequestsPerUnit()), 10)+policy.String())
	res.Headers["X-Ratelimit-Remaining"] = append(res.Headers["X-Ratelimit-Remaining"], strconv.FormatUint(uint64(min.GetLimitRemaining()), 10))
	res.Headers["X-Ratelimit-Reset"] = append(res.Headers["X-Ratelimit-Reset"], strconv.FormatInt(min.GetDurationUntilReset().GetSeconds(), 10))
}

func window(u rlsv3.RateLimitResponse_RateLimit_Unit) int {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	}
	return 0
}
