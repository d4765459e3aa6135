package meshconfig

import (
	"strings"
	"testing"
)

func TestTelemetrySettings(t *testing.T) {
	c, err := Parse([]byte(`
enableTracing: false
accessLogFile: /dev/stdout
accessLogEncoding: JSON
defaultProviders: {accessLogging: [envoy], tracing: [otel]}
extensionProviders:
- name: otel
  opentelemetry: {service: observability/otel.observability.svc.cluster.local, port: 4318, http: {path: /v1/traces}}
- name: als
  envoyOtelAls: {service: otel.observability.svc.cluster.local, port: 4317, logName: wp}
- name: file
  envoyFileAccessLog: {path: /var/log/a.log, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
- name: zipkin
  zipkin: {service: zipkin.observability.svc.cluster.local, port: 9411}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Telemetry
	if s.EnableTracing || s.AccessLogFile != "/dev/stdout" || s.AccessLogEncoding != "JSON" {
		t.Errorf("legacy fields: %+v", s)
	}
	if len(s.DefaultAccessLogging) != 1 || s.DefaultTracing[0] != "otel" || len(s.DefaultMetrics) != 1 || s.DefaultMetrics[0] != "prometheus" {
		t.Errorf("default providers: %v %v %v", s.DefaultAccessLogging, s.DefaultTracing, s.DefaultMetrics)
	}
	if got := s.Providers["otel"].Endpoint(); got != "http://otel.observability.svc.cluster.local:4318/v1/traces" {
		t.Errorf("otel endpoint %q", got)
	}
	if p := s.Providers["als"]; p.Kind != ProviderOTelALS || p.Endpoint() != "otel.observability.svc.cluster.local:4317" || p.LogName != "wp" {
		t.Errorf("als %+v", p)
	}
	if p := s.Providers["file"]; p.Path != "/var/log/a.log" || p.Labels["code"] != "%RESPONSE_CODE%" {
		t.Errorf("file %+v", p)
	}
	if p := s.Providers["zipkin"]; p.Kind != "zipkin" || p.Unsupported == "" {
		t.Errorf("zipkin %+v", p)
	}
	if s.Providers[BuiltinEnvoy] == nil || s.Providers[BuiltinPrometheus] == nil {
		t.Error("built-in providers missing")
	}

	d, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Telemetry.EnableTracing || len(d.Telemetry.DefaultMetrics) != 1 || d.Telemetry.DefaultMetrics[0] != "prometheus" {
		t.Errorf("Istio's defaults: %+v", d.Telemetry)
	}
	if _, err := Parse([]byte("extensionProviders: [{name: o, opentelemetry: {port: 4317}}]\n")); err == nil || !strings.Contains(err.Error(), "service and port") {
		t.Errorf("an opentelemetry provider without service: %v", err)
	}
}
