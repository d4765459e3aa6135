package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// HealthPrefix is the prefix of the proxy's own metrics.
const HealthPrefix = "kgateway_waypoint_"

// DefaultMaxSeries bounds the label sets of each Istio metric family.
const DefaultMaxSeries = 10000

// Access log formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Options configures New. The zero value gives metrics only.
type Options struct {
	// Registry receives every metric; nil: a new one.
	Registry *prometheus.Registry
	// AccessLog receives one line per request or TCP connection; nil: off.
	// Writes are serialised, one Write per line.
	AccessLog io.Writer
	// AccessLogFormat is "text" (Istio's default Envoy text format; also
	// when empty) or "json" (Istio's default JSON field names).
	AccessLogFormat string
	// Tracing exports spans over OTLP; nil: spans are not recorded (StartSpan
	// returns a no-op span and leaves the headers as they came).
	Tracing *TracingOptions
	// Logger reports export and write errors; nil: discarded.
	Logger *slog.Logger

	// ClusterID is the waypoint's Istio cluster ID, the destination_cluster
	// label when the endpoint's is unknown (Istio labels it with the
	// waypoint's own). Empty: "Kubernetes", Istio's default.
	ClusterID string
	// Version is the tag of the istio_build{component="proxy"} gauge that
	// Istio's stats filter publishes. Empty: "unknown".
	Version string
	// ServiceName is the spans' service.name for tracers the Telemetry
	// API configures (empty: Tracing's, else "waypoint").
	ServiceName string
	// Stdout is where access log providers writing to /dev/stdout write
	// (nil: os.Stdout).
	Stdout io.Writer
	// MaxSeries bounds the label sets kept per metric family (HTTP and TCP
	// apart), a hard cap: past it, a record with a new label set has its
	// source labels folded to "unknown" and joins an existing series, or
	// else the family's one overflow series (every label "unknown");
	// kgateway_waypoint_telemetry_series_overflow_total counts them.
	// 0: DefaultMaxSeries.
	MaxSeries int
}

// Telemetry records metrics, access log lines and spans. Its methods are
// safe for concurrent use, and do nothing on a nil *Telemetry.
type Telemetry struct {
	reg       *prometheus.Registry
	log       *slog.Logger
	clusterID string
	maxSeries int

	std    atomic.Pointer[istioMetrics] // replaced when the labels change (shape.go)
	health *healthMetrics
	claims *claimsBudget

	accessLog io.Writer
	logMu     sync.Mutex
	json      bool

	tracer *tracer

	// The Telemetry API's configuration in force (policy.go); nil: the
	// options' settings.
	pol           atomic.Pointer[policySet]
	applyMu       sync.Mutex
	releaseDelay  time.Duration
	stdout        io.Writer
	traceDefaults TracingOptions
}

