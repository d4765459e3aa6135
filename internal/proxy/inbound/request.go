package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// requestError is a request the waypoint refuses, with the status it
// answers before closing the connection.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(msg string) error { return &requestError{status: http.StatusBadRequest, msg: msg} }

// readRequest parses one HTTP/1.x request head from br, strictly, and sets
// up its body. Unlike net/http it refuses what Envoy refuses, because a
// proxy that forwards an ambiguous request is how requests are smuggled:
// both Content-Length and Transfer-Encoding, differing Content-Lengths, a
// transfer coding other than chunked, obs-fold continuation lines, bare CR,
// invalid header names, and more than maxHeaders header fields.
func readRequest(br *bufio.Reader, maxHeaders int) (*http.Request, *reqBody, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, nil, err
	}
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
	req := &http.Request{
		Method: method, RequestURI: target, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Header: make(http.Header, 16),
	}
	if method == http.MethodConnect {
		return nil, nil, &requestError{status: http.StatusMethodNotAllowed, msg: "CONNECT is not supported on this listener"}
	}
	if target == "*" {
		if method != http.MethodOptions {
			return nil, nil, badRequest("asterisk-form is only valid for OPTIONS")
		}
		req.URL = &url.URL{Path: "*"}
	} else if req.URL, err = url.ParseRequestURI(target); err != nil {
		return nil, nil, badRequest("malformed request target")
	}

	count := 0
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, nil, err
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, nil, badRequest("obsolete line folding in headers")
		}
		count++
		if count > maxHeaders {
			return nil, nil, &requestError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "too many request headers"}
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !validToken(name) {
			return nil, nil, badRequest("malformed header field")
		}
		value = strings.Trim(value, " \t")
		if strings.ContainsAny(value, "\r\x00") {
			return nil, nil, badRequest("invalid character in header value")
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		req.Header[key] = append(req.Header[key], value)
	}

	// Host: exactly one; the absolute-form target's host wins (RFC 9112 3.2.2).
	hosts := req.Header["Host"]
	if len(hosts) > 1 {
		return nil, nil, badRequest("more than one Host header")
	}
	switch {
	case req.URL.Host != "":
		req.Host = req.URL.Host
	case len(hosts) == 1:
		req.Host = hosts[0]
	case minor >= 1:
		return nil, nil, badRequest("missing Host header")
	}
	delete(req.Header, "Host")

	// Connection management.
	conn := strings.ToLower(strings.Join(req.Header["Connection"], ","))
	if minor == 0 {
		req.Close = !strings.Contains(conn, "keep-alive")
	} else {
		req.Close = strings.Contains(conn, "close")
	}

	// Framing.
	te := req.Header["Transfer-Encoding"]
	cls := req.Header["Content-Length"]
	body := &reqBody{r: br}
	switch {
	case len(te) > 0 && len(cls) > 0:
		return nil, nil, badRequest("both Content-Length and Transfer-Encoding")
	case len(te) > 0:
		if minor == 0 {
			return nil, nil, badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
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

// validToken reports an RFC 9110 token (method and header names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// reqBody is a request body read from the connection. It may be read from
// the upstream transport's goroutine while the connection loop waits; the
// loop closes it before parsing the next request, after which reads fail
// instead of stealing the next request's bytes.
type reqBody struct {
	mu        sync.Mutex
	r         *bufio.Reader
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
			// The last chunk: consume the trailer section up to its empty line.
			for {
				line, lerr := readLine(b.r)
				if lerr != nil {
					b.err = lerr
					return n, lerr
				}
				if line == "" {
					break
				}
			}
			b.done = true
			return n, io.EOF
		}
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.remaining <= 0 {
		b.done = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.done = true
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
