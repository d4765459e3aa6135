package telemetry

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	unknown  = "unknown"
	latest   = "latest"
	reporter = "waypoint"
)

// DurationBuckets are Envoy's default histogram buckets
// (source/common/stats/histogram_impl.cc), which Istio's
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes use unless a pod overrides them.
var DurationBuckets = []float64{
	0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000, 300000, 600000, 1800000, 3600000,
}

// peerLabels names the label order of both metric families: the source's and
// destination's workload labels, then the HTTP-only ones.
var peerLabelNames = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service", "destination_canonical_service",
	"destination_canonical_revision", "destination_service_name", "destination_service_namespace",
	"destination_cluster",
	"request_protocol", "response_flags", "connection_security_policy",
}

// HTTPLabels are the labels of Istio's HTTP metrics, TCPLabels of its TCP
// ones (istio_stats.cc: the TCP metrics have no response_code nor
// grpc_response_status).
var (
	HTTPLabels = append(append([]string{}, peerLabelNames...), "response_code", "grpc_response_status")
	TCPLabels  = append([]string{}, peerLabelNames...)
)

// seriesKey is one label set. It is comparable, so a map lookup with a key
// built on the stack costs no allocation; the label slice is only built the
// first time a set is seen.
type seriesKey struct {
	srcWorkload, srcCanonicalService, srcCanonicalRevision, srcNamespace string
	srcPrincipal, srcApp, srcVersion, srcCluster                         string

	dstWorkload, dstNamespace, dstPrincipal, dstApp, dstVersion string
	dstService, dstCanonicalService, dstCanonicalRevision       string
	dstServiceName, dstServiceNamespace, dstCluster             string

	protocol, flags, security string
	code, grpcStatus          string // HTTP only

	// extra are the values of the Telemetry API's tag value expressions
	// (shape.go), in the shape's order.
	extra [MaxTagExprs]string
}

func (k *seriesKey) values(http bool) []string {
	v := []string{
		reporter,
		k.srcWorkload, k.srcCanonicalService, k.srcCanonicalRevision, k.srcNamespace,
		k.srcPrincipal, k.srcApp, k.srcVersion, k.srcCluster,
		k.dstWorkload, k.dstNamespace, k.dstPrincipal, k.dstApp, k.dstVersion,
		k.dstService, k.dstCanonicalService, k.dstCanonicalRevision, k.dstServiceName,
		k.dstServiceNamespace, k.dstCluster,
		k.protocol, k.flags, k.security,
	}
	if http {
		v = append(v, k.code, k.grpcStatus)
	}
	return append(v, k.extra[:]...)
}

// foldSource drops every source label: what a full family still lets in.
func (k *seriesKey) foldSource() {
	k.srcWorkload, k.srcCanonicalService, k.srcCanonicalRevision = unknown, unknown, latest
	k.srcNamespace, k.srcPrincipal = unknown, unknown
	k.srcApp, k.srcVersion, k.srcCluster = unknown, unknown, unknown
}

// overflow makes k the one label set of a full family's overflow series:
// every label "unknown" but the reporter (and an empty gRPC status).
func (k *seriesKey) overflow(http bool) {
	*k = seriesKey{}
	k.foldSource()
	k.dstWorkload, k.dstNamespace, k.dstPrincipal, k.dstApp, k.dstVersion = unknown, unknown, unknown, unknown, unknown
	k.dstService, k.dstCanonicalService, k.dstCanonicalRevision = unknown, unknown, unknown
	k.dstServiceName, k.dstServiceNamespace, k.dstCluster = unknown, unknown, unknown
	k.protocol, k.flags, k.security = unknown, unknown, unknown
	if http {
		k.code = unknown
	}
}

