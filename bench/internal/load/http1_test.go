package load

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func read(s string, expect string, bodyLen int) (bool, error) {
	var e []byte
	if expect != "" {
		e = []byte(expect)
	}
	return readResponse(bufio.NewReader(strings.NewReader(s)), e, bodyLen)
}

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, in, expect string
		bodyLen          int
		keepAlive        bool
		err              string // substring; "" for success
		protocol         bool   // the error is a bad response on a usable connection
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTraversed-Waypoint: x\r\n\r\nhello", expect: "traversed-waypoint", bodyLen: 5, keepAlive: true},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: t\r\n\r\n", bodyLen: 5, keepAlive: true},
		{name: "close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"},
		{name: "http/1.0", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{name: "denied", in: "HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\nRBAC: access denied", keepAlive: true, err: "status 403 Forbidden", protocol: true},
		{name: "missing header", in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", expect: "traversed-waypoint", keepAlive: true, err: "no traversed-waypoint header", protocol: true},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", bodyLen: 1024, keepAlive: true, err: "body of 2 bytes", protocol: true},
		{name: "truncated", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi", err: "EOF"},
		{name: "garbage", in: "SSH-2.0-OpenSSH\r\n", err: "bad status line"},
		{name: "no length", in: "HTTP/1.1 200 OK\r\n\r\n", err: "without content-length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ka, err := read(c.in, c.expect, c.bodyLen)
			if c.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want one containing %q", err, c.err)
			}
			if err != nil && errors.Is(err, errProtocol) != c.protocol {
				t.Fatalf("errProtocol = %v, want %v (%v)", !c.protocol, c.protocol, err)
			}
			if ka != c.keepAlive {
				t.Fatalf("keepAlive %v, want %v", ka, c.keepAlive)
			}
		})
	}
}

func TestReadResponseDoesNotAllocate(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTraversed-Waypoint: x\r\n\r\nhello"
	sr := strings.NewReader(in)
	br := bufio.NewReader(sr)
	expect := []byte("traversed-waypoint")
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(in)
		br.Reset(sr)
		if _, err := readResponse(br, expect, 5); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per response, want 0", allocs)
	}
}
