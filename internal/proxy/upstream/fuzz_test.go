package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzReadHead feeds arbitrary upstream bytes to the response head reader:
// it never reads more than its bound (plus one buffer of read-ahead),
// returns a final status (never 1xx, never an unsolicited 101), and turns
// what it cannot parse into a ProtocolError or a connection error.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
		"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
		"HTTP/1.0 200\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, upgrade bool) {
		const limit = 1024
		cr := &countingReader{r: bytes.NewReader(data)}
		lr := &headLimit{r: cr, n: -1}
		pc := &h1Conn{lr: lr, br: bufio.NewReaderSize(lr, 256)}
		req, _ := http.NewRequest("GET", "http://a/", nil)
		if upgrade {
			req.Header.Set("Upgrade", "websocket")
		}
		c := &H1Client{MaxHeaderBytes: limit, MaxHeaders: 10}
		resp, err := c.readHead(pc, req)
		if cr.n > limit+256+256 {
			t.Fatalf("read %d bytes for a head bounded to %d", cr.n, limit)
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) && !errors.Is(err, errStale) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("error %v is neither a protocol error nor a cut connection", err)
			}
			return
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("informational %d returned as final", resp.StatusCode)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols && !upgrade {
			t.Fatal("unsolicited 101 returned")
		}
		fields := 0
		for _, vv := range resp.Header {
			fields += len(vv)
		}
		if fields > 10 {
			t.Fatalf("%d header fields accepted", fields)
		}
		if lr.n != -1 {
			t.Fatal("the head limit stays in force for the body")
		}
	})
}
