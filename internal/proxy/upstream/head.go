package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/httpwire"
)

// readResponse reads one HTTP/1.x response head from br and sets up its
// body, as http.ReadResponse does but with a fraction of its allocations
// (the head is one string its fields are cut from) and stricter: obs-fold,
// control characters in values, a transfer coding other than chunked and
// differing Content-Lengths are errors. Where both accept a response they
// read it the same way (FuzzReadResponseAgreesWithNetHTTP). scratch is
// the connection's buffer for the head's bytes.
func readResponse(br *bufio.Reader, req *http.Request, scratch *[]byte) (*http.Response, error) {
	buf := (*scratch)[:0]
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			buf = append(buf, line...)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			*scratch = buf
			return nil, err
		}
		buf = append(buf, line...)
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			// The empty line ends the head, unless it is the first (the
			// head must start with the status line).
			if len(buf) == len(line) {
				*scratch = buf
				return nil, errors.New("empty line before the status line")
			}
			break
		}
	}
	*scratch = buf
	head := string(buf) // the one allocation the fields are cut from

	line, rest := httpwire.CutLine(head)
	resp := &http.Response{Request: req}
	if err := parseStatusLine(line, resp); err != nil {
		return nil, err
	}
	h := make(http.Header, strings.Count(rest, "\n"))
	if err := httpwire.ParseFields(rest, h, math.MaxInt); err != nil {
		return nil, err // the caller counts the fields against its own bound
	}
	resp.Header = h
	if err := frame(br, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT [SP reason]".
func parseStatusLine(line string, resp *http.Response) error {
	if strings.IndexByte(line, '\r') >= 0 {
		return errors.New("bare CR in the status line")
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 || len(code) != 3 {
		return errors.New("malformed status line")
	}
	n := 0
	for i := 0; i < 3; i++ {
		if code[i] < '0' || code[i] > '9' {
			return errors.New("malformed status code")
		}
		n = n*10 + int(code[i]-'0')
	}
	if n < 100 {
		return errors.New("malformed status code")
	}
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = proto, major, minor
	resp.StatusCode = n
	resp.Status = code + " " + reason
	if reason == "" {
		resp.Status = code + " " + http.StatusText(n)
	}
	return nil
}

// frame works out how the body is delimited (RFC 9112 6.3) and sets it up.
func frame(br *bufio.Reader, req *http.Request, resp *http.Response) error {
	h := resp.Header
	conn := h["Connection"]
	hasClose := httpwire.HasToken(conn, "close")
	if resp.ProtoMinor == 0 {
		// HTTP/1.0 keeps its Connection header, as net/http does.
		resp.Close = hasClose || !httpwire.HasToken(conn, "keep-alive")
	} else {
		resp.Close = hasClose
		if hasClose {
			delete(h, "Connection") // as net/http does: the close is in resp.Close
		}
	}
	te, cls := h["Transfer-Encoding"], h["Content-Length"]
	noBody := (req != nil && req.Method == http.MethodHead) || resp.StatusCode/100 == 1 ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	chunked := false
	if len(te) > 0 {
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") || resp.ProtoMinor == 0 {
			return errors.New("unsupported transfer encoding in the response")
		}
		chunked = true // and wins over any Content-Length (RFC 9112 6.3)
		delete(h, "Transfer-Encoding")
	}
	length := int64(-1)
	if len(cls) > 0 { // checked even when chunked wins, as net/http does
		for _, v := range cls[1:] {
			if v != cls[0] {
				return errors.New("conflicting Content-Length headers in the response")
			}
		}
		n, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil || cls[0] == "" || cls[0][0] == '+' {
			return errors.New("malformed Content-Length in the response")
		}
		length = int64(n)
		h["Content-Length"] = cls[:1]
		if chunked && !noBody {
			length = -1
			delete(h, "Content-Length")
		}
	}
	if tr := h["Trailer"]; len(tr) > 0 && chunked {
		resp.Trailer = http.Header{}
		for _, v := range tr {
			for _, name := range strings.Split(v, ",") {
				name = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(name))
				switch name {
				case "Transfer-Encoding", "Trailer", "Content-Length":
					return errors.New("bad trailer key in the response")
				case "":
					continue
				}
				resp.Trailer[name] = nil
			}
		}
		delete(h, "Trailer")
	}
	switch {
	case noBody:
		resp.ContentLength = 0
		if req != nil && req.Method == http.MethodHead {
			resp.ContentLength = length // what a GET would get, -1 when unknown
		}
		resp.Body = http.NoBody
	case chunked:
		resp.ContentLength = -1
		resp.TransferEncoding = []string{"chunked"}
		resp.Body = &chunkedBody{br: br, r: httputil.NewChunkedReader(br), resp: resp}
	case length >= 0:
		resp.ContentLength = length
		if length == 0 {
			resp.Body = http.NoBody
		} else {
			resp.Body = &lengthBody{br: br, remaining: length}
		}
	default:
		// Delimited by the close.
		resp.ContentLength = -1
		resp.Close = true
		resp.Body = &closeBody{br: br}
	}
	return nil
}

// lengthBody is a body of Content-Length bytes.
type lengthBody struct {
	br        *bufio.Reader
	remaining int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		return n, io.EOF
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }

// closeBody is a body that ends with the connection.
type closeBody struct{ br *bufio.Reader }

func (b *closeBody) Read(p []byte) (int, error) { return b.br.Read(p) }
func (b *closeBody) Close() error               { return nil }

// maxTrailerBytes bounds a response's trailer section, as net/http does
// (one buffer's worth).
const maxTrailerBytes = 4096

// chunkedBody is a chunked body; its trailers go into resp.Trailer.
type chunkedBody struct {
	br   *bufio.Reader
	r    io.Reader
	resp *http.Response
	done bool
	err  error
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		if terr := b.readTrailers(); terr != nil {
			b.err = terr
			return n, terr
		}
		b.done = true
		return n, io.EOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *chunkedBody) readTrailers() error {
	budget := maxTrailerBytes
	for {
		line, err := b.br.ReadSlice('\n')
		if budget -= len(line); budget < 0 || errors.Is(err, bufio.ErrBufferFull) {
			return errors.New("response trailers too large")
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// Trailer lines end with CRLF (net/http insists on the final
		// CRLF CRLF; we on every line's).
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			return errors.New("response trailer line not ended by CRLF")
		}
		if len(line) == 2 {
			return nil
		}
		s := string(line[:len(line)-2])
		key, value, err := httpwire.ParseLine(s)
		if err != nil {
			return err
		}
		if b.resp.Trailer == nil {
			b.resp.Trailer = http.Header{}
		}
		b.resp.Trailer[key] = append(b.resp.Trailer[key], value)
	}
}

func (b *chunkedBody) Close() error { return nil }
