package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// TestKubernetesWalkthrough runs the seed walkthrough against the real
// control plane: a real kube-apiserver and etcd, the controller process,
// `kubectl apply -f examples/waypoint/...`, and the proxy process started as
// its Deployment says (connected over xDS with a real ServiceAccount token
// for the projected audience), with traffic opened as ztunnel opens it.
//
// What cannot run here is stood in for, as the demo does: there is no
// kubelet, so go-httpbin runs on a "pod IP" in a network namespace this test
// creates and this test writes the EndpointSlice the endpoint controller
// would; the proxy runs as a process on loopback instead of in its pod.
func TestKubernetesWalkthrough(t *testing.T) {
	assets := kubetest.Skip(t)
	podNet := newPodNetwork(t)
	env := kubetest.Start(t, kubetest.All)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Install the chart as `helm template | kubectl apply` would, and run
	// the controller as its Deployment says, with its ServiceAccount's
	// token: the chart's RBAC must be enough.
	helm := helmBinary(t)
	kubectl("", "create", "namespace", "kgateway-system")
	rendered, err := exec.Command(helm, "template", "kgateway-waypoint", "../../install/helm/kgateway-waypoint",
		"--namespace", "kgateway-system").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	t.Log(kubectl(string(rendered), "apply", "-f", "-"))
	ctlArgs := strings.Fields(kubectl("", "-n", "kgateway-system", "get", "deployment", "kgateway-waypoint",
		"-o", `jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}`))
	saToken := strings.TrimSpace(kubectl("", "-n", "kgateway-system", "create", "token", "kgateway-waypoint"))
	saKubeconfig := filepath.Join(dir, "controller-kubeconfig")
	writeTokenKubeconfig(t, saKubeconfig, env, saToken)

	// RBAC is enforced: the controller may not read Secrets.
	if out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", saKubeconfig,
		"auth", "can-i", "list", "secrets", "--all-namespaces").CombinedOutput(); err == nil || strings.TrimSpace(string(out)) != "no" {
		t.Fatalf("the controller's ServiceAccount can list secrets (%v): %s", err, out)
	}

	xdsAddr := freeAddr(t, "127.0.0.1")
	health := freeAddr(t, "127.0.0.1")
	ctlArgs = overrideEq(t, ctlArgs, map[string]string{"--xds-address": xdsAddr, "--health-address": health, "--metrics-address": "0"})
	ctlArgs = append(ctlArgs, "--kubeconfig", saKubeconfig, "--leader-election-namespace", "kgateway-system")
	if ctlArgs[0] != "controller" || !slices.Contains(ctlArgs, "--leader-elect=true") {
		t.Fatalf("the chart runs %v", ctlArgs)
	}
	ctl := start(t, ctlArgs...)
	waitFor(t, 30*time.Second, "the controller to be ready", func() bool {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})

	// The walkthrough's first step.
	t.Log(kubectl("", "apply", "-f", "../../examples/waypoint/httpbin-mesh.yaml",
		"-f", "../../examples/waypoint/waypoint-gw.yaml", "-f", "../../examples/waypoint/waypoint-http-route.yaml"))

	// Stand-in for the kubelet and the endpoint controller: httpbin on a
	// pod IP in a network namespace of our own (the API server refuses
	// loopback endpoints), and its EndpointSlice.
	ln := podNet.Listen(t, 8080)
	hb := &http.Server{Handler: httpbin.New(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hb.Serve(ln) }()
	t.Cleanup(func() { _ = hb.Close() })
	pod := netip.MustParseAddrPort(ln.Addr().String())
	kubectl(fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-e2e
  namespace: httpbin
  labels: {kubernetes.io/service-name: httpbin}
addressType: IPv4
ports: [{name: http, port: %d, protocol: TCP}]
endpoints: [{addresses: ["%s"], conditions: {ready: true}}]
`, pod.Port(), pod.Addr()), "apply", "-f", "-")

	// The controller deploys the waypoint and publishes its addresses.
	waitFor(t, 30*time.Second, "the Gateway to be programmed with addresses", func() bool {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin", "get", "gateway", "httpbin-waypoint",
			"-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].status} {.status.addresses[0].value}`).Output()
		return err == nil && string(out) == "True httpbin-waypoint.httpbin.svc.cluster.local"
	})
	clusterIP := strings.TrimSpace(kubectl("", "-n", "httpbin", "get", "svc", "httpbin", "-o", "jsonpath={.spec.clusterIP}"))
	args := strings.Fields(kubectl("", "-n", "httpbin", "get", "deployment", "httpbin-waypoint",
		"-o", `jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}`))

	// The proxy, as its pod runs it, with a real token of its
	// ServiceAccount for the projected audience (what the kubelet mounts).
	token := kubectl("", "-n", "httpbin", "create", "token", "httpbin-waypoint", "--audience", "kgateway-waypoint")
	tokenFile := filepath.Join(dir, "xds-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	inbound, status, metrics := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	args = override(t, args, map[string]string{"--xds-address": xdsAddr, "--token-file": tokenFile,
		"--inbound-address": inbound, "--status-address": status, "--metrics-address": metrics})
	if args[0] != "proxy" || !contains(args, "--gateway", "httpbin/httpbin-waypoint") {
		t.Fatalf("the Deployment runs %v", args)
	}
	prx := start(t, args...)
	waitFor(t, 20*time.Second, "the proxy to be ready", func() bool { return ready(status) })

	dst := netip.AddrPortFrom(netip.MustParseAddr(clusterIP), 8000)
	resp, body := curl(t, inbound, dst, "GET", "/get")
	if resp.StatusCode != 200 || resp.Header.Get("traversed-waypoint") != "httpbin-waypoint" || !strings.Contains(body, `"url"`) {
		t.Fatalf("GET /get = %d %v\n%s", resp.StatusCode, resp.Header, body)
	}

	// kubectl apply -f examples/waypoint/httpbin-authz.yaml: GET denied,
	// POST still allowed.
	kubectl("", "apply", "-f", "../../examples/waypoint/httpbin-authz.yaml")
	waitFor(t, 5*time.Second, "GET to be denied", func() bool {
		resp, _ := curl(t, inbound, dst, "GET", "/get")
		return resp.StatusCode == 403
	})
	resp, body = curl(t, inbound, dst, "GET", "/get")
	if resp.StatusCode != 403 || body != "RBAC: access denied" || resp.Header.Get("traversed-waypoint") != "httpbin-waypoint" {
		t.Errorf("GET /get after the policy = %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = curl(t, inbound, dst, "POST", "/post")
	if resp.StatusCode != 200 || resp.Header.Get("traversed-waypoint") != "httpbin-waypoint" {
		t.Errorf("POST /post after the policy = %d %v", resp.StatusCode, resp.Header)
	}
	if m := get(t, "http://"+metrics+"/stats/prometheus"); !strings.Contains(m, "istio_requests_total") {
		t.Errorf("the proxy's /stats/prometheus has no istio_requests_total:\n%.2000s", m)
	}
	if out := kubectl("", "-n", "httpbin", "get", "authorizationpolicy", "httpbin-authz-svc",
		"-o", `jsonpath={.status.conditions[?(@.type=="WaypointAccepted")].status}`); out != "True" {
		t.Errorf("AuthorizationPolicy WaypointAccepted = %q", out)
	}

	// The controller goes away: the proxy keeps serving what it has.
	_ = ctl.cmd.Process.Kill()
	time.Sleep(500 * time.Millisecond)
	resp, _ = curl(t, inbound, dst, "POST", "/post")
	if resp.StatusCode != 200 || !ready(status) {
		t.Errorf("without the controller: POST = %d, ready = %v", resp.StatusCode, ready(status))
	}
	_ = prx
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// curl opens one connection as the curl pod's ztunnel would and sends one
// request.
func curl(t *testing.T, inbound string, dst netip.AddrPort, method, path string) (*http.Response, string) {
	t.Helper()
	c, err := meshclient.Dial(context.Background(), inbound, meshclient.Conn{
		Source:      netip.MustParseAddrPort("127.0.230.20:40000"),
		Destination: dst,
		Identity:    "spiffe://cluster.local/ns/httpbin/sa/curl",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(method, "http://httpbin:8000"+path, bytes.NewReader(nil))
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

// overrideEq replaces flag values in an argument list (--flag=value form).
func overrideEq(t *testing.T, args []string, vals map[string]string) []string {
	t.Helper()
	out := append([]string(nil), args...)
	for flag, v := range vals {
		found := false
		for i := range out {
			if strings.HasPrefix(out[i], flag+"=") {
				out[i], found = flag+"="+v, true
			}
		}
		if !found {
			t.Fatalf("the chart's args have no %s: %v", flag, args)
		}
	}
	return out
}

// helmBinary builds (or finds, cached) the helm command of hack/helm.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM_BIN"); h != "" {
		return h
	}
	out, err := exec.Command("../../hack/helm/build.sh").Output()
	if err != nil {
		t.Fatalf("hack/helm/build.sh: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "helm")
}

// writeTokenKubeconfig writes a kubeconfig for the API server of env that
// authenticates with a bearer token.
func writeTokenKubeconfig(t *testing.T, path string, env *kubetest.Env, token string) {
	t.Helper()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: sa, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: sa}}]
current-context: e2e
`, env.Config.Host, base64.StdEncoding.EncodeToString(env.Config.CAData), token)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// override replaces flag values in an argument list (--flag value form).
func override(t *testing.T, args []string, vals map[string]string) []string {
	t.Helper()
	out := append([]string(nil), args...)
	for flag, v := range vals {
		found := false
		for i := 0; i+1 < len(out); i++ {
			if out[i] == flag {
				out[i+1], found = v, true
			}
		}
		if !found {
			t.Fatalf("the Deployment's args have no %s: %v", flag, args)
		}
	}
	return out
}

func contains(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}
