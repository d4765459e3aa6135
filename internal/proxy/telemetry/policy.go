package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/interpreter"
	"go.opentelemetry.io/otel/attribute"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry/expr"
)

// The Telemetry API's configuration (ir.Telemetry) compiled for the data
// path: Apply builds a policySet per configuration (filters compiled,
// files opened, tracers started, each kept across updates while in use)
// and swaps it in; a record reads the set in force once and the policy of
// its service. A part the IR leaves nil keeps the Options' setting.

// metric indexes, in the order of ir.Metric*.
const (
	mRequestCount = iota
	mRequestDuration
	mRequestSize
	mResponseSize
	mTCPOpened
	mTCPClosed
	mTCPSent
	mTCPReceived
	numMetrics
)

var metricIndex = map[string]int{
	ir.MetricRequestCount: mRequestCount, ir.MetricRequestDuration: mRequestDuration,
	ir.MetricRequestSize: mRequestSize, ir.MetricResponseSize: mResponseSize,
	ir.MetricTCPOpenedConnections: mTCPOpened, ir.MetricTCPClosedConnections: mTCPClosed,
	ir.MetricTCPSentBytes: mTCPSent, ir.MetricTCPReceivedBytes: mTCPReceived,
}

type policy struct {
	logSet bool // the access log is the sinks' (none: off)
	sinks  []*sink

	traceSet bool // tracing is trace's (nil: no spans)
	trace    *tracePolicy

	disabled [numMetrics]bool
}

type sink struct {
	out    *fileOut  // file sinks
	otel   *otelLogs // envoyOtelAls sinks
	json   bool
	format *customFormat // nil: Istio's default text or JSON
	filter *expr.Program
}

func (s *sink) write(b []byte) error {
	if s.otel != nil {
		return s.otel.write(b)
	}
	return s.out.write(b)
}

type tracePolicy struct {
	tr    *tracer
	ratio float64
	tags  []compiledTag
}

type compiledTag struct {
	name    string
	literal string // literal or environment value, resolved once
	header  string // canonical header name ("" for a literal)
	def     string
}

type policySet struct {
	def   *policy
	bySvc map[string]*policy // "namespace/name"
	// kept: the files, tracers and OTLP log exporters this set uses, by key.
	files   map[string]*fileOut
	tracers map[string]*tracer
	otel    map[string]*otelLogs
}

// fileOut is one access log destination, shared by the sinks writing to
// it; writes are serialised, one Write per line.
type fileOut struct {
	mu sync.Mutex
	w  io.Writer
	f  *os.File // nil for standard output
}

func (o *fileOut) write(b []byte) error {
	o.mu.Lock()
	_, err := o.w.Write(b)
	o.mu.Unlock()
	return err
}

// Apply puts in force the Telemetry API configuration of w (and its
// services'). Files and tracers the previous configuration opened are
// kept when still used, else closed (tracers flushed) in the background.
func (t *Telemetry) Apply(w *ir.Waypoint) error {
	if t == nil {
		return nil
	}
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	prev := t.pol.Load()
	set := &policySet{files: map[string]*fileOut{}, tracers: map[string]*tracer{}, otel: map[string]*otelLogs{}}
	var errs []error
	if w != nil && w.Telemetry != nil {
		set.def = t.compilePolicy(w.Telemetry, prev, set, &errs)
	}
	var services []*ir.Service
	if w != nil {
		services = w.Services
	}
	for _, s := range services {
		if s == nil || s.Telemetry == nil {
			continue
		}
		if set.bySvc == nil {
			set.bySvc = map[string]*policy{}
		}
		set.bySvc[s.Namespace+"/"+s.Name] = t.compilePolicy(s.Telemetry, prev, set, &errs)
	}
	// The tag overrides are the waypoint's (a Service-targeted Telemetry
	// cannot reshape the families: the translator reports it).
	var mc *ir.MetricsConfig
	if w != nil && w.Telemetry != nil {
		mc = w.Telemetry.Metrics
	}
	if err := t.applyShape(mc); err != nil {
		errs = append(errs, err)
	}
	if set.def == nil && set.bySvc == nil {
		set = nil
	}
	t.pol.Store(set)
	if prev != nil {
		go t.release(prev, set)
	}
	return errors.Join(errs...)
}

