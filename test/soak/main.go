// Command soak runs the real waypoint binary under steady load for a long,
// bounded time (default 10 minutes at 2000 req/s) and samples its resident
// memory, file descriptors, threads and goroutines every interval. It
// fails (exit 1) when any of them keeps growing. It is not part of CI:
//
//	go run ./test/soak --duration 10m --rate 2000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long to run")
	rate := flag.Int("rate", 2000, "requests per second")
	conns := flag.Int("conns", 16, "client connections")
	interval := flag.Duration("interval", 10*time.Second, "sampling interval")
	out := flag.String("out", "", "write the samples as JSON to this file")
	flag.Parse()
	if err := run(*duration, *rate, *conns, *interval, *out); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// Sample is one reading of the waypoint process.
type Sample struct {
	At         time.Duration `json:"at"`
	RSSKiB     int64         `json:"rssKiB"`
	FDs        int64         `json:"fds"`
	Threads    int64         `json:"threads"`
	Goroutines int64         `json:"goroutines"`
	OK         int64         `json:"ok"`
	Failed     int64         `json:"failed"`
}

func run(duration time.Duration, rate, conns int, interval time.Duration, out string) error {
	dir, err := os.MkdirTemp("", "kgw-soak-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := filepath.Join(dir, "kgateway-waypoint")
	if b, err := exec.Command("go", "build", "-o", bin, "./cmd/kgateway-waypoint").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %w\n%s", err, b)
	}
	backend, err := net.Listen("tcp", "127.0.241.1:0")
	if err != nil {
		return err
	}
	body := strings.Repeat("x", 1024)
	go func() {
		_ = (&http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, body)
		})}).Serve(backend)
	}()
	pod := backend.Addr().(*net.TCPAddr).AddrPort()
	manifests := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: soak, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: soak}
spec: {gatewayClassName: kgateway-waypoint, listeners: [{name: mesh, protocol: istio.io/PROXY, port: 15088}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: soak}
spec: {clusterIP: 127.0.240.1, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: soak, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["%s"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: soak}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-soak, value: "1"}]}}]
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: soak}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  action: ALLOW
  rules: [{from: [{source: {namespaces: [soak]}}]}]
`, pod.Port(), pod.Addr())
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(manifests), 0o644); err != nil {
		return err
	}
	inbound, status, adminAddr := "127.0.242.1:15088", "127.0.242.1:15021", freePort("127.0.0.1")
	args := []string{"standalone", "-f", filepath.Join(dir, "m.yaml"), "--inbound-address", inbound, "--status-address", status,
		"--admin-address", adminAddr, "--metrics-address", "off", "--log-level", "warn"}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitReady(status); err != nil {
		return err
	}

	var ok, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	per := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client(ctx, inbound, i, per, &ok, &failed)
		}(i)
	}
	var samples []Sample
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	fmt.Printf("%8s %10s %6s %8s %11s %10s %8s\n", "at", "rss_kib", "fds", "threads", "goroutines", "ok", "failed")
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case <-tick.C:
			s := sample(cmd.Process.Pid, adminAddr)
			s.At, s.OK, s.Failed = time.Since(start).Round(time.Second), ok.Load(), failed.Load()
			samples = append(samples, s)
			fmt.Printf("%8s %10d %6d %8d %11d %10d %8d\n", s.At, s.RSSKiB, s.FDs, s.Threads, s.Goroutines, s.OK, s.Failed)
		}
	}
	wg.Wait()
	if out != "" {
		data, _ := json.MarshalIndent(samples, "", "  ")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	if err := Growth(samples); err != nil {
		return err
	}
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed (%d ok)", failed.Load(), ok.Load())
	}
	fmt.Printf("soak passed: %d requests, no failures, flat memory, descriptors and goroutines\n", ok.Load())
	return nil
}

// Growth fails when the last third of the samples is clearly above the
// first third (after the first sample, which is warm-up): more than 20%
// and more than a fixed floor for each measure.
func Growth(samples []Sample) error {
	if len(samples) < 4 {
		return nil
	}
	s := samples[1:]
	third := max(len(s)/3, 1)
	avg := func(part []Sample, f func(Sample) int64) float64 {
		var sum int64
		for _, x := range part {
			sum += f(x)
		}
		return float64(sum) / float64(len(part))
	}
	var errs []string
	for _, m := range []struct {
		name  string
		f     func(Sample) int64
		floor float64
	}{
		{"RSS (KiB)", func(x Sample) int64 { return x.RSSKiB }, 10 * 1024},
		{"file descriptors", func(x Sample) int64 { return x.FDs }, 20},
		{"goroutines", func(x Sample) int64 { return x.Goroutines }, 50},
	} {
		first, last := avg(s[:third], m.f), avg(s[len(s)-third:], m.f)
		if last > first*1.2 && last-first > m.floor {
			errs = append(errs, fmt.Sprintf("%s grew from %.0f to %.0f", m.name, first, last))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func client(ctx context.Context, inbound string, i int, per time.Duration, ok, failed *atomic.Int64) {
	var c net.Conn
	var br *bufio.Reader
	next := time.Now()
	for ctx.Err() == nil {
		next = next.Add(per)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		if c == nil {
			var err error
			c, err = meshclient.Dial(ctx, inbound, meshclient.Conn{
				Source:      netip.AddrPortFrom(netip.MustParseAddr("127.0.243.1"), uint16(30000+i)),
				Destination: netip.MustParseAddrPort("127.0.240.1:80"),
				Identity:    "spiffe://cluster.local/ns/soak/sa/client",
			})
			if err != nil {
				failed.Add(1)
				continue
			}
			br = bufio.NewReader(c)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /soak HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
			failed.Add(1)
			_ = c.Close()
			c = nil
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			failed.Add(1)
			_ = c.Close()
			c = nil
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			ok.Add(1)
		} else {
			failed.Add(1)
		}
	}
	if c != nil {
		_ = c.Close()
	}
}

func sample(pid int, admin string) Sample {
	var s Sample
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "VmRSS:":
				s.RSSKiB, _ = strconv.ParseInt(f[1], 10, 64)
			case "Threads:":
				s.Threads, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.FDs = int64(len(fds))
	}
	if admin != "" {
		if resp, err := http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1"); err == nil {
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			_ = resp.Body.Close()
			if _, n, ok := strings.Cut(strings.TrimSpace(line), "total "); ok {
				s.Goroutines, _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return s
}

func freePort(ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return ip + ":15000"
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func waitReady(status string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + status + "/healthz/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the waypoint did not become ready")
}
