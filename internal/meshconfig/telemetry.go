package meshconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// Telemetry provider kinds, named as the mesh config names them.
const (
	ProviderFileAccessLog = "envoyFileAccessLog"
	ProviderOTelALS       = "envoyOtelAls"
	ProviderOpenTelemetry = "opentelemetry"
	ProviderPrometheus    = "prometheus"
)

// Built-in providers istiod's default mesh config defines (pkg/config/mesh
// DefaultMeshConfig): "envoy", a file access log to /dev/stdout, and
// "prometheus". A mesh config provider of the same name replaces them.
const (
	BuiltinEnvoy      = "envoy"
	BuiltinPrometheus = "prometheus"
)

// TelemetryProvider is one extensionProviders entry of a telemetry kind
// (access log, tracing, metrics), or one the waypoint cannot honour.
type TelemetryProvider struct {
	Name string
	// Kind is one of the Provider constants, or the mesh config's name of
	// another kind (zipkin, datadog, stackdriver, envoyHttpAls, ...).
	Kind string
	// Path (envoyFileAccessLog): where lines go ("" is /dev/stdout).
	Path string
	// Text is logFormat.text, a custom Envoy format ("" Istio's default);
	// Labels is logFormat.labels (JSON), key to Envoy command operator.
	Text   string
	Labels map[string]string
	// Service and Port (opentelemetry, envoyOtelAls): the collector.
	Service string
	Port    uint32
	// HTTPPath (opentelemetry over http): the OTLP/HTTP path; HTTP is set
	// when the provider exports over HTTP rather than gRPC.
	HTTP     bool
	HTTPPath string
	// LogName (envoyOtelAls).
	LogName string
	// Unsupported says what of this provider the waypoint cannot do ("":
	// all of it); Telemetries using it report it.
	Unsupported string
}

