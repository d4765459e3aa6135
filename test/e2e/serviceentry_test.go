package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// The real binary serves a ServiceEntry istiod auto-allocated an address
// for (status.addresses) whose host it resolves with the DNS server
// --dns-server names (a real one, on a free loopback port), follows the
// answer when it changes, and counts the resolutions in its metrics.
func TestStandaloneServiceEntryDNS(t *testing.T) {
	one := startHTTPBackend(t, "127.0.203.1")
	ln, err := net.Listen("tcp", "127.0.203.2:"+strconv.Itoa(int(one.Port())))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "second")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	two := ln.Addr().(*net.TCPAddr).AddrPort()

	var answer atomic.Value
	answer.Store(one.Addr().String())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == "api.e2e.test." && q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "api.e2e.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
				A: net.ParseIP(answer.Load().(string))}}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	ds.NotifyStartedFunc = func() { close(started) }
	go func() { _ = ds.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = ds.Shutdown() })

	dir := t.TempDir()
	manifests := `apiVersion: v1
kind: Namespace
metadata: {name: ext, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: ext}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: ext}
spec:
  hosts: [api.e2e.test]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: ` + strconv.Itoa(int(one.Port())) + `}]
  resolution: DNS
status:
  addresses: [{host: api.e2e.test, value: 127.0.203.50}]
`
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status, metrics := freeAddr(t, "127.0.203.9"), freeAddr(t, "127.0.203.9"), freeAddr(t, "127.0.203.9")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status,
		"--metrics-address", metrics, "--admin-address", "off", "--dns-server", pc.LocalAddr().String())
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	get := func() (int, string) {
		c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
			Source: netip.MustParseAddrPort("127.0.210.9:40000"), Destination: netip.MustParseAddrPort("127.0.203.50:80"),
			Identity: "spiffe://cluster.local/ns/ext/sa/client"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "http://api.e2e.test/x", nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	if code, body := get(); code != 200 || body != "GET /x from pod" {
		t.Fatalf("through the auto-allocated address: %d %q", code, body)
	}
	answer.Store(two.Addr().String())
	waitFor(t, 20*time.Second, "the new DNS answer in use", func() bool {
		code, body := get()
		return code == 200 && body == "second"
	})
	if n := findSeries(scrapeMetrics(t, metrics), "kgateway_waypoint_dns_resolutions_total", map[string]string{"result": "resolved"}); n < 2 {
		t.Errorf("kgateway_waypoint_dns_resolutions_total{result=resolved} = %v, want at least 2", n)
	}

	out, err := runBinary("standalone", "-f", dir, "--dns-server", "dns.example.com", "--status-address", "127.0.0.1:0",
		"--inbound-address", "127.0.0.1:0", "--metrics-address", "off", "--admin-address", "off")
	if err == nil || !strings.Contains(out, "--dns-server") {
		t.Errorf("a --dns-server that is no IP must fail naming the flag; got %v:\n%s", err, out)
	}
}
