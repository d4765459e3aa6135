package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// The binary in standalone mode with a waypoint for workload traffic
// (istio.io/waypoint-for: workload): a connection addressed to the pod's
// IP:port (as ztunnel hands a pod-addressed connection to a workload
// waypoint) is served and reaches that pod; the Gateway-targeted DENY
// policy refuses one path; /config_dump lists the workloads served.
func TestStandaloneWorkloadWaypoint(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.203.1")
	dir := t.TempDir()
	manifests := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {istio.io/use-waypoint: pod-waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: pod-waypoint, namespace: apps, labels: {istio.io/waypoint-for: workload}}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
---
apiVersion: v1
kind: Pod
metadata: {name: app-1, namespace: apps}
spec: {serviceAccountName: app, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: %q}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: apps}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: pod-waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`, pod.Addr().String())
	if err := os.WriteFile(filepath.Join(dir, "apps.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status, admin := freeAddr(t, "127.0.204.1"), freeAddr(t, "127.0.204.1"), freeAddr(t, "127.0.0.1")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status, "--admin-address", admin,
		"--metrics-address", "127.0.0.1:0")
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	send := func(dst netip.AddrPort, path string) (int, string) {
		c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
			Source: netip.MustParseAddrPort("127.0.210.9:40001"), Destination: dst,
			Identity: "spiffe://cluster.local/ns/apps/sa/client"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "http://app"+path, nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return 0, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	if code, body := send(pod, "/get"); code != 200 || body != "GET /get from pod" {
		t.Fatalf("to the pod: %d %q", code, body)
	}
	if code, body := send(pod, "/admin"); code != 403 || body != "RBAC: access denied" {
		t.Fatalf("denied path: %d %q", code, body)
	}
	// Another IP is no workload of this waypoint: closed, no answer.
	if code, _ := send(netip.MustParseAddrPort("127.0.203.2:80"), "/get"); code != 0 {
		t.Fatalf("an unknown pod IP was answered with %d", code)
	}

	resp, err := http.Get("http://" + admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var dump struct {
		Workloads []struct {
			Kind, Namespace, Name, Identity string
			Addresses                       []string
		} `json:"workloads"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		t.Fatal(err)
	}
	if len(dump.Workloads) != 1 || dump.Workloads[0].Name != "app-1" || dump.Workloads[0].Addresses[0] != pod.Addr().String() ||
		dump.Workloads[0].Identity != "spiffe://cluster.local/ns/apps/sa/app" {
		t.Fatalf("config_dump workloads %+v", dump.Workloads)
	}
}
