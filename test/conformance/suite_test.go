package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Case is one Gateway API mesh conformance test as data. Its fields mirror
// the conformance suite's (conformance/utils/http.ExpectedResponse), so each
// case reads like the test it ports.
type Case struct {
	// Name is the conformance test's ShortName.
	Name string
	// Manifests are the test's manifests, under testdata/ with the paths the
	// conformance test lists; testdata/base.yaml and the EndpointSlices are
	// always applied.
	Manifests []string
	// Exchanges run in order, each as a subtest.
	Exchanges []Exchange
	// Weighted, when set, is a weighted-distribution check.
	Weighted *Weighted
}

// Client names the pod a request is made from.
type Client int

const (
	// MeshClient is echo-v1 in gateway-conformance-mesh
	// (echo.ConnectToApp(t, s, echo.MeshAppEchoV1)).
	MeshClient Client = iota
	// ConsumerClient is echo-v1 in gateway-conformance-mesh-consumer.
	ConsumerClient
)

func (c Client) pod() *pod {
	if c == ConsumerClient {
		return consumerEchoV1
	}
	return echoV1
}

// Exchange is one conformance ExpectedResponse: a request and what must come
// back. Each is sent RequiredConsecutiveSuccesses (3) times and every answer
// must meet every expectation; the waypoint is ready before the first, so
// there is nothing to wait for.
//
// What is asserted: everything the mesh suite's echo client comparison
// checks (status, response headers present with exact values or absent,
// request headers the backend saw with exact values or absent, the answering
// pod's name prefix), plus what the data states that only the gateway suite's
// comparison checks: the backend's namespace when Namespace is set, the path
// and method the backend saw (the request's own unless ExpectedRequest says
// otherwise), and for redirects the Location (scheme, host, port and path,
// with the gateway suite's defaults for the parts the case leaves unset).
type Exchange struct {
	// TestCaseName is the conformance case's name; when empty, the name is
	// generated as the conformance suite generates it.
	TestCaseName string
	Client       Client
	Request      Request
	// ExpectedRequest is what the backend must see; nil means the request
	// as sent.
	ExpectedRequest *ExpectedRequest
	// RedirectRequest is where a redirect must point.
	RedirectRequest *RedirectRequest
	Response        Response
	// Backend is the prefix of the name of the pod that must answer.
	Backend string
	// Namespace is the namespace of the pod that must answer.
	Namespace string
}

// Request is the request the client pod makes.
type Request struct {
	// Host is the URL's host[:port] (default "echo"): DNS and the port pick
	// the destination.
	Host string
	// Method defaults to GET.
	Method string
	// Path is the URL path and query.
	Path string
	// Headers are sent as given; "Host" overrides the Host header.
	Headers map[string]string
	// Protocol is "" (HTTP/1.1) or "grpc" (the GrpcEcho/Echo method).
	Protocol string
}

func (r Request) host() string {
	if r.Host == "" {
		return "echo"
	}
	return r.Host
}

// ExpectedRequest is what the backend must see.
type ExpectedRequest struct {
	// Path is the request URI the backend saw.
	Path string
	// Headers must be present with exactly these values (several values
	// joined with ","); names are case-insensitive.
	Headers map[string]string
	// AbsentHeaders must not be present.
	AbsentHeaders []string
}

// RedirectRequest is where a redirect points; empty fields take the gateway
// suite's defaults (any host; the request's scheme and path; for http and
// https no port or the scheme's default).
type RedirectRequest struct {
	Scheme, Host, Port, Path string
}

// Response is what the client must get.
type Response struct {
	// StatusCode defaults to 200.
	StatusCode int
	// Headers must be present with exactly these values.
	Headers map[string]string
	// AbsentHeaders must not be present.
	AbsentHeaders []string
}

// Weighted is the conformance weight check
// (conformance/utils/weight.TestWeightedDistributionBatch): after Exchange
// passes, 500 requests must be answered only by the weighted backends, each
// within 5 points of its share; a run that misses is retried up to 10 times
// (statistical variance), as the suite does.
type Weighted struct {
	Exchange Exchange
	Weights  map[string]float64
}