// New registers the metrics in opts.Registry (or a new registry) and starts
// the span exporter when tracing is configured. Call Shutdown to flush spans.
func New(opts Options) (*Telemetry, error) {
	t := &Telemetry{
		reg:       opts.Registry,
		log:       opts.Logger,
		clusterID: opts.ClusterID,
		maxSeries: opts.MaxSeries,
		accessLog: opts.AccessLog,
	}
	if t.reg == nil {
		t.reg = prometheus.NewRegistry()
	}
	t.stdout, t.releaseDelay = opts.Stdout, time.Minute
	if t.stdout == nil {
		t.stdout = os.Stdout
	}
	t.traceDefaults = TracingOptions{SamplingRatio: 0.01, ServiceName: opts.ServiceName}
	if opts.Tracing != nil {
		t.traceDefaults = *opts.Tracing
		if opts.ServiceName != "" {
			t.traceDefaults.ServiceName = opts.ServiceName
		}
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.clusterID == "" {
		t.clusterID = "Kubernetes"
	}
	if t.maxSeries <= 0 {
		t.maxSeries = DefaultMaxSeries
	}
	t.claims = newClaimsBudget(t.maxSeries)
	switch opts.AccessLogFormat {
	case "", FormatText:
	case FormatJSON:
		t.json = true
	default:
		return nil, fmt.Errorf("access log format %q: want %q or %q", opts.AccessLogFormat, FormatText, FormatJSON)
	}
	version := opts.Version
	if version == "" {
		version = unknown
	}
	var err error
	std, err := newIstioMetrics(t.reg, version, &t.std)
	if err != nil {
		return nil, err
	}
	t.std.Store(std)
	if t.health, err = newHealthMetrics(t.reg); err != nil {
		return nil, err
	}
	if opts.Tracing != nil {
		if t.tracer, err = newTracer(*opts.Tracing, t.log); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Registry is the registry the metrics are in: serve it on 15020 and on the
// admin's /stats.
func (t *Telemetry) Registry() *prometheus.Registry {
	if t == nil {
		return nil
	}
	return t.reg
}

// Shutdown flushes and stops the span exporter (bounded by ctx).
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tracer != nil {
		errs = append(errs, t.tracer.shutdown(ctx))
	}
	if set := t.pol.Load(); set != nil {
		for _, tr := range set.tracers {
			errs = append(errs, tr.shutdown(ctx))
		}
		for _, o := range set.otel {
			o.close()
		}
	}
	return errors.Join(errs...)
}

// healthMetrics are the proxy's own metrics, under kgateway_waypoint_.
type healthMetrics struct {
	configVersion  prometheus.Gauge
	configUpdates  *prometheus.CounterVec
	configOK       prometheus.Counter
	configFailed   prometheus.Counter
	downActive     *prometheus.GaugeVec
	downTotal      *prometheus.CounterVec
	requestsActive prometheus.Gauge
	upActive       prometheus.Gauge
	dialOK         prometheus.Counter
	dialFailed     prometheus.Counter
	accessLogErrs  prometheus.Counter
	overflow       prometheus.Counter
	foldUnvouched  prometheus.Counter
	foldInvalid    prometheus.Counter
	foldBudget     prometheus.Counter
	reg            prometheus.Registerer
}

// folded counts a record whose client- or backend-supplied label values
// were folded, by reason.
func (h *healthMetrics) folded(reason string) {
	switch reason {
	case foldUnvouched:
		h.foldUnvouched.Inc()
	case foldInvalid:
		h.foldInvalid.Inc()
	case foldBudget:
		h.foldBudget.Inc()
	}
}

// connProtocols are the protocol label values of the connection metrics;
// anything else is "other".
var connProtocols = map[string]bool{"http1": true, "h2c": true, "http": true, "tcp": true}

func newHealthMetrics(reg *prometheus.Registry) (*healthMetrics, error) {
	r := prometheus.WrapRegistererWithPrefix(HealthPrefix, reg)
	h := &healthMetrics{
		reg: r,
		configVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_version", Help: "Version of the configuration in force (0: none yet).",
		}),
		configUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_updates_total", Help: "Configuration updates, by result (success, error).",
		}, []string{"result"}),
		downActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "downstream_connections_active", Help: "Open connections from ztunnel, by protocol.",
		}, []string{"protocol"}),
		downTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downstream_connections_total", Help: "Connections accepted from ztunnel, by protocol.",
		}, []string{"protocol"}),
		requestsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "requests_active", Help: "HTTP requests in flight.",
		}),
		upActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "upstream_connections_active", Help: "Open connections to endpoints.",
		}),
		accessLogErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "access_log_write_errors_total", Help: "Access log lines that could not be written.",
		}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "telemetry_series_overflow_total",
			Help: "Records that found their metric family full (MaxSeries label sets): counted with their source folded to unknown, or in the family's overflow series.",
		}),
	}
	folded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "telemetry_labels_folded_total",
		Help: "Records with label values folded to unknown, by reason: unvouched (baggage the client's identity does not back), invalid (not a valid label value, code or identity), budget (the identity's distinct workload claims used up).",
	}, []string{"reason"})
	h.foldUnvouched = folded.WithLabelValues(foldUnvouched)
	h.foldInvalid = folded.WithLabelValues(foldInvalid)
	h.foldBudget = folded.WithLabelValues(foldBudget)
	dials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "upstream_dials_total", Help: "Connection attempts to endpoints, by result (success, error).",
	}, []string{"result"})
	h.dialOK, h.dialFailed = dials.WithLabelValues("success"), dials.WithLabelValues("error")
	h.configOK, h.configFailed = h.configUpdates.WithLabelValues("success"), h.configUpdates.WithLabelValues("error")
	for _, c := range []prometheus.Collector{
		h.configVersion, h.configUpdates, h.downActive, h.downTotal, h.requestsActive,
		h.upActive, dials, h.accessLogErrs, h.overflow, folded,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("register health metrics: %w", err)
		}
	}
	return h, nil
}