// release closes what old opened and cur no longer uses, once requests
// that started under old have had time to finish their records.
func (t *Telemetry) release(old, cur *policySet) {
	time.Sleep(t.releaseDelay)
	for k, f := range old.files {
		if cur != nil && cur.files[k] == f {
			continue
		}
		if f.f != nil {
			_ = f.f.Close()
		}
	}
	for k, o := range old.otel {
		if cur != nil && cur.otel[k] == o {
			continue
		}
		o.close()
	}
	for k, tr := range old.tracers {
		if cur != nil && cur.tracers[k] == tr {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = tr.shutdown(ctx)
		cancel()
	}
}

func (t *Telemetry) compilePolicy(tel *ir.Telemetry, prev *policySet, set *policySet, errs *[]error) *policy {
	p := &policy{}
	if al := tel.AccessLog; al != nil {
		p.logSet = true
		for _, s := range al.Sinks {
			if s.Kind == ir.AccessLogOTel {
				o, err := t.otelFor(s.Endpoint, s.LogName, prev, set)
				if err != nil {
					*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
					continue
				}
				sk := &sink{otel: o}
				if sk.format, err = compileFormat(s.Text, s.Labels); err != nil {
					*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
					continue
				}
				if s.Filter != "" {
					if sk.filter, err = expr.Compile(s.Filter); err != nil {
						*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
						continue
					}
				}
				p.sinks = append(p.sinks, sk)
				continue
			}
			if s.Kind != ir.AccessLogFile {
				*errs = append(*errs, fmt.Errorf("access log provider %q: kind %q is not supported", s.Provider, s.Kind))
				continue
			}
			out, err := t.fileFor(s.Path, prev, set)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
				continue
			}
			sk := &sink{out: out, json: s.Format == ir.LogFormatJSON}
			if sk.format, err = compileFormat(s.Text, s.Labels); err != nil {
				*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
				continue
			}
			if s.Filter != "" {
				if sk.filter, err = expr.Compile(s.Filter); err != nil {
					*errs = append(*errs, fmt.Errorf("access log provider %q: %w", s.Provider, err))
					continue
				}
			}
			p.sinks = append(p.sinks, sk)
		}
	}
	if tr := tel.Tracing; tr != nil {
		p.traceSet = true
		if !tr.Disabled && tr.Endpoint != "" {
			x, err := t.tracerFor(tr.Endpoint, tr.ServiceName, prev, set)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("tracing provider %q: %w", tr.Provider, err))
			} else {
				tp := &tracePolicy{tr: x, ratio: min(max(tr.SamplingPercentage/100, 0), 1)}
				for _, ct := range tr.CustomTags {
					c := compiledTag{name: ct.Name, def: ct.Default}
					switch {
					case ct.Literal != nil:
						c.literal = *ct.Literal
					case ct.Environment != "":
						if v, ok := os.LookupEnv(ct.Environment); ok {
							c.literal = v
						} else {
							c.literal = ct.Default
						}
					case ct.Header != "":
						c.header = http.CanonicalHeaderKey(ct.Header)
					}
					tp.tags = append(tp.tags, c)
				}
				p.trace = tp
			}
		}
	}
	if m := tel.Metrics; m != nil {
		for name, o := range m.Overrides {
			if i, ok := metricIndex[name]; ok && o != nil {
				p.disabled[i] = o.Disabled
			}
		}
	}
	return p
}

func (t *Telemetry) fileFor(path string, prev, set *policySet) (*fileOut, error) {
	if path == "" {
		path = "/dev/stdout"
	}
	if f := set.files[path]; f != nil {
		return f, nil
	}
	if prev != nil {
		if f := prev.files[path]; f != nil {
			set.files[path] = f
			return f, nil
		}
	}
	var out *fileOut
	switch path {
	case "/dev/stdout", "-":
		out = &fileOut{w: t.stdout}
	default:
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		out = &fileOut{w: f, f: f}
	}
	set.files[path] = out
	return out, nil
}

func (t *Telemetry) otelFor(endpoint, logName string, prev, set *policySet) (*otelLogs, error) {
	key := endpoint + "|" + logName
	if o := set.otel[key]; o != nil {
		return o, nil
	}
	if prev != nil {
		if o := prev.otel[key]; o != nil {
			set.otel[key] = o
			return o, nil
		}
	}
	name := t.traceDefaults.ServiceName
	if name == "" {
		name = "waypoint"
	}
	o, err := newOTelLogs(endpoint, logName, name, t.log)
	if err != nil {
		return nil, err
	}
	set.otel[key] = o
	return o, nil
}

func (t *Telemetry) tracerFor(endpoint, service string, prev, set *policySet) (*tracer, error) {
	key := endpoint + "|" + service
	if x := set.tracers[key]; x != nil {
		return x, nil
	}
	if prev != nil {
		if x := prev.tracers[key]; x != nil {
			set.tracers[key] = x
			return x, nil
		}
	}
	o := t.traceDefaults
	o.Endpoint = endpoint
	if service != "" {
		o.ServiceName = service
	}
	x, err := newTracer(o, t.log)
	if err != nil {
		return nil, err
	}
	set.tracers[key] = x
	return x, nil
}

