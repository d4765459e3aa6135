package xds

import (
	"context"
	"sync"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Feed is the proxy's configuration feed (a dataplane.Feed): the Client's
// subscription, each configuration put in force by the data-plane runner,
// which NACKs the ones it cannot put in force. The Client's Apply is set by
// Run.
type Feed struct {
	Client Client

	mu        sync.Mutex
	received  int
	nacked    int
	connected bool
}

// Run subscribes until ctx ends.
func (f *Feed) Run(ctx context.Context, install func(func() (*ir.Waypoint, error)) error) error {
	c := f.Client
	c.OnStream = func(up bool) {
		f.mu.Lock()
		f.connected = up
		f.mu.Unlock()
	}
	c.Apply = func(w *ir.Waypoint) error {
		err := install(func() (*ir.Waypoint, error) { return w, nil })
		f.mu.Lock()
		f.received++
		if err != nil {
			f.nacked++
		}
		f.mu.Unlock()
		return err
	}
	if err := c.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // ctx ended: not an error
}

// Debug is the feed's part of GET /debug/status.
func (f *Feed) Debug() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{"feed": "xds", "xds": f.Client.Address, "gateway": f.Client.Gateway.String(),
		"connected": f.connected, "received": f.received, "nacked": f.nacked}
}
