// Package extauthz asks an external authorizer about a request, speaking the
// two protocols of Envoy's ext_authz filter as an Istio proxy configures it
// for a CUSTOM AuthorizationPolicy (istiod pilot/pkg/security/authz/builder/
// extauthz.go, Envoy source/extensions/filters/common/ext_authz):
//
//   - HTTP (envoyExtAuthzHttp): the request's method, path (with pathPrefix
//     prepended, query included) and Host are sent with Content-Length,
//     Authorization and the headers selected by includeRequestHeadersInCheck,
//     plus includeAdditionalHeadersInCheck. 200 allows, and the response
//     headers selected by headersToUpstreamOnAllow are set on the upstream
//     request. 5xx or no answer is an error. Any other status denies: that
//     status, the body and the headers selected by headersToDownstreamOnDeny
//     (all but Host when it is empty) go to the client. Redirects are not
//     followed: a 302 is a denial carrying Location.
//   - gRPC (envoyExtAuthzGrpc): envoy.service.auth.v3.Authorization/Check with
//     a CheckRequest holding the source and destination addresses and
//     principals and the HTTP request (all headers, pseudo-headers included,
//     the body when configured). Status OK allows and ok_response's mutations
//     apply; another status denies with denied_response's status (403 by
//     default), headers and body; an RPC failure or an error_response is an
//     error.
//
// An error allows the request when the provider has failOpen, and otherwise
// denies it with statusOnError (403 by default). A check that does not finish
// within the provider's timeout (600s by default) is an error.
package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Request is what the proxy knows about the request being authorized.
type Request struct {
	// Method, Scheme ("http"), Host (the :authority as received), Path (the
	// normalized, still percent-encoded path, without query) and RawQuery.
	Method, Scheme, Host, Path, RawQuery string
	// Headers are the request headers as the proxy will forward them.
	Headers http.Header
	// Body is the buffered request body when the provider has Body set and
	// the request has one, nil otherwise. Read at most MaxRequestBytes+1
	// bytes: a longer Body is answered 413 (or truncated when the provider
	// allows partial messages) and the rest stays with the request.
	Body []byte
	// Source is the client's address, Destination the address it dialled.
	Source, Destination netip.AddrPort
	// SourcePrincipal is the client's SPIFFE identity ("spiffe://" is added
	// when missing), "" for none.
	SourcePrincipal string
	// Protocol is "HTTP/1.0", "HTTP/1.1" or "HTTP/2" (net/http's "HTTP/2.0"
	// is accepted); "" is taken as HTTP/1.1.
	Protocol string
}

// Decision is the outcome of a check.
type Decision struct {
	Allowed bool
	// Status is the status for the client when denied: the authorizer's (403
	// when it gave none), statusOnError when the check failed, 413 when the
	// body is over the limit. 0 when allowed.
	Status int
	// Body and Headers go to the client when denied.
	Body    []byte
	Headers http.Header

	// When allowed: UpstreamHeaders replace request headers of the same name,
	// UpstreamAppend are appended to them (joined with ","),
	// UpstreamRemove names request headers to drop, and QuerySet/QueryRemove
	// edit the query string. Pseudo-headers and Host are never touched.
	UpstreamHeaders http.Header
	UpstreamAppend  http.Header
	UpstreamRemove  []string
	QuerySet        []QueryParam
	QueryRemove     []string
	// ResponseHeaders are applied to the client's response when allowed.
	ResponseHeaders []HeaderMutation

	// Err is why the check failed (then Allowed is FailOpen); nil when the
	// authorizer answered.
	Err error
}

// QueryParam is a query parameter an allowed check sets.
type QueryParam struct{ Key, Value string }

// HeaderAction is how a HeaderMutation applies (Envoy's HeaderAppendAction).
type HeaderAction int

// The header actions.
const (
	HeaderAppend            HeaderAction = iota // add a value (APPEND_IF_EXISTS_OR_ADD)
	HeaderAddIfAbsent                           // only if the header is absent
	HeaderSet                                   // replace or add (OVERWRITE_IF_EXISTS_OR_ADD)
	HeaderOverwriteIfExists                     // replace only if present
)

// HeaderMutation is one header change on the client's response.
type HeaderMutation struct {
	Name, Value string
	Action      HeaderAction
}

