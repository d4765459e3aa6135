package files

import (
	"fmt"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
)

// BenchmarkLoadBytes loads meshbench's scale mesh (bench/meshgen) from one
// multi-document YAML: n services, n EndpointSlices, n/5 HTTPRoutes and
// n/10 AuthorizationPolicies.
func BenchmarkLoadBytes(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			data := meshgen.Generate(n)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				snap, err := LoadBytes("mesh.yaml", data)
				if err != nil {
					b.Fatal(err)
				}
				if len(snap.Services) != n {
					b.Fatalf("%d services", len(snap.Services))
				}
			}
		})
	}
}
