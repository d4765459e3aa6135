package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// errProtocol marks a response that arrived but was wrong (status, missing
// header, body length): the connection is still usable when keep-alive.
var errProtocol = errors.New("bad response")

var (
	hdrContentLength    = []byte("content-length")
	hdrTransferEncoding = []byte("transfer-encoding")
	hdrConnection       = []byte("connection")
	valChunked          = []byte("chunked")
	valClose            = []byte("close")
)

// readResponse reads one HTTP/1.1 response from br without allocating on
// the success path. It checks the status is 200, that the header expect
// (lower case; nil: none) is present and, when bodyLen > 0, the body
// length. keepAlive is false when the server asked to close.
func readResponse(br *bufio.Reader, expect []byte, bodyLen int) (keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, fmt.Errorf("bad status line %q", bytes.TrimSpace(line))
	}
	status200 := line[9] == '2' && line[10] == '0' && line[11] == '0'
	var statusText string
	if !status200 {
		statusText = string(bytes.TrimSpace(line[9:]))
	}
	keepAlive = line[7] == '1' // HTTP/1.1 defaults to keep-alive
	contentLength, chunked, found := -1, false, expect == nil
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 { // "\r\n": end of the header
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, fmt.Errorf("bad header line %q", bytes.TrimSpace(line))
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			n, perr := atoi(value)
			if perr != nil {
				return false, fmt.Errorf("bad content-length %q", value)
			}
			contentLength = n
		case bytes.EqualFold(name, hdrTransferEncoding):
			chunked = containsFold(value, valChunked)
		case bytes.EqualFold(name, hdrConnection):
			if bytes.EqualFold(value, valClose) {
				keepAlive = false
			}
		}
		if !found && bytes.EqualFold(name, expect) {
			found = true
		}
	}
	var n int
	switch {
	case chunked:
		n, err = discardChunked(br)
		if err != nil {
			return false, err
		}
	case contentLength >= 0:
		n, err = br.Discard(contentLength)
		if err != nil {
			return false, err
		}
	default:
		return false, errors.New("response without content-length or chunked encoding")
	}
	switch {
	case !status200:
		return keepAlive, fmt.Errorf("%w: status %s", errProtocol, statusText)
	case !found:
		return keepAlive, fmt.Errorf("%w: no %s header", errProtocol, expect)
	case bodyLen > 0 && n != bodyLen:
		return keepAlive, fmt.Errorf("%w: body of %d bytes, want %d", errProtocol, n, bodyLen)
	}
	return keepAlive, nil
}

// discardChunked reads a chunked body and its trailer section.
func discardChunked(br *bufio.Reader) (int, error) {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(line), 16, 32)
		if err != nil {
			return total, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for { // trailers, then the final CRLF
				tl, err := br.ReadSlice('\n')
				if err != nil {
					return total, err
				}
				if len(tl) <= 2 {
					return total, nil
				}
			}
		}
		if _, err := br.Discard(int(size)); err != nil {
			return total, err
		}
		total += int(size)
		if _, err := br.Discard(2); err != nil { // CRLF after the chunk
			return total, err
		}
	}
}

func atoi(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 12 {
		return 0, io.ErrUnexpectedEOF
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// containsFold reports whether s contains sub, ASCII case-insensitively.
func containsFold(s, sub []byte) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
