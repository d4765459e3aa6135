package dataplane

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// BindFlags binds the data plane's flags, the same for `standalone` and
// `proxy`: the listeners, telemetry, limits and drain. Defaults are the
// flags' defaults.
func BindFlags(f *pflag.FlagSet, o *Options) {
	f.StringVar(&o.InboundAddress, "inbound-address", "", "inbound listener (default 0.0.0.0:<the port of the Gateway's istio.io/PROXY listener, 15088, or of its HBONE listener, 15008>)")
	f.StringVar(&o.StatusAddress, "status-address", "0.0.0.0:15021", "readiness listener (GET /healthz/ready, /debug/status)")
	f.StringVar(&o.MetricsAddress, "metrics-address", "0.0.0.0:15020", "Prometheus metrics listener (/stats/prometheus, /metrics); \"off\" to disable")
	f.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1:15000", "admin listener (/config_dump, /stats, /logging, /debug/pprof/, /healthz); loopback only unless --admin-allow-remote; \"off\" to disable")
	f.BoolVar(&o.AllowRemoteAdmin, "admin-allow-remote", false, "allow a non-loopback --admin-address")
	f.StringVar(&o.ServerHeader, "server-header", "envoy", "value of the server response header")
	f.StringVar(&o.AccessLog, "access-log", "", "access log destination: empty (off), - or /dev/stdout, or a file path")
	f.StringVar(&o.AccessLogFormat, "access-log-format", "text", "access log format: text (Istio's default) or json")
	f.StringVar(&o.TracingEndpoint, "tracing-endpoint", "", "OTLP collector for traces (grpc://host:4317 or http://host:4318); empty: no tracing")
	f.Float64Var(&o.TracingSampling, "tracing-sampling", 0.01, "ratio (0 to 1) of new traces sampled")
	f.Var(cidrList{&o.Inbound.AllowedSources}, "proxy-protocol-allowed-cidrs", proxyProtocolSourcesUsage)
	f.BoolVar(&o.Inbound.HTTP.AllowCustomMethods, "allow-custom-methods", false, "serve request methods outside the registered set (default: 400, as Envoy)")
	f.StringSliceVar(&o.Upstream.DNS.Servers, "dns-server", nil, "DNS servers (IP or IP:port, port 53 by default; repeatable) that resolve hostname endpoints (ServiceEntry resolution DNS), re-asked when the answer's TTL runs out (default: the nameservers of /etc/resolv.conf)")
	f.StringVar(&o.CertDir, "cert-dir", "", "native HBONE: directory of the waypoint's cert-chain.pem, key.pem and root-cert.pem (followed when they change)")
	f.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node this waypoint runs on (default $NODE_NAME): its locality, for services that prefer close endpoints, is the one the configuration gives that node")
	f.StringVar(&o.Locality, "locality", "", "where this waypoint runs, region[/zone[/subzone]], for services that prefer close endpoints (wins over --node-name)")
	f.Uint16Var(&o.Upstream.HBONEPort, "upstream-hbone-port", 15008, "native HBONE: the port of an endpoint's pod that tunnels go to (15008 in a mesh; another port only to run several pods' ztunnels on one machine)")
	bindLimits(f, o)
}

// bindLimits binds the flags named in LimitFlags.
func bindLimits(f *pflag.FlagSet, o *Options) {
	f.DurationVar(&o.DrainDelay, "drain-delay", 5*time.Second, "on SIGTERM: how long readiness fails before the listener stops accepting")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM: how long in-flight requests and connections may take to finish")
	f.IntVar(&o.Inbound.MaxConnections, "max-connections", 50000, "connections served at once; more are closed at accept")
	f.DurationVar(&o.Inbound.HeaderTimeout, "proxy-header-timeout", 5*time.Second, "time allowed for the PROXY protocol header")
	f.IntVar(&o.Inbound.HTTP.MaxHeaderBytes, "max-header-bytes", 60<<10, "request line and headers size limit (431 past it)")
	f.IntVar(&o.Inbound.HTTP.MaxHeaders, "max-headers", 100, "request header count limit (431 past it)")
	f.DurationVar(&o.Inbound.HTTP.ReadHeaderTimeout, "header-timeout", 10*time.Second, "time allowed to send a request's headers (408 past it)")
	f.DurationVar(&o.Inbound.HTTP.IdleTimeout, "idle-timeout", time.Hour, "close client connections idle that long")
	f.IntVar(&o.Inbound.HTTP.MaxRequestsPerConnection, "max-requests-per-connection", 0, "close an HTTP/1 connection after that many requests (0: no limit)")
	f.IntVar(&o.Inbound.HTTP.MaxConcurrentStreams, "max-concurrent-streams", 100, "HTTP/2 streams per connection")
	f.DurationVar(&o.Upstream.ConnectTimeout, "connect-timeout", 10*time.Second, "upstream connect timeout")
	f.IntVar(&o.Upstream.MaxResponseHeaderBytes, "max-response-header-bytes", 60<<10, "upstream response head size limit (502 past it)")
	f.DurationVar(&o.Streams.IdleTimeout, "stream-idle-timeout", 5*time.Minute, "end a request when nothing moved on it for that long (408 before the response)")
	f.IntVar(&o.Streams.MaxRetries, "max-retries", 10, "retries of one request at most, whatever its route asks")
	f.IntVar(&o.Streams.MaxMirrors, "max-mirrors-in-flight", 256, "mirrored requests in flight at most; more are dropped")
}

// LimitFlags are the names of the flags that tune limits and drain: what a
// deployment may set per waypoint (the Helm chart's proxy.limits, the
// deployer's "limits" parameter). The listeners' addresses are the
// deployer's to choose and are not among them.
func LimitFlags() []string {
	f := pflag.NewFlagSet("limits", pflag.ContinueOnError)
	bindLimits(f, &Options{})
	var names []string
	f.VisitAll(func(fl *pflag.Flag) { names = append(names, fl.Name) })
	sort.Strings(names)
	return names
}

// LimitArgs checks limit settings (flag name without "--" → value) as the
// proxy would parse them and returns them as command-line arguments
// ("--name=value"), sorted by name. A name that is not a limit flag, or a
// value the flag refuses, is an error naming it.
func LimitArgs(limits map[string]string) ([]string, error) {
	f := pflag.NewFlagSet("limits", pflag.ContinueOnError)
	bindLimits(f, &Options{})
	names := make([]string, 0, len(limits))
	for name := range limits {
		names = append(names, name)
	}
	sort.Strings(names)
	var args, problems []string
	for _, name := range names {
		v := strings.TrimSpace(limits[name])
		if f.Lookup(name) == nil {
			problems = append(problems, fmt.Sprintf("%s: not a limit (known: %s)", name, strings.Join(LimitFlags(), ", ")))
			continue
		}
		if err := f.Set(name, v); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q: %v", name, v, err))
			continue
		}
		if strings.HasPrefix(v, "-") {
			problems = append(problems, fmt.Sprintf("%s: %q: must not be negative", name, v))
			continue
		}
		args = append(args, "--"+name+"="+v)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return args, nil
}
