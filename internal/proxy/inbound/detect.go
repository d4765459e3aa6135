package inbound

import (
	"bufio"
	"errors"
	"os"
)

// maxMethodLen bounds the bytes detectHTTP reads to find a request
// method: longer than every registered method, so a longer token is no
// HTTP/1 request line.
const maxMethodLen = 24

// detectHTTP decides a connection whose port protocol is detected
// (ir.ProtocolDetect: workload traffic) as Envoy's HTTP inspector does for
// Istio's waypoint: HTTP when its first bytes are an HTTP/1 request line's
// method and a space (a registered method, or any token with
// allowCustom), or the start of the HTTP/2 preface ("PRI "); else TCP. It
// only peeks, so the bytes are still there for whoever serves the
// connection. A client that sends nothing before the read deadline (a
// server-first protocol) is TCP; http is false with an error when the
// connection failed or ended before it could be decided.
func detectHTTP(br *bufio.Reader, allowCustom bool) (http bool, err error) {
	for n := 1; n <= maxMethodLen+1; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil
			}
			return false, err
		}
		c := b[n-1]
		if c == ' ' && n > 1 {
			m := string(b[:n-1])
			return m == "PRI" || MethodAllowed(m, allowCustom), nil
		}
		if !isTokenChar(c) {
			return false, nil
		}
	}
	return false, nil
}

// isTokenChar reports whether c may appear in an RFC 9110 token.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
