// Package targets starts what the benchmark measures, on loopback: the
// backend, our waypoint (the real binary, standalone mode), HAProxy, nginx
// and Caddy configured for the same job, and the direct path with no proxy.
package targets

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the benchmark started.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	Log  string // its stdout and stderr
}

// PID is the process id (taskset execs the command, so it is the proxy's).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 5 s.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// LogTail returns the last lines the process wrote, for error messages.
func (p *Proc) LogTail() string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// start runs bin with args, pinned to cpus when cpus is not empty.
func start(dir, name, cpus, bin string, args ...string) (*Proc, error) {
	return startEnv(dir, name, cpus, nil, bin, args...)
}

// startEnv is start with env added to the inherited environment. The
// process inherits this one's RLIMIT_NOFILE (meshbench raises it).
func startEnv(dir, name, cpus string, env []string, bin string, args ...string) (*Proc, error) {
	if cpus != "" {
		args = append([]string{"-c", cpus, bin}, args...)
		bin = "taskset"
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), Log: logPath}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// StartProc runs bin with args (pinned to cpus when not empty), its output
// going to DIR/NAME.log.
func StartProc(dir, name, cpus, bin string, args ...string) (*Proc, error) {
	return start(dir, name, cpus, bin, args...)
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort(ip string) (netip.AddrPort, error) {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).AddrPort(), nil
}

// waitListening waits until addr accepts connections or p exits.
func waitListening(p *Proc, addrs ...string) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			if p.Exited() {
				return fmt.Errorf("%s exited: %s", p.Name, p.LogTail())
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not listen on %s within 15s: %s", p.Name, addr, p.LogTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Target is one way to reach the backend.
type Target struct {
	Name string
	// Addr is where the generator connects; H2CAddr the same for h2c ("" none).
	Addr, H2CAddr string
	// PROXY: connections start with a PROXY v2 header (all but direct).
	PROXY bool
	// Proc is the proxy process (nil for the direct path).
	Proc *Proc
	// Dial, when set, opens connection i instead of a TCP connection to
	// Addr (the native-HBONE and TLS rows: an HBONE stream, a TLS
	// connection); no PROXY header is written then.
	Dial func(ctx context.Context, i int) (net.Conn, error)
	// Terminator is the process behind the proxy that terminates its
	// upstream mTLS (the ztunnel stand-in), measured apart; nil for none.
	Terminator *Proc
	// cleanup, when set, stops what the target needs beside its process.
	cleanup func()
}

// Stop ends the target's process (and what it needed beside it).
func (t *Target) Stop() {
	t.Proc.Stop()
	if t.cleanup != nil {
		t.cleanup()
	}
}

// Opts are how one target is started.
type Opts struct {
	// CPUs pins the proxy (a taskset CPU list); "" leaves it unpinned.
	CPUs string
	// Conns is how many client connections it must hold at once; 0 means
	// the latency and saturation runs' few dozen. HAProxy (maxconn) and
	// nginx (worker_connections) are configured for it; the waypoint and
	// Caddy have no such setting that these counts reach.
	Conns int
}

// Env is what every target shares.
type Env struct {
	// Dir is a scratch directory for configs and logs.
	Dir string
	// WaypointBin is the built kgateway-waypoint binary, ProxyBin the
	// data-plane-only kgateway-waypoint-proxy; CaddyBin the Caddy binary
	// (BuildCaddy).
	WaypointBin, ProxyBin, CaddyBin string
	// Backend serves HTTP/1.1; Backend2 is the same server on a second
	// loopback address (a second endpoint); BackendH2C serves HTTP/1.1 and h2c.
	Backend, Backend2, BackendH2C netip.AddrPort
	// Certs are the mesh certificates of the native-HBONE and TLS rows;
	// StandIn the destination ztunnel's stand-in in front of Backend, with
	// its HBONE and TLS addresses (StartZtunnelStandIn).
	Certs                    *MeshCerts
	StandIn                  *Proc
	StandInHBONE, StandInTLS netip.AddrPort
}

// StartBackend runs the backend as its own process (self is this program,
// which serves it under the "backend" argument) so its CPU is not mixed
// with the generator's. It fills env's backend addresses.
func StartBackend(env *Env, self string) (*Proc, error) {
	h1, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	h2, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	second := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), h1.Port())
	p, err := start(env.Dir, "backend", "", self, "backend", "--listen", h1.String(), "--listen", second.String(),
		"--h2c-listen", h2.String())
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, h1.String(), second.String(), h2.String()); err != nil {
		p.Stop()
		return nil, err
	}
	env.Backend, env.Backend2, env.BackendH2C = h1, second, h2
	return p, nil
}

