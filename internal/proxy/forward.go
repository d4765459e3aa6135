package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// hopHeaders are connection-specific and never forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders strips hop-by-hop headers, including those the
// Connection header names. "te: trailers" survives: gRPC needs it.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	removeFixedHopHeaders(h)
}

// removeFixedHopHeaders strips the hop-by-hop headers by name only.
func removeFixedHopHeaders(h http.Header) {
	te := h["Te"]
	for _, k := range hopHeaders {
		delete(h, k)
	}
	for _, v := range te {
		if strings.EqualFold(strings.TrimSpace(v), "trailers") {
			h["Te"] = []string{"trailers"}
		}
	}
}

// arrive strips the request's hop-by-hop headers as it arrives, before any
// route match, filter, policy or authorizer sees it: a client's
// "Connection: x-route-set" must not remove the header a filter sets
// later. It reports whether the request asks for a WebSocket upgrade, the
// one upgrade Istio's waypoint allows; its Upgrade and Connection headers
// are put back when the request is forwarded.
func arrive(r *http.Request) (upgrade bool) {
	h := r.Header
	if len(h["Upgrade"]) > 0 && r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor == 1 &&
		inbound.HasToken(h["Connection"], "upgrade") && inbound.HasToken(h["Upgrade"], "websocket") {
		upgrade = true
	}
	if len(h["Connection"]) > 0 || len(h["Upgrade"]) > 0 || len(h["Te"]) > 0 || len(h["Keep-Alive"]) > 0 ||
		len(h["Proxy-Connection"]) > 0 || len(h["Proxy-Authenticate"]) > 0 || len(h["Proxy-Authorization"]) > 0 ||
		len(h["Trailer"]) > 0 || len(h["Transfer-Encoding"]) > 0 {
		removeHopHeaders(h)
	}
	return upgrade
}

// replayBody lets a request be sent again after a connection failure: it
// passes reads through, records whether any happened and the first read
// failure (a client body that broke: the client's fault, not the
// upstream's), and ignores Close (the transport closes request bodies even
// when it never read them).
type replayBody struct {
	mu   sync.Mutex
	r    io.Reader
	read bool
	err  error
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read = true
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *replayBody) Close() error { return nil }

func (b *replayBody) used() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// failure is the error reading the client's body hit, nil when none.
func (b *replayBody) failure() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// defaultRetries is how often a connection failure is retried on another
// endpoint when neither the route nor the mesh config (defaultHttpRetryPolicy)
// sets a retry policy (Istio's default policy retries connect failures
// twice).
const defaultRetries = 2

// defaultMaxRetries caps the retries of one request whatever a route asks
// (Options.MaxRetries): each retry holds the request's goroutine and
// upstream capacity.
const defaultMaxRetries = 10