// clone copies the strings of k, which may be substrings of a request's
// headers, so that a kept label set does not keep the request alive.
func (k *seriesKey) clone() seriesKey {
	c := *k
	for _, f := range []*string{
		&c.srcWorkload, &c.srcCanonicalService, &c.srcCanonicalRevision, &c.srcNamespace,
		&c.srcPrincipal, &c.srcApp, &c.srcVersion, &c.srcCluster,
		&c.dstWorkload, &c.dstNamespace, &c.dstPrincipal, &c.dstApp, &c.dstVersion,
		&c.dstService, &c.dstCanonicalService, &c.dstCanonicalRevision,
		&c.dstServiceName, &c.dstServiceNamespace, &c.dstCluster,
		&c.protocol, &c.flags, &c.security, &c.code, &c.grpcStatus,
	} {
		*f = strings.Clone(*f)
	}
	for i := range c.extra {
		c.extra[i] = strings.Clone(c.extra[i])
	}
	return c
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// setPeers fills the workload labels the way Istio's stats filter does for
// reporter "waypoint" (Reporter::ServerGateway in istio_stats.cc), with the
// source bounded by the trust rule of labels.go. It returns why source
// values were folded ("" when none were).
func (t *Telemetry) setPeers(k *seriesKey, src, dst *Peer, svc, svcName, svcNamespace, flags, security string) (folded string) {
	l, vouched, folded := deriveSource(src)
	if vouched && !t.claims.admit(l.principal, &l.claims) {
		l.foldClaims()
		folded = foldBudget
	}
	k.srcWorkload, k.srcCanonicalService, k.srcCanonicalRevision = l.workload, l.canonicalService, l.canonicalRevision
	k.srcNamespace, k.srcPrincipal = l.namespace, l.principal
	k.srcApp, k.srcVersion, k.srcCluster = l.app, l.version, l.cluster

	k.dstWorkload = or(dst.Workload, unknown)
	k.dstNamespace = or(dst.Namespace, or(NamespaceFromPrincipal(dst.Principal), unknown))
	k.dstPrincipal = or(dst.Principal, unknown)
	k.dstApp = or(dst.App, unknown)
	k.dstVersion = or(dst.Version, unknown)
	k.dstCanonicalService = or(dst.CanonicalService, unknown)
	k.dstCanonicalRevision = or(dst.CanonicalRevision, unknown)
	k.dstService = or(svc, k.dstCanonicalService)
	k.dstServiceName = or(svcName, k.dstCanonicalService)
	k.dstServiceNamespace = or(svcNamespace, unknown)
	k.dstCluster = or(dst.Cluster, t.clusterID)

	k.flags = flagsLabel(flags)
	k.security = oneOf(or(security, SecurityUnknown), SecurityMutualTLS, SecurityNone, SecurityUnknown)
	return folded
}

// httpSeries and tcpSeries are one label set's children, each created on
// first use: a metric the Telemetry API disables never shows a series.
type httpSeries struct {
	m                             *istioMetrics
	vals                          []string
	requests                      lazy[prometheus.Counter]
	duration, reqBytes, respBytes lazy[prometheus.Observer]
}

type tcpSeries struct {
	m                              *istioMetrics
	vals                           []string
	opened, closed, sent, received lazy[prometheus.Counter]
}

// lazy is a child made once (WithLabelValues gives the same child to
// racing makers).
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(mk func() T) T {
	if v := l.p.Load(); v != nil {
		return *v
	}
	v := mk()
	l.p.CompareAndSwap(nil, &v)
	return *l.p.Load()
}

func (s *httpSeries) req() prometheus.Counter {
	return s.requests.get(func() prometheus.Counter {
		return s.m.requests.WithLabelValues(s.m.shape.pick(mRequestCount, s.vals)...)
	})
}
func (s *httpSeries) dur() prometheus.Observer {
	return s.duration.get(func() prometheus.Observer {
		return s.m.duration.WithLabelValues(s.m.shape.pick(mRequestDuration, s.vals)...)
	})
}
func (s *httpSeries) reqSize() prometheus.Observer {
	return s.reqBytes.get(func() prometheus.Observer {
		return s.m.reqBytes.WithLabelValues(s.m.shape.pick(mRequestSize, s.vals)...)
	})
}
func (s *httpSeries) respSize() prometheus.Observer {
	return s.respBytes.get(func() prometheus.Observer {
		return s.m.respBytes.WithLabelValues(s.m.shape.pick(mResponseSize, s.vals)...)
	})
}
func (s *tcpSeries) open() prometheus.Counter {
	return s.opened.get(func() prometheus.Counter { return s.m.opened.WithLabelValues(s.m.shape.pick(mTCPOpened, s.vals)...) })
}
func (s *tcpSeries) close() prometheus.Counter {
	return s.closed.get(func() prometheus.Counter { return s.m.closed.WithLabelValues(s.m.shape.pick(mTCPClosed, s.vals)...) })
}
func (s *tcpSeries) sentC() prometheus.Counter {
	return s.sent.get(func() prometheus.Counter { return s.m.sent.WithLabelValues(s.m.shape.pick(mTCPSent, s.vals)...) })
}
func (s *tcpSeries) recvC() prometheus.Counter {
	return s.received.get(func() prometheus.Counter {
		return s.m.received.WithLabelValues(s.m.shape.pick(mTCPReceived, s.vals)...)
	})
}

// istioMetrics holds Istio's standard metric families and a cache of their
// children by label set.
type istioMetrics struct {
	requests                       *prometheus.CounterVec
	duration, reqBytes, respBytes  *prometheus.HistogramVec
	opened, closed, sent, received *prometheus.CounterVec

	// shape is the families' labels (shape.go).
	shape *metricShape

	mu   sync.RWMutex
	http map[seriesKey]*httpSeries
	tcp  map[seriesKey]*tcpSeries
}

// collectors are the families, to register or unregister together.
func (m *istioMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.reqBytes, m.respBytes, m.opened, m.closed, m.sent, m.received}
}

