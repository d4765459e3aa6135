package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// H1Client is the HTTP/1.1 client to endpoints. Unlike net/http's
// Transport, which hands every request and response between goroutines of
// its own, it runs each exchange on the caller's goroutine: it writes the
// request, reads the response head, and the caller reads the body; the
// connection goes back to the keep-alive pool when the body ends. Request
// bodies that may be large, or of unknown length, are written from a
// second goroutine so an upstream that answers before reading them cannot
// deadlock the exchange.
type H1Client struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	// MaxHeaderBytes bounds a response head (status line and headers,
	// informational heads before it included); MaxHeaders its header
	// fields. Past either: a ProtocolError. Zero: 60 KiB and 100.
	MaxHeaderBytes int
	MaxHeaders     int

	mu   sync.Mutex
	idle map[string][]*h1Conn
}

// NewH1Client builds a client dialing with dial, keeping at most maxIdle
// idle connections per endpoint for at most idleTimeout.
func NewH1Client(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int, idleTimeout time.Duration) *H1Client {
	return &H1Client{dial: dial, maxIdle: maxIdle, idleTimeout: idleTimeout, idle: map[string][]*h1Conn{}}
}

type h1Conn struct {
	c        net.Conn
	lr       *headLimit // under br: bounds the response head
	br       *bufio.Reader
	bw       *bufio.Writer
	scratch  []byte // the response head's bytes, reused
	addr     string
	lastUsed time.Time
	// uses is the number of requests sent on the connection; past
	// maxUses (a DestinationRule's maxRequestsPerConnection; 0: no limit)
	// it is closed rather than pooled.
	uses, maxUses uint32
}

// inlineBodyLimit is the largest request body written before the response
// is read, on the caller's goroutine.
const inlineBodyLimit = 64 << 10

var errStale = errors.New("upstream closed an idle connection")

func noStop() bool { return false }

// RoundTrip sends one request to req.URL.Host and returns the response;
// its Body must be read to the end or closed.
func (c *H1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	return c.Do(req.Context(), req)
}

// Do is RoundTrip with the context given apart (req's own is ignored),
// which spares the proxy a copy of every request.
func (c *H1Client) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	return c.DoWith(ctx, req, nil)
}

// DoWith is Do with a backend's own connection settings (nil: the
// client's): its connect timeout, idle timeout and requests per
// connection.
func (c *H1Client) DoWith(ctx context.Context, req *http.Request, o *ConnOptions) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := c.get(ctx, req.URL.Host, o)
		if err != nil {
			return nil, err
		}
		resp, err := c.exchange(ctx, pc, req)
		if err == nil {
			return resp, nil
		}
		// A pooled connection the upstream had already closed fails before
		// any answer: send again on a fresh one when nothing of the body
		// can have been consumed.
		if reused && attempt == 0 && errors.Is(err, errStale) && replayable(req) && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0
}

// get returns an idle connection to addr, or dials one.
func (c *H1Client) get(ctx context.Context, addr string, o *ConnOptions) (*h1Conn, bool, error) {
	now := time.Now()
	idleFor := c.idleTimeout
	var maxUses uint32
	if o != nil {
		if o.IdleTimeout > 0 {
			idleFor = min(idleFor, o.IdleTimeout)
		}
		maxUses = o.MaxRequests
	}
	c.mu.Lock()
	list := c.idle[addr]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(pc.lastUsed) < idleFor {
			c.idle[addr] = list
			c.mu.Unlock()
			pc.uses++
			pc.maxUses = maxUses
			return pc, true, nil
		}
		_ = pc.c.Close()
	}
	delete(c.idle, addr)
	c.mu.Unlock()
	dctx := ctx
	if o != nil && o.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
		defer cancel()
	}
	conn, err := c.dial(dctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	lr := &headLimit{r: conn, n: -1}
	return &h1Conn{c: conn, lr: lr, br: bufio.NewReaderSize(lr, 4096), bw: bufio.NewWriterSize(conn, 4096), addr: addr,
		uses: 1, maxUses: maxUses}, false, nil
}

// put returns a connection to the pool (or closes it when the pool is full).
func (c *H1Client) put(pc *h1Conn) {
	if pc.maxUses > 0 && pc.uses >= pc.maxUses {
		_ = pc.c.Close()
		return
	}
	pc.lastUsed = time.Now()
	c.mu.Lock()
	if len(c.idle[pc.addr]) < c.maxIdle {
		c.idle[pc.addr] = append(c.idle[pc.addr], pc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = pc.c.Close()
}

// CloseIdleConnections closes every pooled connection.
func (c *H1Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle = map[string][]*h1Conn{}
	c.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			_ = pc.c.Close()
		}
	}
}

