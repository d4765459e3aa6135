package translate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	tpb "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry/expr"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry/logformat"
)

// The Telemetry API on a waypoint, selected and merged as istiod does
// (pilot/pkg/model/telemetry.go applicableTelemetries, mergeLogs, Tracing,
// mergeMetrics):
//
//   - the oldest Telemetry of the root namespace with neither selector nor
//     targetRefs (mesh-wide), then the oldest such in the Gateway's
//     namespace (namespace-wide), then those of the Gateway's namespace
//     whose targetRefs name the Gateway (kind Gateway), in creation order;
//     later ones override earlier ones, field by field as istiod merges;
//   - a Telemetry of the Gateway's namespace whose targetRefs name a
//     Service (or ServiceEntry) the waypoint serves applies, after those,
//     to that service's traffic only (istiod builds the waypoint's chain
//     per service with it);
//   - a selector never selects a waypoint (istiod: waypoints never use
//     selector);
//   - a waypoint reports as the server (istiod gives its inbound listener
//     class SidecarInbound: workload mode SERVER), so entries matching
//     mode CLIENT only are not for it.
//
// Whatever the waypoint cannot honour is reported on the Telemetry with
// WaypointAccepted False (UnsupportedValue), never dropped silently.

// telemetryPiece is one Telemetry in the order of precedence.
type telemetryPiece struct {
	obj *istiotel.Telemetry
	key string
}

// telemetryReport gathers what each Telemetry in use could not do.
type telemetryReport struct {
	used     map[string]*istiotel.Telemetry
	problems map[string][]string
	ignored  map[string]string
}

func (r *telemetryReport) add(key, problem string) {
	if !slices.Contains(r.problems[key], problem) {
		r.problems[key] = append(r.problems[key], problem)
	}
}

func telKey(o *istiotel.Telemetry) string { return o.Namespace + "/" + o.Name }

// telemetryOrder sorts as istiod's sortConfigByCreationTime: oldest first,
// then by name and namespace.
func telemetryOrder(list []*istiotel.Telemetry) []*istiotel.Telemetry {
	out := slices.Clone(list)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Namespace < b.Namespace
	})
	return out
}

func telemetryTargets(o *istiotel.Telemetry) []*typev1beta1.PolicyTargetReference {
	refs := o.Spec.GetTargetRefs()
	if len(refs) == 0 && o.Spec.GetTargetRef() != nil {
		refs = []*typev1beta1.PolicyTargetReference{o.Spec.GetTargetRef()}
	}
	return refs
}