const (
	requiredConsecutiveSuccesses = 3
	weightRequests               = 500
	weightTolerance              = 0.05
	weightMaxRetries             = 10
)

// name is the subtest name: the conformance TestCaseName, or what
// ExpectedResponse.GetTestCaseName generates.
func (x Exchange) name(i int) string {
	if x.TestCaseName != "" {
		return x.TestCaseName
	}
	withHeaders := ""
	if x.Request.Headers != nil {
		withHeaders = " with headers"
	}
	s := fmt.Sprintf("%d request to '%s%s'%s", i, x.Request.Host, x.Request.Path, withHeaders)
	if x.Backend != "" {
		return s + " should go to " + x.Backend
	}
	return fmt.Sprintf("%s should receive one of [%d]", s, x.wantStatus())
}

func (x Exchange) wantStatus() int {
	if x.Response.StatusCode == 0 {
		return http.StatusOK
	}
	return x.Response.StatusCode
}

// check compares one answer with the expectations and lists what differs.
func (x Exchange) check(o *observed) []string {
	if o.grpcErr != nil {
		return []string{fmt.Sprintf("the gRPC call failed: %v, want status %d", o.grpcErr, x.wantStatus())}
	}
	if o.status != x.wantStatus() {
		return []string{fmt.Sprintf("status %d, want %d (response headers %v)", o.status, x.wantStatus(), o.headers)}
	}
	var errs []string
	for _, k := range sortedKeys(x.Response.Headers) {
		if got := strings.Join(o.headers.Values(k), ","); got != x.Response.Headers[k] || len(o.headers.Values(k)) == 0 {
			errs = append(errs, fmt.Sprintf("response header %s: %q, want %q", k, got, x.Response.Headers[k]))
		}
	}
	for _, k := range x.Response.AbsentHeaders {
		if v := o.headers.Values(k); len(v) != 0 {
			errs = append(errs, fmt.Sprintf("response header %s: %q, want none", k, v))
		}
	}
	if isRedirect(o.status) {
		return append(errs, x.checkRedirect(o)...)
	}
	if o.status != http.StatusOK {
		return errs
	}
	if o.echo == nil {
		return append(errs, "the answer is not the echo server's: no backend answered")
	}
	e := o.echo
	if !strings.HasPrefix(e.Pod, x.Backend) {
		errs = append(errs, fmt.Sprintf("answered by pod %q, want %s", e.Pod, x.Backend))
	}
	if x.Namespace != "" && e.Namespace != x.Namespace {
		errs = append(errs, fmt.Sprintf("answered from namespace %q, want %s", e.Namespace, x.Namespace))
	}
	if !strings.EqualFold(x.Request.Protocol, "grpc") {
		wantPath := x.Request.Path
		if x.ExpectedRequest != nil && x.ExpectedRequest.Path != "" {
			wantPath = x.ExpectedRequest.Path
		}
		if wantPath == "" {
			wantPath = "/"
		}
		if e.Path != wantPath {
			errs = append(errs, fmt.Sprintf("the backend saw path %q, want %q", e.Path, wantPath))
		}
		wantMethod := x.Request.Method
		if wantMethod == "" {
			wantMethod = http.MethodGet
		}
		if e.Method != wantMethod {
			errs = append(errs, fmt.Sprintf("the backend saw method %q, want %q", e.Method, wantMethod))
		}
	}
	if x.ExpectedRequest != nil {
		seen := map[string][]string{}
		for k, v := range e.Headers {
			seen[strings.ToLower(k)] = v
		}
		for _, k := range sortedKeys(x.ExpectedRequest.Headers) {
			v, ok := seen[strings.ToLower(k)]
			if !ok {
				errs = append(errs, fmt.Sprintf("the backend did not see header %s (want %q); it saw %v", k, x.ExpectedRequest.Headers[k], e.Headers))
			} else if got := strings.Join(v, ","); got != x.ExpectedRequest.Headers[k] {
				errs = append(errs, fmt.Sprintf("the backend saw header %s: %q, want %q", k, got, x.ExpectedRequest.Headers[k]))
			}
		}
		for _, k := range x.ExpectedRequest.AbsentHeaders {
			if v, ok := seen[strings.ToLower(k)]; ok {
				errs = append(errs, fmt.Sprintf("the backend saw header %s: %q, want none", k, v))
			}
		}
	}
	return errs
}

