// Package conformance ports the Gateway API mesh conformance suite
// (sigs.k8s.io/gateway-api/conformance v1.6.3, tests/mesh) to data and runs
// it against the real kgateway-waypoint binary over loopback.
//
// Each conformance test is a Case named after it: the manifests it applies
// (testdata/tests/mesh, unchanged), the requests its client pod makes and
// what the conformance suite expects of each answer. The test process plays
// the cluster around the waypoint: the echo pods (HTTP and gRPC echo servers
// answering like the conformance echo server), the endpoint controller (it
// writes their EndpointSlices), DNS, and the client pod's ztunnel (it opens
// each connection to a service with a PROXY v2 header carrying the client's
// SPIFFE identity, and connections to a pod IP directly).
//
// Cases that fail against the current binary live in pending_test.go behind
// the conformance_pending build tag, with every assertion:
//
//	go test -tags conformance_pending ./test/conformance/
//
// The binary is built from this tree; CONFORMANCE_BINARY=/path/to/binary
// runs the suite against another build instead.
package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kgw-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary = filepath.Join(dir, "kgateway-waypoint")
	if b := os.Getenv("CONFORMANCE_BINARY"); b != "" {
		binary = b
	} else {
		build := exec.Command("go", "build", "-o", binary, "../../cmd/kgateway-waypoint")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the binary:", err)
			return 1
		}
	}
	stop, err := startPods()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the echo pods:", err)
		return 1
	}
	defer stop()
	return m.Run()
}
