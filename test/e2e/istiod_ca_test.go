package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity/istioca"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
)

// TestIstiodCA: our Istio CA client (internal/identity/istioca, what the
// native-HBONE proxy runs) gets its workload certificate from the real
// istiod's CA, as a waypoint pod would: the real API server issues the
// ServiceAccount's token for audience istio-ca (TokenRequest, what the
// kubelet's projected volume does), istiod checks it with a TokenReview and
// signs for the token's identity; the client verifies istiod's serving
// certificate (signed by istiod's self-signed root, for
// istiod.istio-system.svc) against the root istiod copied into the
// namespace's istio-ca-root-cert ConfigMap (what the pod mounts).
//
// A separate istiod from TestIstiodCapture's (which runs with no CA), on
// its own API server, with the CA on as a default install has it.
func TestIstiodCA(t *testing.T) {
	bins := istiodBinaries(t)
	assets := kubetest.Skip(t)
	env := kubetest.Start(t, kubetest.All)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	const ns = "ca-e2e"
	kubectl(`apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: istio-system
    trustDomain: cluster.local
---
apiVersion: v1
kind: Namespace
metadata: {name: `+ns+`}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: wp, namespace: `+ns+`}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: other, namespace: `+ns+`}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gone, namespace: `+ns+`}
`, "apply", "-f", "-")
	addrs := runIstiod(t, bins, kubeconfig, dir, true)
	cs := env.Clientset
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// istiod's root: the Secret it keeps (the signing key's certificate),
	// and the copy in our namespace's ConfigMap (what the pod mounts).
	var secretRoot []byte
	waitFor(t, 60*time.Second, "istiod's istio-ca-secret", func() bool {
		s, err := cs.CoreV1().Secrets("istio-system").Get(ctx, "istio-ca-secret", metav1.GetOptions{})
		if err != nil {
			return false
		}
		secretRoot = s.Data["ca-cert.pem"]
		return len(secretRoot) > 0
	})
	var mounted string
	waitFor(t, 60*time.Second, "the istio-ca-root-cert ConfigMap in "+ns, func() bool {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			return false
		}
		mounted = cm.Data["root-cert.pem"]
		return mounted != ""
	})
	root := parseOneCert(t, secretRoot)
	if got := parseOneCert(t, []byte(mounted)); !got.Equal(root) {
		t.Fatalf("the ConfigMap's root (%s) is not the Secret's (%s)", got.Subject, root.Subject)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		t.Fatalf("istiod's root %s is not a self-signed CA", root.Subject)
	}
	rootFile := filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(rootFile, []byte(mounted), 0o600); err != nil {
		t.Fatal(err)
	}

	wp := identity.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "wp"}
	client := func(t *testing.T, token string, id identity.ID) *istioca.Client {
		t.Helper()
		tokenFile := filepath.Join(t.TempDir(), "istio-token")
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := istioca.New(istioca.Options{
			Address: addrs.secureGRPC,
			// CA_ADDR in a pod is istiod.istio-system.svc:15012: the
			// name istiod's serving certificate carries. Here that name
			// is dialled at istiod's loopback port.
			ServerName:   "istiod.istio-system.svc",
			RootCertFile: rootFile,
			TokenFile:    tokenFile,
			ID:           id,
			TTL:          time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("issued", func(t *testing.T) {
		c := client(t, saToken(ctx, t, cs, ns, "wp", "istio-ca"), wp)
		before := time.Now()
		fetch(ctx, t, c)
		b := c.Current()
		leaf := b.Certificate.Leaf
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/ca-e2e/sa/wp" {
			t.Fatalf("leaf URI SANs %v, want [spiffe://cluster.local/ns/ca-e2e/sa/wp]", leaf.URIs)
		}
		if b.ID != wp {
			t.Fatalf("bundle identity %s, want %s", b.ID, wp)
		}
		if leaf.IsCA {
			t.Fatal("the workload certificate is a CA")
		}
		// The presented chain verifies against istiod's root alone, for
		// both ends of mTLS.
		roots := x509.NewCertPool()
		roots.AddCert(root)
		inter := x509.NewCertPool()
		for _, der := range b.Certificate.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("the issued chain does not verify against istiod's root: %v", err)
		}
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("the leaf is not valid for key usage %v: %v", u, err)
			}
		}
		// What our own peer verification says (the inbound's and the
		// outbound pool's check).
		got, err := identity.Verify(b.Certificate.Certificate, roots, "cluster.local", nil, time.Now())
		if err != nil || got != wp {
			t.Fatalf("identity.Verify: %s, %v; want %s", got, err, wp)
		}
		// Valid now, for the hour asked (istiod's maximum is 90 days).
		now := time.Now()
		if leaf.NotBefore.After(now) || !leaf.NotAfter.After(now) {
			t.Fatalf("not valid now: %v .. %v", leaf.NotBefore, leaf.NotAfter)
		}
		if d := leaf.NotAfter.Sub(before); d < 59*time.Minute || d > time.Hour+time.Minute {
			t.Fatalf("valid until %v, %v after the request; want an hour", leaf.NotAfter, d)
		}
		t.Logf("issued by %s: %v, valid %v .. %v", leaf.Issuer, leaf.URIs, leaf.NotBefore.UTC(), leaf.NotAfter.UTC())
		// The bundle trusts the root istiod appended (the last element)
		// and the mounted one: the same certificate.
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("the bundle's roots do not verify its own leaf: %v", err)
		}
	})

	t.Run("wrong-audience", func(t *testing.T) {
		// The token the proxy's xDS client uses: valid, but not for the CA.
		c := client(t, saToken(ctx, t, cs, ns, "wp", "kgateway-waypoint"), wp)
		refused(ctx, t, c, "")
	})

	t.Run("other-service-account", func(t *testing.T) {
		// istiod issues for the token's identity (sa/other) whatever the
		// CSR asks; the client refuses what it did not ask for.
		c := client(t, saToken(ctx, t, cs, ns, "other", "istio-ca"), wp)
		refused(ctx, t, c, "spiffe://cluster.local/ns/ca-e2e/sa/other, not spiffe://cluster.local/ns/ca-e2e/sa/wp")
		// And asking as sa/other with its own token is fine: the refusal
		// above was the mismatch, not the token.
		c = client(t, saToken(ctx, t, cs, ns, "other", "istio-ca"),
			identity.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "other"})
		fetch(ctx, t, c)
		if u := c.Current().Certificate.Leaf.URIs; len(u) != 1 || u[0].String() != "spiffe://cluster.local/ns/ca-e2e/sa/other" {
			t.Fatalf("leaf URI SANs %v", u)
		}
	})

	t.Run("deleted-service-account", func(t *testing.T) {
		// A token whose ServiceAccount is gone: the TokenReview fails.
		tok := saToken(ctx, t, cs, ns, "gone", "istio-ca")
		if err := cs.CoreV1().ServiceAccounts(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c := client(t, tok, identity.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "gone"})
		refused(ctx, t, c, "")
	})

	t.Run("not-a-token", func(t *testing.T) {
		c := client(t, "not-a-jwt", wp)
		refused(ctx, t, c, "")
	})
}