// forward sends the request to an endpoint of the backend and relays the
// response, within the rule's timeouts, retrying as its policy (or Istio's
// default for connection failures) says.
func (p *Proxy) forward(x *exchange, b *upstream.Backend) {
	r := x.r
	ctx := x.ctx
	var perTry time.Duration
	retries := defaultRetries
	var retryCodes []int
	var backoff time.Duration
	// The mesh's defaultHttpRetryPolicy stands in for a route's own.
	rt := x.cfg.IR().DefaultRetry
	if rule := x.rule; rule != nil {
		if ms := rule.IR.RequestTimeoutMs; ms > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		perTry = time.Duration(rule.IR.BackendRequestTimeoutMs) * time.Millisecond
		if rule.IR.Retry != nil {
			rt = rule.IR.Retry
		}
	}
	if rt != nil {
		retries, retryCodes, backoff = rt.Attempts, rt.Codes, time.Duration(rt.BackoffMs)*time.Millisecond
		if perTry == 0 {
			perTry = time.Duration(rt.PerTryTimeoutMs) * time.Millisecond
		}
	}
	retries = min(retries, p.maxRetries)
	// The client's hop-by-hop headers went at arrival; these are the ones
	// a filter may have set since.
	removeFixedHopHeaders(r.Header)
	if x.upgrade {
		r.Header["Connection"] = []string{"Upgrade"}
		r.Header["Upgrade"] = []string{"websocket"}
	}
	// A client cannot vouch for its own certificate: drop a client-supplied
	// x-forwarded-client-cert, as Envoy's default SANITIZE does.
	delete(r.Header, "X-Forwarded-Client-Cert")
	r.Header["X-Forwarded-Proto"] = []string{"http"}

	var body *replayBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &replayBody{r: r.Body}
	}
	start := time.Now()
	var resp *http.Response
	var err error
	var ep string // the endpoint of the try in flight (b.Begin)
	// A DestinationRule's consistent hash: the request's key, once.
	var key uint64
	var hasKey bool
	if ch := b.Hashing(); ch != nil {
		key, hasKey, x.setCookie = hashKey(x, ch)
	}
	for attempt := 0; ; attempt++ {
		var ok bool
		ep, ok = b.PickKey(key, hasKey, attempt)
		if !ok {
			p.localReply(x, replyNoHealthy)
			return
		}
		// In flight (LEAST_REQUEST) until this try is given up, or the
		// exchange is over and its response relayed.
		b.Begin(ep)
		x.upstreamHost = ep
		resp, err = p.roundTrip(ctx, perTry, r, body, b, ep)
		if body.failure() != nil {
			break // the client's body broke: not the endpoint's doing
		}
		if b.HasOutlierPolicy() {
			// A DestinationRule's outlierDetection: 5xx count too, and any
			// try that got no response (not the client's leaving).
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			b.Outcome(ep, status, err != nil && ctx.Err() == nil)
		} else {
			b.Report(ep, !gatewayFailure(resp, err))
		}
		if attempt >= retries || ctx.Err() != nil {
			break
		}
		retryable := false
		switch {
		case err != nil:
			// A failure to connect sent nothing: always safe to retry.
			// After any other failure the upstream may have acted on it.
			retryable = isConnectFailure(err)
		case slices.Contains(retryCodes, resp.StatusCode):
			// Only a body nobody has read yet can be sent again.
			retryable = body == nil || !body.used()
		}
		if !retryable {
			break
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			resp = nil
		}
		b.End(ep)
		p.log.Debug("retrying upstream request", "endpoint", ep, "attempt", attempt+1, "error", errString(err))
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
		}
	}
	defer b.End(ep) // the last try's, over when the exchange is
	if err != nil {
		if x.clientLeft() {
			panic(http.ErrAbortHandler) // the client went away: nobody to answer
		}
		if errors.Is(context.Cause(ctx), errStreamIdle) {
			x.w.Header()["Connection"] = []string{"close"}
			p.localReply(x, replyStreamTimeout)
			return
		}
		if berr := body.failure(); berr != nil {
			p.clientBodyFailed(x, berr)
			return
		}
		p.log.Debug("upstream request failed", "service", x.sp.Name, "error", err.Error())
		var perr *upstream.ProtocolError
		switch {
		case errors.As(err, &perr):
			p.localReply(x, replyProtocolError)
		case isTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded):
			p.localReply(x, replyTimeout)
		default:
			p.localReply(x, replyConnectFailed)
		}
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if !x.upgrade {
			// net/http's h2 transport never returns one; H1Client refuses
			// an unsolicited 101 itself. Belt and braces.
			p.localReply(x, replyProtocolError)
			return
		}
		p.tunnel(x, resp, start)
		return
	}
	p.relay(x, resp, start)
}

// clientBodyFailed answers a request whose body could not be read: the
// client sent a malformed chunked body or trailers over their bound (400,
// 431), or went away (nothing to answer). The connection closes after,
// as Envoy resets it.
func (p *Proxy) clientBodyFailed(x *exchange, err error) {
	status, ok := inbound.RequestErrorStatus(err)
	if !ok {
		if isTimeout(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
			panic(http.ErrAbortHandler)
		}
		status = http.StatusBadRequest
	}
	p.log.Debug("client request body failed", "service", x.sp.Name, "error", err.Error())
	x.w.Header()["Connection"] = []string{"close"}
	p.localReply(x, replyClientBody(status))
}

// roundTrip sends one try to one endpoint.
func (p *Proxy) roundTrip(ctx context.Context, perTry time.Duration, r *http.Request, body *replayBody, b *upstream.Backend, ep string) (*http.Response, error) {
	if perTry > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, perTry)
		// The try's context must outlive this function while the body is
		// relayed: cancel when the response body is closed.
		resp, err := p.send(ctx, r, body, b, ep)
		if err != nil {
			cancel()
			return nil, err
		}
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	return p.send(ctx, r, body, b, ep)
}

func (p *Proxy) send(ctx context.Context, r *http.Request, body *replayBody, b *upstream.Backend, ep string) (*http.Response, error) {
	ep, err := p.pool.Resolve(ctx, b, ep) // a hostname endpoint: one of its addresses
	if err != nil {
		return nil, err
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           upstreamURL(r, ep),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.Header,
		Host:          r.Host,
		ContentLength: r.ContentLength,
		Body:          http.NoBody,
	}
	if body != nil {
		out.Body = body
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // do not invent one
	}
	if !b.H2C {
		return p.pool.H1.DoWith(ctx, out, b.Conn()) // no request copy for the context
	}
	return p.pool.Transport(b).RoundTrip(out.WithContext(ctx))
}

