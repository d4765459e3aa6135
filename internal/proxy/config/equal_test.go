package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
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
	case reflect.Map:
		if f.optional() {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), 2)
		for i := 0; i < 2; i++ {
			f.path = append(f.path, fmt.Sprintf("[key %d]", i))
			k := reflect.New(v.Type().Key()).Elem()
			f.fill(k)
			if k.Kind() != reflect.String {
				panic(fmt.Sprintf("filler: map key %s is not handled", k.Type()))
			}
			k.SetString(k.String() + strconv.Itoa(i)) // two distinct keys
			f.path[len(f.path)-1] = fmt.Sprintf("[value %d]", i)
			e := reflect.New(v.Type().Elem()).Elem()
			f.fill(e)
			f.path = f.path[:len(f.path)-1]
			m.SetMapIndex(k, e)
		}
		v.Set(m)
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

// Every field of an external authorizer but Backend (where it is reached,
// looked up per connection) decides whether the proxy keeps its client.
func TestSameProviderCoversEveryField(t *testing.T) {
	providerType := reflect.TypeFor[ir.ExtAuthzProvider]()
	notBackend := func(t reflect.Type, field string) bool { return t == providerType && field == "Backend" }
	checkEqual(t, sameProvider, notBackend)
	a := &ir.ExtAuthzProvider{Name: "p", Host: "authz.ns.svc.cluster.local", Port: 80, Backend: "ns/authz:80"}
	b := *a
	b.Backend = ""
	if !sameProvider(a, &b) {
		t.Fatal("a provider reached another way must keep its client")
	}
	checkEqual(t, func(x, y *map[string]*ir.ExtAuthzProvider) bool { return SameProviders(*x, *y) }, notBackend)
	if !SameProviders(nil, map[string]*ir.ExtAuthzProvider{}) ||
		SameProviders(map[string]*ir.ExtAuthzProvider{"p": a}, map[string]*ir.ExtAuthzProvider{"q": a}) ||
		SameProviders(map[string]*ir.ExtAuthzProvider{"p": a}, map[string]*ir.ExtAuthzProvider{"p": nil}) {
		t.Fatal("provider sets compared wrongly")
	}
}

// Every field of ir.Waypoint is accounted for: the compiler builds the
// services and backends (compared by equal.go); the fields a service
// port's compilation reads are compared by sameForPorts (changing one
// makes it false); the others are read from Config.IR per request (path
// normalization, default retry), when the proxy builds its authorizer
// clients (SameProviders) or not at all by the data plane. A field added
// to ir.Waypoint fails here until it is put in one of these lists, and,
// if ports compile differently with it, compared in sameForPorts.
func TestWaypointFieldsAreAccountedFor(t *testing.T) {
	// NodeLocalities: where the waypoint is, which its backends' tiers
	// depend on (Config.place, compared in compileBackends).
	compiled := []string{"Services", "Backends", "Workloads", "WorkloadPort", "NodeLocalities"}
	forPorts := []string{"TrustDomain", "TrustDomainAliases"}
	// Telemetry: read when the proxy updates its telemetry (Proxy.Update).
	perRequest := []string{"PathNormalization", "DefaultRetry", "ExtAuthzProviders", "RateLimitProviders", "Telemetry"}
	// names and the listener (dataplane.Runner; HBONE also picks how the
	// proxy reaches endpoints: Proxy.Update gives it to the upstream pool)
	unused := []string{"Gateway", "InboundPort", "HBONE"}
	wt := reflect.TypeFor[ir.Waypoint]()
	for i := 0; i < wt.NumField(); i++ {
		name := wt.Field(i).Name
		if !slices.Contains(compiled, name) && !slices.Contains(forPorts, name) &&
			!slices.Contains(perRequest, name) && !slices.Contains(unused, name) {
			t.Errorf("ir.Waypoint.%s is new: say how the compiler deals with it (and compare it in sameForPorts if ports compile differently with it)", name)
		}
	}
	// Changing any field sameForPorts compares, however deep, makes it
	// false; changing any other (bar the compiled ones) does not.
	notCompiled := func(t reflect.Type, field string) bool { return t == wt && slices.Contains(compiled, field) }
	base, changed, paths := variants[ir.Waypoint](t, notCompiled)
	if !sameForPorts(base, base) || !sameForPorts(base, deepCopy(t, base)) {
		t.Fatal("a waypoint and its copy differ")
	}
	for i, v := range changed {
		read := false
		for _, f := range forPorts {
			read = read || strings.HasPrefix(paths[i], "[."+f+" ") || strings.HasPrefix(paths[i], "[."+f+"]")
		}
		switch same := sameForPorts(base, v) && sameForPorts(v, base); {
		case same && read:
			t.Errorf("changing %s goes unnoticed by sameForPorts", paths[i])
		case !same && !read:
			t.Errorf("changing %s recompiles every port, but no port reads it", paths[i])
		}
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

// Every field of a rate limit service but Backend decides whether the
// proxy keeps its client.
func TestSameRateLimitProvidersCoversEveryField(t *testing.T) {
	providerType := reflect.TypeFor[ir.RateLimitProvider]()
	notBackend := func(t reflect.Type, field string) bool { return t == providerType && field == "Backend" }
	checkEqual(t, func(x, y *map[string]*ir.RateLimitProvider) bool { return SameRateLimitProviders(*x, *y) }, notBackend)
	a := &ir.RateLimitProvider{Name: "p", Host: "rl.ns.svc.cluster.local", Port: 8081, Backend: "ns/rl:8081", Domain: "d"}
	b := *a
	b.Backend = ""
	if !SameRateLimitProviders(map[string]*ir.RateLimitProvider{"p": a}, map[string]*ir.RateLimitProvider{"p": &b}) ||
		!SameRateLimitProviders(nil, map[string]*ir.RateLimitProvider{}) ||
		SameRateLimitProviders(map[string]*ir.RateLimitProvider{"p": a}, map[string]*ir.RateLimitProvider{"q": a}) ||
		SameRateLimitProviders(map[string]*ir.RateLimitProvider{"p": a}, map[string]*ir.RateLimitProvider{"p": nil}) {
		t.Fatal("rate limit service sets compared wrongly")
	}
}
