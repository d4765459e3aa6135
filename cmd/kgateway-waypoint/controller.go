package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kgateway-dev/kgateway-waypoint/internal/controller"
	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

func newController(g *globalFlags) *cobra.Command {
	var (
		o          controller.Options
		kubeconfig string
		pullPolicy string
		proxyArgs  []string
	)
	c := &cobra.Command{
		Use:   "controller",
		Short: "Run the Kubernetes control plane: GatewayClass, deployer, status and xDS for the waypoint proxies",
		Long: `Run the controller in a cluster with Istio ambient. It owns the GatewayClass
(created when absent, with the ambient.istio.io/waypoint-inbound-binding
annotation), deploys a proxy for each accepted Gateway of that class, writes
Gateway and route status (addresses once a proxy replica is ready) and its own
conditions on Services, ServiceEntries and AuthorizationPolicies (next to
istiod's, never over them), and streams each proxy its own
waypoint's configuration over xDS (proxies authenticate with their projected
ServiceAccount token).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if o.Deployer.Image == "" {
				return fmt.Errorf("--proxy-image is required")
			}
			if o.Deployer.XDSAddress == "" {
				return fmt.Errorf("--proxy-xds-address is required (the controller's xDS Service as the proxies dial it)")
			}
			o.Deployer.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
			o.Deployer.ExtraArgs = append([]string{"--log-level", g.LogLevel, "--log-format", g.LogFormat}, proxyArgs...)
			if o.LeaderElectionNamespace == "" {
				o.LeaderElectionNamespace = os.Getenv("POD_NAMESPACE")
			}
			var cfg *rest.Config
			if kubeconfig != "" {
				cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			} else {
				cfg, err = ctrl.GetConfig()
			}
			if err != nil {
				return fmt.Errorf("kubernetes client config: %w", err)
			}
			o.Logger = log
			ctl, err := controller.New(cfg, o)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("controller starting", "gatewayClass", o.GatewayClass, "xds", ctl.XDSAddr().String(), "version", version)
			return ctl.Start(ctx)
		},
	}
	f := c.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, or $KUBECONFIG)")
	f.StringVar(&o.GatewayClass, "gateway-class", translate.DefaultGatewayClass, "the GatewayClass this controller owns")
	f.StringVar(&o.ControllerName, "controller-name", controller.DefaultControllerName, "the GatewayClass controllerName, and the route status controllerName")
	f.StringVar(&o.XDSAddress, "xds-address", ":15010", "where the xDS server listens")
	f.StringVar(&o.Deployer.XDSAddress, "proxy-xds-address", "", "the xDS address the proxies dial (the controller's Service, host:port)")
	f.StringVar(&o.Deployer.Image, "proxy-image", "", "the image of the waypoint proxies (this binary)")
	f.StringVar(&pullPolicy, "proxy-image-pull-policy", "IfNotPresent", "imagePullPolicy of the proxies")
	f.StringArrayVar(&proxyArgs, "proxy-arg", nil, "an extra argument for the proxies (repeatable)")
	f.StringVar(&o.Deployer.TokenAudience, "token-audience", deployer.DefaultTokenAudience, "audience of the proxies' projected token, checked by TokenReview")
	f.StringVar(&o.IstioNamespace, "istio-namespace", "istio-system", "namespace of istiod's mesh ConfigMap (istio, or istio-<revision>), followed live; \"\" to follow none (Istio's default mesh config)")
	f.StringVar(&o.Revision, "revision", "", "Istio revision whose mesh ConfigMap is read (istio-<revision>; \"\" or default: istio)")
	f.StringVar(&o.Translate.TrustDomain, "trust-domain", "", "SPIFFE trust domain of the mesh (default: the mesh config's trustDomain, cluster.local)")
	f.StringVar(&o.Translate.ClusterDomain, "cluster-domain", "cluster.local", "DNS suffix of Services")
	f.StringVar(&o.Translate.RootNamespace, "root-namespace", "", "Istio root namespace: policies there may target the GatewayClass (default: the mesh config's rootNamespace, istio-system)")
	f.BoolVar(&o.LeaderElection, "leader-elect", false, "elect a leader among replicas (deploys and writes status)")
	f.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader lease (default $POD_NAMESPACE)")
	f.StringVar(&o.MetricsAddress, "metrics-address", ":9091", "controller metrics (0 disables)")
	f.StringVar(&o.HealthAddress, "health-address", ":8081", "/healthz and /readyz (0 disables)")
	return c
}
