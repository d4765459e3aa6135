package translate_test

import (
	"fmt"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// BenchmarkTranslate translates meshbench's scale mesh (bench/meshgen):
// n services of 2 ports, n/5 HTTPRoutes, n/10 AuthorizationPolicies.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			snap, err := files.LoadBytes("mesh.yaml", meshgen.Generate(n))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				res, err := translate.Translate(snap, translate.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Waypoint.Services) != n {
					b.Fatalf("%d services", len(res.Waypoint.Services))
				}
			}
		})
	}
}
