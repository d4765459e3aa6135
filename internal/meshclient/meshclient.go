// Package meshclient plays the part of the client pod's ztunnel towards a
// sandwich-mode waypoint: it dials the waypoint and opens the connection
// with a PROXY protocol v2 header (source, original destination and the
// client's SPIFFE identity in TLV 0xD0), exactly the bytes ztunnel writes.
// The demo, the tests and the benchmarks use it as their client.
package meshclient

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Conn describes one connection as ztunnel would open it.
type Conn struct {
	// Source is the client pod's address.
	Source netip.AddrPort
	// Destination is what the client dialled (service VIP:port).
	Destination netip.AddrPort
	// Identity is the client's SPIFFE identity; empty sends no TLV.
	Identity string
	// Hostname, when set, is sent in TLV 0xD1 (the service hostname).
	Hostname string
}

// Header builds the PROXY v2 header bytes for c.
func (c Conn) Header() ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(c.Source), net.TCPAddrFromAddrPort(c.Destination))
	var tlvs []proxyproto.TLV
	if c.Identity != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: 0xD0, Value: []byte(c.Identity)})
	}
	if c.Hostname != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: 0xD1, Value: []byte(c.Hostname)})
	}
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			return nil, err
		}
	}
	return h.Format()
}

// Dial connects to the waypoint's PROXY listener and writes the header.
func Dial(ctx context.Context, waypoint string, c Conn) (net.Conn, error) {
	hdr, err := c.Header()
	if err != nil {
		return nil, fmt.Errorf("building PROXY header: %w", err)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", waypoint)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(hdr); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// SPIFFE returns the identity of a service account in a trust domain.
func SPIFFE(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}
