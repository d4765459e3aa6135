package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// A Feed delivers the configurations of one waypoint to a Runner: files
// read and translated (standalone), or the controller's over xDS (proxy).
type Feed interface {
	// Run delivers configurations until ctx ends, putting each in force
	// with install. Its error ends the process (ctx's own error does not).
	Run(ctx context.Context, install Install) error
}

// Install puts a configuration in force and returns why it could not (the
// configuration in force then stays). load produces the configuration; it
// is called with the Runner's lock held, so configurations are loaded and
// put in force one at a time, in the order of the calls: a feed that reads
// its source in load (files) never replaces a newer configuration with an
// older one, however many reloads race.
type Install = func(load func() (*ir.Waypoint, error)) error

// Debugger is implemented by feeds that add to GET /debug/status.
type Debugger interface {
	Debug() map[string]any
}

// RunOptions are how a Runner starts.
type RunOptions struct {
	// RequireFirst makes Run wait for the feed's first configuration and
	// fail when it cannot be put in force (standalone: bad files are an
	// error at start). Otherwise Run returns at once and readiness waits
	// for the first configuration (proxy: the controller may be late).
	RequireFirst bool
	// FirstTimeout bounds that wait (default 1 minute).
	FirstTimeout time.Duration
}

// Runner is a running waypoint: the data plane and the one writer of its
// configuration, fed by a Feed. It is ready once a configuration is in
// force and the inbound listener is bound.
type Runner struct {
	*DataPlane
	feed Feed

	// mu is held while a configuration is loaded and put in force: the
	// one writer of the configuration in force.
	mu       sync.Mutex
	closing  bool
	draining bool   // no listener is bound or moved once draining
	boundTo  string // the inbound address bound ("" before the first)

	st        sync.Mutex // guards what follows (read by /debug/status)
	applied   *ir.Waypoint
	lastError string
	lastApply time.Time

	first  chan error // the first install's outcome (RequireFirst)
	cancel context.CancelFunc
	done   chan struct{}
}

// Run starts the data plane and the feed.
func Run(o Options, feed Feed, ro RunOptions) (*Runner, error) {
	r := &Runner{feed: feed, first: make(chan error, 1), done: make(chan struct{})}
	o.Debug = r.debugStatus
	var err error
	if r.DataPlane, err = Start(o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		if err := feed.Run(ctx, r.install); err != nil && ctx.Err() == nil {
			select {
			case r.first <- err:
			default:
			}
			select {
			case r.errc <- fmt.Errorf("configuration feed: %w", err):
			default:
			}
		}
	}()
	if ro.RequireFirst {
		timeout := ro.FirstTimeout
		if timeout == 0 {
			timeout = time.Minute
		}
		select {
		case err = <-r.first:
		case <-time.After(timeout):
			err = fmt.Errorf("no configuration within %s", timeout)
		}
		if err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// install is the Install the feed gets.
func (r *Runner) install(load func() (*ir.Waypoint, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return errors.New("the waypoint is shutting down")
	}
	w, err := load()
	if err == nil {
		err = r.put(w)
	}
	r.st.Lock()
	first := r.lastApply.IsZero() && r.lastError == ""
	if err != nil {
		r.lastError = err.Error()
	} else {
		r.applied, r.lastError, r.lastApply = w, "", time.Now()
	}
	r.st.Unlock()
	if first {
		select {
		case r.first <- err:
		default:
		}
	}
	return err
}

func (r *Runner) serveMode(ln net.Listener, native bool) error {
	if native {
		return r.ServeHBONE(ln)
	}
	return r.Serve(ln)
}

// put compiles w, puts it in force and binds (or moves) the inbound
// listener. r.mu is held.
func (r *Runner) put(w *ir.Waypoint) error {
	if w == nil {
		return errors.New("no configuration")
	}
	addr := r.opts.InboundAddress
	if addr == "" {
		port := w.InboundPort
		if port == 0 {
			port = 15088
		}
		addr = "0.0.0.0:" + strconv.Itoa(int(port))
	}
	if w.HBONE && r.opts.Identity == nil {
		return fmt.Errorf("gateway %s selects native HBONE (its HBONE listener), which needs a certificate of the waypoint's own: "+
			"--cert-dir, or the Istio CA (proxy --ca-address)", w.Gateway)
	}
	// boundTo names the mode with the address: moving between sandwich
	// and native mode binds anew even on the same address.
	bound := addr
	if w.HBONE {
		bound = "hbone " + addr
	}
	// The listener is bound before the configuration goes in force, so a
	// port that cannot be bound refuses the configuration whole.
	var ln net.Listener
	if !r.draining && r.boundTo != bound {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			err = fmt.Errorf("inbound address: %w", err)
			if r.boundTo == "" {
				// Serving without a listener is no waypoint: fatal.
				select {
				case r.errc <- err:
				default:
				}
			} else {
				r.log.Error("the inbound port changed, but the new port cannot be bound; keeping the configuration in force",
					"old", r.boundTo, "new", addr, "error", err.Error())
			}
			return err
		}
	}
	if err := r.Proxy.Update(w); err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return err
	}
	switch {
	case ln == nil:
		r.log.Info("configuration applied", "gateway", w.Gateway.String(), "version", r.Proxy.Version(), "services", len(w.Services))
	case r.boundTo == "":
		if err := r.serveMode(ln, w.HBONE); err != nil {
			return err
		}
		r.boundTo = bound
		r.SetReady(true)
		r.log.Info("waypoint ready", "gateway", w.Gateway.String(), "inbound", ln.Addr().String(),
			"status", addrString(r.StatusAddr()), "services", len(w.Services), "workloads", len(w.Workloads))
	default:
		// The Gateway's listener moved to another port or mode.
		if err := r.serveMode(ln, w.HBONE); err != nil {
			return err
		}
		r.log.Info("inbound listener moved", "old", r.boundTo, "new", bound)
		r.boundTo = bound
	}
	return nil
}

