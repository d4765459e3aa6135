package extauthz

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const grpcHost = "ext-authz-grpc.bar.svc.cluster.local"

// grpcAuthorizer is a real envoy.service.auth.v3.Authorization server on
// loopback, built from go-control-plane's generated service.
type grpcAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	addr      string
	conns     *countingListener
	mu        sync.Mutex
	seen      []*authv3.CheckRequest
	authority []string
	reply     func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func newGRPCAuthorizer(t *testing.T, reply func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)) *grpcAuthorizer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &grpcAuthorizer{addr: l.Addr().String(), conns: &countingListener{Listener: l}, reply: reply}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, a)
	go func() { _ = s.Serve(a.conns) }()
	t.Cleanup(s.Stop)
	return a
}

func (a *grpcAuthorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.seen = append(a.seen, proto.Clone(req).(*authv3.CheckRequest))
	a.authority = append(a.authority, strings.Join(md.Get(":authority"), ","))
	a.mu.Unlock()
	return a.reply(ctx, req)
}

func (a *grpcAuthorizer) last(t *testing.T) (*authv3.CheckRequest, string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the authorizer received no check")
	}
	return a.seen[len(a.seen)-1], a.authority[len(a.authority)-1]
}

func (a *grpcAuthorizer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *grpcAuthorizer) client(t *testing.T, fields string) Client {
	t.Helper()
	p := provider(t, "envoyExtAuthzGrpc", "service: bar/"+grpcHost+", port: 9000"+fields)
	return newClient(t, p, Options{
		Resolve:        resolver(grpcHost, 9000, a.addr),
		LocalPrincipal: "spiffe://cluster.local/ns/default/sa/waypoint",
	})
}

func okStatus() *rpcstatus.Status { return &rpcstatus.Status{Code: int32(codes.OK)} }

func hvo(k, v string, appendValue *bool) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	if appendValue != nil {
		o.Append = wrapperspb.Bool(*appendValue) //nolint:staticcheck // what authorizers still send
	}
	return o
}

func ptr[T any](v T) *T { return &v }

func grpcRequest() *Request {
	r := getRequest()
	r.Protocol = "HTTP/2.0"
	r.SourcePrincipal = "cluster.local/ns/default/sa/sleep" // as ztunnel may send it, without the scheme
	r.Source = netip.MustParseAddrPort("[::ffff:10.1.2.3]:45678")
	return r
}

