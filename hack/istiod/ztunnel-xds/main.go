// Command ztunnel-xds asks istiod what it tells a ztunnel: it opens istiod's
// plaintext xDS port (15010) as a ztunnel does (delta ADS, wildcard
// subscriptions to istio.workload.Address and istio.security.Authorization,
// a node ID of the form ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local with
// the metadata ztunnel sends), waits for istiod's first answer to each
// subscription (the whole state of the world), ACKs it and prints it as one
// JSON document on stdout:
//
//	{"services": [...], "workloads": [...], "authorizations": [...]}
//
// Services and workloads are summarized (addresses as text, the waypoint as
// "ns/hostname" or "ip", the application tunnel istiod sets on waypoint
// instances from ambient.istio.io/waypoint-inbound-binding), each with the
// full resource as istiod sent it under "raw" (protojson).
//
// The plaintext port does no authentication, so no certificate or token is
// needed; istiod refuses a ztunnel node only when ambient is off
// (PILOT_ENABLE_AMBIENT=true).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

const (
	addressType       = "type.googleapis.com/istio.workload.Address"
	authorizationType = "type.googleapis.com/istio.security.Authorization"
)

// Output is what the command prints.
type Output struct {
	Services       []Service       `json:"services"`
	Workloads      []Workload      `json:"workloads"`
	Authorizations []Authorization `json:"authorizations"`
}

// Service is an istio.workload.Service, summarized.
type Service struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Hostname  string   `json:"hostname"`
	Addresses []string `json:"addresses"`
	Ports     []Port   `json:"ports"`
	// Waypoint is "namespace/hostname" or an IP; "" when none.
	Waypoint           string             `json:"waypoint"`
	WaypointHBONEPort  uint32             `json:"waypointHbonePort,omitempty"`
	WeightedWaypoints  []WeightedWaypoint `json:"weightedWaypoints,omitempty"`
	IngressUseWaypoint bool               `json:"ingressUseWaypoint,omitempty"`
	Raw                json.RawMessage    `json:"raw"`
}

// WeightedWaypoint is one waypoint of a canary.
type WeightedWaypoint struct {
	Waypoint string `json:"waypoint"`
	Weight   uint32 `json:"weight"`
}

// Port is a service port.
type Port struct {
	ServicePort uint32 `json:"servicePort"`
	TargetPort  uint32 `json:"targetPort"`
}

// Workload is an istio.workload.Workload, summarized.
type Workload struct {
	UID            string   `json:"uid"`
	Name           string   `json:"name"`
	Namespace      string   `json:"namespace"`
	Addresses      []string `json:"addresses"`
	ServiceAccount string   `json:"serviceAccount"`
	// TunnelProtocol is HBONE for a workload in the ambient mesh, NONE
	// otherwise.
	TunnelProtocol    string `json:"tunnelProtocol"`
	Waypoint          string `json:"waypoint"`
	WaypointHBONEPort uint32 `json:"waypointHbonePort,omitempty"`
	// ApplicationTunnel is what the workload's own ztunnel does with
	// inbound HBONE: "PROXY/15088" (sandwich) or "" (none).
	ApplicationTunnel string `json:"applicationTunnel"`
	// Services are the "namespace/hostname" keys of the services the
	// workload backs.
	Services []string        `json:"services"`
	Status   string          `json:"status"`
	Raw      json.RawMessage `json:"raw"`
}

// Authorization is an istio.security.Authorization, summarized.
type Authorization struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Scope     string          `json:"scope"`
	Action    string          `json:"action"`
	Raw       json.RawMessage `json:"raw"`
}

func main() {
	addr := flag.String("address", "127.0.0.1:15010", "istiod's plaintext xDS address")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for istiod's answers")
	ip := flag.String("ip", "10.0.0.2", "the ztunnel pod's IP (INSTANCE_IP)")
	pod := flag.String("pod", "ztunnel-e2e", "the ztunnel pod's name (POD_NAME)")
	ns := flag.String("namespace", "istio-system", "the ztunnel pod's namespace (POD_NAMESPACE)")
	node := flag.String("node", "node-e2e", "the node the ztunnel runs on (NODE_NAME)")
	cluster := flag.String("cluster-id", "Kubernetes", "CLUSTER_ID metadata")
	authz := flag.Bool("authorization", true, "also subscribe to istio.security.Authorization")
	flag.Parse()
	out, err := run(*addr, *timeout, nodeOf(*ip, *pod, *ns, *node, *cluster), *authz)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel-xds:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel-xds:", err)
		os.Exit(1)
	}
}

// nodeOf is the node ztunnel sends (src/xds/client.rs): its ID and the
// metadata NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME, plus the proxy
// metadata ztunnel's config adds (CLUSTER_ID, ISTIO_VERSION).
func nodeOf(ip, pod, ns, node, cluster string) *core.Node {
	md, _ := structpb.NewStruct(map[string]any{
		"NAME":          pod,
		"NAMESPACE":     ns,
		"INSTANCE_IPS":  ip,
		"NODE_NAME":     node,
		"CLUSTER_ID":    cluster,
		"ISTIO_VERSION": "1.31.0",
	})
	return &core.Node{
		Id:       fmt.Sprintf("ztunnel~%s~%s.%s~%s.svc.cluster.local", ip, pod, ns, ns),
		Metadata: md,
	}
}

