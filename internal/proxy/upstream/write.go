package upstream

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/httpwire"
)

// writeRequest writes req to bw as HTTP/1.1, as http.Request.Write does
// for what the proxy sends (FuzzWriteRequestAgreesWithNetHTTP), without
// its allocations: the request line from the URL's parts, Host, the header
// fields as they are (CR and LF in values become spaces), the framing, and
// the body. A body shorter than its ContentLength is an error.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	u := req.URL
	switch {
	case u.Opaque != "":
		bw.WriteString(u.Opaque)
	default:
		p := u.EscapedPath()
		if p == "" || p[0] != '/' {
			bw.WriteByte('/') // origin-form always starts with "/"
		}
		bw.WriteString(p)
		if u.ForceQuery || u.RawQuery != "" {
			bw.WriteByte('?')
			writeQuery(bw, u.RawQuery)
		}
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = u.Host
	}
	writeValue(bw, host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			if len(vv) > 0 && vv[0] == "" {
				continue // net/http: an empty User-Agent means none
			}
		}
		if !httpwire.ValidToken(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	switch {
	case body != nil && req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		return writeChunked(bw, body)
	case body != nil && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		n, err := io.CopyN(bw, body, req.ContentLength)
		if err != nil {
			if errors.Is(err, io.EOF) && n < req.ContentLength {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		return nil
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n\r\n")
	default:
		bw.WriteString("\r\n")
	}
	return nil
}

// writeQuery writes a raw query, percent-encoding any byte that cannot
// stand in a request target (the inbound listener lets none through; an
// authorizer's rewrite might).
func writeQuery(bw *bufio.Writer, q string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '#' {
			bw.WriteString(q[:i])
			for ; i < len(q); i++ {
				c := q[i]
				if c <= ' ' || c >= 0x7f || c == '#' {
					bw.WriteByte('%')
					bw.WriteByte(hex[c>>4])
					bw.WriteByte(hex[c&15])
					continue
				}
				bw.WriteByte(c)
			}
			return
		}
	}
	bw.WriteString(q)
}

// writeChunked copies a body of unknown length as chunks.
func writeChunked(bw *bufio.Writer, body io.Reader) error {
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			bw.WriteString(strconv.FormatInt(int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
			// A body of unknown length may be a stream: send what there is.
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			_, werr := bw.WriteString("0\r\n\r\n")
			return werr
		}
		if err != nil {
			return err
		}
	}
}

// writeValue writes a header value with control characters (CR, LF, NUL
// and the rest but HTAB) and DEL as spaces, so no value can end the head
// early or be split by a backend (net/http turns only newlines to spaces).
func writeValue(bw *bufio.Writer, s string) {
	if httpwire.ValidFieldValue(s) {
		bw.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
