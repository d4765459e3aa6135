package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	pb "sigs.k8s.io/gateway-api/conformance/echo-basic/grpcechoserver"
	"sigs.k8s.io/yaml"
)

// The conformance namespaces (conformance/utils/suite: MeshNamespace,
// MeshConsumerNamespace).
const (
	meshNS     = "gateway-conformance-mesh"
	consumerNS = "gateway-conformance-mesh-consumer"
)

// Container ports of the conformance echo pods (mesh/manifests.yaml runs
// echo-advanced with --port=8080 --grpc=7070) that the test pods serve. The
// others (9090 tcp, 8443 https) have no mesh conformance test.
const (
	containerHTTP = 8080
	containerGRPC = 7070
)

// pod is one echo pod of the conformance manifests, run in this process on a
// loopback "pod IP". Its container ports listen on ports the kernel picks;
// the EndpointSlices this file writes say where, as the endpoint controller
// would for a pod listening on its container ports.
type pod struct {
	Name      string
	Namespace string
	Labels    map[string]string
	IP        string

	ports map[int32]netip.AddrPort // container port -> where it really listens
}

// Pod names follow Deployment naming ({deployment}-{hash}-{hash}): the
// conformance suite checks the backend by prefix and its weight tests take
// the backend name by dropping the last two dash-separated parts.
var (
	echoV1 = &pod{Name: "echo-v1-6d4b8c5f7-k2x9q", Namespace: meshNS,
		Labels: map[string]string{"app": "echo", "version": "v1"}, IP: "127.0.151.1"}
	echoV2 = &pod{Name: "echo-v2-7f9c6d5b8-p4m7t", Namespace: meshNS,
		Labels: map[string]string{"app": "echo", "version": "v2"}, IP: "127.0.151.2"}
	consumerEchoV1 = &pod{Name: "echo-v1-5b7d9f8c6-w3n8r", Namespace: consumerNS,
		Labels: map[string]string{"app": "echo", "version": "v1"}, IP: "127.0.151.3"}
	pods = []*pod{echoV1, echoV2, consumerEchoV1}
)

// spiffe is the pod's identity: the conformance Deployments set no
// serviceAccountName, so it is the namespace's "default" service account.
func (p *pod) spiffe() string {
	return "spiffe://cluster.local/ns/" + p.Namespace + "/sa/default"
}

// startPods starts every pod's HTTP and gRPC echo servers.
func startPods() (stop func(), err error) {
	var closers []func()
	stop = func() {
		for _, c := range closers {
			c()
		}
	}
	for _, p := range pods {
		p.ports = map[int32]netip.AddrPort{}
		hl, err := net.Listen("tcp", p.IP+":0")
		if err != nil {
			stop()
			return nil, err
		}
		hs := &http.Server{Handler: echoHandler(p, containerHTTP), ReadHeaderTimeout: 5 * time.Second}
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		hs.Protocols = &protos
		go func() { _ = hs.Serve(hl) }()
		closers = append(closers, func() { _ = hs.Close() })
		p.ports[containerHTTP] = hl.Addr().(*net.TCPAddr).AddrPort()

		gl, err := net.Listen("tcp", p.IP+":0")
		if err != nil {
			stop()
			return nil, err
		}
		gs := grpc.NewServer()
		pb.RegisterGrpcEchoServer(gs, &grpcEcho{pod: p})
		go func() { _ = gs.Serve(gl) }()
		closers = append(closers, gs.Stop)
		p.ports[containerGRPC] = gl.Addr().(*net.TCPAddr).AddrPort()
	}
	return stop, nil
}

