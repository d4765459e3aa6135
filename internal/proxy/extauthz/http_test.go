package extauthz

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

const httpHost = "ext-authz.foo.svc.cluster.local"

// seenRequest is what the HTTP authorizer received.
type seenRequest struct {
	method, uri, host, proto string
	header                   http.Header
	body                     string
	contentLength            int64
}

// httpAuthorizer is a real ext_authz HTTP server on loopback.
type httpAuthorizer struct {
	srv   *httptest.Server
	conns *countingListener
	mu    sync.Mutex
	seen  []seenRequest
	reply func(w http.ResponseWriter, r *http.Request)
}

func newHTTPAuthorizer(t *testing.T, h2c bool, reply func(w http.ResponseWriter, r *http.Request)) *httpAuthorizer {
	t.Helper()
	a := &httpAuthorizer{reply: reply}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), string(b), r.ContentLength})
		a.mu.Unlock()
		a.reply(w, r)
	}))
	a.conns = &countingListener{Listener: a.srv.Listener}
	a.srv.Listener = a.conns
	if h2c {
		a.srv.Config.Protocols = new(http.Protocols)
		a.srv.Config.Protocols.SetHTTP1(true)
		a.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *httpAuthorizer) last(t *testing.T) seenRequest {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the authorizer received no request")
	}
	return a.seen[len(a.seen)-1]
}

func (a *httpAuthorizer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *httpAuthorizer) client(t *testing.T, p *ir.ExtAuthzProvider) Client {
	t.Helper()
	return newClient(t, p, Options{Resolve: resolver(httpHost, 8000, a.srv.Listener.Addr().String())})
}

