package ir

// This file holds what Istio's Telemetry API (telemetry.istio.io Telemetry)
// and the mesh config's telemetry settings (extensionProviders,
// defaultProviders, enableTracing, accessLogFile) make of a waypoint's
// access log, traces and metrics, merged by the translator the way istiod
// merges them (root namespace, then the Gateway's namespace, then the
// Telemetries that target the Gateway or a Service). Each part is nil when
// neither the Telemetry API nor the mesh config's default providers say
// anything about it: the proxy then keeps its own settings (its flags).

// Telemetry is the merged Telemetry configuration of the waypoint, or of one
// service (Service.Telemetry) when a Telemetry targets that Service.
type Telemetry struct {
	// AccessLog: nil, the proxy's own access log (--access-log).
	AccessLog *AccessLogConfig `json:"accessLog,omitempty"`
	// Tracing: nil, the proxy's own tracing (--tracing-endpoint).
	Tracing *TracingConfig `json:"tracing,omitempty"`
	// Metrics: nil, every metric with Istio's labels.
	Metrics *MetricsConfig `json:"metrics,omitempty"`
}

// AccessLogConfig lists the access log providers in force. No sink: the
// access log is off (disabled: true, or providers that log nothing here).
type AccessLogConfig struct {
	Sinks []*AccessLogSink `json:"sinks,omitempty"`
}

// Access log sink kinds.
const (
	// AccessLogFile writes lines to Path (envoyFileAccessLog, and the
	// built-in "envoy" provider).
	AccessLogFile = "file"
	// AccessLogOTel exports OTLP log records (envoyOtelAls).
	AccessLogOTel = "otel"
)

// Access log formats of a file sink.
const (
	LogFormatText = "text" // Istio's default text format
	LogFormatJSON = "json" // Istio's default JSON fields, or Labels
)

// AccessLogSink is one provider's access log.
type AccessLogSink struct {
	// Provider is the extension provider's name ("envoy": the built-in one).
	Provider string `json:"provider"`
	Kind     string `json:"kind"`
	// Path (file): /dev/stdout, or a file the proxy appends to.
	Path string `json:"path,omitempty"`
	// Format (file): text or json.
	Format string `json:"format,omitempty"`
	// Text is a custom Envoy text format (logFormat.text) with command
	// operators; Labels the JSON object's keys and the command operators
	// giving their values (logFormat.labels). Both empty: Istio's default
	// text or JSON format.
	Text   string            `json:"text,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Filter is the CEL expression (filter.expression) a record must
	// satisfy to be logged; empty: every record.
	Filter string `json:"filter,omitempty"`
	// Endpoint (otel) is the OTLP/gRPC collector, host:port.
	Endpoint string `json:"endpoint,omitempty"`
	// LogName (otel) is the records' log name.
	LogName string `json:"logName,omitempty"`
}

// TracingConfig is the tracing in force for the waypoint's server spans.
type TracingConfig struct {
	// Disabled: no span is reported (disableSpanReporting, or no usable
	// provider); the trace context is still passed on.
	Disabled bool `json:"disabled,omitempty"`
	// Provider names the opentelemetry extension provider.
	Provider string `json:"provider,omitempty"`
	// Endpoint is its OTLP collector: "host:port" (gRPC) or an http(s) URL.
	Endpoint string `json:"endpoint,omitempty"`
	// SamplingPercentage (0 to 100) of requests without a sampling decision
	// are sampled (randomSamplingPercentage; Istio's default is 1).
	SamplingPercentage float64 `json:"samplingPercentage"`
	// CustomTags are added to every span, sorted by name.
	CustomTags []CustomTag `json:"customTags,omitempty"`
	// ServiceName is the spans' service.name.
	ServiceName string `json:"serviceName,omitempty"`
}

// CustomTag is one span tag: a literal, an environment variable of the
// proxy, or a request header (with a default when absent).
type CustomTag struct {
	Name string `json:"name"`
	// Exactly one of Literal (set: the value), Environment (the variable's
	// name) and Header (the header's name).
	Literal     *string `json:"literal,omitempty"`
	Environment string  `json:"environment,omitempty"`
	Header      string  `json:"header,omitempty"`
	// Default is the value when the variable or header is absent.
	Default string `json:"default,omitempty"`
}

// Istio's standard metrics, as the Telemetry API names them.
const (
	MetricRequestCount         = "REQUEST_COUNT"
	MetricRequestDuration      = "REQUEST_DURATION"
	MetricRequestSize          = "REQUEST_SIZE"
	MetricResponseSize         = "RESPONSE_SIZE"
	MetricTCPOpenedConnections = "TCP_OPENED_CONNECTIONS"
	MetricTCPClosedConnections = "TCP_CLOSED_CONNECTIONS"
	MetricTCPSentBytes         = "TCP_SENT_BYTES"
	MetricTCPReceivedBytes     = "TCP_RECEIVED_BYTES"
)

// MetricsConfig is the server-side (reporter=waypoint) metrics overrides.
type MetricsConfig struct {
	// Overrides by metric name (the Metric constants); a metric not here
	// is reported with Istio's labels.
	Overrides map[string]*MetricOverride `json:"overrides,omitempty"`
}

// MetricOverride is one metric's merged override.
type MetricOverride struct {
	// Disabled: the metric is not reported.
	Disabled bool `json:"disabled,omitempty"`
	// Tags changes the labels, sorted by name: removed, or set (an Istio
	// label's value replaced, or a label added) from an expression.
	Tags []TagOverride `json:"tags,omitempty"`
}

// TagOverride removes a label or sets it from a CEL expression.
type TagOverride struct {
	Name   string `json:"name"`
	Remove bool   `json:"remove,omitempty"`
	// Value is the CEL expression giving the label's value (a string
	// literal such as "'fixed'", request.host, request.headers['x'], ...).
	Value string `json:"value,omitempty"`
}
