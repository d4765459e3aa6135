package dataplane_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

const (
	vip    = "127.0.40.1:80"
	curlID = "spiffe://cluster.local/ns/ns/sa/curl"
	// claimsPerIdentity is the telemetry package's maxClaimsPerIdentity.
	claimsPerIdentity = 16
)

// manifests: namespace ns enrolled in waypoint wp, service svc (VIP
// 127.0.40.1:80) with one endpoint, and a DENY policy on /deny paths.
func manifests(ep netip.AddrPort) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: ns
  labels: {istio.io/use-waypoint: wp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: ns}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: ns}
spec:
  clusterIP: 127.0.40.1
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-1
  namespace: ns
  labels: {kubernetes.io/service-name: svc}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: [%q]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-paths, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/deny/*"]}}]}]
`, ep.Port(), ep.Addr().String())
}

// startBackend is a "pod" that answers 200, or the status and grpc-status
// a request asks for in X-Status and X-Grpc-Status (what a backend may
// choose to send).
func startBackend(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if g := r.Header.Get("X-Grpc-Status"); g != "" {
			w.Header().Set("Grpc-Status", g)
		}
		code := http.StatusOK
		if s := r.Header.Get("X-Status"); s != "" {
			code, _ = strconv.Atoi(s)
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// start runs a data plane on loopback with the manifests in force.
func start(t *testing.T, o dataplane.Options, ep netip.AddrPort) *dataplane.DataPlane {
	t.Helper()
	o.StatusAddress, o.MetricsAddress, o.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	d, err := dataplane.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	snap, err := files.LoadBytes("m.yaml", []byte(manifests(ep)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Proxy.Update(res.Waypoint); err != nil {
		t.Fatal(err)
	}
	if err := d.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return d
}

// scrape reads /stats/prometheus over its socket and parses it.
func scrape(t *testing.T, d *dataplane.DataPlane) (map[string]*dto.MetricFamily, int) {
	t.Helper()
	resp, err := http.Get("http://" + d.MetricsAddr().String() + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	return mfs, len(body)
}

func counter(mfs map[string]*dto.MetricFamily, name, label, value string) float64 {
	for _, m := range mfs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// client sends raw HTTP/1.1 requests as one PROXY identity, dialling again
// whenever the waypoint closes the connection.
type client struct {
	t        *testing.T
	inbound  string
	identity string
	c        net.Conn
	br       *bufio.Reader
}

func (c *client) send(method, head string) int {
	c.t.Helper()
	if c.c == nil {
		conn, err := meshclient.Dial(context.Background(), c.inbound, meshclient.Conn{
			Source:      netip.MustParseAddrPort("127.0.41.9:40000"),
			Destination: netip.MustParseAddrPort(vip), Identity: c.identity,
		})
		if err != nil {
			c.t.Fatal(err)
		}
		c.c, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, head); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("%q: %v", head, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.Close {
		_ = c.c.Close()
		c.c = nil
	}
	return resp.StatusCode
}

func (c *client) close() {
	if c.c != nil {
		_ = c.c.Close()
	}
}

// TestMetricSeriesStayBoundedUnderHostileRequests sends 5,000 requests, each
// with its own baggage, path, header, user agent and (often) method, from
// clients with an identity, with one that names no namespace and with
// none, then 400 whose backend picks odd status codes and gRPC statuses.
// The scrape must stay within the bounds the telemetry package promises:
// per response code, one series for every client without a vouched
// identity plus, for the identity, its claim budget and its folded series.
func TestMetricSeriesStayBoundedUnderHostileRequests(t *testing.T) {
	ep := startBackend(t, "127.0.41.1")
	d := start(t, dataplane.Options{}, ep)
	inbound := d.InboundAddr().String()
	clients := []*client{
		{t: t, inbound: inbound, identity: curlID},
		{t: t, inbound: inbound, identity: ""},
		{t: t, inbound: inbound, identity: "spiffe://cluster.local/sa/no-namespace"},
		{t: t, inbound: inbound, identity: "not-a-spiffe-id"},
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "get", "PURGE"}
	codes := map[int]bool{}
	for i := range 5000 {
		method := methods[i%len(methods)]
		if i%7 == 0 {
			method = fmt.Sprintf("M%d", i)
		}
		path := fmt.Sprintf("/p%d?x=%d", i, i)
		if i%2 == 0 {
			path = fmt.Sprintf("/deny/%d", i)
		}
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: svc\r\n"+
			"Baggage: k8s.namespace.name=ns-%d,k8s.deployment.name=w-%d,app.name=a%d,app.version=v%d,service.name=s%d,service.version=r%d,k8s.cluster.name=c%d\r\n"+
			"X-Header-%d: %d\r\nUser-Agent: agent-%d\r\nContent-Length: 0\r\n\r\n", method, path, i, i, i, i, i, i, i, i, i, i)
		codes[clients[i%len(clients)].send(method, head)] = true
	}
	// Requests with a matching namespace claim: the identity's budget.
	for i := range 200 {
		head := fmt.Sprintf("GET /ok HTTP/1.1\r\nHost: svc\r\nBaggage: k8s.namespace.name=ns,k8s.deployment.name=curl-%d\r\n\r\n", i)
		codes[clients[0].send("GET", head)] = true
	}
	mfs, _ := scrape(t, d)
	families := []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"}
	// Per code: the unidentified clients share one source (all unknown); the
	// identity has up to claimsPerIdentity claims plus its folded source.
	bound := len(codes) * (1 + claimsPerIdentity + 1)
	for _, name := range families {
		if n := len(mfs[name].GetMetric()); n > bound {
			t.Errorf("%s: %d series after 5,200 distinct requests (codes %v), want at most %d", name, n, codes, bound)
		}
	}
	if v := counter(mfs, "kgateway_waypoint_telemetry_labels_folded_total", "reason", "unvouched"); v < 3000 {
		t.Errorf("unvouched folds %v: the identity-less clients' and contradicting baggage was not folded", v)
	}

	// The backend now chooses codes and gRPC statuses.
	before := len(mfs["istio_requests_total"].GetMetric())
	for i := range 400 {
		head := fmt.Sprintf("POST /grpc HTTP/1.1\r\nHost: svc\r\nContent-Type: application/grpc\r\nX-Status: %d\r\n"+
			"X-Grpc-Status: %d%s\r\nContent-Length: 0\r\n\r\n", 600+i, 17+i, strings.Repeat("x", i%3))
		clients[1].send("POST", head)
	}
	mfs, size := scrape(t, d)
	if n := len(mfs["istio_requests_total"].GetMetric()); n > before+4 {
		t.Errorf("400 backend-chosen codes and gRPC statuses added %d series, want at most 4", n-before)
	}
	for _, m := range mfs["istio_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			v := l.GetValue()
			switch l.GetName() {
			case "response_code":
				if c, err := strconv.Atoi(v); v != "unknown" && (err != nil || c != 0 && (c < 100 || c > 599)) {
					t.Errorf("response_code %q", v)
				}
			case "grpc_response_status":
				if c, err := strconv.Atoi(v); v != "" && (err != nil || c < -1 || c > 16) {
					t.Errorf("grpc_response_status %q", v)
				}
			}
			for _, bad := range []string{"agent-", "ns-", "w-", "/p", "/deny", "x=", "X-Header"} {
				if strings.Contains(v, bad) {
					t.Errorf("label %s=%q carries a request-derived value", l.GetName(), v)
				}
			}
			if len(v) > 1 && v[0] == 'M' && v[1] >= '0' && v[1] <= '9' {
				t.Errorf("label %s=%q is a request method", l.GetName(), v)
			}
		}
	}
	t.Logf("%d response codes seen; scrape %d bytes", len(codes), size)
}

// dialFrom opens a connection to the inbound from a given loopback
// address (the peer the listener sees) and writes a valid PROXY header.
func dialFrom(t *testing.T, local, inbound string) net.Conn {
	t.Helper()
	dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := dl.Dial("tcp", inbound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestProxyProtocolAllowedSources(t *testing.T) {
	ep := startBackend(t, "127.0.42.1")
	d := start(t, dataplane.Options{Inbound: inboundOptions("127.0.0.2/32")}, ep)
	inbound := d.InboundAddr().String()
	hdr, err := meshclient.Conn{
		Source: netip.MustParseAddrPort("127.0.43.9:40000"), Destination: netip.MustParseAddrPort(vip), Identity: curlID,
	}.Header()
	if err != nil {
		t.Fatal(err)
	}

	// An allowed peer is served.
	c := dialFrom(t, "127.0.0.2", inbound)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(hdr, "GET /ok HTTP/1.1\r\nHost: svc\r\n\r\n"...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("allowed peer 127.0.0.2: %v %v", resp, err)
	}

	// Another peer is closed at once, before it sends anything: the read
	// ends with EOF, long before the PROXY header timeout (one minute).
	c = dialFrom(t, "127.0.0.3", inbound)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("refused peer 127.0.0.3 read %d bytes, err %v", n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("refused peer 127.0.0.3: the connection stayed open")
	}
	// Even with a valid header and request, nothing is served.
	c = dialFrom(t, "127.0.0.3", inbound)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(append(hdr, "GET /ok HTTP/1.1\r\nHost: svc\r\n\r\n"...))
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		t.Fatal("refused peer 127.0.0.3 got an answer")
	}

	mfs, _ := scrape(t, d)
	const name = "kgateway_waypoint_downstream_connections_refused_total"
	if v := counter(mfs, name, "reason", "source"); v != 2 {
		t.Errorf("%s{reason=source} = %v, want 2", name, v)
	}
	if v := counter(mfs, name, "reason", "header"); v != 0 {
		t.Errorf("%s{reason=header} = %v, want 0: refused peers must not get as far as the header", name, v)
	}
}

func inboundOptions(cidrs ...string) inbound.Options {
	o := inbound.Options{HeaderTimeout: time.Minute}
	for _, c := range cidrs {
		o.AllowedSources = append(o.AllowedSources, netip.MustParsePrefix(c))
	}
	return o
}

func TestProxyProtocolAnySourceByDefault(t *testing.T) {
	ep := startBackend(t, "127.0.44.1")
	d := start(t, dataplane.Options{}, ep)
	hdr, err := meshclient.Conn{
		Source: netip.MustParseAddrPort("127.0.45.9:40000"), Destination: netip.MustParseAddrPort(vip), Identity: curlID,
	}.Header()
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"127.0.0.2", "127.0.0.3"} {
		c := dialFrom(t, peer, d.InboundAddr().String())
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append(hdr, "GET /ok HTTP/1.1\r\nHost: svc\r\n\r\n"...)); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("peer %s with no allowed list: %v %v", peer, resp, err)
		}
	}
}
