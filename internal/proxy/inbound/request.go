package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/httpwire"
)

// requestError is a request the waypoint refuses, with the status it
// answers before closing the connection.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// RequestErrorStatus reports the status the waypoint answers for a
// request it refuses while reading it (a malformed chunked body: 400;
// trailers over their bound: 431); ok is false for other errors.
func RequestErrorStatus(err error) (status int, ok bool) {
	var re *requestError
	if errors.As(err, &re) {
		return re.status, true
	}
	return 0, false
}

func badRequest(msg string) error { return &requestError{status: http.StatusBadRequest, msg: msg} }

// parseLimits bound and shape what readRequest accepts.
type parseLimits struct {
	// MaxHeaders bounds the header fields of the head, and again of the
	// trailer section.
	MaxHeaders int
	// MaxHeaderBytes bounds the request line and headers, exactly (0: no
	// bound but the caller's).
	MaxHeaderBytes int
	// MaxTrailerBytes bounds the trailer section of a chunked body.
	MaxTrailerBytes int
	// AllowCustomMethods accepts any method token, not only the
	// registered methods.
	AllowCustomMethods bool
}

// readRequest parses one HTTP/1.x request head from br, strictly, and sets
// up its body. Unlike net/http it refuses what Envoy refuses, because a
// proxy that forwards an ambiguous request is how requests are smuggled:
// both Content-Length and Transfer-Encoding, differing Content-Lengths, a
// transfer coding other than chunked, obs-fold continuation lines, bare CR,
// control characters in values, invalid header names or Host, methods
// outside the registered set, targets of the wrong form, and more than
// MaxHeaders header fields. The request's RequestURI is the target in
// origin-form ("/path?query", or "*"), whatever form the client sent.
func readRequest(br *bufio.Reader, lim parseLimits, scratch *[]byte) (*http.Request, *reqBody, error) {
	head, err := readHead(br, lim.MaxHeaderBytes, scratch)
	if err != nil {
		return nil, nil, err
	}
	line, fields := httpwire.CutLine(head)
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !validToken(method) {
		return nil, nil, badRequest("malformed request line")
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return nil, nil, badRequest("malformed HTTP version")
	}
	if major != 1 {
		return nil, nil, &requestError{status: http.StatusHTTPVersionNotSupported, msg: "HTTP version not supported"}
	}
	if method == http.MethodConnect {
		return nil, nil, &requestError{status: http.StatusMethodNotAllowed, msg: "CONNECT is not supported on this listener"}
	}
	if !MethodAllowed(method, lim.AllowCustomMethods) {
		return nil, nil, badRequest("unknown HTTP method")
	}
	u, origin, form, err := parseTarget(method, target)
	if err != nil {
		return nil, nil, err
	}
	req := &http.Request{
		Method: method, URL: u, RequestURI: origin, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Header: make(http.Header, strings.Count(fields, "\n")),
	}
	if err := parseFields(fields, req.Header, lim.MaxHeaders); err != nil {
		return nil, nil, err
	}

	// Host: exactly one, valid; the absolute-form target's host wins
	// (RFC 9112 3.2.2).
	hosts := req.Header["Host"]
	if len(hosts) > 1 {
		return nil, nil, badRequest("more than one Host header")
	}
	switch {
	case form == absoluteForm:
		req.Host = u.Host
	case len(hosts) == 1:
		req.Host = hosts[0]
	case minor >= 1:
		return nil, nil, badRequest("missing Host header")
	}
	if req.Host != "" && !validAuthority(req.Host) {
		return nil, nil, badRequest("invalid Host header")
	}
	if len(hosts) == 1 && hosts[0] == "" && minor >= 1 {
		return nil, nil, badRequest("empty Host header")
	}
	delete(req.Header, "Host")
	req.URL.Scheme, req.URL.Host = "", ""

	// Connection management: HTTP/1.0 keeps the connection only when asked
	// to ("keep-alive"), HTTP/1.1 unless asked not to ("close").
	conn := req.Header["Connection"]
	if minor == 0 {
		req.Close = !hasToken(conn, "keep-alive")
	} else {
		req.Close = hasToken(conn, "close")
	}

	// Framing.
	te := req.Header["Transfer-Encoding"]
	cls := req.Header["Content-Length"]
	body := &reqBody{r: br, lim: lim}
	switch {
	case len(te) > 0 && len(cls) > 0:
		return nil, nil, badRequest("both Content-Length and Transfer-Encoding")
	case len(te) > 0:
		if minor == 0 {
			return nil, nil, badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		// Exactly "chunked": values are already trimmed of spaces and tabs,
		// and any other byte (a vertical tab, a list) is not chunked.
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return nil, nil, &requestError{status: http.StatusNotImplemented, msg: "unsupported transfer encoding"}
		}
		req.TransferEncoding = []string{"chunked"}
		req.ContentLength = -1
		delete(req.Header, "Transfer-Encoding")
		body.chunked = httputil.NewChunkedReader(br)
	case len(cls) > 0:
		for _, v := range cls[1:] {
			if v != cls[0] {
				return nil, nil, badRequest("conflicting Content-Length headers")
			}
		}
		n, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil || cls[0] == "" || cls[0][0] == '+' {
			return nil, nil, badRequest("malformed Content-Length")
		}
		req.Header["Content-Length"] = cls[:1]
		req.ContentLength = int64(n)
		body.remaining = int64(n)
	}
	if req.ContentLength == 0 {
		req.Body = http.NoBody
	} else {
		req.Body = body
	}
	return req, body, nil
}

