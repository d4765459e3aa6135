package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// IdleOptions describe a set of idle keep-alive connections.
type IdleOptions struct {
	// Addr is the target's listener (host:port).
	Addr string
	// Conns is how many connections to open.
	Conns int
	// Header returns the bytes to write first on connection i (PROXY v2).
	Header func(i int) ([]byte, error)
	// Source returns the local address connection i dials from (zero: the
	// kernel's choice); see LoopbackSource.
	Source func(i int) netip.Addr
	// Host, Path, Expect and BodyLen are the one request's and its
	// response's, as in Options.
	Host, Path, Expect string
	BodyLen            int
	// Parallel is how many connections are being opened at once (default 32).
	Parallel int
}

// IdleSet is a set of open connections that each made one request and
// have been idle since: what a proxy holds for clients that keep their
// connections open between rare requests.
type IdleSet struct {
	conns []*net.TCPConn
}

// OpenIdle opens o.Conns connections; on each it writes the header, makes
// one request and reads (and checks) the response, then leaves it idle. It
// fails on the first connection that cannot do that, closing the others.
func OpenIdle(ctx context.Context, o IdleOptions) (*IdleSet, error) {
	if o.Conns <= 0 {
		return nil, errors.New("load: OpenIdle needs Conns > 0")
	}
	if o.Host == "" {
		o.Host = "bench"
	}
	if o.Path == "" {
		o.Path = "/"
	}
	par := o.Parallel
	if par <= 0 {
		par = 32
	}
	r := &run{o: Options{Addr: o.Addr, Header: o.Header, Source: o.Source}}
	req := []byte("GET " + o.Path + " HTTP/1.1\r\nHost: " + o.Host + "\r\nUser-Agent: meshbench\r\n\r\n")
	var expect []byte
	if o.Expect != "" {
		expect = []byte(o.Expect)
	}
	set := &IdleSet{conns: make([]*net.TCPConn, o.Conns)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 4<<10) // one per opener, not per connection
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.Conns {
					return
				}
				c, err := openOne(ctx, r, i, br, req, expect, o.BodyLen)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("idle connection %d of %d: %w", i+1, o.Conns, err); cancel() })
					return
				}
				set.conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		set.Close()
		return nil, firstErr
	}
	return set, nil
}

func openOne(ctx context.Context, r *run, i int, br *bufio.Reader, req, expect []byte, bodyLen int) (*net.TCPConn, error) {
	nc, err := r.dialRaw(ctx, i)
	if err != nil {
		return nil, err
	}
	c := nc.(*net.TCPConn)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		_ = c.Close()
		return nil, err
	}
	br.Reset(c)
	ka, err := readResponse(br, expect, bodyLen)
	br.Reset(nil)
	if err == nil && !ka {
		err = errors.New("the response closes the connection")
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Len is how many connections the set holds.
func (s *IdleSet) Len() int { return len(s.conns) }

// Closed counts the connections the peer has closed (or reset) since they
// were opened, without waiting and without reading anything: -1 where that
// cannot be told (not Linux or BSD).
func (s *IdleSet) Closed() int {
	n := 0
	for _, c := range s.conns {
		if c == nil {
			continue
		}
		closed, ok := peerClosed(c)
		if !ok {
			return -1
		}
		if closed {
			n++
		}
	}
	return n
}

// Close closes every connection with a reset (SO_LINGER 0), so that ten
// thousand of them leave no TIME_WAIT sockets behind on a shared machine.
func (s *IdleSet) Close() {
	for i, c := range s.conns {
		if c != nil {
			_ = c.SetLinger(0)
			_ = c.Close()
			s.conns[i] = nil
		}
	}
}

// PerSource is how many connections LoopbackSource puts on one address:
// well under the ephemeral port range (28,232 ports by default), so that
// ports never run short even with connections of earlier runs in TIME_WAIT.
const PerSource = 5000

// LoopbackSource is the source address of connection i of many: 127.0.10.1
// for the first PerSource, 127.0.10.2 for the next, and so on. Linux routes
// all of 127.0.0.0/8 to the loopback interface.
func LoopbackSource(i int) netip.Addr {
	n := i / PerSource
	return netip.AddrFrom4([4]byte{127, 0, byte(10 + n/250), byte(1 + n%250)})
}
