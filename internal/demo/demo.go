// Package demo runs the user's walkthrough (examples/waypoint/README.md) on
// one machine with no cluster. It stands in for the parts of a cluster that
// cannot exist here, and says so as it goes:
//   - the API server: it gives the httpbin Service a cluster IP (a loopback
//     address) and writes the EndpointSlice the endpoint controller would;
//   - the httpbin pod: a real go-httpbin server on a loopback "pod IP";
//   - the curl pod's ztunnel: every request opens a connection with the
//     PROXY v2 header ztunnel writes, carrying the curl identity.
//
// The waypoint itself is the real thing: the standalone pipeline, watching
// the manifests directory, with "kubectl apply" being a file copy.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"
	"sigs.k8s.io/yaml"

	examples "github.com/kgateway-dev/kgateway-waypoint/examples/waypoint"
	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshclient"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/hbone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
)

// Addresses of the demo's stand-in cluster, all on loopback.
var (
	serviceVIP  = netip.MustParseAddr("127.77.100.1") // httpbin's "cluster IP"
	httpbinPod  = netip.MustParseAddr("127.77.1.10")  // httpbin's "pod IP"
	curlPod     = netip.MustParseAddr("127.77.2.10")  // curl's "pod IP"
	waypointPod = netip.MustParseAddr("127.77.0.1")   // the waypoint's "pod IP"
)

const (
	servicePort  = 8000
	curlIdentity = "spiffe://cluster.local/ns/httpbin/sa/curl"
)

// Options tune the demo.
type Options struct {
	Out    io.Writer
	Logger *slog.Logger
	// Keep leaves the waypoint running after the walkthrough until ctx ends.
	Keep bool
	// HBONE runs the walkthrough through a native HBONE waypoint (hbone.go).
	HBONE bool
}

// Run performs the walkthrough. It returns an error when any outcome
// differs from the walkthrough's.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &demo{out: o.Out, log: o.Logger, hbone: o.HBONE}
	defer d.cleanup()
	if err := d.setup(); err != nil {
		return err
	}
	if err := d.walkthrough(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nAll outcomes match the walkthrough.\n")
	if o.Keep {
		fmt.Fprintf(d.out, "The waypoint keeps running (%s listener %s, manifests in %s); Ctrl-C to stop.\n",
			d.listenerKind(), d.runner.InboundAddr(), d.dir)
		<-ctx.Done()
	}
	return nil
}

type demo struct {
	out      io.Writer
	log      *slog.Logger
	dir      string
	httpbin  *http.Server
	podAddr  netip.AddrPort
	runner   *standalone.Runner
	failures []string
	hbone    bool
	mesh     *meshCA
}

func (d *demo) listenerKind() string {
	if d.hbone {
		return "HBONE"
	}
	return "PROXY"
}

