package proxycmd

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity/istioca"
)

// caFlags are the proxy's Istio CA settings for native HBONE, with the
// defaults of Istio's agent (its environment variables and mount paths,
// which the deployer sets up).
type caFlags struct {
	address, rootCert, tokenFile, serverName, clusterID string
	trustDomain, namespace, serviceAccount              string
	ttl                                                 time.Duration
}

func (c *caFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&c.address, "ca-address", os.Getenv("CA_ADDR"), "native HBONE: the Istio CA (istiod:15012) to get the waypoint's certificate from (default $CA_ADDR; --cert-dir wins)")
	f.StringVar(&c.rootCert, "ca-root-cert", "/var/run/secrets/istio/root-cert.pem", "the mesh root (the istio-ca-root-cert ConfigMap, mounted)")
	f.StringVar(&c.tokenFile, "ca-token-file", "/var/run/secrets/tokens/istio-token", "the projected ServiceAccount token with audience istio-ca")
	f.StringVar(&c.serverName, "ca-server-name", "istiod.istio-system.svc", "the name the CA's serving certificate carries")
	f.StringVar(&c.clusterID, "cluster-id", cmp.Or(os.Getenv("CLUSTER_ID"), "Kubernetes"), "the cluster ID sent to the CA (default $CLUSTER_ID)")
	f.StringVar(&c.trustDomain, "ca-trust-domain", cmp.Or(os.Getenv("TRUST_DOMAIN"), "cluster.local"), "the trust domain of the identity asked for (default $TRUST_DOMAIN)")
	f.StringVar(&c.namespace, "ca-namespace", os.Getenv("POD_NAMESPACE"), "the waypoint's namespace (default $POD_NAMESPACE, else the Gateway's)")
	f.StringVar(&c.serviceAccount, "ca-service-account", os.Getenv("SERVICE_ACCOUNT"), "the waypoint's ServiceAccount (default $SERVICE_ACCOUNT)")
	f.DurationVar(&c.ttl, "ca-certificate-ttl", 24*time.Hour, "the validity asked for (renewed at half of what is granted)")
}

// start gets the first certificate (retrying until ctx ends) and keeps it
// renewed until ctx ends. The proxy waits for it: a native waypoint
// without a certificate could not complete a handshake.
func (c *caFlags) start(ctx context.Context, gwNamespace string, log *slog.Logger) (*istioca.Client, error) {
	id := identity.ID{TrustDomain: c.trustDomain, Namespace: cmp.Or(c.namespace, gwNamespace), ServiceAccount: c.serviceAccount}
	if id.ServiceAccount == "" {
		return nil, fmt.Errorf("--ca-address needs the waypoint's ServiceAccount: --ca-service-account or $SERVICE_ACCOUNT")
	}
	client, err := istioca.New(istioca.Options{Address: c.address, RootCertFile: c.rootCert, ServerName: c.serverName,
		TokenFile: c.tokenFile, ClusterID: c.clusterID, ID: id, TTL: c.ttl, Logger: log})
	if err != nil {
		return nil, err
	}
	changed := client.Changed()
	go client.Run(ctx)
	log.Info("asking the Istio CA for the waypoint's certificate", "ca", c.address, "identity", id.String())
	select {
	case <-changed:
		return client, nil
	case <-ctx.Done():
		_ = client.Close()
		return nil, ctx.Err()
	}
}