// upstreamURL is the request's URL towards endpoint ep: its path and
// query, or "*" for OPTIONS * (sent as is, not as a path "/%2A").
func upstreamURL(r *http.Request, ep string) *url.URL {
	if r.URL.Path == "*" && r.Method == http.MethodOptions {
		return &url.URL{Scheme: "http", Host: ep, Opaque: "*"}
	}
	return &url.URL{Scheme: "http", Host: ep, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelBody) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// relay writes the upstream response to the client: headers (hop-by-hop
// removed, modifiers applied), the body as it streams, then trailers.
func (p *Proxy) relay(x *exchange, resp *http.Response, start time.Time) {
	h := x.w.Header()
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	x.upstreamTimeMs = time.Since(start).Milliseconds()
	h["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(x.upstreamTimeMs, 10)}
	if x.setCookie != "" {
		h["Set-Cookie"] = append(h["Set-Cookie"], x.setCookie)
	}
	p.responseHeaders(x, h)
	x.w.WriteHeader(resp.StatusCode)

	// Stream: flush after every read when the length is unknown (gRPC,
	// server-sent events), else let the writer buffer.
	flusher, _ := x.w.(http.Flusher)
	stream := resp.ContentLength < 0 && flusher != nil
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	buf := *bufp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			x.idle.touch()
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				panic(http.ErrAbortHandler) // client gone: abort, do not pool
			}
			if stream {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream broke mid-body (or the stream went idle): the
			// only honest signal left is to abort the client's response too.
			p.log.Debug("upstream response body failed", "service", x.sp.Name, "error", rerr.Error())
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// mirror sends copies of the request to the rule's mirror backends, in the
// background; their responses are discarded. A request body is mirrored
// when it is small enough to hold (64 KiB); larger bodies are not mirrored.
func (p *Proxy) mirror(x *exchange) {
	r := x.r
	var payload []byte
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if r.ContentLength < 0 || r.ContentLength > 64<<10 {
			p.log.Debug("request body too large to mirror", "service", x.sp.Name)
			return
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return
		}
		payload = data
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	for _, m := range x.rule.IR.Mirrors {
		if m.Backend == "" || (m.Percent < 100 && mrand.Float64()*100 >= m.Percent) {
			continue
		}
		b := x.cfg.Backend(m.Backend)
		if b == nil {
			continue
		}
		ep, ok := b.Pick()
		if !ok {
			continue
		}
		ep, err := p.pool.Resolve(r.Context(), b, ep)
		if err != nil {
			continue
		}
		hdr := r.Header.Clone()
		removeFixedHopHeaders(hdr)
		host, port := splitHostPort(r.Host)
		shadow := host + "-shadow" // Envoy marks mirrored requests this way
		if port != 0 {
			shadow += ":" + strconv.Itoa(int(port))
		}
		out := &http.Request{
			Method: r.Method, Header: hdr, Host: shadow,
			URL:   &url.URL{Scheme: "http", Host: ep, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Body: http.NoBody, ContentLength: int64(len(payload)),
		}
		if len(payload) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(payload))
		}
		tr := p.pool.Transport(b)
		if !p.mirrors.start() {
			p.log.Debug("mirror dropped: too many mirrored requests in flight", "service", x.sp.Name)
			continue
		}
		go func() {
			defer p.mirrors.done()
			ctx, cancel := context.WithTimeout(p.mirrors.ctx, 30*time.Second)
			defer cancel()
			resp, err := tr.RoundTrip(out.WithContext(ctx))
			if err != nil {
				p.log.Debug("mirror request failed", "endpoint", ep, "error", err.Error())
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
		}()
	}
}

// mirrorSet bounds and tracks the mirrored requests in flight: at most
// max at once (more are dropped and counted), all of them ended and
// waited for by Close.
type mirrorSet struct {
	ctx     context.Context
	cancel  context.CancelFunc
	slots   chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	dropped atomic.Uint64
}

func newMirrorSet(maxInFlight int) *mirrorSet {
	ctx, cancel := context.WithCancel(context.Background())
	return &mirrorSet{ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxInFlight)}
}

func (m *mirrorSet) start() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	select {
	case m.slots <- struct{}{}:
		m.wg.Add(1)
		return true
	default:
		m.dropped.Add(1)
		return false
	}
}

func (m *mirrorSet) done() {
	<-m.slots
	m.wg.Done()
}

// close ends the mirrors in flight and waits for them.
func (m *mirrorSet) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// gatewayFailure is what outlier detection counts: a connection failure
// or a 502, 503 or 504 answer (Envoy's consecutive gateway failures).
func gatewayFailure(resp *http.Response, err error) bool {
	if err != nil {
		return isConnectFailure(err)
	}
	return resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusGatewayTimeout
}

// isConnectFailure reports a failure to connect (refused, unreachable,
// connect timeout): the request never left.
func isConnectFailure(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func isTimeout(err error) bool {
	if isConnectFailure(err) {
		return false // a connect timeout is a connection failure (503)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// MirrorsDropped is the number of mirrored requests dropped because the
// bound of mirrors in flight was reached.
func (p *Proxy) MirrorsDropped() uint64 { return p.mirrors.dropped.Load() }
