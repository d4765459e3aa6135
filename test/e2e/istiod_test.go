package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/kubetest"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// captureCase is one row of TestIstiodCapture: objects to apply, the
// waypoint Gateway they are about, and what istiod must assign to it (the
// same as what our waypoint serves).
type captureCase struct {
	name     string
	gateway  ir.NamespacedName
	manifest string
	// services are the "namespace/hostname" of the services (and
	// ServiceEntry hosts) bound to the Gateway.
	services []string
	// workloads are the "namespace/name" of the pods bound to it.
	workloads []string
}

// captureCases are the capture rules (issue 17), most with an object that
// binds and one that does not. New rules are new rows.
func captureCases() []captureCase {
	return []captureCase{{
		// The seed walkthrough: the namespace's istio.io/use-waypoint.
		name:     "namespace-label",
		gateway:  ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"},
		manifest: "examples", // examples/waypoint/httpbin-mesh.yaml and waypoint-gw.yaml
		services: []string{"httpbin/httpbin.httpbin.svc.cluster.local"},
	}, {
		// The Service's own label; a Service without one is not bound.
		name:    "service-label",
		gateway: ir.NamespacedName{Namespace: "cap-svc", Name: "wp"},
		manifest: namespace("cap-svc", nil) + waypointGateway("cap-svc", "wp", "Same", nil, nil) +
			app("cap-svc", "bound", map[string]string{"istio.io/use-waypoint": "wp"}) +
			app("cap-svc", "plain", nil),
		services: []string{"cap-svc/bound.cap-svc.svc.cluster.local"},
	}, {
		// istio.io/use-waypoint: none on a Service opts out of its
		// namespace's waypoint.
		name:    "none",
		gateway: ir.NamespacedName{Namespace: "cap-none", Name: "wp"},
		manifest: namespace("cap-none", map[string]string{"istio.io/use-waypoint": "wp"}) +
			waypointGateway("cap-none", "wp", "Same", nil, nil) +
			app("cap-none", "bound", nil) +
			app("cap-none", "optout", map[string]string{"istio.io/use-waypoint": "none"}),
		services: []string{"cap-none/bound.cap-none.svc.cluster.local"},
	}, {
		// istio.io/use-waypoint-namespace names a waypoint in another
		// namespace; its listener admits All namespaces.
		name:    "use-waypoint-namespace",
		gateway: ir.NamespacedName{Namespace: "cap-xns-wp", Name: "wp"},
		manifest: namespace("cap-xns-wp", nil) + waypointGateway("cap-xns-wp", "wp", "All", nil, nil) +
			namespace("cap-xns-a", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "cap-xns-wp"}) +
			app("cap-xns-a", "bound", nil),
		services: []string{"cap-xns-a/bound.cap-xns-a.svc.cluster.local"},
	}, {
		// The same with allowedRoutes Same: the other namespace's Service
		// is refused, the waypoint's own namespace's is bound.
		name:    "use-waypoint-namespace-denied",
		gateway: ir.NamespacedName{Namespace: "cap-deny-wp", Name: "wp"},
		manifest: namespace("cap-deny-wp", nil) + waypointGateway("cap-deny-wp", "wp", "Same", nil, nil) +
			app("cap-deny-wp", "local", map[string]string{"istio.io/use-waypoint": "wp"}) +
			namespace("cap-deny-a", nil) +
			app("cap-deny-a", "denied", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "cap-deny-wp"}),
		services: []string{"cap-deny-wp/local.cap-deny-wp.svc.cluster.local"},
	}, {
		// allowedRoutes from a Selector: only the namespace it matches.
		name:    "use-waypoint-namespace-selector",
		gateway: ir.NamespacedName{Namespace: "cap-sel-wp", Name: "wp"},
		manifest: namespace("cap-sel-wp", nil) + waypointGateway("cap-sel-wp", "wp", "Selector", map[string]string{"team": "a"}, nil) +
			namespace("cap-sel-a", map[string]string{"team": "a", "istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "cap-sel-wp"}) +
			app("cap-sel-a", "svc", nil) +
			namespace("cap-sel-b", map[string]string{"team": "b", "istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "cap-sel-wp"}) +
			app("cap-sel-b", "svc", nil),
		services: []string{"cap-sel-a/svc.cap-sel-a.svc.cluster.local"},
	}, {
		// A ServiceEntry with spec.addresses takes its namespace's waypoint
		// like a Service; one labelled none does not.
		name:    "serviceentry",
		gateway: ir.NamespacedName{Namespace: "cap-se", Name: "wp"},
		manifest: namespace("cap-se", map[string]string{"istio.io/use-waypoint": "wp"}) +
			waypointGateway("cap-se", "wp", "Same", nil, nil) +
			serviceEntry("cap-se", "api", "api.example.com", "240.240.0.10", nil) +
			serviceEntry("cap-se", "optout", "optout.example.com", "240.240.0.11", map[string]string{"istio.io/use-waypoint": "none"}),
		services: []string{"cap-se/api.example.com"},
	}, {
		// A ServiceEntry without spec.addresses: istiod allocates its VIP
		// (status.addresses, PILOT_ENABLE_IP_AUTOALLOCATE), and both must
		// give the service that VIP.
		name:    "serviceentry-auto-allocated",
		gateway: ir.NamespacedName{Namespace: "cap-sea", Name: "wp"},
		manifest: namespace("cap-sea", map[string]string{"istio.io/use-waypoint": "wp"}) +
			waypointGateway("cap-sea", "wp", "Same", nil, nil) +
			strings.Replace(serviceEntry("cap-sea", "auto", "auto.example.com", "", nil), "  addresses: []\n", "", 1),
		services: []string{"cap-sea/auto.example.com"},
	}, {
		// istio.io/waypoint-for: none on the Gateway: no traffic at all,
		// though the namespace names the waypoint.
		name:    "waypoint-for-none",
		gateway: ir.NamespacedName{Namespace: "cap-wfn", Name: "wp"},
		manifest: namespace("cap-wfn", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-wfn", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "none"}) +
			app("cap-wfn", "svc", nil),
		services: []string{},
	}, {
		// waypoint-for: all: the namespace's services and its pods.
		name:    "waypoint-for-all",
		gateway: ir.NamespacedName{Namespace: "cap-wfa", Name: "wp"},
		manifest: namespace("cap-wfa", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-wfa", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "all"}) +
			app("cap-wfa", "svc", nil),
		services:  []string{"cap-wfa/svc.cap-wfa.svc.cluster.local"},
		workloads: []string{"cap-wfa/svc-e2e"},
	}, {
		// waypoint-for: workload: the pods only.
		name:    "waypoint-for-workload",
		gateway: ir.NamespacedName{Namespace: "cap-wfw", Name: "wp"},
		manifest: namespace("cap-wfw", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-wfw", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "workload"}) +
			app("cap-wfw", "svc", nil),
		services:  []string{},
		workloads: []string{"cap-wfw/svc-e2e"},
	}, {
		// A Pod's own istio.io/use-waypoint (a workload waypoint); a pod
		// without one, in a namespace that names no waypoint, is not bound.
		name:    "pod-label",
		gateway: ir.NamespacedName{Namespace: "cap-pod", Name: "wp"},
		manifest: namespace("cap-pod", map[string]string{"istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-pod", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "workload"}) +
			appPodLabels("cap-pod", "bound", nil, map[string]string{"istio.io/use-waypoint": "wp"}) +
			app("cap-pod", "plain", nil),
		services:  []string{},
		workloads: []string{"cap-pod/bound-e2e"},
	}, {
		// A Pod's istio.io/use-waypoint: none opts out of its namespace's
		// workload waypoint.
		name:    "pod-none",
		gateway: ir.NamespacedName{Namespace: "cap-podn", Name: "wp"},
		manifest: namespace("cap-podn", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-podn", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "workload"}) +
			app("cap-podn", "bound", nil) +
			appPodLabels("cap-podn", "optout", nil, map[string]string{"istio.io/use-waypoint": "none"}),
		services:  []string{},
		workloads: []string{"cap-podn/bound-e2e"},
	}, {
		// A WorkloadEntry's own istio.io/use-waypoint; one without it is
		// not bound.
		name:    "workloadentry-label",
		gateway: ir.NamespacedName{Namespace: "cap-we", Name: "wp"},
		manifest: namespace("cap-we", map[string]string{"istio.io/dataplane-mode": "ambient"}) +
			waypointGateway("cap-we", "wp", "Same", nil, map[string]string{"istio.io/waypoint-for": "workload"}) +
			workloadEntry("cap-we", "vm", "10.244.253.1", map[string]string{"istio.io/use-waypoint": "wp"}) +
			workloadEntry("cap-we", "vm-plain", "10.244.253.2", nil),
		services:  []string{},
		workloads: []string{"cap-we/vm"},
	}, {
		// Native mode (an HBONE listener): the waypoint terminates HBONE
		// itself, so its own pod is outside the mesh.
		name:    "native-hbone",
		gateway: ir.NamespacedName{Namespace: "cap-nat", Name: "wp"},
		manifest: namespace("cap-nat", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/dataplane-mode": "ambient"}) +
			strings.Replace(strings.Replace(waypointGateway("cap-nat", "wp", "Same", nil, nil),
				"protocol: istio.io/PROXY", "protocol: HBONE", 1), "port: 15088", "port: 15008", 1) +
			app("cap-nat", "svc", nil),
		services: []string{"cap-nat/svc.cap-nat.svc.cluster.local"},
	}, {
		// The weighted canary of Istio 1.31: a Service names a primary and
		// a canary waypoint (and the canary's share); istiod lists both as
		// its weighted waypoints, so both must serve it. The canary serves
		// only that Service, the primary both.
		name:     "canary",
		gateway:  ir.NamespacedName{Namespace: "cap-can", Name: "wp2"},
		manifest: canaryManifest(),
		services: []string{"cap-can/svc.cap-can.svc.cluster.local"},
	}, {
		name:     "canary-primary",
		gateway:  ir.NamespacedName{Namespace: "cap-can", Name: "wp"},
		manifest: canaryManifest(),
		services: []string{"cap-can/svc.cap-can.svc.cluster.local", "cap-can/other.cap-can.svc.cluster.local"},
	}, {
		// A headless Service takes its namespace's waypoint like any other.
		name:    "headless",
		gateway: ir.NamespacedName{Namespace: "cap-hl", Name: "wp"},
		manifest: namespace("cap-hl", map[string]string{"istio.io/use-waypoint": "wp"}) +
			waypointGateway("cap-hl", "wp", "Same", nil, nil) +
			strings.Replace(app("cap-hl", "db", nil), "spec:\n  ports:", "spec:\n  clusterIP: None\n  ports:", 1),
		services: []string{"cap-hl/db.cap-hl.svc.cluster.local"},
	}}
}

// TestIstiodCapture puts the real istiod in the loop: istiod decides which
// traffic ztunnel sends to a waypoint, so for every capture rule the
// services and workloads istiod assigns to our Gateway must be exactly those
// our waypoint serves, and the waypoint's own pods must be what the
// sandwich needs (an application tunnel to our PROXY listener).
//
// It runs the real kube-apiserver and etcd, the real istiod
// (pilot-discovery, built by hack/istiod/build.sh, ambient on, on free
// loopback ports, no CA and no webhooks), the controller process as the
// chart runs it, and asks istiod over its plaintext xDS port what a ztunnel
// is told (hack/istiod's ztunnel-xds). Ours is what the controller's xDS
// serves the Gateway's proxy (the proxy's own xDS client, with a token of
// the waypoint's ServiceAccount).
//
// Stood in for, because they cannot run here: the kubelet (this test
// creates each Deployment's Pod and writes its status: pod IP, Running,
// Ready, and the Deployment's ready replica), the endpoint controller
// (this test writes the EndpointSlices) and the istio-cni node agent (the
// ambient.istio.io/redirection annotation on the pods it would capture). The pod IPs are only data: no
// traffic is sent to them.
func TestIstiodCapture(t *testing.T) {
	bins := istiodBinaries(t)
	assets := kubetest.Skip(t)
	env := kubetest.Start(t, kubetest.All)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// istiod's mesh config, read from its ConfigMap by istiod and by our
	// controller alike.
	kubectl(`apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: istio-system
    trustDomain: cluster.local
`, "apply", "-f", "-")
	grpcAddr := startIstiod(t, bins, kubeconfig, dir)
	xdsAddr := startChartController(t, env, kubectl, assets, kubeconfig, dir)

	kube := newStandIn(env.Clientset)
	for _, c := range captureCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.manifest == "examples" {
				kubectl("", "apply", "-f", "../../examples/waypoint/httpbin-mesh.yaml", "-f", "../../examples/waypoint/waypoint-gw.yaml")
			} else {
				kubectl(c.manifest, "apply", "-f", "-")
			}
			nss := manifestNamespaces(c)
			// The controller deploys the waypoint; the stand-ins run it.
			waitFor(t, 30*time.Second, "the waypoint Deployment", func() bool {
				_, err := env.Clientset.AppsV1().Deployments(c.gateway.Namespace).Get(context.Background(), c.gateway.Name, metav1.GetOptions{})
				return err == nil
			})
			waitFor(t, 30*time.Second, "the waypoint Service", func() bool {
				_, err := env.Clientset.CoreV1().Services(c.gateway.Namespace).Get(context.Background(), c.gateway.Name, metav1.GetOptions{})
				return err == nil
			})
			kube.run(t, nss)
			waitFor(t, 30*time.Second, "the Gateway's status.addresses", func() bool {
				out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "-n", c.gateway.Namespace,
					"get", "gateway", c.gateway.Name, "-o", "jsonpath={.status.addresses[0].value}").Output()
				return err == nil && len(out) > 0
			})

			ours := subscribe(t, xdsAddr, c.gateway, kubectl)
			gwAddr := c.gateway.Namespace + "/" + c.gateway.Name + "." + c.gateway.Namespace + ".svc.cluster.local"
			wpPod := kube.podName(c.gateway.Namespace, c.gateway.Name)
			var last string
			ok := poll(60*time.Second, func() bool {
				told, raw, err := askIstiod(bins, grpcAddr)
				if err != nil {
					last = err.Error()
					return false
				}
				w := ours.current()
				if w == nil {
					last = "our xDS has served no configuration yet\nistiod: " + raw
					return false
				}
				got := assignedBy(told, gwAddr)
				mine := servedBy(w)
				inst, instOK := waypointInstance(told, c.gateway.Namespace, wpPod, w)
				last = fmt.Sprintf("istiod assigns %v\n  at %v\nwe serve       %v\n  at %v\nthe row wants  %v\nwaypoint instance: %s\nistiod said: %s",
					got, got.Addresses, mine, mine.Addresses, captured{Services: c.services, Workloads: c.workloads}, inst, raw)
				return got.equal(mine) && got.sameAddresses(mine) && got.equal(captured{Services: c.services, Workloads: c.workloads}) && instOK
			})
			if !ok {
				t.Fatalf("istiod and our waypoint disagree (or the row's expectation is not met):\n%s", last)
			}
			t.Logf("agreed: %s", strings.SplitN(last, "\nistiod said:", 2)[0])
		})
	}
}

// captured is what is bound to one waypoint.
type captured struct {
	Services  []string
	Workloads []string
	// Addresses are the IPs of each of them (by the same key): the
	// service's VIPs, the workload's IPs.
	Addresses map[string][]string
}

func (c captured) equal(o captured) bool {
	norm := func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return slices.Compact(s)
	}
	return slices.Equal(norm(c.Services), norm(o.Services)) && slices.Equal(norm(c.Workloads), norm(o.Workloads))
}

// sameAddresses reports whether both give each service and workload the
// same addresses.
func (c captured) sameAddresses(o captured) bool {
	norm := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			v = slices.Clone(v)
			slices.Sort(v)
			out[k] = strings.Join(v, ",")
		}
		return out
	}
	a, b := norm(c.Addresses), norm(o.Addresses)
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (c captured) String() string {
	return fmt.Sprintf("services %v, workloads %v", c.Services, c.Workloads)
}

// ztunnelView is what hack/istiod's ztunnel-xds prints (the fields this
// test reads).
type ztunnelView struct {
	Services []struct {
		Namespace, Hostname, Waypoint string
		Addresses                     []string
		WaypointHBONEPort             uint32 `json:"waypointHbonePort"`
		WeightedWaypoints             []weightedWaypoint
	}
	Workloads []struct {
		Name, Namespace, Waypoint, ApplicationTunnel, TunnelProtocol string
		Addresses                                                    []string
		WaypointHBONEPort                                            uint32 `json:"waypointHbonePort"`
	}
}

// weightedWaypoint is one waypoint of a canary and its share.
type weightedWaypoint struct {
	Waypoint string
	Weight   uint32
}

// assignedBy is what istiod tells ztunnel to send to the waypoint gwAddr
// ("namespace/hostname"), through its HBONE port: as a service's or
// workload's waypoint, or as one of a service's weighted (canary)
// waypoints, which must serve it whatever its weight.
func assignedBy(v *ztunnelView, gwAddr string) captured {
	c := captured{Services: []string{}, Workloads: []string{}, Addresses: map[string][]string{}}
	for _, s := range v.Services {
		weighted := slices.ContainsFunc(s.WeightedWaypoints, func(w weightedWaypoint) bool { return w.Waypoint == gwAddr })
		if s.Waypoint == gwAddr && s.WaypointHBONEPort == 15008 || weighted {
			k := s.Namespace + "/" + s.Hostname
			c.Services = append(c.Services, k)
			c.Addresses[k] = s.Addresses
		}
	}
	for _, w := range v.Workloads {
		if w.Waypoint == gwAddr && w.WaypointHBONEPort == 15008 {
			k := w.Namespace + "/" + w.Name
			c.Workloads = append(c.Workloads, k)
			c.Addresses[k] = w.Addresses
		}
	}
	return c
}

// servedBy is what our waypoint's configuration serves: its services (by
// hostname) and its workloads (pod-addressed traffic).
func servedBy(w *ir.Waypoint) captured {
	c := captured{Services: []string{}, Workloads: []string{}, Addresses: map[string][]string{}}
	for _, s := range w.Services {
		k := s.Namespace + "/" + s.Hostname
		c.Services = append(c.Services, k)
		c.Addresses[k] = s.VIPs
	}
	for _, wl := range w.Workloads {
		k := wl.Namespace + "/" + wl.Name
		c.Workloads = append(c.Workloads, k)
		c.Addresses[k] = wl.Addresses
	}
	return c
}

// waypointInstance checks the workload entry istiod sends for the
// waypoint's own pod, with no waypoint of its own. In sandwich mode its
// ztunnel must terminate the tunnel (HBONE) and pass the traffic on with the
// application tunnel of ambient.istio.io/waypoint-inbound-binding: PROXY to
// our InboundPort. In native mode the pod must be outside the mesh (NONE:
// the waypoint terminates HBONE itself); no ztunnel serves its inbound, so
// the application tunnel istiod still derives from the GatewayClass's
// annotation is not used, and only reported.
func waypointInstance(v *ztunnelView, ns, pod string, w *ir.Waypoint) (string, bool) {
	for _, wl := range v.Workloads {
		if wl.Namespace != ns || wl.Name != pod {
			continue
		}
		if w.HBONE {
			s := fmt.Sprintf("%s/%s tunnel %s (want NONE: native), applicationTunnel %q (unused), waypoint %q",
				ns, pod, wl.TunnelProtocol, wl.ApplicationTunnel, wl.Waypoint)
			return s, wl.TunnelProtocol == "NONE" && wl.Waypoint == ""
		}
		want := fmt.Sprintf("PROXY/%d", w.InboundPort)
		s := fmt.Sprintf("%s/%s tunnel %s, applicationTunnel %q (want %q), waypoint %q",
			ns, pod, wl.TunnelProtocol, wl.ApplicationTunnel, want, wl.Waypoint)
		return s, wl.TunnelProtocol == "HBONE" && wl.ApplicationTunnel == want && wl.Waypoint == ""
	}
	return fmt.Sprintf("istiod sends no workload for %s/%s", ns, pod), false
}

// askIstiod runs ztunnel-xds once: the whole state a ztunnel is told.
func askIstiod(bins, grpcAddr string) (*ztunnelView, string, error) {
	out, err := exec.Command(filepath.Join(bins, "ztunnel-xds"), "--address", grpcAddr, "--timeout", "10s").Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		return nil, "", fmt.Errorf("ztunnel-xds: %s", msg)
	}
	var v ztunnelView
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, "", fmt.Errorf("ztunnel-xds output: %v", err)
	}
	return &v, summarize(out), nil
}