// exchange writes req on pc and reads the response head.
func (c *H1Client) exchange(ctx context.Context, pc *h1Conn, req *http.Request) (*http.Response, error) {
	// Cancellation and deadlines reach a blocked read or write through the
	// connection's deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.c.SetDeadline(dl)
	} else {
		_ = pc.c.SetDeadline(time.Time{})
	}
	stop := noStop
	if ctx.Done() != nil { // a context that can never end needs no watcher
		stop = context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	}

	fail := func(err error) (*http.Response, error) {
		stop()
		_ = pc.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	streamBody := req.Body != nil && req.Body != http.NoBody &&
		(req.ContentLength < 0 || req.ContentLength > inlineBodyLimit)
	var bodyErr chan error
	if !streamBody {
		if err := writeRequest(pc.bw, req); err != nil {
			return fail(err)
		}
		if err := pc.bw.Flush(); err != nil {
			return fail(err)
		}
	} else {
		// Write the whole request (head and body) from a second goroutine;
		// the response may start before the body is sent.
		bodyErr = make(chan error, 1)
		go func() {
			err := writeRequest(pc.bw, req)
			if err == nil {
				err = pc.bw.Flush()
			}
			if err != nil {
				// The body could not be sent (the client went away, or the
				// upstream stopped reading): the exchange is over, and closing
				// also ends a response read still waiting for the upstream.
				_ = pc.c.Close()
			}
			bodyErr <- err
		}()
	}

	resp, err := c.readHead(pc, req)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upstream took the upgrade the request asked for: the
		// connection is now the tunnel's, never pooled again.
		stop()
		_ = pc.c.SetDeadline(time.Time{})
		resp.Body = &upgradedConn{br: pc.br, c: pc.c}
		return resp, nil
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, c: c, pc: pc, resp: resp, req: req, stop: stop, bodyErr: bodyErr}
	return resp, nil
}

// ProtocolError is an upstream response the waypoint cannot relay: a
// malformed or oversized head, an unsolicited 101, conflicting framing.
// The proxy answers 502 with Envoy's UPE flag.
type ProtocolError struct{ Err error }

func (e *ProtocolError) Error() string { return "upstream protocol error: " + e.Err.Error() }
func (e *ProtocolError) Unwrap() error { return e.Err }

// maxInformational bounds the 1xx heads read before the final one.
const maxInformational = 8

var errHeadTooLarge = errors.New("response head too large")

// readHead reads the final response head, skipping informational ones,
// within the head limits.
func (c *H1Client) readHead(pc *h1Conn, req *http.Request) (*http.Response, error) {
	maxBytes, maxFields := c.MaxHeaderBytes, c.MaxHeaders
	if maxBytes <= 0 {
		maxBytes = 60 << 10
	}
	if maxFields <= 0 {
		maxFields = 100
	}
	if _, err := pc.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || isReset(err) {
			err = errStale
		}
		return nil, err
	}
	// What is already buffered counts against the limit too; one buffer's
	// read-ahead past the head (the body's first bytes) is allowed.
	pc.lr.n = int64(maxBytes + pc.br.Size() - pc.br.Buffered())
	defer func() { pc.lr.n = -1 }()
	for i := 0; ; i++ {
		r, err := readResponse(pc.br, req, &pc.scratch)
		switch {
		case pc.lr.exceeded:
			return nil, &ProtocolError{errHeadTooLarge}
		case err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isNetError(err)):
			return nil, err
		case err != nil:
			return nil, &ProtocolError{err}
		}
		if r.StatusCode < 100 || r.StatusCode > 599 || r.ProtoMajor != 1 {
			return nil, &ProtocolError{errors.New("malformed status line")}
		}
		fields := 0
		for _, vv := range r.Header {
			fields += len(vv)
		}
		if fields > maxFields {
			return nil, &ProtocolError{errors.New("too many response headers")}
		}
		if r.StatusCode == http.StatusSwitchingProtocols && len(req.Header["Upgrade"]) == 0 {
			return nil, &ProtocolError{errors.New("101 Switching Protocols to a request that asked for no upgrade")}
		}
		if r.StatusCode >= 100 && r.StatusCode < 200 && r.StatusCode != http.StatusSwitchingProtocols {
			if i+1 >= maxInformational {
				return nil, &ProtocolError{errors.New("too many informational responses")}
			}
			continue // informational: the final answer follows
		}
		return r, nil
	}
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// headLimit fails reads past n bytes (n < 0: unlimited): it bounds the
// response head under the connection's bufio.Reader.
type headLimit struct {
	r        io.Reader
	n        int64
	exceeded bool
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n <= 0 {
		l.exceeded = true
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// upgradedConn is the body of a 101 response: the upstream connection
// itself, read through what is already buffered.
type upgradedConn struct {
	br *bufio.Reader
	c  net.Conn
}

func (u *upgradedConn) Read(p []byte) (int, error)  { return u.br.Read(p) }
func (u *upgradedConn) Write(p []byte) (int, error) { return u.c.Write(p) }
func (u *upgradedConn) Close() error                { return u.c.Close() }

// CloseWrite half-closes the tunnel towards the upstream.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return u.c.Close()
}

// isReset reports a connection the upstream reset or closed, not a
// timeout of ours.
func isReset(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" {
		return false
	}
	return !op.Timeout()
}

// h1Body is a response body; at its end the connection is pooled again
// when the exchange allows it.
type h1Body struct {
	io.ReadCloser
	c       *H1Client
	pc      *h1Conn
	resp    *http.Response
	req     *http.Request
	stop    func() bool
	bodyErr chan error
	eof     bool
	done    bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// Close ends the exchange: the connection is reused only when the body was
// read to its end, the request body was fully sent, and neither side asked
// to close.
func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	b.stop()
	reusable := b.eof && !b.resp.Close && !b.req.Close
	if !reusable {
		// Close the connection before the body: net/http's body would
		// otherwise drain the rest of the response, however long, and the
		// close also unblocks a request writer stuck on an upstream that
		// stopped reading.
		_ = b.pc.c.Close()
	}
	if b.bodyErr != nil {
		if err := <-b.bodyErr; err != nil {
			reusable = false
		}
	}
	_ = b.ReadCloser.Close()
	if reusable && b.pc.br.Buffered() == 0 {
		b.c.put(b.pc)
		return nil
	}
	return b.pc.c.Close()
}