func newClient(t *testing.T, p *ir.ExtAuthzProvider, opts Options) Client {
	t.Helper()
	c, err := New(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func allow(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func getRequest() *Request {
	return &Request{
		Method: "GET", Scheme: "http", Host: "reviews.default:9080", Path: "/api/items", RawQuery: "a=1&b=2",
		Headers: http.Header{
			"Authorization":             {"Bearer t0k"},
			"X-Ext-Authz":               {"allow"},
			"X-User-Id":                 {"42"},
			"X-User-Name":               {"a", "b"},
			"Api-Token":                 {"s3cret"},
			"Cookie":                    {"session=x"},
			"X-Added":                   {"from-client"},
			"X-Envoy-Auth-Partial-Body": {"spoofed"},
			"Connection":                {"keep-alive"},
		},
		Source: srcAddr, Destination: dstAddr, SourcePrincipal: "spiffe://cluster.local/ns/default/sa/sleep",
	}
}

func TestHTTPAllow(t *testing.T) {
	a := newHTTPAuthorizer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Auth-User", "alice")
		w.Header().Add("X-Auth-Groups", "admins")
		w.Header().Add("X-Auth-Groups", "devs")
		w.Header().Set("X-Other", "not for upstream")
		w.Header().Add("Set-Cookie", "s=1")
		w.Header().Add("Set-Cookie", "t=2")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ignored body"))
	})
	p := provider(t, "envoyExtAuthzHttp", `service: `+httpHost+`, port: 8000, pathPrefix: /check,
		includeRequestHeadersInCheck: [X-Ext-Authz, "x-user-*", "*-TOKEN"],
		includeAdditionalHeadersInCheck: {x-added: fixed, x-ext-authz: overridden},
		headersToUpstreamOnAllow: ["x-auth-*"], headersToDownstreamOnAllow: [set-cookie]`)
	d := a.client(t, p).Check(context.Background(), getRequest())

	if !d.Allowed || d.Status != 0 || d.Err != nil {
		t.Fatalf("decision %+v, want allowed", d)
	}
	want := http.Header{"X-Auth-User": {"alice"}, "X-Auth-Groups": {"admins", "devs"}}
	if !reflect.DeepEqual(d.UpstreamHeaders, want) {
		t.Errorf("UpstreamHeaders %v, want %v", d.UpstreamHeaders, want)
	}
	wantResp := []HeaderMutation{{"Set-Cookie", "s=1", HeaderAppend}, {"Set-Cookie", "t=2", HeaderAppend}}
	if !reflect.DeepEqual(d.ResponseHeaders, wantResp) {
		t.Errorf("ResponseHeaders %v, want %v", d.ResponseHeaders, wantResp)
	}

	s := a.last(t)
	if s.method != "GET" || s.uri != "/check/api/items?a=1&b=2" || s.host != "reviews.default:9080" {
		t.Errorf("check request %s %s Host %s, want GET /check/api/items?a=1&b=2 Host reviews.default:9080", s.method, s.uri, s.host)
	}
	for name, want := range map[string]string{
		"Authorization": "Bearer t0k", // always sent
		"X-User-Id":     "42",
		"X-User-Name":   "a,b", // repeated headers are joined, as in Envoy's CheckRequest
		"Api-Token":     "s3cret",
		"X-Ext-Authz":   "overridden", // includeAdditionalHeadersInCheck wins
		"X-Added":       "fixed",
	} {
		if got := s.header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("authorizer saw %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"Cookie", "X-Envoy-Auth-Partial-Body", "User-Agent", "Accept-Encoding"} {
		if v, ok := s.header[name]; ok {
			t.Errorf("authorizer saw %s = %q, it must not be sent", name, v)
		}
	}
	if s.body != "" || s.contentLength != 0 {
		t.Errorf("authorizer got a body %q (%d) without includeRequestBodyInCheck", s.body, s.contentLength)
	}
}

func TestHTTPDeny(t *testing.T) {
	deny := func(status int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Www-Authenticate", `Bearer realm="mesh"`)
			w.Header().Set("X-Reason", "no token")
			w.Header().Set("Location", "https://login.example/")
			w.Header().Set("X-Other", "o")
			w.WriteHeader(status)
			_, _ = w.Write([]byte("denied by policy"))
		}
	}
	cases := []struct {
		name     string
		status   int
		onDeny   string
		want     []string // headers the client must get
		mustNot  []string
		wantBody string
	}{
		{"all headers when no list", 401, "", []string{"Content-Type", "Www-Authenticate", "X-Reason", "Location", "X-Other"}, []string{"Content-Length"}, "denied by policy"},
		{"listed headers plus www-authenticate and location", 403, "headersToDownstreamOnDeny: [x-REASON]",
			[]string{"X-Reason", "Www-Authenticate", "Location"}, []string{"Content-Type", "X-Other", "Content-Length"}, "denied by policy"},
		{"prefix pattern", 429, `headersToDownstreamOnDeny: ["x-*"]`, []string{"X-Reason", "X-Other"}, []string{"Content-Type"}, "denied by policy"},
		{"redirect is not followed", 302, "headersToDownstreamOnDeny: [x-reason]", []string{"Location"}, nil, "denied by policy"},
		{"2xx other than 200 denies", 204, "", nil, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newHTTPAuthorizer(t, false, deny(c.status))
			fields := "service: " + httpHost + ", port: 8000, failOpen: true, statusOnError: \"500\""
			if c.onDeny != "" {
				fields += ", " + c.onDeny
			}
			d := a.client(t, provider(t, "envoyExtAuthzHttp", fields)).Check(context.Background(), getRequest())
			if d.Allowed || d.Status != c.status || d.Err != nil {
				t.Fatalf("decision allowed=%v status=%d err=%v, want denied with %d (failOpen does not apply to a denial)", d.Allowed, d.Status, d.Err, c.status)
			}
			if string(d.Body) != c.wantBody {
				t.Errorf("body %q, want %q", d.Body, c.wantBody)
			}
			for _, h := range c.want {
				if d.Headers.Get(h) == "" {
					t.Errorf("client headers %v lack %s", d.Headers, h)
				}
			}
			for _, h := range c.mustNot {
				if _, ok := d.Headers[h]; ok {
					t.Errorf("client headers carry %s: %v", h, d.Headers)
				}
			}
			if a.count() != 1 {
				t.Errorf("authorizer got %d requests, want 1 (no redirect following)", a.count())
			}
		})
	}
}

func TestHTTPHeadersToRemove(t *testing.T) {
	a := newHTTPAuthorizer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "Authorization, x-secret ,")
		w.Header().Set("X-Auth-User", "bob")
		w.WriteHeader(http.StatusOK)
	})
	p := provider(t, "envoyExtAuthzHttp", "service: "+httpHost+", port: 8000, headersToUpstreamOnAllow: [\"x-*\"]")
	d := a.client(t, p).Check(context.Background(), getRequest())
	if !d.Allowed {
		t.Fatalf("denied: %+v", d)
	}
	if !reflect.DeepEqual(d.UpstreamRemove, []string{"authorization", "x-secret"}) {
		t.Errorf("UpstreamRemove %q", d.UpstreamRemove)
	}
	if _, ok := d.UpstreamHeaders["X-Envoy-Auth-Headers-To-Remove"]; ok || d.UpstreamHeaders.Get("X-Auth-User") != "bob" {
		t.Errorf("UpstreamHeaders %v: the removal list is not a header to forward", d.UpstreamHeaders)
	}
	up := http.Header{"Authorization": {"Bearer x"}, "X-Secret": {"s"}, "X-Keep": {"k"}}
	d.ApplyUpstream(up, nil)
	want := http.Header{"X-Keep": {"k"}, "X-Auth-User": {"bob"}}
	if !reflect.DeepEqual(up, want) {
		t.Errorf("upstream headers after apply %v, want %v", up, want)
	}
}