// summarize keeps ztunnel-xds's output readable in a failure: the
// summaries without the raw resources.
func summarize(out []byte) string {
	var doc map[string][]map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		return string(out)
	}
	for _, list := range doc {
		for _, o := range list {
			delete(o, "raw")
		}
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}

// poll checks cond every 200ms for up to d.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// istiodBinaries finds pilot-discovery and ztunnel-xds, built by
// hack/istiod/build.sh (hack/test.sh sets ISTIOD_BIN_DIR), or skips.
func istiodBinaries(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ISTIOD_BIN_DIR")
	if dir == "" {
		t.Skip("ISTIOD_BIN_DIR is unset: this test runs the real istiod; run hack/test.sh, " +
			"or: export ISTIOD_BIN_DIR=$(hack/istiod/build.sh) (about 9 minutes the first time)")
	}
	for _, b := range []string{"pilot-discovery", "ztunnel-xds"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("ISTIOD_BIN_DIR=%s has no %s (%v): run hack/istiod/build.sh", dir, b, err)
		}
	}
	return dir
}

// startIstiod runs pilot-discovery against the API server with ambient on,
// on free loopback ports: plaintext xDS (--grpcAddr, what this test asks),
// HTTP (--httpAddr: /ready, and the webhooks multiplexed there as
// --httpsAddr is off), monitoring; no secure xDS port, no CA, no webhook
// configurations patched, no GatewayClasses or deployments of its own. It
// returns the plaintext xDS address once istiod is ready.
func startIstiod(t *testing.T, bins, kubeconfig, dir string) string {
	t.Helper()
	return runIstiod(t, bins, kubeconfig, dir, false).grpc
}

