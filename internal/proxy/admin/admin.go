package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// AdminOptions configures AdminHandler.
type AdminOptions struct {
	// ConfigDump returns the configuration in force (the IR), served as JSON
	// on /config_dump; nil: 404.
	ConfigDump func() any
	// Gatherer is the metrics registry (telemetry.Registry()), served on
	// /stats and /stats/prometheus; nil: those answer 404.
	Gatherer prometheus.Gatherer
	// LogLevel is the level /logging shows and changes; nil: 404.
	LogLevel *slog.LevelVar
	// Logger records level changes; nil: none.
	Logger *slog.Logger
}

// AdminHandler serves the admin port (15000). It must be bound to a loopback
// address unless the operator asked otherwise: /logging changes the proxy,
// /config_dump shows every policy and /debug/pprof costs CPU. CheckAdminAddress
// enforces that. Endpoints, as Envoy's admin names them:
//
//	GET  /                    the list of endpoints
//	GET  /config_dump         the configuration in force, JSON
//	GET  /stats               a text summary of the metrics ("name{labels}: value"),
//	                          ?filter=<regexp> keeps the series whose name matches
//	GET  /stats/prometheus    the Prometheus exposition
//	GET  /logging             the current level
//	POST /logging?level=L     sets it (debug, info, warn, error); Envoy also
//	                          requires POST for changes
//	GET  /debug/pprof/...     Go's profiler
//	GET  /healthz             200 "ok" while the process serves
func AdminHandler(opts AdminOptions) http.Handler {
	mux := http.NewServeMux()
	var endpoints []string
	handle := func(pattern, help string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, h)
		if help != "" {
			endpoints = append(endpoints, fmt.Sprintf("  %-22s %s", pattern[strings.IndexByte(pattern, ' ')+1:], help))
		}
	}
	handle("GET /healthz", "liveness", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if opts.ConfigDump != nil {
		handle("GET /config_dump", "the configuration in force (JSON)", func(w http.ResponseWriter, _ *http.Request) {
			b, err := json.MarshalIndent(opts.ConfigDump(), "", "  ")
			if err != nil {
				http.Error(w, "config_dump: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(b, '\n'))
		})
	}
	if opts.Gatherer != nil {
		handle("GET /stats", "metrics as text; ?filter=<regexp>", statsHandler(opts.Gatherer))
		prom := promHandler(opts.Gatherer)
		handle("GET /stats/prometheus", "metrics, Prometheus exposition", prom.ServeHTTP)
	}
	if opts.LogLevel != nil {
		handle("/logging", "GET: the log level; POST ?level=debug|info|warn|error: set it", loggingHandler(opts.LogLevel, opts.Logger))
	}
	handle("GET /debug/pprof/", "Go profiles", pprof.Index)
	handle("GET /debug/pprof/cmdline", "", pprof.Cmdline)
	handle("GET /debug/pprof/profile", "", pprof.Profile)
	handle("GET /debug/pprof/symbol", "", pprof.Symbol)
	handle("POST /debug/pprof/symbol", "", pprof.Symbol)
	handle("GET /debug/pprof/trace", "", pprof.Trace)
	sort.Strings(endpoints)
	index := "admin commands are:\n" + strings.Join(endpoints, "\n") + "\n"
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(index))
	})
	return mux
}

// MetricsHandler serves the Prometheus port (15020): /stats/prometheus, the
// path Istio's pods advertise in prometheus.io/path, and /metrics.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	h := promHandler(g)
	mux.Handle("GET /stats/prometheus", h)
	mux.Handle("GET /metrics", h)
	return mux
}

func promHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// CheckAdminAddress refuses a listen address that is not loopback unless
// allowRemote is set. A host name other than "localhost" is refused: it could
// resolve anywhere.
func CheckAdminAddress(addr string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("admin address %q is not a loopback address; the admin port must stay on the pod's loopback", addr)
}

func loggingHandler(level *slog.LevelVar, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		want := r.URL.Query().Get("level")
		switch {
		case r.Method == http.MethodGet && want == "":
		case r.Method == http.MethodPost && want != "":
			var l slog.Level
			if err := l.UnmarshalText([]byte(want)); err != nil || !validLevel(want) {
				http.Error(w, fmt.Sprintf("unknown level %q: want debug, info, warn or error", want), http.StatusBadRequest)
				return
			}
			old := level.Level()
			level.Set(l)
			if log != nil {
				log.Info("log level changed", "from", old.String(), "to", l.String())
			}
		case r.Method == http.MethodGet || r.Method == http.MethodPost:
			w.Header().Set("Allow", "POST")
			http.Error(w, "set the level with POST /logging?level=debug|info|warn|error", http.StatusMethodNotAllowed)
			return
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintf(w, "active loggers:\n  level: %s\n", strings.ToLower(level.Level().String()))
	}
}

func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// statsHandler writes one line per series, Envoy's /stats style:
// "name{label="value",...}: value"; histograms as their count and sum.
func statsHandler(g prometheus.Gatherer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var filter *regexp.Regexp
		if f := r.URL.Query().Get("filter"); f != "" {
			var err error
			if filter, err = regexp.Compile(f); err != nil {
				http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		families, err := g.Gather()
		if err != nil && len(families) == 0 {
			http.Error(w, "gather: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var b strings.Builder
		for _, mf := range families {
			name := mf.GetName()
			if filter != nil && !filter.MatchString(name) {
				continue
			}
			for _, m := range mf.GetMetric() {
				b.WriteString(name)
				writeLabels(&b, m.GetLabel())
				b.WriteString(": ")
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					b.WriteString(formatValue(m.GetCounter().GetValue()))
				case dto.MetricType_GAUGE:
					b.WriteString(formatValue(m.GetGauge().GetValue()))
				case dto.MetricType_UNTYPED:
					b.WriteString(formatValue(m.GetUntyped().GetValue()))
				case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
					h := m.GetHistogram()
					fmt.Fprintf(&b, "count=%d sum=%s", h.GetSampleCount(), formatValue(h.GetSampleSum()))
				case dto.MetricType_SUMMARY:
					s := m.GetSummary()
					fmt.Fprintf(&b, "count=%d sum=%s", s.GetSampleCount(), formatValue(s.GetSampleSum()))
				}
				b.WriteByte('\n')
			}
		}
		_, _ = w.Write([]byte(b.String()))
	}
}

func writeLabels(b *strings.Builder, labels []*dto.LabelPair) {
	if len(labels) == 0 {
		return
	}
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.GetValue()))
	}
	b.WriteByte('}')
}

func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
