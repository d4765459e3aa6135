package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// CA is a small certificate authority issuing SPIFFE workload
// certificates, as Istio's CA does: the demo's local mesh CA, and the
// signer of the tests' CA server. Its root is self-signed (ECDSA P-256).
type CA struct {
	TrustDomain string
	cert        *x509.Certificate
	key         crypto.Signer
	rootPEM     []byte
}

// NewCA creates a CA with a fresh root valid for validity.
func NewCA(trustDomain string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "mesh root"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{TrustDomain: trustDomain, cert: cert, key: key,
		rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// RootPEM is the CA's root certificate in PEM.
func (ca *CA) RootPEM() []byte { return ca.rootPEM }

// Root is the CA's root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.cert }

// Leaf describes a certificate to issue.
type Leaf struct {
	// URIs and DNSNames are the SANs.
	URIs     []string
	DNSNames []string
	// NotBefore defaults to a minute ago; NotAfter to NotBefore+validity.
	NotBefore, NotAfter time.Time
}

// Sign issues a certificate for pub as described, for TLS server and
// client use, and returns it in DER.
func (ca *CA) Sign(pub crypto.PublicKey, l Leaf) ([]byte, error) {
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Minute)
	}
	if l.NotAfter.IsZero() {
		return nil, errors.New("leaf without NotAfter")
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     l.DNSNames,
	}
	for _, u := range l.URIs {
		id, err := ParseID(u)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, id.URL())
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
}

// Issue creates a key and a certificate for id valid for validity (from a
// little in the past), and returns the chain (leaf, root) and the key in PEM.
func (ca *CA) Issue(id ID, validity time.Duration) (chainPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	nb := backdate(validity)
	der, err := ca.Sign(key.Public(), Leaf{URIs: []string{id.String()}, NotBefore: nb, NotAfter: nb.Add(validity)})
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = MarshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	chainPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.rootPEM...)
	return chainPEM, keyPEM, nil
}

// IssueBundle is Issue as a Bundle trusting this CA.
func (ca *CA) IssueBundle(id ID, validity time.Duration) (*Bundle, error) {
	chain, key, err := ca.Issue(id, validity)
	if err != nil {
		return nil, err
	}
	return NewBundle(chain, key, ca.rootPEM)
}

// SignCSR issues a certificate for a CSR's key, for id (the CSR's own SANs
// are ignored, as Istio's CA ignores them and issues for the caller).
func (ca *CA) SignCSR(csrPEM []byte, id ID, validity time.Duration) ([]byte, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature: %w", err)
	}
	nb := backdate(validity)
	der, err := ca.Sign(csr.PublicKey, Leaf{URIs: []string{id.String()}, NotBefore: nb, NotAfter: nb.Add(validity)})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// MarshalKey encodes a private key as PKCS #8 PEM.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewCSR creates a key and a CSR carrying id as its URI SAN.
func NewCSR(id ID) (csrPEM []byte, key crypto.Signer, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), k, nil
}

// backdate is the NotBefore of a certificate valid for validity: a little
// in the past for clocks that lag, a tenth of the validity at most.
func backdate(validity time.Duration) time.Time {
	return time.Now().Add(-min(time.Minute, validity/10))
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}
