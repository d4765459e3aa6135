package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

const traversedRoute = `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: traversed, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: svc, port: 80}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: Traversed-Waypoint, value: wp}]
`

func policy(name, target, action, rules string) string {
	return `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ` + name + `, namespace: ns}
spec:
  targetRefs: [` + target + `]
  action: ` + action + `
` + rules
}

const svcTarget = `{group: "", kind: Service, name: svc}`

func TestAuthorizationSeed(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	w := startWaypoint(t, svcManifests(b.addr)+traversedRoute+policy("deny-get", svcTarget, "DENY", `
  rules:
  - to:
    - operation:
        methods: ["GET"]
        ports: ["80"]
`))
	resp, body := w.do(vip, curlID, get("/get"))
	if resp.StatusCode != 403 || body != "RBAC: access denied" {
		t.Fatalf("GET: status %d body %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	for name, want := range map[string]string{
		"Traversed-Waypoint": "wp", "Content-Type": "text/plain", "Content-Length": "19", "Server": "envoy",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("403 header %s = %q, want %q", name, got, want)
		}
	}
	resp, _ = w.do(vip, curlID, newReq("POST", "/post", "x"))
	if resp.StatusCode != 200 || resp.Header.Get("Traversed-Waypoint") != "wp" {
		t.Fatalf("POST: status %d", resp.StatusCode)
	}
	if b.Hits() != 1 {
		t.Errorf("backend hits %d, want 1 (the denied GET must not reach it)", b.Hits())
	}
}

func TestAuthorizationFields(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	cases := []struct {
		name     string
		policies string
		identity string
		method   string
		path     string
		want     int
	}{
		{"ALLOW principal matches", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`), curlID, "GET", "/", 200},
		{"ALLOW principal does not match", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`), notCurlID, "GET", "/", 403},
		{"ALLOW principal with spiffe prefix", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["spiffe://cluster.local/ns/httpbin/sa/curl"]}}]}]`), curlID, "GET", "/", 200},
		{"ALLOW principal suffix wildcard", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["*/sa/curl"]}}]}]`), curlID, "GET", "/", 200},
		{"DENY notPrincipals", policy("p", svcTarget, "DENY", `  rules: [{from: [{source: {notPrincipals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`), notCurlID, "GET", "/", 403},
		{"DENY notPrincipals spares the named one", policy("p", svcTarget, "DENY", `  rules: [{from: [{source: {notPrincipals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`), curlID, "GET", "/", 200},
		{"ALLOW namespaces", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {namespaces: ["httpbin"]}}]}]`), curlID, "GET", "/", 200},
		{"ALLOW namespaces other", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {namespaces: ["other"]}}]}]`), curlID, "GET", "/", 403},
		{"ALLOW no identity", policy("p", svcTarget, "ALLOW", `  rules: [{from: [{source: {namespaces: ["httpbin"]}}]}]`), "", "GET", "/", 403},
		{"DENY paths prefix", policy("p", svcTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]`), curlID, "GET", "/admin/x", 403},
		{"DENY paths cannot be dodged with dot segments", policy("p", svcTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]`), curlID, "GET", "/public/../admin/x", 403},
		{"DENY paths other", policy("p", svcTarget, "DENY", `  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]`), curlID, "GET", "/public", 200},
		{"DENY ports other port", policy("p", svcTarget, "DENY", `  rules: [{to: [{operation: {ports: ["8080"]}}]}]`), curlID, "GET", "/", 200},
		{"ALLOW methods", policy("p", svcTarget, "ALLOW", `  rules: [{to: [{operation: {methods: ["POST"]}}]}]`), curlID, "GET", "/", 403},
		{"ALLOW without rules denies all", policy("p", svcTarget, "ALLOW", ""), curlID, "GET", "/", 403},
		{"ALLOW empty rule allows all", policy("p", svcTarget, "ALLOW", `  rules: [{}]`), notCurlID, "GET", "/", 200},
		{"DENY wins over ALLOW", policy("allow", svcTarget, "ALLOW", `  rules: [{}]`) + policy("deny", svcTarget, "DENY", `  rules: [{}]`), curlID, "GET", "/", 403},
		{"one matching ALLOW of two", policy("a1", svcTarget, "ALLOW", `  rules: [{to: [{operation: {methods: ["PUT"]}}]}]`) + policy("a2", svcTarget, "ALLOW", `  rules: [{to: [{operation: {methods: ["GET"]}}]}]`), curlID, "GET", "/", 200},
		{"Gateway target", policy("p", `{group: gateway.networking.k8s.io, kind: Gateway, name: wp}`, "DENY", `  rules: [{}]`), curlID, "GET", "/", 403},
		{"another Service's policy does not apply", policy("p", `{group: "", kind: Service, name: other}`, "DENY", `  rules: [{}]`), curlID, "GET", "/", 200},
		{"AUDIT never denies", policy("p", svcTarget, "AUDIT", `  rules: [{}]`), curlID, "GET", "/", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := startWaypoint(t, svcManifests(b.addr)+tc.policies)
			resp, body := w.do(vip, tc.identity, newReq(tc.method, tc.path, ""))
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.want, body)
			}
		})
	}
}