// SetConfigVersion sets kgateway_waypoint_config_version.
func (t *Telemetry) SetConfigVersion(v uint64) {
	if t == nil {
		return
	}
	t.health.configVersion.Set(float64(v))
}

// ConfigUpdated counts a configuration update (err nil: applied).
func (t *Telemetry) ConfigUpdated(err error) {
	if t == nil {
		return
	}
	if err != nil {
		t.health.configFailed.Inc()
		return
	}
	t.health.configOK.Inc()
}

func connProtocol(p string) string {
	if connProtocols[p] {
		return p
	}
	return "other"
}

// DownstreamConnOpened counts a connection accepted from ztunnel; protocol
// is "http1", "h2c" or "tcp" (anything else is labelled "other").
func (t *Telemetry) DownstreamConnOpened(protocol string) {
	if t == nil {
		return
	}
	p := connProtocol(protocol)
	t.health.downTotal.WithLabelValues(p).Inc()
	t.health.downActive.WithLabelValues(p).Inc()
}

// DownstreamConnClosed pairs with DownstreamConnOpened.
func (t *Telemetry) DownstreamConnClosed(protocol string) {
	if t == nil {
		return
	}
	t.health.downActive.WithLabelValues(connProtocol(protocol)).Dec()
}

// RequestStarted and RequestFinished keep kgateway_waypoint_requests_active.
func (t *Telemetry) RequestStarted() {
	if t == nil {
		return
	}
	t.health.requestsActive.Inc()
}

// RequestFinished pairs with RequestStarted.
func (t *Telemetry) RequestFinished() {
	if t == nil {
		return
	}
	t.health.requestsActive.Dec()
}

// UpstreamDialed counts a dial to an endpoint; a successful one opens a
// connection that UpstreamConnClosed closes.
func (t *Telemetry) UpstreamDialed(err error) {
	if t == nil {
		return
	}
	if err != nil {
		t.health.dialFailed.Inc()
		return
	}
	t.health.dialOK.Inc()
	t.health.upActive.Inc()
}

// UpstreamConnClosed pairs with a successful UpstreamDialed.
func (t *Telemetry) UpstreamConnClosed() {
	if t == nil {
		return
	}
	t.health.upActive.Dec()
}

// RegisterGaugeFunc exposes kgateway_waypoint_<name>, read from f at each
// scrape (pool sizes and the like).
func (t *Telemetry) RegisterGaugeFunc(name, help string, f func() float64) error {
	if t == nil {
		return nil
	}
	if name == "" || f == nil {
		return errors.New("RegisterGaugeFunc: name and func are required")
	}
	return t.health.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func itoa(n int) string { return strconv.Itoa(n) }

// RegisterCounterFunc exposes kgateway_waypoint_<name>{labels} as a
// counter read from f at each scrape (counts kept elsewhere, such as the
// listener's). Calls may share a name with different label values.
func (t *Telemetry) RegisterCounterFunc(name, help string, labels map[string]string, f func() float64) error {
	if t == nil {
		return nil
	}
	if name == "" || f == nil {
		return errors.New("RegisterCounterFunc: name and func are required")
	}
	return t.health.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}
