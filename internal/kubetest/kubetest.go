// Package kubetest starts a real kube-apiserver and etcd (controller-runtime
// envtest, with the binaries hack/kube/build.sh builds) for integration
// tests, with the Gateway API and Istio CRDs taken from their Go modules.
//
// Tests call Start; it skips the test when KUBEBUILDER_ASSETS is unset (a
// hand-run `go test`), and hack/test.sh always sets it, so CI runs them.
package kubetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kgateway-dev/kgateway-waypoint/internal/kube/scheme"
)

// CRD sets.
const (
	// GatewayAPICore is GatewayClass, Gateway, HTTPRoute, ReferenceGrant.
	GatewayAPICore = 1 << iota
	// GatewayAPIExtra is GRPCRoute and TCPRoute.
	GatewayAPIExtra
	// Istio is every Istio CRD (AuthorizationPolicy, ServiceEntry, ...).
	Istio
	// All CRDs of the modules.
	All = GatewayAPICore | GatewayAPIExtra | Istio
)

// --- kgateway TrafficPolicy (begin) ---

// KgatewayTrafficPolicy is kgateway's TrafficPolicy and GatewayExtension
// CRDs, from this repository's install/crds (kgateway's module is not available): a set
// of its own, outside All, for the tests that ask for it.
const KgatewayTrafficPolicy = Istio << 1

// repoCRD is a CRD file of this repository's install/crds.
func repoCRD(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "install", "crds", name)
}

// --- kgateway TrafficPolicy (end) ---

// KgatewayGatewayParameters is kgateway's GatewayParameters CRD, from
// install/crds: a set of its own, outside All.
const KgatewayGatewayParameters = Istio << 2

// Env is a running API server.
type Env struct {
	Config    *rest.Config
	Client    client.Client
	Clientset *kubernetes.Clientset
	// KubeConfig is a kubeconfig with admin rights (for kubectl and the
	// controller process).
	KubeConfig []byte
	env        *envtest.Environment
}

// Skip skips t unless KUBEBUILDER_ASSETS names the kube binaries.
func Skip(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: this test needs a real kube-apiserver and etcd; " +
			"run hack/test.sh, or: export KUBEBUILDER_ASSETS=$(hack/kube/build.sh)")
	}
	return dir
}

// Start starts etcd and kube-apiserver with the CRD sets asked for, and
// stops them when the test ends.
func Start(t testing.TB, crds int) *Env {
	t.Helper()
	Skip(t)
	paths, err := CRDPaths(crds)
	if err != nil {
		t.Fatal(err)
	}
	te := &envtest.Environment{
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Logf("stopping the API server: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Config: cfg, Client: c, Clientset: cs, KubeConfig: te.KubeConfig, env: te}
}

var (
	modDirs   = map[string]string{}
	modDirsMu sync.Mutex
)

// ModuleDir is the module cache folder of a module of the main module's
// build list (go list -m).
func ModuleDir(mod string) (string, error) {
	modDirsMu.Lock()
	defer modDirsMu.Unlock()
	if d, ok := modDirs[mod]; ok {
		return d, nil
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(context.Background(), "go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", &moduleError{mod: mod, err: err, stderr: errb.String()}
	}
	d := strings.TrimSpace(out.String())
	modDirs[mod] = d
	return d, nil
}

type moduleError struct {
	mod    string
	err    error
	stderr string
}

func (e *moduleError) Error() string {
	return "go list -m " + e.mod + ": " + e.err.Error() + ": " + e.stderr
}

// CRDPaths lists the CRD files of the sets asked for: Gateway API's standard
// channel from sigs.k8s.io/gateway-api, Istio's from istio.io/api.
func CRDPaths(crds int) ([]string, error) {
	var paths []string
	if crds&(GatewayAPICore|GatewayAPIExtra) != 0 {
		gw, err := ModuleDir("sigs.k8s.io/gateway-api")
		if err != nil {
			return nil, err
		}
		std := filepath.Join(gw, "config", "crd", "standard")
		if crds&GatewayAPICore != 0 {
			for _, k := range []string{"gatewayclasses", "gateways", "httproutes", "referencegrants"} {
				paths = append(paths, filepath.Join(std, "gateway.networking.k8s.io_"+k+".yaml"))
			}
		}
		if crds&GatewayAPIExtra != 0 {
			for _, k := range []string{"grpcroutes", "tcproutes"} {
				paths = append(paths, filepath.Join(std, "gateway.networking.k8s.io_"+k+".yaml"))
			}
		}
	}
	if crds&Istio != 0 {
		is, err := ModuleDir("istio.io/api")
		if err != nil {
			return nil, err
		}
		paths = append(paths, filepath.Join(is, "kubernetes", "customresourcedefinitions.gen.yaml"))
	}
	if crds&KgatewayTrafficPolicy != 0 {
		paths = append(paths, repoCRD("gateway.kgateway.dev_trafficpolicies.yaml"), repoCRD("gateway.kgateway.dev_gatewayextensions.yaml"))
	}
	if crds&KgatewayGatewayParameters != 0 {
		paths = append(paths, repoCRD("gateway.kgateway.dev_gatewayparameters.yaml"))
	}
	return paths, nil
}
