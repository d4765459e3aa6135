// Package load is the benchmark's load generator. It opens each connection
// the way ztunnel hands one to a sandwich-mode waypoint (a PROXY v2 header
// with the client identity in TLV 0xD0), or bare for the direct baseline,
// and sends keep-alive HTTP/1.1 (or h2c) requests.
//
// Open loop (Rate > 0): every request has an intended send time on a fixed
// schedule (rate/conns per connection, connections evenly staggered), and its
// latency is measured from that intended time, not from when it was actually
// written. A slow response therefore delays the next send on its connection
// and that delay is charged to the requests that waited: no coordinated
// omission. The generator's own lag (actual write minus intended time, when
// the connection was free) is reported separately so it can be judged.
//
// Closed loop (Rate == 0): each connection sends its next request as soon as
// the previous response is read; this measures saturation throughput.
//
// Dispatch (open loop over hundreds of connections): one scheduler thread
// waits for each intended time and hands the request to its connection,
// round robin, instead of one sleeping thread per connection.
//
// OpenIdle opens connections that make one request each and then stay idle,
// for the connection-scale row.
package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/hist"
)

// Options describe one load run.
type Options struct {
	// Addr is the target's listener (host:port).
	Addr string
	// Header returns the bytes to write first on connection i (a PROXY v2
	// header), or nil to write nothing (the direct baseline).
	Header func(i int) ([]byte, error)
	// Dial, when set, opens connection i in place of a TCP connection to
	// Addr and Header (an HBONE stream, a TLS connection). Not for OpenIdle.
	Dial func(ctx context.Context, i int) (net.Conn, error)
	// Rate is the total request rate in requests/s; 0 runs closed loop.
	Rate float64
	// Conns is the number of connections (default 1).
	Conns int
	// Warmup runs before the measured window; Duration is the window.
	Warmup, Duration time.Duration
	// Host and Path of the requests (defaults "bench", "/").
	Host, Path string
	// Expect names a response header (lower case) every response must carry.
	Expect string
	// BodyLen is the response body length every response must have (0: any).
	BodyLen int
	// H2C sends HTTP/2 with prior knowledge instead of HTTP/1.1 (open loop only).
	H2C bool
	// Dispatch runs open loop HTTP/1.1 from one scheduler: the rate is
	// spread over the connections round robin (request k goes to
	// connection k mod Conns at start + k/Rate), each connection's
	// requests queue on it and latency counts from the intended time, as
	// in the per-connection open loop. For hundreds of connections, where
	// a sleeping thread per connection would cost the generator more than
	// the proxy.
	Dispatch bool
	// Source returns the local address connection i dials from (nil, or
	// the zero Addr: the kernel's choice). Many connections spread over
	// several loopback addresses do not run out of ephemeral ports.
	Source func(i int) netip.Addr
	// ReadBuffer is each HTTP/1.1 connection's read buffer (default 16 KiB).
	ReadBuffer int
	// OnWindow is called with true when the measured window opens and false
	// when it closes (from its own goroutine), to sample CPU and memory.
	OnWindow func(open bool)
}

// Result is what one run measured.
type Result struct {
	// Requests completed successfully whose (intended) send time fell in
	// the measured window.
	Requests int64 `json:"requests"`
	// Errors in the window; TotalErrors over the whole run including warm-up.
	Errors      int64  `json:"errors"`
	TotalErrors int64  `json:"total_errors"`
	FirstError  string `json:"first_error,omitempty"`
	// Window is the length of the measured window.
	Window time.Duration `json:"window_ns"`
	// Throughput is Requests per second of Window.
	Throughput float64 `json:"throughput_rps"`
	// Latency of successful requests in the window.
	Latency hist.Summary `json:"latency"`
	// SendLag is how late the generator wrote requests whose connection was
	// free at their intended time (open loop only).
	SendLag hist.Summary `json:"send_lag"`
	// LatencyHist and LagHist are the histograms behind Latency and
	// SendLag, for merging runs.
	LatencyHist, LagHist *hist.H `json:"-"`
}

type run struct {
	o                     Options
	start, winStart, end  time.Time
	latency, lag          *hist.H
	requests, errs, total atomic.Int64
	firstErr              atomic.Pointer[string]
	req                   []byte
	expect                []byte
}

