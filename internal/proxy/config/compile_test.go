package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/authn"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// warnPolicy is a policy whose compilation warns (dry-run CUSTOM), so that
// the warned list is exercised.
const warnPolicy = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: warns
  namespace: ns-000
  annotations:
    istio.io/dry-run: "true"
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: svc-00002
  action: CUSTOM
  provider:
    name: ext
  rules:
  - {}
`

// testShared is the state a proxy shares between its configurations.
func testShared(t *testing.T) Shared {
	t.Helper()
	jwks := authn.NewJWKSCache(nil, 0)
	t.Cleanup(jwks.Close)
	return Shared{Outlier: upstream.NewOutlier(), JWKS: jwks}
}

// viaJSON is w as the proxy gets it over xDS: decoded from its JSON, so
// that no object is shared with the translation, or between ports.
func viaJSON(t *testing.T, w *ir.Waypoint) *ir.Waypoint {
	t.Helper()
	data, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var out ir.Waypoint
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// A compilation that takes over the previous configuration's compiled
// ports and backends must give exactly what compiling the new
// configuration from nothing gives, whatever changed: a route, endpoints,
// a policy, services added or removed, a VIP, the trust domain, or
// nothing; and an IR decoded from JSON (as xDS delivers it) is recognised
// as unchanged all the same. Both with the comparisons on one goroutine and
// spread over several (as for large configurations).
func TestCompileReusesOnlyWhatIsUnchanged(t *testing.T) {
	for _, min := range []int{parallelMin, 1} {
		t.Run(fmt.Sprintf("parallelMin=%d", min), func(t *testing.T) {
			// Several workers even on one CPU.
			defer func(m, p int) { parallelMin = m; runtime.GOMAXPROCS(p) }(parallelMin, runtime.GOMAXPROCS(4))
			parallelMin = min
			testCompileReuses(t)
		})
	}
}

func testCompileReuses(t *testing.T) {
	base, err := files.LoadBytes("mesh.yaml", append(meshgen.Generate(60), warnPolicy...))
	if err != nil {
		t.Fatal(err)
	}
	hot := meshgen.HotRoute(base)
	// What the data plane takes from the mesh config, bar the trust
	// domain: read per request or by the proxy's authorizers, so no port
	// compiles again.
	mesh, err := meshconfig.Parse([]byte(`pathNormalization: {normalization: MERGE_SLASHES}
defaultHttpRetryPolicy: {attempts: 3, retryOn: "connect-failure", perTryTimeout: 2s}
extensionProviders:
- name: ext
  envoyExtAuthzHttp: {service: svc-00001.ns-000.svc.cluster.local, port: 80}
