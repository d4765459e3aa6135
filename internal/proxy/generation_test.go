package proxy_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/inbound"
)

// tcpNamer is a TCP server that writes its name to every connection and
// closes it.
func tcpNamer(t *testing.T, name, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.WriteString(c, name)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// A TCP connection is served by the configuration it was classified in,
// throughout: when an update moves its TCPRoute's backend to other
// endpoints between the classification and the dial, the connection still
// goes to the endpoints of its own generation (before, it took the
// service port from one generation and the backend from the next). The
// next connection gets the new configuration.
//
// The proxy is driven through inbound.Handler as the listener drives it
// (Classify, then ServeTCP), with an Update between the two; every byte
// goes over loopback sockets.
func TestTCPConnectionKeepsItsGeneration(t *testing.T) {
	before := tcpNamer(t, "before", "127.0.1.1")
	after := tcpNamer(t, "after", "127.0.1.2")
	primary := tcpNamer(t, "primary", "127.0.1.3")
	manifests := func(replica netip.AddrPort) string {
		return waypointManifests +
			serviceManifest("db", "127.0.100.3", 5432, "tcp-pg", "", primary) +
			serviceManifest("replica", "127.0.100.4", 5432, "tcp-pg", "", replica) + `
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: ns}
spec:
  parentRefs: [{group: "", kind: Service, name: db, port: 5432}]
  rules:
  - backendRefs: [{name: replica, port: 5432}]
`
	}
	w := startWaypoint(t, manifests(before))
	info := &inbound.ConnInfo{
		Source: clientAddr, Destination: netip.MustParseAddrPort("127.0.100.3:5432"), Identity: curlID,
	}
	target, ok := w.proxy.Classify(info)
	if !ok {
		t.Fatal("the TCP service was not found")
	}
	info.Target = target
	w.apply(manifests(after))
	if target.Config == nil || w.proxy.Version() != target.Config.Version()+1 {
		t.Fatalf("the update did not produce the next generation: %d after %v", w.proxy.Version(), target.Config)
	}

	// The connection classified before the update.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		defer func() { _ = server.Close() }()
		w.proxy.ServeTCP(context.Background(), server, server, info)
	}()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client) // until the upstream's close is passed on
	if err != nil {
		t.Fatal(err)
	}
	_ = client.Close() // the other direction ends too: ServeTCP returns
	<-served
	if string(got) != "before" {
		t.Fatalf("the connection classified before the update reached %q, want the endpoints of its generation (before)", got)
	}

	// A connection accepted after the update: the new endpoints.
	c := w.dial("127.0.100.3:5432", curlID)
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "after" {
		t.Fatalf("a connection after the update reached %q (%v), want after", got, err)
	}
}
