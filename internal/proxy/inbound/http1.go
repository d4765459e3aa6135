package inbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serveHTTP1 serves HTTP/1.x requests on one connection, one at a time
// (keep-alive, pipelining in order), with our own strict reader and
// writer, so that header names go out in lower case as Envoy writes them
// and so that every limit is ours to set. br holds what was read past the
// PROXY header.
//
// An idle connection holds no buffer: between requests, with nothing
// buffered, the read and write buffers go back to their pools and the
// connection waits on a one-byte read; the next request's first byte
// brings buffers back.
func serveHTTP1(ctx context.Context, c net.Conn, br *bufio.Reader, h http.Handler, o *HTTPOptions, log *slog.Logger,
	st *connState, draining func() bool, stats *Stats) {
	cr := &connReader{c: c}
	hr := br
	watch := &connWatch{c: c}
	defer watch.close()
	var scratch []byte // the request heads' bytes, reused
	info := InfoFromContext(ctx)
	remote := info.Source.String()
	served := 0
	for first := true; ; first = false {
		// Wait for the next request: idle timeout, then the header timeout
		// from its first byte.
		idle := o.IdleTimeout
		if first {
			idle = o.ReadHeaderTimeout
		}
		_ = c.SetReadDeadline(time.Now().Add(idle))
		if hr == nil || hr.Buffered() == 0 {
			if draining() {
				return // between requests while draining: close now
			}
			st.idle.Store(true)
			if hr != nil && !first {
				putReader(hr) // nothing buffered, nobody reads it any more
				hr = nil
				scratch = nil
			}
		}
		var err error
		if hr == nil {
			err = cr.wait()
			if err == nil {
				hr = getReader(cr)
			}
		} else {
			_, err = hr.Peek(1)
		}
		st.idle.Store(false)
		if err != nil {
			return // closed, idle, or nothing sent: nothing to answer
		}
		_ = c.SetReadDeadline(time.Now().Add(o.ReadHeaderTimeout))
		req, body, err := readRequest(hr, parseLimits{
			MaxHeaders: o.MaxHeaders, MaxHeaderBytes: o.MaxHeaderBytes, MaxTrailerBytes: o.MaxHeaderBytes,
			AllowCustomMethods: o.AllowCustomMethods,
		}, &scratch)
		if err != nil {
			bw := getWriter(c)
			if replyError(bw, err, log, remote) {
				stats.BadRequests.Add(1)
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		req.RemoteAddr = remote
		// No context per request: the handler finds the connection's facts
		// through the writer (Info), and learns of a client that left
		// through OnClientGone, which spares a context and a copy of the
		// request for every exchange.
		bw := getWriter(c)
		w := &responseWriter{bw: bw, req: req, header: make(http.Header, 8), status: 0, cl: -1, draining: draining,
			conn: c, hr: hr, watch: watch, info: info}
		watch.reset(w, hr)
		// While the exchange waits on the upstream, a client that closes
		// its connection ends the request's context, as net/http does, so
		// the upstream exchange is cancelled at once. The watch reads the
		// connection only once the request body is over and nothing more
		// is buffered.
		if req.Body == http.NoBody {
			if hr.Buffered() == 0 {
				watch.arm()
			}
		} else {
			body.onDone = func() {
				if hr.Buffered() == 0 {
					watch.arm()
				}
			}
		}
		if o.MaxRequestsPerConnection > 0 && served+1 >= o.MaxRequestsPerConnection {
			w.closeAfter = true // the last request this connection may carry
		}
		var cont *continueReader
		if req.Header.Get("Expect") == "100-continue" && req.ContentLength != 0 {
			cont = &continueReader{r: req.Body, w: w}
			req.Body = cont
		}
		ok := serveOne(h, w, req, log)
		gone := watch.stop()
		if !ok || w.hijacked || gone {
			return
		}
		if !w.finish() || w.closeAfter {
			return
		}
		// The client still waits for "100 Continue" before it sends the
		// body nobody read: only closing ends that exchange.
		if cont != nil && !cont.wasSent() {
			return
		}
		// Drain what the handler left of the body so the next request
		// parses (but never an unbounded body for nothing), then close the
		// body: an upstream writer that still holds it can no longer read
		// from the connection once the next request is being parsed.
		// The drain is bounded in time as in bytes: a client that stalls
		// mid-body (or a reader still blocked on it) ends with the close.
		_ = c.SetReadDeadline(time.Now().Add(o.ReadHeaderTimeout))
		if !body.finish(256 << 10) {
			return
		}
		// The exchange is over and its body closed: nothing can write to
		// the writer any more (retire stops a late 100 Continue), so it
		// goes back to the pool.
		w.retire()
		putWriter(bw)
		if o.MaxRequestsPerConnection > 0 {
			if served++; served >= o.MaxRequestsPerConnection {
				return
			}
		}
	}
}

// connReader is the connection under a pooled bufio.Reader, with the byte
// an idle wait read put back in front.
type connReader struct {
	c       net.Conn
	pending [1]byte
	has     bool
}

// wait blocks until the client sends a byte (or the read deadline), and
// keeps it for the reader.
func (r *connReader) wait() error {
	n, err := r.c.Read(r.pending[:])
	if n == 1 {
		r.has = true
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.has && len(p) > 0 {
		p[0] = r.pending[0]
		r.has = false
		return 1, nil
	}
	return r.c.Read(p)
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// getReader returns a pooled 4 KiB reader of r.
func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// getWriter returns a pooled 4 KiB writer to w.
func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

// serveOne runs the handler, turning a panic into a 500 and a closed
// connection; it reports whether the connection may go on.
func serveOne(h http.Handler, w *responseWriter, req *http.Request, log *slog.Logger) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if err, isErr := r.(error); isErr && errors.Is(err, http.ErrAbortHandler) {
				ok = false
				return
			}
			log.Error("panic in the request handler", "panic", r, "method", req.Method, "path", req.URL.Path)
			if !w.wroteHeader {
				w.header = http.Header{}
				w.closeAfter = true
				w.WriteHeader(http.StatusInternalServerError)
				_ = w.finish()
			}
			ok = false
		}
	}()
	h.ServeHTTP(w, req)
	return true
}

// replyError answers a request that could not be read, then the caller
// closes the connection.
func replyError(bw *bufio.Writer, err error, log *slog.Logger, remote string) (answered bool) {
	var ne net.Error
	var re *requestError
	switch {
	case errors.As(err, &re):
		log.Debug("refused HTTP/1 request", "remote", remote, "reason", re.msg)
		_ = writeSimple(bw, re.status, re.msg, true)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		_ = writeSimple(bw, http.StatusRequestTimeout, "request timeout", true)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return false
	default:
		log.Debug("bad HTTP/1 request", "remote", remote, "error", err.Error())
		_ = writeSimple(bw, http.StatusBadRequest, "bad request", true)
	}
	return true
}

// writeSimple writes a small text/plain response.
func writeSimple(bw *bufio.Writer, status int, body string, closeConn bool) error {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\ncontent-length: %d\r\ncontent-type: text/plain\r\ndate: %s\r\n",
		status, http.StatusText(status), len(body), httpDate())
	if closeConn {
		bw.WriteString("connection: close\r\n")
	}
	bw.WriteString("\r\n")
	bw.WriteString(body)
	return bw.Flush()
}