// Run performs one load run and returns when every connection is done.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Host == "" {
		o.Host = "bench"
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Duration <= 0 {
		return nil, errors.New("load: Duration must be positive")
	}
	if o.H2C && o.Rate <= 0 {
		return nil, errors.New("load: h2c runs open loop only")
	}
	if o.Dispatch && (o.H2C || o.Rate <= 0) {
		return nil, errors.New("load: Dispatch is open loop HTTP/1.1 only")
	}
	r := &run{o: o, latency: hist.New(), lag: hist.New()}
	r.req = []byte("GET " + o.Path + " HTTP/1.1\r\nHost: " + o.Host + "\r\nUser-Agent: meshbench\r\n\r\n")
	if o.Expect != "" {
		r.expect = []byte(o.Expect)
	}
	// Connect everything before the clock starts.
	var conns []*h1conn
	var clients []*http.Client
	for i := 0; i < o.Conns; i++ {
		if o.H2C {
			clients = append(clients, r.h2Client(i))
			continue
		}
		c, err := r.dial(ctx, i)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("connecting to %s: %w", o.Addr, err)
		}
		conns = append(conns, c)
	}
	r.start = time.Now().Add(20 * time.Millisecond)
	r.winStart = r.start.Add(o.Warmup)
	r.end = r.winStart.Add(o.Duration)

	winDone := make(chan struct{})
	go func() {
		defer close(winDone)
		sleepUntil(r.winStart)
		if o.OnWindow != nil {
			o.OnWindow(true)
		}
		sleepUntil(r.end)
		if o.OnWindow != nil {
			o.OnWindow(false)
		}
	}()

	var wg sync.WaitGroup
	if o.Dispatch {
		r.dispatch(ctx, conns)
	}
	for i := 0; i < o.Conns && !o.Dispatch; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			switch {
			case o.H2C:
				r.openLoopH2(ctx, i, clients[i])
			case o.Rate > 0:
				r.openLoop(ctx, i, conns[i])
			default:
				r.closedLoop(ctx, i, conns[i])
			}
		}(i)
	}
	wg.Wait()
	<-winDone
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	res := &Result{
		Requests:    r.requests.Load(),
		Errors:      r.errs.Load(),
		TotalErrors: r.total.Load(),
		Window:      o.Duration,
		Latency:     r.latency.Summary(),
		SendLag:     r.lag.Summary(),
		LatencyHist: r.latency,
		LagHist:     r.lag,
	}
	res.Throughput = float64(res.Requests) / o.Duration.Seconds()
	if p := r.firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res, ctx.Err()
}

func (r *run) fail(inWindow bool, err error) {
	r.total.Add(1)
	if inWindow {
		r.errs.Add(1)
	}
	s := err.Error()
	r.firstErr.CompareAndSwap(nil, &s)
}

func (r *run) inWindow(t time.Time) bool { return !t.Before(r.winStart) && t.Before(r.end) }

// openLoop sends on connection i at its share of the rate.
func (r *run) openLoop(ctx context.Context, i int, c *h1conn) {
	interval := time.Duration(float64(r.o.Conns) / r.o.Rate * float64(time.Second))
	intended := r.start.Add(time.Duration(float64(i) / r.o.Rate * float64(time.Second)))
	free := r.start // when the connection finished its previous request
	for ; intended.Before(r.end) && ctx.Err() == nil; intended = intended.Add(interval) {
		sleepUntil(intended)
		c, free = r.send(ctx, i, c, intended, free)
	}
	if c != nil {
		_ = c.Close()
	}
}

// send makes connection i's request intended for time intended (dialling
// again when c is nil) and records it; free is when the connection finished
// its previous request. It returns the connection (nil when it had to be
// closed) and when this request finished.
func (r *run) send(ctx context.Context, i int, c *h1conn, intended, free time.Time) (*h1conn, time.Time) {
	if c == nil {
		var err error
		if c, err = r.dial(ctx, i); err != nil {
			r.fail(r.inWindow(intended), err)
			return nil, free
		}
	}
	sent := time.Now()
	err := c.do(r.req, r.expect, r.o.BodyLen)
	done := time.Now()
	if r.inWindow(intended) {
		if err == nil {
			r.requests.Add(1)
			r.latency.Record(done.Sub(intended))
		}
		if !free.After(intended) {
			r.lag.Record(sent.Sub(intended))
		}
	}
	if err != nil {
		r.fail(r.inWindow(intended), err)
		if !c.keepAlive || !errors.Is(err, errProtocol) {
			_ = c.Close()
			c = nil
		}
	}
	return c, done
}

// backlog is how many requests may wait on one connection in dispatch mode
// before the scheduler counts further ones as failed (the connection is
// stuck, and an unbounded queue would hide it).
const backlog = 64

