package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/config"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/extauthz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/pathnorm"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/rls"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/route"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry"
)

// exchange is one request's state on its way through the proxy.
type exchange struct {
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context // the request's, ended by the stream idle timeout too
	idle    *idleTimer
	upgrade bool // a WebSocket upgrade request
	info    *inbound.ConnInfo
	cfg     *config.Config // the generation serving the exchange
	auth    *authorizers   // that generation's external authorizers
	sp      *config.ServicePort
	rule    *route.Rule
	traffic *route.Traffic      // the TrafficPolicy in force (the rule's, else the port's)
	backend *ir.WeightedBackend // the backendRef chosen (nil: the service itself)
	path    string              // the normalized path, percent-encoded as sent
	ext     *extauthz.Decision  // the external authorizer's allow, when asked
	rlHdr   http.Header         // the rate limit service's response headers, when asked
	rlReply bool                // the exchange is the rate limit's 429: the service's Content-Type wins
	// setCookie is the Set-Cookie of a consistent-hash cookie the waypoint
	// generated for this request ("" when none).
	setCookie string

	// For telemetry (filled only when it is on).
	start          time.Time
	rec            *recorder
	reqBody        *countingBody
	origPath, host string
	flags, details string // Envoy response flags and details of a local reply
	upstreamHost   string
	upstreamTimeMs int64
	span           telemetry.Span
}

// responseHeaders applies every response modifier of the exchange: the
// rule's, then the chosen backendRef's, then CORS, then the server header.
func (p *Proxy) responseHeaders(x *exchange, h http.Header) {
	if x.traffic != nil {
		// The TrafficPolicy's first: the rule's own filters (Gateway API
		// filters take precedence over kgateway policies) apply after.
		route.ApplyHeaders(h, x.traffic.IR.ResponseHeaders)
	}
	if x.rule != nil {
		route.ApplyHeaders(h, x.rule.IR.ResponseHeaders)
		if x.backend != nil {
			route.ApplyHeaders(h, x.backend.ResponseHeaders)
		}
	}
	if c := x.cors(); c != nil {
		c.Decorate(x.r, h)
	}
	if x.ext != nil {
		x.ext.ApplyResponse(h)
	}
	for k, vv := range x.rlHdr {
		if k == "Content-Type" && x.rlReply {
			h[k] = vv // Envoy: the service's content type is authoritative on its 429
			continue
		}
		h[k] = append(h[k], vv...)
	}
	h["Server"] = p.serverHeader
}