func TestHTTPBody(t *testing.T) {
	cases := []struct {
		name        string
		fields      string
		method      string
		body        []byte
		wantStatus  int // 0: allowed
		wantBody    string
		wantPartial string // "" : header absent
		wantChecks  int
	}{
		{"body sent", "includeRequestBodyInCheck: {maxRequestBytes: 8}", "POST", []byte("hello"), 0, "hello", "false", 1},
		{"body at the limit", "includeRequestBodyInCheck: {maxRequestBytes: 5}", "POST", []byte("hello"), 0, "hello", "false", 1},
		{"too large without partial is 413, no check", "includeRequestBodyInCheck: {maxRequestBytes: 8}, failOpen: true", "POST", []byte("0123456789"), 413, "", "", 0},
		{"partial message", "includeRequestBodyInCheck: {maxRequestBytes: 8, allowPartialMessage: true}", "PUT", []byte("0123456789"), 0, "01234567", "true", 1},
		{"no body in the request", "includeRequestBodyInCheck: {maxRequestBytes: 8}", "POST", nil, 0, "", "", 1},
		{"body not configured", "", "POST", []byte("hello"), 0, "", "", 1},
		{"invalid utf-8 is sanitized as Envoy does", "includeRequestBodyInCheck: {maxRequestBytes: 8}", "POST", []byte("a\xffb"), 0, "a!b", "false", 1},
		{"packAsBytes keeps bytes", "includeRequestBodyInCheck: {maxRequestBytes: 8, packAsBytes: true}", "POST", []byte("a\xffb"), 0, "a\xffb", "false", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newHTTPAuthorizer(t, false, allow)
			fields := "service: " + httpHost + ", port: 8000, includeRequestHeadersInCheck: [x-envoy-auth-partial-body]"
			if c.fields != "" {
				fields += ", " + c.fields
			}
			r := getRequest()
			r.Method, r.Body = c.method, c.body
			d := a.client(t, provider(t, "envoyExtAuthzHttp", fields)).Check(context.Background(), r)
			if c.wantStatus == 0 && !d.Allowed || c.wantStatus != 0 && (d.Allowed || d.Status != c.wantStatus) {
				t.Fatalf("decision allowed=%v status=%d err=%v, want status %d", d.Allowed, d.Status, d.Err, c.wantStatus)
			}
			if a.count() != c.wantChecks {
				t.Fatalf("authorizer got %d checks, want %d", a.count(), c.wantChecks)
			}
			if c.wantChecks == 0 {
				return
			}
			s := a.last(t)
			if s.method != c.method || s.body != c.wantBody || s.contentLength != int64(len(c.wantBody)) {
				t.Errorf("authorizer got %s body %q content-length %d, want %s %q", s.method, s.body, s.contentLength, c.method, c.wantBody)
			}
			if got := s.header.Get("X-Envoy-Auth-Partial-Body"); got != c.wantPartial {
				t.Errorf("x-envoy-auth-partial-body %q, want %q", got, c.wantPartial)
			}
		})
	}
}

// The authorizer answers once the check has given up: a check is bounded by
// the provider's timeout, then failOpen decides.
func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := newHTTPAuthorizer(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		w.WriteHeader(http.StatusOK)
	})
	for _, c := range []struct {
		fields     string
		allowed    bool
		wantStatus int
	}{
		{"failOpen: true", true, 0},
		{"failOpen: false, statusOnError: \"504\"", false, 504},
		{"failOpen: false", false, 403},
	} {
		p := provider(t, "envoyExtAuthzHttp", "service: "+httpHost+", port: 8000, timeout: 0.2s, "+c.fields)
		start := time.Now()
		d := a.client(t, p).Check(context.Background(), getRequest())
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("%s: check took %v, the 200ms timeout did not apply", c.fields, el)
		}
		if d.Allowed != c.allowed || d.Status != c.wantStatus || !errors.Is(d.Err, context.DeadlineExceeded) {
			t.Errorf("%s: allowed=%v status=%d err=%v, want allowed=%v status=%d and a deadline error", c.fields, d.Allowed, d.Status, d.Err, c.allowed, c.wantStatus)
		}
	}
}