`))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(s *source.Snapshot)) *source.Snapshot {
		s := *base
		f(&s)
		return &s
	}
	type step struct {
		name string
		snap *source.Snapshot
		opts translate.Options
		// json: the IR goes through JSON first (as over xDS).
		json bool
		// recompiled is how many ports must have been compiled again
		// (-1: not checked).
		recompiled int
	}
	steps := []step{
		{name: "first", snap: base, recompiled: -1},
		{name: "same again", snap: base},
		{name: "one route", snap: meshgen.WithRouteValue(base, hot, "changed"), recompiled: 1},
		{name: "back", snap: base, recompiled: 1},
		{name: "endpoints of one service", recompiled: 0, snap: edit(func(s *source.Snapshot) {
			s.EndpointSlices = append(s.EndpointSlices[:0:0], s.EndpointSlices...)
			es := s.EndpointSlices[3].DeepCopy()
			es.Endpoints[0].Addresses[0] = "127.99.0.1"
			s.EndpointSlices[3] = es
		})},
		{name: "a policy", recompiled: 2, snap: edit(func(s *source.Snapshot) {
			s.AuthorizationPolicies = append(s.AuthorizationPolicies[:0:0], s.AuthorizationPolicies...)
			p := s.AuthorizationPolicies[1].DeepCopy()
			p.Spec.Rules[0].From[0].Source.Principals = []string{"cluster.local/ns/x/sa/y"}
			s.AuthorizationPolicies[1] = p
		})},
		// 4: the policy's service, and "a policy" undone.
		{name: "warning policy removed", recompiled: 4, snap: edit(func(s *source.Snapshot) {
			s.AuthorizationPolicies = s.AuthorizationPolicies[:len(s.AuthorizationPolicies)-1]
		})},
		{name: "warning policy back", snap: base, recompiled: 2},
		{name: "a service removed", recompiled: 0, snap: edit(func(s *source.Snapshot) {
			s.Services = append(append(s.Services[:0:0], s.Services[:7]...), s.Services[8:]...)
		})},
		{name: "service back", snap: base, recompiled: 2},
		{name: "a VIP", recompiled: 0, snap: edit(func(s *source.Snapshot) {
			s.Services = append(s.Services[:0:0], s.Services...)
			svc := s.Services[9].DeepCopy()
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "127.96.200.1", nil
			s.Services[9] = svc
		})},
		{name: "mesh settings", recompiled: 0, snap: edit(func(s *source.Snapshot) { s.MeshConfig = mesh })},
		{name: "mesh settings back", snap: base, recompiled: 0},
		{name: "trust domain", snap: base, opts: translate.Options{TrustDomain: "example.org"}, recompiled: -2},
		{name: "trust domain back", snap: base, recompiled: -2},
		{name: "through JSON", snap: base, json: true, recompiled: 0},
		{name: "one route, through JSON", snap: meshgen.WithRouteValue(base, hot, "json"), json: true, recompiled: 1},
		{name: "back, not through JSON", snap: base, recompiled: 1},
	}
	sh := testShared(t)
	var prev *Config
	for i, st := range steps {
		res, err := translate.Translate(st.snap, st.opts)
		if err != nil {
			t.Fatal(err)
		}
		w := res.Waypoint
		if st.json {
			w = viaJSON(t, w)
		}
		got, err := Compile(w, prev, sh)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got.version != uint64(i+1) || !reflect.DeepEqual(got.ir, w) {
			t.Fatalf("%s: version %d; want %d and the IR in force equal to the one applied", st.name, got.version, i+1)
		}
		// The compiled parts point into the IR in force, not into another
		// copy of it.
		k := 0
		for _, s := range got.ir.Services {
			for _, port := range s.Ports {
				if sp := got.ports[k]; sp.Service != s || sp.Port != port {
					t.Fatalf("%s: port %d points to another IR than the one in force", st.name, k)
				}
				k++
			}
		}
		for key, b := range got.backends {
			if b.IR != got.ir.Backends[key] {
				t.Fatalf("%s: backend %s points to another IR than the one in force", st.name, key)
			}
		}
		want, err := Compile(w, nil, sh)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameConfig(got, want); err != nil {
			t.Errorf("%s: the updated configuration differs from one compiled from nothing: %v", st.name, err)
		}
		old := prev
		prev = got
		if st.recompiled == -1 {
			continue
		}
		// Compiled again: ports with a compiled part (route table,
		// evaluator, authenticator) that is not the previous
		// configuration's (all of them: -2).
		n := recompiled(old, got)
		wantN := st.recompiled
		if wantN == -2 {
			wantN = len(got.ports)
		}
		if n != wantN {
			t.Errorf("%s: %d of %d ports compiled again, want %d", st.name, n, len(got.ports), wantN)
		}
	}
}

// recompiled counts the ports of cur with a compiled part old does not
// have.
func recompiled(old, cur *Config) int {
	kept := map[any]bool{}
	for _, sp := range old.ports {
		kept[sp.Routes], kept[sp.Authz], kept[sp.Authn] = true, true, true
	}
	n := 0
	for _, sp := range cur.ports {
		if (sp.Routes != nil && !kept[sp.Routes]) || !kept[sp.Authz] || !kept[sp.Authn] {
			n++
		}
	}
	return n
}

// Comparing a configuration with itself compiled again from nothing is
// meaningful: two compilations of one IR are equal.
func TestSameConfigComparesCompilations(t *testing.T) {
	snap, err := files.LoadBytes("mesh.yaml", append(meshgen.Generate(30), warnPolicy...))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sh := testShared(t)
	a, err := Compile(res.Waypoint, nil, sh)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(res.Waypoint, nil, sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameConfig(a, b); err != nil {
		t.Fatal(err)
	}
	if len(a.warned) != 2 {
		t.Fatalf("warned %v, want the two ports of the service of the dry-run CUSTOM policy", a.warned)
	}
	// And it sees a difference.
	res2, err := translate.Translate(meshgen.WithRouteValue(snap, meshgen.HotRoute(snap), "x"), translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(res2.Waypoint, nil, sh)
	if err != nil {
		t.Fatal(err)
	}
	if sameConfig(a, c) == nil {
		t.Fatal("a changed route went unnoticed")
	}
}

// sameConfig compares two compiled configurations by content: the same
// lookup keys leading to equal service ports, the same backends.
func sameConfig(got, want *Config) error {
	if len(got.ports) != len(want.ports) {
		return fmt.Errorf("%d ports, want %d", len(got.ports), len(want.ports))
	}
	for i := range want.ports {
		if err := samePort(got, got.ports[i], want.ports[i]); err != nil {
			return fmt.Errorf("port %d: %w", i, err)
		}
	}
	if !reflect.DeepEqual(got.warned, want.warned) && (len(got.warned) > 0 || len(want.warned) > 0) {
		return fmt.Errorf("warned %v, want %v", got.warned, want.warned)
	}
	if len(got.byAddr) != len(want.byAddr) || len(got.byHost) != len(want.byHost) {
		return fmt.Errorf("%d/%d lookup keys, want %d/%d", len(got.byAddr), len(got.byHost), len(want.byAddr), len(want.byHost))
	}
	for k, sp := range want.byAddr {
		if err := samePort(got, got.byAddr[k], sp); err != nil {
			return fmt.Errorf("address %s: %w", k, err)
		}
	}
	for k, sp := range want.byHost {
		if err := samePort(got, got.byHost[k], sp); err != nil {
			return fmt.Errorf("host %s:%d: %w", k.host, k.port, err)
		}
	}
	if len(got.backends) != len(want.backends) {
		return fmt.Errorf("%d backends, want %d", len(got.backends), len(want.backends))
	}
	for k, b := range want.backends {
		g := got.backends[k]
		if g == nil || g.Key != b.Key || g.H2C != b.H2C || !reflect.DeepEqual(g.IR, b.IR) {
			return fmt.Errorf("backend %s differs", k)
		}
	}
	return nil
}

func samePort(gotC *Config, got, want *ServicePort) error {
	switch {
	case got == nil:
		return fmt.Errorf("missing")
	case got.Name != want.Name:
		return fmt.Errorf("name %s, want %s", got.Name, want.Name)
	case !reflect.DeepEqual(got.Service, want.Service):
		return fmt.Errorf("%s: service IR differs", want.Name)
	case !reflect.DeepEqual(got.Port, want.Port):
		return fmt.Errorf("%s: port IR differs", want.Name)
	case !reflect.DeepEqual(got.Routes, want.Routes):
		return fmt.Errorf("%s: route table differs", want.Name)
	case !reflect.DeepEqual(got.Authz, want.Authz):
		return fmt.Errorf("%s: authorization differs", want.Name)
	case got.Authn.Empty() != want.Authn.Empty() || !reflect.DeepEqual(got.Authn.Warnings(), want.Authn.Warnings()):
		return fmt.Errorf("%s: authentication differs", want.Name)
	}
	// The default backend is the one in force in this configuration.
	if (want.DefaultBackend == nil) != (got.DefaultBackend == nil) {
		return fmt.Errorf("%s: default backend presence differs", want.Name)
	}
	if got.DefaultBackend != nil && got.DefaultBackend != gotC.backends[got.Port.DefaultBackend] {
		return fmt.Errorf("%s: default backend %s is not the configuration's", want.Name, got.Port.DefaultBackend)
	}
	if want.DefaultBackend != nil && !reflect.DeepEqual(got.DefaultBackend.IR, want.DefaultBackend.IR) {
		return fmt.Errorf("%s: default backend %s differs: %s", want.Name, want.Port.DefaultBackend,
			strings.Join(got.DefaultBackend.IR.Endpoints, ","))
	}
	return nil
}

// What a compilation takes over from the previous configuration, part by
// part: an unchanged service keeps its *ServicePort (and the IR in force
// its *ir.Service), an unchanged backend its *upstream.Backend; a changed
// port gets a new ServicePort in which only the parts whose IR changed are
// new (a route edit: the route table; a policy edit: the evaluator); a
// backend whose endpoints changed is new, and the ports using it get new
// ServicePorts with the old route tables and evaluators.
func TestCompileKeepsUnchangedParts(t *testing.T) {
	base, err := files.LoadBytes("mesh.yaml", meshgen.Generate(30))
	if err != nil {
		t.Fatal(err)
	}
	translated := func(snap *source.Snapshot) *ir.Waypoint {
		t.Helper()
		res, err := translate.Translate(snap, translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Waypoint
	}
	edit := func(f func(s *source.Snapshot)) *source.Snapshot {
		s := *base
		f(&s)
		return &s
	}
	// The edited objects, and which service and ports they concern.
	endpointsOf := base.EndpointSlices[3].Labels["kubernetes.io/service-name"]
	policy := base.AuthorizationPolicies[1]
	usesPolicy := func(sp *ServicePort) bool {
		for _, p := range sp.Port.Policies {
			if p.Name.Namespace == policy.Namespace && p.Name.Name == policy.Name {
				return true
			}
		}
		return false
	}
	type change int
	const (
		same        change = iota // the previous *ServicePort
		newPort                   // a new *ServicePort with the previous compiled parts
		newRoutes                 // ... and a new route table
		newPolicies               // ... and a new evaluator
	)
	steps := []struct {
		name string
		snap *source.Snapshot
		json bool
		// port says what must have happened to a port.
		port func(sp *ServicePort) change
		// backendChanged says which backends must be new.
		backendChanged func(key string) bool
	}{{
		name: "one route",
		snap: meshgen.WithRouteValue(base, meshgen.HotRoute(base), "changed"),
		port: func(sp *ServicePort) change {
			switch {
			case sp.Service.Name != meshgen.HotService.Name:
				return same
			case sp.Port.Port == meshgen.HTTPPort:
				return newRoutes
			}
			return newPort // the other port of the changed service
		},
		backendChanged: func(string) bool { return false },
	}, {
		name: "endpoints of one service",
		snap: edit(func(s *source.Snapshot) {
			s.EndpointSlices = append(s.EndpointSlices[:0:0], s.EndpointSlices...)
			es := s.EndpointSlices[3].DeepCopy()
			es.Endpoints[0].Addresses[0] = "127.99.0.1"
			s.EndpointSlices[3] = es
		}),
		port: func(sp *ServicePort) change {
			if sp.Service.Name == endpointsOf {
				return newPort
			}
			return same
		},
		backendChanged: func(key string) bool { return strings.Contains(key, "/"+endpointsOf+":") },
	}, {
		name: "a policy",
		snap: edit(func(s *source.Snapshot) {
			s.AuthorizationPolicies = append(s.AuthorizationPolicies[:0:0], s.AuthorizationPolicies...)
			p := s.AuthorizationPolicies[1].DeepCopy()
			p.Spec.Rules[0].From[0].Source.Principals = []string{"cluster.local/ns/x/sa/y"}
			s.AuthorizationPolicies[1] = p
		}),
		port: func(sp *ServicePort) change {
			if usesPolicy(sp) {
				return newPolicies
			}
			return same
		},
		backendChanged: func(string) bool { return false },
	}, {
		name:           "nothing, through JSON",
		snap:           base,
		json:           true,
		port:           func(*ServicePort) change { return same },
		backendChanged: func(string) bool { return false },
	}}
	sh := testShared(t)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			prev, err := Compile(translated(base), nil, sh)
			if err != nil {
				t.Fatal(err)
			}
			w := translated(st.snap)
			if st.json {
				w = viaJSON(t, w)
			}
			c, err := Compile(w, prev, sh)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.ports) != len(prev.ports) {
				t.Fatalf("%d ports, want %d", len(c.ports), len(prev.ports))
			}
			counts := map[change]int{}
			for i, sp := range c.ports {
				old := prev.ports[i]
				want := st.port(old)
				counts[want]++
				if want == same {
					if sp != old {
						t.Errorf("%s: a new ServicePort for an unchanged service", sp.Name)
					}
					continue
				}
				if sp == old {
					t.Errorf("%s: the previous ServicePort kept for a changed service", sp.Name)
					continue
				}
				if (sp.Routes != old.Routes) != (want == newRoutes) {
					t.Errorf("%s: route table new: %v, want %v", sp.Name, sp.Routes != old.Routes, want == newRoutes)
				}
				if (sp.Authz != old.Authz) != (want == newPolicies) {
					t.Errorf("%s: evaluator new: %v, want %v", sp.Name, sp.Authz != old.Authz, want == newPolicies)
				}
				if sp.Authn != old.Authn {
					t.Errorf("%s: a new authenticator, though no JWT rule changed", sp.Name)
				}
				if sp.DefaultBackend != c.backends[sp.Port.DefaultBackend] {
					t.Errorf("%s: the default backend is not this configuration's", sp.Name)
				}
			}
			if counts[same] == 0 || (!st.json && len(counts) < 2) {
				t.Fatalf("the step must change some ports and not others: %v", counts)
			}
			// The IR in force keeps the previous *ir.Service of a service
			// none of whose ports changed.
			k := 0
			for i, s := range c.ir.Services {
				unchanged := true
				for range s.Ports {
					unchanged = unchanged && st.port(prev.ports[k]) == same
					k++
				}
				if kept := s == prev.ir.Services[i]; kept != unchanged {
					t.Errorf("service %s: previous IR object kept: %v, want %v", s.Name, kept, unchanged)
				}
			}
			changed := 0
			for key, b := range c.backends {
				if (b != prev.backends[key]) != st.backendChanged(key) {
					t.Errorf("backend %s: new: %v, want %v", key, b != prev.backends[key], st.backendChanged(key))
				}
				if st.backendChanged(key) {
					changed++
				}
			}
			if c.BackendsKept() != (changed == 0) {
				t.Errorf("BackendsKept %v with %d backends changed", c.BackendsKept(), changed)
			}
			if st.json {
				// Nothing changed: the lookup maps are prev's.
				if reflect.ValueOf(c.byAddr).UnsafePointer() != reflect.ValueOf(prev.byAddr).UnsafePointer() ||
					reflect.ValueOf(c.byHost).UnsafePointer() != reflect.ValueOf(prev.byHost).UnsafePointer() {
					t.Error("the lookup maps were rebuilt though nothing changed")
				}
			}
		})
	}
}