// Direct is the path with no proxy: the generator talks to the backend.
func Direct(env *Env) *Target {
	return &Target{Name: "direct", Addr: env.Backend.String(), H2CAddr: env.BackendH2C.String()}
}

// StartWaypoint runs our waypoint, the real binary in standalone mode, on
// the scenario's manifests.
func StartWaypoint(env *Env, o Opts) (*Target, error) {
	p, in, err := startStandalone(env, o, "waypoint", WaypointManifests(env.Backend))
	if err != nil {
		return nil, err
	}
	// HTTP/1.1 and h2c share the waypoint's one listener.
	return &Target{Name: "waypoint", Addr: in.String(), H2CAddr: in.String(), PROXY: true, Proc: p}, nil
}

// startStandalone runs the waypoint binary in standalone mode as name, on
// manifests (written to a folder of its own), with extra flags, and waits
// until it is ready. It returns the process and its inbound address.
func startStandalone(env *Env, o Opts, name, manifests string, extra ...string) (*Proc, netip.AddrPort, error) {
	mdir := filepath.Join(env.Dir, name+"-manifests")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, netip.AddrPort{}, err
	}
	if err := os.WriteFile(filepath.Join(mdir, "bench.yaml"), []byte(manifests), 0o644); err != nil {
		return nil, netip.AddrPort{}, err
	}
	in, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	st, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	args := append([]string{"standalone", "-f", mdir,
		"--inbound-address", in.String(), "--status-address", st.String(),
		"--metrics-address", "127.0.0.1:0", "--admin-address", "off"}, extra...)
	p, err := start(env.Dir, name, o.CPUs, env.WaypointBin, args...)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if err := WaitReady(p, st.String()); err != nil {
		p.Stop()
		return nil, netip.AddrPort{}, err
	}
	return p, in, nil
}

// WaitReady waits for GET /healthz/ready = 200 on the waypoint's status address.
func WaitReady(p *Proc, status string) error {
	deadline := time.Now().Add(60 * time.Second)
	cl := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := cl.Get("http://" + status + "/healthz/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("the waypoint exited: %s", p.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the waypoint was not ready within 60s: %s", p.LogTail())
}

// StartHAProxy runs HAProxy (foreground, no master) for the same job.
func StartHAProxy(env *Env, o Opts) (*Target, error) {
	in, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	h2, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(env.Dir, "haproxy.cfg")
	maxconn := max(4096, o.Conns+1024)
	// HAProxy wants two descriptors per connection and a few more.
	strict := uint64(2*maxconn+128) <= FileLimit()
	if err := os.WriteFile(cfg, []byte(HAProxyConfig(in.String(), h2.String(), env.Backend, maxconn, strict)), 0o644); err != nil {
		return nil, err
	}
	p, err := start(env.Dir, "haproxy", o.CPUs, "haproxy", "-db", "-f", cfg)
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, in.String(), h2.String()); err != nil {
		p.Stop()
		return nil, err
	}
	return &Target{Name: "haproxy", Addr: in.String(), H2CAddr: h2.String(), PROXY: true, Proc: p}, nil
}

// StartNginx runs nginx (foreground master and its workers) for the same job.
func StartNginx(env *Env, o Opts) (*Target, error) {
	in, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	h2, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	ndir := filepath.Join(env.Dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ndir, "tmp"), 0o777); err != nil {
		return nil, err
	}
	cfg := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(NginxConfig(ndir, in.String(), h2.String(), env.Backend, max(8192, o.Conns+1024))), 0o644); err != nil {
		return nil, err
	}
	p, err := start(env.Dir, "nginx", o.CPUs, "nginx", "-p", ndir, "-c", cfg, "-e", filepath.Join(ndir, "startup-error.log"))
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, in.String(), h2.String()); err != nil {
		p.Stop()
		return nil, err
	}
	return &Target{Name: "nginx", Addr: in.String(), H2CAddr: h2.String(), PROXY: true, Proc: p}, nil
}

