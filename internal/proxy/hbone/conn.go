// Package hbone is HBONE as the waypoint speaks it natively: mTLS (TLS 1.3,
// ALPN h2) to port 15008, and one HTTP/2 CONNECT stream per tunnelled
// connection, its :authority the original destination. Conn makes a stream
// a net.Conn, so the listeners and pools that serve plain connections serve
// tunnels unchanged; Pool is the client side (connections per destination
// and identity, many streams on each); the server side is in package
// inbound.
package hbone

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes for throughput, as ztunnel chooses them (its config defaults and
// benches/README): 4 MiB of flow-control window per stream, 16 MiB per
// connection, frames up to 1 MiB; copies of 256 KiB at most.
const (
	StreamWindow     = 4 << 20
	ConnectionWindow = 16 << 20
	MaxFrameSize     = 1 << 20
	// MaxStreamsPerConn is how many streams the client puts on one
	// connection before it opens another (ztunnel's
	// pool_max_streams_per_conn), within what the server advertises.
	MaxStreamsPerConn = 100
)

// Port is the HBONE port of every mesh workload and waypoint.
const Port = 15008

// Conn is one CONNECT stream as a net.Conn: reads come from the stream's
// body, writes go to its other direction and are flushed at once (the
// servers writing to it buffer themselves). Deadlines are its own: a read
// deadline wakes a blocked Read and leaves the stream usable, as on a
// socket (HTTP/2's own stream deadlines end the stream for good); a write
// deadline that passes while a Write is blocked aborts the stream.
type Conn struct {
	s Stream

	// The stream is read by a pump goroutine, so that Read can give up at
	// its deadline without losing what the pump is reading.
	startPump sync.Once
	chunks    chan chunk
	free      chan []byte
	pending   []byte
	held      []byte // the buffer pending points into, returned when drained
	readErr   error

	rdl, wdl deadline
	writing  atomic.Bool
	closed   chan struct{}
	once     sync.Once
}

// Stream is what a Conn is made of.
type Stream struct {
	// R is what the peer sends; W is what we send, made visible by Flush
	// (nil: nothing to flush).
	R     io.Reader
	W     io.Writer
	Flush func() error
	// Close ends the stream (and stops a blocked R.Read); AbortWrite, when
	// set, is called first if a Write is blocked, to reset the stream.
	Close      func() error
	AbortWrite func()
	// CloseWrite, when set, ends only our direction (END_STREAM).
	CloseWrite    func() error
	Local, Remote net.Addr
}

type chunk struct {
	b   []byte
	err error
}

// NewConn adapts a stream.
func NewConn(s Stream) *Conn {
	c := &Conn{s: s, closed: make(chan struct{})}
	c.rdl.init()
	c.wdl.init()
	c.wdl.onExpire = func() {
		if c.writing.Load() {
			_ = c.Close()
		}
	}
	return c
}

// copyBuffer is the pump's read size: large enough for a 1 MiB frame's
// worth in few reads, the buffers reused.
const copyBuffer = 64 << 10

func (c *Conn) pump() {
	defer close(c.chunks)
	for {
		var b []byte
		select {
		case b = <-c.free:
		case <-c.closed:
			return
		}
		n, err := c.s.R.Read(b[:cap(b)])
		select {
		case c.chunks <- chunk{b[:n], err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	c.startPump.Do(func() {
		c.chunks = make(chan chunk, 1)
		c.free = make(chan []byte, 2)
		c.free <- make([]byte, copyBuffer)
		c.free <- make([]byte, copyBuffer)
		go c.pump()
	})
	for len(c.pending) == 0 {
		if c.held != nil {
			c.free <- c.held
			c.held = nil
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		default:
		}
		select {
		case ch, ok := <-c.chunks:
			if !ok {
				if c.readErr == nil {
					c.readErr = net.ErrClosed
				}
				continue
			}
			c.pending, c.held = ch.b, ch.b
			if ch.err != nil {
				c.readErr = ch.err
			}
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.wdl.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	c.writing.Store(true)
	defer c.writing.Store(false)
	n, err := c.s.W.Write(p)
	if err == nil && c.s.Flush != nil {
		err = c.s.Flush()
	}
	if err != nil {
		select {
		case <-c.closed:
			return n, net.ErrClosed
		default:
		}
	}
	return n, err
}

// CloseWrite ends our direction of the stream and keeps reading, where the
// stream allows it; else it closes the stream.
func (c *Conn) CloseWrite() error {
	if c.s.CloseWrite != nil {
		return c.s.CloseWrite()
	}
	return c.Close()
}

// Close ends the stream.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		c.rdl.stop()
		c.wdl.stop()
		if c.writing.Load() && c.s.AbortWrite != nil {
			c.s.AbortWrite()
		}
		err = c.s.Close()
	})
	return err
}

// Done is closed when the stream is closed.
func (c *Conn) Done() <-chan struct{} { return c.closed }

func (c *Conn) LocalAddr() net.Addr  { return c.s.Local }
func (c *Conn) RemoteAddr() net.Addr { return c.s.Remote }

func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}
func (c *Conn) SetReadDeadline(t time.Time) error  { c.rdl.set(t); return nil }
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a settable deadline whose wait channel closes when it
// passes (the pattern of net.Pipe's deadlines).
type deadline struct {
	mu       sync.Mutex
	timer    *time.Timer
	ch       chan struct{}
	onExpire func()
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

func (d *deadline) expire(ch chan struct{}) {
	d.mu.Lock()
	if d.ch == ch && !isClosed(ch) {
		close(ch)
	}
	f := d.onExpire
	d.mu.Unlock()
	if f != nil {
		f()
	}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	closed := isClosed(d.ch)
	if t.IsZero() {
		if closed {
			d.ch = make(chan struct{})
		}
		d.mu.Unlock()
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.ch = make(chan struct{})
		}
		ch := d.ch
		d.timer = time.AfterFunc(dur, func() { d.expire(ch) })
		d.mu.Unlock()
		return
	}
	if !closed {
		close(d.ch)
	}
	f := d.onExpire
	d.mu.Unlock()
	if f != nil {
		f()
	}
}

func (d *deadline) stop() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ErrRefused is wrapped by the errors of a CONNECT that was not answered 200.
var ErrRefused = errors.New("HBONE CONNECT refused")
