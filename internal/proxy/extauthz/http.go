package extauthz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// maxAuthzResponse bounds the authorizer's response body kept in memory; a
// longer one is a failed check.
const maxAuthzResponse = 1 << 20

// headersToRemoveHeader is how an HTTP authorizer names request headers to
// drop on allow (Envoy Headers::EnvoyAuthHeadersToRemove).
const headersToRemoveHeader = "X-Envoy-Auth-Headers-To-Remove"

type httpClient struct {
	p         *ir.ExtAuthzProvider
	tr        *http.Transport
	client    *http.Client
	authority string // host:port, the connection pool's key
	request   matcher
	upstream  matcher
	onDeny    matcher // nil: every header but Host
	onAllow   matcher
	additions http.Header
}

func newHTTP(p *ir.ExtAuthzProvider, opts Options) *httpClient {
	dial := dialer(p, opts)
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if opts.HTTP2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	c := &httpClient{
		p:  p,
		tr: tr,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		authority: net.JoinHostPort(p.Host, portString(p.Port)),
		// Envoy always adds Authorization, :method, :path and :authority.
		request:  newMatcher(p.IncludeRequestHeadersInCheck, "authorization"),
		upstream: newMatcher(p.HeadersToUpstreamOnAllow),
		onAllow:  newMatcher(p.HeadersToDownstreamOnAllow),
	}
	if len(p.HeadersToDownstreamOnDeny) > 0 {
		// With a list, Envoy also passes these on.
		c.onDeny = newMatcher(p.HeadersToDownstreamOnDeny, "www-authenticate", "location")
	}
	if len(p.IncludeAdditionalHeadersInCheck) > 0 {
		c.additions = http.Header{}
		for k, v := range p.IncludeAdditionalHeadersInCheck {
			c.additions.Set(k, v)
		}
	}
	return c
}

func (c *httpClient) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

func (c *httpClient) Check(ctx context.Context, r *Request) Decision {
	body, partial, err := checkBody(c.p, r)
	if err != nil {
		return Decision{Status: http.StatusRequestEntityTooLarge, Err: err}
	}
	ctx, cancel := checkContext(ctx, c.p)
	defer cancel()
	req, err := c.newRequest(ctx, r, body, partial)
	if err != nil {
		return failed(c.p, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return failed(c.p, err)
	}
	defer func() { _ = resp.Body.Close() }()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthzResponse+1))
	if err != nil {
		return failed(c.p, fmt.Errorf("reading the authorizer's response: %w", err))
	}
	if len(respBody) > maxAuthzResponse {
		return failed(c.p, fmt.Errorf("authorizer response body over %d bytes", maxAuthzResponse))
	}
	return c.decide(resp, respBody)
}

// newRequest builds the check request as Envoy's RawHttpClientImpl does.
func (c *httpClient) newRequest(ctx context.Context, r *Request, body []byte, partial string) (*http.Request, error) {
	path := c.p.PathPrefix + pathWithQuery(r)
	u := &url.URL{Scheme: "http", Host: c.authority}
	if strings.HasPrefix(path, "//") {
		// Opaque would be written as an absolute URI; a path is sent as is
		// when it is a valid encoding.
		u.Path, _ = url.PathUnescape(path)
		u.RawPath = path
		if i := strings.IndexByte(path, '?'); i >= 0 {
			u.Path, _ = url.PathUnescape(path[:i])
			u.RawPath, u.RawQuery = path[:i], path[i+1:]
		}
	} else {
		u.Opaque = path
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if len(body) > 0 && !c.p.Body.PackAsBytes {
		// Envoy fills the check's body from the CheckRequest's string field,
		// made valid UTF-8 byte for byte.
		body = []byte(sanitizeUTF8(string(body)))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.authority+"/", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.Host = r.Host
	if req.Host == "" {
		req.Host = c.p.Host
	}
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		// Envoy sends "content-length: 0"; net/http does too except for an
		// empty GET or HEAD, where it sends none.
		req.Body = http.NoBody
	}
	headers := headerMap(r.Headers)
	if partial != "" {
		headers[partialBodyHeader] = partial
	}
	for k, v := range headers {
		if k == "content-length" || !c.request.match(k) {
			continue
		}
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	for k, vs := range c.additions {
		req.Header[k] = vs
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // net/http would add its own
	}
	return req, nil
}

// decide turns the authorizer's answer into a decision (Envoy
// RawHttpClientImpl::toResponse).
func (c *httpClient) decide(resp *http.Response, body []byte) Decision {
	if resp.StatusCode >= 500 && resp.StatusCode <= 599 {
		return failed(c.p, fmt.Errorf("authorizer answered %d", resp.StatusCode))
	}
	h := resp.Header
	if resp.StatusCode == http.StatusOK {
		var remove []string
		for _, v := range h.Values(headersToRemoveHeader) {
			for _, name := range strings.Split(v, ",") {
				if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
					remove = append(remove, name)
				}
			}
		}
		h.Del(headersToRemoveHeader)
		d := Decision{Allowed: true, UpstreamRemove: remove}
		for k, vs := range h {
			if c.upstream.match(k) {
				if d.UpstreamHeaders == nil {
					d.UpstreamHeaders = http.Header{}
				}
				d.UpstreamHeaders[k] = vs
			}
			if c.onAllow.match(k) {
				for _, v := range vs {
					d.ResponseHeaders = append(d.ResponseHeaders, HeaderMutation{Name: k, Value: v, Action: HeaderAppend})
				}
			}
		}
		return d
	}
	h.Del(headersToRemoveHeader)
	d := Decision{Status: resp.StatusCode, Body: body, Headers: http.Header{}}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if hopByHop[lk] || lk == "content-length" {
			continue
		}
		if c.onDeny == nil || c.onDeny.match(lk) {
			d.Headers[k] = vs
		}
	}
	return d
}