// watchDelay is how long a request may wait on its upstream before the
// connection is watched for the client leaving. Most exchanges end
// sooner, and then cost no read, goroutine or wake-up for the watch.
const watchDelay = 200 * time.Millisecond

// connWatch notices a client closing its connection while a request is
// in flight: once the request body is over and the exchange has taken
// watchDelay, it reads from the connection (at most one byte, which it
// puts back for the next request) and, on EOF or an error, cancels the
// request's context. One per connection, armed per request.
type connWatch struct {
	c  net.Conn
	hr *bufio.Reader // the request's reader; watched only while it holds nothing

	mu      sync.Mutex
	timer   *time.Timer // fires start, reused across requests
	w       *responseWriter
	armed   bool // the request may still start the watch
	started bool
	done    chan struct{}
	gone    bool // the connection ended (written before done closes)
}

// reset prepares the watch for the next request.
func (w *connWatch) reset(rw *responseWriter, hr *bufio.Reader) {
	w.mu.Lock()
	w.w, w.hr, w.gone, w.armed, w.started = rw, hr, false, false, false
	w.mu.Unlock()
}

// arm starts the watch after watchDelay, unless the request ends first.
// The caller has checked that nothing of the connection is buffered: from
// here until stop, nobody else reads it.
func (w *connWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed || w.started {
		return
	}
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(watchDelay, w.start)
	} else {
		w.timer.Reset(watchDelay)
	}
}