func addrString(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Version is the number of configurations put in force.
func (r *Runner) Version() uint64 { return r.Proxy.Version() }

// Applied is the configuration last put in force (nil before the first),
// as the feed gave it.
func (r *Runner) Applied() *ir.Waypoint {
	r.st.Lock()
	defer r.st.Unlock()
	return r.applied
}

// LastError is why the last configuration was refused ("" when it was put
// in force).
func (r *Runner) LastError() string {
	r.st.Lock()
	defer r.st.Unlock()
	return r.lastError
}

// debugStatus is the JSON of GET /debug/status: the runner's state, and
// the feed's.
func (r *Runner) debugStatus() any {
	out := map[string]any{}
	if d, ok := r.feed.(Debugger); ok {
		for k, v := range d.Debug() {
			out[k] = v
		}
	}
	r.st.Lock()
	out["version"] = r.Proxy.Version()
	out["lastError"] = r.lastError
	if r.applied != nil {
		out["gateway"] = r.applied.Gateway.String()
		out["services"] = len(r.applied.Services)
		out["applied"] = r.lastApply.UTC().Format(time.RFC3339Nano)
	}
	r.st.Unlock()
	if a := r.InboundAddr(); a != nil {
		out["inbound"] = a.String()
	}
	// Where the waypoint is, for locality: its node, and the locality it
	// found (none: services that prefer close endpoints use any).
	if pl := r.Proxy.Place(); pl.Node != "" || pl.Known {
		loc := map[string]string{"node": pl.Node}
		if pl.Known {
			loc["region"], loc["zone"], loc["subzone"] = pl.Region, pl.Zone, pl.Subzone
		}
		out["locality"] = loc
	}
	return out
}

// Drain shuts down gracefully (see DataPlane.Drain); the feed stops with it.
func (r *Runner) Drain() bool {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	ok := r.DataPlane.Drain()
	r.stop()
	return ok
}

// Close stops everything at once. It may be called more than once.
func (r *Runner) Close() {
	r.stop()
	r.DataPlane.Close()
}

func (r *Runner) stop() {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
}
