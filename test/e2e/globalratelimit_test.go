package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The global rate limit end to end with real parts: the binary in
// standalone mode with kgateway 2.1 manifests (a TrafficPolicy's
// rateLimit.global and a GatewayExtension of type RateLimit, as kgateway's
// global rate limiting guide writes them), Envoy's rate limit service
// (github.com/envoyproxy/ratelimit, built by hack/ratelimit/build.sh) and
// a real Redis (Debian's redis-server), each on free loopback ports.

// realBinary is the path an environment variable names. Without it the
// test is skipped on a developer's machine; in CI (CI set) it fails, so
// that a missing build step cannot pass unnoticed.
func realBinary(t *testing.T, env, how string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is unset in CI: %s", env, how)
		}
		t.Skipf("%s is unset: %s", env, how)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v", env, p, err)
	}
	return p
}

// startWithEnv runs bin with args and env (added to this process's), its
// output captured, killed at the end.
func startWithEnv(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		waitErr := <-p.done
		p.done <- waitErr
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(bin), p.output())
		}
	})
	return p
}

// startRedis runs redis-server on a free loopback port, without
// persistence, and returns its address once it answers PING.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := realBinary(t, "REDIS_SERVER", `the global rate limit test runs a real Redis: apt-get install redis-server, REDIS_SERVER=$(command -v redis-server) (hack/test.sh does)`)
	addr := freeAddr(t, "127.0.0.1")
	_, port, _ := net.SplitHostPort(addr)
	startWithEnv(t, nil, bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no")
	waitFor(t, 10*time.Second, "redis-server", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, "PING\r\n"); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.HasPrefix(line, "+PONG")
	})
	return addr
}

// The rate limit service's configuration: per user of the httpbin
// service, 3 requests an hour (an hour, so that the window does not turn
// during the test).
const rlsConfig = `domain: waypoint-e2e
descriptors:
- key: service
  value: httpbin
  descriptors:
  - key: x-user-id
    rate_limit: {name: per-user, unit: hour, requests_per_unit: 3}
`

// startRateLimitService runs envoyproxy/ratelimit against redis with
// rlsConfig and returns its gRPC address once it is healthy.
func startRateLimitService(t *testing.T, redis string) string {
	t.Helper()
	bin := realBinary(t, "RATELIMIT_BIN", `the global rate limit test runs Envoy's rate limit service: RATELIMIT_BIN="$(hack/ratelimit/build.sh)/ratelimit" (hack/test.sh does)`)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "ratelimit", "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "ratelimit", "config", "config.yaml"), []byte(rlsConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr, debugAddr := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	hostPort := func(a string) (string, string) { h, p, _ := net.SplitHostPort(a); return h, p }
	gh, gp := hostPort(grpcAddr)
	hh, hp := hostPort(httpAddr)
	dh, dp := hostPort(debugAddr)
	startWithEnv(t, []string{
		"USE_STATSD=false", "LOG_LEVEL=debug",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redis,
		"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
		"GRPC_HOST=" + gh, "GRPC_PORT=" + gp, "HOST=" + hh, "PORT=" + hp, "DEBUG_HOST=" + dh, "DEBUG_PORT=" + dp,
	}, bin)
	waitFor(t, 30*time.Second, "the rate limit service's health check", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/healthcheck")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	return grpcAddr
}

// sendAs sends a request through the waypoint with an x-user-id.
func (c *client) sendAs(user, path string) (*http.Response, string) {
	c.t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://httpbin:8000"+path, nil)
	req.Header.Set("X-User-Id", user)
	if err := req.Write(c.c); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

func TestStandaloneGlobalRateLimitRealService(t *testing.T) {
	redis := startRedis(t)
	rls := startRateLimitService(t, redis)
	rlsHost, rlsPort, _ := net.SplitHostPort(rls)

	pod := startHTTPBackend(t, "127.0.201.8")
	dir := t.TempDir()
	manifests := seedManifests(pod) + `---
apiVersion: v1
kind: Service
metadata: {name: ratelimit, namespace: httpbin, labels: {istio.io/use-waypoint: none}}
spec:
  clusterIP: 127.0.200.8
  ports: [{name: grpc, port: 8081, appProtocol: grpc}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ratelimit-1
  namespace: httpbin
  labels: {kubernetes.io/service-name: ratelimit}
addressType: IPv4
ports: [{name: grpc, port: ` + rlsPort + `}]
endpoints: [{addresses: ["` + rlsHost + `"]}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayExtension
metadata:
  name: global-ratelimit
  namespace: httpbin
spec:
  type: RateLimit
  rateLimit:
    grpcService:
      backendRef:
        name: ratelimit
        port: 8081
    domain: waypoint-e2e
    failOpen: false
    timeout: 2s
    xRateLimitHeaders: DraftVersion03
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: global-ratelimit
  namespace: httpbin
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: traversed
  rateLimit:
    global:
      descriptors:
      - entries:
        - type: Generic
          generic:
            key: service
            value: httpbin
        - type: Header
          header: x-user-id
      extensionRef:
        name: global-ratelimit
`
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	inbound, status := freeAddr(t, "127.0.202.8"), freeAddr(t, "127.0.202.8")
	start(t, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", status)
	waitFor(t, 10*time.Second, "readiness", func() bool { return ready(status) })

	c := dialWaypoint(t, inbound)
	user := "alice-" + strconv.FormatInt(time.Now().UnixNano(), 36) // fresh counters whatever Redis holds
	for i := range 3 {
		resp, body := c.sendAs(user, "/get")
		if resp.StatusCode != 200 || body != "GET /get from pod" {
			t.Fatalf("request %d within the limit: %d %q", i, resp.StatusCode, body)
		}
		if got, want := resp.Header.Get("X-Ratelimit-Remaining"), strconv.Itoa(2-i); got != want {
			t.Errorf("request %d: x-ratelimit-remaining %q, want %q", i, got, want)
		}
		if got := resp.Header.Get("X-Ratelimit-Limit"); got != `3, 3;w=3600;name="per-user"` {
			t.Errorf("request %d: x-ratelimit-limit %q", i, got)
		}
		if reset, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Reset")); err != nil || reset < 1 || reset > 3600 {
			t.Errorf("request %d: x-ratelimit-reset %q, want 1..3600 seconds", i, resp.Header.Get("X-Ratelimit-Reset"))
		}
	}
	for i := range 2 {
		resp, body := c.sendAs(user, "/get")
		if resp.StatusCode != http.StatusTooManyRequests || body != "" {
			t.Fatalf("request %d over the limit: %d %q, want 429 without a body", i, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Envoy-Ratelimited") != "true" || resp.Header.Get("X-Ratelimit-Remaining") != "0" {
			t.Errorf("429 headers: %v", resp.Header)
		}
		// The route's own filter still decorates the waypoint's reply.
		if resp.Header.Get("Traversed-Waypoint") != "httpbin-waypoint" {
			t.Errorf("429 without the route's response header: %v", resp.Header)
		}
	}
	// Another user has counters of its own; a new connection shares the
	// service's counters (the limit is global, not per connection).
	if resp, _ := c.sendAs("bob-"+user, "/get"); resp.StatusCode != 200 {
		t.Fatalf("another user: %d", resp.StatusCode)
	}
	if resp, _ := dialWaypoint(t, inbound).sendAs(user, "/get"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the limited user on a new connection: %d, want 429", resp.StatusCode)
	}
}