// start begins watching, once per request, unless the request is over.
func (w *connWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || w.started {
		return
	}
	w.started = true
	done, rw, hr := make(chan struct{}), w.w, w.hr
	w.done = done
	go func() {
		defer close(done)
		// Peek keeps what it reads for the next request.
		_, err := hr.Peek(1)
		var ne net.Error
		if err != nil && (!errors.As(err, &ne) || !ne.Timeout()) {
			w.gone = true
			rw.clientGone()
		}
	}()
}

// stop ends the watch for this request and reports whether the
// connection ended.
func (w *connWatch) stop() bool {
	w.mu.Lock()
	if w.armed && w.timer != nil {
		w.timer.Stop() // a late fire finds armed false and does nothing
	}
	w.armed = false
	started, done := w.started, w.done
	w.started = false
	w.mu.Unlock()
	if !started {
		return false
	}
	_ = w.c.SetReadDeadline(time.Unix(1, 0)) // wakes the read
	<-done
	return w.gone
}

// close releases the watch's timer when the connection ends.
func (w *connWatch) close() {
	w.stop()
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}

// continueReader sends "100 Continue" before the first body read, unless
// the final response has begun. It runs on whatever goroutine reads the
// body (the upstream transport's), so it shares the response's lock.
type continueReader struct {
	r    io.ReadCloser
	w    *responseWriter
	sent bool // guarded by w.mu
}

func (c *continueReader) Read(p []byte) (int, error) {
	c.w.mu.Lock()
	if !c.sent {
		c.sent = true
		if !c.w.wroteHeader && !c.w.retired {
			c.w.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := c.w.bw.Flush(); err != nil {
				c.w.mu.Unlock()
				return 0, err
			}
		}
	}
	c.w.mu.Unlock()
	return c.r.Read(p)
}

func (c *continueReader) wasSent() bool {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.sent
}

func (c *continueReader) Close() error { return c.r.Close() }

// responseWriter writes one HTTP/1.1 response. mu serialises its writes
// with a continueReader's on another goroutine.
type responseWriter struct {
	mu          sync.Mutex
	bw          *bufio.Writer
	req         *http.Request
	header      http.Header
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	cl          int64 // declared content length, -1 when none
	written     int64
	closeAfter  bool
	failed      bool
	draining    func() bool // the server is shutting down: end with connection: close

	// For Hijack (a WebSocket tunnel): the connection and what the
	// request reader has buffered of it.
	conn     net.Conn
	hr       *bufio.Reader
	watch    *connWatch
	hijacked bool

	retired bool // the exchange is over: its writer went back to the pool

	info   *ConnInfo
	goneMu sync.Mutex
	gone   bool
	onGone func()
}

// retire ends the writer's use: a late read of the body (an upstream
// writer still holding it) can no longer write a 100 Continue into a
// writer that went back to the pool.
func (w *responseWriter) retire() {
	w.mu.Lock()
	w.retired = true
	w.mu.Unlock()
}

// Info returns the facts of the connection the request arrived on.
func (w *responseWriter) Info() *ConnInfo { return w.info }

// OnClientGone registers f to run (once, on another goroutine) if the
// client closes its connection while the request is being served; at once
// if it already has.
func (w *responseWriter) OnClientGone(f func()) {
	w.goneMu.Lock()
	gone := w.gone
	w.onGone = f
	w.goneMu.Unlock()
	if gone {
		f()
	}
}

func (w *responseWriter) clientGone() {
	w.goneMu.Lock()
	w.gone = true
	f := w.onGone
	w.goneMu.Unlock()
	if f != nil {
		f()
	}
}

// SetReadDeadline bounds reads of the request body (for
// http.ResponseController): the stream idle timeout wakes a body read
// stuck on a client that stopped sending.
func (w *responseWriter) SetReadDeadline(t time.Time) error { return w.conn.SetReadDeadline(t) }

