package dataplane_test

import (
	"os/exec"
	"strings"
	"testing"
)

// dataPlanePackages are what a waypoint proxy runs: the proxy and
// everything under it, the IR, this package (listeners and the runner) and
// the xDS client that feeds it in a cluster.
var dataPlanePackages = []string{"./internal/proxy/...", "./internal/ir", "./internal/dataplane", "./internal/xds"}

// forbidden are the prefixes of what the data plane must not depend on:
// Kubernetes and Istio APIs (the translator turns them into ir.Waypoint),
// and the mesh config parser (the translator reads it).
var forbidden = []string{"k8s.io/", "sigs.k8s.io/", "istio.io/", "github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig",
	"github.com/kgateway-dev/kgateway-waypoint/internal/source", "github.com/kgateway-dev/kgateway-waypoint/internal/translate"}

// TestDataPlaneImportsNoKubernetes is ARCHITECTURE.md's rule "the proxy
// never sees Kubernetes objects, only ir", checked: the dependencies of the
// data-plane packages (tests left out) hold no Kubernetes, Istio API or
// mesh config package. It names who imports what was found.
func TestDataPlaneImportsNoKubernetes(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	args := append([]string{"list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`}, dataPlanePackages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = strings.TrimSpace(string(root))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	bad := func(pkg string) bool {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				return true
			}
		}
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list -deps listed %d packages; the data plane has more:\n%s", len(lines), out)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		if len(fields) == 0 || bad(fields[0]) {
			continue
		}
		for _, imp := range fields[1:] {
			if bad(imp) {
				t.Errorf("%s imports %s: the data plane reads only ir", fields[0], imp)
			}
		}
	}
}

// TestProxyBinaryLinksNoControlPlane checks what the data-plane-only binary
// (cmd/kgateway-waypoint-proxy, the one waypoint pods run) links: no
// Kubernetes client or API, no control-plane package, no go-control-plane
// server or cache; of Istio's APIs only the CA's messages (the Istio CA
// client).
func TestProxyBinaryLinksNoControlPlane(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/kgateway-waypoint-proxy")
	cmd.Dir = strings.TrimSpace(string(root))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/kgateway-dev/kgateway-waypoint/internal/"
	refused := []string{"k8s.io/", "sigs.k8s.io/", "github.com/envoyproxy/go-control-plane/pkg/cache",
		"github.com/envoyproxy/go-control-plane/pkg/server", self + "translate", self + "source", self + "meshconfig",
		self + "controller", self + "deployer", self + "status", self + "standalone", self + "demo", self + "kube"}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 100 {
		t.Fatalf("go list -deps listed %d packages; the proxy has more", len(pkgs))
	}
	for _, p := range pkgs {
		for _, r := range refused {
			if strings.HasPrefix(p, r) {
				t.Errorf("the proxy binary links %s", p)
			}
		}
		if strings.HasPrefix(p, "istio.io/") && !strings.HasPrefix(p, "istio.io/api/security/v1alpha1") &&
			!strings.HasPrefix(p, "istio.io/api/meta/") {
			t.Errorf("the proxy binary links %s (only the Istio CA's messages are wanted)", p)
		}
	}
}
