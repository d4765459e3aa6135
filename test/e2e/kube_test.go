package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
		"--namespace", "kgateway-system", "--set", "proxy.limits.max-header-bytes=8192").CombinedOutput()
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

	// The controller deploys the waypoint; its addresses wait for a ready
	// replica.
	waitFor(t, 30*time.Second, "the waypoint Deployment", func() bool {
		return exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin", "get", "deployment", "httpbin-waypoint").Run() == nil
	})
	clusterIP := strings.TrimSpace(kubectl("", "-n", "httpbin", "get", "svc", "httpbin", "-o", "jsonpath={.spec.clusterIP}"))
	args := strings.Fields(kubectl("", "-n", "httpbin", "get", "deployment", "httpbin-waypoint",
		"-o", `jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}`))
	command := kubectl("", "-n", "httpbin", "get", "deployment", "httpbin-waypoint", "-o", `jsonpath={.spec.template.spec.containers[0].command}`)
	if out := kubectl("", "-n", "httpbin", "get", "gateway", "httpbin-waypoint", "-o", `jsonpath={.status.addresses}`); out != "" {
		t.Errorf("the Gateway has addresses before any waypoint replica is ready: %s", out)
	}

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
	if command != `["/kgateway-waypoint-proxy"]` || !contains(args, "--gateway", "httpbin/httpbin-waypoint") || !slices.Contains(args, "--max-header-bytes=8192") {
		t.Fatalf("the Deployment runs %s %v (want the data-plane binary, the chart's proxy.limits among its flags)", command, args)
	}
	// Tests never bind the fixed admin port.
	args = append(args, "--admin-address", freeAddr(t, "127.0.0.1"))
	prx := startBinary(t, proxyBinary, args...)
	waitFor(t, 20*time.Second, "the proxy to be ready", func() bool { return ready(status) })

	// Stand-in for the kubelet and kube-controller-manager (envtest runs
	// neither): the proxy answers its readiness probe, so the Deployment's
	// status says one replica is ready.
	kubectl("", "-n", "httpbin", "patch", "deployment", "httpbin-waypoint", "--subresource=status", "--type=merge",
		"-p", `{"status":{"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}`)
	waitFor(t, 30*time.Second, "the Gateway to be programmed with addresses", func() bool {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin", "get", "gateway", "httpbin-waypoint",
			"-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].status} {.status.addresses[0].value}`).Output()
		return err == nil && string(out) == "True httpbin-waypoint.httpbin.svc.cluster.local"
	})
	// kubectl shows why httpbin is bound to our waypoint.
	waitFor(t, 10*time.Second, "httpbin's WaypointBound condition", func() bool {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin", "get", "svc", "httpbin",
			"-o", `jsonpath={.status.conditions[?(@.type=="kgateway-waypoint.kgateway.dev/WaypointBound")].message}`).Output()
		return err == nil && string(out) == "served by waypoint httpbin/httpbin-waypoint (kgateway.dev/kgateway-waypoint)"
	})

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
	waitFor(t, 10*time.Second, "the policy's WaypointAccepted condition (ours, next to where istiod writes its own)", func() bool {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin", "get", "authorizationpolicy", "httpbin-authz-svc",
			"-o", `jsonpath={.status.kgatewayWaypoint.conditions[?(@.type=="kgateway-waypoint.kgateway.dev/WaypointAccepted")].status}`).Output()
		return err == nil && string(out) == "True"
	})

	// The chart's limit is the proxy's: a 30 KB header, well within the
	// default 60 KiB, gets 431 past max-header-bytes 8192.
	resp, _ = curl(t, inbound, dst, "POST", "/post", "X-Big", strings.Repeat("b", 30000))
	if resp.StatusCode != 431 {
		t.Errorf("a 30000-byte header with the chart's max-header-bytes 8192: %d, want 431", resp.StatusCode)
	}

	meshConfigChanges(t, kubectl, podNet, inbound, dst)
	stickySessions(t, kubectl, podNet, inbound) // DestinationRule (branch dr)

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

// meshConfigChanges changes istiod's mesh ConfigMap while the controller
// and the proxy run: a CUSTOM policy denies while the mesh config names no
// provider, then asks the external authorizer the ConfigMap adds (a real
// HTTP authorizer on a pod IP, reached through its Service), and a
// pathNormalization change is seen by the next requests.
func meshConfigChanges(t *testing.T, kubectl func(string, ...string) string, podNet *podNetwork, inbound string, dst netip.AddrPort) {
	t.Helper()
	// Stand-in for the authorizer's pod: Envoy's HTTP check, allowing a
	// request that carries x-ext-allow: yes.
	ln := podNet.Listen(t, 9000)
	checks := make(chan string, 100)
	authz := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case checks <- r.Method + " " + r.URL.Path:
		default:
		}
		if r.Header.Get("X-Ext-Allow") == "yes" {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(403)
		_, _ = io.WriteString(w, "denied by ext-authz")
	})}
	go func() { _ = authz.Serve(ln) }()
	t.Cleanup(func() { _ = authz.Close() })
	pod := netip.MustParseAddrPort(ln.Addr().String())
	kubectl(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: httpbin}