var errHeadTooLarge = &requestError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "request header too large"}

// readHead reads a request head, up to and including its empty line, into
// scratch (reused across requests) and returns it as one string that the
// request line and the fields are cut from: one allocation for the head.
// More than maxBytes (when > 0) is a 431; a CR not before LF is a 400.
func readHead(br *bufio.Reader, maxBytes int, scratch *[]byte) (string, error) {
	buf := (*scratch)[:0]
	defer func() { *scratch = buf[:0] }()
	for {
		line, err := br.ReadSlice('\n')
		if maxBytes > 0 && len(buf)+len(line) > maxBytes {
			return "", errHeadTooLarge
		}
		buf = append(buf, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if n := len(line); n == 1 || (n == 2 && line[0] == '\r') {
			if len(buf) == n {
				return "", badRequest("malformed request line") // the head starts with an empty line
			}
			break
		}
	}
	for i := bytes.IndexByte(buf, '\r'); i >= 0; {
		if i+1 >= len(buf) || buf[i+1] != '\n' {
			return "", badRequest("bare CR in request head")
		}
		j := bytes.IndexByte(buf[i+1:], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return string(buf), nil
}

// parseFields parses the header fields of a head read by readHead into h,
// answering a refusal as Envoy does: 431 past maxFields, else 400.
func parseFields(fields string, h http.Header, maxFields int) error {
	return fieldError(httpwire.ParseFields(fields, h, maxFields))
}

// fieldError maps a refused field line to the answer: 431 for too many
// fields, 400 for the rest.
func fieldError(err error) error {
	var fe *httpwire.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Kind == httpwire.TooMany {
		return &requestError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "too many request headers"}
	}
	return badRequest(fe.Error())
}

// readFields reads header (or trailer) fields up to the empty line into h,
// refusing obs-fold, malformed names, control characters in values, and
// more than maxFields fields. budget, when set, bounds the bytes read
// (the caller bounds the head with a limitReader instead).
func readFields(br *bufio.Reader, h http.Header, maxFields int, budget *int) error {
	count := 0
	for {
		var line string
		var err error
		if budget != nil {
			line, err = readLineLimited(br, budget)
		} else {
			line, err = readLine(br)
		}
		if err != nil {
			return err
		}
		if line == "" {
			return nil
		}
		if count++; count > maxFields {
			return fieldError(&httpwire.FieldError{Kind: httpwire.TooMany})
		}
		key, value, err := httpwire.ParseLine(line)
		if err != nil {
			return fieldError(err)
		}
		if h != nil {
			h[key] = append(h[key], value)
		}
	}
}

// readLine reads one CRLF- (or LF-) terminated line without the ending.
// The caller bounds the total size (limitReader under the bufio.Reader).
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			b, err = br.ReadSlice('\n')
			long = append(long, b...)
		}
		b = long
	}
	if err != nil {
		return "", err
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
	if bytes.IndexByte(b, '\r') >= 0 {
		return "", badRequest("bare CR in request head")
	}
	return string(b), nil
}

