package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// errStreamIdle is the cause of a request context ended by the stream
// idle timeout.
var errStreamIdle = errors.New("stream idle timeout")

// errClientLeft is the cause of a request context ended because the
// client closed its connection.
var errClientLeft = errors.New("client closed the connection")

// clientLeft reports whether the request's client has gone (HTTP/1: its
// connection closed; HTTP/2: the stream was reset or the connection
// closed).
func (x *exchange) clientLeft() bool {
	return errors.Is(context.Cause(x.ctx), errClientLeft) || x.r.Context().Err() != nil
}

// defaultStreamIdleTimeout is Envoy's stream_idle_timeout default.
const defaultStreamIdleTimeout = 5 * time.Minute

// idleTimer ends a request's context when nothing moved, in either
// direction, for the timeout (Envoy's stream idle timeout). Activity is a
// timestamp store; the timer re-arms itself for the time that is left, so
// a busy stream costs no timer resets.
type idleTimer struct {
	timeout atomic.Int64 // time.Duration; 0: off (a route's policy turned it off)
	last    atomic.Int64 // nanotime of the last activity
	cancel  context.CancelCauseFunc
	t       *time.Timer
	// w is the client's response writer: when the timer fires, a read of
	// the request body stuck on a silent client is woken through it.
	w http.ResponseWriter
}

var clockStart = time.Now()

func nanotime() int64 { return int64(time.Since(clockStart)) }

func newIdleTimer(timeout time.Duration, cancel context.CancelCauseFunc, w http.ResponseWriter) *idleTimer {
	it := &idleTimer{cancel: cancel, w: w}
	it.timeout.Store(int64(timeout))
	it.last.Store(nanotime())
	it.t = time.AfterFunc(timeout, it.fire)
	return it
}

func (it *idleTimer) fire() {
	timeout := time.Duration(it.timeout.Load())
	if timeout <= 0 {
		return // turned off
	}
	quiet := time.Duration(nanotime() - it.last.Load())
	if quiet >= timeout {
		it.cancel(errStreamIdle)
		_ = http.NewResponseController(it.w).SetReadDeadline(time.Unix(1, 0))
		return
	}
	it.t.Reset(timeout - quiet)
}

// setTimeout changes the timeout of the stream (a route's TrafficPolicy
// timeouts.streamIdle), counted from the last activity; 0 turns it off.
func (it *idleTimer) setTimeout(d time.Duration) {
	it.timeout.Store(int64(d))
	if d <= 0 {
		it.t.Stop()
		return
	}
	quiet := time.Duration(nanotime() - it.last.Load())
	it.t.Reset(max(d-quiet, 0))
}

// touch records activity.
func (it *idleTimer) touch() {
	if it != nil {
		it.last.Store(nanotime())
	}
}

func (it *idleTimer) stop() {
	if it != nil {
		it.t.Stop()
	}
}

// activeBody marks the stream active on every read of the request body.
type activeBody struct {
	io.ReadCloser
	idle *idleTimer
}

func (b *activeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.idle.touch()
	}
	return n, err
}
