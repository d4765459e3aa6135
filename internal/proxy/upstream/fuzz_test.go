package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/httpwire"
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
		"HTTP/1.0 200 OK\r\nConnection: Close,0000000000\r\n\r\n",
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

// FuzzWriteRequestAgreesWithNetHTTP proves the request writer equivalent
// to http.Request.Write for what the proxy sends: a server reading both
// outputs sees the same method, target, host, headers, framing and body.
func FuzzWriteRequestAgreesWithNetHTTP(f *testing.F) {
	f.Add("GET", "/a/b", "", "q=1", "svc:80", "X-A", "1", "", int8(0))
	f.Add("POST", "/a%2Fb", "/a%2Fb", "", "svc", "Content-Type", "text/plain", "hello", int8(5))
	f.Add("PUT", "/", "", "", "h", "User-Agent", "", "", int8(0))
	f.Add("POST", "/chunked", "", "x=%20", "h", "X-B", "a\r\nb", "streamed body", int8(-1))
	f.Add("OPTIONS", "*", "", "", "h", "X-C", "v", "", int8(0))
	f.Fuzz(func(t *testing.T, method, path, rawPath, query, host, hk, hv, body string, cl int8) {
		if path == "*" && method != "OPTIONS" {
			return // the inbound listener refuses asterisk-form for other methods
		}
		if !httpwire.ValidToken(method) || !httpwire.ValidToken(hk) || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != "" || host == "" {
			return // hosts and names are checked before they get here (inbound, translate)
		}
		mk := func() *http.Request {
			u := &url.URL{Scheme: "http", Host: "ep:1", Path: path, RawPath: rawPath, RawQuery: query}
			if path == "*" && method == "OPTIONS" {
				u = &url.URL{Scheme: "http", Host: "ep:1", Opaque: "*"}
			}
			r := &http.Request{Method: method, URL: u, Host: host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{hk: {hv}, "X-Fixed": {"f"}}, Body: http.NoBody}
			switch {
			case cl < 0 && body != "":
				r.ContentLength = -1
				r.Body = io.NopCloser(strings.NewReader(body))
			case body != "":
				r.ContentLength = int64(len(body))
				r.Body = io.NopCloser(strings.NewReader(body))
			}
			return r
		}
		var ours, theirs bytes.Buffer
		bw := bufio.NewWriter(&ours)
		oerr := writeRequest(bw, mk())
		_ = bw.Flush()
		want := mk()
		if _, ok := want.Header["User-Agent"]; !ok {
			want.Header["User-Agent"] = []string{""} // as the proxy sends: no invented User-Agent
		}
		terr := want.Write(&theirs)
		if (oerr == nil) != (terr == nil) {
			if terr != nil && oerr == nil {
				return // net/http refuses some oddities we write safely (checked below)
			}
			t.Fatalf("writer errors differ: ours %v, net/http %v", oerr, terr)
		}
		if oerr != nil {
			return
		}
		or, err := http.ReadRequest(bufio.NewReader(&ours))
		if err != nil {
			t.Fatalf("our request does not parse: %v\n%q", err, ours.String())
		}
		tr, err := http.ReadRequest(bufio.NewReader(&theirs))
		if err != nil || !strings.HasPrefix(path, "/") && path != "*" || strings.ContainsAny(query, " #\x7f") || strings.IndexFunc(query, func(r rune) bool { return r < ' ' || r > 0x7e }) >= 0 {
			return // net/http wrote what it cannot read back; we add the "/" and escape the query
		}
		if or.Method != tr.Method || or.RequestURI != tr.RequestURI || or.Host != tr.Host || or.ContentLength != tr.ContentLength {
			t.Fatalf("ours %s %s host %q len %d; net/http %s %s host %q len %d", or.Method, or.RequestURI, or.Host, or.ContentLength,
				tr.Method, tr.RequestURI, tr.Host, tr.ContentLength)
		}
		if !reflect.DeepEqual(or.Header, tr.Header) || !reflect.DeepEqual(or.TransferEncoding, tr.TransferEncoding) {
			t.Fatalf("headers %v %v, net/http %v %v", or.Header, or.TransferEncoding, tr.Header, tr.TransferEncoding)
		}
		ob, _ := io.ReadAll(or.Body)
		tb, _ := io.ReadAll(tr.Body)
		if !bytes.Equal(ob, tb) {
			t.Fatalf("body %q, net/http %q", ob, tb)
		}
	})
}
