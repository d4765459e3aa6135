package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
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
	// totalLeaves: from a first pass, to know where the leaves end.
	totalLeaves int
	path        []string
	changed     string
	// skip, when set, names struct fields left zero.
	skip func(t reflect.Type, field string) bool
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
			if f.skip != nil && f.skip(v.Type(), v.Type().Field(i).Name) {
				continue
			}
			f.path = append(f.path, "."+v.Type().Field(i).Name)
			f.fill(v.Field(i))
			f.path = f.path[:len(f.path)-1]
		}
	default:
		panic(fmt.Sprintf("filler: %s (%s) is not handled: teach the filler and equal.go about it", v.Type(), v.Kind()))
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
func variants[T any](t *testing.T, skip func(reflect.Type, string) bool) (base *T, changed []*T, paths []string) {
	t.Helper()
	count := &filler{change: -1, skip: skip}
	base = new(T)
	count.fill(reflect.ValueOf(base).Elem())
	for c := 0; c < count.leaves+count.optals; c++ {
		f := &filler{change: c, totalLeaves: count.leaves, skip: skip}
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

// deepCopy copies v through JSON: equal content, no pointer shared.
func deepCopy[T any](t *testing.T, v *T) *T {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEqual: a copy of the fully set value is equal to it, and changing any
// one field, however deep, makes it differ. A field added to the IR and
// forgotten in equal.go fails here (the compiler would keep a stale
// compilation).
func checkEqual[T any](t *testing.T, eq func(a, b *T) bool, skip func(reflect.Type, string) bool) {
	t.Helper()
	base, changed, paths := variants[T](t, skip)
	if !eq(base, base) || !eq(base, deepCopy(t, base)) || !eq(deepCopy(t, base), base) {
		t.Fatal("a value and its copy differ")
	}
	for i, v := range changed {
		if eq(base, v) || eq(v, base) {
			t.Errorf("changing %s goes unnoticed", paths[i])
		}
	}
}

func TestEqualPortCoversEveryField(t *testing.T)    { checkEqual(t, equalPort, nil) }
func TestEqualBackendCoversEveryField(t *testing.T) { checkEqual(t, equalBackend, nil) }

// The fields of a service, and its ports' numbers; the ports' contents are
// TestEqualPortCoversEveryField's (filling them here would make thousands
// of variants), and that they are compared is checked apart.
func TestEqualServiceCoversEveryField(t *testing.T) {
	portType := reflect.TypeFor[ir.ServicePort]()
	checkEqual(t, equalService, func(t reflect.Type, field string) bool { return t == portType && field != "Port" })
	a := &ir.Service{Name: "s", Ports: []*ir.ServicePort{{Port: 80, Name: "http"}}}
	b := &ir.Service{Name: "s", Ports: []*ir.ServicePort{{Port: 80, Name: "http-web"}}}
	if !sameService(a, b) || equalService(a, b) {
		t.Fatal("a service whose port changed must be laid out the same and differ")
	}
}

// A policy with no rules and one with an empty list of rules differ (see
// ir.AuthzPolicy); for the other lists nil and empty compile the same.
func TestEqualPolicyRulesNilAndEmptyDiffer(t *testing.T) {
	a := &ir.AuthzPolicy{Action: ir.AuthzAllow}
	b := &ir.AuthzPolicy{Action: ir.AuthzAllow, Rules: []*ir.AuthzRule{}}
	if equalPolicy(a, b) || equalPolicy(b, a) {
		t.Fatal("nil and empty rules compared equal")
	}
	c := &ir.AuthzPolicy{Action: ir.AuthzAllow, Rules: []*ir.AuthzRule{{From: []*ir.AuthzSource{{Principals: []string{}}}}}}
	d := &ir.AuthzPolicy{Action: ir.AuthzAllow, Rules: []*ir.AuthzRule{{From: []*ir.AuthzSource{{}}}}}
	if !equalPolicy(c, d) {
		t.Fatal("an empty and a nil principal list compared different")
	}
}

// Moving a value from one field or element to the next is a difference.
func TestEqualIsUnambiguous(t *testing.T) {
	a := &ir.Backend{Service: ir.NamespacedName{Namespace: "ab", Name: "c"}}
	b := &ir.Backend{Service: ir.NamespacedName{Namespace: "a", Name: "bc"}}
	c := &ir.Backend{Endpoints: []string{"1.1.1.1:80", "2.2.2.2:80"}}
	d := &ir.Backend{Endpoints: []string{"1.1.1.1:802.2.2.2:80"}}
	if equalBackend(a, b) || equalBackend(c, d) {
		t.Fatal("ambiguous comparison")
	}
	// A route rule present or absent (nil element) is a difference.
	r := &ir.HTTPRouteRule{Route: ir.NamespacedName{Namespace: "n", Name: "r"}}
	p1 := &ir.ServicePort{Port: 80, Routes: []*ir.HTTPRouteRule{r}}
	p2 := &ir.ServicePort{Port: 80, Routes: []*ir.HTTPRouteRule{nil}}
	if equalPort(p1, p2) || equalPort(p2, p1) {
		t.Fatal("a nil rule compared equal to a rule")
	}
}
