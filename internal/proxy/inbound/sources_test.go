package inbound

import (
	"net"
	"net/netip"
	"testing"
)

// TestPeerAllowed covers the address forms a listener reports: IPv4 as 4
// or 16 bytes (net.ParseIP, and a dual-stack listener's ::ffff:a.b.c.d),
// IPv6 with a zone, and mapped ranges in the list.
func TestPeerAllowed(t *testing.T) {
	allowed := unmapPrefixes([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.2/32"),
		netip.MustParsePrefix("::ffff:10.1.0.0/112"), // 10.1.0.0/16, written mapped
		netip.MustParsePrefix("fe80::/10"),
	})
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000} }
	for _, tc := range []struct {
		peer net.Addr
		want bool
	}{
		{tcp("127.0.0.2"), true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2).To4(), Port: 1}, true},
		{tcp("::ffff:127.0.0.2"), true},
		{tcp("127.0.0.3"), false},
		{tcp("10.1.200.7"), true},
		{tcp("10.2.0.1"), false},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, true},
		{tcp("::1"), false},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, false},
	} {
		if got := peerAllowed(tc.peer, allowed); got != tc.want {
			t.Errorf("peer %v: allowed %v, want %v", tc.peer, got, tc.want)
		}
	}
	if !peerAllowed(tcp("203.0.113.9"), nil) {
		t.Error("an empty list must allow every peer")
	}
}
