// Package scale measures the control plane at scale on the mesh of
// bench/meshgen: it times loading, translation, proxy compilation and a
// one-route change.
package scale

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// Mesh is a generated mesh, loaded.
type Mesh struct {
	N      int
	Counts meshgen.Counts
	YAML   []byte
	Snap   *source.Snapshot
	// LoadTime is files.LoadBytes of YAML: what standalone mode spends
	// parsing the manifests.
	LoadTime time.Duration
	hot      int // index of the hot route in Snap.HTTPRoutes
}

// Build generates and loads a mesh of n services.
func Build(n int, hot [2]netip.AddrPort, clientPrincipal string) (*Mesh, error) {
	m := &Mesh{N: n, Counts: meshgen.CountsFor(n), YAML: meshgen.Manifests(n, hot, clientPrincipal, "v0")}
	start := time.Now()
	snap, err := files.LoadBytes("mesh.yaml", m.YAML)
	if err != nil {
		return nil, fmt.Errorf("loading the generated mesh: %w", err)
	}
	m.LoadTime = time.Since(start)
	m.Snap = snap
	m.hot = meshgen.HotRoute(snap)
	if m.hot < 0 {
		return nil, errors.New("the generated mesh has no hot route")
	}
	if got := len(snap.Services); got != n {
		return nil, fmt.Errorf("loaded %d services, want %d", got, n)
	}
	return m, nil
}

// Translate runs the translator on snap (m.Snap when nil) and checks that
// every service made it into the waypoint's configuration.
func (m *Mesh) Translate(snap *source.Snapshot) (*translate.Result, time.Duration, error) {
	if snap == nil {
		snap = m.Snap
	}
	start := time.Now()
	res, err := translate.Translate(snap, translate.Options{})
	d := time.Since(start)
	if err != nil {
		return nil, d, err
	}
	if got := len(res.Waypoint.Services); got != m.N {
		return nil, d, fmt.Errorf("translated %d services, want %d", got, m.N)
	}
	return res, d, nil
}

// WithRouteValue is m.Snap with one change: the hot HTTPRoute's added
// header gets value v (a user editing one route).
func (m *Mesh) WithRouteValue(v string) *source.Snapshot {
	return meshgen.WithRouteValue(m.Snap, m.hot, v)
}

// Timings are the medians of repeated measurements.
type Timings struct {
	// Compile is proxy.Update into a proxy with no configuration (every
	// port compiled); RouteChange is translate + proxy.Update of a proxy
	// holding the previous configuration, RouteChangeUpdate its Update part.
	Translate, Compile, RouteChange, RouteChangeUpdate time.Duration
	// RetainedBytes is the Go heap held by the translated and compiled
	// configuration in force (the ir.Waypoint and the proxy's compiled form).
	RetainedBytes int64
}

// Measure times translation, proxy compilation and the one-route change
// (translate + proxy.Update until the new snapshot is in force), reps times
// each, and measures the heap the configuration retains. It returns the
// proxy holding the configuration.
func (m *Mesh) Measure(reps int) (*Timings, *proxy.Proxy, error) {
	if reps < 1 {
		reps = 1
	}
	var t Timings
	var tr, cp, rc, rcu []time.Duration
	if _, _, err := m.Translate(nil); err != nil { // warm up
		return nil, nil, err
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var p *proxy.Proxy
	for i := 0; i < reps; i++ {
		res, d, err := m.Translate(nil)
		if err != nil {
			return nil, nil, err
		}
		tr = append(tr, d)
		if p != nil {
			p.Close()
		}
		p = proxy.New(proxy.Options{})
		start := time.Now()
		if err := p.Update(res.Waypoint); err != nil {
			return nil, nil, fmt.Errorf("proxy.Update: %w", err)
		}
		cp = append(cp, time.Since(start))
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.RetainedBytes = int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	for i := 0; i < reps; i++ {
		snap := m.WithRouteValue(fmt.Sprintf("v%d", i+1))
		before := p.Version()
		start := time.Now()
		res, _, err := m.Translate(snap)
		if err != nil {
			return nil, nil, err
		}
		updating := time.Now()
		if err := p.Update(res.Waypoint); err != nil {
			return nil, nil, err
		}
		d := time.Since(start)
		rcu = append(rcu, time.Since(updating))
		if p.Version() != before+1 {
			return nil, nil, errors.New("the route change did not produce a new proxy snapshot")
		}
		rc = append(rc, d)
	}
	t.Translate, t.Compile, t.RouteChange, t.RouteChangeUpdate = Median(tr), Median(cp), Median(rc), Median(rcu)
	return &t, p, nil
}

// Median of ds (0 for none).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