// istiodAddrs are a running istiod's listeners.
type istiodAddrs struct {
	// grpc is the plaintext xDS port (--grpcAddr).
	grpc string
	// secureGRPC is the TLS port (--secureGRPCAddr, 15012 in a cluster):
	// xDS and the CA. Empty without the CA.
	secureGRPC string
}

// runIstiod runs pilot-discovery as startIstiod says; with ca, istiod's
// CA is on as in a default install (ENABLE_CA_SERVER, PILOT_CERT_PROVIDER
// istiod): a self-signed root it keeps in the istio-ca-secret Secret and
// copies to every namespace's istio-ca-root-cert ConfigMap, its own serving
// certificate signed by it for its DNS names (istiod.istio-system.svc and
// the rest of getDNSNames), and the CA service on the secure gRPC port,
// authenticating callers by TokenReview of their audience-istio-ca token.
func runIstiod(t *testing.T, bins, kubeconfig, dir string, ca bool) istiodAddrs {
	t.Helper()
	addrs := istiodAddrs{grpc: freeAddr(t, "127.0.0.1")}
	httpAddr, monAddr := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	certEnv := []string{"ENABLE_CA_SERVER=false", "PILOT_CERT_PROVIDER=none"}
	if ca {
		addrs.secureGRPC = freeAddr(t, "127.0.0.1")
		certEnv = []string{
			"ENABLE_CA_SERVER=true",
			"PILOT_CERT_PROVIDER=istiod",
			// What the CA accepts a token for (the default, said out loud:
			// the agent's JWT_POLICY third-party-jwt asks for it).
			"TOKEN_AUDIENCES=istio-ca",
			// Relative to cmd.Dir, so absent: no plug-in CA certificates,
			// hence the self-signed root in istio-ca-secret.
			"ROOT_CA_DIR=./etc/cacerts",
		}
	}
	cmd := exec.Command(filepath.Join(bins, "pilot-discovery"), "discovery",
		"--kubeconfig", kubeconfig,
		// No such file: the mesh config comes from the istio ConfigMap of
		// istio-system, as in a cluster.
		"--meshConfig", filepath.Join(dir, "no-mesh-file"),
		"--networksConfig", filepath.Join(dir, "no-networks-file"),
		"--namespace", "istio-system",
		"--clusterID", "Kubernetes",
		"--domain", "cluster.local",
		"--grpcAddr", addrs.grpc,
		"--httpAddr", httpAddr,
		"--monitoringAddr", monAddr,
		"--httpsAddr", "",
		"--secureGRPCAddr", addrs.secureGRPC,
		"--shutdownDuration", "1s",
		"--log_output_level", "default:info",
	)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), certEnv...)
	cmd.Env = append(cmd.Env,
		"PILOT_ENABLE_AMBIENT=true",
		"POD_NAMESPACE=istio-system",
		"POD_NAME=istiod-e2e",
		"REVISION=default",
		"CLUSTER_ID=Kubernetes",
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false",
		"PILOT_ENABLE_GATEWAY_API_GATEWAYCLASS_CONTROLLER=false",
	)
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		exit := <-p.done
		if t.Failed() {
			out := p.output()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("istiod's output (it ended: %v):\n%s", exit, out)
		}
	})
	waitFor(t, 90*time.Second, "istiod to be ready", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("istiod exited: %v\n%s", err, p.output())
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addrs
}

