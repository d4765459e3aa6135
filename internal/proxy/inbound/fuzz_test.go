package inbound

import (
	"bufio"
	"bytes"
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