// saToken asks the API server for a token of the ServiceAccount for the
// audience (TokenRequest), as the kubelet does for a projected volume.
func saToken(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, ns, sa, audience string) string {
	t.Helper()
	secs := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// fetch gets a certificate, retrying while istiod's CA is still starting
// (it registers the service once its informers have synced).
func fetch(ctx context.Context, t *testing.T, c *istioca.Client) {
	t.Helper()
	var err error
	for range 30 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Fetch(cctx)
		cancel()
		if err == nil {
			return
		}
		if code := statusCode(err); code != codes.Unavailable && code != codes.Unimplemented {
			break
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("no certificate from istiod: %v", err)
}

// refused asserts istiod (or, with want, the client: a message it must
// contain) refuses the request and nothing is put in force.
func refused(ctx context.Context, t *testing.T, c *istioca.Client, want string) {
	t.Helper()
	var err error
	for range 30 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Fetch(cctx)
		cancel()
		if code := statusCode(err); err == nil || (code != codes.Unavailable && code != codes.Unimplemented) {
			break
		}
		time.Sleep(time.Second)
	}
	switch {
	case err == nil:
		t.Fatalf("issued %v", c.Current().Certificate.Leaf.URIs)
	case want == "" && statusCode(err) != codes.Unauthenticated:
		t.Fatalf("got %v, want Unauthenticated from istiod", err)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("got %v, want %q", err, want)
	}
	if c.Current() != nil {
		t.Fatal("a refused request left a certificate in force")
	}
	t.Logf("refused: %v", err)
}

// statusCode is the gRPC code of err or of what it wraps (OK for nil,
// Unknown when none).
func statusCode(err error) codes.Code {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok {
			return s.Code()
		}
	}
	if err == nil {
		return codes.OK
	}
	return codes.Unknown
}

func parseOneCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(p)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("no certificate in %q", p)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
