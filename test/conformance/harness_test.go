package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "sigs.k8s.io/gateway-api/conformance/echo-basic/grpcechoserver"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
)

// waypoint is a running `kgateway-waypoint standalone` with its output.
type waypoint struct {
	inbound string
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan error
}

func (w *waypoint) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(b)
}

func (w *waypoint) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// startWaypoint writes the base manifests, the EndpointSlices and the case's
// manifests into one directory and runs the waypoint on it, listening on ip.
// It returns once the waypoint is ready.
func startWaypoint(t *testing.T, ip string, manifests []string) (*waypoint, *cluster) {
	t.Helper()
	cl, err := loadCluster(filepath.Join("testdata", "base.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	slices, err := cl.endpointSlices()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"endpointslices.yaml": []byte(slices)}
	for i, m := range append([]string{"base.yaml"}, manifests...) {
		data, err := os.ReadFile(filepath.Join("testdata", m))
		if err != nil {
			t.Fatal(err)
		}
		files[fmt.Sprintf("%02d-%s", i, filepath.Base(m))] = data
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inbound, statusAddr := freeAddr(t, ip), freeAddr(t, ip)
	w := &waypoint{inbound: inbound, done: make(chan error, 1)}
	w.cmd = exec.Command(binary, "standalone", "-f", dir, "--inbound-address", inbound, "--status-address", statusAddr,
		"--metrics-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0")
	w.cmd.Stdout, w.cmd.Stderr = w, w
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		exit := <-w.done
		if t.Failed() {
			t.Logf("waypoint (%v) output:\n%s", exit, w.output())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !ready(statusAddr) {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("the waypoint exited before it was ready (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the waypoint was not ready within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w, cl
}

func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func ready(status string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + status + "/healthz/ready")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// client makes requests from a pod, the way the conformance suite execs the
// echo client in it. Its dialer is the pod's ztunnel: a connection to a
// service VIP goes to the waypoint with a PROXY v2 header (source pod IP, the
// VIP:port dialled, the pod's SPIFFE identity); one to a pod IP goes straight
// to the pod, as ztunnel does for a service waypoint.
type client struct {
	pod      *pod
	wp       *waypoint
	cl       *cluster
	srcPort  atomic.Uint32
	http     *http.Client
	mu       sync.Mutex
	grpcConn map[string]*grpc.ClientConn
}

func newClient(t *testing.T, p *pod, wp *waypoint, cl *cluster) *client {
	c := &client{pod: p, wp: wp, cl: cl, grpcConn: map[string]*grpc.ClientConn{}}
	c.srcPort.Store(40000)
	tr := &http.Transport{
		DialContext:           func(ctx context.Context, _, addr string) (net.Conn, error) { return c.dial(ctx, addr) },
		DisableCompression:    true,
		MaxIdleConnsPerHost:   4,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	c.http = &http.Client{
		Transport: tr,
		// The conformance cases that expect redirects inspect them; none
		// follows one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       15 * time.Second,
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, g := range c.grpcConn {
			_ = g.Close()
		}
	})
	return c
}

// dial is the pod's ztunnel.
func (c *client) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := c.cl.resolve(c.pod.Namespace, host)
	if err != nil {
		return nil, err
	}
	var port uint16
	if _, err := fmt.Sscan(portStr, &port); err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	if _, ok := c.cl.vips[ip]; ok {
		src := uint16(40000 + c.srcPort.Add(1)%20000)
		return meshclient.Dial(ctx, c.wp.inbound, meshclient.Conn{
			Source:      netip.AddrPortFrom(netip.MustParseAddr(c.pod.IP), src),
			Destination: netip.AddrPortFrom(ip, port),
			Identity:    c.pod.spiffe(),
		})
	}
	if p := podByIP(ip); p != nil {
		listen, ok := p.ports[int32(port)]
		if !ok {
			return nil, fmt.Errorf("pod %s does not listen on %d", p.Name, port)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", listen.String())
	}
	return nil, fmt.Errorf("%s is neither a service VIP nor a pod IP", ip)
}

// observed is what came back for one request.
type observed struct {
	status  int
	headers http.Header
	// location is the redirect target, resolved against the request URL.
	location *url.URL
	// echo is the backend's account of the request, when one answered.
	echo *echoReply
	// grpcErr is the gRPC status of a failed call.
	grpcErr error
}

// do sends one request as the conformance echo client would for
// `client <protocol>://<host><path> --method=<method> -H k:v ...`.
func (c *client) do(ctx context.Context, r Request) (*observed, error) {
	if strings.EqualFold(r.Protocol, "grpc") {
		return c.doGRPC(ctx, r)
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.host()+r.Path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header[k] = []string{v} // as written: the case-insensitivity case sends lower-case names
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	o := &observed{status: resp.StatusCode, headers: resp.Header}
	if loc := resp.Header.Get("Location"); loc != "" {
		u, err := req.URL.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("location %q: %w", loc, err)
		}
		o.location = u
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err == nil && e.Pod != "" {
		o.echo = &e
	}
	return o, nil
}

func (c *client) doGRPC(ctx context.Context, r Request) (*observed, error) {
	host := r.host()
	c.mu.Lock()
	conn := c.grpcConn[host]
	if conn == nil {
		var err error
		conn, err = grpc.NewClient("passthrough:///"+host,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(c.dial))
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.grpcConn[host] = conn
	}
	c.mu.Unlock()
	md := metadata.MD{}
	for k, v := range r.Headers {
		md.Append(k, v)
	}
	var hdr metadata.MD
	resp, err := pb.NewGrpcEchoClient(conn).Echo(metadata.NewOutgoingContext(ctx, md), &pb.EchoRequest{}, grpc.Header(&hdr))
	o := &observed{headers: http.Header{}}
	for k, vs := range hdr {
		for _, v := range vs {
			o.headers.Add(k, v)
		}
	}
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			return nil, err
		}
		o.grpcErr = err
		return o, nil
	}
	// The echo client reports a successful call as HTTP 200.
	o.status = http.StatusOK
	e := &echoReply{Headers: map[string][]string{}}
	if a := resp.GetAssertions(); a != nil {
		e.Host = a.GetAuthority()
		e.Path = a.GetFullyQualifiedMethod()
		e.Method = http.MethodPost
		e.Namespace = a.GetContext().GetNamespace()
		e.Pod = a.GetContext().GetPod()
		for _, h := range a.GetHeaders() {
			e.Headers[h.GetKey()] = append(e.Headers[h.GetKey()], h.GetValue())
		}
	}
	o.echo = e
	return o, nil
}