spec:
  ports: [{name: http, port: 8000, targetPort: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-authz-e2e
  namespace: httpbin
  labels: {kubernetes.io/service-name: ext-authz}
addressType: IPv4
ports: [{name: http, port: %d, protocol: TCP}]
endpoints: [{addresses: ["%s"], conditions: {ready: true}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: httpbin}
spec:
  targetRefs: [{group: "", kind: Service, name: httpbin}]
  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{to: [{operation: {paths: ["/anything/ext*"]}}]}]
`, pod.Port(), pod.Addr()), "apply", "-f", "-")

	// No mesh config names the provider yet: what the policy selects is
	// denied, as istiod makes Envoy do; the rest is not.
	waitFor(t, 10*time.Second, "the CUSTOM policy to deny", func() bool {
		resp, _ := curl(t, inbound, dst, "POST", "/anything/ext", "X-Ext-Allow", "yes")
		return resp.StatusCode == 403
	})
	if resp, body := curl(t, inbound, dst, "POST", "/anything/ext", "X-Ext-Allow", "yes"); resp.StatusCode != 403 || body != "RBAC: access denied" {
		t.Errorf("CUSTOM policy without a provider: %d %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	if resp, _ := curl(t, inbound, dst, "POST", "/anything/other"); resp.StatusCode != 200 {
		t.Errorf("a path the CUSTOM policy does not select: %d", resp.StatusCode)
	}
	// Before the mesh config says otherwise, paths are normalized as BASE:
	// "//post" is forwarded as it is (httpbin does not answer it with 200).
	if resp, _ := curl(t, inbound, dst, "POST", "//post"); resp.StatusCode == 200 {
		t.Errorf("POST //post under BASE: 200, want httpbin's answer to a double slash")
	}

	// istiod's mesh ConfigMap gets the provider.
	mesh := func(doc string) {
		t.Helper()
		kubectl(fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n%s",
			indent(doc, "    ")), "apply", "-f", "-")
	}
	kubectl("", "create", "namespace", "istio-system")
	mesh(`extensionProviders:
- name: ext-authz
  envoyExtAuthzHttp:
    service: ext-authz.httpbin.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-allow]
`)
	waitFor(t, 10*time.Second, "the external authorizer to allow", func() bool {
		resp, _ := curl(t, inbound, dst, "POST", "/anything/ext", "X-Ext-Allow", "yes")
		return resp.StatusCode == 200
	})
	if resp, body := curl(t, inbound, dst, "POST", "/anything/ext"); resp.StatusCode != 403 || body != "denied by ext-authz" {
		t.Errorf("denied by the external authorizer: %d %q, want its 403 and body", resp.StatusCode, body)
	}
	select {
	case c := <-checks:
		if c != "POST /anything/ext" {
			t.Errorf("the authorizer was asked about %q", c)
		}
	default:
		t.Error("the authorizer was never asked")
	}

	// The mesh config changes again: MERGE_SLASHES, the provider kept.
	mesh(`pathNormalization: {normalization: MERGE_SLASHES}
extensionProviders:
- name: ext-authz
  envoyExtAuthzHttp:
    service: ext-authz.httpbin.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-allow]
`)
	waitFor(t, 10*time.Second, "MERGE_SLASHES", func() bool {
		resp, _ := curl(t, inbound, dst, "POST", "//post")
		return resp.StatusCode == 200
	})
	resp, body := curl(t, inbound, dst, "POST", "//post")
	var echo struct{ URL string }
	if err := json.Unmarshal([]byte(body), &echo); err != nil || resp.StatusCode != 200 || echo.URL != "http://httpbin:8000/post" {
		t.Errorf("POST //post under MERGE_SLASHES: %d, url %q (%v), want httpbin's /post", resp.StatusCode, echo.URL, err)
	}
	if resp, _ := curl(t, inbound, dst, "POST", "//anything/ext", "X-Ext-Allow", "yes"); resp.StatusCode != 200 {
		t.Errorf("the provider after the second change: %d, want 200", resp.StatusCode)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// curl opens one connection as the curl pod's ztunnel would and sends one
// request, with headers given as name, value pairs.
func curl(t *testing.T, inbound string, dst netip.AddrPort, method, path string, hdr ...string) (*http.Response, string) {
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
	req, _ := http.NewRequest(method, "http://httpbin:8000/", bytes.NewReader(nil))
	req.URL.Path = path // as given, double slashes and all
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// One write: the waypoint may answer (431) and close before it has read
	// the whole request, and then its answer is what counts.
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		t.Fatal(err)
	}
	_, werr := c.Write(raw.Bytes())
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		if werr != nil {
			err = werr
		}
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
