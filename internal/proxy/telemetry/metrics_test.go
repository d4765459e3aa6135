package telemetry

import (
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
)

// scrape fetches the exposition over a real socket and parses it with
// Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q, want the text exposition", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return mfs
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// series returns the metric of family name whose labels include want;
// exactly one must match.
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no family %s", name)
	}
	var found []*dto.Metric
	for _, m := range mf.GetMetric() {
		got := labelMap(m)
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
				break
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1", name, want, len(found))
	}
	return found[0]
}

func baseRecord() RequestRecord {
	src := PeerFromPrincipal("spiffe://cluster.local/ns/client-ns/sa/curl")
	ParseBaggage("k8s.deployment.name=curl,service.name=curl,app.name=curl,app.version=v1,k8s.cluster.name=Kubernetes", &src)
	return RequestRecord{
		Start:    time.Date(2026, 10, 9, 11, 44, 22, 954_000_000, time.UTC),
		Duration: 7*time.Millisecond + 900*time.Microsecond,
		Source:   src,
		Destination: Peer{
			Principal: "spiffe://cluster.local/ns/httpbin/sa/httpbin", Namespace: "httpbin",
			Workload: "httpbin-v1", App: "httpbin", Version: "v1",
			CanonicalService: "httpbin", CanonicalRevision: "v1", Cluster: "Kubernetes",
		},
		DestinationService:          "httpbin.httpbin.svc.cluster.local",
		DestinationServiceName:      "httpbin",
		DestinationServiceNamespace: "httpbin",
		Protocol:                    ProtocolHTTP,
		HTTPProtocol:                "HTTP/1.1",
		Method:                      "GET",
		Path:                        "/status/418?x=1",
		Authority:                   "httpbin:8000",
		Scheme:                      "http",
		RequestID:                   "1227bbf1-aa5a-4818-aaac-f9ea2d7fdc3c",
		UserAgent:                   "curl/8.11.1",
		ResponseCode:                200,
		UpstreamHost:                "10.244.0.15:8080",
		UpstreamCluster:             UpstreamCluster(8000, "http", "", "httpbin.httpbin.svc.cluster.local"),
		RouteName:                   "default",
		UpstreamServiceTimeMs:       6,
		RequestBytes:                0,
		ResponseBytes:               429,
		RequestWireBytes:            120,
		ResponseWireBytes:           600,
		ConnectionSecurityPolicy:    SecurityMutualTLS,
		DownstreamRemote:            "10.244.0.14:59462",
		DownstreamLocal:             "10.96.132.123:8000",
	}
}