// policyFor is the policy of a service's traffic (nil: the Options').
func (t *Telemetry) policyFor(namespace, name string) *policy {
	set := t.pol.Load()
	if set == nil {
		return nil
	}
	if set.bySvc != nil {
		if p := set.bySvc[namespace+"/"+name]; p != nil {
			return p
		}
	}
	return set.def
}

// ratioKey carries a policy's sampling ratio to the sampler.
type ratioKey struct{}

// requestVars is the CEL activation of a request record: each attribute
// root is built when the expression first reads it.
type requestVars struct {
	r   *RequestRecord
	tcp *TCPRecord
}

func (v *requestVars) Parent() interpreter.Activation { return nil }

func (v *requestVars) ResolveName(name string) (any, bool) {
	if v.tcp != nil {
		return v.resolveTCP(name)
	}
	r := v.r
	switch name {
	case "request":
		m := map[string]any{
			"path": r.Path, "url_path": urlPath(r.Path), "host": r.Authority, "scheme": r.Scheme,
			"method": r.Method, "useragent": r.UserAgent, "id": r.RequestID, "protocol": r.HTTPProtocol,
			"duration": r.Duration, "size": r.RequestBytes, "total_size": r.RequestWireBytes, "time": r.Start,
			"headers": headerMap(r.RequestHeaders),
		}
		if r.RequestHeaders != nil {
			m["referer"] = r.RequestHeaders.Get("Referer")
		}
		return m, true
	case "response":
		return map[string]any{
			"code": int64(r.ResponseCode), "code_details": r.ResponseCodeDetails, "flags": r.ResponseFlags,
			"grpc_status": r.GRPCStatus, "headers": headerMap(r.ResponseHeaders), "size": r.ResponseBytes,
			"total_size": r.ResponseWireBytes,
		}, true
	case "connection":
		return map[string]any{"mtls": r.ConnectionSecurityPolicy == SecurityMutualTLS,
			"requested_server_name": r.RequestedServerName, "termination_details": r.ConnectionTerminationDetails}, true
	case "source":
		return addrMap(r.DownstreamRemote, map[string]any{"principal": r.Source.Principal, "namespace": r.Source.Namespace, "workload": r.Source.Workload}), true
	case "destination":
		return addrMap(r.DownstreamLocal, map[string]any{"service_name": r.DestinationServiceName,
			"service_namespace": r.DestinationServiceNamespace, "service_host": r.DestinationService}), true
	case "upstream":
		return addrMap(r.UpstreamHost, map[string]any{"cluster_name": r.UpstreamCluster}), true
	}
	return nil, false
}

func (v *requestVars) resolveTCP(name string) (any, bool) {
	r := v.tcp
	switch name {
	case "request":
		return map[string]any{"headers": map[string]string{}, "duration": r.Duration, "time": r.Start}, true
	case "response":
		return map[string]any{"flags": r.ResponseFlags, "headers": map[string]string{}}, true
	case "connection":
		return map[string]any{"mtls": r.ConnectionSecurityPolicy == SecurityMutualTLS,
			"requested_server_name": r.RequestedServerName, "termination_details": r.ConnectionTerminationDetails}, true
	case "source":
		return addrMap(r.DownstreamRemote, map[string]any{"principal": r.Source.Principal, "namespace": r.Source.Namespace, "workload": r.Source.Workload}), true
	case "destination":
		return addrMap(r.DownstreamLocal, map[string]any{"service_name": r.DestinationServiceName,
			"service_namespace": r.DestinationServiceNamespace, "service_host": r.DestinationService}), true
	case "upstream":
		return addrMap(r.UpstreamHost, map[string]any{"cluster_name": r.UpstreamCluster}), true
	}
	return nil, false
}

func urlPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// headerMap gives headers by lower-case name, several values joined with
// "," as Envoy presents them.
func headerMap(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		m[strings.ToLower(k)] = strings.Join(v, ",")
	}
	return m
}

func addrMap(hostport string, m map[string]any) map[string]any {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		m["address"] = strings.Trim(hostport[:i], "[]")
		if p, err := strconv.Atoi(hostport[i+1:]); err == nil {
			m["port"] = int64(p)
		}
	} else {
		m["address"] = hostport
	}
	return m
}

// spanTags are the policy's custom tags for a request with headers h.
func (tp *tracePolicy) spanTags(h http.Header) []attribute.KeyValue {
	if len(tp.tags) == 0 {
		return nil
	}
	out := make([]attribute.KeyValue, 0, len(tp.tags))
	for _, c := range tp.tags {
		v := c.literal
		if c.header != "" {
			v = c.def
			if vs := h.Values(c.header); len(vs) > 0 {
				v = strings.Join(vs, ",")
			}
		}
		out = append(out, attribute.String(c.name, v))
	}
	return out
}
