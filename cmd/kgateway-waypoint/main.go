// Command kgateway-waypoint is the kgateway waypoint for the Istio ambient
// mesh: control plane and data plane in one binary. This file only wires
// subcommands to the packages that do the work.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kgateway-dev/kgateway-waypoint/internal/demo"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

type globalFlags struct {
	logLevel  string
	logFormat string
	// level is the live log level (the admin's /logging changes it).
	level slog.LevelVar
}

func (g *globalFlags) logger(w *os.File) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	g.level.Set(lvl)
	opts := &slog.HandlerOptions{Level: &g.level}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "kgateway-waypoint",
		Short:         "The kgateway waypoint proxy for the Istio ambient mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(newStandalone(g), newDemo(g), newVersion(), newController(g), newProxy(g))
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version)
		},
	}
}

func newStandalone(g *globalFlags) *cobra.Command {
	var o standalone.Options
	var meshConfig string
	c := &cobra.Command{
		Use:   "standalone -f PATH [-f PATH ...]",
		Short: "Run a waypoint from manifest files (no cluster), watching them for changes",
		Long: `Run the waypoint control plane and proxy in one process, fed from Kubernetes
manifests (Namespace, Service, EndpointSlice, GatewayClass, Gateway, HTTPRoute,
AuthorizationPolicy, ...) in YAML files or directories. Changes to the files
take effect within a second; a file that fails to load is reported and the last
good configuration stays in force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			if len(o.Paths) == 0 {
				return fmt.Errorf("at least one -f PATH is required")
			}
			o.Logger = log
			o.DataPlane.LogLevel = &g.level
			if meshConfig != "" {
				if err := applyMeshConfig(cmd, meshConfig, &o); err != nil {
					return err
				}
			}
			r, err := standalone.Start(o)
			if err != nil {
				return err
			}
			defer r.Close()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sig)
			for {
				select {
				case s := <-sig:
					if s == syscall.SIGHUP {
						log.Info("SIGHUP: reloading the manifests")
						_ = r.Reload()
						continue
					}
					log.Info("shutting down", "signal", s.String())
					if s == syscall.SIGTERM {
						r.Drain()
					}
					return nil
				case err := <-r.Errors():
					return err
				}
			}
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&o.Paths, "file", "f", nil, "manifest file or directory (repeatable; directories are read recursively)")
	f.StringVar(&o.Gateway, "gateway", "", "the waypoint Gateway as NAMESPACE/NAME (default: the only Gateway of the class)")
	f.StringVar(&o.InboundAddress, "inbound-address", "", "PROXY protocol listener (default 0.0.0.0:<the Gateway's istio.io/PROXY listener port, 15088>)")
	f.StringVar(&o.DataPlane.StatusAddress, "status-address", "0.0.0.0:15021", "readiness listener (GET /healthz/ready)")
	f.StringVar(&o.DataPlane.ServerHeader, "server-header", "envoy", "value of the server response header")
	f.DurationVar(&o.DataPlane.DrainDelay, "drain-delay", 5*time.Second, "on SIGTERM: how long readiness fails before the listener stops accepting")
	f.DurationVar(&o.DataPlane.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM: how long in-flight requests and connections may take to finish")
	f.IntVar(&o.DataPlane.Inbound.MaxConnections, "max-connections", 50000, "connections served at once; more are closed at accept")
	f.Var(cidrList{&o.DataPlane.Inbound.AllowedSources}, "proxy-protocol-allowed-cidrs", proxyProtocolSourcesUsage)
	f.DurationVar(&o.DataPlane.Inbound.HeaderTimeout, "proxy-header-timeout", 5*time.Second, "time allowed for the PROXY protocol header")
	f.IntVar(&o.DataPlane.Inbound.HTTP.MaxHeaderBytes, "max-header-bytes", 60<<10, "request line and headers size limit (431 past it)")
	f.IntVar(&o.DataPlane.Inbound.HTTP.MaxHeaders, "max-headers", 100, "request header count limit (431 past it)")
	f.DurationVar(&o.DataPlane.Inbound.HTTP.ReadHeaderTimeout, "header-timeout", 10*time.Second, "time allowed to send a request's headers (408 past it)")
	f.DurationVar(&o.DataPlane.Inbound.HTTP.IdleTimeout, "idle-timeout", time.Hour, "close client connections idle that long")
	f.IntVar(&o.DataPlane.Inbound.HTTP.MaxRequestsPerConnection, "max-requests-per-connection", 0, "close an HTTP/1 connection after that many requests (0: no limit)")
	f.IntVar(&o.DataPlane.Inbound.HTTP.MaxConcurrentStreams, "max-concurrent-streams", 100, "HTTP/2 streams per connection")
	f.DurationVar(&o.DataPlane.Upstream.ConnectTimeout, "connect-timeout", 10*time.Second, "upstream connect timeout")
	f.BoolVar(&o.DataPlane.Inbound.HTTP.AllowCustomMethods, "allow-custom-methods", false, "serve request methods outside the registered set (default: 400, as Envoy)")
	f.DurationVar(&o.DataPlane.Streams.IdleTimeout, "stream-idle-timeout", 5*time.Minute, "end a request when nothing moved on it for that long (408 before the response)")
	f.IntVar(&o.DataPlane.Streams.MaxRetries, "max-retries", 10, "retries of one request at most, whatever its route asks")
	f.IntVar(&o.DataPlane.Streams.MaxMirrors, "max-mirrors-in-flight", 256, "mirrored requests in flight at most; more are dropped")
	f.IntVar(&o.DataPlane.Upstream.MaxResponseHeaderBytes, "max-response-header-bytes", 60<<10, "upstream response head size limit (502 past it)")
	f.StringVar(&o.Translate.GatewayClass, "gateway-class", translate.DefaultGatewayClass, "GatewayClass of our waypoints")
	f.StringVar(&o.Translate.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of the mesh")
	f.StringArrayVar(&o.Translate.TrustDomainAliases, "trust-domain-alias", nil, "a trust domain policies treat as equal to --trust-domain (repeatable)")
	f.StringVar(&o.DataPlane.MetricsAddress, "metrics-address", "0.0.0.0:15020", "Prometheus metrics listener (/stats/prometheus, /metrics); \"off\" to disable")
	f.StringVar(&o.DataPlane.AdminAddress, "admin-address", "127.0.0.1:15000", "admin listener (/config_dump, /stats, /logging, /debug/pprof/, /healthz); loopback only unless --admin-allow-remote; \"off\" to disable")
	f.BoolVar(&o.DataPlane.AllowRemoteAdmin, "admin-allow-remote", false, "allow a non-loopback --admin-address")
	f.StringVar(&o.DataPlane.AccessLog, "access-log", "", "access log destination: empty (off), - or /dev/stdout, or a file path")
	f.StringVar(&o.DataPlane.AccessLogFormat, "access-log-format", "text", "access log format: text (Istio's default) or json")
	f.StringVar(&o.DataPlane.TracingEndpoint, "tracing-endpoint", "", "OTLP collector for traces (grpc://host:4317 or http://host:4318); empty: no tracing")
	f.Float64Var(&o.DataPlane.TracingSampling, "tracing-sampling", 0.01, "ratio (0 to 1) of new traces sampled")
	f.StringVar(&meshConfig, "mesh-config", "", "Istio MeshConfig YAML (pathNormalization, extensionProviders, rootNamespace, trustDomain, trustDomainAliases); flags given explicitly win")
	f.StringVar(&o.Translate.RootNamespace, "root-namespace", "istio-system", "Istio root namespace (policies there may target the GatewayClass)")
	return c
}

func newDemo(g *globalFlags) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the waypoint walkthrough locally: httpbin, the waypoint and a curl client on loopback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.logLevel == "info" && !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn" // keep the walkthrough's output readable
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{Out: os.Stdout, Logger: log, Keep: keep})
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep the waypoint running after the walkthrough")
	return c
}

// applyMeshConfig takes settings from an Istio MeshConfig file; a flag the
// user set explicitly wins over the file.
func applyMeshConfig(cmd *cobra.Command, path string, o *standalone.Options) error {
	mc, err := meshconfig.Load(path)
	if err != nil {
		return err
	}
	o.DataPlane.PathNormalization = mc.PathNormalization
	if !cmd.Flags().Changed("trust-domain") {
		o.Translate.TrustDomain = mc.TrustDomain
	}
	if !cmd.Flags().Changed("trust-domain-alias") {
		o.Translate.TrustDomainAliases = mc.TrustDomainAliases
	}
	if !cmd.Flags().Changed("root-namespace") {
		o.Translate.RootNamespace = mc.RootNamespace
	}
	o.DataPlane.ExtAuthzProviders = mc.ExtAuthzProviders
	return nil
}
