package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Reasons a peer certificate is refused; Verify wraps one of them.
var (
	ErrNoCertificate = errors.New("peer presented no certificate")
	ErrUntrusted     = errors.New("peer certificate does not chain to the mesh roots")
	ErrExpired       = errors.New("peer certificate is expired or not yet valid")
	ErrTrustDomain   = errors.New("peer identity is outside the trust domain")
	ErrBadIdentity   = errors.New("peer certificate carries no usable SPIFFE identity")
	ErrWrongIdentity = errors.New("peer identity is not the expected one")
)

// Verify checks a peer's certificate chain (leaf first, DER) against
// roots at now, and that its SPIFFE identity is in td or one of aliases.
// It returns the identity; the error wraps one of the Err* reasons.
func Verify(rawCerts [][]byte, roots *x509.CertPool, td string, aliases []string, now time.Time) (ID, error) {
	if len(rawCerts) == 0 {
		return ID{}, ErrNoCertificate
	}
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, der := range rawCerts {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return ID{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return ID{}, fmt.Errorf("%w: valid %s to %s", ErrExpired,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if roots == nil {
		return ID{}, fmt.Errorf("%w: no roots loaded", ErrUntrusted)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return ID{}, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return ID{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	if !InTrustDomain(id, td, aliases) {
		return id, fmt.Errorf("%w: %s is not in %q", ErrTrustDomain, id, td)
	}
	return id, nil
}