// Endpoint is where an opentelemetry or envoyOtelAls provider's collector
// is dialled: host:port for gRPC, an http:// URL for OTLP/HTTP.
func (p *TelemetryProvider) Endpoint() string {
	host := p.Service
	// "namespace/host" is Istio's way of naming the namespace.
	if _, h, ok := strings.Cut(host, "/"); ok {
		host = h
	}
	hp := host + ":" + strconv.FormatUint(uint64(p.Port), 10)
	if p.HTTP {
		path := p.HTTPPath
		if path == "" {
			path = "/v1/traces"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		return "http://" + hp + path
	}
	return hp
}

// TelemetrySettings are the mesh config's telemetry fields.
type TelemetrySettings struct {
	// Providers by name: the telemetry extensionProviders, with the
	// built-in envoy and prometheus unless the mesh config names its own.
	Providers map[string]*TelemetryProvider
	// Default providers (defaultProviders), as written.
	DefaultAccessLogging, DefaultTracing, DefaultMetrics []string
	// EnableTracing is enableTracing (istiod's default: true).
	EnableTracing bool
	// AccessLogFile, AccessLogEncoding ("TEXT" or "JSON") and
	// AccessLogFormat are the legacy access log settings: the built-in
	// envoy provider writes there in that encoding, and with no Telemetry
	// access logging, AccessLogFile set turns the log on.
	AccessLogFile, AccessLogEncoding, AccessLogFormat string
}

func telemetrySettings(mc *meshv1alpha1.MeshConfig) (*TelemetrySettings, []error) {
	s := &TelemetrySettings{
		Providers:         map[string]*TelemetryProvider{},
		EnableTracing:     true,
		AccessLogFile:     mc.GetAccessLogFile(),
		AccessLogEncoding: mc.GetAccessLogEncoding().String(),
		AccessLogFormat:   mc.GetAccessLogFormat(),
	}
	if dp := mc.GetDefaultProviders(); dp != nil {
		s.DefaultAccessLogging = slices.Clone(dp.GetAccessLogging())
		s.DefaultTracing = slices.Clone(dp.GetTracing())
		s.DefaultMetrics = slices.Clone(dp.GetMetrics())
	}
	if len(s.DefaultMetrics) == 0 {
		// istiod merges the document onto its defaults, whose
		// defaultProviders.metrics is [prometheus]: a list left empty
		// keeps it.
		s.DefaultMetrics = []string{BuiltinPrometheus}
	}
	s.Providers[BuiltinEnvoy] = &TelemetryProvider{Name: BuiltinEnvoy, Kind: ProviderFileAccessLog, Path: "/dev/stdout"}
	s.Providers[BuiltinPrometheus] = &TelemetryProvider{Name: BuiltinPrometheus, Kind: ProviderPrometheus}
	var errs []error
	for i, ep := range mc.GetExtensionProviders() {
		p := &TelemetryProvider{Name: ep.GetName()}
		where := fmt.Sprintf("extensionProviders[%d] (%q)", i, p.Name)
		switch {
		case ep.GetEnvoyFileAccessLog() != nil:
			f := ep.GetEnvoyFileAccessLog()
			p.Kind, p.Path = ProviderFileAccessLog, f.GetPath()
			if p.Path == "" {
				p.Path = "/dev/stdout"
			}
			p.Text = f.GetLogFormat().GetText()
			if l := f.GetLogFormat().GetLabels(); l != nil {
				p.Labels = map[string]string{}
				for k, v := range l.GetFields() {
					p.Labels[k] = v.GetStringValue()
				}
			}
			if f.GetOmitEmptyValues() {
				p.Unsupported = "omitEmptyValues"
			}
		case ep.GetEnvoyOtelAls() != nil:
			o := ep.GetEnvoyOtelAls()
			p.Kind, p.Service, p.Port, p.LogName = ProviderOTelALS, o.GetService(), o.GetPort(), o.GetLogName()
			p.Text = o.GetLogFormat().GetText()
			if l := o.GetLogFormat().GetLabels(); l != nil {
				p.Labels = map[string]string{}
				for k, v := range l.GetFields() {
					p.Labels[k] = v.GetStringValue()
				}
			}
			if p.Service == "" || p.Port == 0 {
				errs = append(errs, fmt.Errorf("%s: envoyOtelAls: service and port are required", where))
				continue
			}
		case ep.GetOpentelemetry() != nil:
			o := ep.GetOpentelemetry()
			p.Kind, p.Service, p.Port = ProviderOpenTelemetry, o.GetService(), o.GetPort()
			if h := o.GetHttp(); h != nil {
				p.HTTP, p.HTTPPath = true, h.GetPath()
				if len(h.GetHeaders()) > 0 {
					p.Unsupported = "http.headers"
				}
			}
			var un []string
			if p.Unsupported != "" {
				un = append(un, p.Unsupported)
			}
			if o.GetResourceDetectors() != nil {
				un = append(un, "resourceDetectors")
			}
			if o.GetSampling() != nil {
				un = append(un, "dynatraceSampler")
			}
			p.Unsupported = strings.Join(un, ", ")
			if p.Service == "" || p.Port == 0 {
				errs = append(errs, fmt.Errorf("%s: opentelemetry: service and port are required", where))
				continue
			}
		case ep.GetPrometheus() != nil:
			p.Kind = ProviderPrometheus
		case ep.GetEnvoyExtAuthzHttp() != nil, ep.GetEnvoyExtAuthzGrpc() != nil, ep.GetProvider() == nil:
			continue // not telemetry (or reported by the ext_authz reader)
		default:
			p.Kind = otherKind(ep)
			p.Unsupported = "provider kind " + p.Kind + " is not supported by this waypoint"
		}
		if p.Name != "" {
			s.Providers[p.Name] = p
		}
	}
	return s, errs
}

// otherKind names an extension provider's kind as the mesh config does.
func otherKind(ep *meshv1alpha1.MeshConfig_ExtensionProvider) string {
	switch {
	case ep.GetZipkin() != nil:
		return "zipkin"
	case ep.GetDatadog() != nil:
		return "datadog"
	case ep.GetLightstep() != nil: //nolint:staticcheck // deprecated, still a kind a mesh config can name
		return "lightstep"
	case ep.GetStackdriver() != nil:
		return "stackdriver"
	case ep.GetSkywalking() != nil:
		return "skywalking"
	case ep.GetOpencensus() != nil: //nolint:staticcheck // deprecated, still a kind a mesh config can name
		return "opencensus"
	case ep.GetEnvoyHttpAls() != nil:
		return "envoyHttpAls"
	case ep.GetEnvoyTcpAls() != nil:
		return "envoyTcpAls"
	case ep.GetSds() != nil:
		return "sds"
	}
	return "unknown"
}

// DefaultTelemetry is the telemetry settings of Istio's default mesh
// config (no mesh config at all).
func DefaultTelemetry() *TelemetrySettings {
	s, _ := telemetrySettings(&meshv1alpha1.MeshConfig{})
	s.EnableTracing = true
	return s
}