// startChartController installs the chart as `helm template | kubectl
// apply` would and runs the controller as its Deployment says, with its
// ServiceAccount's token; it returns the controller's xDS address.
func startChartController(t *testing.T, env *kubetest.Env, kubectl func(string, ...string) string, assets, kubeconfig, dir string) string {
	t.Helper()
	helm := helmBinary(t)
	kubectl("", "create", "namespace", "kgateway-system")
	rendered, err := exec.Command(helm, "template", "kgateway-waypoint", "../../install/helm/kgateway-waypoint",
		"--namespace", "kgateway-system").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	kubectl(string(rendered), "apply", "-f", "-")
	args := strings.Fields(kubectl("", "-n", "kgateway-system", "get", "deployment", "kgateway-waypoint",
		"-o", `jsonpath={range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}`))
	token := strings.TrimSpace(kubectl("", "-n", "kgateway-system", "create", "token", "kgateway-waypoint"))
	saKubeconfig := filepath.Join(dir, "controller-kubeconfig")
	writeTokenKubeconfig(t, saKubeconfig, env, token)
	xdsAddr, health := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	args = overrideEq(t, args, map[string]string{"--xds-address": xdsAddr, "--health-address": health, "--metrics-address": "0"})
	args = append(args, "--kubeconfig", saKubeconfig, "--leader-election-namespace", "kgateway-system")
	start(t, args...)
	waitFor(t, 30*time.Second, "the controller to be ready", func() bool {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	return xdsAddr
}

// subscription is the proxy's view: the latest configuration the
// controller's xDS served a Gateway.
type subscription struct {
	mu sync.Mutex
	w  *ir.Waypoint
}

func (s *subscription) current() *ir.Waypoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w
}

// subscribe runs the proxy's xDS client for gw with a token of the
// waypoint's ServiceAccount for the projected audience, as its pod would.
func subscribe(t *testing.T, xdsAddr string, gw ir.NamespacedName, kubectl func(string, ...string) string) *subscription {
	t.Helper()
	token := strings.TrimSpace(kubectl("", "-n", gw.Namespace, "create", "token", gw.Name, "--audience", "kgateway-waypoint"))
	s := &subscription{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := &xds.Client{
		Address: xdsAddr, Gateway: gw, NodeID: gw.Name + "-e2e",
		Token: func() (string, error) { return token, nil },
		Apply: func(w *ir.Waypoint) error {
			s.mu.Lock()
			s.w = w
			s.mu.Unlock()
			return nil
		},
	}
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// standIn is the kubelet, the endpoint controller and istio-cni, which
// this test stands in for: a Pod for each Deployment (running, ready, with
// a pod IP, annotated as captured when it is in the ambient mesh), the
// Deployment's ready replica, and each Service's EndpointSlice.
type standIn struct {
	cs   *kubernetes.Clientset
	next int // the last pod IP handed out, 10.244.0.0/16
}

func newStandIn(cs *kubernetes.Clientset) *standIn { return &standIn{cs: cs} }

func (s *standIn) podName(_, deployment string) string { return deployment + "-e2e" }

func (s *standIn) run(t *testing.T, namespaces []string) {
	t.Helper()
	ctx := context.Background()
	for _, ns := range namespaces {
		deps, err := s.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range deps.Items {
			s.runDeployment(t, &deps.Items[i])
		}
	}
	for _, ns := range namespaces {
		svcs, err := s.cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range svcs.Items {
			s.endpoints(t, &svcs.Items[i])
		}
	}
}

// runDeployment creates the Deployment's one Pod from its template, writes
// its status as the kubelet would, and marks the Deployment's replica
// ready (the controller-manager's part).
func (s *standIn) runDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ctx := context.Background()
	name := s.podName(d.Namespace, d.Name)
	pods := s.cs.CoreV1().Pods(d.Namespace)
	if _, err := pods.Get(ctx, name, metav1.GetOptions{}); err == nil {
		return
	}
	s.next++
	ip := netip.AddrFrom4([4]byte{10, 244, byte(s.next >> 8), byte(s.next)}).String()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels,
			Annotations: d.Spec.Template.Annotations},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = "node-e2e"
	// The istio-cni node agent's part: it annotates each pod it has
	// captured into the ambient mesh, and istiod reads that annotation
	// (not the labels) to tell ztunnel the pod takes HBONE.
	if s.ambient(t, pod) {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations["ambient.istio.io/redirection"] = "enabled"
	}
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("stand-in kubelet: creating %s/%s: %v", d.Namespace, name, err)
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "10.244.255.1",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("stand-in kubelet: status of %s/%s: %v", d.Namespace, name, err)
	}
	deps := s.cs.AppsV1().Deployments(d.Namespace)
	cur, err := deps.Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status = appsv1.DeploymentStatus{ObservedGeneration: cur.Generation, Replicas: 1, UpdatedReplicas: 1,
		ReadyReplicas: 1, AvailableReplicas: 1}
	if _, err := deps.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("stand-in controller-manager: status of Deployment %s/%s: %v", d.Namespace, d.Name, err)
	}
}

