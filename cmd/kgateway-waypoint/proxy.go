package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xdsproxy"
)

func newProxy(g *globalFlags) *cobra.Command {
	var (
		o         xdsproxy.Options
		gateway   string
		tokenFile string
	)
	c := &cobra.Command{
		Use:   "proxy --xds-address HOST:PORT --gateway NAMESPACE/NAME",
		Short: "Run a waypoint proxy fed by the controller over xDS (what the deployed pods run)",
		Long: `Run the waypoint data plane with its configuration streamed by the controller.
The proxy authenticates with its projected ServiceAccount token (re-read at
each connection), keeps serving its last configuration while the controller
is unreachable, reconnects with backoff, and reports ready on
/healthz/ready only once its first configuration is applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			if o.XDSAddress == "" {
				return fmt.Errorf("--xds-address is required")
			}
			gw, err := standalone.ParseGateway(gateway)
			if err != nil {
				return err
			}
			o.Gateway.Namespace, o.Gateway.Name = gw.Namespace, gw.Name
			o.Token = xds.TokenFile(tokenFile)
			if o.NodeID == "" {
				o.NodeID, _ = os.Hostname()
			}
			o.Logger = log
			o.DataPlane.LogLevel = &g.level
			r, err := xdsproxy.Start(o)
			if err != nil {
				return err
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sig)
			select {
			case s := <-sig:
				log.Info("shutting down", "signal", s.String())
				if s == syscall.SIGTERM {
					r.Drain()
				} else {
					r.Close()
				}
				return nil
			case err := <-r.Errors():
				r.Close()
				return err
			}
		},
	}
	f := c.Flags()
	f.StringVar(&o.XDSAddress, "xds-address", "", "the controller's xDS address (host:port)")
	f.StringVar(&gateway, "gateway", "", "the waypoint Gateway this proxy runs, NAMESPACE/NAME")
	f.StringVar(&tokenFile, "token-file", deployer.TokenFile, "the projected ServiceAccount token presented to the controller")
	f.StringVar(&o.NodeID, "node-id", os.Getenv("POD_NAME"), "name of this proxy in the controller's logs (default $POD_NAME, else the host name)")
	f.StringVar(&o.InboundAddress, "inbound-address", "0.0.0.0:15088", "PROXY protocol listener")
	f.Var(cidrList{&o.DataPlane.Inbound.AllowedSources}, "proxy-protocol-allowed-cidrs", proxyProtocolSourcesUsage)
	f.StringVar(&o.DataPlane.StatusAddress, "status-address", "0.0.0.0:15021", "readiness listener (GET /healthz/ready)")
	f.StringVar(&o.DataPlane.MetricsAddress, "metrics-address", "0.0.0.0:15020", "Prometheus listener (/stats/prometheus); off disables it")
	f.StringVar(&o.DataPlane.ServerHeader, "server-header", "envoy", "value of the server response header")
	f.DurationVar(&o.DataPlane.DrainDelay, "drain-delay", 5*time.Second, "on SIGTERM: how long readiness fails before the listener stops accepting")
	f.DurationVar(&o.DataPlane.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM: how long open connections may take to finish")
	f.StringVar(&o.DataPlane.AdminAddress, "admin-address", "127.0.0.1:15000", "admin listener (/config_dump, /stats, /logging, /debug/pprof/); loopback only unless --admin-allow-remote; \"off\" to disable")
	f.BoolVar(&o.DataPlane.AllowRemoteAdmin, "admin-allow-remote", false, "allow a non-loopback --admin-address")
	f.StringVar(&o.DataPlane.AccessLog, "access-log", "", "access log destination: empty (off), - or /dev/stdout, or a file path")
	f.StringVar(&o.DataPlane.AccessLogFormat, "access-log-format", "text", "access log format: text (Istio's default) or json")
	f.StringVar(&o.DataPlane.TracingEndpoint, "tracing-endpoint", "", "OTLP collector for traces (grpc://host:4317 or http://host:4318); empty: no tracing")
	f.Float64Var(&o.DataPlane.TracingSampling, "tracing-sampling", 0.01, "ratio (0 to 1) of new traces sampled")
	return c
}