// newIstioMetrics makes the families with Istio's labels and registers,
// once, the collector of whichever families cur holds.
func newIstioMetrics(reg prometheus.Registerer, version string, cur *atomic.Pointer[istioMetrics]) (*istioMetrics, error) {
	m := newFamilies(defaultShape)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "istio_build", Help: "Istio component build info.",
	}, []string{"component", "tag"})
	build.WithLabelValues("proxy", version).Set(1)
	for _, c := range []prometheus.Collector{familiesCollector{cur}, build} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register Istio metrics: %w", err)
		}
	}
	return m, nil
}

// familiesCollector collects the families in force. It describes none
// (an unchecked collector): a registry keeps a family's label names for
// its lifetime, and the Telemetry API's tag overrides change them.
type familiesCollector struct{ cur *atomic.Pointer[istioMetrics] }

func (familiesCollector) Describe(chan<- *prometheus.Desc) {}

func (c familiesCollector) Collect(ch chan<- prometheus.Metric) {
	if m := c.cur.Load(); m != nil {
		for _, f := range m.collectors() {
			f.Collect(ch)
		}
	}
}

// newFamilies makes Istio's metric families with the labels of sh.
func newFamilies(sh *metricShape) *istioMetrics {
	counter := func(i int, name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, sh.names[i])
	}
	histogram := func(i int, name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: DurationBuckets}, sh.names[i])
	}
	return &istioMetrics{
		shape:     sh,
		requests:  counter(mRequestCount, "istio_requests_total", "Requests handled by the proxy."),
		duration:  histogram(mRequestDuration, "istio_request_duration_milliseconds", "Duration of requests in milliseconds."),
		reqBytes:  histogram(mRequestSize, "istio_request_bytes", "Size of requests in bytes."),
		respBytes: histogram(mResponseSize, "istio_response_bytes", "Size of responses in bytes."),
		opened:    counter(mTCPOpened, "istio_tcp_connections_opened_total", "TCP connections opened."),
		closed:    counter(mTCPClosed, "istio_tcp_connections_closed_total", "TCP connections closed."),
		sent:      counter(mTCPSent, "istio_tcp_sent_bytes_total", "Bytes sent to the client on TCP connections."),
		received:  counter(mTCPReceived, "istio_tcp_received_bytes_total", "Bytes received from the client on TCP connections."),
		http:      map[seriesKey]*httpSeries{},
		tcp:       map[seriesKey]*tcpSeries{},
	}
}

