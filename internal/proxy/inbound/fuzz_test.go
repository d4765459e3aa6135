package inbound

import (
	"bufio"
	"bytes"
	"io"
	"net/url"
	"strings"
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

// FuzzReadRequest feeds arbitrary bytes to the HTTP/1 request parser: it
// must return a request or an error, never panic, and whatever it accepts
// must be unambiguous to frame.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h:8/p?q HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		req, body, err := readRequest(br, parseLimits{MaxHeaders: 100, MaxHeaderBytes: 60 << 10, MaxTrailerBytes: 60 << 10}, new([]byte))
		if err != nil {
			return
		}
		if len(req.TransferEncoding) > 0 && len(req.Header["Content-Length"]) > 0 {
			t.Fatal("accepted both Transfer-Encoding and Content-Length")
		}
		if strings.ContainsAny(req.Host, "\r\n") {
			t.Fatalf("host with CR/LF: %q", req.Host)
		}
		_, _ = io.Copy(io.Discard, req.Body)
		body.finish(1 << 20)
	})
}

// FuzzParseTarget checks the request-target forms of RFC 9112 3.2: an
// accepted target yields an origin-form RequestURI; a target starting with
// "/" is always origin-form, kept byte for byte, its path what comes before
// the first "?" whatever the query holds; nothing with a fragment, a
// control character or another scheme is accepted.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"/", "/a?b=http://c/d", "http://h:8/p?q", "https://h", "*", "h:80", "//x", "/a%2Fb", "/%zz", "ftp://x/", "/a#b"} {
		f.Add("GET", s)
	}
	f.Add("OPTIONS", "*")
	f.Fuzz(func(t *testing.T, method, target string) {
		if target == "" {
			return
		}
		u, origin, form, err := parseTarget(method, target)
		if err != nil {
			return
		}
		if strings.ContainsAny(target, "# \x00\r\n\x7f") {
			t.Fatalf("accepted %q", target)
		}
		switch form {
		case asteriskForm:
			if method != "OPTIONS" || origin != "*" {
				t.Fatalf("asterisk-form %q for %s", origin, method)
			}
			return
		case originForm:
			if target[0] != '/' || origin != target {
				t.Fatalf("origin-form %q from %q", origin, target)
			}
		case absoluteForm:
			if target[0] == '/' {
				t.Fatalf("%q taken as absolute-form", target)
			}
			if !strings.HasPrefix(strings.ToLower(target), "http://") && !strings.HasPrefix(strings.ToLower(target), "https://") {
				t.Fatalf("absolute-form with scheme %q", target)
			}
			if origin == "" || origin[0] != '/' || !strings.HasSuffix(target, strings.TrimPrefix(origin, "/")) {
				t.Fatalf("origin %q from %q", origin, target)
			}
		default:
			t.Fatalf("form %d accepted", form)
		}
		path, query, _ := strings.Cut(origin, "?")
		if u.RawQuery != query || u.EscapedPath() == "" {
			t.Fatalf("%q: query %q path %q", target, u.RawQuery, u.EscapedPath())
		}
		if dec, err := url.PathUnescape(path); err != nil || dec != u.Path {
			t.Fatalf("%q: path %q, want %q", target, u.Path, dec)
		}
	})
}

// FuzzMethodAndAuthority checks that only registered methods (exact case)
// and well-formed authorities pass, and that what passes has no byte a
// backend could split on.
func FuzzMethodAndAuthority(f *testing.F) {
	for _, s := range []string{"GET", "delete", "M-SEARCH", "G T"} {
		f.Add(s, "svc:80")
	}
	f.Add("GET", "[::1]:8080")
	f.Add("GET", "a b")
	f.Add("GET", "u@h")
	f.Fuzz(func(t *testing.T, method, host string) {
		if MethodAllowed(method, false) {
			if _, ok := registeredMethods[method]; !ok || strings.ToUpper(method) != method {
				t.Fatalf("method %q allowed", method)
			}
		}
		if MethodAllowed(method, true) && !validToken(method) {
			t.Fatalf("custom method %q is not a token", method)
		}
		if validAuthority(host) && strings.ContainsAny(host, " \t\r\n\x00/?#@\\\"<>") {
			t.Fatalf("authority %q accepted", host)
		}
	})
}

// FuzzChunkedTrailers reads chunked bodies with arbitrary trailers: the
// reader never buffers a trailer section over its bound, and a body it
// accepts ends cleanly.
func FuzzChunkedTrailers(f *testing.F) {
	f.Add("3\r\nabc\r\n0\r\n", "x: 1\r\n")
	f.Add("0\r\n", strings.Repeat("x: 1\r\n", 200))
	f.Add("0\r\n", "x: "+strings.Repeat("a", 5000)+"\r\n")
	f.Add("1\r\na\r\n0\r\n", " folded\r\n")
	f.Fuzz(func(t *testing.T, chunks, trailers string) {
		raw := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + trailers + "\r\n"
		br := bufio.NewReaderSize(bytes.NewReader([]byte(raw)), 4096)
		lim := parseLimits{MaxHeaders: 10, MaxTrailerBytes: 1024}
		req, body, err := readRequest(br, lim, new([]byte))
		if err != nil {
			t.Fatalf("the head is fixed and valid: %v", err)
		}
		_, err = io.Copy(io.Discard, req.Body)
		if err == nil {
			if chunks == "0\r\n" {
				// The trailer section is what follows, up to its first empty
				// line (the rest belongs to the next request): accepted, it
				// must fit the bounds.
				section, lines := 0, 0
				for _, l := range strings.SplitAfter(trailers+"\r\n", "\n") {
					if l == "\n" || l == "\r\n" {
						break
					}
					section += len(l)
					lines++
				}
				if lines > lim.MaxHeaders || section > lim.MaxTrailerBytes {
					t.Fatalf("accepted a trailer section of %d lines, %d bytes", lines, section)
				}
			}
			if !body.finish(0) {
				t.Fatal("a body read to EOF is not finished")
			}
		}
	})
}