// checkRedirect applies the gateway suite's redirect comparison
// (conformance/utils/http.CompareRoundTrip).
func (x Exchange) checkRedirect(o *observed) []string {
	if x.RedirectRequest == nil {
		return nil
	}
	if o.location == nil {
		return []string{fmt.Sprintf("redirect %d without a Location header", o.status)}
	}
	want := *x.RedirectRequest
	loc := o.location
	if want.Host == "" {
		want.Host = loc.Hostname()
	}
	if want.Scheme == "" {
		want.Scheme = "http"
	}
	if want.Path == "" {
		p := x.Request.Path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		want.Path = p
	}
	var errs []string
	if loc.Hostname() != want.Host {
		errs = append(errs, fmt.Sprintf("redirect host %q, want %q (Location %s)", loc.Hostname(), want.Host, loc))
	}
	switch gotPort := loc.Port(); {
	case want.Port != "":
		if gotPort != want.Port {
			errs = append(errs, fmt.Sprintf("redirect port %q, want %q (Location %s)", gotPort, want.Port, loc))
		}
	case strings.EqualFold(loc.Scheme, "http") && gotPort != "" && gotPort != "80":
		errs = append(errs, fmt.Sprintf("redirect port %q, want 80 or none for http (Location %s)", gotPort, loc))
	case strings.EqualFold(loc.Scheme, "https") && gotPort != "" && gotPort != "443":
		errs = append(errs, fmt.Sprintf("redirect port %q, want 443 or none for https (Location %s)", gotPort, loc))
	}
	if loc.Scheme != want.Scheme {
		errs = append(errs, fmt.Sprintf("redirect scheme %q, want %q (Location %s)", loc.Scheme, want.Scheme, loc))
	}
	if loc.Path != want.Path {
		errs = append(errs, fmt.Sprintf("redirect path %q, want %q (Location %s)", loc.Path, want.Path, loc))
	}
	return errs
}

func isRedirect(code int) bool {
	switch code {
	case 300, 301, 302, 303, 304, 305, 307, 308:
		return true
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// meshConformanceTests are the ShortNames of every test in
// sigs.k8s.io/gateway-api/conformance@v1.6.3 tests/mesh.
var meshConformanceTests = []string{
	"MeshBasic",
	"MeshConsumerRoute",
	"MeshFrontend",
	"MeshFrontendHostname",
	"MeshGRPCRouteWeight",
	"MeshHTTPRoute303Redirect",
	"MeshHTTPRoute307Redirect",
	"MeshHTTPRoute308Redirect",
	"MeshHTTPRouteBackendRequestHeaderModifier",
	"MeshHTTPRouteMatching",
	"MeshHTTPRouteNamedRule",
	"MeshHTTPRouteQueryParamMatching",
	"MeshHTTPRouteRedirectHostAndStatus",
	"MeshHTTPRouteRedirectPath",
	"MeshHTTPRouteRedirectPort",
	"MeshHTTPRouteRequestHeaderModifier",
	"MeshHTTPRouteRewritePath",
	"MeshHTTPRouteSchemeRedirect",
	"MeshHTTPRouteSimpleSameNamespace",
	"MeshHTTPRouteWeight",
	"MeshPorts",
	"MeshTrafficSplit",
}

// tableComplete is set when the pending cases are built in: then every
// conformance test must have a case.
var tableComplete bool

// TestCasesAreMeshConformanceTests checks each case is named after a mesh
// conformance test, once, and, with the pending cases built in, that every
// mesh conformance test has a case.
func TestCasesAreMeshConformanceTests(t *testing.T) {
	known := map[string]bool{}
	for _, n := range meshConformanceTests {
		known[n] = true
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if !known[c.Name] {
			t.Errorf("case %s is not a mesh conformance test of v1.6.3", c.Name)
		}
		if seen[c.Name] {
			t.Errorf("case %s is in the table twice", c.Name)
		}
		seen[c.Name] = true
		if len(c.Exchanges) == 0 && c.Weighted == nil {
			t.Errorf("case %s makes no request", c.Name)
		}
	}
	if !tableComplete {
		return
	}
	for _, n := range meshConformanceTests {
		if !seen[n] {
			t.Errorf("mesh conformance test %s has no case", n)
		}
	}
}

// TestMeshConformance runs every case, each against its own waypoint.
func TestMeshConformance(t *testing.T) {
	for i, c := range cases {
		ip := fmt.Sprintf("127.0.152.%d", i+1)
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			runCase(t, c, ip)
		})
	}
}