func TestGRPCAllow(t *testing.T) {
	a := newGRPCAuthorizer(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus(), HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				hvo("x-auth-user", "alice", nil),
				hvo("x-auth-user", "carol", ptr(false)), // a later set wins
				hvo("x-groups", "admins", ptr(true)),
			},
			HeadersToRemove: []string{"authorization"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				hvo("set-cookie", "s=1", ptr(true)),
				hvo("x-set", "v", ptr(false)),
				{Header: &corev3.HeaderValue{Key: "x-if-absent", Value: "a"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
				{Header: &corev3.HeaderValue{Key: "x-overwrite", Value: "o"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
				{Header: &corev3.HeaderValue{Key: "x-default", Value: "d"}},
			},
			QueryParametersToSet:    []*corev3.QueryParameter{{Key: "tenant", Value: "t1"}},
			QueryParametersToRemove: []string{"b"},
		}}}, nil
	})
	r := grpcRequest()
	d := a.client(t, "").Check(context.Background(), r)
	if !d.Allowed || d.Err != nil {
		t.Fatalf("decision %+v, want allowed", d)
	}
	if !reflect.DeepEqual(d.UpstreamHeaders, http.Header{"X-Auth-User": {"carol"}}) ||
		!reflect.DeepEqual(d.UpstreamAppend, http.Header{"X-Groups": {"admins"}}) ||
		!reflect.DeepEqual(d.UpstreamRemove, []string{"authorization"}) {
		t.Errorf("upstream set %v append %v remove %v", d.UpstreamHeaders, d.UpstreamAppend, d.UpstreamRemove)
	}
	wantResp := []HeaderMutation{
		{"set-cookie", "s=1", HeaderAppend}, {"x-set", "v", HeaderSet}, {"x-if-absent", "a", HeaderAddIfAbsent},
		{"x-overwrite", "o", HeaderOverwriteIfExists}, {"x-default", "d", HeaderAppend},
	}
	if !reflect.DeepEqual(d.ResponseHeaders, wantResp) {
		t.Errorf("ResponseHeaders %v,\nwant %v", d.ResponseHeaders, wantResp)
	}
	if !reflect.DeepEqual(d.QuerySet, []QueryParam{{"tenant", "t1"}}) || !reflect.DeepEqual(d.QueryRemove, []string{"b"}) {
		t.Errorf("query set %v remove %v", d.QuerySet, d.QueryRemove)
	}

	req, authority := a.last(t)
	if authority != "outbound_.9000_._."+grpcHost {
		t.Errorf(":authority %q, want istiod's cluster authority", authority)
	}
	attrs := req.GetAttributes()
	src, dst := attrs.GetSource(), attrs.GetDestination()
	if sa := src.GetAddress().GetSocketAddress(); sa.GetAddress() != "10.1.2.3" || sa.GetPortValue() != 45678 {
		t.Errorf("source address %v, want 10.1.2.3:45678 (unmapped)", sa)
	}
	if src.GetPrincipal() != "spiffe://cluster.local/ns/default/sa/sleep" {
		t.Errorf("source principal %q", src.GetPrincipal())
	}
	if da := dst.GetAddress().GetSocketAddress(); da.GetAddress() != "10.96.0.10" || da.GetPortValue() != 8080 ||
		dst.GetPrincipal() != "spiffe://cluster.local/ns/default/sa/waypoint" {
		t.Errorf("destination %v", dst)
	}
	h := attrs.GetRequest().GetHttp()
	if attrs.GetRequest().GetTime() == nil || h.GetId() == "" {
		t.Error("request time or id missing")
	}
	if h.GetMethod() != "GET" || h.GetPath() != "/api/items?a=1&b=2" || h.GetHost() != "reviews.default:9080" ||
		h.GetScheme() != "http" || h.GetProtocol() != "HTTP/2" || h.GetBody() != "" || h.GetRawBody() != nil || h.GetSize() != 0 {
		t.Errorf("http attributes %v", h)
	}
	wantHeaders := map[string]string{
		":authority": "reviews.default:9080", ":method": "GET", ":path": "/api/items?a=1&b=2", ":scheme": "http",
		"authorization": "Bearer t0k", "x-ext-authz": "allow", "x-user-id": "42", "x-user-name": "a,b",
		"api-token": "s3cret", "cookie": "session=x", "x-added": "from-client",
	}
	// Every header goes (istiod sets no allowed_headers for gRPC); hop-by-hop
	// ones and a client's x-envoy-auth-partial-body do not.
	if !reflect.DeepEqual(h.GetHeaders(), wantHeaders) {
		t.Errorf("headers %v,\nwant %v", h.GetHeaders(), wantHeaders)
	}

	// The mutations land where Envoy puts them.
	up := http.Header{"Authorization": {"Bearer t0k"}, "X-Auth-User": {"mallory"}, "X-Groups": {"users"}}
	u, err := url.Parse("/api/items?a=1&b=2")
	if err != nil {
		t.Fatal(err)
	}
	d.ApplyUpstream(up, u)
	if want := (http.Header{"X-Auth-User": {"carol"}, "X-Groups": {"users,admins"}}); !reflect.DeepEqual(up, want) {
		t.Errorf("upstream headers %v, want %v", up, want)
	}
	if u.RawQuery != "a=1&tenant=t1" {
		t.Errorf("upstream query %q", u.RawQuery)
	}
	resp := http.Header{"X-Overwrite": {"old"}, "X-If-Absent": {"present"}, "Set-Cookie": {"a=0"}}
	d.ApplyResponse(resp)
	want := http.Header{"X-Overwrite": {"o"}, "X-If-Absent": {"present"}, "Set-Cookie": {"a=0", "s=1"}, "X-Set": {"v"}, "X-Default": {"d"}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("response headers %v, want %v", resp, want)
	}
}

