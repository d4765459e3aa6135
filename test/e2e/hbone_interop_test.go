package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
)

// The native HBONE waypoint against peers we did not write: Istio's own Go
// HBONE client (istio.io/istio/pkg/hbone's dialer, in hboneclient) plays
// the curl pod's ztunnel, and Istio's echo server with its --hbone port
// plays the httpbin pod's ztunnel in front of the app. Both are built from
// the istio.io/istio module by hack/istio-interop/build.sh (hack/test.sh
// exports ISTIO_INTEROP_BIN). Certificates come from a local mesh CA, as
// istiod's would.

// interopBin is the folder of the Istio programs, or the test is skipped.
func interopBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ISTIO_INTEROP_BIN")
	if dir == "" {
		t.Skip("ISTIO_INTEROP_BIN is unset: this test runs Istio's echo server and HBONE client; " +
			`build them with ISTIO_INTEROP_BIN="$(hack/istio-interop/build.sh)" (hack/test.sh does)`)
	}
	return dir
}

// issueTo writes id's certificate chain and key into dir under the names
// given, and the root as root-cert.pem.
func issueTo(t *testing.T, ca *identity.CA, id identity.ID, dir, chainName, keyName string) {
	t.Helper()
	chain, key, err := ca.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{chainName: chain, keyName: key, "root-cert.pem": ca.RootPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

type hboneResult struct {
	Status   int               `json:"status"`
	Header   map[string]string `json:"header"`
	Body     string            `json:"body"`
	PeerURIs []string          `json:"peerURIs"`
}

func TestHBONEInteropWithIstio(t *testing.T) {
	bin := interopBin(t)
	const (
		podIP = "127.0.240.2"  // the httpbin pod (Istio's echo server)
		vip   = "127.0.240.10" // the httpbin Service
	)
	dir := t.TempDir()
	ca, err := identity.NewCA("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waypointID := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin-waypoint"}
	httpbinID := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "httpbin"}
	curlID := identity.ID{TrustDomain: "cluster.local", Namespace: "httpbin", ServiceAccount: "curl"}
	otherID := identity.ID{TrustDomain: "cluster.local", Namespace: "elsewhere", ServiceAccount: "intruder"}
	issueTo(t, ca, waypointID, filepath.Join(dir, "waypoint"), "cert-chain.pem", "key.pem")
	issueTo(t, ca, httpbinID, filepath.Join(dir, "httpbin"), "cert.pem", "key.pem")
	issueTo(t, ca, curlID, filepath.Join(dir, "curl"), "cert.pem", "key.pem")
	issueTo(t, ca, otherID, filepath.Join(dir, "other"), "cert.pem", "key.pem")

	// Istio's echo server: the app on appPort, and its HBONE server (TLS,
	// ALPN h2) on hbonePort, which dials the CONNECT's :authority as the
	// destination ztunnel does. Its other listeners get free ports too.
	port := func() int {
		_, p, _ := net.SplitHostPort(freeAddr(t, "0.0.0.0"))
		n, _ := strconv.Atoi(p)
		return n
	}
	appPort, hbonePort, grpcPort, tcpPort := port(), port(), port(), port()
	echo := exec.Command(filepath.Join(bin, "echo"),
		"--port", strconv.Itoa(appPort), "--grpc", strconv.Itoa(grpcPort), "--tcp", strconv.Itoa(tcpPort),
		"--hbone", strconv.Itoa(hbonePort), "--tls", strconv.Itoa(hbonePort),
		"--crt", filepath.Join(dir, "httpbin", "cert.pem"), "--key", filepath.Join(dir, "httpbin", "key.pem"),
		"--version", "v-interop")
	echoOut := &proc{cmd: echo, done: make(chan error, 1)}
	echo.Stdout, echo.Stderr = echoOut, echoOut
	if err := echo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = echo.Process.Kill()
		_ = echo.Wait()
		if t.Failed() {
			t.Logf("echo server output:\n%s", echoOut.output())
		}
	})
	waitFor(t, 20*time.Second, "Istio's echo server to listen", func() bool {
		c, err := net.Dial("tcp", net.JoinHostPort(podIP, strconv.Itoa(hbonePort)))
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})

	manifests := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(manifests, []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: httpbin
  labels: {istio.io/use-waypoint: httpbin-waypoint, istio.io/dataplane-mode: ambient}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httpbin-waypoint, namespace: httpbin}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: HBONE, port: 15008}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: httpbin}
