package config

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func workloadIR() *ir.Waypoint {
	return &ir.Waypoint{
		TrustDomain: "cluster.local",
		Services: []*ir.Service{{Name: "svc", Namespace: "ns", Hostname: "svc.ns.svc.cluster.local", VIPs: []string{"10.0.0.1"},
			Ports: []*ir.ServicePort{{Port: 80, Protocol: ir.ProtocolHTTP, DefaultBackend: "ns/svc:80"}}}},
		Backends: map[string]*ir.Backend{"ns/svc:80": {Service: ir.NamespacedName{Namespace: "ns", Name: "svc"}, Port: 80, Protocol: "HTTP1"}},
		Workloads: []*ir.Workload{
			{Kind: "Pod", Namespace: "ns", Name: "a", Addresses: []string{"10.1.0.1", "fd00::1"}},
			// A workload claiming a service VIP loses it to the service.
			{Kind: "Pod", Namespace: "ns", Name: "squatter", Addresses: []string{"10.0.0.1"}},
		},
		WorkloadPort: &ir.ServicePort{Protocol: ir.ProtocolDetect,
			Policies: []*ir.AuthzPolicy{{Name: ir.NamespacedName{Namespace: "ns", Name: "p"}, Action: ir.AuthzDeny}}},
	}
}

// A workload's traffic is classified by its address on any port, to a
// port whose backend is that address and port; the service port of each
// address and port is built once and kept (up to maxWorkloadPorts per
// workload), and a service VIP wins over a workload address.
func TestWorkloadLookup(t *testing.T) {
	c, err := Compile(workloadIR(), nil, Shared{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"10.1.0.1:8080", "[fd00::1]:8080", "10.1.0.1:1", "[::ffff:10.1.0.1]:9000"} {
		ap := netip.MustParseAddrPort(dst)
		tg, ok := c.Lookup(ap, "")
		if !ok {
			t.Fatalf("%s: not found", dst)
		}
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		if ep, _ := tg.Port.DefaultBackend.Pick(); ep != want || tg.Port.Service.Name != "a" || tg.Protocol() != ir.ProtocolDetect {
			t.Errorf("%s: endpoint %s, workload %s, protocol %s", dst, ep, tg.Port.Service.Name, tg.Protocol())
		}
		if ep, _ := tg.Port.H2CBackend.Pick(); ep != want || !tg.Port.H2CBackend.H2C {
			t.Errorf("%s: h2c backend %s", dst, ep)
		}
		if tg.Port.Authz.Empty() {
			t.Errorf("%s: the workload port's policies are not there", dst)
		}
		again, _ := c.Lookup(ap, "")
		if again.Port != tg.Port {
			t.Errorf("%s: the port was built again", dst)
		}
	}
	if tg, ok := c.Lookup(netip.MustParseAddrPort("10.0.0.1:80"), ""); !ok || tg.Port.Service.Name != "svc" {
		t.Fatalf("the service VIP: %v %+v", ok, tg.Port)
	}
	if _, ok := c.Lookup(netip.MustParseAddrPort("10.9.9.9:80"), ""); ok {
		t.Fatal("an unknown address was served")
	}
	// A port scan: every port is served, at most maxWorkloadPorts kept.
	w := c.workloads[netip.MustParseAddr("10.1.0.1")]
	for p := 2000; p < 2000+3*maxWorkloadPorts; p++ {
		tg, ok := c.Lookup(netip.MustParseAddrPort(fmt.Sprintf("10.1.0.1:%d", p)), "")
		if ep, _ := tg.Port.DefaultBackend.Pick(); !ok || ep != fmt.Sprintf("10.1.0.1:%d", p) {
			t.Fatalf("port %d: %v %s", p, ok, ep)
		}
	}
	n := 0
	w.ports.Range(func(any, any) bool { n++; return true })
	if n != maxWorkloadPorts || int(w.kept.Load()) != maxWorkloadPorts {
		t.Errorf("%d ports kept (counter %d), want %d", n, w.kept.Load(), maxWorkloadPorts)
	}
}

// An update keeps the workload port's compiled policies when they are
// equal; a bad workload is refused with a clear error.
func TestWorkloadCompile(t *testing.T) {
	prev, err := Compile(workloadIR(), nil, Shared{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := Compile(workloadIR(), prev, Shared{})
	if err != nil {
		t.Fatal(err)
	}
	if next.workloadPort.Authz != prev.workloadPort.Authz {
		t.Error("equal policies were compiled again")
	}
	changed := workloadIR()
	changed.WorkloadPort.Policies[0].Action = ir.AuthzAllow
	if c, _ := Compile(changed, prev, Shared{}); c.workloadPort.Authz == prev.workloadPort.Authz {
		t.Error("changed policies were taken over")
	}
	bad := workloadIR()
	bad.Workloads[0].Addresses = []string{"not-an-ip"}
	if _, err := Compile(bad, nil, Shared{}); err == nil || err.Error() != `workload ns/a: bad address "not-an-ip"` {
		t.Errorf("bad address: %v", err)
	}
	bad = workloadIR()
	bad.Workloads[1] = nil
	if _, err := Compile(bad, nil, Shared{}); err == nil {
		t.Error("a nil workload compiled")
	}
	none := workloadIR()
	none.WorkloadPort = nil
	c, err := Compile(none, nil, Shared{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup(netip.MustParseAddrPort("10.1.0.1:80"), ""); ok {
		t.Error("workloads served without a workload port")
	}
}
