package inbound

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// FuzzParseProxyHeader feeds arbitrary bytes to the PROXY v2 parsing path:
// it must return an error or a ConnInfo, never panic, and a ConnInfo must
// carry a destination.
func FuzzParseProxyHeader(f *testing.F) {
	sig := "\r\n\r\n\x00\r\nQUIT\n"
	f.Add([]byte(sig + "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x50\x00\x50"))
	f.Add([]byte(sig + "\x21\x11\x00\x13\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x50\x00\x50\xd0\x00\x04spif"))
	f.Add([]byte(sig + "\x21\x11\x00\x13\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x50\x00\x50\xd0\x00\xffspif"))
	f.Add([]byte(sig + "\x20\x00\x00\x00"))
	f.Add([]byte(sig + "\x21\x21\x00\x24" + string(make([]byte, 36))))
	f.Add([]byte("PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		info, err := ParseHeader(h)
		if err != nil {
			return
		}
		if !info.Destination.IsValid() || !info.Source.IsValid() {
			t.Fatalf("accepted a header without addresses: %+v", info)
		}
	})
}

// FuzzReadRequest feeds arbitrary bytes to the HTTP/1 request parser: it
// must return a request or an error, never panic, and whatever it accepts
// must be unambiguous to frame.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h:8/p?q HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		req, body, err := readRequest(br, 100)
		if err != nil {
			return
		}
		if len(req.TransferEncoding) > 0 && len(req.Header["Content-Length"]) > 0 {
			t.Fatal("accepted both Transfer-Encoding and Content-Length")
		}
		if strings.ContainsAny(req.Host, "\r\n") {
			t.Fatalf("host with CR/LF: %q", req.Host)
		}
		_, _ = io.Copy(io.Discard, req.Body)
		body.finish(1 << 20)
	})
}
