package proxy_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// scaleSizes are the mesh sizes of the control-plane benchmarks (meshbench
// measures 1k to 10k services).
var scaleSizes = []int{1000, 10000}

func loadMesh(b *testing.B, n int) *source.Snapshot {
	b.Helper()
	snap, err := files.LoadBytes("mesh.yaml", meshgen.Generate(n))
	if err != nil {
		b.Fatal(err)
	}
	return snap
}

// BenchmarkUpdateCold is proxy.Update of a whole translated mesh into a
// proxy that has no configuration yet: every service port is compiled.
func BenchmarkUpdateCold(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			res, err := translate.Translate(loadMesh(b, n), translate.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p := proxy.New(proxy.Options{})
				if err := p.Update(res.Waypoint); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRouteChange is what meshbench calls "route change -> snapshot":
// one HTTPRoute's added header value is edited, the snapshot translated
// again and the result put in force by proxy.Update of a proxy that holds
// the previous configuration.
func BenchmarkRouteChange(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			snap := loadMesh(b, n)
			hot := meshgen.HotRoute(snap)
			p := proxy.New(proxy.Options{})
			defer p.Close()
			res, err := translate.Translate(snap, translate.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Update(res.Waypoint); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				changed := meshgen.WithRouteValue(snap, hot, "v"+strconv.Itoa(i))
				res, err := translate.Translate(changed, translate.Options{})
				if err != nil {
					b.Fatal(err)
				}
				before := p.Version()
				if err := p.Update(res.Waypoint); err != nil {
					b.Fatal(err)
				}
				if p.Version() != before+1 {
					b.Fatal("no new snapshot")
				}
			}
		})
	}
}

// BenchmarkUpdateOneRoute is proxy.Update alone for a one-route change: the
// proxy alternates between two translations that differ in one HTTPRoute's
// added header value (translation is not timed).
func BenchmarkUpdateOneRoute(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			snap := loadMesh(b, n)
			hot := meshgen.HotRoute(snap)
			var res [2]*translate.Result
			for i := range res {
				r, err := translate.Translate(meshgen.WithRouteValue(snap, hot, "v"+strconv.Itoa(i)), translate.Options{})
				if err != nil {
					b.Fatal(err)
				}
				res[i] = r
			}
			p := proxy.New(proxy.Options{})
			defer p.Close()
			if err := p.Update(res[1].Waypoint); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if err := p.Update(res[i%2].Waypoint); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
