package translate

import (
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
)

// Large snapshots are translated on several goroutines; the result must be
// byte for byte the one a single goroutine gives, for every golden input
// and for meshbench's mesh.
func TestParallelTranslationIsIdentical(t *testing.T) {
	snaps := map[string]*source.Snapshot{}
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("golden inputs: %v", err)
	}
	for _, in := range ins {
		snap, err := files.Load([]string{in}, nil)
		if err != nil {
			t.Fatalf("loading %s: %v", in, err)
		}
		snaps[filepath.Base(in)] = snap
	}
	mesh, err := files.LoadBytes("mesh.yaml", meshgen.Generate(700))
	if err != nil {
		t.Fatal(err)
	}
	snaps["meshgen-700"] = mesh

	translateWith := func(snap *source.Snapshot, min, procs int) string {
		t.Helper()
		defer func(m, p int) { parallelMin = m; runtime.GOMAXPROCS(p) }(parallelMin, runtime.GOMAXPROCS(procs))
		parallelMin = min
		res, err := Translate(snap, Options{})
		if err != nil {
			return "error: " + err.Error()
		}
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, snap := range snaps {
		want := translateWith(snap, 1<<30, 1)
		for _, procs := range []int{2, 3, 8} {
			if got := translateWith(snap, 1, procs); got != want {
				t.Errorf("%s: translation on %d goroutines differs from the sequential one", name, procs)
			}
		}
	}
}

// sortConditions must order conditions exactly as sort.Slice did, equal
// ones (same kind, object, parent and type) included.
func TestSortConditionsIsSortSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	parents := []*ParentRef{nil, {Index: 0}, {Index: 1}}
	for _, n := range []int{0, 1, 2, 5, 13, 50, 200, 3000} {
		cs := make([]Condition, n)
		for i := range cs {
			cs[i] = Condition{Kind: pick("HTTPRoute", "Gateway", "AuthorizationPolicy"), Namespace: pick("a", "b"),
				Name: pick("x", "y", "z"), Parent: parents[rng.IntN(len(parents))], Type: pick("Accepted", "ResolvedRefs"),
				Message: strconv.Itoa(i)}
		}
		want := slices.Clone(cs)
		sort.Slice(want, func(i, j int) bool { return conditionLess(&want[i], &want[j]) })
		sortConditions(cs)
		if !slices.Equal(cs, want) {
			t.Fatalf("%d conditions: order differs from sort.Slice", n)
		}
	}
}