// ServeHTTP handles one request: route, authorize, forward.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := inbound.Info(w, r)
	x := &exchange{w: w, r: r, info: info}
	if p.tel != nil {
		x.start, x.origPath, x.host = time.Now(), r.RequestURI, r.Host
		x.rec = &recorder{ResponseWriter: w}
		x.w = x.rec
		if r.Body != nil && r.Body != http.NoBody {
			x.reqBody = &countingBody{ReadCloser: r.Body}
			r.Body = x.reqBody
		}
		p.tel.RequestStarted()
		defer p.record(x)
	}
	// The exchange is served by the configuration in force: the one the
	// connection was classified in while it still is (no lookup), else the
	// service port looked up again in the newer one.
	if info != nil {
		t := info.Target
		if g := p.cfg.Load(); g != nil {
			if t.Config != g.Config {
				t, _ = g.Lookup(info.Destination, info.Hostname)
			}
			x.auth = g.auth
		}
		x.cfg, x.sp = t.Config, t.Port
	}
	if x.sp == nil {
		// The service left the configuration after the connection was
		// accepted: finish this exchange and close.
		w.Header().Set("Connection", "close")
		p.localReply(x, replyNoHealthy)
		return
	}
	sp := x.sp
	x.upgrade = arrive(r)
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	inbound.OnClientGone(w, func() { cancel(errClientLeft) })
	x.ctx, x.idle = ctx, newIdleTimer(p.streamIdle, cancel, w)
	defer x.idle.stop()
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &activeBody{ReadCloser: r.Body, idle: x.idle}
	}
	if r.Header.Get("X-Request-Id") == "" {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	if p.tel != nil {
		_, x.span = p.tel.StartServiceSpan(r.Context(), r.Header, sp.Name+"/*", info.Traceparent, sp.Service.Namespace, sp.Service.Name)
	}
	var ok bool
	if x.path, ok = normalize(r, x.cfg.IR().PathNormalization); !ok {
		p.localReply(x, replyBadPath)
		return
	}
	routed := false
	if sp.Routes != nil {
		x.rule, routed = sp.Routes.Match(r, namespaceOf(info.Identity))
	}
	if x.rule != nil {
		x.traffic = x.rule.Traffic
	} else {
		x.traffic = sp.Traffic
	}
	// CORS preflights are answered before authorization, as browsers send
	// them without credentials.
	if x.cors() != nil && route.IsPreflight(r) {
		p.preflight(x)
		return
	}
	// kgateway TrafficPolicy: the stream idle timeout, CSRF, then the
	// local rate limit, before authentication and authorization (Envoy's
	// filter order).
	if tr := x.traffic; tr != nil {
		if ms := tr.IR.StreamIdleTimeoutMs; ms != nil {
			x.idle.setTimeout(time.Duration(*ms) * time.Millisecond)
		}
		if tr.CSRF != nil {
			switch tr.CSRF.Check(r, mrand.Uint32N(100)) {
			case route.CSRFDenied:
				p.localReply(x, replyCSRF)
				return
			case route.CSRFShadowed:
				p.log.Debug("csrf shadow: invalid origin", "service", sp.Name, "origin", r.Header.Get("Origin"), "host", r.Host)
			}
		}
		if tr.Limit != nil && !tr.Limit.Allow() {
			p.localReply(x, replyRateLimited)
			return
		}
		// extAuth: the GatewayExtension's ext_authz server decides.
		if tr.IR.ExtAuthz != "" && !p.checkExternal(x, tr.IR.ExtAuthz, "TrafficPolicy", false) {
			return
		}
		// rateLimit.global: the rate limit service decides (Envoy's
		// ratelimit filter runs after ext_authz in kgateway's chain).
		if tr.Global != nil && !p.globalRateLimit(x, tr) {
			return
		}
	}
	// RequestAuthentication: an invalid token is refused; a valid one
	// gives the request principal and claims policies see.
	var jwt authn.Result
	if !sp.Authn.Empty() {
		res, err := sp.Authn.Authenticate(r)
		var ae *authn.Error
		if errors.As(err, &ae) {
			x.w.Header()["Www-Authenticate"] = []string{ae.WWWAuthenticate(r)}
			p.localReply(x, replyJWT(ae))
			return
		}
		jwt = res
	}
	if !sp.Authz.Empty() {
		areq := p.authzRequest(info, r, x.path, &jwt)
		// CUSTOM first: the external authorizer decides the requests its
		// policies select, before DENY and ALLOW.
		if provider, policy, matched := sp.Authz.Custom(areq); matched {
			if !p.checkExternal(x, provider, policy, true) {
				return
			}
		}
		d := sp.Authz.Evaluate(areq)
		p.logShadow(sp, info, r.Method, r.URL.Path, d)
		if !d.Allowed {
			p.log.Debug("request denied", "service", sp.Name, "policy", d.Policy, "reason", d.Reason,
				"identity", info.Identity, "method", r.Method, "path", r.URL.Path)
			p.localReply(x, replyDenied(d.Policy))
			return
		}
	}
	if routed && x.rule == nil {
		p.localReply(x, replyNoRoute)
		return
	}
	backend := sp.DefaultBackend
	if sp.H2CBackend != nil && r.ProtoMajor == 2 {
		backend = sp.H2CBackend // workload traffic: HTTP/2 on, as it came
	}
	if rule := x.rule; rule != nil {
		switch {
		case rule.IR.Unsupported != "":
			p.localReply(x, replyUnsupported)
			return
		case rule.IR.Redirect != nil:
			p.redirect(x)
			return
		}
		x.backend = rule.PickBackend(mrand.Uint32())
		if x.backend == nil || x.backend.Backend == "" {
			p.localReply(x, replyNoCluster)
			return
		}
		backend = x.cfg.Backend(x.backend.Backend)
		if x.traffic != nil {
			route.ApplyHeaders(r.Header, x.traffic.IR.RequestHeaders)
		}
		route.ApplyHeaders(r.Header, rule.IR.RequestHeaders)
		route.ApplyHeaders(r.Header, x.backend.RequestHeaders)
		if rw := rule.IR.Rewrite; rw != nil {
			if rw.Hostname != "" {
				r.Host = rw.Hostname
			}
			if rw.Path != nil {
				r.URL.Path, r.URL.RawPath = rule.RewritePath(r.URL.Path, rw.Path), ""
			}
		}
		if len(rule.IR.Mirrors) > 0 {
			p.mirror(x)
		}
	}
	if x.rule == nil && x.traffic != nil {
		route.ApplyHeaders(r.Header, x.traffic.IR.RequestHeaders)
	}
	if backend == nil {
		p.localReply(x, replyNoHealthy)
		return
	}
	if x.traffic != nil && x.traffic.IR.MaxRequestBytes > 0 && !p.bufferBody(x, x.traffic.IR.MaxRequestBytes) {
		return
	}
	// The waypoint answers Expect: 100-continue itself (as Envoy does by
	// default); the upstream gets the body without waiting for a 100.
	delete(r.Header, "Expect")
	p.forward(x, backend)
}