func run(addr string, timeout time.Duration, node *core.Node, withAuthz bool) (*Output, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(200<<20)))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the delta ADS stream to %s: %w", addr, err)
	}
	want := []string{addressType}
	if withAuthz {
		want = append(want, authorizationType)
	}
	// Wildcard subscriptions: no resource names, as ztunnel sends them when
	// on-demand is off. The node goes on the first request only.
	for i, typ := range want {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return nil, fmt.Errorf("subscribing to %s: %w", typ, err)
		}
	}
	out := &Output{Services: []Service{}, Workloads: []Workload{}, Authorizations: []Authorization{}}
	pending := map[string]bool{}
	for _, typ := range want {
		pending[typ] = true
	}
	for len(pending) > 0 {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("no answer from istiod for %v within %v", keys(pending), timeout)
			}
			return nil, fmt.Errorf("receiving: %w", err)
		}
		if !pending[resp.GetTypeUrl()] {
			// A push after the first answer: this tool reports the first.
			continue
		}
		delete(pending, resp.GetTypeUrl())
		if err := add(out, resp); err != nil {
			return nil, err
		}
		// ACK, as ztunnel does.
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return nil, fmt.Errorf("ACK: %w", err)
		}
	}
	_ = stream.CloseSend()
	slices.SortFunc(out.Services, func(a, b Service) int { return strings.Compare(a.Namespace+"/"+a.Hostname, b.Namespace+"/"+b.Hostname) })
	slices.SortFunc(out.Workloads, func(a, b Workload) int {
		return strings.Compare(a.Namespace+"/"+a.Name+"/"+a.UID, b.Namespace+"/"+b.Name+"/"+b.UID)
	})
	slices.SortFunc(out.Authorizations, func(a, b Authorization) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	return out, nil
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

func add(out *Output, resp *discovery.DeltaDiscoveryResponse) error {
	for _, r := range resp.GetResources() {
		switch resp.GetTypeUrl() {
		case addressType:
			var a workloadapi.Address
			if err := r.GetResource().UnmarshalTo(&a); err != nil {
				return fmt.Errorf("resource %s: %w", r.GetName(), err)
			}
			if s := a.GetService(); s != nil {
				out.Services = append(out.Services, service(s))
			}
			if w := a.GetWorkload(); w != nil {
				out.Workloads = append(out.Workloads, workload(w))
			}
		case authorizationType:
			var p security.Authorization
			if err := r.GetResource().UnmarshalTo(&p); err != nil {
				return fmt.Errorf("resource %s: %w", r.GetName(), err)
			}
			out.Authorizations = append(out.Authorizations, Authorization{
				Name: p.GetName(), Namespace: p.GetNamespace(), Scope: p.GetScope().String(),
				Action: p.GetAction().String(), Raw: raw(&p),
			})
		}
	}
	return nil
}

func service(s *workloadapi.Service) Service {
	out := Service{
		Name: s.GetName(), Namespace: s.GetNamespace(), Hostname: s.GetHostname(),
		Addresses: []string{}, Ports: []Port{}, IngressUseWaypoint: s.GetIngressUseWaypoint(), Raw: raw(s),
	}
	for _, a := range s.GetAddresses() {
		out.Addresses = append(out.Addresses, ipString(a.GetAddress()))
	}
	for _, p := range s.GetPorts() {
		out.Ports = append(out.Ports, Port{ServicePort: p.GetServicePort(), TargetPort: p.GetTargetPort()})
	}
	out.Waypoint, out.WaypointHBONEPort = gateway(s.GetWaypoint())
	for _, w := range s.GetWeightedWaypoints() {
		name, _ := gateway(w.GetDestination())
		out.WeightedWaypoints = append(out.WeightedWaypoints, WeightedWaypoint{Waypoint: name, Weight: w.GetWeight()})
	}
	return out
}

func workload(w *workloadapi.Workload) Workload {
	out := Workload{
		UID: w.GetUid(), Name: w.GetName(), Namespace: w.GetNamespace(), Addresses: []string{},
		ServiceAccount: w.GetServiceAccount(), TunnelProtocol: w.GetTunnelProtocol().String(),
		Services: []string{}, Status: w.GetStatus().String(), Raw: raw(w),
	}
	for _, a := range w.GetAddresses() {
		out.Addresses = append(out.Addresses, ipString(a))
	}
	out.Waypoint, out.WaypointHBONEPort = gateway(w.GetWaypoint())
	if t := w.GetApplicationTunnel(); t != nil {
		out.ApplicationTunnel = fmt.Sprintf("%s/%d", t.GetProtocol(), t.GetPort())
	}
	for k := range w.GetServices() {
		out.Services = append(out.Services, k)
	}
	slices.Sort(out.Services)
	return out
}

func gateway(g *workloadapi.GatewayAddress) (string, uint32) {
	if g == nil {
		return "", 0
	}
	if h := g.GetHostname(); h != nil {
		return h.GetNamespace() + "/" + h.GetHostname(), g.GetHboneMtlsPort()
	}
	return ipString(g.GetAddress().GetAddress()), g.GetHboneMtlsPort()
}

func ipString(b []byte) string {
	if a, ok := netip.AddrFromSlice(b); ok {
		return a.String()
	}
	return fmt.Sprintf("invalid(%x)", b)
}

func raw(m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(err.Error())
	}
	return b
}
