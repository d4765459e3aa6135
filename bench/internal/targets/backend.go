package targets

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
)

// BodySize is the size of every backend response body (Istio's method: 1 KB).
const BodySize = 1024

var (
	body       = bytes.Repeat([]byte("x"), BodySize)
	response   = append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(BodySize)+"\r\n\r\n"), body...)
	hdrLength  = []byte("content-length")
	hdrConn    = []byte("connection")
	valClose   = []byte("close")
	errBadHead = errors.New("bad request head")
)

// ServeBackend answers every HTTP/1.1 request on ln with 200 and a 1 KB body.
// It is deliberately minimal (a precomputed response, no allocation per
// request) so that the backend costs as little CPU as possible: on two
// cores, every cycle it spends is taken from the proxy or the generator.
func ServeBackend(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveBackendConn(c)
	}
}

func serveBackendConn(c net.Conn) {
	defer func() { _ = c.Close() }()
	br := bufio.NewReaderSize(c, 8<<10)
	bw := bufio.NewWriterSize(c, 8<<10)
	for {
		keepAlive, err := readRequest(br)
		if err != nil {
			return
		}
		if _, err := bw.Write(response); err != nil {
			return
		}
		if br.Buffered() == 0 || !keepAlive { // pipelined requests: answer in one write
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if !keepAlive {
			return
		}
	}
}

// readRequest reads a request head and discards its body (Content-Length
// bodies only: the benchmark sends none, proxies forward none).
func readRequest(br *bufio.Reader) (keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	keepAlive = bytes.Contains(line, []byte("HTTP/1.1"))
	length := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, errBadHead
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hdrLength):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return false, errBadHead
			}
		case bytes.EqualFold(name, hdrConn):
			keepAlive = !bytes.EqualFold(value, valClose)
		}
	}
	if length > 0 {
		if _, err := br.Discard(length); err != nil {
			return false, err
		}
	}
	return keepAlive, nil
}

// ServeBackendH2C serves the same response with net/http, HTTP/1.1 and h2c
// (prior knowledge): the direct baseline for the h2c runs.
func ServeBackendH2C(ln net.Listener) error {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(BodySize))
			_, _ = w.Write(body)
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
	}
	return srv.Serve(ln)
}