// logShadow logs what AUDIT and dry-run policies decided: they never
// change the outcome, so the log is their only effect.
func (p *Proxy) logShadow(sp *config.ServicePort, info *inbound.ConnInfo, method, path string, d authz.Decision) {
	for _, s := range d.DryRunResults {
		p.log.Info("authorization shadow result", "service", sp.Name, "policy", s.Policy, "action", string(s.Action),
			"dryRun", s.DryRun, "matched", s.Matched, "identity", info.Identity, "method", method, "path", path)
	}
}

// normalize applies the mesh's path normalization (Istio's BASE by
// default: RFC 3986 dot segments removed, so "/admin/../x" cannot dodge a
// rule) to the path as the client sent it, before routing and
// authorization, and forwards the result. It returns the normalized path,
// still percent-encoded (what policies match, as Envoy's RBAC does), and
// false for a path that cannot be normalized (400, as Envoy).
func normalize(r *http.Request, mode ir.PathNormalization) (string, bool) {
	raw := rawPath(r)
	if raw == "*" && r.Method == http.MethodOptions {
		return raw, true // asterisk-form: no path to normalize
	}
	np, err := pathnorm.Normalize(mode, raw)
	if err != nil {
		return "", false
	}
	if np == raw && (r.URL.RawPath == np || r.URL.Path == np) {
		return np, true
	}
	dec, err := url.PathUnescape(np)
	if err != nil {
		return "", false
	}
	r.URL.Path, r.URL.RawPath = dec, ""
	if dec != np {
		r.URL.RawPath = np // keep the escapes as normalized (%2F stays %2F in BASE)
	}
	return np, true
}