// telemetry fills Waypoint.Telemetry and the Service.Telemetry of services
// a Telemetry targets, and the Telemetries' conditions.
func (t *translator) telemetry() {
	settings := meshconfig.DefaultTelemetry()
	if mc := t.snap.MeshConfig; mc != nil && mc.Telemetry != nil {
		settings = mc.Telemetry
	}
	rep := &telemetryReport{used: map[string]*istiotel.Telemetry{}, problems: map[string][]string{}, ignored: map[string]string{}}
	root, ns := t.opts.RootNamespace, t.gw.Namespace

	var chain []telemetryPiece
	perService := map[ir.NamespacedName][]telemetryPiece{}
	nsWide := func(namespace string) {
		var first *istiotel.Telemetry
		for _, o := range telemetryOrder(t.snap.Telemetries) {
			if o.Namespace != namespace || len(o.Spec.GetSelector().GetMatchLabels()) > 0 || len(telemetryTargets(o)) > 0 {
				continue
			}
			if first == nil {
				first = o
				chain = append(chain, telemetryPiece{obj: o, key: telKey(o)})
				rep.used[telKey(o)] = o
				continue
			}
			rep.ignored[telKey(o)] = fmt.Sprintf("namespace %s has an older namespace-wide Telemetry, %s, which istiod applies instead", namespace, first.Name)
			rep.used[telKey(o)] = o
		}
	}
	nsWide(root)
	if ns != root {
		nsWide(ns)
	}
	for _, o := range telemetryOrder(t.snap.Telemetries) {
		refs := telemetryTargets(o)
		if o.Namespace != ns || len(refs) == 0 {
			continue
		}
		key := telKey(o)
		if problems := targetProblems(o.Spec.GetSelector() != nil, o.Spec.GetTargetRef(), o.Spec.GetTargetRefs(), o.Namespace); problems != "" {
			rep.used[key] = o
			rep.add(key, problems)
			continue
		}
		for _, ref := range refs {
			group, kind, name := ref.GetGroup(), ref.GetKind(), ref.GetName()
			switch {
			case group == "gateway.networking.k8s.io" && kind == "Gateway" && name == t.gw.Name:
				if !slices.ContainsFunc(chain, func(p telemetryPiece) bool { return p.key == key }) {
					chain = append(chain, telemetryPiece{obj: o, key: key})
				}
				rep.used[key] = o
			case (group == "" && kind == "Service") || (group == "networking.istio.io" && kind == "ServiceEntry"):
				svcKind := ""
				if kind == "ServiceEntry" {
					svcKind = "ServiceEntry"
				}
				for _, s := range t.out.Services {
					if s.Kind == svcKind && s.Namespace == o.Namespace && s.Name == name {
						n := ir.NamespacedName{Namespace: s.Namespace, Name: s.Kind + "/" + s.Name}
						perService[n] = append(perService[n], telemetryPiece{obj: o, key: key})
						rep.used[key] = o
					}
				}
			case group == "gateway.networking.k8s.io" && kind == "GatewayClass":
				// istiod's Telemetry lookup reads the proxy's namespace
				// only: a GatewayClass target does not reach a waypoint.
				rep.used[key] = o
				rep.add(key, "targetRefs: a GatewayClass target does not apply to waypoints (istiod reads Telemetries of the waypoint's namespace and namespace-wide ones only)")
			}
		}
	}

	t.out.Telemetry = mergeTelemetry(chain, settings, rep, nil)
	for _, s := range t.out.Services {
		pieces := perService[ir.NamespacedName{Namespace: s.Namespace, Name: s.Kind + "/" + s.Name}]
		if len(pieces) == 0 {
			continue
		}
		svcKeys := map[string]bool{}
		for _, p := range pieces {
			svcKeys[p.key] = true
		}
		s.Telemetry = mergeTelemetry(append(slices.Clone(chain), pieces...), settings, rep, svcKeys)
		if s.Telemetry == nil {
			s.Telemetry = &ir.Telemetry{}
		}
	}

	for _, key := range slices.Sorted(maps.Keys(rep.used)) {
		o := rep.used[key]
		c := Condition{Kind: "Telemetry", Namespace: o.Namespace, Name: o.Name, Type: "WaypointAccepted",
			Status: "True", Reason: "Accepted", Message: "applied to the waypoint's traffic"}
		if why, ok := rep.ignored[key]; ok {
			c.Status, c.Reason, c.Message = "False", "Conflicted", why
		} else if p := rep.problems[key]; len(p) > 0 {
			c.Status, c.Reason = "False", "UnsupportedValue"
			c.Message = "applied except what this waypoint does not support: " + strings.Join(p, "; ")
		}
		t.cond(c)
	}
}

// mergeTelemetry merges the pieces, in precedence order, into the IR.
// svcKeys are the Service-targeted pieces (their tag overrides cannot
// reshape the metric families the whole waypoint shares).
func mergeTelemetry(chain []telemetryPiece, s *meshconfig.TelemetrySettings, rep *telemetryReport, svcKeys map[string]bool) *ir.Telemetry {
	out := &ir.Telemetry{
		AccessLog: mergeAccessLogs(chain, s, rep),
		Tracing:   mergeTracing(chain, s, rep),
		Metrics:   mergeMetrics(chain, s, rep, svcKeys),
	}
	if out.AccessLog == nil && out.Tracing == nil && out.Metrics == nil {
		return nil
	}
	return out
}