func TestGRPCDeny(t *testing.T) {
	cases := []struct {
		name       string
		resp       *authv3.CheckResponse
		wantStatus int
		wantBody   string
		wantHdr    http.Header
	}{
		{"status only", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, 403, "", http.Header{}},
		{"any non-OK status denies", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}}, 403, "", http.Header{}},
		{"denied response", &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{hvo("www-authenticate", "Bearer", nil), hvo("x-reason", "a", ptr(true)), hvo("x-reason", "b", ptr(true))},
				Body:    "login first",
			}},
		}, 401, "login first", http.Header{"Www-Authenticate": {"Bearer"}, "X-Reason": {"a", "b"}}},
		{"denied response without status", &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "no"}},
		}, 403, "no", http.Header{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newGRPCAuthorizer(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return c.resp, nil })
			// failOpen does not turn a denial into an allow.
			d := a.client(t, ", failOpen: true").Check(context.Background(), grpcRequest())
			if d.Allowed || d.Status != c.wantStatus || string(d.Body) != c.wantBody || d.Err != nil {
				t.Fatalf("allowed=%v status=%d body=%q err=%v, want denied %d %q", d.Allowed, d.Status, d.Body, d.Err, c.wantStatus, c.wantBody)
			}
			if !reflect.DeepEqual(d.Headers, c.wantHdr) {
				t.Errorf("headers %v, want %v", d.Headers, c.wantHdr)
			}
		})
	}
}

func TestGRPCErrorResponse(t *testing.T) {
	withStatus := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Internal)},
		HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}, Body: "try later",
			Headers: []*corev3.HeaderValueOption{hvo("retry-after", "5", nil)},
		}},
	}
	noStatus := &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.Internal)},
		HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "oops"}},
	}
	for _, c := range []struct {
		name       string
		resp       *authv3.CheckResponse
		fields     string
		allowed    bool
		wantStatus int
		wantBody   string
	}{
		{"error status wins", withStatus, `, statusOnError: "500"`, false, 503, "try later"},
		{"statusOnError when the error has none", noStatus, `, statusOnError: "500"`, false, 500, "oops"},
		{"failOpen allows", withStatus, `, failOpen: true`, true, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newGRPCAuthorizer(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return c.resp, nil })
			d := a.client(t, c.fields).Check(context.Background(), grpcRequest())
			if d.Allowed != c.allowed || d.Status != c.wantStatus || string(d.Body) != c.wantBody || d.Err == nil {
				t.Fatalf("allowed=%v status=%d body=%q err=%v, want allowed=%v %d %q and an error", d.Allowed, d.Status, d.Body, d.Err, c.allowed, c.wantStatus, c.wantBody)
			}
			if !c.allowed && c.resp == withStatus && d.Headers.Get("Retry-After") != "5" {
				t.Errorf("headers %v lack the error's Retry-After", d.Headers)
			}
		})
	}
}

func TestGRPCBody(t *testing.T) {
	allowAll := func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus()}, nil
	}
	cases := []struct {
		name        string
		fields      string
		body        []byte
		wantStatus  int
		wantBody    string
		wantRaw     []byte
		wantPartial string
		wantChecks  int
	}{
		{"string body, invalid utf-8 sanitized", ", includeRequestBodyInCheck: {maxRequestBytes: 16}", []byte("a\xffb"), 0, "a!b", nil, "false", 1},
		{"raw body", ", includeRequestBodyInCheck: {maxRequestBytes: 16, packAsBytes: true}", []byte("a\xffb"), 0, "", []byte("a\xffb"), "false", 1},
		{"partial", ", includeRequestBodyInCheck: {maxRequestBytes: 4, allowPartialMessage: true}", []byte("0123456789"), 0, "0123", nil, "true", 1},
		{"too large is 413 even with failOpen", ", failOpen: true, includeRequestBodyInCheck: {maxRequestBytes: 4}", []byte("0123456789"), 413, "", nil, "", 0},
		{"not configured", "", []byte("hello"), 0, "", nil, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newGRPCAuthorizer(t, allowAll)
			r := grpcRequest()
			r.Method, r.Body = "POST", c.body
			d := a.client(t, c.fields).Check(context.Background(), r)
			if c.wantStatus == 0 && !d.Allowed || c.wantStatus != 0 && (d.Allowed || d.Status != c.wantStatus) {
				t.Fatalf("allowed=%v status=%d err=%v, want status %d", d.Allowed, d.Status, d.Err, c.wantStatus)
			}
			if a.count() != c.wantChecks {
				t.Fatalf("%d checks, want %d", a.count(), c.wantChecks)
			}
			if c.wantChecks == 0 {
				return
			}
			req, _ := a.last(t)
			h := req.GetAttributes().GetRequest().GetHttp()
			if h.GetBody() != c.wantBody || !reflect.DeepEqual(h.GetRawBody(), c.wantRaw) {
				t.Errorf("body %q raw %q, want %q %q", h.GetBody(), h.GetRawBody(), c.wantBody, c.wantRaw)
			}
			if got := h.GetHeaders()[partialBodyHeader]; got != c.wantPartial {
				t.Errorf("x-envoy-auth-partial-body %q, want %q", got, c.wantPartial)
			}
			if h.GetSize() != int64(len(c.body)) {
				t.Errorf("size %d, want %d", h.GetSize(), len(c.body))
			}
		})
	}
}