func TestMetricsExposition(t *testing.T) {
	tel, err := New(Options{ClusterID: "Kubernetes", Version: "1.28.0"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.MetricsHandler(tel.Registry()))
	defer srv.Close()

	ok := baseRecord()
	tel.RecordRequest(&ok)
	tel.RecordRequest(&ok)

	grpcOK := baseRecord()
	grpcOK.Protocol, grpcOK.HTTPProtocol, grpcOK.GRPCStatus = ProtocolGRPC, "HTTP/2", "0"
	tel.RecordRequest(&grpcOK)
	grpcUnavailable := grpcOK
	grpcUnavailable.GRPCStatus = "14"
	tel.RecordRequest(&grpcUnavailable)

	denied := baseRecord()
	denied.ResponseCode, denied.ResponseCodeDetails = 403, RBACDeniedDetails("")
	denied.UpstreamHost, denied.Destination = "", Peer{}
	tel.RecordRequest(&denied)

	uh := baseRecord()
	uh.ResponseCode, uh.ResponseFlags, uh.UpstreamHost, uh.Destination = 503, FlagNoHealthyUpstream, "", Peer{}
	tel.RecordRequest(&uh)
	uf := baseRecord()
	uf.ResponseCode, uf.ResponseFlags = 503, FlagUpstreamConnectionFailure
	tel.RecordRequest(&uf)

	tcp := TCPRecord{
		Start: ok.Start, Source: ok.Source, Destination: ok.Destination,
		DestinationService: "tcp-echo.echo.svc.cluster.local", DestinationServiceName: "tcp-echo",
		DestinationServiceNamespace: "echo", UpstreamHost: "10.244.0.20:9000",
		ConnectionSecurityPolicy: SecurityMutualTLS,
	}
	tel.TCPOpened(&tcp)
	tcp.SentBytes, tcp.ReceivedBytes = 100, 40
	tel.TCPReport(&tcp)
	tcp.SentBytes, tcp.ReceivedBytes = 150, 42
	tcp.Duration = 1500 * time.Millisecond
	tel.TCPClosed(&tcp)

	tel.SetConfigVersion(7)
	tel.ConfigUpdated(nil)
	tel.DownstreamConnOpened("h2c")

	mfs := scrape(t, srv.URL+"/stats/prometheus")

	// Label sets: Istio's, exactly.
	for name, want := range map[string][]string{
		"istio_requests_total":                HTTPLabels,
		"istio_request_duration_milliseconds": HTTPLabels,
		"istio_request_bytes":                 HTTPLabels,
		"istio_response_bytes":                HTTPLabels,
		"istio_tcp_connections_opened_total":  TCPLabels,
		"istio_tcp_connections_closed_total":  TCPLabels,
		"istio_tcp_sent_bytes_total":          TCPLabels,
		"istio_tcp_received_bytes_total":      TCPLabels,
	} {
		mf := mfs[name]
		if mf == nil {
			t.Fatalf("no family %s", name)
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			w := slices.Clone(want)
			sort.Strings(w)
			sort.Strings(got)
			if !slices.Equal(got, w) {
				t.Fatalf("%s labels %v, want %v", name, got, w)
			}
		}
	}
	if n := len(HTTPLabels); n != 25 {
		t.Fatalf("%d HTTP labels, Istio has 25", n)
	}

	// The 200s: every label as Istio's waypoint sets it.
	m := series(t, mfs, "istio_requests_total", map[string]string{"response_code": "200", "request_protocol": "http"})
	wantLabels := map[string]string{
		"reporter":                       "waypoint",
		"source_workload":                "curl",
		"source_canonical_service":       "curl",
		"source_canonical_revision":      "latest",
		"source_workload_namespace":      "client-ns",
		"source_principal":               "spiffe://cluster.local/ns/client-ns/sa/curl",
		"source_app":                     "curl",
		"source_version":                 "v1",
		"source_cluster":                 "Kubernetes",
		"destination_workload":           "httpbin-v1",
		"destination_workload_namespace": "httpbin",
		"destination_principal":          "spiffe://cluster.local/ns/httpbin/sa/httpbin",
		"destination_app":                "httpbin",
		"destination_version":            "v1",
		"destination_service":            "httpbin.httpbin.svc.cluster.local",
		"destination_service_name":       "httpbin",
		"destination_service_namespace":  "httpbin",
		"destination_canonical_service":  "httpbin",
		"destination_canonical_revision": "v1",
		"destination_cluster":            "Kubernetes",
		"request_protocol":               "http",
		"response_code":                  "200",
		"grpc_response_status":           "",
		"response_flags":                 "-",
		"connection_security_policy":     "mutual_tls",
	}
	if got := labelMap(m); !mapsEqual(got, wantLabels) {
		t.Errorf("200 labels\n got %v\nwant %v", got, wantLabels)
	}
	if v := m.GetCounter().GetValue(); v != 2 {
		t.Errorf("istio_requests_total 200 = %v, want 2", v)
	}

	// Duration: Envoy's buckets, whole milliseconds (7.9ms counts as 7).
	h := series(t, mfs, "istio_request_duration_milliseconds", map[string]string{"response_code": "200", "request_protocol": "http"}).GetHistogram()
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if !slices.Equal(bounds, append(slices.Clone(DurationBuckets), math.Inf(1))) {
		t.Errorf("buckets %v, want Envoy's %v and +Inf", bounds, DurationBuckets)
	}
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 14 {
		t.Errorf("duration count %d sum %v, want 2 and 14", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 10 {
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if s := series(t, mfs, "istio_request_bytes", map[string]string{"response_code": "200", "request_protocol": "http"}).GetHistogram(); s.GetSampleSum() != 240 {
		t.Errorf("request bytes sum %v, want 2x120 wire bytes", s.GetSampleSum())
	}
	if s := series(t, mfs, "istio_response_bytes", map[string]string{"response_code": "200", "request_protocol": "http"}).GetHistogram(); s.GetSampleSum() != 1200 {
		t.Errorf("response bytes sum %v, want 2x600 wire bytes", s.GetSampleSum())
	}

	// gRPC: protocol grpc, the grpc-status as a label, HTTP code 200.
	for _, st := range []string{"0", "14"} {
		m := series(t, mfs, "istio_requests_total", map[string]string{"request_protocol": "grpc", "grpc_response_status": st})
		if m.GetCounter().GetValue() != 1 || labelMap(m)["response_code"] != "200" {
			t.Errorf("grpc status %s: %v", st, labelMap(m))
		}
	}

	// Denied: 403 with no flag, destination workload unknown.
	m = series(t, mfs, "istio_requests_total", map[string]string{"response_code": "403"})
	if l := labelMap(m); l["response_flags"] != "-" || l["destination_workload"] != "unknown" ||
		l["destination_canonical_revision"] != "unknown" || l["destination_service"] != "httpbin.httpbin.svc.cluster.local" {
		t.Errorf("denied labels %v", l)
	}
	// Failed: 503 UH and UF are two series.
	for _, f := range []string{"UH", "UF"} {
		m := series(t, mfs, "istio_requests_total", map[string]string{"response_code": "503", "response_flags": f})
		if m.GetCounter().GetValue() != 1 {
			t.Errorf("503 %s = %v, want 1", f, m.GetCounter().GetValue())
		}
	}

	// TCP.
	tcpLabels := map[string]string{"request_protocol": "tcp", "destination_service": "tcp-echo.echo.svc.cluster.local", "reporter": "waypoint"}
	for name, want := range map[string]float64{
		"istio_tcp_connections_opened_total": 1,
		"istio_tcp_connections_closed_total": 1,
		"istio_tcp_sent_bytes_total":         150,
		"istio_tcp_received_bytes_total":     42,
	} {
		if v := series(t, mfs, name, tcpLabels).GetCounter().GetValue(); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}

	// Bounded labels: no path, no IP, no request id anywhere.
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if strings.Contains(v, "/status") || strings.Contains(v, "10.244.") || strings.Contains(v, "10.96.") || strings.Contains(v, "1227bbf1") {
					t.Errorf("%s label %s=%q carries a path, address or request id", name, l.GetName(), v)
				}
			}
		}
	}

	// Health.
	if v := series(t, mfs, "kgateway_waypoint_config_version", nil).GetGauge().GetValue(); v != 7 {
		t.Errorf("config version %v", v)
	}
	if v := series(t, mfs, "kgateway_waypoint_config_updates_total", map[string]string{"result": "success"}).GetCounter().GetValue(); v != 1 {
		t.Errorf("config updates %v", v)
	}
	if v := series(t, mfs, "kgateway_waypoint_downstream_connections_active", map[string]string{"protocol": "h2c"}).GetGauge().GetValue(); v != 1 {
		t.Errorf("active connections %v", v)
	}
	if v := series(t, mfs, "kgateway_waypoint_go_goroutines", nil).GetGauge().GetValue(); v < 1 {
		t.Errorf("goroutines %v", v)
	}
	series(t, mfs, "istio_build", map[string]string{"component": "proxy", "tag": "1.28.0"})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestIstioDefaults(t *testing.T) {
	tel, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.MetricsHandler(tel.Registry()))
	defer srv.Close()
	// Nothing known but the response: Istio's defaults everywhere.
	tel.RecordRequest(&RequestRecord{ResponseCode: 404, ResponseFlags: FlagNoRouteFound})
	m := series(t, scrape(t, srv.URL+"/metrics"), "istio_requests_total", map[string]string{"response_code": "404"})
	want := map[string]string{
		"source_workload": "unknown", "source_canonical_service": "unknown", "source_canonical_revision": "latest",
		"source_workload_namespace": "unknown", "source_principal": "unknown", "source_app": "unknown",
		"source_version": "unknown", "source_cluster": "unknown",
		"destination_workload": "unknown", "destination_workload_namespace": "unknown",
		"destination_principal": "unknown", "destination_app": "unknown", "destination_version": "unknown",
		"destination_service": "unknown", "destination_service_name": "unknown",
		"destination_canonical_service": "unknown", "destination_canonical_revision": "unknown",
		"destination_cluster": "Kubernetes", "request_protocol": "http", "response_flags": "NR",
		"connection_security_policy": "unknown",
	}
	got := labelMap(m)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestMaxSeriesIsAHardCap(t *testing.T) {
	tel, err := New(Options{MaxSeries: 2})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(principal, svc string) {
		r := RequestRecord{ResponseCode: 200, DestinationService: svc, Source: PeerFromPrincipal(principal)}
		tel.RecordRequest(&r)
	}
	rec("", "a.ns.svc.cluster.local")                                 // series 1: source unknown
	rec("spiffe://cluster.local/ns/x/sa/y", "a.ns.svc.cluster.local") // series 2: the family is full
	rec("spiffe://cluster.local/ns/x/sa/z", "a.ns.svc.cluster.local") // folded: joins series 1
	rec("spiffe://cluster.local/ns/w/sa/z", "b.ns.svc.cluster.local") // folded, still new: the overflow series
	rec("spiffe://cluster.local/ns/v/sa/z", "c.ns.svc.cluster.local") // the overflow series again
	srv := httptest.NewServer(admin.MetricsHandler(tel.Registry()))
	defer srv.Close()
	mfs := scrape(t, srv.URL+"/metrics")
	if n := len(mfs["istio_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d series, want the cap (2) plus the overflow series", n)
	}
	m := series(t, mfs, "istio_requests_total", map[string]string{"destination_service": "a.ns.svc.cluster.local", "source_principal": "unknown"})
	if v := m.GetCounter().GetValue(); v != 2 || labelMap(m)["source_workload_namespace"] != "unknown" {
		t.Errorf("folded series %v = %v, want 2 with the namespace folded too", labelMap(m), v)
	}
	m = series(t, mfs, "istio_requests_total", map[string]string{"destination_service": "unknown"})
	if l := labelMap(m); m.GetCounter().GetValue() != 2 || l["response_code"] != "unknown" || l["reporter"] != "waypoint" {
		t.Errorf("overflow series %v = %v, want 2", l, m.GetCounter().GetValue())
	}
	if v := series(t, mfs, "kgateway_waypoint_telemetry_series_overflow_total", nil).GetCounter().GetValue(); v != 3 {
		t.Errorf("overflow = %v, want 3", v)
	}
}

func TestNilTelemetryIsOff(t *testing.T) {
	var tel *Telemetry
	r := baseRecord()
	tel.RecordRequest(&r)
	tel.TCPOpened(&TCPRecord{})
	tel.TCPClosed(&TCPRecord{})
	tel.SetConfigVersion(1)
	tel.DownstreamConnOpened("tcp")
	if tel.Registry() != nil {
		t.Fatal("nil telemetry has a registry")
	}
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	_, span := tel.StartSpan(t.Context(), h, "x")
	span.End(200)
	if span.TraceID() != "" || h.Get("Traceparent") != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("off: trace id %q, traceparent %q", span.TraceID(), h.Get("Traceparent"))
	}
}

func TestPeerParsing(t *testing.T) {
	p := PeerFromPrincipal("spiffe://cluster.local/ns/bookinfo/sa/productpage")
	if p.Namespace != "bookinfo" {
		t.Fatalf("namespace %q", p.Namespace)
	}
	ParseBaggage(" k8s.deployment.name=productpage-v1 ,k8s.namespace.name=other,service.name=productpage;prop=1,"+
		"service.version=v1,app.name=productpage,app.version=v1,k8s.cluster.name=c1,bogus,k8s.instance.name=pod-1,x=", &p)
	want := Peer{
		Principal: "spiffe://cluster.local/ns/bookinfo/sa/productpage", Namespace: "bookinfo",
		Workload: "productpage-v1", App: "productpage", Version: "v1",
		CanonicalService: "productpage", CanonicalRevision: "v1", Cluster: "c1",
		contradicted: true, // k8s.namespace.name=other is not the identity's namespace
	}
	if p != want {
		t.Fatalf("peer\n got %+v\nwant %+v", p, want)
	}
	if ns := NamespaceFromPrincipal("spiffe://td/ns/last"); ns != "last" {
		t.Fatalf("namespace at the end: %q", ns)
	}
	if ns := NamespaceFromPrincipal("spiffe://td/sa/x"); ns != "" {
		t.Fatalf("no namespace: %q", ns)
	}
	if c := UpstreamCluster(8081, "http", "canary", "customers.lab.svc.cluster.local"); c != "inbound-vip|8081|http/canary|customers.lab.svc.cluster.local" {
		t.Fatalf("cluster %q", c)
	}
}
