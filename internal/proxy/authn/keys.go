package authn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet is a parsed JWKS: the usable public keys, in document order.
type keySet struct {
	keys []jwk
}

// jwk is one verification key.
type jwk struct {
	kid, alg string
	key      any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (oct)
}

// parseJWKS reads a JSON Web Key Set, or the {"kid": "<PEM certificate>"}
// map some issuers publish (Envoy accepts both). Keys that cannot be used
// are skipped; a set without a usable key is an error.
func parseJWKS(data []byte) (*keySet, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks is not a JSON object: %w", err)
	}
	raw, ok := doc["keys"]
	if !ok {
		return parseX509Map(doc)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("[keys] in Jwks is not an array")
	}
	ks := &keySet{}
	var firstErr error
	for _, item := range list {
		k, err := parseJWK(item)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		if firstErr != nil {
			return nil, fmt.Errorf("jwks has no valid public key: %w", firstErr)
		}
		return nil, errors.New("jwks has no valid public key")
	}
	return ks, nil
}

func parseJWK(raw json.RawMessage) (jwk, error) {
	var meta struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Kty string `json:"kty"`
		Crv string `json:"crv"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return jwk{}, err
	}
	var jk jose.JSONWebKey
	if err := jk.UnmarshalJSON(raw); err != nil {
		return jwk{}, err
	}
	k := jwk{kid: meta.Kid, alg: meta.Alg}
	switch key := jk.Key.(type) {
	case *rsa.PublicKey:
		k.key = key
	case *rsa.PrivateKey:
		k.key = &key.PublicKey
	case *ecdsa.PublicKey:
		k.key = key
	case *ecdsa.PrivateKey:
		k.key = &key.PublicKey
	case ed25519.PublicKey:
		k.key = key
	case ed25519.PrivateKey:
		k.key = key.Public()
	case []byte:
		k.key = key
	default:
		return jwk{}, fmt.Errorf("unsupported key type %q", meta.Kty)
	}
	// The alg a key declares must fit its type (jwks.cc: [alg] is not
	// started with [RS] or [PS] for an RSA key, ...).
	if k.alg != "" && !algFitsKey(k.alg, k.key) {
		return jwk{}, fmt.Errorf("alg %q does not fit a %s key", k.alg, meta.Kty)
	}
	return k, nil
}

func parseX509Map(doc map[string]json.RawMessage) (*keySet, error) {
	ks := &keySet{}
	for kid, raw := range doc {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || kid == "" || s == "" {
			return nil, errors.New("jwks does not have [keys] field")
		}
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, fmt.Errorf("jwks: %q is not a PEM certificate", kid)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("jwks: certificate %q: %w", kid, err)
		}
		ks.keys = append(ks.keys, jwk{kid: kid, key: cert.PublicKey})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("jwks does not have [keys] field")
	}
	return ks, nil
}

// algFitsKey reports whether a JWS algorithm can be verified with a key.
func algFitsKey(alg string, key any) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case []byte:
		return strings.HasPrefix(alg, "HS")
	}
	return false
}

// verify checks the token's signature (verifyJwtWithoutTimeChecking): keys
// whose kid or alg differ from the token's are skipped; none left is
// "Jwks doesn't have key to match kid or alg from Jwt"; keys left but no
// signature match is "Jwt verification fails".
func (ks *keySet) verify(j *jwt) Status {
	matched := false
	var sig *jose.JSONWebSignature
	for i := range ks.keys {
		k := &ks.keys[i]
		if j.kid != "" && k.kid != "" && k.kid != j.kid {
			continue
		}
		if k.alg != "" && k.alg != j.alg {
			continue
		}
		matched = true
		if !algFitsKey(j.alg, k.key) {
			continue
		}
		if _, ok := k.key.(ed25519.PublicKey); ok && len(j.sig) != ed25519.SignatureSize {
			return StatusJwtEd25519SignatureWrongLength
		}
		if sig == nil {
			var err error
			sig, err = jose.ParseSignedCompact(j.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(j.alg)})
			if err != nil {
				return StatusJwtVerificationFail
			}
		}
		if _, err := sig.Verify(k.key); err == nil {
			return StatusOK
		}
	}
	if !matched {
		return StatusJwksKidAlgMismatch
	}
	return StatusJwtVerificationFail
}