func (d *demo) cleanup() {
	if d.runner != nil {
		d.runner.Close()
	}
	if d.httpbin != nil {
		_ = d.httpbin.Close()
	}
	if d.mesh != nil {
		d.mesh.close()
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// listenLoopback binds ip:port, or ip with any free port when that one is taken.
func listenLoopback(ip netip.Addr, port uint16) (net.Listener, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
	if err == nil {
		return ln, nil
	}
	return net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
}

func (d *demo) setup() error {
	var err error
	d.dir, err = os.MkdirTemp("", "kgateway-waypoint-demo-")
	if err != nil {
		return err
	}
	// The httpbin pod.
	ln, err := listenLoopback(httpbinPod, 8080)
	if err != nil {
		return fmt.Errorf("starting httpbin: %w", err)
	}
	d.podAddr = ln.Addr().(*net.TCPAddr).AddrPort()
	d.httpbin = &http.Server{Handler: httpbin.New(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.httpbin.Serve(ln) }()
	d.say("# stand-in cluster: httpbin pod (go-httpbin) at %s; httpbin Service cluster IP %s:%d", d.podAddr, serviceVIP, servicePort)

	// kubectl apply -f examples/waypoint/httpbin-mesh.yaml
	d.say("$ kubectl apply -f examples/waypoint/httpbin-mesh.yaml")
	mesh, err := fs.ReadFile(examples.Manifests, "httpbin-mesh.yaml")
	if err != nil {
		return err
	}
	mesh, err = assignClusterIPs(mesh, serviceVIP)
	if err != nil {
		return err
	}
	if err := d.write("httpbin-mesh.yaml", mesh); err != nil {
		return err
	}
	if err := d.write("zz-cluster-endpoints.yaml", []byte(endpointSlice(d.podAddr, d.hbone))); err != nil {
		return err
	}
	if d.hbone {
		if err := d.write("zz-cluster-pod.yaml", []byte(podManifest(d.podAddr))); err != nil {
			return err
		}
		if err := d.setupMesh(); err != nil {
			return err
		}
	}
	// kubectl apply -f examples/waypoint/waypoint-gw.yaml
	d.say("$ kubectl apply -f examples/waypoint/waypoint-gw.yaml")
	if d.hbone {
		gw, err := fs.ReadFile(examples.Manifests, "waypoint-gw.yaml")
		if err != nil {
			return err
		}
		if gw, err = hboneGateway(gw); err != nil {
			return err
		}
		d.say("# (--hbone: its listener is {name: mesh, protocol: HBONE, port: 15008})")
		if err := d.write("waypoint-gw.yaml", gw); err != nil {
			return err
		}
	} else if err := d.copyExample("waypoint-gw.yaml"); err != nil {
		return err
	}
	// kubectl apply -f examples/waypoint/waypoint-http-route.yaml
	d.say("$ kubectl apply -f examples/waypoint/waypoint-http-route.yaml")
	if err := d.copyExample("waypoint-http-route.yaml"); err != nil {
		return err
	}

	// The waypoint: our standalone pipeline on the manifests directory.
	inboundPort := uint16(15088)
	if d.hbone {
		inboundPort = hbone.Port
	}
	inbound, err := freeAddr(waypointPod, inboundPort)
	if err != nil {
		return err
	}
	status, err := freeAddr(waypointPod, 15021)
	if err != nil {
		return err
	}
	dp := dataplane.Options{InboundAddress: inbound, StatusAddress: status, MetricsAddress: "off", AdminAddress: "off"}
	if d.hbone {
		dp.CertDir = d.mesh.certDir
		dp.Upstream.HBONEPort = uint16(d.mesh.ztunnel.Addr().(*net.TCPAddr).Port)
	}
	d.runner, err = standalone.Start(standalone.Options{
		Paths:     []string{d.dir},
		DataPlane: dp,
		Logger:    d.log,
	})
	if err != nil {
		return fmt.Errorf("starting the waypoint: %w", err)
	}
	if err := waitReady(d.runner.StatusAddr().String()); err != nil {
		return err
	}
	d.say("# waypoint httpbin/httpbin-waypoint ready: %s listener %s, GET http://%s/healthz/ready = 200",
		d.listenerKind(), d.runner.InboundAddr(), d.runner.StatusAddr())
	return nil
}

// freeAddr returns ip:port if it can be bound, else ip with a free port.
func freeAddr(ip netip.Addr, port uint16) (string, error) {
	ln, err := listenLoopback(ip, port)
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

func waitReady(statusAddr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + statusAddr + "/healthz/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the waypoint did not become ready within 10s")
}

func (d *demo) write(name string, data []byte) error {
	// Write then rename, as kubectl apply is atomic: the watcher never sees
	// half a file.
	tmp := filepath.Join(d.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.dir, name))
}

func (d *demo) copyExample(name string) error {
	data, err := fs.ReadFile(examples.Manifests, name)
	if err != nil {
		return err
	}
	return d.write(name, data)
}

// assignClusterIPs gives every Service without a cluster IP the demo's VIP,
// as the API server would allocate one.
func assignClusterIPs(manifest []byte, vip netip.Addr) ([]byte, error) {
	docs := bytes.Split(manifest, []byte("\n---"))
	for i, doc := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, err
		}
		if obj["kind"] != "Service" {
			continue
		}
		spec, _ := obj["spec"].(map[string]any)
		if spec == nil {
			continue
		}
		if _, ok := spec["clusterIP"]; ok {
			continue
		}
		spec["clusterIP"] = vip.String()
		out, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		docs[i] = append([]byte("\n"), out...)
	}
	return bytes.Join(docs, []byte("\n---")), nil
}

// endpointSlice is what the endpoint controller would write for httpbin
// (with the pod's targetRef in native mode, where the pod's identity
// matters).
func endpointSlice(pod netip.AddrPort, withPod bool) string {
	ref := ""
	if withPod {
		ref = "\n  targetRef: {kind: Pod, name: httpbin-demo, namespace: httpbin}"
	}
	return fmt.Sprintf(`# Written by the demo in place of the Kubernetes endpoint controller.
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-demo
  namespace: httpbin
  labels:
    kubernetes.io/service-name: httpbin
addressType: IPv4
ports:
- name: http
  port: %d
  protocol: TCP
endpoints:
- addresses: ["%s"]
  conditions:
    ready: true%s
`, pod.Port(), pod.Addr(), ref)
}