func TestHTTPFailures(t *testing.T) {
	fiveHundred := newHTTPAuthorizer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Reason", "broken")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("authorizer broken"))
	})
	dead := deadAddr(t)
	cases := []struct {
		name       string
		fields     string
		resolve    func(string, uint16) (string, error)
		allowed    bool
		wantStatus int
	}{
		{"5xx without failOpen: statusOnError", `statusOnError: "429"`, resolver(httpHost, 8000, fiveHundred.srv.Listener.Addr().String()), false, 429},
		{"5xx without failOpen: default 403", ``, resolver(httpHost, 8000, fiveHundred.srv.Listener.Addr().String()), false, 403},
		{"5xx with failOpen allows", `failOpen: true`, resolver(httpHost, 8000, fiveHundred.srv.Listener.Addr().String()), true, 0},
		{"authorizer down: statusOnError", `statusOnError: "503"`, resolver(httpHost, 8000, dead), false, 503},
		{"authorizer down with failOpen allows", `failOpen: true`, resolver(httpHost, 8000, dead), true, 0},
		{"no endpoint: statusOnError", `statusOnError: "502"`, resolver("other", 1, dead), false, 502},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fields := "service: " + httpHost + ", port: 8000"
			if c.fields != "" {
				fields += ", " + c.fields
			}
			d := newClient(t, provider(t, "envoyExtAuthzHttp", fields), Options{Resolve: c.resolve}).Check(context.Background(), getRequest())
			if d.Allowed != c.allowed || d.Status != c.wantStatus || d.Err == nil {
				t.Fatalf("allowed=%v status=%d err=%v, want allowed=%v status=%d and an error", d.Allowed, d.Status, d.Err, c.allowed, c.wantStatus)
			}
			if len(d.Body) != 0 || len(d.Headers) != 0 {
				t.Errorf("a failed check passed on the authorizer's body %q / headers %v", d.Body, d.Headers)
			}
		})
	}
}

func TestHTTPConnectionReuse(t *testing.T) {
	a := newHTTPAuthorizer(t, false, allow)
	c := a.client(t, provider(t, "envoyExtAuthzHttp", "service: "+httpHost+", port: 8000"))
	for i := 0; i < 20; i++ {
		if d := c.Check(context.Background(), getRequest()); !d.Allowed {
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	if n := a.conns.n.Load(); n != 1 {
		t.Errorf("20 sequential checks used %d connections, want 1 (keep-alive)", n)
	}
}

// Paths reach the authorizer byte for byte as normalized, "//" and escapes
// included.
func TestHTTPPathVerbatim(t *testing.T) {
	a := newHTTPAuthorizer(t, false, allow)
	for _, c := range []struct{ prefix, path, query, want string }{
		{"", "//admin", "", "//admin"},
		{"", "//admin", "x=1", "//admin?x=1"},
		{"", "/a%2Fb/%7Bc%7D", "", "/a%2Fb/%7Bc%7D"},
		{"/authz", "/a%2fb", "q=%2F", "/authz/a%2fb?q=%2F"},
		{"/check", "", "", "/check/"},
	} {
		fields := "service: " + httpHost + ", port: 8000"
		if c.prefix != "" {
			fields += ", pathPrefix: " + c.prefix
		}
		r := getRequest()
		r.Path, r.RawQuery = c.path, c.query
		if d := a.client(t, provider(t, "envoyExtAuthzHttp", fields)).Check(context.Background(), r); !d.Allowed {
			t.Fatalf("%q: %+v", c.path, d)
		}
		if got := a.last(t).uri; got != c.want {
			t.Errorf("prefix %q path %q query %q: authorizer saw %q, want %q", c.prefix, c.path, c.query, got, c.want)
		}
	}
}

func TestHTTP2(t *testing.T) {
	a := newHTTPAuthorizer(t, true, allow)
	p := provider(t, "envoyExtAuthzHttp", "service: "+httpHost+", port: 8000")
	c := newClient(t, p, Options{Resolve: resolver(httpHost, 8000, a.srv.Listener.Addr().String()), HTTP2: true})
	for i := 0; i < 3; i++ {
		if d := c.Check(context.Background(), getRequest()); !d.Allowed {
			t.Fatalf("%+v", d)
		}
	}
	if s := a.last(t); s.proto != "HTTP/2.0" || s.host != "reviews.default:9080" {
		t.Errorf("authorizer saw %s Host %s, want HTTP/2.0 with the request's authority", s.proto, s.host)
	}
	if n := a.conns.n.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// An empty Host falls back to the provider's host; an empty method to GET.
func TestHTTPDefaults(t *testing.T) {
	a := newHTTPAuthorizer(t, false, allow)
	r := &Request{Path: "/x"}
	if d := a.client(t, provider(t, "envoyExtAuthzHttp", "service: "+httpHost+", port: 8000")).Check(context.Background(), r); !d.Allowed {
		t.Fatalf("%+v", d)
	}
	if s := a.last(t); s.host != httpHost || s.method != "GET" || !strings.HasPrefix(s.uri, "/x") {
		t.Errorf("authorizer saw %s %s Host %s", s.method, s.uri, s.host)
	}
}
