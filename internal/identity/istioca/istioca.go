// Package istioca gets the waypoint's certificate from the Istio CA, as
// Istio's agent does: a CSR for the waypoint's SPIFFE identity sent to
// istio.v1.auth.IstioCertificateService/CreateCertificate (istiod, port
// 15012) over TLS, authenticated by the pod's projected ServiceAccount
// token (audience istio-ca) as a bearer token. The CA issues for the
// caller's identity whatever the CSR asks, so a certificate for another
// identity than the one configured is refused. The certificate is renewed at
// half its life; a renewal changes what new handshakes present, so no
// connection is dropped.
//
// It is the one place the proxy links istio.io/api (for the CA's types):
// the command wires it in as an identity.Provider, so the data-plane
// packages stay free of Istio APIs.
package istioca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
)

// Options configure the client.
type Options struct {
	// Address is the CA's host:port (Istio's CA_ADDR,
	// istiod.istio-system.svc:15012).
	Address string
	// RootCertFile is the mesh root in PEM (the istio-ca-root-cert
	// ConfigMap's root-cert.pem, mounted): it verifies the CA's serving
	// certificate and is a trust anchor for peers. Read at every renewal.
	RootCertFile string
	// ServerName is the name the CA's certificate must carry (default:
	// the host of Address).
	ServerName string
	// Plaintext talks to the CA without TLS (a local CA on loopback only;
	// the token is then sent in the clear).
	Plaintext bool
	// TokenFile is the projected ServiceAccount token (audience istio-ca),
	// read for every request since the kubelet rotates it.
	TokenFile string
	// ClusterID is sent in the ClusterID metadata, as Istio's agent does
	// (default "Kubernetes").
	ClusterID string
	// ID is the identity asked for in the CSR.
	ID identity.ID
	// TTL is the validity asked for (default 24h, Istio's default); the CA
	// may grant less.
	TTL time.Duration
	// RetryMin and RetryMax bound the wait between failed requests
	// (default 1s and 30s, doubling).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

// Client is an identity.Provider backed by the Istio CA.
type Client struct {
	identity.Notifier
	opts Options
	conn *grpc.ClientConn
	ca   pb.IstioCertificateServiceClient

	mu  sync.Mutex
	b   *identity.Bundle
	err error
}

// New builds the client; it dials lazily, so nothing is sent before Fetch
// or Run.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("istio CA: no address")
	}
	if opts.TokenFile == "" {
		return nil, errors.New("istio CA: no token file")
	}
	if opts.ID.TrustDomain == "" || opts.ID.Namespace == "" || opts.ID.ServiceAccount == "" {
		return nil, fmt.Errorf("istio CA: incomplete identity %q", opts.ID)
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "Kubernetes"
	}
	if opts.TTL == 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var creds credentials.TransportCredentials
	if opts.Plaintext {
		creds = insecure.NewCredentials()
	} else {
		name := opts.ServerName
		if name == "" {
			host, _, err := net.SplitHostPort(opts.Address)
			if err != nil {
				return nil, fmt.Errorf("istio CA address %q: %w", opts.Address, err)
			}
			name = host
		}
		rootFile := opts.RootCertFile
		creds = credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: name,
			// The root may be rotated: read it for every connection.
			InsecureSkipVerify: true, //nolint:gosec // verified below against the mesh root, read afresh
			VerifyConnection: func(cs tls.ConnectionState) error {
				pool, err := readPool(rootFile)
				if err != nil {
					return err
				}
				if len(cs.PeerCertificates) == 0 {
					return errors.New("istio CA presented no certificate")
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: pool, Intermediates: inter})
				return err
			},
		})
	}
	conn, err := grpc.NewClient(opts.Address, grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(tokenCreds{file: opts.TokenFile, secure: !opts.Plaintext}))
	if err != nil {
		return nil, fmt.Errorf("istio CA %s: %w", opts.Address, err)
	}
	return &Client{opts: opts, conn: conn, ca: pb.NewIstioCertificateServiceClient(conn)}, nil
}