func TestGRPCFailures(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newGRPCAuthorizer(t, func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		select {
		case <-ctx.Done():
			// The deadline the client sent ends the server's context at about
			// the same time as the client's: answering OK then would race the
			// client's own timeout.
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-release:
		}
		return &authv3.CheckResponse{Status: okStatus()}, nil
	})
	broken := newGRPCAuthorizer(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, status.Error(codes.Internal, "database down")
	})
	dead := deadAddr(t)
	cases := []struct {
		name       string
		addr       string
		fields     string
		allowed    bool
		wantStatus int
		wantCode   codes.Code
	}{
		{"timeout, failOpen", slow.addr, ", timeout: 1s, failOpen: true", true, 0, codes.DeadlineExceeded},
		{"timeout, statusOnError", slow.addr, `, timeout: 1s, statusOnError: "504"`, false, 504, codes.DeadlineExceeded},
		{"timeout, default 403", slow.addr, ", timeout: 1s", false, 403, codes.DeadlineExceeded},
		{"rpc error, statusOnError", broken.addr, `, statusOnError: "503"`, false, 503, codes.Internal},
		{"rpc error, failOpen", broken.addr, `, failOpen: true`, true, 0, codes.Internal},
		{"authorizer down, statusOnError", dead, `, statusOnError: "503"`, false, 503, codes.Unavailable},
		{"authorizer down, failOpen", dead, `, failOpen: true`, true, 0, codes.Unavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := provider(t, "envoyExtAuthzGrpc", "service: "+grpcHost+", port: 9000"+c.fields)
			cl := newClient(t, p, Options{Resolve: resolver(grpcHost, 9000, c.addr)})
			start := time.Now()
			d := cl.Check(context.Background(), grpcRequest())
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("check took %v", el)
			}
			if d.Allowed != c.allowed || d.Status != c.wantStatus || status.Code(d.Err) != c.wantCode {
				t.Fatalf("allowed=%v status=%d err=%v, want allowed=%v status=%d code %s", d.Allowed, d.Status, d.Err, c.allowed, c.wantStatus, c.wantCode)
			}
		})
	}
}

// An unresolvable provider is a failed check, not a hang.
func TestGRPCResolveError(t *testing.T) {
	p := provider(t, "envoyExtAuthzGrpc", "service: "+grpcHost+", port: 9000, timeout: 2s")
	d := newClient(t, p, Options{Resolve: resolver("elsewhere", 1, "")}).Check(context.Background(), grpcRequest())
	if d.Allowed || d.Status != 403 || d.Err == nil || !strings.Contains(d.Err.Error(), "no endpoint") {
		t.Fatalf("%+v", d)
	}
}

func TestGRPCConnectionReuse(t *testing.T) {
	a := newGRPCAuthorizer(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus()}, nil
	})
	c := a.client(t, "")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := c.Check(context.Background(), grpcRequest()); !d.Allowed {
				t.Errorf("%+v", d)
			}
		}()
	}
	wg.Wait()
	if n := a.conns.n.Load(); n != 1 {
		t.Errorf("20 checks used %d connections, want 1", n)
	}
	ids := map[string]bool{}
	a.mu.Lock()
	for _, r := range a.seen {
		ids[r.GetAttributes().GetRequest().GetHttp().GetId()] = true
	}
	a.mu.Unlock()
	if len(ids) != 20 {
		t.Errorf("%d distinct request ids for 20 checks", len(ids))
	}
}
