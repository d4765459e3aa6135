// Command hboneclient opens one HBONE tunnel with Istio's own HBONE client
// (istio.io/istio/pkg/hbone), as a ztunnel would towards a waypoint, sends
// one HTTP/1.1 request through it and prints the response as JSON. The
// interop test (test/e2e/hbone_interop_test.go) runs it against our
// waypoint. It is built by hack/istio-interop/build.sh, in its own module,
// so Istio's dependencies stay out of the main module.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"istio.io/istio/pkg/hbone"
	istiolog "istio.io/istio/pkg/log"
)

type result struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body"`
	// PeerURIs are the URI SANs of the waypoint's certificate.
	PeerURIs []string `json:"peerURIs"`
}

func main() {
	var (
		proxy   = flag.String("proxy", "", "the waypoint's HBONE address (host:port)")
		target  = flag.String("target", "", "the destination the tunnel asks for (:authority), e.g. a service VIP:port")
		cert    = flag.String("cert", "", "client certificate chain (PEM)")
		key     = flag.String("key", "", "client key (PEM)")
		root    = flag.String("root", "", "mesh root certificate (PEM)")
		host    = flag.String("host", "", "Host header of the request")
		path    = flag.String("path", "/", "request path")
		method  = flag.String("method", http.MethodGet, "request method")
		headers = flag.String("headers", "", "extra request headers, name:value separated by commas")
		timeout = flag.Duration("timeout", 10*time.Second, "whole exchange timeout")
	)
	flag.Parse()
	// Istio's log goes to stderr: stdout is the result.
	lo := istiolog.DefaultOptions()
	lo.OutputPaths, lo.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if err := istiolog.Configure(lo); err != nil {
		fmt.Fprintln(os.Stderr, "hboneclient:", err)
		os.Exit(1)
	}
	if err := run(*proxy, *target, *cert, *key, *root, *host, *path, *method, *headers, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "hboneclient:", err)
		os.Exit(1)
	}
}

func run(proxy, target, certFile, keyFile, rootFile, host, path, method, headers string, timeout time.Duration) error {
	if proxy == "" || target == "" {
		return errors.New("--proxy and --target are required")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return errors.New("no certificate in --root")
	}
	var peerURIs []string
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS13,
		// As ztunnel: the peer is checked by its chain and SPIFFE identity,
		// not by a host name (the address is an IP).
		InsecureSkipVerify: true, //nolint:gosec // verified below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return err
			}
			for _, u := range cs.PeerCertificates[0].URIs {
				peerURIs = append(peerURIs, u.String())
			}
			return nil
		},
	}
	d := hbone.NewDialer(hbone.Config{ProxyAddress: proxy, TLS: cfg})
	conn, err := d.Dial("tcp", target)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	req, err := http.NewRequest(method, "http://"+target+path, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	for _, h := range strings.Split(headers, ",") {
		if name, value, ok := strings.Cut(h, ":"); ok {
			req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("writing the request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	out := result{Status: resp.StatusCode, Header: map[string]string{}, Body: string(body), PeerURIs: peerURIs}
	for k := range resp.Header {
		out.Header[strings.ToLower(k)] = resp.Header.Get(k)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