func TestTCPServiceAndL4Authorization(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	// An echo server that answers after the client half-closes.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				data, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo:"), data...))
			}()
		}
	}()
	ep := ln.Addr().(*net.TCPAddr).AddrPort()
	base := waypointManifests + serviceManifest("db", "127.0.100.3", 5432, "tcp-db", "", ep)
	dbTarget := `{group: "", kind: Service, name: db}`

	t.Run("bytes go both ways with half-close", func(t *testing.T) {
		w := startWaypoint(t, base)
		c := w.dial("127.0.100.3:5432", curlID)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "echo:hello" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("denied by principal: closed", func(t *testing.T) {
		w := startWaypoint(t, base+policy("p", dbTarget, "ALLOW", `  rules: [{from: [{source: {principals: ["cluster.local/ns/httpbin/sa/curl"]}}]}]`))
		c := w.dial("127.0.100.3:5432", notCurlID)
		_, _ = c.Write([]byte("hello"))
		expectClosed(t, c)
		c = w.dial("127.0.100.3:5432", curlID)
		_, _ = c.Write([]byte("hi"))
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, _ := io.ReadAll(c); string(got) != "echo:hi" {
			t.Fatalf("allowed client got %q", got)
		}
	})
	t.Run("an ALLOW rule with HTTP fields never matches TCP", func(t *testing.T) {
		w := startWaypoint(t, base+policy("p", dbTarget, "ALLOW", `  rules: [{to: [{operation: {methods: ["GET"]}}]}]`))
		c := w.dial("127.0.100.3:5432", curlID)
		_, _ = c.Write([]byte("hello"))
		expectClosed(t, c)
	})
}

func TestServiceEntryThroughTheWaypoint(t *testing.T) {
	b := startBackend(t, "se", "127.0.1.1", false)
	w := startWaypoint(t, waypointManifests+`
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-a, namespace: ns}
spec:
  hosts: [se-a.serviceentry.com]
  addresses: [127.0.100.20]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: `+strconv.Itoa(int(b.addr.Port()))+`}]
  resolution: STATIC
  endpoints: [{address: 127.0.1.1}]
`+policy("deny-get", `{group: networking.istio.io, kind: ServiceEntry, name: se-a}`, "DENY", `  rules: [{to: [{operation: {methods: ["GET"]}}]}]`))
	if resp, _ := w.do("127.0.100.20:80", curlID, get("/")); resp.StatusCode != 403 {
		t.Errorf("GET to the ServiceEntry address: %d, want 403 from its policy", resp.StatusCode)
	}
	resp, body := w.do("127.0.100.20:80", curlID, newReq("POST", "/p", "x"))
	if resp.StatusCode != 200 || decodeEcho(t, body).Backend != "se" {
		t.Fatalf("POST to the ServiceEntry: %d %q", resp.StatusCode, body)
	}
	// Reached by hostname (TLV 0xD1) when the dialled address is unknown.
	c, err := meshclient.Dial(context.Background(), w.addr, meshclient.Conn{Source: clientAddr,
		Destination: netip.MustParseAddrPort("240.0.0.1:80"), Identity: curlID, Hostname: "se-a.serviceentry.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if resp, _ := roundTrip(t, c, bufio.NewReader(c), newReq("POST", "/by-host", "x")); resp.StatusCode != 200 {
		t.Fatalf("by hostname: %d", resp.StatusCode)
	}
}

func TestTrustDomainAliasAndDryRun(t *testing.T) {
	b := startBackend(t, "a", "127.0.1.1", false)
	manifests := svcManifests(b.addr) + policy("allow-old-domain", svcTarget, "ALLOW",
		`  rules: [{from: [{source: {principals: ["old.domain/ns/httpbin/sa/curl"]}}]}]`)
	p := proxy.New(proxy.Options{})
	snap, err := files.LoadBytes("m.yaml", []byte(manifests))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		aliases []string
		want    int
	}{{nil, 403}, {[]string{"old.domain"}, 200}} {
		res, err := translate.Translate(snap, translate.Options{TrustDomainAliases: tc.aliases})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Update(res.Waypoint); err != nil {
			t.Fatal(err)
		}
		w := &waypoint{t: t, proxy: p}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		w.addr = ln.Addr().String()
		srv := inbound.NewServer(p, inbound.Options{})
		go func() { _ = srv.Serve(ln) }()
		resp, _ := w.do(vip, curlID, get("/"))
		_ = ln.Close()
		_ = srv.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("aliases %v: %d, want %d", tc.aliases, resp.StatusCode, tc.want)
		}
	}

	dry := strings.Replace(svcManifests(b.addr)+policy("deny-all", svcTarget, "DENY", `  rules: [{}]`),
		"metadata: {name: deny-all, namespace: ns}", "metadata: {name: deny-all, namespace: ns, annotations: {istio.io/dry-run: \"true\"}}", 1)
	w := startWaypoint(t, dry)
	if resp, _ := w.do(vip, curlID, get("/")); resp.StatusCode != 200 {
		t.Errorf("a dry-run DENY must not deny: %d", resp.StatusCode)
	}
}