// dispatch runs the open loop from this goroutine's thread for all conns:
// request k at start + k/Rate on connection k mod len(conns).
func (r *run) dispatch(ctx context.Context, conns []*h1conn) {
	queues := make([]chan time.Time, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		queues[i] = make(chan time.Time, backlog)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, free := conns[i], r.start
			for intended := range queues[i] {
				if ctx.Err() != nil {
					continue // drain
				}
				c, free = r.send(ctx, i, c, intended, free)
			}
			if c != nil {
				_ = c.Close()
			}
		}(i)
	}
	for k := 0; ctx.Err() == nil; k++ {
		intended := r.start.Add(time.Duration(float64(k) / r.o.Rate * float64(time.Second)))
		if !intended.Before(r.end) {
			break
		}
		sleepUntil(intended)
		select {
		case queues[k%len(conns)] <- intended:
		default:
			r.fail(r.inWindow(intended), fmt.Errorf("connection %d has %d requests waiting", k%len(conns), backlog))
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
}

// closedLoop sends on connection i as fast as responses come back.
func (r *run) closedLoop(ctx context.Context, i int, c *h1conn) {
	for ctx.Err() == nil {
		sent := time.Now()
		if !sent.Before(r.end) {
			break
		}
		if sent.Before(r.start) {
			sleepUntil(r.start)
			continue
		}
		if c == nil {
			var err error
			if c, err = r.dial(ctx, i); err != nil {
				r.fail(r.inWindow(sent), err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		err := c.do(r.req, r.expect, r.o.BodyLen)
		done := time.Now()
		if err != nil {
			r.fail(r.inWindow(done), err)
			if !c.keepAlive || !errors.Is(err, errProtocol) {
				_ = c.Close()
				c = nil
			}
			continue
		}
		if r.inWindow(done) {
			r.requests.Add(1)
			r.latency.Record(done.Sub(sent))
		}
	}
	if c != nil {
		_ = c.Close()
	}
}

// h1conn is one keep-alive HTTP/1.1 connection.
type h1conn struct {
	net.Conn
	br        *bufio.Reader
	keepAlive bool
}

func (r *run) dial(ctx context.Context, i int) (*h1conn, error) {
	c, err := r.dialRaw(ctx, i)
	if err != nil {
		return nil, err
	}
	size := r.o.ReadBuffer
	if size <= 0 {
		size = 16 << 10
	}
	return &h1conn{Conn: c, br: bufio.NewReaderSize(c, size), keepAlive: true}, nil
}

// dialRaw connects and writes the connection's header (PROXY v2), if any.
func (r *run) dialRaw(ctx context.Context, i int) (net.Conn, error) {
	if r.o.Dial != nil {
		return r.o.Dial(ctx, i)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if r.o.Source != nil {
		if a := r.o.Source(i); a.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
		}
	}
	c, err := d.DialContext(ctx, "tcp", r.o.Addr)
	if err != nil {
		return nil, err
	}
	if r.o.Header != nil {
		hdr, err := r.o.Header(i)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		if _, err := c.Write(hdr); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}

// do sends one request and reads its response.
func (c *h1conn) do(req, expect []byte, bodyLen int) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.keepAlive = false
		return err
	}
	ka, err := readResponse(c.br, expect, bodyLen)
	c.keepAlive = ka
	return err
}

// h2Client is an HTTP/2 (prior knowledge) client holding one connection
// that starts with connection i's header.
func (r *run) h2Client(i int) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return r.dialRaw(ctx, i)
		},
		MaxConnsPerHost: 1,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// openLoopH2 fires connection i's requests at their intended times without
// waiting for earlier ones: HTTP/2 multiplexes them on the connection.
func (r *run) openLoopH2(ctx context.Context, i int, cl *http.Client) {
	interval := time.Duration(float64(r.o.Conns) / r.o.Rate * float64(time.Second))
	intended := r.start.Add(time.Duration(float64(i) / r.o.Rate * float64(time.Second)))
	url := "http://" + r.o.Host + r.o.Path
	var wg sync.WaitGroup
	for ; intended.Before(r.end) && ctx.Err() == nil; intended = intended.Add(interval) {
		sleepUntil(intended)
		sent := time.Now()
		in := r.inWindow(intended)
		if in {
			r.lag.Record(sent.Sub(intended))
		}
		wg.Add(1)
		go func(intended time.Time) {
			defer wg.Done()
			err := r.h2Do(ctx, cl, url)
			done := time.Now()
			if err != nil {
				r.fail(in, err)
				return
			}
			if in {
				r.requests.Add(1)
				r.latency.Record(done.Sub(intended))
			}
		}(intended)
	}
	wg.Wait()
}

func (r *run) h2Do(ctx context.Context, cl *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "meshbench")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.ProtoMajor != 2:
		return fmt.Errorf("%w: got %s, want HTTP/2", errProtocol, resp.Proto)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: status %d", errProtocol, resp.StatusCode)
	case r.o.Expect != "" && resp.Header.Get(r.o.Expect) == "":
		return fmt.Errorf("%w: no %s header", errProtocol, r.o.Expect)
	case r.o.BodyLen > 0 && int(n) != r.o.BodyLen:
		return fmt.Errorf("%w: body of %d bytes, want %d", errProtocol, n, r.o.BodyLen)
	}
	return nil
}
