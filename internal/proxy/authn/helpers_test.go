package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// signer is a private key with the kid and alg its JWK advertises.
type signer struct {
	kid, alg string
	priv     crypto.Signer // nil for HMAC
	secret   []byte
}

func (s signer) public() any {
	if s.secret != nil {
		return s.secret
	}
	return s.priv.Public()
}

// jwk is the key as a JWKS entry (public part only, or the secret for HMAC).
func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.public(), KeyID: s.kid, Algorithm: s.alg, Use: "sig"}
}

var (
	rsaOnce sync.Once
	rsaKeys [2]*rsa.PrivateKey
)

// rsaKey returns one of two RSA keys generated once per test binary.
func rsaKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return rsaKeys[i]
}

func rsaSigner(t *testing.T, i int, kid, alg string) signer {
	return signer{kid: kid, alg: alg, priv: rsaKey(t, i)}
}

func ecSigner(t *testing.T, curve elliptic.Curve, kid, alg string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: alg, priv: k}
}

func edSigner(t *testing.T, kid string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: "EdDSA", priv: k}
}

func jwksOf(t *testing.T, keys ...signer) string {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mint signs claims with k.
func mint(t *testing.T, k signer, claims map[string]any) string {
	t.Helper()
	var key any = k.priv
	if k.secret != nil {
		key = k.secret
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const testIssuer = "https://issuer.example.com"

// claims returns a valid payload for testIssuer, changed by kv pairs (a nil
// value deletes the claim).
func claims(kv ...any) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iss": testIssuer, "sub": "alice", "iat": now, "exp": now + 600}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// jwksServer is a JWKS endpoint on loopback whose document and status can
// change, counting the fetches.
type jwksServer struct {
	*httptest.Server
	body   atomic.Pointer[string]
	status atomic.Int32
	hits   atomic.Int32
	hang   atomic.Bool
}

func newJWKSServer(t *testing.T, doc string) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(doc)
	s.status.Store(http.StatusOK)
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		_, _ = w.Write([]byte(*s.body.Load()))
	}))
	t.Cleanup(func() {
		close(release)
		s.Close()
	})
	return s
}

func (s *jwksServer) set(doc string) { s.body.Store(&doc) }

// newCache returns a JWKS cache closed at the end of the test.
func newCache(t *testing.T, refresh time.Duration) *JWKSCache {
	t.Helper()
	c := NewJWKSCache(nil, refresh)
	t.Cleanup(c.Close)
	return c
}

func rule(mods ...func(*ir.JWTRule)) *ir.JWTRule {
	r := &ir.JWTRule{Policy: ir.NamespacedName{Namespace: "ns", Name: "jwt"}, Issuer: testIssuer}
	for _, m := range mods {
		m(r)
	}
	return r
}

func request(target string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

// status extracts the Status of an Authenticate error (StatusOK for nil).
func status(t *testing.T, err error) Status {
	t.Helper()
	if err == nil {
		return StatusOK
	}
	ae, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v is not an *authn.Error", err)
	}
	return ae.Status
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