// Hijack hands the connection to the handler (http.Hijacker), after the
// response head written so far: the WebSocket tunnel. The handler owns
// the connection until it returns; the server then closes it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.watch != nil {
		w.watch.stop()
	}
	_ = w.conn.SetReadDeadline(time.Time{})
	if err := w.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(w.hr, w.bw), nil
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *responseWriter) writeHeaderLocked(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code == http.StatusContinue {
		return // 100 Continue is ours to send (continueReader), never relayed
	}
	if code > 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: written at once, the final status comes later.
		w.writeStatusLine(code)
		w.writeHeaders(w.header, nil)
		w.bw.WriteString("\r\n")
		_ = w.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	if w.req.Close { // readRequest read Connection (close; keep-alive for 1.0)
		w.closeAfter = true
	}
	if strings.EqualFold(h.Get("Connection"), "close") || (w.draining != nil && w.draining()) {
		w.closeAfter = true
	}
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	h.Del("Keep-Alive")
	if code != http.StatusSwitchingProtocols {
		h.Del("Upgrade")
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	if v := h.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			h.Del("Content-Length")
		} else {
			w.cl = n
		}
	}
	extra := make([]string, 0, 4)
	if w.cl < 0 && !w.noBody {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
			extra = append(extra, "transfer-encoding: chunked")
		} else {
			w.closeAfter = true // HTTP/1.0 without a length: the close ends the body
		}
	}
	if code == http.StatusNoContent || code == http.StatusNotModified || code < 200 {
		h.Del("Content-Length")
		w.cl = -1
		w.chunked = false
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}
	switch {
	case code == http.StatusSwitchingProtocols:
		extra = append(extra, "connection: upgrade")
		w.closeAfter = true // the connection is the tunnel's from here
	case w.closeAfter:
		extra = append(extra, "connection: close")
	case w.req.ProtoMinor == 0:
		extra = append(extra, "connection: keep-alive")
	}
	w.writeStatusLine(code)
	w.writeHeaders(h, extra)
	w.bw.WriteString("\r\n")
}

func (w *responseWriter) writeStatusLine(code int) {
	w.bw.WriteString("HTTP/1.1 ")
	w.bw.WriteString(strconv.Itoa(code))
	w.bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	w.bw.WriteString(text)
	w.bw.WriteString("\r\n")
}

// writeHeaders writes header fields with lower-case names, as Envoy does,
// in a stable (sorted) order; CR and LF in values become spaces.
func (w *responseWriter) writeHeaders(h http.Header, extra []string) {
	var stack [32]string
	keys := stack[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !validHeaderName(k) {
			continue
		}
		for _, v := range h[k] {
			writeLower(w.bw, k)
			w.bw.WriteString(": ")
			writeValue(w.bw, v)
			w.bw.WriteString("\r\n")
		}
	}
	for _, e := range extra {
		w.bw.WriteString(e)
		w.bw.WriteString("\r\n")
	}
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func writeLower(bw *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		bw.WriteByte(c)
	}
}

func writeValue(bw *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wroteHeader {
		if _, ok := w.header["Content-Type"]; !ok && len(p) > 0 {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.writeHeaderLocked(http.StatusOK)
	}
	if w.failed {
		return 0, errWriteFailed
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		w.failed = true
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.chunked {
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		w.bw.Write(p)
		_, err := w.bw.WriteString("\r\n")
		if err != nil {
			w.failed = true
			return 0, err
		}
		return len(p), nil
	}
	n, err := w.bw.Write(p)
	if err != nil {
		w.failed = true
	}
	return n, err
}

var errWriteFailed = errors.New("connection write failed")

// Flush sends what is buffered (http.Flusher, used for streaming).
func (w *responseWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if err := w.bw.Flush(); err != nil {
		w.failed = true
	}
}

// finish completes the response; it reports whether the connection may
// carry another request.
func (w *responseWriter) finish() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wroteHeader {
		if w.cl < 0 {
			w.header.Set("Content-Length", "0")
		}
		w.writeHeaderLocked(http.StatusOK)
	}
	if w.chunked {
		w.bw.WriteString("0\r\n\r\n")
	}
	if err := w.bw.Flush(); err != nil || w.failed {
		return false
	}
	if w.cl >= 0 && w.written < w.cl && !w.noBody {
		return false // the body was cut short: only closing tells the client
	}
	return true
}

// Date header, formatted once a second.
var cachedDate atomic.Pointer[dateEntry]

type dateEntry struct {
	sec  int64
	text string
}

func httpDate() string {
	now := time.Now()
	if d := cachedDate.Load(); d != nil && d.sec == now.Unix() {
		return d.text
	}
	d := &dateEntry{sec: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}
