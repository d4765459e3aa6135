package dataplane_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// TestNativeHBONEFromCertDir: a data plane given --cert-dir serves a
// native configuration on the HBONE listener with those files'
// certificate, and exports its refusals by reason.
func TestNativeHBONEFromCertDir(t *testing.T) {
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chain, key, err := ca.Issue(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "wp"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{identity.CertChainFile: chain, identity.KeyFile: key, identity.RootCertFile: ca.RootPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, err := dataplane.Start(dataplane.Options{CertDir: dir, StatusAddress: "127.0.0.1:0", MetricsAddress: "127.0.0.1:0", AdminAddress: "off"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ep := startBackend(t, "127.0.41.1")
	native := strings.Replace(manifests(ep), "protocol: istio.io/PROXY, port: 15088", "protocol: HBONE, port: 15008", 1)
	snap, err := files.LoadBytes("m.yaml", []byte(native))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil || !res.Waypoint.HBONE {
		t.Fatalf("translate: %v (native %v)", err, res != nil && res.Waypoint.HBONE)
	}
	if err := d.Proxy.Update(res.Waypoint); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ServeHBONE(ln); err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()

	// A mesh client gets through, and sees the files' certificate.
	curl, _ := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "curl"}, time.Hour)
	pool := hbone.NewPool(hbone.PoolOptions{Identity: identity.NewStatic(curl), TrustDomains: func() (string, []string) { return "cluster.local", nil }})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pool.Dial(ctx, hbone.Target{Address: addr, Authority: "127.0.40.1:80", Identity: "spiffe://cluster.local/ns/ns/sa/wp"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprint(c, "GET /ok HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("through native HBONE: %d", resp.StatusCode)
	}

	// A TLS 1.2 client is refused, and the refusal is exported.
	tc, err := tls.Dial("tcp", addr, &tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the refusal is the point
	if err == nil {
		_ = tc.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	const name = "kgateway_waypoint_hbone_refused_total"
	waitFor(t, "the refusal in the metrics", func() bool {
		mfs, _ := scrape(t, d)
		return counter(mfs, name, "reason", "tls_version") == 1
	})
	mfs, _ := scrape(t, d)
	if counter(mfs, name, "reason", "no_client_certificate") != 0 {
		t.Errorf("other reasons counted: %v", mfs[name])
	}
}
