package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// tunnel completes a WebSocket upgrade the upstream accepted (101): the
// 101 goes to the client with the response modifiers applied, then bytes
// are copied both ways until both sides are done. Istio's waypoint allows
// WebSocket upgrades by default; HTTP/1.1 only (RFC 6455). Nothing moving
// for the stream idle timeout, or the client leaving, ends the tunnel.
func (p *Proxy) tunnel(x *exchange, resp *http.Response, start time.Time) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	hj, ok2 := x.w.(http.Hijacker)
	if !ok || !ok2 {
		p.localReply(x, replyProtocolError)
		return
	}
	h := x.w.Header()
	upgrade := resp.Header.Get("Upgrade")
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	h["Upgrade"] = []string{upgrade}
	x.upstreamTimeMs = time.Since(start).Milliseconds()
	h["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(x.upstreamTimeMs, 10)}
	p.responseHeaders(x, h)
	x.w.WriteHeader(http.StatusSwitchingProtocols)
	client, brw, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	// Either side failing, the client leaving or the idle timeout: close
	// both, which ends both copies.
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			_ = client.Close()
			_ = up.Close()
		})
	}
	stop := context.AfterFunc(x.ctx, closeAll)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pipe(x, up, brw.Reader, closeAll)
	}()
	p.pipe(x, client, up, closeAll)
	wg.Wait()
	closeAll()
}

// pipe copies src to dst, marking the stream active; at src's end it
// half-closes dst, on an error it closes everything.
func (p *Proxy) pipe(x *exchange, dst io.Writer, src io.Reader, closeAll func()) {
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	buf := *bufp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			x.idle.touch()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				closeAll()
				return
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return
			}
			closeAll()
			return
		}
		if rerr != nil {
			closeAll()
			return
		}
	}
}

// Hijack lets the tunnel take the client connection through the recorder.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	return hj.Hijack()
}