// echoReply is what the conformance echo server (echo-basic) answers: the
// request as it arrived and who answered it.
type echoReply struct {
	Path      string              `json:"path"` // the request URI, query included
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	HTTPPort  string              `json:"httpPort"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
}

func echoHandler(p *pod, port int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		js, err := json.MarshalIndent(echoReply{
			Path: r.RequestURI, Host: r.Host, Method: r.Method, Proto: r.Proto, Headers: r.Header,
			HTTPPort: fmt.Sprint(port), Namespace: p.Namespace, Pod: p.Name,
		}, "", " ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(js)
	})
}

// grpcEcho is the conformance gRPC echo service
// (gateway_api_conformance.echo_basic.grpcecho.GrpcEcho): Echo and EchoTwo
// answer with the request's metadata and the pod; EchoThree is
// unimplemented.
type grpcEcho struct {
	pb.UnimplementedGrpcEchoServer
	pod *pod
}

func (g *grpcEcho) Echo(ctx context.Context, _ *pb.EchoRequest) (*pb.EchoResponse, error) {
	return g.echo(ctx, "Echo")
}

func (g *grpcEcho) EchoTwo(ctx context.Context, _ *pb.EchoRequest) (*pb.EchoResponse, error) {
	return g.echo(ctx, "EchoTwo")
}

func (g *grpcEcho) echo(ctx context.Context, method string) (*pb.EchoResponse, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, errors.New("no metadata in the request")
	}
	a := &pb.Assertions{
		FullyQualifiedMethod: "/" + string(pb.File_grpcecho_proto.Services().ByName("GrpcEcho").FullName()) + "/" + method,
		Context:              &pb.Context{Namespace: g.pod.Namespace, Pod: g.pod.Name},
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range md[k] {
			if k == ":authority" {
				a.Authority = v
			}
			a.Headers = append(a.Headers, &pb.Header{Key: k, Value: v})
		}
	}
	return &pb.EchoResponse{Assertions: a}, nil
}

// cluster is what the manifests say about services: their VIPs, for DNS and
// for the client's ztunnel.
type cluster struct {
	services map[string]*corev1.Service // "namespace/name"
	vips     map[netip.Addr]*corev1.Service
}

// loadCluster reads the Services of a manifest file.
func loadCluster(path string) (*cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &cluster{services: map[string]*corev1.Service{}, vips: map[netip.Addr]*corev1.Service{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, err
		}
		if head.Kind != "Service" {
			continue
		}
		svc := &corev1.Service{}
		if err := yaml.Unmarshal(doc, svc); err != nil {
			return nil, err
		}
		vip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s: clusterIP: %w", svc.Namespace, svc.Name, err)
		}
		c.services[svc.Namespace+"/"+svc.Name] = svc
		c.vips[vip] = svc
	}
}

// endpointSlices is what the endpoint controller writes for the services and
// the pods: one slice per (service, pod) since each pod's container ports
// listen on their own real ports.
func (c *cluster) endpointSlices() (string, error) {
	keys := make([]string, 0, len(c.services))
	for k := range c.services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		svc := c.services[k]
		for _, p := range pods {
			if p.Namespace != svc.Namespace || !selects(svc.Spec.Selector, p.Labels) {
				continue
			}
			var ports []string
			for _, sp := range svc.Spec.Ports {
				target := sp.Port
				if sp.TargetPort.IntValue() != 0 {
					target = int32(sp.TargetPort.IntValue())
				} else if sp.TargetPort.StrVal != "" {
					return "", fmt.Errorf("service %s: named targetPort %q is not supported by the test cluster", k, sp.TargetPort.StrVal)
				}
				listen, ok := p.ports[target]
				if !ok {
					continue // the test pod does not serve that container port
				}
				ports = append(ports, fmt.Sprintf("{name: %s, port: %d, protocol: TCP}", sp.Name, listen.Port()))
			}
			fmt.Fprintf(&b, `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-%s
  namespace: %s
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [%s]
endpoints:
- addresses: [%q]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: %s, name: %s}
`, svc.Name, p.Name, svc.Namespace, svc.Name, strings.Join(ports, ", "), p.IP, p.Namespace, p.Name)
		}
	}
	return b.String(), nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolve is cluster DNS for a client in namespace ns: "svc", "svc.ns",
// "svc.ns.svc" and "svc.ns.svc.cluster.local" name a service's VIP; an IP is
// itself.
func (c *cluster) resolve(ns, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	name := strings.TrimSuffix(strings.TrimSuffix(host, ".cluster.local"), ".svc")
	svcName, svcNS, found := strings.Cut(name, ".")
	if !found {
		svcNS = ns
	}
	svc := c.services[svcNS+"/"+svcName]
	if svc == nil {
		return netip.Addr{}, fmt.Errorf("DNS: no such host %q (from namespace %s)", host, ns)
	}
	return netip.MustParseAddr(svc.Spec.ClusterIP), nil
}

// podByIP finds a pod by its IP.
func podByIP(ip netip.Addr) *pod {
	for _, p := range pods {
		if p.IP == ip.String() {
			return p
		}
	}
	return nil
}
