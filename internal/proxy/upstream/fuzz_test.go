package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
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

// FuzzReadResponseAgreesWithNetHTTP proves the fast response reader
// equivalent to net/http's where it accepts: every response it reads,
// net/http reads too, with the same status, protocol, headers, framing,
// close decision, body and trailers. It may refuse more (obs-fold, odd
// transfer codings), never less.
func FuzzReadResponseAgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 200\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc",
		"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "http://a/", nil)
		var scratch []byte
		ours, err := readResponse(bufio.NewReader(bytes.NewReader(data)), req, &scratch)
		if err != nil {
			return
		}
		theirs, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), req)
		if err != nil {
			t.Fatalf("we accept what net/http refuses (%v): %q", err, data)
		}
		if ours.StatusCode != theirs.StatusCode || ours.ProtoMajor != theirs.ProtoMajor || ours.ProtoMinor != theirs.ProtoMinor {
			t.Fatalf("status %d %s, net/http %d %s", ours.StatusCode, ours.Proto, theirs.StatusCode, theirs.Proto)
		}
		if ours.ContentLength != theirs.ContentLength || ours.Close != theirs.Close {
			t.Fatalf("length %d close %v, net/http %d %v", ours.ContentLength, ours.Close, theirs.ContentLength, theirs.Close)
		}
		if !reflect.DeepEqual(ours.Header, theirs.Header) {
			t.Fatalf("headers %v, net/http %v", ours.Header, theirs.Header)
		}
		ob, oerr := io.ReadAll(ours.Body)
		tb, terr := io.ReadAll(theirs.Body)
		if (oerr == nil) != (terr == nil) && oerr == nil {
			t.Fatalf("body read: ours ok, net/http %v", terr)
		}
		if oerr == nil && !bytes.Equal(ob, tb) {
			t.Fatalf("body %q, net/http %q", ob, tb)
		}
		if oerr == nil && terr == nil && !reflect.DeepEqual(nonEmpty(ours.Trailer), nonEmpty(theirs.Trailer)) {
			t.Fatalf("trailers %v, net/http %v", ours.Trailer, theirs.Trailer)
		}
	})
}

func nonEmpty(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}
