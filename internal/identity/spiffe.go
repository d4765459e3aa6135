// Package identity is the waypoint's workload identity for native HBONE:
// SPIFFE identities (spiffe://<trust domain>/ns/<namespace>/sa/<service
// account>), the certificate that proves one, and the roots that peers'
// certificates must chain to. A Provider hands out the current certificate
// and roots and says when they change; Files reads them from a directory
// (cert-chain.pem, key.pem, root-cert.pem), and package istioca asks the
// Istio CA for them.
//
// This package imports no Kubernetes or Istio API, so the data plane may
// use it; the Istio CA client, which needs istio.io/api's types, lives in
// the subpackage and is wired in by the command.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ID is a SPIFFE identity of a Kubernetes workload.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String is the identity's URI: spiffe://td/ns/NS/sa/SA.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the identity as the URI SAN of a certificate or CSR.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// ParseID parses spiffe://td/ns/NS/sa/SA. Anything else (another scheme,
// another path shape, empty parts, a query or fragment) is an error.
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, fmt.Errorf("identity %q is not a spiffe:// URI", s)
	}
	td, path, ok := strings.Cut(rest, "/")
	parts := strings.Split(path, "/")
	if !ok || td == "" || len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" ||
		strings.ContainsAny(rest, "?#") {
		return ID{}, fmt.Errorf("identity %q is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>", s)
	}
	return ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}, nil
}

// errNoSPIFFE is returned for a certificate without a spiffe:// URI SAN.
var errNoSPIFFE = errors.New("certificate has no spiffe:// URI SAN")

// FromCertificate returns the SPIFFE identity a certificate proves: its
// one spiffe:// URI SAN, which must be a Kubernetes workload identity.
// Several spiffe:// SANs are refused, since which one speaks is unclear.
func FromCertificate(c *x509.Certificate) (ID, error) {
	var found *url.URL
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if found != nil {
			return ID{}, errors.New("certificate has more than one spiffe:// URI SAN")
		}
		found = u
	}
	if found == nil {
		return ID{}, errNoSPIFFE
	}
	return ParseID(found.String())
}

// InTrustDomain reports whether id's trust domain is td or one of aliases.
func InTrustDomain(id ID, td string, aliases []string) bool {
	if id.TrustDomain == td {
		return true
	}
	for _, a := range aliases {
		if id.TrustDomain == a {
			return true
		}
	}
	return false
}
