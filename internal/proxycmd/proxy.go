// Package proxycmd is the waypoint proxy's command line: the proxy fed by
// the controller over xDS, what the deployed pods run. Both binaries use
// it: kgateway-waypoint as its "proxy" subcommand, and the data-plane-only
// kgateway-waypoint-proxy (cmd/kgateway-waypoint-proxy), which links none
// of the control plane (Kubernetes clients and APIs, the translator), as
// its whole command line. So it must import only what the data plane does.
package proxycmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// New is the proxy command, named use (its first word).
func New(use string, g *Logging) *cobra.Command {
	var (
		o         dataplane.Options
		feed      xds.Feed
		gateway   string
		tokenFile string
		ca        caFlags
	)
	c := &cobra.Command{
		Use:   use + " --xds-address HOST:PORT --gateway NAMESPACE/NAME",
		Short: "Run a waypoint proxy fed by the controller over xDS (what the deployed pods run)",
		Long: `Run the waypoint data plane with its configuration streamed by the controller
(the mesh config's settings included). The proxy authenticates with its
projected ServiceAccount token (re-read at each connection), keeps serving its
last configuration while the controller is unreachable, reconnects with
backoff, and reports ready on /healthz/ready only once its first configuration
is applied and the inbound listener is bound.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if feed.Client.Address == "" {
				return fmt.Errorf("--xds-address is required")
			}
			if gateway == "" {
				return fmt.Errorf("--gateway NAMESPACE/NAME is required")
			}
			gw, ok := ir.ParseNamespacedName(gateway)
			if !ok {
				return fmt.Errorf("--gateway %q: want NAMESPACE/NAME", gateway)
			}
			feed.Client.Gateway = gw
			feed.Client.Token = xds.TokenFile(tokenFile)
			if feed.Client.NodeID == "" {
				feed.Client.NodeID, _ = os.Hostname()
			}
			feed.Client.Logger = log
			o.Logger, o.LogLevel = log, &g.Level
			if o.ServiceName == "" {
				o.ServiceName = gw.Name + "." + gw.Namespace
			}
			if ca.address != "" && o.CertDir == "" {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				client, err := ca.start(ctx, gw.Namespace, log)
				if err != nil {
					return err
				}
				defer func() { _ = client.Close() }()
				o.Identity = client
			}
			r, err := dataplane.Run(o, &feed, dataplane.RunOptions{})
			if err != nil {
				return err
			}
			log.Info("waypoint proxy started; waiting for its configuration", "gateway", gw.String(),
				"xds", feed.Client.Address, "status", r.StatusAddr().String())
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
	f.StringVar(&feed.Client.Address, "xds-address", "", "the controller's xDS address (host:port)")
	f.StringVar(&gateway, "gateway", "", "the waypoint Gateway this proxy runs, NAMESPACE/NAME")
	f.StringVar(&tokenFile, "token-file", xds.DefaultTokenFile, "the projected ServiceAccount token presented to the controller")
	f.StringVar(&feed.Client.NodeID, "node-id", os.Getenv("POD_NAME"), "name of this proxy in the controller's logs (default $POD_NAME, else the host name)")
	ca.bind(f)
	dataplane.BindFlags(f, &o)
	return c
}