// ambient reports whether istio-cni would capture the pod: its own
// istio.io/dataplane-mode, or else its namespace's, is ambient.
func (s *standIn) ambient(t *testing.T, pod *corev1.Pod) bool {
	t.Helper()
	if m, ok := pod.Labels["istio.io/dataplane-mode"]; ok {
		return m == "ambient"
	}
	ns, err := s.cs.CoreV1().Namespaces().Get(context.Background(), pod.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Labels["istio.io/dataplane-mode"] == "ambient"
}

// endpoints writes the EndpointSlice of a Service with a selector: the
// ready Pods it selects, on the Service's target ports.
func (s *standIn) endpoints(t *testing.T, svc *corev1.Service) {
	t.Helper()
	if len(svc.Spec.Selector) == 0 {
		return
	}
	ctx := context.Background()
	pods, err := s.cs.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		t.Fatal(err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-e2e", Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "e2e-stand-in"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		port := p.TargetPort.IntVal
		if port == 0 {
			port = p.Port
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &port, Protocol: &p.Protocol})
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.PodIP == "" {
			continue
		}
		ready := true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.Status.PodIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:  &p.Spec.NodeName,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		})
	}
	c := s.cs.DiscoveryV1().EndpointSlices(svc.Namespace)
	if cur, err := c.Get(ctx, es.Name, metav1.GetOptions{}); err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = c.Update(ctx, es, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("stand-in endpoint controller: %v", err)
		}
		return
	}
	if _, err := c.Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stand-in endpoint controller: %v", err)
	}
}

