package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
)

// The chart's controller, run as its Deployment says with its
// ServiceAccount's token (so the chart's RBAC is what is tested), on a real
// API server with kgateway's GatewayParameters CRD: the migration guide's
// GatewayParameters and Gateway (kubectl apply, unchanged) give the
// waypoint Deployment its replicas and pod labels, and a kubectl patch of
// the GatewayParameters re-renders it.
func TestChartGatewayParameters(t *testing.T) {
	assets := kubetest.Skip(t)
	env := kubetest.Start(t, kubetest.All|kubetest.KgatewayGatewayParameters)
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
	kubectl("", "create", "namespace", "kgateway-system")
	rendered, err := exec.Command(helmBinary(t), "template", "kgateway-waypoint", "../../install/helm/kgateway-waypoint",
		"--namespace", "kgateway-system").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	kubectl(string(rendered), "apply", "-f", "-")
	ctlArgs := strings.Fields(kubectl("", "-n", "kgateway-system", "get", "deployment", "kgateway-waypoint",
		"-o", `jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}`))
	saToken := strings.TrimSpace(kubectl("", "-n", "kgateway-system", "create", "token", "kgateway-waypoint"))
	saKubeconfig := filepath.Join(dir, "controller-kubeconfig")
	writeTokenKubeconfig(t, saKubeconfig, env, saToken)
	health := freeAddr(t, "127.0.0.1")
	ctlArgs = overrideEq(t, ctlArgs, map[string]string{"--xds-address": freeAddr(t, "127.0.0.1"), "--health-address": health, "--metrics-address": "0"})
	ctlArgs = append(ctlArgs, "--kubeconfig", saKubeconfig, "--leader-election-namespace", "kgateway-system")
	ctl := start(t, ctlArgs...)
	waitFor(t, 30*time.Second, "the controller to be ready", func() bool {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})

	kubectl("apiVersion: v1\nkind: Namespace\nmetadata: {name: httpbin, labels: {istio.io/dataplane-mode: ambient}}\n", "apply", "-f", "-")
	kubectl("", "apply", "-f", filepath.Join(migrationDir, "01-waypoint.yaml"))
	deployment := func(jsonpath string) string {
		cmd := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", "httpbin",
			"get", "deployment", "kgateway-waypoint", "-o", "jsonpath="+jsonpath)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	waitFor(t, 30*time.Second, "the waypoint Deployment with the GatewayParameters' replicas and labels", func() bool {
		return deployment("{.spec.replicas}") == "2" && deployment("{.spec.template.metadata.labels.team}") == "httpbin"
	})
	kubectl("", "-n", "httpbin", "patch", "gatewayparameters", "waypoint-params", "--type", "merge",
		"-p", `{"spec":{"kube":{"deployment":{"replicas":3}}}}`)
	waitFor(t, 30*time.Second, "the Deployment re-rendered", func() bool { return deployment("{.spec.replicas}") == "3" })
	if out := ctl.output(); strings.Contains(out, "forbidden") {
		t.Errorf("the chart's RBAC refused the controller something:\n%s", out)
	}
}
