package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// Bodies of the waypoint's own replies, as Envoy words them.
const (
	bodyDenied        = "RBAC: access denied"
	bodyNoHealthy     = "no healthy upstream"
	bodyConnectFailed = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyTimeout       = "upstream request timeout"
)

// ServeHTTP handles one request: route, authorize, forward.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := inbound.InfoFromContext(r.Context())
	c := p.config.Load()
	var sp *servicePort
	if info != nil && c != nil {
		sp = c.lookup(info)
	}
	if sp == nil {
		// The service left the configuration after the connection was
		// accepted: finish this exchange and close.
		w.Header().Set("Connection", "close")
		p.localReply(w, nil, http.StatusServiceUnavailable, bodyNoHealthy)
		return
	}
	if r.Header.Get("X-Request-Id") == "" {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	if np := normalizePath(r.URL.Path); np != r.URL.Path {
		r.URL.Path, r.URL.RawPath = np, ""
	}

	var rule *route.Rule
	if sp.routes != nil {
		rule = sp.routes.Match(r)
	}
	var respMod *ir.HeaderModifier
	if rule != nil {
		respMod = rule.IR.ResponseHeaders
	}

	if !sp.authz.Empty() {
		d := sp.authz.Evaluate(p.authzRequest(info, r))
		if !d.Allowed {
			p.log.Debug("request denied", "service", sp.name, "policy", d.Policy, "reason", d.Reason,
				"identity", info.Identity, "method", r.Method, "path", r.URL.Path)
			p.localReply(w, respMod, http.StatusForbidden, bodyDenied)
			return
		}
	}

	backend := sp.defaultBackend
	if sp.routes != nil {
		if rule == nil {
			p.localReply(w, nil, http.StatusNotFound, "")
			return
		}
		key, ok := rule.PickBackend(mrand.Uint32())
		if !ok || key == "" {
			p.localReply(w, respMod, http.StatusInternalServerError, "")
			return
		}
		backend = c.backends[key]
	}
	if backend == nil {
		p.localReply(w, respMod, http.StatusServiceUnavailable, bodyNoHealthy)
		return
	}
	ep, ok := backend.Pick()
	if !ok {
		p.localReply(w, respMod, http.StatusServiceUnavailable, bodyNoHealthy)
		return
	}
	if rule != nil {
		route.ApplyHeaders(r.Header, rule.IR.RequestHeaders)
	}
	// The waypoint answers Expect: 100-continue itself (as Envoy does by
	// default); the upstream gets the body without waiting for a 100.
	delete(r.Header, "Expect")
	p.forward(w, r, backend, ep, respMod)
}

// authzRequest gathers the attributes policies look at.
func (p *Proxy) authzRequest(info *inbound.ConnInfo, r *http.Request) *authz.Request {
	return &authz.Request{
		SourceIP:        info.Source.Addr(),
		SourcePrincipal: info.Identity,
		DestinationIP:   info.Destination.Addr(),
		DestinationPort: info.Destination.Port(),
		HTTP:            true,
		Method:          r.Method,
		Host:            r.Host,
		Path:            r.URL.Path,
		Headers:         r.Header,
	}
}

// localReply writes one of the waypoint's own responses, with the matched
// rule's response header modifier applied (the seed's 403 carries
// traversed-waypoint).
func (p *Proxy) localReply(w http.ResponseWriter, respMod *ir.HeaderModifier, status int, body string) {
	h := w.Header()
	if body != "" {
		h["Content-Type"] = []string{"text/plain"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	route.ApplyHeaders(h, respMod)
	h["Server"] = p.serverHeader
	w.WriteHeader(status)
	if body != "" {
		_, _ = io.WriteString(w, body)
	}
}

// forwardState travels with the outbound request to the response hooks.
type forwardState struct {
	respMod   *ir.HeaderModifier
	start     time.Time
	transport http.RoundTripper
}

type forwardKey struct{}

// forward proxies the request to one endpoint of the backend.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, b *upstream.Backend, endpoint string, respMod *ir.HeaderModifier) {
	r.URL.Scheme = "http"
	r.URL.Host = endpoint
	st := &forwardState{respMod: respMod, start: time.Now(), transport: p.pool.Transport(b)}
	r = r.WithContext(context.WithValue(r.Context(), forwardKey{}, st))
	p.reverse.ServeHTTP(w, r)
}

// newReverseProxy builds the forwarder shared by all requests; per-request
// choices travel in the request's forwardState.
func (p *Proxy) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.Header["X-Forwarded-Proto"] = []string{"http"}
		},
		Transport:      stateTransport{},
		FlushInterval:  -1, // stream: never hold back a chunk
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		BufferPool:     bufferPool{},
	}
}

// stateTransport sends a request with the transport its forwardState names
// (the HTTP/1.1 or the h2c pool).
type stateTransport struct{}

func (stateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	st, _ := r.Context().Value(forwardKey{}).(*forwardState)
	if st == nil {
		return nil, errors.New("request without forwarding state")
	}
	return st.transport.RoundTrip(r)
}

// bufferPool recycles the 32 KiB copy buffers of response bodies.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st, _ := resp.Request.Context().Value(forwardKey{}).(*forwardState)
	h := resp.Header
	if st != nil {
		h["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(time.Since(st.start).Milliseconds(), 10)}
		route.ApplyHeaders(h, st.respMod)
	}
	h["Server"] = p.serverHeader
	return nil
}

// upstreamError maps a failed upstream exchange to Envoy's replies.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(forwardKey{}).(*forwardState)
	var respMod *ir.HeaderModifier
	if st != nil {
		respMod = st.respMod
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	p.log.Debug("upstream request failed", "endpoint", r.URL.Host, "error", err.Error())
	switch {
	case isTimeout(err):
		p.localReply(w, respMod, http.StatusGatewayTimeout, bodyTimeout)
	default:
		p.localReply(w, respMod, http.StatusServiceUnavailable, bodyConnectFailed)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return false // a connect timeout is a connection failure (503)
		}
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// newRequestID returns a random UUID (version 4), as Envoy generates for
// x-request-id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