// manifestNamespaces are the namespaces a row's objects are in.
func manifestNamespaces(c captureCase) []string {
	if c.manifest == "examples" {
		return []string{c.gateway.Namespace}
	}
	var out []string
	for _, line := range strings.Split(c.manifest, "\n") {
		if ns, ok := strings.CutPrefix(strings.TrimSpace(line), "namespace: "); ok && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

func labelsYAML(l map[string]string) string {
	if len(l) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func namespace(name string, l map[string]string) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: %s\n", name, labelsYAML(l))
}

// waypointGateway is a Gateway of class kgateway-waypoint like the seed's,
// its listener admitting from (Same, All or Selector with sel), with labels l.
func waypointGateway(ns, name, from string, sel, l map[string]string) string {
	selector := ""
	if from == "Selector" {
		selector = fmt.Sprintf("\n        selector: {matchLabels: %s}", labelsYAML(sel))
	}
	return fmt.Sprintf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: %s
  namespace: %s
  labels: %s
spec:
  gatewayClassName: kgateway-waypoint
  listeners:
  - name: mesh
    protocol: istio.io/PROXY
    port: 15088
    allowedRoutes:
      namespaces:
        from: %s%s
`, name, ns, labelsYAML(l), from, selector)
}

// app is a Service (with labels l) and the Deployment behind it.
func app(ns, name string, l map[string]string) string { return appPodLabels(ns, name, l, nil) }

// appPodLabels is app with labels pl on the pods too.
func appPodLabels(ns, name string, l, pl map[string]string) string {
	podLabels := map[string]string{"app": name}
	for k, v := range pl {
		podLabels[k] = v
	}
	return fmt.Sprintf(`---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: %[1]s
  namespace: %[2]s
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
  labels: %[3]s
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: %[4]s}
    spec:
      serviceAccountName: %[1]s
      containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]
`, name, ns, labelsYAML(l), labelsYAML(podLabels))
}

// serviceEntry is a ServiceEntry with a VIP and one static endpoint.
func serviceEntry(ns, name, host, vip string, l map[string]string) string {
	return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %s
  namespace: %s
  labels: %s
spec:
  hosts: [%s]
  addresses: [%s]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 10.244.254.1}]
`, name, ns, labelsYAML(l), host, vip)
}

// workloadEntry is a WorkloadEntry at address with labels l.
func workloadEntry(ns, name, address string, l map[string]string) string {
	return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %s
  namespace: %s
  labels: %s
spec:
  address: %s
  serviceAccount: vm
`, name, ns, labelsYAML(l), address)
}

// canaryManifest is two waypoints, a Service with wp as its primary and
// wp2 as its canary at 30%, and a Service with wp only.
func canaryManifest() string {
	svc := strings.Replace(app("cap-can", "svc", map[string]string{"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-canary": "wp2"}),
		"kind: Service\nmetadata:\n", "kind: Service\nmetadata:\n  annotations: {istio.io/use-waypoint-canary-weight: \"30\"}\n", 1)
	return namespace("cap-can", nil) +
		waypointGateway("cap-can", "wp", "Same", nil, nil) + waypointGateway("cap-can", "wp2", "Same", nil, nil) +
		svc + app("cap-can", "other", map[string]string{"istio.io/use-waypoint": "wp"})
}