// httpSeriesFor returns the children for k, creating them once. A family
// holds at most maxSeries label sets: past it, a new label set has its
// source folded and joins an existing series if there is one, else the
// family's single overflow series (every label "unknown"). Both count in
// kgateway_waypoint_telemetry_series_overflow_total.
func (t *Telemetry) httpSeriesFor(m *istioMetrics, k *seriesKey) *httpSeries {
	m.mu.RLock()
	s := m.http[*k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.http[*k]; s != nil {
		return s
	}
	if len(m.http) >= t.maxSeries {
		t.health.overflow.Inc()
		if k.foldSource(); m.http[*k] != nil {
			return m.http[*k]
		}
		if k.overflow(true); m.http[*k] != nil {
			return m.http[*k]
		}
	}
	c := k.clone()
	v := c.values(true)
	s = &httpSeries{m: m, vals: v}
	m.http[c] = s
	return s
}

// tcpSeriesFor is httpSeriesFor for the TCP families.
func (t *Telemetry) tcpSeriesFor(m *istioMetrics, k *seriesKey) *tcpSeries {
	m.mu.RLock()
	s := m.tcp[*k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.tcp[*k]; s != nil {
		return s
	}
	if len(m.tcp) >= t.maxSeries {
		t.health.overflow.Inc()
		if k.foldSource(); m.tcp[*k] != nil {
			return m.tcp[*k]
		}
		if k.overflow(false); m.tcp[*k] != nil {
			return m.tcp[*k]
		}
	}
	c := k.clone()
	v := c.values(false)
	s = &tcpSeries{m: m, vals: v}
	m.tcp[c] = s
	return s
}

// statusCodes holds the decimal strings of the status codes, so that the
// response_code label costs no allocation.
var statusCodes = func() (s [600]string) {
	for i := range s {
		s[i] = itoa(i)
	}
	return s
}()

// RecordRequest counts a finished request in istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes (reporter="waypoint"), and writes its access log line.
func (t *Telemetry) RecordRequest(r *RequestRecord) {
	if t == nil || r == nil {
		return
	}
	pol := t.policyFor(r.DestinationServiceNamespace, r.DestinationServiceName)
	var off *[numMetrics]bool
	if pol != nil {
		off = &pol.disabled
	} else {
		off = &noneDisabled
	}
	if !off[mRequestCount] || !off[mRequestDuration] || !off[mRequestSize] || !off[mResponseSize] {
		t.observeRequest(r, off)
	}
	t.logRequest(r, pol)
}

// noneDisabled: every metric on.
var noneDisabled [numMetrics]bool

func (t *Telemetry) observeRequest(r *RequestRecord, off *[numMetrics]bool) {
	var k seriesKey
	t.health.folded(t.setPeers(&k, &r.Source, &r.Destination, r.DestinationService, r.DestinationServiceName,
		r.DestinationServiceNamespace, r.ResponseFlags, r.ConnectionSecurityPolicy))
	k.protocol = oneOf(or(r.Protocol, ProtocolHTTP), ProtocolHTTP, ProtocolGRPC)
	var ok bool
	if k.code, ok = codeLabel(r.ResponseCode); !ok {
		t.health.folded(foldInvalid)
	}
	if k.protocol == ProtocolGRPC {
		if k.grpcStatus = grpcStatusLabel(r.GRPCStatus); k.grpcStatus == "-1" {
			t.health.folded(foldInvalid)
		}
	}
	m := t.std.Load()
	if len(m.shape.exprs) > 0 {
		t.tagValues(m.shape, &k, &requestVars{r: r})
	}
	s := t.httpSeriesFor(m, &k)
	if !off[mRequestCount] {
		s.req().Inc()
	}
	if !off[mRequestDuration] {
		s.dur().Observe(float64(r.Duration.Milliseconds()))
	}
	reqBytes, respBytes := r.RequestWireBytes, r.ResponseWireBytes
	if reqBytes == 0 {
		reqBytes = r.RequestBytes
	}
	if respBytes == 0 {
		respBytes = r.ResponseBytes
	}
	if !off[mRequestSize] {
		s.reqSize().Observe(float64(reqBytes))
	}
	if !off[mResponseSize] {
		s.respSize().Observe(float64(respBytes))
	}
}

// tcpOff is the disabled metrics for a connection's service.
func (t *Telemetry) tcpOff(r *TCPRecord) (*policy, *[numMetrics]bool) {
	if pol := t.policyFor(r.DestinationServiceNamespace, r.DestinationServiceName); pol != nil {
		return pol, &pol.disabled
	}
	return nil, &noneDisabled
}

// tcpKey is the label set of a connection; folds are counted once, when
// it opens.
func (t *Telemetry) tcpKey(r *TCPRecord, opened bool) (*istioMetrics, seriesKey) {
	var k seriesKey
	folded := t.setPeers(&k, &r.Source, &r.Destination, r.DestinationService, r.DestinationServiceName,
		r.DestinationServiceNamespace, r.ResponseFlags, r.ConnectionSecurityPolicy)
	if opened {
		t.health.folded(folded)
	}
	k.protocol = ProtocolTCP
	m := t.std.Load()
	if len(m.shape.exprs) > 0 {
		t.tagValues(m.shape, &k, &requestVars{tcp: r})
	}
	return m, k
}

// TCPOpened counts istio_tcp_connections_opened_total.
func (t *Telemetry) TCPOpened(r *TCPRecord) {
	if t == nil || r == nil {
		return
	}
	if _, off := t.tcpOff(r); off[mTCPOpened] {
		return
	}
	m, k := t.tcpKey(r, true)
	t.tcpSeriesFor(m, &k).open().Inc()
}

// TCPReport adds the bytes moved since the last report to
// istio_tcp_sent_bytes_total and istio_tcp_received_bytes_total, as Istio
// does every few seconds on long connections. Call it from one goroutine
// per record.
func (t *Telemetry) TCPReport(r *TCPRecord) {
	if t == nil || r == nil {
		return
	}
	_, off := t.tcpOff(r)
	if off[mTCPSent] && off[mTCPReceived] {
		return
	}
	m, k := t.tcpKey(r, false)
	t.tcpBytes(t.tcpSeriesFor(m, &k), r, off)
}

func (t *Telemetry) tcpBytes(s *tcpSeries, r *TCPRecord, off *[numMetrics]bool) {
	if d := r.SentBytes - r.reportedSent; d > 0 {
		if !off[mTCPSent] {
			s.sentC().Add(float64(d))
		}
		r.reportedSent = r.SentBytes
	}
	if d := r.ReceivedBytes - r.reportedReceived; d > 0 {
		if !off[mTCPReceived] {
			s.recvC().Add(float64(d))
		}
		r.reportedReceived = r.ReceivedBytes
	}
}

// TCPClosed adds the unreported bytes, counts
// istio_tcp_connections_closed_total and writes the access log line.
func (t *Telemetry) TCPClosed(r *TCPRecord) {
	if t == nil || r == nil {
		return
	}
	pol, off := t.tcpOff(r)
	if !off[mTCPSent] || !off[mTCPReceived] || !off[mTCPClosed] {
		m, k := t.tcpKey(r, false)
		s := t.tcpSeriesFor(m, &k)
		t.tcpBytes(s, r, off)
		if !off[mTCPClosed] {
			s.close().Inc()
		}
	}
	t.logTCP(r, pol)
}
