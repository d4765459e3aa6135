package extauthz

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
)

// provider parses a mesh config holding one provider named "p", so tests
// speak in the user's configuration and get istiod's defaults.
func provider(t *testing.T, kind, fields string) *ir.ExtAuthzProvider {
	t.Helper()
	c, err := meshconfig.Parse([]byte(fmt.Sprintf("extensionProviders:\n- name: p\n  %s: {%s}\n", kind, fields)))
	if err != nil {
		t.Fatal(err)
	}
	return c.ExtAuthzProviders["p"]
}

// resolver answers for exactly one service host and port, as the waypoint
// maps a service to an endpoint.
func resolver(host string, port uint16, addr string) func(string, uint16) (string, error) {
	return func(h string, p uint16) (string, error) {
		if h != host || p != port {
			return "", fmt.Errorf("no endpoint for %s:%d", h, p)
		}
		return addr, nil
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

var (
	srcAddr = netip.MustParseAddrPort("10.1.2.3:45678")
	dstAddr = netip.MustParseAddrPort("10.96.0.10:8080")
)
