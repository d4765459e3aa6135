package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

type grpcClient struct {
	p              *ir.ExtAuthzProvider
	conn           *grpc.ClientConn
	authz          authv3.AuthorizationClient
	localPrincipal string
	ids            atomic.Uint64
}

// clusterAuthority is the :authority istiod gives the gRPC check: the
// outbound cluster name with "|" replaced by "_." (generateGRPCConfig), e.g.
// "outbound_.9000_._.ext-authz.foo.svc.cluster.local".
func clusterAuthority(p *ir.ExtAuthzProvider) string {
	return strings.ReplaceAll(fmt.Sprintf("outbound|%d||%s", p.Port, p.Host), "|", "_.")
}

func newGRPC(p *ir.ExtAuthzProvider, opts Options) (*grpcClient, error) {
	dial := dialer(p, opts)
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(p.Host, portString(p.Port)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dial(ctx) }),
		grpc.WithAuthority(clusterAuthority(p)),
	)
	if err != nil {
		return nil, fmt.Errorf("extauthz: provider %q: %w", p.Name, err)
	}
	return &grpcClient{p: p, conn: conn, authz: authv3.NewAuthorizationClient(conn), localPrincipal: opts.LocalPrincipal}, nil
}

func (c *grpcClient) Close() error { return c.conn.Close() }

func (c *grpcClient) Check(ctx context.Context, r *Request) Decision {
	body, partial, err := checkBody(c.p, r)
	if err != nil {
		return Decision{Status: http.StatusRequestEntityTooLarge, Err: err}
	}
	ctx, cancel := checkContext(ctx, c.p)
	defer cancel()
	resp, err := c.authz.Check(ctx, c.checkRequest(r, body, partial))
	if err != nil {
		return failed(c.p, err)
	}
	return c.decide(resp)
}

// checkRequest builds the CheckRequest as Envoy's CheckRequestUtils::
// createHttpCheck does (istiod sets no allowed_headers for gRPC providers,
// so every header goes).
func (c *grpcClient) checkRequest(r *Request, body []byte, partial string) *authv3.CheckRequest {
	headers := headerMap(r.Headers)
	path := pathWithQuery(r)
	host := sanitizeUTF8(r.Host)
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	headers[":authority"] = host
	headers[":method"] = method
	headers[":path"] = sanitizeUTF8(path)
	if r.Scheme != "" {
		headers[":scheme"] = r.Scheme
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(c.ids.Add(1), 10),
		Method:   method,
		Headers:  headers,
		Path:     sanitizeUTF8(path),
		Host:     host,
		Scheme:   r.Scheme,
		Size:     int64(len(r.Body)),
		Protocol: protocol(r.Protocol),
	}
	if partial != "" {
		headers[partialBodyHeader] = partial
		if c.p.Body.PackAsBytes {
			httpReq.RawBody = body
		} else {
			httpReq.Body = sanitizeUTF8(string(body))
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(r.Source), Principal: spiffe(r.SourcePrincipal)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(r.Destination), Principal: c.localPrincipal},
		Request:     &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: httpReq},
	}}
}

func spiffe(id string) string {
	if id == "" || strings.HasPrefix(id, "spiffe://") {
		return id
	}
	return "spiffe://" + id
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	if !ap.IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// decide turns a CheckResponse into a decision (Envoy GrpcClientImpl::onSuccess).
func (c *grpcClient) decide(resp *authv3.CheckResponse) Decision {
	if er := resp.GetErrorResponse(); er != nil {
		d := failed(c.p, errors.New("authorizer sent an error_response"))
		if !d.Allowed {
			if code := int(er.GetStatus().GetCode()); code > 0 {
				d.Status = code
			}
			d.Headers = http.Header{}
			addHeaderOptions(d.Headers, d.Headers, er.GetHeaders())
			d.Body = []byte(er.GetBody())
		}
		return d
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		d := Decision{Allowed: true}
		ok := resp.GetOkResponse()
		if ok == nil {
			return d
		}
		if hs := ok.GetHeaders(); len(hs) > 0 {
			d.UpstreamHeaders, d.UpstreamAppend = http.Header{}, http.Header{}
			addHeaderOptions(d.UpstreamHeaders, d.UpstreamAppend, hs)
		}
		d.UpstreamRemove = ok.GetHeadersToRemove()
		for _, h := range ok.GetResponseHeadersToAdd() {
			d.ResponseHeaders = append(d.ResponseHeaders, HeaderMutation{
				Name: h.GetHeader().GetKey(), Value: headerValue(h.GetHeader()), Action: responseAction(h),
			})
		}
		for _, q := range ok.GetQueryParametersToSet() {
			d.QuerySet = append(d.QuerySet, QueryParam{Key: q.GetKey(), Value: q.GetValue()})
		}
		d.QueryRemove = ok.GetQueryParametersToRemove()
		return d
	}
	d := Decision{Status: http.StatusForbidden, Headers: http.Header{}}
	if dr := resp.GetDeniedResponse(); dr != nil {
		if code := int(dr.GetStatus().GetCode()); code > 0 {
			d.Status = code
		}
		addHeaderOptions(d.Headers, d.Headers, dr.GetHeaders())
		d.Body = []byte(dr.GetBody())
	}
	return d
}

// addHeaderOptions sorts header options the way Envoy's ext_authz gRPC client
// does (copyHeaderFieldIntoResponse): append=true appends, anything else sets.
func addHeaderOptions(set, appendTo http.Header, hs []*corev3.HeaderValueOption) {
	for _, h := range hs {
		k := http.CanonicalHeaderKey(h.GetHeader().GetKey())
		if k == "" {
			continue
		}
		v := headerValue(h.GetHeader())
		if h.GetAppend().GetValue() { //nolint:staticcheck // Envoy's ext_authz reads the deprecated append
			appendTo[k] = append(appendTo[k], v)
		} else {
			set[k] = []string{v} // a later set of the same name wins
		}
	}
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}

// responseAction maps a response header option: the deprecated append wins
// when set, else append_action (Envoy copyOkResponseMutations).
func responseAction(h *corev3.HeaderValueOption) HeaderAction {
	if a := h.GetAppend(); a != nil { //nolint:staticcheck // Envoy's ext_authz reads the deprecated append first
		if a.GetValue() {
			return HeaderAppend
		}
		return HeaderSet
	}
	switch h.GetAppendAction() {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return HeaderAddIfAbsent
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		return HeaderSet
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return HeaderOverwriteIfExists
	}
	return HeaderAppend
}
