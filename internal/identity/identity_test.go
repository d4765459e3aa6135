package identity_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
)

func TestParseID(t *testing.T) {
	id, err := identity.ParseID("spiffe://cluster.local/ns/httpbin/sa/curl")
	if err != nil {
		t.Fatal(err)
	}
	if id != (identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "curl"}) {
		t.Fatalf("parsed %+v", id)
	}
	if id.String() != "spiffe://cluster.local/ns/httpbin/sa/curl" || id.URL().String() != id.String() {
		t.Fatalf("round trip: %s / %s", id, id.URL())
	}
	for _, bad := range []string{"", "cluster.local/ns/a/sa/b", "https://cluster.local/ns/a/sa/b", "spiffe:///ns/a/sa/b",
		"spiffe://td/ns/a", "spiffe://td/ns//sa/b", "spiffe://td/ns/a/sa/", "spiffe://td/sa/a/ns/b", "spiffe://td/ns/a/sa/b/c",
		"spiffe://td/ns/a/sa/b?x=1"} {
		if _, err := identity.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func newCA(t *testing.T, td string) *identity.CA {
	t.Helper()
	ca, err := identity.NewCA(td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestVerifyRefusals(t *testing.T) {
	ca := newCA(t, "cluster.local")
	other := newCA(t, "cluster.local")
	curl := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "curl"}
	good, err := ca.IssueBundle(curl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := good.Roots
	now := time.Now()
	if id, err := identity.Verify(good.Certificate.Certificate, roots, "cluster.local", nil, now); err != nil || id != curl {
		t.Fatalf("good certificate: %v, %v", id, err)
	}
	foreign, _ := other.IssueBundle(curl, time.Hour)
	alien := identity.ID{TrustDomain: "evil.example", Namespace: "httpbin", ServiceAccount: "curl"}
	wrongTD, _ := ca.IssueBundle(alien, time.Hour)
	cases := []struct {
		name  string
		certs [][]byte
		now   time.Time
		want  error
	}{
		{"none", nil, now, identity.ErrNoCertificate},
		{"wrong CA", foreign.Certificate.Certificate, now, identity.ErrUntrusted},
		{"expired", good.Certificate.Certificate, now.Add(2 * time.Hour), identity.ErrExpired},
		{"not yet valid", good.Certificate.Certificate, now.Add(-time.Hour), identity.ErrExpired},
		{"wrong trust domain", wrongTD.Certificate.Certificate, now, identity.ErrTrustDomain},
		{"garbage", [][]byte{[]byte("not DER")}, now, identity.ErrUntrusted},
	}
	for _, c := range cases {
		_, err := identity.Verify(c.certs, roots, "cluster.local", nil, c.now)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// An alias admits the other trust domain.
	if _, err := identity.Verify(wrongTD.Certificate.Certificate, roots, "cluster.local", []string{"evil.example"}, now); err != nil {
		t.Errorf("alias: %v", err)
	}
}

func writeBundle(t *testing.T, dir string, ca *identity.CA, id identity.ID) {
	t.Helper()
	chain, key, err := ca.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{identity.CertChainFile: chain, identity.KeyFile: key, identity.RootCertFile: ca.RootPEM()} {
		// Write and rename, as a Secret volume swaps its files whole.
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFilesReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "cluster.local")
	wp := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "waypoint"}
	if _, err := identity.NewFiles(dir, nil); err == nil {
		t.Fatal("an empty directory loaded")
	}
	writeBundle(t, dir, ca, wp)
	f, err := identity.NewFiles(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := f.Current()
	if first.ID != wp {
		t.Fatalf("identity %s", first.ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)

	// A key that does not match the certificate: refused, the bundle in
	// force stays.
	changed := f.Changed()
	_, badKey, _ := ca.Issue(wp, time.Hour)
	if err := os.WriteFile(filepath.Join(dir, identity.KeyFile), badKey, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.Err() == nil {
		t.Fatal("mismatched key not reported")
	}
	if f.Current() != first {
		t.Fatal("a bad set replaced the bundle in force")
	}
	select {
	case <-changed:
		t.Fatal("a bad set notified a change")
	default:
	}

	// A good new set: loaded and notified.
	writeBundle(t, dir, ca, wp)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change notified after the files changed")
	}
	if f.Current() == first || f.Current().Certificate.Leaf.SerialNumber.Cmp(first.Certificate.Leaf.SerialNumber) == 0 {
		t.Fatal("the new certificate is not in force")
	}
	if f.Err() != nil {
		t.Fatalf("error after a good reload: %v", f.Err())
	}
}