// StartCaddy runs Caddy (env.CaddyBin, `caddy run` in the foreground) for
// the same job; HTTP/1.1 and h2c share its one listener, as the waypoint's.
func StartCaddy(env *Env, o Opts) (*Target, error) {
	in, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	cdir := filepath.Join(env.Dir, "caddy")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, err
	}
	conf, err := CaddyConfig(cdir, in.String(), env.Backend)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(cdir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// Caddy's default folders are under $HOME and $XDG_*: keep them in dir.
	env2 := []string{"HOME=" + cdir, "XDG_CONFIG_HOME=" + filepath.Join(cdir, "config"), "XDG_DATA_HOME=" + filepath.Join(cdir, "data")}
	p, err := startEnv(env.Dir, "caddy", o.CPUs, env2, env.CaddyBin, "run", "--config", cfg, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	if err := waitListening(p, in.String()); err != nil {
		p.Stop()
		return nil, err
	}
	return &Target{Name: "caddy", Addr: in.String(), H2CAddr: in.String(), PROXY: true, Proc: p}, nil
}

// CaddyModule is the module the Caddy target cannot do without. Debian 12's
// caddy (2.6.2) lacks it, which is why meshbench builds its own.
const CaddyModule = "caddy.listeners.proxy_protocol"

// CaddyPath is where hack/caddy/build.sh puts the Caddy binary pinned by
// hack/caddy/go.mod: .cache/caddy/<first 16 hex digits of the SHA-256 of
// hack/caddy/go.sum>/caddy under the repository root.
func CaddyPath(root string) (string, error) {
	sum, err := os.ReadFile(filepath.Join(root, "hack", "caddy", "go.sum"))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	return filepath.Join(root, ".cache", "caddy", hex.EncodeToString(h[:])[:16], "caddy"), nil
}

// BuildCaddy returns the pinned Caddy binary, building it with
// hack/caddy/build.sh (from the Go module proxy, a few minutes) when it is
// not there yet, and checks that it has the proxy_protocol listener wrapper.
func BuildCaddy(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	bin, err := CaddyPath(root)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil {
		logf("building caddy (hack/caddy/build.sh: the version in hack/caddy/go.mod, from the Go module proxy)")
		cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "caddy", "build.sh"))
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("hack/caddy/build.sh: %w: %s", err, lastLines(string(out), 5))
		}
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("hack/caddy/build.sh built no %s: %s", bin, lastLines(string(out), 5))
		}
	}
	out, err := exec.CommandContext(ctx, bin, "list-modules").Output()
	if err != nil {
		return "", fmt.Errorf("%s list-modules: %w", bin, err)
	}
	if !slices.Contains(strings.Fields(string(out)), CaddyModule) {
		return "", fmt.Errorf("%s has no %s module", bin, CaddyModule)
	}
	return bin, nil
}

// CaddyVersion is the version of the Caddy module bin was built from, read
// from its build information ("unknown" if it has none).
func CaddyVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown"
	}
	const mod = "github.com/caddyserver/caddy/v2"
	if bi.Main.Path == mod {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == mod {
			return d.Version
		}
	}
	return "unknown"
}

// FileLimit is this process's RLIMIT_NOFILE (soft) limit, which the
// targets it starts inherit.
func FileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}

// RaiseFileLimit raises RLIMIT_NOFILE's soft limit to the hard one and
// returns it. Go raises its own soft limit at startup but gives children
// the original one back unless the program sets the limit itself; after
// this, the targets started here inherit the raised limit (their
// `ulimit -n`).
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// Ensure makes sure bin is on PATH, installing the Debian package pkg with
// apt-get when it is missing (root only; apt-get update first if needed).
func Ensure(ctx context.Context, bin, pkg string, logf func(string, ...any)) error {
	if _, err := exec.LookPath(bin); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not installed and installing it needs root (apt-get install %s)", bin, pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s is not installed and there is no apt-get", bin)
	}
	logf("installing %s from Debian (apt-get install -y %s)", bin, pkg)
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", pkg, err, lastLines(string(out), 5))
		}
		return nil
	}
	if err := install(); err != nil {
		logf("apt-get install failed; running apt-get update and retrying")
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return errors.Join(err, fmt.Errorf("apt-get update: %w: %s", uerr, lastLines(string(out), 5)))
		}
		if err := install(); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s still missing after installing %s", bin, pkg)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Pin sets the CPU affinity of every thread of pid (taskset -a -p).
func Pin(pid int, cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, fmt.Sprint(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset -a -p -c %s %d: %w: %s", cpus, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}