// serverMode: does a selector's mode include the server side?
func serverMode(m tpb.WorkloadMode) bool {
	return m == tpb.WorkloadMode_SERVER || m == tpb.WorkloadMode_CLIENT_AND_SERVER
}

func providerNames(refs []*tpb.ProviderRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.GetName())
	}
	return out
}

// fetchProvider finds a provider by name, ignoring case (istiod's
// fetchProvider).
func fetchProvider(s *meshconfig.TelemetrySettings, name string) *meshconfig.TelemetryProvider {
	if p := s.Providers[name]; p != nil {
		return p
	}
	for n, p := range s.Providers {
		if strings.EqualFold(n, name) {
			return p
		}
	}
	return nil
}

type logSpec struct {
	disabled bool
	filter   string
	from     []string // the Telemetries that named this provider
}

func mergeAccessLogs(chain []telemetryPiece, s *meshconfig.TelemetrySettings, rep *telemetryReport) *ir.AccessLogConfig {
	var levels []telemetryPiece
	for _, p := range chain {
		if len(p.obj.Spec.GetAccessLogging()) > 0 {
			levels = append(levels, p)
		}
	}
	for _, p := range levels {
		for i, al := range p.obj.Spec.GetAccessLogging() {
			if al.GetFilter() != nil && len(al.GetProviders()) == 0 {
				rep.add(p.key, fmt.Sprintf("accessLogging[%d].filter: a filter applies only with the providers it names (istiod keeps no filter for inherited providers): name the provider", i))
			}
			if f := al.GetFilter().GetExpression(); f != "" {
				if _, err := expr.Compile(f); err != nil {
					rep.add(p.key, fmt.Sprintf("accessLogging[%d].filter: %v (the filter is left out: every record is logged)", i, err))
				}
			}
		}
	}
	if len(levels) == 0 && len(s.DefaultAccessLogging) == 0 {
		// No Telemetry API logging: the mesh config's accessLogFile, as
		// istiod's legacy path; else the proxy's own setting.
		if s.AccessLogFile == "" {
			return nil
		}
		return &ir.AccessLogConfig{Sinks: []*ir.AccessLogSink{legacySink(s)}}
	}
	providers := map[string]*logSpec{}
	if len(levels) == 0 {
		for _, dp := range s.DefaultAccessLogging {
			providers[dp] = &logSpec{}
		}
	} else {
		inScope := s.DefaultAccessLogging
		filters := map[string]string{}
		for _, l := range levels {
			var names []string
			for _, al := range l.obj.Spec.GetAccessLogging() {
				if al.GetMatch() != nil && !serverMode(al.GetMatch().GetMode()) {
					continue
				}
				sub := providerNames(al.GetProviders())
				names = append(names, sub...)
				for _, prov := range sub {
					filters[prov] = validFilter(al.GetFilter().GetExpression())
				}
			}
			if len(names) > 0 {
				inScope = names
			}
		}
		parent := s.DefaultAccessLogging
		for _, l := range levels {
			for _, al := range l.obj.Spec.GetAccessLogging() {
				names := providerNames(al.GetProviders())
				if len(names) == 0 {
					names = parent
				}
				parent = names
				for _, prov := range names {
					if !slices.Contains(inScope, prov) || (al.GetMatch() != nil && !serverMode(al.GetMatch().GetMode())) {
						continue
					}
					if al.GetDisabled().GetValue() {
						providers[prov] = &logSpec{disabled: true}
						continue
					}
					ls := providers[prov]
					if ls == nil || ls.disabled {
						ls = &logSpec{}
						providers[prov] = ls
					}
					ls.filter = filters[prov]
					if len(al.GetProviders()) > 0 && !slices.Contains(ls.from, l.key) {
						ls.from = append(ls.from, l.key)
					}
				}
			}
		}
	}
	out := &ir.AccessLogConfig{}
	for _, name := range slices.Sorted(maps.Keys(providers)) {
		spec := providers[name]
		if spec.disabled {
			continue
		}
		p := fetchProvider(s, name)
		problem := ""
		switch {
		case p == nil:
			problem = fmt.Sprintf("access log provider %q is not in the mesh config's extensionProviders", name)
		case p.Kind == meshconfig.ProviderOTelALS:
			sink := &ir.AccessLogSink{Provider: p.Name, Kind: ir.AccessLogOTel, Endpoint: p.Endpoint(),
				LogName: p.LogName, Filter: spec.filter}
			problem = customFormat(sink, p)
			out.Sinks = append(out.Sinks, sink)
		case p.Kind != meshconfig.ProviderFileAccessLog:
			problem = fmt.Sprintf("access log provider %q: %s", name, or(p.Unsupported, "kind "+p.Kind+" is not an access log provider"))
		}
		if problem == "" && p.Kind == meshconfig.ProviderFileAccessLog {
			sink := fileSink(p, s)
			if p.Unsupported != "" {
				problem = fmt.Sprintf("access log provider %q: %s", name, p.Unsupported)
			}
			if f := customFormat(sink, p); f != "" {
				problem = f
			}
			sink.Filter = spec.filter
			out.Sinks = append(out.Sinks, sink)
		}
		if problem != "" {
			for _, k := range spec.from {
				rep.add(k, problem)
			}
		}
	}
	return out
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// validFilter keeps a filter that compiles (a bad one is reported).
func validFilter(f string) string {
	if f == "" {
		return ""
	}
	if _, err := expr.Compile(f); err != nil {
		return ""
	}
	return f
}

// fileSink is an envoyFileAccessLog provider's sink; the built-in envoy
// provider follows the mesh config's accessLogFile and accessLogEncoding.
func fileSink(p *meshconfig.TelemetryProvider, s *meshconfig.TelemetrySettings) *ir.AccessLogSink {
	sink := &ir.AccessLogSink{Provider: p.Name, Kind: ir.AccessLogFile, Path: p.Path, Format: ir.LogFormatText}
	if len(p.Labels) > 0 {
		sink.Format = ir.LogFormatJSON
	}
	if p.Name == meshconfig.BuiltinEnvoy && p.Path == "/dev/stdout" && p.Kind == meshconfig.ProviderFileAccessLog {
		if s.AccessLogEncoding == "JSON" {
			sink.Format = ir.LogFormatJSON
		}
	}
	return sink
}

// customFormat puts a provider's own log format (text or labels) on the
// sink when the waypoint can write it, else says why not (the default
// format is written then).
func customFormat(sink *ir.AccessLogSink, p *meshconfig.TelemetryProvider) string {
	if len(p.Labels) > 0 {
		for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
			if _, err := logformat.Parse(p.Labels[k]); err != nil {
				return fmt.Sprintf("access log provider %q: logFormat.labels[%s]: %v (Istio's default format is written instead)", p.Name, k, err)
			}
		}
		sink.Labels = maps.Clone(p.Labels)
		return ""
	}
	if p.Text != "" {
		if _, err := logformat.Parse(p.Text); err != nil {
			return fmt.Sprintf("access log provider %q: logFormat.text: %v (Istio's default format is written instead)", p.Name, err)
		}
		sink.Text = p.Text
	}
	return ""
}