// errTrailerTooLarge is a chunked body whose trailer section is over its
// bound: 431, as for a request head over its bound.
var errTrailerTooLarge = &requestError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "request trailers too large"}

// readLineLimited is readLine with a byte budget shared by the lines of a
// section: past it, errTrailerTooLarge, having buffered at most one
// bufio.Reader's worth of the line.
func readLineLimited(br *bufio.Reader, budget *int) (string, error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		if *budget -= len(b); *budget < 0 {
			return "", errTrailerTooLarge
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, b...)
			continue
		}
		if err != nil {
			return "", err
		}
		if long != nil {
			b = append(long, b...)
		}
		b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
		if bytes.IndexByte(b, '\r') >= 0 {
			return "", badRequest("bare CR in request trailers")
		}
		return string(b), nil
	}
}

// reqBody is a request body read from the connection. It may be read from
// the upstream transport's goroutine while the connection loop waits; the
// loop closes it before parsing the next request, after which reads fail
// instead of stealing the next request's bytes.
type reqBody struct {
	mu        sync.Mutex
	r         *bufio.Reader
	lim       parseLimits
	onDone    func()    // called once when the body has been read to its end
	chunked   io.Reader // set for chunked bodies
	remaining int64     // Content-Length bodies: bytes left
	done      bool      // the body ended (EOF seen)
	closed    bool
	err       error // a framing error: the connection cannot continue
}

var errBodyClosed = errors.New("request body read after the exchange ended")

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readLocked(p)
}

func (b *reqBody) readLocked(p []byte) (int, error) {
	switch {
	case b.closed:
		return 0, errBodyClosed
	case b.err != nil:
		return 0, b.err
	case b.done:
		return 0, io.EOF
	}
	if b.chunked != nil {
		n, err := b.chunked.Read(p)
		if errors.Is(err, io.EOF) {
			// The last chunk: consume the trailer section up to its empty
			// line, within the same bounds as a request head (the trailers
			// are checked, and not forwarded).
			budget := b.lim.MaxTrailerBytes
			if lerr := readFields(b.r, nil, b.lim.MaxHeaders, &budget); lerr != nil {
				if errors.Is(lerr, io.EOF) {
					lerr = io.ErrUnexpectedEOF // the connection ended inside the trailers
				}
				b.err = lerr
				return n, lerr
			}
			b.setDone()
			return n, io.EOF
		}
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.remaining <= 0 {
		b.setDone()
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.setDone()
		if err == nil {
			err = io.EOF
		}
	}
	if errors.Is(err, io.EOF) && !b.done {
		err = io.ErrUnexpectedEOF
		b.err = err
	}
	return n, err
}

func (b *reqBody) setDone() {
	if b.done {
		return
	}
	b.done = true
	if b.onDone != nil && !b.closed {
		b.onDone()
	}
}

// Close ends the body for its readers (the transport closes request
// bodies; that must not consume the connection).
func (b *reqBody) Close() error { return nil }

// finish drains up to limit bytes of what is left and closes the body. It
// reports whether the connection can carry another request: the body
// ended cleanly within the limit.
func (b *reqBody) finish(limit int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.closed = true }()
	if b.closed {
		return b.done
	}
	buf := make([]byte, 4096)
	var read int64
	for !b.done {
		if b.err != nil || read > limit {
			return false
		}
		n, err := b.readLocked(buf)
		read += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return false
		}
	}
	return true
}
