package identity

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Bundle is one generation of what a Provider hands out: the waypoint's
// certificate with its key, and the roots peers must chain to.
type Bundle struct {
	// Certificate is the leaf, its intermediates and the private key, as
	// presented in TLS handshakes. Leaf is parsed.
	Certificate *tls.Certificate
	// ID is the identity the leaf proves.
	ID ID
	// Roots are the trust anchors for peers' certificates; RootsPEM the
	// same in PEM.
	Roots    *x509.CertPool
	RootsPEM []byte
}

// NotAfter is when the bundle's certificate expires.
func (b *Bundle) NotAfter() time.Time { return b.Certificate.Leaf.NotAfter }

// Provider hands out the current Bundle and tells when it changes. A
// rotation changes what new handshakes present and verify against; the
// connections already open keep theirs, so nothing is dropped.
type Provider interface {
	// Current is the bundle in force; nil before the first one is loaded.
	Current() *Bundle
	// Changed returns a channel that is closed when the bundle in force
	// is replaced; call it again for the next change.
	Changed() <-chan struct{}
}

// Notifier is the change signal shared by providers: Changed hands out the
// current generation's channel, Notify closes it and starts the next.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed implements Provider.Changed.
func (n *Notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Notify wakes everyone waiting on Changed.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
	}
	n.ch = make(chan struct{})
}

// NewBundle builds a bundle from PEM: the certificate chain (leaf first),
// the private key, and the roots. It checks that the key matches the leaf,
// that the leaf carries one SPIFFE identity, and that it chains to the
// roots now.
func NewBundle(chainPEM, keyPEM, rootsPEM []byte) (*Bundle, error) {
	cert, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
	}
	id, err := FromCertificate(cert.Leaf)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	n := 0
	for rest := rootsPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("root certificate: %w", err)
		}
		roots.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no root certificate in the roots PEM")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate does not chain to the roots: %w", err)
	}
	return &Bundle{Certificate: &cert, ID: id, Roots: roots, RootsPEM: rootsPEM}, nil
}

// Static is a Provider whose bundle changes only when Set is called (for
// tests and the demo's local CA).
type Static struct {
	Notifier
	mu sync.Mutex
	b  *Bundle
}

// NewStatic returns a provider holding b.
func NewStatic(b *Bundle) *Static { return &Static{b: b} }

// Current implements Provider.
func (s *Static) Current() *Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// Set replaces the bundle and notifies.
func (s *Static) Set(b *Bundle) {
	s.mu.Lock()
	s.b = b
	s.mu.Unlock()
	s.Notify()
}
