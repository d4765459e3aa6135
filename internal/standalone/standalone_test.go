package standalone_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
)

const gateway = `apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: app}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]
`

// service is generation gen of the files: the Service's port tells which
// generation is in force.
func service(gen int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: %d}]
`, 10000+gen)
}

// writeAtomically replaces a file as editors and kubectl do: a reader sees
// the old content or the new, never half of it.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP (Reload) and the file watcher both reload, at any time and at
// once. The runner is the one writer of the configuration in force: a
// reload asked for after the files changed puts the new files in force,
// and no reload that read older files can replace them afterwards.
func TestRacingReloadsLeaveTheNewestFilesInForce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(gateway), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := filepath.Join(dir, "service.yaml")
	writeAtomically(t, svc, service(0))
	r, err := standalone.Start(standalone.Options{Paths: []string{dir},
		DataPlane: dataplane.Options{InboundAddress: "127.0.0.1:0", StatusAddress: "127.0.0.1:0", MetricsAddress: "off", AdminAddress: "off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inForce := func() int {
		w := r.Proxy.Current()
		if w == nil || len(w.Services) != 1 || len(w.Services[0].Ports) != 1 {
			return -1
		}
		return int(w.Services[0].Ports[0].Port) - 10000
	}
	if g := inForce(); g != 0 {
		t.Fatalf("at start generation %d is in force, want 0", g)
	}

	// Reloads that never stop, racing the watcher and each other.
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				_ = r.Reload()
			}
		})
	}
	for gen := 1; gen <= 80; gen++ {
		writeAtomically(t, svc, service(gen))
		if err := r.Reload(); err != nil {
			t.Fatalf("generation %d: reload: %v", gen, err)
		}
		if g := inForce(); g != gen {
			t.Fatalf("a reload asked for after generation %d was written returned with generation %d in force", gen, g)
		}
	}
	stop.Store(true)
	wg.Wait()
	if g := inForce(); g != 80 {
		t.Errorf("after the racing reloads finished, generation %d is in force, want 80 (the newest files)", g)
	}
	if e := r.LastError(); e != "" {
		t.Errorf("last error %q", e)
	}
}
