package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Telemetry file applied to, changed in and removed from a running
// standalone waypoint changes what it logs, without a restart: a mesh
// config file provider with a filter logs only errors; disabled: true
// stops the log; an unsupported provider is reported in the output.
func TestStandaloneTelemetryAPIChangesLogging(t *testing.T) {
	pod := startHTTPBackend(t, "127.0.253.1")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(seedManifests(pod)+"---\n"+denyGet), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "telemetry.log")
	mesh := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("extensionProviders:\n- name: tofile\n  envoyFileAccessLog: {path: "+logFile+"}\n"+
		"- name: als\n  envoyHttpAls: {service: als.observability.svc.cluster.local, port: 9000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.254.1"), freeAddr(t, "127.0.254.1")
	p := start(t, "standalone", "-f", dir, "--mesh-config", mesh, "--inbound-address", inbound, "--status-address", status,
		"--metrics-address", "off", "--admin-address", "off")
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })
	logged := func() string { b, _ := os.ReadFile(logFile); return string(b) }

	c := dialWaypoint(t, inbound)
	c.send("GET", "/before")
	if logged() != "" {
		t.Fatalf("logged with no Telemetry: %q", logged())
	}

	telemetry := filepath.Join(dir, "telemetry.yaml")
	write := func(spec string) {
		t.Helper()
		doc := "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: logs, namespace: httpbin}\nspec:\n" + spec
		if err := os.WriteFile(telemetry, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: httpbin-waypoint}]
  accessLogging:
  - providers: [{name: tofile}, {name: als}]
    filter: {expression: "response.code >= 400"}
`)
	// The file is watched: wait until a denied GET is logged.
	waitFor(t, 10*time.Second, "the denied request in the Telemetry's log", func() bool {
		c.send("GET", "/denied")
		return strings.Contains(logged(), "/denied")
	})
	if resp, _ := c.send("POST", "/allowed"); resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	c.send("GET", "/denied-again")
	waitFor(t, 5*time.Second, "the second denied request", func() bool { return strings.Contains(logged(), "/denied-again") })
	if strings.Contains(logged(), "/allowed") || strings.Contains(logged(), "/before") {
		t.Errorf("the filter response.code >= 400 let through:\n%s", logged())
	}
	waitFor(t, 5*time.Second, "the unsupported provider reported", func() bool {
		out := p.output()
		return strings.Contains(out, "WaypointAccepted") && strings.Contains(out, "envoyHttpAls")
	})

	write(`  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: httpbin-waypoint}]
  accessLogging: [{disabled: true}]
`)
	// Disabled: once in force, nothing more is logged. A request is sent
	// until the log stops growing with it.
	waitFor(t, 10*time.Second, "the log to stop", func() bool {
		before := logged()
		c.send("GET", "/probe")
		time.Sleep(100 * time.Millisecond)
		return logged() == before
	})
	before := logged()
	c.send("GET", "/while-disabled")
	time.Sleep(200 * time.Millisecond)
	if logged() != before {
		t.Errorf("logged while disabled:\n%s", strings.TrimPrefix(logged(), before))
	}

	if err := os.Remove(telemetry); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "readiness after the Telemetry is removed", func() bool { return ready(status) })
}
