// Command kgateway-waypoint is the kgateway waypoint for the Istio ambient
// mesh: control plane and data plane in one binary. This file only wires
// subcommands to the packages that do the work.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/demo"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxycmd"
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

// globalFlags are the logging flags every subcommand shares.
type globalFlags = proxycmd.Logging

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "kgateway-waypoint",
		Short:         "The kgateway waypoint proxy for the Istio ambient mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.Bind(root.PersistentFlags())
	root.AddCommand(newStandalone(g), newDemo(g), newVersion(), newController(g), proxycmd.New("proxy", g))
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
	c := &cobra.Command{
		Use:   "standalone -f PATH [-f PATH ...]",
		Short: "Run a waypoint from manifest files (no cluster), watching them for changes",
		Long: `Run the waypoint control plane and proxy in one process, fed from Kubernetes
manifests (Namespace, Service, EndpointSlice, GatewayClass, Gateway, HTTPRoute,
AuthorizationPolicy, ...) in YAML files or directories, and Istio's mesh config
(--mesh-config). Changes to the files take effect within a second; a file that
fails to load is reported and the last good configuration stays in force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if len(o.Paths) == 0 {
				return fmt.Errorf("at least one -f PATH is required")
			}
			o.Logger = log
			o.DataPlane.LogLevel = &g.Level
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
	f.StringVar(&o.MeshConfig, "mesh-config", "", "Istio MeshConfig YAML (pathNormalization, extensionProviders, defaultHttpRetryPolicy, rootNamespace, trustDomain, trustDomainAliases), watched like the manifests; the flags below win when given")
	f.StringVar(&o.Translate.GatewayClass, "gateway-class", translate.DefaultGatewayClass, "GatewayClass of our waypoints")
	f.StringVar(&o.Translate.TrustDomain, "trust-domain", "", "SPIFFE trust domain of the mesh (default: the mesh config's trustDomain, cluster.local)")
	f.StringArrayVar(&o.Translate.TrustDomainAliases, "trust-domain-alias", nil, "a trust domain policies treat as equal to --trust-domain (repeatable; default: the mesh config's trustDomainAliases)")
	f.StringVar(&o.Translate.RootNamespace, "root-namespace", "", "Istio root namespace: policies there may target the GatewayClass (default: the mesh config's rootNamespace, istio-system)")
	dataplane.BindFlags(f, &o.DataPlane)
	return c
}

func newDemo(g *globalFlags) *cobra.Command {
	var keep, useHBONE bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the waypoint walkthrough locally: httpbin, the waypoint and a curl client on loopback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.LogLevel == "info" && !cmd.Flags().Changed("log-level") {
				g.LogLevel = "warn" // keep the walkthrough's output readable
			}
			log, err := g.Logger(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{Out: os.Stdout, Logger: log, Keep: keep, HBONE: useHBONE})
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep the waypoint running after the walkthrough")
	c.Flags().BoolVar(&useHBONE, "hbone", false, "through a native HBONE waypoint: a local mesh CA, mTLS HBONE from the curl pod's ztunnel and to the httpbin pod's")
	return c
}