// rawPath is the request's path exactly as the client sent it: the path
// part of the request target, which the inbound listener always gives in
// origin-form (net/url's decoded form loses escapes).
func rawPath(r *http.Request) string {
	target := r.RequestURI
	if target == "" {
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return target
}

// namespaceOf returns the namespace of a SPIFFE identity
// ("spiffe://td/ns/<ns>/sa/<sa>"), "" when there is none.
func namespaceOf(identity string) string {
	_, rest, ok := strings.Cut(identity, "/ns/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

// checkExternal asks a CUSTOM policy's external authorizer about the
// request. It answers the client itself and returns false on a denial;
// on an allow it applies the authorizer's request changes and returns true.
// A provider that is unknown, unusable, or (custom: a CUSTOM policy's)
// one of several on the port, denies, as istiod makes Envoy do.
func (p *Proxy) checkExternal(x *exchange, provider, policy string, custom bool) bool {
	r, sp := x.r, x.sp
	var client extauthz.Client
	known := false
	if x.auth != nil {
		client, known = x.auth.clients[provider]
	}
	if !known || client == nil || (custom && len(sp.Authz.CustomProviders()) > 1) {
		p.log.Debug("CUSTOM policy without a usable provider: denied", "service", sp.Name, "policy", policy, "provider", provider)
		p.localReply(x, replyNoProvider)
		return false
	}
	req := &extauthz.Request{
		Method: r.Method, Scheme: "http", Host: r.Host, Path: x.path, RawQuery: r.URL.RawQuery,
		Headers: r.Header, Source: x.info.Source, Destination: x.info.Destination,
		SourcePrincipal: x.info.Identity, Protocol: r.Proto,
	}
	if prov := x.auth.providers[provider]; prov != nil && prov.Body != nil && r.Body != nil && r.Body != http.NoBody {
		buf, err := io.ReadAll(io.LimitReader(r.Body, int64(prov.Body.MaxRequestBytes)+1))
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		req.Body = buf
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	}
	d := client.Check(x.ctx, req)
	if !d.Allowed {
		if d.Err != nil {
			p.log.Debug("external authorization failed", "provider", provider, "error", d.Err.Error())
		}
		h := x.w.Header()
		for k, vv := range d.Headers {
			h[k] = vv
		}
		p.localReply(x, replyExtAuthz(d.Status, string(d.Body)))
		return false
	}
	d.ApplyUpstream(r.Header, r.URL)
	x.ext = &d
	return true
}

// readCloser reads through r and closes c.
type readCloser struct {
	io.Reader
	c io.Closer
}

func (rc readCloser) Close() error { return rc.c.Close() }

// authzRequest gathers the attributes policies look at.
func (p *Proxy) authzRequest(info *inbound.ConnInfo, r *http.Request, path string, jwt *authn.Result) *authz.Request {
	return &authz.Request{
		RequestPrincipal: jwt.Principal,
		RequestClaims:    jwt.Claims,
		SourceIP:         info.Source.Addr(),
		SourcePrincipal:  info.Identity,
		DestinationIP:    info.Destination.Addr(),
		DestinationPort:  info.Destination.Port(),
		HTTP:             true,
		Method:           r.Method,
		Host:             r.Host,
		Path:             path,
		Headers:          r.Header,
	}
}

// localReply writes one of the waypoint's own responses, with the
// exchange's response header modifiers applied (the seed's 403 carries
// traversed-waypoint). A gRPC request gets a gRPC answer: HTTP 200 with the
// status in grpc-status, as Envoy maps it.
func (p *Proxy) localReply(x *exchange, rep reply) {
	status, body := rep.status, rep.body
	x.flags, x.details = rep.flags, rep.details
	h := x.w.Header()
	if isGRPC(x.r) {
		h["Content-Type"] = []string{"application/grpc"}
		h["Grpc-Status"] = []string{strconv.Itoa(grpcStatus(status))}
		msg := body
		if msg == "" {
			msg = http.StatusText(status)
		}
		h["Grpc-Message"] = []string{grpcEscape(msg)}
		h["Content-Length"] = []string{"0"}
		p.responseHeaders(x, h)
		x.w.WriteHeader(http.StatusOK)
		return
	}
	if body != "" {
		h["Content-Type"] = []string{"text/plain"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	p.responseHeaders(x, h)
	x.w.WriteHeader(status)
	if body != "" {
		_, _ = io.WriteString(x.w, body)
	}
}

// redirect answers with the rule's RequestRedirect.
func (p *Proxy) redirect(x *exchange) {
	rd := x.rule.IR.Redirect
	r := x.r
	scheme := rd.Scheme
	if scheme == "" {
		scheme = "http"
	}
	host := rd.Hostname
	reqHost, reqPort := splitHostPort(r.Host)
	if host == "" {
		host = reqHost
	}
	var port uint16
	switch {
	case rd.Port != 0:
		port = rd.Port
	case rd.Scheme != "":
		port = 0 // the scheme's well-known port
	case reqPort != 0:
		port = reqPort
	default:
		port = x.info.Destination.Port() // the service port the client dialled
	}
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) {
		port = 0
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(port)))
	}
	b.WriteString(x.rule.RewritePath(r.URL.Path, rd.Path))
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	x.w.Header()["Location"] = []string{b.String()}
	p.localReply(x, replyRedirect(rd.StatusCode))
}

// cors is the CORS filter of the exchange: its rule's (where the
// translator folded a TrafficPolicy's in when the rule had none), else,
// when no rule took it, the port's TrafficPolicy's.
func (x *exchange) cors() *route.CORS {
	if x.rule != nil {
		return x.rule.CORS
	}
	if x.traffic != nil {
		return x.traffic.CORS
	}
	return nil
}

// bufferBody reads the whole request body, at most max bytes, before it
// goes upstream, as Envoy's buffer filter does (kgateway's
// buffer.maxRequestSize): a body declared or found larger gets 413. It
// reports whether the request may go on.
func (p *Proxy) bufferBody(x *exchange, max int64) bool {
	r := x.r
	if r.ContentLength > max {
		x.w.Header()["Connection"] = []string{"close"}
		p.localReply(x, replyTooLarge)
		return false
	}
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if int64(len(buf)) > max {
		x.w.Header()["Connection"] = []string{"close"}
		p.localReply(x, replyTooLarge)
		return false
	}
	r.Body = readCloser{bytes.NewReader(buf), r.Body}
	return true
}

// preflight answers a CORS preflight request without going upstream.
func (p *Proxy) preflight(x *exchange) {
	h := x.w.Header()
	x.cors().Preflight(x.r, h)
	h["Content-Length"] = []string{"0"}
	h["Server"] = p.serverHeader
	x.w.WriteHeader(http.StatusOK)
}

// splitHostPort splits a Host header; the port is 0 when absent or bad.
func splitHostPort(hostport string) (string, uint16) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.HasSuffix(hostport, "]") {
		return hostport, 0
	}
	n, err := strconv.ParseUint(hostport[i+1:], 10, 16)
	if err != nil {
		return hostport, 0
	}
	return hostport[:i], uint16(n)
}

// isGRPC reports a gRPC request.
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// grpcStatus maps an HTTP status to a gRPC status code as Envoy does
// (Grpc::Utility::httpToGrpcStatus).
func grpcStatus(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcEscape percent-encodes a grpc-message value.
func grpcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
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

// globalRateLimit asks the rate limit service of the exchange's
// TrafficPolicy about the request, as Envoy's ratelimit filter does. It
// answers the client itself (429 over the limit, 500 when the service
// fails and the provider does not fail open) and returns false; otherwise
// it keeps the service's response headers for the response, applies its
// request headers, and returns true.
func (p *Proxy) globalRateLimit(x *exchange, tr *route.Traffic) bool {
	r := x.r
	pathQuery := x.path
	if r.URL.RawQuery != "" {
		pathQuery += "?" + r.URL.RawQuery
	}
	d := tr.Global.Build(rls.Request{Headers: r.Header, PathWithQuery: pathQuery, Remote: x.info.Source.Addr()})
	if d == nil {
		return true // an entry without a value: no descriptor, no call
	}
	name := tr.IR.GlobalRateLimit.Provider
	var c *rls.Client
	var prov *ir.RateLimitProvider
	if x.auth != nil {
		c, prov = x.auth.limiters[name], x.auth.rlProviders[name]
	}
	var res rls.Result
	if c == nil {
		res = rls.Result{Outcome: rls.Error, Err: errors.New("rate limit service unusable")}
	} else {
		res = c.ShouldRateLimit(x.ctx, d)
	}
	switch res.Outcome {
	case rls.OverLimit:
		x.rlHdr, x.rlReply = res.Headers, true
		p.localReply(x, replyGlobalRateLimited(string(res.Body)))
		return false
	case rls.Error:
		p.log.Debug("rate limit service failed", "provider", name, "error", fmt.Sprint(res.Err))
		if prov == nil || !prov.FailOpen {
			p.localReply(x, replyRateLimitError)
			return false
		}
		return true
	}
	x.rlHdr = res.Headers
	for k, vv := range res.RequestHeaders {
		r.Header[k] = append(r.Header[k], vv...)
	}
	return true
}