func runCase(t *testing.T, c Case, ip string) {
	wp, cl := startWaypoint(t, ip, c.Manifests)
	clients := map[Client]*client{}
	clientFor := func(k Client) *client {
		if clients[k] == nil {
			clients[k] = newClient(t, k.pod(), wp, cl)
		}
		return clients[k]
	}
	for i, x := range c.Exchanges {
		t.Run(x.name(i), func(t *testing.T) {
			runExchange(t, clientFor(x.Client), x)
		})
	}
	if w := c.Weighted; w != nil {
		t.Run("Requests should have a distribution that matches the weight", func(t *testing.T) {
			cli := clientFor(w.Exchange.Client)
			runExchange(t, cli, w.Exchange)
			if t.Failed() {
				return
			}
			var err error
			for attempt := 1; attempt <= weightMaxRetries; attempt++ {
				if err = distribution(cli, w); err == nil {
					return
				}
				t.Logf("traffic distribution check failed (%d/%d): %v", attempt, weightMaxRetries, err)
			}
			t.Errorf("weighted distribution: %v", err)
		})
	}
}

func runExchange(t *testing.T, cli *client, x Exchange) {
	t.Helper()
	for n := 1; n <= requiredConsecutiveSuccesses; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		o, err := cli.do(ctx, x.Request)
		cancel()
		if err != nil {
			t.Errorf("request %d of %d (%+v): %v", n, requiredConsecutiveSuccesses, x.Request, err)
			return
		}
		if errs := x.check(o); len(errs) > 0 {
			t.Errorf("request %d of %d (%+v):\n  %s", n, requiredConsecutiveSuccesses, x.Request, strings.Join(errs, "\n  "))
			return
		}
	}
}

// distribution sends the weight check's batch and compares the split.
func distribution(cli *client, w *Weighted) error {
	seen := map[string]float64{}
	for i := 0; i < weightRequests; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		o, err := cli.do(ctx, w.Exchange.Request)
		cancel()
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if o.grpcErr != nil || o.status != http.StatusOK || o.echo == nil {
			return fmt.Errorf("request %d: status %d %v, not answered by a backend", i, o.status, o.grpcErr)
		}
		backend := backendName(o.echo.Pod)
		if _, ok := w.Weights[backend]; !ok {
			return fmt.Errorf("request %d was answered by an unexpected pod %q", i, o.echo.Pod)
		}
		seen[backend]++
	}
	active := 0
	for _, share := range w.Weights {
		if share > 0 {
			active++
		}
	}
	var errs []error
	if len(seen) != active {
		errs = append(errs, fmt.Errorf("%d backends received traffic, want %d", len(seen), active))
	}
	for _, b := range sortedKeys(floatKeys(w.Weights)) {
		got := seen[b] / weightRequests
		if math.Abs(got-w.Weights[b]) > weightTolerance {
			errs = append(errs, fmt.Errorf("backend %s got %.3f of the traffic, want %.2f ±%.2f", b, got, w.Weights[b], weightTolerance))
		}
	}
	return errors.Join(errs...)
}

// backendName drops the Deployment's two hash parts from a pod name.
func backendName(podName string) string {
	parts := strings.Split(podName, "-")
	if len(parts) < 3 {
		return podName
	}
	return strings.Join(parts[:len(parts)-2], "-")
}

func floatKeys(m map[string]float64) map[string]string {
	out := make(map[string]string, len(m))
	for k := range m {
		out[k] = ""
	}
	return out
}