spec:
  clusterIP: %[1]s
  ports: [{name: http, port: 8000, targetPort: %[2]d}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-1, namespace: httpbin}
spec:
  serviceAccountName: httpbin
  containers: [{name: echo, image: istio/app}]
status: {podIP: %[3]s}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-1
  namespace: httpbin
  labels: {kubernetes.io/service-name: httpbin}
addressType: IPv4
ports: [{name: http, port: %[2]d}]
endpoints: [{addresses: ["%[3]s"], targetRef: {kind: Pod, name: httpbin-1, namespace: httpbin}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: traversed, namespace: httpbin}
spec:
  parentRefs: [{group: "", kind: Service, name: httpbin}]
  rules:
  - backendRefs: [{name: httpbin, port: 8000}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: Traversed-Waypoint, value: httpbin-waypoint}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-httpbin-namespace, namespace: httpbin}
spec:
  targetRefs: [{group: "", kind: Service, name: httpbin}]
  action: ALLOW
  rules: [{from: [{source: {namespaces: ["httpbin"]}}]}]
`, vip, appPort, podIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.240.1"), freeAddr(t, "127.0.240.1")
	wp := start(t, "standalone", "--inbound-address", inbound, "--status-address", status,
		"--cert-dir", filepath.Join(dir, "waypoint"), "--upstream-hbone-port", strconv.Itoa(hbonePort), "-f", manifests)
	waitFor(t, 20*time.Second, "the waypoint to be ready", func() bool { return ready(status) })

	call := func(who, path string) hboneResult {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "hboneclient"), "--proxy", inbound,
			"--target", net.JoinHostPort(vip, "8000"), "--host", "httpbin.httpbin.svc.cluster.local:8000", "--path", path,
			"--cert", filepath.Join(dir, who, "cert.pem"), "--key", filepath.Join(dir, who, "key.pem"),
			"--root", filepath.Join(dir, who, "root-cert.pem")).Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("hboneclient as %s: %v\n%s\nwaypoint output:\n%s", who, err, stderr, wp.output())
		}
		var r hboneResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("hboneclient output %q: %v", out, err)
		}
		return r
	}

	// Istio's client in, our waypoint, HBONE out to Istio's echo server.
	r := call("curl", "/interop")
	if r.Status != 200 {
		t.Fatalf("status %d, want 200; body:\n%s", r.Status, r.Body)
	}
	if got := r.Header["traversed-waypoint"]; got != "httpbin-waypoint" {
		t.Errorf("traversed-waypoint = %q, want httpbin-waypoint (the route's filter)", got)
	}
	if len(r.PeerURIs) != 1 || r.PeerURIs[0] != waypointID.String() {
		t.Errorf("the waypoint presented %v, want [%s]", r.PeerURIs, waypointID)
	}
	// The echo server answers with what it received: the request reached
	// the app through its HBONE server, with the path and the version of
	// this echo instance.
	for _, want := range []string{"ServiceVersion=v-interop", "URL=/interop", "Method=GET"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("echo reply lacks %q:\n%s", want, r.Body)
		}
	}
	// Istio's echo logs each CONNECT it served, with its :authority: the
	// waypoint tunnelled to the pod's IP and target port, not the VIP.
	wantAuthority := net.JoinHostPort(podIP, strconv.Itoa(appPort))
	connectTo := func(authority string) bool {
		for _, line := range strings.Split(echoOut.output(), "\n") {
			if strings.Contains(line, "Received CONNECT") && strings.Contains(line, "host="+authority) {
				return true
			}
		}
		return false
	}
	waitFor(t, 5*time.Second, "the echo server to log the CONNECT to "+wantAuthority, func() bool {
		return connectTo(wantAuthority)
	})
	if connectTo(net.JoinHostPort(vip, "8000")) {
		t.Errorf("the echo server saw a CONNECT to the service VIP; want only pod IP:targetPort:\n%s", echoOut.output())
	}

	// The peer certificate Istio's client presented is the source
	// principal: a client of another namespace is denied by the ALLOW policy.
	if r := call("other", "/interop"); r.Status != 403 || !strings.Contains(r.Body, "RBAC: access denied") {
		t.Errorf("as %s: status %d body %q, want 403 RBAC: access denied", otherID, r.Status, r.Body)
	}
}
