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
	br       *bufio.Reader
	bw       *bufio.Writer
	addr     string
	lastUsed time.Time
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
	for attempt := 0; ; attempt++ {
		pc, reused, err := c.get(ctx, req.URL.Host)
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
func (c *H1Client) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	now := time.Now()
	c.mu.Lock()
	list := c.idle[addr]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(pc.lastUsed) < c.idleTimeout {
			c.idle[addr] = list
			c.mu.Unlock()
			return pc, true, nil
		}
		_ = pc.c.Close()
	}
	delete(c.idle, addr)
	c.mu.Unlock()
	conn, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{c: conn, br: bufio.NewReaderSize(conn, 4096), bw: bufio.NewWriterSize(conn, 4096), addr: addr}, false, nil
}

// put returns a connection to the pool (or closes it when the pool is full).
func (c *H1Client) put(pc *h1Conn) {
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
		if err := req.Write(pc.bw); err != nil {
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
			err := req.Write(pc.bw)
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

	var resp *http.Response
	for {
		if _, err := pc.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				err = errStale
			}
			return fail(err)
		}
		r, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(err)
		}
		if r.StatusCode >= 100 && r.StatusCode < 200 && r.StatusCode != http.StatusSwitchingProtocols {
			continue // informational: the final answer follows
		}
		resp = r
		break
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, c: c, pc: pc, resp: resp, req: req, stop: stop, bodyErr: bodyErr}
	return resp, nil
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
