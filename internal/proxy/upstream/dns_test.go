package upstream

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS serves h on a free loopback port over UDP and TCP (the same
// port) and returns its address.
func startDNS(t *testing.T, h dns.HandlerFunc) string {
	t.Helper()
	// One free port for both: a free UDP port may be taken in TCP, so try
	// a few.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			_ = pc.Close()
			if try == 20 {
				t.Fatal(err)
			}
		}
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// The resolver follows CNAMEs in the answer, falls back to AAAA when a
// name has no A record, retries over TCP when the UDP answer is truncated,
// takes the shortest TTL of the records used, and tells NXDOMAIN (an
// answer with no address) from a server failure.
func TestResolverAnswers(t *testing.T) {
	addr := startDNS(t, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name, qt := q.Question[0].Name, q.Question[0].Qtype
		_, udp := w.RemoteAddr().(*net.UDPAddr)
		hdr := func(n string, t uint16, ttl uint32) dns.RR_Header {
			return dns.RR_Header{Name: n, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
		}
		switch {
		case name == "alias.test." && qt == dns.TypeA:
			m.Answer = []dns.RR{&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME, 300), Target: "real.test."},
				&dns.A{Hdr: hdr("real.test.", dns.TypeA, 30), A: net.ParseIP("192.0.2.2")},
				&dns.A{Hdr: hdr("real.test.", dns.TypeA, 60), A: net.ParseIP("192.0.2.1")}}
		case name == "v6.test." && qt == dns.TypeAAAA:
			m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, 10), AAAA: net.ParseIP("2001:db8::1")}}
		case name == "big.test." && qt == dns.TypeA && udp:
			m.Truncated = true
		case name == "big.test." && qt == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: hdr(name, dns.TypeA, 5), A: net.ParseIP("192.0.2.9")}}
		case name == "broken.test.":
			m.Rcode = dns.RcodeServerFailure
		case name == "missing.test.":
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	r := NewResolver(DNSOptions{Servers: []string{addr}, Timeout: 2 * time.Second})
	defer r.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		addrs []string
		ttl   time.Duration
	}{
		{"alias.test", []string{"192.0.2.1", "192.0.2.2"}, 30 * time.Second},
		{"v6.test", []string{"2001:db8::1"}, 10 * time.Second},
		{"big.test", []string{"192.0.2.9"}, 5 * time.Second},
	} {
		addrs, ttl, err := r.resolve(ctx, tc.name)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if len(got) != len(tc.addrs) || got[0] != tc.addrs[0] || got[len(got)-1] != tc.addrs[len(tc.addrs)-1] || ttl != tc.ttl {
			t.Errorf("%s: %v ttl %v, want %v ttl %v", tc.name, got, ttl, tc.addrs, tc.ttl)
		}
	}
	if _, _, err := r.resolve(ctx, "missing.test"); err == nil || !isNoAddress(err) {
		t.Errorf("missing.test: %v, want no address", err)
	}
	if _, _, err := r.resolve(ctx, "broken.test"); err == nil || isNoAddress(err) {
		t.Errorf("broken.test: %v, want a failure", err)
	}
	// Lookup goes round the addresses.
	a1, err1 := r.Lookup(ctx, "alias.test")
	a2, err2 := r.Lookup(ctx, "alias.test")
	if err1 != nil || err2 != nil || a1 == a2 {
		t.Errorf("two lookups of alias.test: %v %v (%v %v), want its two addresses in turn", a1, a2, err1, err2)
	}
	if _, err := r.Lookup(ctx, "missing.test"); err == nil {
		t.Error("missing.test looked up without an error")
	}
}

func isNoAddress(err error) bool { return err != nil && errors.Is(err, errNoAddress) }

func TestParseDNSServers(t *testing.T) {
	got, err := ParseDNSServers([]string{"10.0.0.10", "127.0.0.1:5353", "[::1]:53", "::1"})
	want := []string{"10.0.0.10:53", "127.0.0.1:5353", "[::1]:53", "[::1]:53"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseDNSServers: %v, %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("server %d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"dns.example.com", "10.0.0.1:0", "10.0.0.1:x"} {
		if _, err := ParseDNSServers([]string{bad}); err == nil {
			t.Errorf("ParseDNSServers(%q) accepted", bad)
		}
	}
}

func TestEndpointHostname(t *testing.T) {
	for ep, want := range map[string]string{"10.0.0.1:80": "", "[2001:db8::1]:80": "", "api.example.com:443": "api.example.com", "1password.com:443": "1password.com"} {
		host, ok := endpointHostname(ep)
		if host != want || ok != (want != "") {
			t.Errorf("endpointHostname(%q) = %q, %v", ep, host, ok)
		}
	}
}