// readPool reads a PEM file into a pool (nil file: the system roots).
func readPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return x509.SystemCertPool()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("mesh root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("mesh root %s holds no certificate", file)
	}
	return pool, nil
}

// tokenCreds sends the projected token as "authorization: Bearer ...".
type tokenCreds struct {
	file   string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(t.file)
	if err != nil {
		return nil, fmt.Errorf("istio CA token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("istio CA token file %s is empty", t.file)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Current implements identity.Provider.
func (c *Client) Current() *identity.Bundle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b
}

// Err is the last request's error (nil after a success).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection to the CA.
func (c *Client) Close() error { return c.conn.Close() }

// Fetch asks the CA for a certificate once and puts it in force.
func (c *Client) Fetch(ctx context.Context) error {
	b, err := c.fetch(ctx)
	c.mu.Lock()
	c.err = err
	if err == nil {
		c.b = b
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.Notify()
	c.opts.Logger.Info("certificate issued by the Istio CA", "identity", b.ID.String(),
		"notAfter", b.NotAfter().UTC().Format(time.RFC3339))
	return nil
}

func (c *Client) fetch(ctx context.Context) (*identity.Bundle, error) {
	csrPEM, key, err := identity.NewCSR(c.opts.ID)
	if err != nil {
		return nil, err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "ClusterID", c.opts.ClusterID)
	resp, err := c.ca.CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(csrPEM),
		ValidityDuration: int64(c.opts.TTL / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("istio CA CreateCertificate: %w", err)
	}
	// The chain is leaf first, the root last (istiod appends it).
	if len(resp.CertChain) == 0 {
		return nil, errors.New("istio CA answered an empty certificate chain")
	}
	var chain, roots bytes.Buffer
	for i, p := range resp.CertChain {
		if i > 0 && i == len(resp.CertChain)-1 && selfSigned(p) {
			roots.WriteString(p)
			continue
		}
		chain.WriteString(p)
		if !strings.HasSuffix(p, "\n") {
			chain.WriteByte('\n')
		}
	}
	if c.opts.RootCertFile != "" {
		mesh, err := os.ReadFile(c.opts.RootCertFile)
		if err != nil {
			return nil, fmt.Errorf("mesh root: %w", err)
		}
		roots.WriteByte('\n')
		roots.Write(mesh)
	}
	keyPEM, err := identity.MarshalKey(key)
	if err != nil {
		return nil, err
	}
	b, err := identity.NewBundle(chain.Bytes(), keyPEM, roots.Bytes())
	if err != nil {
		return nil, fmt.Errorf("istio CA certificate: %w", err)
	}
	// istiod issues for the token's identity whatever the CSR asks: a
	// token of another ServiceAccount (a wrong mount) gets a certificate
	// that is not ours, and presenting it would make peers see another
	// workload.
	if b.ID != c.opts.ID {
		return nil, fmt.Errorf("istio CA issued a certificate for %s, not %s: the token is of another ServiceAccount", b.ID, c.opts.ID)
	}
	return b, nil
}

func selfSigned(p string) bool {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	return err == nil && c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// RenewAt is when a bundle is renewed: at half its life.
func RenewAt(b *identity.Bundle) time.Time {
	l := b.Certificate.Leaf
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) / 2)
}

// Run keeps a certificate in force until ctx ends: it fetches one (retrying
// with backoff), then renews it at half its life; a failed renewal is
// retried while the certificate in force is still valid, and after.
func (c *Client) Run(ctx context.Context) {
	wait := c.opts.RetryMin
	for {
		var next time.Time
		if b := c.Current(); b != nil {
			next = RenewAt(b)
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if err := c.Fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.opts.Logger.Warn("istio CA request failed; retrying", "error", err.Error(), "in", wait.String())
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(wait*2, c.opts.RetryMax)
			continue
		}
		wait = c.opts.RetryMin
	}
}