// Client checks requests against one provider. It is safe for concurrent use.
type Client interface {
	Check(ctx context.Context, r *Request) Decision
	Close() error
}

// Options configure New.
type Options struct {
	// Resolve maps the provider's host and port to an address to dial
	// ("ip:port"). It is called for every new connection, so it may follow
	// endpoint changes. Required.
	Resolve func(host string, port uint16) (string, error)
	// LocalPrincipal is the waypoint's own SPIFFE identity, sent as the
	// destination principal of gRPC checks; "" for none.
	LocalPrincipal string
	// ConnectTimeout bounds a connect to the authorizer (default 10s, Istio's
	// default connectTimeout); the check's own timeout bounds it too.
	ConnectTimeout time.Duration
	// HTTP2 makes the HTTP provider's client speak HTTP/2 without TLS (h2c),
	// for an authorizer port whose protocol is http2; HTTP/1.1 otherwise.
	HTTP2 bool
}

// New returns a client for the provider. Connections are reused across checks
// (HTTP/1.1 keep-alive or one HTTP/2 connection for gRPC).
func New(p *ir.ExtAuthzProvider, opts Options) (Client, error) {
	if p == nil {
		return nil, errors.New("extauthz: nil provider")
	}
	if p.Invalid != "" {
		return nil, fmt.Errorf("extauthz: provider %q is invalid: %s", p.Name, p.Invalid)
	}
	if opts.Resolve == nil {
		return nil, errors.New("extauthz: Options.Resolve is required")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	switch p.Kind {
	case ir.ExtAuthzHTTP:
		return newHTTP(p, opts), nil
	case ir.ExtAuthzGRPC:
		return newGRPC(p, opts)
	}
	return nil, fmt.Errorf("extauthz: provider %q has no kind", p.Name)
}

// dialer returns a dial function that resolves the provider on every dial.
func dialer(p *ir.ExtAuthzProvider, opts Options) func(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context) (net.Conn, error) {
		addr, err := opts.Resolve(p.Host, p.Port)
		if err != nil {
			return nil, fmt.Errorf("resolve %s:%d: %w", p.Host, p.Port, err)
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// failed is the decision for a check that could not be made.
func failed(p *ir.ExtAuthzProvider, err error) Decision {
	if p.FailOpen {
		return Decision{Allowed: true, Err: err}
	}
	return Decision{Status: p.StatusOnError, Err: err}
}

// checkContext bounds a check by the provider's timeout (0: none).
func checkContext(ctx context.Context, p *ir.ExtAuthzProvider) (context.Context, context.CancelFunc) {
	if p.TimeoutMs > 0 {
		return context.WithTimeout(ctx, time.Duration(p.TimeoutMs)*time.Millisecond)
	}
	return context.WithCancel(ctx)
}

// errBodyTooLarge: Envoy answers 413 without a check when the body is over
// maxRequestBytes and partial messages are not allowed, whatever failOpen says.
var errBodyTooLarge = errors.New("request body larger than includeRequestBodyInCheck.maxRequestBytes")

// checkBody returns the body to send and the x-envoy-auth-partial-body value
// ("" when no body is sent).
func checkBody(p *ir.ExtAuthzProvider, r *Request) (body []byte, partial string, err error) {
	if p.Body == nil || r.Body == nil {
		return nil, "", nil
	}
	body, partial = r.Body, "false"
	if max := int(p.Body.MaxRequestBytes); len(body) > max {
		if !p.Body.AllowPartialMessage {
			return nil, "", errBodyTooLarge
		}
		body, partial = body[:max], "true"
	}
	return body, partial, nil
}

const partialBodyHeader = "x-envoy-auth-partial-body"

// hopByHop are stripped by Envoy's connection manager before any filter runs,
// so an authorizer never sees them.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "host": true,
}

// headerMap is the request headers as Envoy puts them in a CheckRequest:
// lower-case names, repeated headers joined with ",", values made valid
// UTF-8, a client-sent x-envoy-auth-partial-body dropped.
func headerMap(h http.Header) map[string]string {
	m := make(map[string]string, len(h)+5)
	for k, vs := range h {
		lk := strings.ToLower(k)
		if hopByHop[lk] || lk == partialBodyHeader || len(vs) == 0 {
			continue
		}
		v := sanitizeUTF8(strings.Join(vs, ","))
		if old, ok := m[lk]; ok { // two spellings of one name
			v = old + "," + v
		}
		m[lk] = v
	}
	return m
}

// sanitizeUTF8 replaces every byte that is not part of valid UTF-8 with "!"
// (Envoy MessageUtil::sanitizeUtf8String).
func sanitizeUTF8(s string) string {
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

// pathWithQuery is Envoy's :path: the path and, when there is one, the query.
func pathWithQuery(r *Request) string {
	p := r.Path
	if p == "" {
		p = "/"
	}
	if r.RawQuery != "" {
		p += "?" + r.RawQuery
	}
	return p
}

// protocol maps a request's protocol to Envoy's names.
func protocol(p string) string {
	switch p {
	case "HTTP/2.0", "HTTP/2":
		return "HTTP/2"
	case "HTTP/1.0":
		return "HTTP/1.0"
	case "HTTP/3.0", "HTTP/3":
		return "HTTP/3"
	}
	return "HTTP/1.1"
}

// matcher is a header-name list as istiod compiles it (generateHeaders):
// "abc" exact, "abc*" prefix, "*abc" suffix, ignoring case.
type matcher []pattern

type pattern struct {
	value        string // lower case
	prefix, suff bool
}

func newMatcher(list []string, always ...string) matcher {
	m := make(matcher, 0, len(list)+len(always))
	for _, s := range list {
		s = strings.ToLower(s)
		switch {
		case strings.HasPrefix(s, "*"):
			m = append(m, pattern{value: s[1:], suff: true})
		case strings.HasSuffix(s, "*"):
			m = append(m, pattern{value: s[:len(s)-1], prefix: true})
		default:
			m = append(m, pattern{value: s})
		}
	}
	for _, s := range always {
		m = append(m, pattern{value: s})
	}
	return m
}

func (m matcher) match(name string) bool {
	name = strings.ToLower(name)
	for _, p := range m {
		switch {
		case p.suff && strings.HasSuffix(name, p.value),
			p.prefix && strings.HasPrefix(name, p.value),
			!p.suff && !p.prefix && name == p.value:
			return true
		}
	}
	return false
}

// isPseudoOrHost: headers an authorizer may not change upstream.
func isPseudoOrHost(name string) bool {
	return strings.HasPrefix(name, ":") || strings.EqualFold(name, "host")
}

// ApplyUpstream applies an allowed decision's request mutations to the
// request going upstream, in Envoy's order: set, append, remove, then the
// query parameters (when u is not nil).
func (d *Decision) ApplyUpstream(h http.Header, u *url.URL) {
	for k, vs := range d.UpstreamHeaders {
		if !isPseudoOrHost(k) {
			h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
		}
	}
	for k, vs := range d.UpstreamAppend {
		if isPseudoOrHost(k) {
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			if old := h.Values(ck); len(old) > 0 {
				h[ck] = []string{strings.Join(old, ",") + "," + v}
			} else {
				h[ck] = []string{v}
			}
		}
	}
	for _, k := range d.UpstreamRemove {
		if !isPseudoOrHost(k) {
			h.Del(k)
		}
	}
	if u == nil || (len(d.QuerySet) == 0 && len(d.QueryRemove) == 0) {
		return
	}
	q := u.Query()
	for _, p := range d.QuerySet {
		q.Set(p.Key, p.Value)
	}
	for _, k := range d.QueryRemove {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
}

// ApplyResponse applies an allowed decision's ResponseHeaders to the
// client's response headers.
func (d *Decision) ApplyResponse(h http.Header) {
	for _, m := range d.ResponseHeaders {
		k := http.CanonicalHeaderKey(m.Name)
		_, present := h[k]
		switch m.Action {
		case HeaderAppend:
			h.Add(k, m.Value)
		case HeaderAddIfAbsent:
			if !present {
				h.Set(k, m.Value)
			}
		case HeaderSet:
			h.Set(k, m.Value)
		case HeaderOverwriteIfExists:
			if present {
				h.Set(k, m.Value)
			}
		}
	}
}

func portString(p uint16) string { return strconv.Itoa(int(p)) }
