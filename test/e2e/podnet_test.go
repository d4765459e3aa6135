package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// podNetwork is a network namespace this test creates, joined to the host
// namespace by a veth pair: a stand-in "pod network" with a non-loopback
// pod IP, because the API server refuses loopback addresses in
// EndpointSlices. Traffic to the pod IP never leaves the machine: it goes
// over the veth into the namespace.
type podNetwork struct {
	name   string
	HostIP string // the host side of the veth
	PodIP  string // the address inside the namespace
}

// newPodNetwork creates the namespace (root and iproute2 are needed; CI
// runs as root). It is removed when the test ends.
func newPodNetwork(t *testing.T) *podNetwork {
	t.Helper()
	octet := os.Getpid()%250 + 1 // distinct per run, so a leftover of a killed run cannot clash
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace for the stand-in pod network (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("needs iproute2 (ip) to create the stand-in pod network: apt-get install iproute2")
	}
	pn := &podNetwork{
		name:   fmt.Sprintf("kgw-e2e-%d", os.Getpid()),
		HostIP: fmt.Sprintf("10.250.%d.1", octet),
		PodIP:  fmt.Sprintf("10.250.%d.2", octet),
	}
	host, peer := fmt.Sprintf("kgwh%d", os.Getpid()%100000), fmt.Sprintf("kgwp%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", pn.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", pn.name).Run()
	})
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	run("link", "set", peer, "netns", pn.name)
	run("addr", "add", pn.HostIP+"/30", "dev", host)
	run("link", "set", host, "up")
	run("-n", pn.name, "addr", "add", pn.PodIP+"/30", "dev", peer)
	run("-n", pn.name, "link", "set", peer, "up")
	run("-n", pn.name, "link", "set", "lo", "up")
	return pn
}

// Listen opens a TCP listener inside the namespace (the socket stays there
// whatever goroutine serves it).
func (pn *podNetwork) Listen(t *testing.T, port int) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // this thread is left in the namespace and discarded
		f, err := os.Open("/var/run/netns/" + pn.name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer func() { _ = f.Close() }()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", pn.PodIP, port))
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listening in the pod network: %v", r.err)
	}
	return r.ln
}