// walkthrough performs the README's requests and checks each outcome.
func (d *demo) walkthrough() error {
	d.say("\n## Send some traffic")
	d.say("$ kubectl -n httpbin exec $CLIENT -- curl -si httpbin:8000/get")
	r, err := d.curl("GET", "/get", true)
	if err != nil {
		return err
	}
	d.expect(r.status == 200, "GET /get: want 200, got %d", r.status)
	d.expect(r.header("traversed-waypoint") == "httpbin-waypoint",
		"GET /get: want header traversed-waypoint: httpbin-waypoint, got %q", r.header("traversed-waypoint"))

	d.say("\n## Istio Authorization Rules Demo")
	d.say("$ kubectl apply -f examples/waypoint/httpbin-authz.yaml")
	before := d.runner.Version()
	if err := d.copyExample("httpbin-authz.yaml"); err != nil {
		return err
	}
	if err := d.waitVersion(before); err != nil {
		return err
	}
	d.say("$ kubectl -n httpbin exec $CLIENT -- curl -si httpbin:8000/get")
	r, err = d.curl("GET", "/get", true)
	if err != nil {
		return err
	}
	d.expect(r.status == 403, "GET /get after the policy: want 403, got %d", r.status)
	d.expect(r.body == "RBAC: access denied", "GET /get after the policy: want body %q, got %q", "RBAC: access denied", r.body)
	d.expect(r.header("traversed-waypoint") == "httpbin-waypoint", "403: want header traversed-waypoint: httpbin-waypoint")
	d.expect(r.header("content-type") == "text/plain", "403: want content-type text/plain, got %q", r.header("content-type"))
	d.expect(r.header("content-length") == "19", "403: want content-length 19, got %q", r.header("content-length"))
	d.expect(r.header("server") == "envoy", "403: want server envoy, got %q", r.header("server"))

	d.say("$ kubectl -n httpbin exec $CLIENT -- curl -sI -XPOST httpbin:8000/post")
	r, err = d.curl("POST", "/post", false)
	if err != nil {
		return err
	}
	d.expect(r.status == 200, "POST /post: want 200, got %d", r.status)
	d.expect(r.header("traversed-waypoint") == "httpbin-waypoint", "POST /post: want header traversed-waypoint")
	d.expect(r.header("x-envoy-upstream-service-time") != "", "POST /post: want header x-envoy-upstream-service-time")
	d.expect(r.header("server") == "envoy", "POST /post: want server envoy, got %q", r.header("server"))

	if d.hbone {
		d.checkMesh()
	}
	if len(d.failures) > 0 {
		return fmt.Errorf("the walkthrough did not go as documented:\n  %s", strings.Join(d.failures, "\n  "))
	}
	return nil
}

func (d *demo) expect(ok bool, format string, args ...any) {
	if !ok {
		d.failures = append(d.failures, fmt.Sprintf(format, args...))
	}
}

// waitVersion waits until the waypoint has applied a configuration newer
// than before ("kubectl apply" has taken effect).
func (d *demo) waitVersion(before uint64) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if d.runner.Version() > before {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("the waypoint did not apply the new manifest within 5s")
}

// response is one HTTP response as received.
type response struct {
	status  int
	raw     string // status line and header lines, as on the wire
	headers http.Header
	body    string
}

func (r *response) header(name string) string { return r.headers.Get(name) }

// curl sends one request as the curl pod would (through its ztunnel) and
// prints it the way curl -si (withBody) or curl -sI (headers only) shows it.
func (d *demo) curl(method, path string, withBody bool) (*response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := netip.AddrPortFrom(curlPod, 40000+uint16(time.Now().UnixNano()%20000))
	var conn net.Conn
	var err error
	if d.hbone {
		conn, err = d.dialHBONE(ctx, src)
	} else {
		conn, err = meshclient.Dial(ctx, d.runner.InboundAddr().String(), meshclient.Conn{
			Source:      src,
			Destination: netip.AddrPortFrom(serviceVIP, servicePort),
			Identity:    curlIdentity,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to the waypoint: %w", err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: httpbin:%d\r\nUser-Agent: curl/8.11.1\r\nAccept: */*\r\n\r\n", method, path, servicePort)
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("reading the response: %w", err)
		}
		head.WriteString(line)
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	hreq, _ := http.NewRequest(method, "http://httpbin:8000"+path, nil)
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(head.Bytes()), br)), hreq)
	if err != nil {
		return nil, fmt.Errorf("parsing the response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	r := &response{status: resp.StatusCode, raw: head.String(), headers: resp.Header, body: string(body)}
	fmt.Fprint(d.out, strings.ReplaceAll(r.raw, "\r\n", "\n"))
	if withBody {
		fmt.Fprintln(d.out, strings.TrimRight(r.body, "\n"))
	}
	return r, nil
}
