package istioca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity/istioca"
)

// caServer implements the real IstioCertificateService proto over TLS, as
// istiod does: it authenticates the bearer token (a fixed token per
// identity here, where istiod would run a TokenReview), ignores the CSR's
// SANs and issues for the token's identity, answering [leaf, root].
type caServer struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca      *identity.CA
	tokens  map[string]identity.ID
	maxTTL  time.Duration
	calls   atomic.Int32
	cluster atomic.Value // last ClusterID metadata seen
}

func (s *caServer) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("clusterid"); len(v) == 1 {
		s.cluster.Store(v[0])
	}
	auth := md.Get("authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		return nil, status.Error(codes.Unauthenticated, "no bearer token")
	}
	id, ok := s.tokens[strings.TrimPrefix(auth[0], "Bearer ")]
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "token not valid")
	}
	ttl := min(time.Duration(req.ValidityDuration)*time.Second, s.maxTTL)
	leaf, err := s.ca.SignCSR([]byte(req.Csr), id, ttl)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.IstioCertificateResponse{CertChain: []string{string(leaf), string(s.ca.RootPEM())}}, nil
}

type fixture struct {
	srv       *caServer
	addr      string
	rootFile  string
	tokenFile string
	wp        identity.ID
}

func startCA(t *testing.T, maxTTL time.Duration) *fixture {
	t.Helper()
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// istiod's serving certificate, for its Service name.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := ca.Sign(key.Public(), identity.Leaf{DNSNames: []string{"istiod.istio-system.svc"}, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	serving := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	wp := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin-waypoint"}
	srv := &caServer{ca: ca, tokens: map[string]identity.ID{"good-token": wp}, maxTTL: maxTTL}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serving}, MinVersion: tls.VersionTLS12})))
	pb.RegisterIstioCertificateServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	dir := t.TempDir()
	f := &fixture{srv: srv, addr: ln.Addr().String(), rootFile: filepath.Join(dir, "root-cert.pem"),
		tokenFile: filepath.Join(dir, "istio-token"), wp: wp}
	if err := os.WriteFile(f.rootFile, ca.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.tokenFile, []byte("good-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) client(t *testing.T, ttl time.Duration) *istioca.Client {
	t.Helper()
	c, err := istioca.New(istioca.Options{Address: f.addr, ServerName: "istiod.istio-system.svc", RootCertFile: f.rootFile,
		TokenFile: f.tokenFile, ID: f.wp, TTL: ttl, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFetchFromTheCA(t *testing.T) {
	f := startCA(t, time.Hour)
	c := f.client(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	b := c.Current()
	if b.ID != f.wp {
		t.Fatalf("identity %s, want %s", b.ID, f.wp)
	}
	if got := f.srv.cluster.Load(); got != "Kubernetes" {
		t.Errorf("ClusterID metadata %v", got)
	}
	// The chain verifies against the roots the bundle trusts, which are
	// the CA's: a peer with a certificate of this CA is accepted.
	peer, _ := f.srv.ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "a", ServiceAccount: "b"}, time.Hour)
	if _, err := identity.Verify(peer.Certificate.Certificate, b.Roots, "cluster.local", nil, time.Now()); err != nil {
		t.Fatalf("peer of the same CA refused: %v", err)
	}
	if _, err := identity.Verify(b.Certificate.Certificate, peer.Roots, "cluster.local", nil, time.Now()); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}
	// The presented chain holds the leaf, not the root.
	if n := len(b.Certificate.Certificate); n != 1 {
		t.Errorf("presented chain has %d certificates", n)
	}
}

func TestWrongTokenRefused(t *testing.T) {
	f := startCA(t, time.Hour)
	if err := os.WriteFile(f.tokenFile, []byte("stolen"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Fetch(ctx)
	if status.Code(errorsCause(err)) != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
	if c.Current() != nil {
		t.Fatal("a refused request left a certificate")
	}
	// The token is read for every request: once it is right, Run gets a
	// certificate without a restart.
	if err := os.WriteFile(f.tokenFile, []byte("good-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := c.Changed()
	go c.Run(ctx)
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no certificate after the token was fixed")
	}
}

// TestOtherServiceAccountRefused: the CA issues for the token's identity,
// not the CSR's; a token of another ServiceAccount gets a certificate for
// that one, which the client must not put in force.
func TestOtherServiceAccountRefused(t *testing.T) {
	f := startCA(t, time.Hour)
	f.srv.tokens["other-token"] = identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "other"}
	if err := os.WriteFile(f.tokenFile, []byte("other-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Fetch(ctx)
	if err == nil || !strings.Contains(err.Error(), "spiffe://cluster.local/ns/httpbin/sa/other, not spiffe://cluster.local/ns/httpbin/sa/httpbin-waypoint") {
		t.Fatalf("got %v, want the other identity refused", err)
	}
	if f.srv.calls.Load() != 1 {
		t.Fatalf("%d calls to the CA, want 1", f.srv.calls.Load())
	}
	if c.Current() != nil || c.Err() == nil {
		t.Fatal("a certificate for another identity was put in force")
	}
}

func errorsCause(err error) error {
	for err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return nil
}

func TestUntrustedCARefused(t *testing.T) {
	f := startCA(t, time.Hour)
	other, _ := identity.NewCA("cluster.local", time.Hour)
	if err := os.WriteFile(f.rootFile, other.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Fetch(ctx); err == nil {
		t.Fatal("a CA whose serving certificate is not of the mesh root was trusted")
	}
	if f.srv.calls.Load() != 0 {
		t.Fatal("the token was sent to an untrusted CA")
	}
}

// TestRotationAtHalfLife: with certificates of 2s, Run renews each at 1s,
// so two changes follow the first certificate, each a new key and serial.
func TestRotationAtHalfLife(t *testing.T) {
	f := startCA(t, 2*time.Second)
	c := f.client(t, time.Hour) // asks for an hour; the CA grants 2s
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changed := c.Changed()
	go c.Run(ctx)
	var seen []string
	var keys []any
	for len(seen) < 3 {
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("only %d certificates issued", len(seen))
		}
		changed = c.Changed()
		b := c.Current()
		seen = append(seen, b.Certificate.Leaf.SerialNumber.String())
		keys = append(keys, b.Certificate.Leaf.PublicKey)
		if r := istioca.RenewAt(b); !r.Before(b.NotAfter()) || !r.After(b.Certificate.Leaf.NotBefore) {
			t.Fatalf("renewal at %v is not within the validity", r)
		}
	}
	if seen[0] == seen[1] || seen[1] == seen[2] {
		t.Fatalf("renewals kept the certificate: %v", seen)
	}
	// Every renewal is a new CSR with a new key.
	if keys[0].(*ecdsa.PublicKey).Equal(keys[1]) || keys[1].(*ecdsa.PublicKey).Equal(keys[2]) {
		t.Fatal("a renewal reused the key")
	}
}
