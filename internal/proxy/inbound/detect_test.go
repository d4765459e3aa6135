package inbound

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDetectHTTP: the first bytes decide HTTP or TCP as Envoy's HTTP
// inspector does, and detection leaves every byte for the server.
func TestDetectHTTP(t *testing.T) {
	for _, tc := range []struct {
		in          string
		allowCustom bool
		http        bool
		err         bool
	}{
		{"GET / HTTP/1.1\r\n", false, true, false},
		{"POST /x HTTP/1.1\r\n", false, true, false},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, true, false},
		{"PROPFIND / HTTP/1.1\r\n", false, true, false},
		{"get / HTTP/1.1\r\n", false, false, false},   // methods are case-sensitive
		{"FROB / HTTP/1.1\r\n", false, false, false},  // not registered
		{"FROB / HTTP/1.1\r\n", true, true, false},    // any token, when custom methods are served
		{"\x16\x03\x01\x02\x00", false, false, false}, // a TLS ClientHello
		{"SSH-2.0-OpenSSH_9.6\r\n", false, false, false},
		{" GET / HTTP/1.1\r\n", false, false, false},                      // a leading space is no method
		{strings.Repeat("A", 40) + " / HTTP/1.1\r\n", true, false, false}, // too long for a method
		{"GE", false, false, true},                                        // ended before it could be decided
		{"", false, false, true},
	} {
		br := bufio.NewReader(strings.NewReader(tc.in))
		http, err := detectHTTP(br, tc.allowCustom)
		if http != tc.http || (err != nil) != tc.err {
			t.Errorf("%q (custom %v): http %v, err %v; want http %v, error %v", tc.in, tc.allowCustom, http, err, tc.http, tc.err)
		}
		if rest, _ := io.ReadAll(br); string(rest) != tc.in {
			t.Errorf("%q: detection consumed bytes, %q left", tc.in, rest)
		}
	}
}

// A client that sends nothing before the read deadline (a server-first
// protocol) is TCP, not an error.
func TestDetectHTTPServerFirst(t *testing.T) {
	a, b := net.Pipe()
	defer func() { _ = a.Close(); _ = b.Close() }()
	_ = a.SetReadDeadline(time.Now()) // already passed
	http, err := detectHTTP(bufio.NewReader(a), false)
	if http || err != nil {
		t.Fatalf("silent client: http %v, err %v; want TCP", http, err)
	}
}