func legacySink(s *meshconfig.TelemetrySettings) *ir.AccessLogSink {
	sink := &ir.AccessLogSink{Provider: "", Kind: ir.AccessLogFile, Path: s.AccessLogFile, Format: ir.LogFormatText}
	if s.AccessLogEncoding == "JSON" {
		sink.Format = ir.LogFormatJSON
	}
	return sink
}

// DefaultSamplingPercentage is istiod's default random sampling (1%).
const DefaultSamplingPercentage = 1.0

func mergeTracing(chain []telemetryPiece, s *meshconfig.TelemetrySettings, rep *telemetryReport) *ir.TracingConfig {
	var entries []telemetryPiece
	for _, p := range chain {
		if len(p.obj.Spec.GetTracing()) > 0 {
			entries = append(entries, p)
		}
	}
	if len(entries) == 0 && len(s.DefaultTracing) == 0 {
		if !s.EnableTracing {
			return &ir.TracingConfig{Disabled: true}
		}
		return nil
	}
	var provider *meshconfig.TelemetryProvider
	providerName := ""
	var providerFrom string
	if len(s.DefaultTracing) > 0 {
		providerName = s.DefaultTracing[0]
		provider = fetchProvider(s, providerName)
	}
	out := &ir.TracingConfig{SamplingPercentage: DefaultSamplingPercentage}
	var tags map[string]*tpb.Tracing_CustomTag
	for _, p := range entries {
		for i, tr := range p.obj.Spec.GetTracing() {
			if tr.GetMatch() != nil && !serverMode(tr.GetMatch().GetMode()) {
				continue
			}
			if names := providerNames(tr.GetProviders()); len(names) > 0 {
				providerName, providerFrom = names[0], p.key
				provider = fetchProvider(s, providerName)
				if len(names) > 1 {
					rep.add(p.key, fmt.Sprintf("tracing[%d].providers: only the first provider is used, as istiod does", i))
				}
			}
			if tr.GetDisableSpanReporting() != nil {
				out.Disabled = tr.GetDisableSpanReporting().GetValue()
			}
			if tr.GetCustomTags() != nil {
				tags = tr.GetCustomTags()
				for name, tag := range tags {
					if tag.GetFormatter() != nil {
						rep.add(p.key, fmt.Sprintf("tracing[%d].customTags[%s]: formatter tags are not supported", i, name))
					}
				}
			}
			if tr.GetRandomSamplingPercentage() != nil {
				out.SamplingPercentage = tr.GetRandomSamplingPercentage().GetValue()
			}
			if v := tr.GetUseRequestIdForTraceSampling(); v != nil && !v.GetValue() {
				rep.add(p.key, fmt.Sprintf("tracing[%d].useRequestIdForTraceSampling: false is not supported (sampling never reads x-request-id here)", i))
			}
			if tr.GetEnableIstioTags() != nil {
				rep.add(p.key, fmt.Sprintf("tracing[%d].enableIstioTags is not supported (Istio's tags are always set)", i))
			}
			if tr.GetDisableContextPropagation() != nil {
				rep.add(p.key, fmt.Sprintf("tracing[%d].disableContextPropagation is not supported", i))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tags)) {
		tag := tags[name]
		ct := ir.CustomTag{Name: name}
		switch {
		case tag.GetLiteral() != nil:
			v := tag.GetLiteral().GetValue()
			ct.Literal = &v
		case tag.GetEnvironment() != nil:
			ct.Environment, ct.Default = tag.GetEnvironment().GetName(), tag.GetEnvironment().GetDefaultValue()
		case tag.GetHeader() != nil:
			ct.Header, ct.Default = tag.GetHeader().GetName(), tag.GetHeader().GetDefaultValue()
		default:
			continue
		}
		out.CustomTags = append(out.CustomTags, ct)
	}
	switch {
	case provider == nil:
		out.Disabled = true
		if providerName != "" && providerFrom != "" {
			rep.add(providerFrom, fmt.Sprintf("tracing provider %q is not in the mesh config's extensionProviders", providerName))
		}
	case provider.Kind != meshconfig.ProviderOpenTelemetry:
		out.Disabled = true
		if providerFrom != "" {
			rep.add(providerFrom, fmt.Sprintf("tracing provider %q: %s", providerName, or(provider.Unsupported, "kind "+provider.Kind+" is not a tracing provider")))
		}
	default:
		out.Provider, out.Endpoint = provider.Name, provider.Endpoint()
		if provider.Unsupported != "" && providerFrom != "" {
			rep.add(providerFrom, fmt.Sprintf("tracing provider %q: %s not supported", providerName, provider.Unsupported))
		}
	}
	if out.SamplingPercentage < 0 || out.SamplingPercentage > 100 {
		out.SamplingPercentage = min(max(out.SamplingPercentage, 0), 100)
	}
	return out
}

// standardMetrics maps the Telemetry API's metric enum to the IR's names.
var standardMetrics = map[tpb.MetricSelector_IstioMetric]string{
	tpb.MetricSelector_REQUEST_COUNT:          ir.MetricRequestCount,
	tpb.MetricSelector_REQUEST_DURATION:       ir.MetricRequestDuration,
	tpb.MetricSelector_REQUEST_SIZE:           ir.MetricRequestSize,
	tpb.MetricSelector_RESPONSE_SIZE:          ir.MetricResponseSize,
	tpb.MetricSelector_TCP_OPENED_CONNECTIONS: ir.MetricTCPOpenedConnections,
	tpb.MetricSelector_TCP_CLOSED_CONNECTIONS: ir.MetricTCPClosedConnections,
	tpb.MetricSelector_TCP_SENT_BYTES:         ir.MetricTCPSentBytes,
	tpb.MetricSelector_TCP_RECEIVED_BYTES:     ir.MetricTCPReceivedBytes,
}

func allMetricNames() []string { return slices.Sorted(maps.Values(standardMetrics)) }

var promLabelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// MaxTagValueOverrides bounds the distinct tag value expressions of a
// waypoint (each adds a label value to every series key).
const MaxTagValueOverrides = 8

func mergeMetrics(chain []telemetryPiece, s *meshconfig.TelemetrySettings, rep *telemetryReport, svcKeys map[string]bool) *ir.MetricsConfig {
	var levels []telemetryPiece
	for _, p := range chain {
		if len(p.obj.Spec.GetMetrics()) > 0 {
			levels = append(levels, p)
		}
	}
	if len(levels) == 0 {
		if slices.ContainsFunc(s.DefaultMetrics, func(n string) bool { return isPrometheus(s, n) }) {
			return nil // Istio's metrics, unchanged
		}
		return allDisabled()
	}
	inScope := s.DefaultMetrics
	for _, l := range levels {
		for _, m := range l.obj.Spec.GetMetrics() {
			if names := providerNames(m.GetProviders()); len(names) > 0 {
				inScope = names
			}
		}
	}
	prom := ""
	for _, n := range inScope {
		if isPrometheus(s, n) {
			prom = n
		}
	}
	for _, l := range levels {
		for i, m := range l.obj.Spec.GetMetrics() {
			for _, n := range providerNames(m.GetProviders()) {
				if !isPrometheus(s, n) {
					p := fetchProvider(s, n)
					if p == nil {
						rep.add(l.key, fmt.Sprintf("metrics[%d].providers: %q is not in the mesh config's extensionProviders", i, n))
					} else {
						rep.add(l.key, fmt.Sprintf("metrics[%d].providers: %q is not a prometheus provider (only Prometheus metrics are served)", i, n))
					}
				}
			}
		}
	}
	if prom == "" {
		return allDisabled()
	}
	type override struct {
		disabled *bool
		tags     map[string]*tpb.MetricsOverrides_TagOverride
		from     string
	}
	overrides := map[string]*override{}
	disabledAll := false
	parent := s.DefaultMetrics
	for _, l := range levels {
		for i, m := range l.obj.Spec.GetMetrics() {
			names := providerNames(m.GetProviders())
			if len(names) == 0 {
				names = parent
			}
			parent = names
			if !slices.Contains(names, prom) {
				continue
			}
			if m.GetReportingInterval() != nil {
				rep.add(l.key, fmt.Sprintf("metrics[%d].reportingInterval is not supported (TCP metrics are reported every 5s)", i))
			}
			for j, o := range m.GetOverrides() {
				sel := o.GetMatch()
				if sel != nil && sel.GetMode() == tpb.WorkloadMode_CLIENT {
					continue
				}
				var metrics []string
				switch mm := sel.GetMetricMatch().(type) {
				case *tpb.MetricSelector_CustomMetric:
					rep.add(l.key, fmt.Sprintf("metrics[%d].overrides[%d]: customMetric %q is not supported", i, j, mm.CustomMetric))
					continue
				case *tpb.MetricSelector_Metric:
					if mm.Metric == tpb.MetricSelector_ALL_METRICS {
						metrics = allMetricNames()
					} else if n, ok := standardMetrics[mm.Metric]; ok {
						metrics = []string{n}
					} else {
						rep.add(l.key, fmt.Sprintf("metrics[%d].overrides[%d]: metric %s is not supported", i, j, mm.Metric))
						continue
					}
				default: // no match: ALL_METRICS
					metrics = allMetricNames()
				}
				all := len(metrics) == len(standardMetrics)
				if all && o.GetDisabled().GetValue() {
					disabledAll = true
					continue
				}
				disabledAll = false
				for _, name := range metrics {
					ov := overrides[name]
					if ov == nil {
						ov = &override{}
						overrides[name] = ov
					}
					if o.GetDisabled() != nil {
						v := o.GetDisabled().GetValue()
						ov.disabled = &v
					}
					for tag, to := range o.GetTagOverrides() {
						if svcKeys[l.key] {
							rep.add(l.key, fmt.Sprintf("metrics[%d].overrides[%d].tagOverrides: tag overrides of a Service-targeted Telemetry are not supported (target the Gateway)", i, j))
							break
						}
						if ov.tags == nil {
							ov.tags = map[string]*tpb.MetricsOverrides_TagOverride{}
						}
						if !promLabelName.MatchString(tag) || strings.HasPrefix(tag, "__") {
							rep.add(l.key, fmt.Sprintf("metrics[%d].overrides[%d].tagOverrides[%s]: not a valid metric label name", i, j, tag))
							continue
						}
						if to.GetOperation() == tpb.MetricsOverrides_TagOverride_UPSERT {
							if _, err := expr.Compile(to.GetValue()); err != nil {
								rep.add(l.key, fmt.Sprintf("metrics[%d].overrides[%d].tagOverrides[%s]: %v", i, j, tag, err))
								continue
							}
						}
						ov.tags[tag] = to
						ov.from = l.key
					}
				}
			}
		}
	}
	if disabledAll {
		return allDisabled()
	}
	if len(overrides) == 0 {
		return nil
	}
	out := &ir.MetricsConfig{Overrides: map[string]*ir.MetricOverride{}}
	exprs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(overrides)) {
		ov := overrides[name]
		mo := &ir.MetricOverride{Disabled: ov.disabled != nil && *ov.disabled}
		for _, tag := range slices.Sorted(maps.Keys(ov.tags)) {
			to := ov.tags[tag]
			tov := ir.TagOverride{Name: tag, Remove: to.GetOperation() == tpb.MetricsOverrides_TagOverride_REMOVE}
			if !tov.Remove {
				tov.Value = to.GetValue()
				exprs[tag+"="+tov.Value] = true
				if len(exprs) > MaxTagValueOverrides {
					rep.add(ov.from, fmt.Sprintf("tagOverrides: at most %d distinct tag values per waypoint; %s left out", MaxTagValueOverrides, tag))
					delete(exprs, tag+"="+tov.Value)
					continue
				}
			}
			mo.Tags = append(mo.Tags, tov)
		}
		out.Overrides[name] = mo
	}
	return out
}

func isPrometheus(s *meshconfig.TelemetrySettings, name string) bool {
	p := fetchProvider(s, name)
	return p != nil && p.Kind == meshconfig.ProviderPrometheus
}

func allDisabled() *ir.MetricsConfig {
	out := &ir.MetricsConfig{Overrides: map[string]*ir.MetricOverride{}}
	for _, n := range allMetricNames() {
		out.Overrides[n] = &ir.MetricOverride{Disabled: true}
	}
	return out
}
