package proxy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
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

// An update that takes over the previous configuration's compiled ports and
// backends must give exactly what compiling the new configuration from
// nothing gives, whatever changed: a route, endpoints, a policy, services
// added or removed, a VIP, the trust domain, or nothing.
func TestUpdateReusesOnlyWhatIsUnchanged(t *testing.T) {
	base, err := files.LoadBytes("mesh.yaml", append(meshgen.Generate(60), warnPolicy...))
	if err != nil {
		t.Fatal(err)
	}
	hot := meshgen.HotRoute(base)
	edit := func(f func(s *source.Snapshot)) *source.Snapshot {
		s := *base
		f(&s)
		return &s
	}
	type step struct {
		name string
		snap *source.Snapshot
		opts translate.Options
		// strip removes the fingerprints (an IR from an older controller).
		strip bool
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
		{name: "trust domain", snap: base, opts: translate.Options{TrustDomain: "example.org"}, recompiled: -2},
		{name: "no fingerprints", snap: base, strip: true, recompiled: -2},
		{name: "fingerprints again", snap: base, recompiled: -2},
	}
	p := New(Options{})
	defer p.Close()
	for i, st := range steps {
		res, err := translate.Translate(st.snap, st.opts)
		if err != nil {
			t.Fatal(err)
		}
		w := res.Waypoint
		if st.strip {
			for _, s := range w.Services {
				for _, sp := range s.Ports {
					sp.Fingerprint = 0
				}
			}
			for _, b := range w.Backends {
				b.Fingerprint = 0
			}
		}
		prev := p.config.Load()
		if err := p.Update(w); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := p.config.Load()
		if got.version != uint64(i+1) || !reflect.DeepEqual(got.ir, w) {
			t.Fatalf("%s: version %d; want %d and the IR in force equal to the one applied", st.name, got.version, i+1)
		}
		// The compiled parts point into the IR in force, not into another
		// copy of it.
		k := 0
		for _, s := range got.ir.Services {
			for _, port := range s.Ports {
				if sp := got.ports[k]; sp.svc != s || sp.port != port {
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
		want, err := compile(w, nil, p.outlier, p.jwks, p.log)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameConfig(got, want); err != nil {
			t.Errorf("%s: the updated configuration differs from one compiled from nothing: %v", st.name, err)
		}
		if st.recompiled == -1 {
			continue
		}
		// Compiled again: authorization evaluators that are not the
		// previous configuration's (all of them: -2).
		kept := map[any]bool{}
		for _, sp := range prev.ports {
			kept[sp.authz] = true
		}
		n := 0
		for _, sp := range got.ports {
			if !kept[sp.authz] {
				n++
			}
		}
		wantN := st.recompiled
		if wantN == -2 {
			wantN = len(got.ports)
		}
		if n != wantN {
			t.Errorf("%s: %d of %d ports compiled again, want %d", st.name, n, len(got.ports), wantN)
		}
	}
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
	p := New(Options{})
	defer p.Close()
	a, err := compile(res.Waypoint, nil, p.outlier, p.jwks, p.log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := compile(res.Waypoint, nil, p.outlier, p.jwks, p.log)
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
	c, err := compile(res2.Waypoint, nil, p.outlier, p.jwks, p.log)
	if err != nil {
		t.Fatal(err)
	}
	if sameConfig(a, c) == nil {
		t.Fatal("a changed route went unnoticed")
	}
}

// sameConfig compares two compiled configurations by content: the same
// lookup keys leading to equal service ports, the same backends.
func sameConfig(got, want *config) error {
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

func samePort(gotC *config, got, want *servicePort) error {
	switch {
	case got == nil:
		return fmt.Errorf("missing")
	case got.name != want.name:
		return fmt.Errorf("name %s, want %s", got.name, want.name)
	case !reflect.DeepEqual(got.svc, want.svc):
		return fmt.Errorf("%s: service IR differs", want.name)
	case !reflect.DeepEqual(got.port, want.port):
		return fmt.Errorf("%s: port IR differs", want.name)
	case !reflect.DeepEqual(got.routes, want.routes):
		return fmt.Errorf("%s: route table differs", want.name)
	case !reflect.DeepEqual(got.authz, want.authz):
		return fmt.Errorf("%s: authorization differs", want.name)
	case got.authn.Empty() != want.authn.Empty() || !reflect.DeepEqual(got.authn.Warnings(), want.authn.Warnings()):
		return fmt.Errorf("%s: authentication differs", want.name)
	}
	// The default backend is the one in force in this configuration.
	if (want.defaultBackend == nil) != (got.defaultBackend == nil) {
		return fmt.Errorf("%s: default backend presence differs", want.name)
	}
	if got.defaultBackend != nil && got.defaultBackend != gotC.backends[got.port.DefaultBackend] {
		return fmt.Errorf("%s: default backend %s is not the configuration's", want.name, got.port.DefaultBackend)
	}
	if want.defaultBackend != nil && !reflect.DeepEqual(got.defaultBackend.IR, want.defaultBackend.IR) {
		return fmt.Errorf("%s: default backend %s differs: %s", want.name, want.port.DefaultBackend,
			strings.Join(got.defaultBackend.IR.Endpoints, ","))
	}
	return nil
}
