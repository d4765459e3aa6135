package translate

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
)

// filler builds a value of any IR type with every field set, reaching every
// field however deep (slices get two elements, pointers a value). With
// change >= 0 it alters exactly one thing: the change'th leaf (a string,
// number or bool) gets another value, or, counting on past the leaves, the
// change'th slice or pointer is left empty. Counting tells how many
// changes a type has.
type filler struct {
	change         int
	leaves, optals int
	// countOnly: first pass, to know where the leaves end.
	totalLeaves int
	path        []string
	changed     string
}

func (f *filler) fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		s := "a"
		if f.leaf() {
			s = "b"
		}
		v.SetString(s)
	case reflect.Bool:
		v.SetBool(!f.leaf())
	case reflect.Int, reflect.Int32, reflect.Int64:
		n := int64(3)
		if f.leaf() {
			n = 4
		}
		v.SetInt(n)
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := uint64(3)
		if f.leaf() {
			n = 4
		}
		v.SetUint(n)
	case reflect.Float64:
		x := 3.5
		if f.leaf() {
			x = 4.5
		}
		v.SetFloat(x)
	case reflect.Pointer:
		if f.optional() {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem())
	case reflect.Slice:
		if f.optional() {
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			f.path = append(f.path, fmt.Sprintf("[%d]", i))
			f.fill(s.Index(i))
			f.path = f.path[:len(f.path)-1]
		}
		v.Set(s)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Name == "Fingerprint" {
				continue // the output, not an input
			}
			f.path = append(f.path, "."+v.Type().Field(i).Name)
			f.fill(v.Field(i))
			f.path = f.path[:len(f.path)-1]
		}
	default:
		panic(fmt.Sprintf("filler: %s (%s) is not handled: teach the filler and the fingerprint about it", v.Type(), v.Kind()))
	}
}

func (f *filler) leaf() bool {
	hit := f.leaves == f.change
	f.leaves++
	if hit {
		f.changed = fmt.Sprint(f.path)
	}
	return hit
}

func (f *filler) optional() bool {
	hit := f.change >= 0 && f.totalLeaves+f.optals == f.change
	f.optals++
	if hit {
		f.changed = fmt.Sprint(f.path) + " empty"
	}
	return hit
}

// variants returns the fully set value of T, then every variant that differs
// from it in exactly one field, with the field's path.
func variants[T any](t *testing.T) (base *T, changed []*T, paths []string) {
	t.Helper()
	count := &filler{change: -1}
	base = new(T)
	count.fill(reflect.ValueOf(base).Elem())
	for c := 0; c < count.leaves+count.optals; c++ {
		f := &filler{change: c, totalLeaves: count.leaves}
		v := new(T)
		f.fill(reflect.ValueOf(v).Elem())
		changed = append(changed, v)
		paths = append(paths, f.changed)
	}
	if len(changed) < 5 {
		t.Fatalf("only %d variants: the filler is broken", len(changed))
	}
	return base, changed, paths
}

// Changing any field of a service port, down to the last header value of a
// rule's backend, must change the port's fingerprint; otherwise the proxy
// would keep a stale compilation. A new IR field that the fingerprint does
// not encode fails here.
func TestFingerprintCoversEveryPortField(t *testing.T) {
	base, changed, paths := variants[ir.ServicePort](t)
	want := newFingerprinter().port(base)
	if again := newFingerprinter().port(base); again != want || want == 0 {
		t.Fatalf("fingerprint not deterministic or zero: %x, %x", want, again)
	}
	seen := map[uint64]string{want: "base"}
	for i, v := range changed {
		got := newFingerprinter().port(v)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives the same fingerprint as %s", paths[i], prev)
		}
		seen[got] = paths[i]
	}
}

func TestFingerprintCoversEveryBackendField(t *testing.T) {
	base, changed, paths := variants[ir.Backend](t)
	want := newFingerprinter().backend(base)
	seen := map[uint64]string{want: "base"}
	for i, v := range changed {
		got := newFingerprinter().backend(v)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives the same fingerprint as %s", paths[i], prev)
		}
		seen[got] = paths[i]
	}
}

// Moving a value from one string field to the next must not collide: the
// encoding carries lengths.
func TestFingerprintIsUnambiguous(t *testing.T) {
	f := newFingerprinter()
	a := f.backend(&ir.Backend{Service: ir.NamespacedName{Namespace: "ab", Name: "c"}})
	b := f.backend(&ir.Backend{Service: ir.NamespacedName{Namespace: "a", Name: "bc"}})
	c := f.backend(&ir.Backend{Endpoints: []string{"1.1.1.1:80", "2.2.2.2:80"}})
	d := f.backend(&ir.Backend{Endpoints: []string{"1.1.1.1:802.2.2.2:80"}})
	if a == b || c == d {
		t.Fatal("ambiguous encoding")
	}
	// Shared rules are memoized by pointer, and a port's fingerprint does
	// not depend on which translation digested them first.
	r := &ir.HTTPRouteRule{Route: ir.NamespacedName{Namespace: "n", Name: "r"}}
	p1 := &ir.ServicePort{Port: 80, Routes: []*ir.HTTPRouteRule{r}}
	p2 := &ir.ServicePort{Port: 80, Routes: []*ir.HTTPRouteRule{{Route: r.Route}}}
	f2 := newFingerprinter()
	if f.port(p1) != f2.port(p2) || f.port(p1) != f.port(p2) {
		t.Fatal("equal ports must have equal fingerprints")
	}
}

// BenchmarkFingerprints is the share of Translate that fingerprinting
// takes on meshbench's 10,000-service mesh.
func BenchmarkFingerprints(b *testing.B) {
	snap, err := files.LoadBytes("mesh.yaml", meshgen.Generate(10000))
	if err != nil {
		b.Fatal(err)
	}
	res, err := Translate(snap, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		fingerprints(res.Waypoint)
	}
}
