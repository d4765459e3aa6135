package translate

import (
	"crypto/sha256"
	"encoding/binary"
	"math"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Fingerprints let the proxy recompile only what changed: after a one-route
// edit in a mesh of 10,000 services, all but one service port and every
// backend are the same as before, and compiling them again is most of the
// cost of an update.
//
// A fingerprint is the first 8 bytes of the SHA-256 of an unambiguous
// encoding of the object (every field, lengths before contents, presence
// before optional values), so that it is deterministic across processes
// (the controller computes it, the proxy compares it) and nobody can make
// two different configurations of a port collide on purpose: a route's
// author cannot keep the proxy on a stale compilation of someone else's
// policy. Routes, policies and JWT rules are shared between ports; each is
// digested once per translation and ports include the digest.
//
// fingerprint_test.go checks that changing any field of a port or a
// backend, however deep, changes its fingerprint: a field added to the IR
// and forgotten here fails that test.

// fingerprints sets the Fingerprint of every service port of w, and of
// every backend that has none yet (newBackend fingerprints the backends it
// builds). The shared routes, policies and JWT rules are digested first, in
// one pass; the ports are then fingerprinted on every CPU for large
// configurations, each worker with its own buffer and the digests read-only.
func fingerprints(w *ir.Waypoint) {
	f := newFingerprinter()
	for _, s := range w.Services {
		for _, p := range s.Ports {
			f.digestShared(p)
		}
	}
	parallel(len(w.Services), func(lo, hi int) {
		g := f.worker()
		for _, s := range w.Services[lo:hi] {
			for _, p := range s.Ports {
				p.Fingerprint = g.port(p)
			}
		}
	})
	for _, b := range w.Backends {
		if b.Fingerprint == 0 {
			b.Fingerprint = f.backend(b)
		}
	}
}

// backendFingerprint is the fingerprint of one backend.
func backendFingerprint(b *ir.Backend) uint64 {
	var buf [256]byte // on the stack: enough for a few endpoints
	return sum64(putBackend(buf[:0], b))
}

type digest = [sha256.Size]byte

// fingerprinter encodes objects into a reused buffer and remembers the
// digests of the shared ones.
type fingerprinter struct {
	buf      []byte
	rules    map[*ir.HTTPRouteRule]digest
	policies map[*ir.AuthzPolicy]digest
	jwtRules map[*ir.JWTRule]digest
	// frozen: the maps are shared with other goroutines; compute what is
	// missing (never, after digestShared) without storing it.
	frozen bool
}

func newFingerprinter() *fingerprinter {
	return &fingerprinter{
		buf:      make([]byte, 0, 1024),
		rules:    map[*ir.HTTPRouteRule]digest{},
		policies: map[*ir.AuthzPolicy]digest{},
		jwtRules: map[*ir.JWTRule]digest{},
	}
}

// worker is a fingerprinter for one goroutine: its own buffer, the same
// digests. Once workers exist the digests must only be read, so every
// shared object must have been digested (digestShared) before.
func (f *fingerprinter) worker() *fingerprinter {
	return &fingerprinter{buf: make([]byte, 0, 1024), rules: f.rules, policies: f.policies, jwtRules: f.jwtRules, frozen: true}
}

// remember keeps the encoding buffer b for reuse and returns its digest,
// storing it under k in m unless f is a read-only worker.
func remember[K comparable](f *fingerprinter, m map[K]digest, k K, b []byte) digest {
	f.buf = b
	d := sha256.Sum256(b)
	if !f.frozen {
		m[k] = d
	}
	return d
}

// digestShared digests the routes, policies and JWT rules of a port.
func (f *fingerprinter) digestShared(p *ir.ServicePort) {
	for _, r := range p.Routes {
		f.rule(r)
	}
	for _, a := range p.Policies {
		f.policy(a)
	}
	for _, j := range p.JWTRules {
		f.jwtRule(j)
	}
}

// sum64 is the fingerprint of the encoding in buf; never 0, which means
// "unknown".
func sum64(buf []byte) uint64 {
	d := sha256.Sum256(buf)
	if v := binary.LittleEndian.Uint64(d[:8]); v != 0 {
		return v
	}
	return 1
}

func (f *fingerprinter) port(p *ir.ServicePort) uint64 {
	// The shared parts first: digesting them uses buf.
	var rbuf, pbuf, jbuf [8]digest
	rules, policies, jwt := rbuf[:0], pbuf[:0], jbuf[:0]
	for _, r := range p.Routes {
		rules = append(rules, f.rule(r))
	}
	for _, a := range p.Policies {
		policies = append(policies, f.policy(a))
	}
	for _, j := range p.JWTRules {
		jwt = append(jwt, f.jwtRule(j))
	}
	b := f.buf[:0]
	b = putUint(b, uint64(p.Port))
	b = putString(b, p.Name)
	b = putString(b, string(p.Protocol))
	b = putUint(b, uint64(len(p.Routes)))
	for i, r := range p.Routes {
		b = putPresent(b, r != nil)
		b = append(b, rules[i][:]...)
	}
	b = putString(b, p.DefaultBackend)
	b = putUint(b, uint64(len(p.Policies)))
	for i, a := range p.Policies {
		b = putPresent(b, a != nil)
		b = append(b, policies[i][:]...)
	}
	b = putUint(b, uint64(len(p.TCPBackends)))
	for i := range p.TCPBackends {
		b = putWeightedBackend(b, &p.TCPBackends[i])
	}
	b = putUint(b, uint64(len(p.JWTRules)))
	for i, j := range p.JWTRules {
		b = putPresent(b, j != nil)
		b = append(b, jwt[i][:]...)
	}
	f.buf = b
	return sum64(b)
}

func (f *fingerprinter) backend(be *ir.Backend) uint64 {
	f.buf = putBackend(f.buf[:0], be)
	return sum64(f.buf)
}

func putBackend(b []byte, be *ir.Backend) []byte {
	b = putString(b, be.Service.Namespace)
	b = putString(b, be.Service.Name)
	b = putUint(b, uint64(be.Port))
	b = putString(b, be.Protocol)
	b = putStrings(b, be.Endpoints)
	if len(be.HBONE) == 0 {
		return b // as before native mode: the fingerprints of sandwich backends stay
	}
	b = putUint(b, uint64(len(be.HBONE)))
	for _, m := range be.HBONE {
		b = putString(b, m.Endpoint)
		b = putString(b, m.Identity)
	}
	return b
}

func (f *fingerprinter) rule(r *ir.HTTPRouteRule) digest {
	if r == nil {
		return digest{}
	}
	if d, ok := f.rules[r]; ok {
		return d
	}
	b := f.buf[:0]
	b = putString(b, r.Route.Namespace)
	b = putString(b, r.Route.Name)
	b = putInt(b, int64(r.RuleIndex))
	b = putInt(b, int64(r.MatchIndex))
	b = putMatch(b, &r.Match)
	b = putHeaderModifier(b, r.RequestHeaders)
	b = putHeaderModifier(b, r.ResponseHeaders)
	b = putUint(b, uint64(len(r.Backends)))
	for i := range r.Backends {
		b = putWeightedBackend(b, &r.Backends[i])
	}
	b = putString(b, r.RuleName)
	b = putString(b, r.ClientNamespace)
	b = putBool(b, r.GRPC)
	b = putPresent(b, r.Redirect != nil)
	if rd := r.Redirect; rd != nil {
		b = putString(b, rd.Scheme)
		b = putString(b, rd.Hostname)
		b = putPathModifier(b, rd.Path)
		b = putUint(b, uint64(rd.Port))
		b = putInt(b, int64(rd.StatusCode))
	}
	b = putPresent(b, r.Rewrite != nil)
	if rw := r.Rewrite; rw != nil {
		b = putString(b, rw.Hostname)
		b = putPathModifier(b, rw.Path)
	}
	b = putUint(b, uint64(len(r.Mirrors)))
	for _, m := range r.Mirrors {
		b = putString(b, m.Backend)
		b = putUint(b, math.Float64bits(m.Percent))
	}
	b = putPresent(b, r.CORS != nil)
	if c := r.CORS; c != nil {
		b = putStrings(b, c.AllowOrigins)
		b = putStrings(b, c.AllowMethods)
		b = putStrings(b, c.AllowHeaders)
		b = putStrings(b, c.ExposeHeaders)
		b = putInt(b, int64(c.MaxAge))
		b = putBool(b, c.AllowCredentials)
	}
	b = putInt(b, r.RequestTimeoutMs)
	b = putInt(b, r.BackendRequestTimeoutMs)
	b = putPresent(b, r.Retry != nil)
	if rt := r.Retry; rt != nil {
		b = putInt(b, int64(rt.Attempts))
		b = putUint(b, uint64(len(rt.Codes)))
		for _, c := range rt.Codes {
			b = putInt(b, int64(c))
		}
		b = putInt(b, rt.BackoffMs)
		b = putInt(b, rt.PerTryTimeoutMs)
	}
	b = putString(b, r.Unsupported)
	return remember(f, f.rules, r, b)
}

func (f *fingerprinter) policy(p *ir.AuthzPolicy) digest {
	if p == nil {
		return digest{}
	}
	if d, ok := f.policies[p]; ok {
		return d
	}
	b := f.buf[:0]
	b = putString(b, p.Name.Namespace)
	b = putString(b, p.Name.Name)
	b = putString(b, string(p.Action))
	b = putString(b, p.Provider)
	b = putBool(b, p.DryRun)
	b = putPresent(b, p.Rules != nil) // nil and empty differ: see ir.AuthzPolicy
	b = putUint(b, uint64(len(p.Rules)))
	for _, r := range p.Rules {
		b = putPresent(b, r != nil)
		if r == nil {
			continue
		}
		b = putUint(b, uint64(len(r.From)))
		for _, s := range r.From {
			b = putPresent(b, s != nil)
			if s == nil {
				continue
			}
			b = putStrings(b, s.Principals)
			b = putStrings(b, s.NotPrincipals)
			b = putStrings(b, s.RequestPrincipals)
			b = putStrings(b, s.NotRequestPrincipals)
			b = putStrings(b, s.Namespaces)
			b = putStrings(b, s.NotNamespaces)
			b = putStrings(b, s.ServiceAccounts)
			b = putStrings(b, s.NotServiceAccounts)
			b = putStrings(b, s.IPBlocks)
			b = putStrings(b, s.NotIPBlocks)
			b = putStrings(b, s.RemoteIPBlocks)
			b = putStrings(b, s.NotRemoteIPBlocks)
			b = putStrings(b, s.TrustDomains)
			b = putStrings(b, s.NotTrustDomains)
		}
		b = putUint(b, uint64(len(r.To)))
		for _, o := range r.To {
			b = putPresent(b, o != nil)
			if o == nil {
				continue
			}
			b = putStrings(b, o.Hosts)
			b = putStrings(b, o.NotHosts)
			b = putStrings(b, o.Ports)
			b = putStrings(b, o.NotPorts)
			b = putStrings(b, o.Methods)
			b = putStrings(b, o.NotMethods)
			b = putStrings(b, o.Paths)
			b = putStrings(b, o.NotPaths)
		}
		b = putUint(b, uint64(len(r.When)))
		for _, c := range r.When {
			b = putPresent(b, c != nil)
			if c == nil {
				continue
			}
			b = putString(b, c.Key)
			b = putStrings(b, c.Values)
			b = putStrings(b, c.NotValues)
		}
	}
	b = putString(b, p.Invalid)
	return remember(f, f.policies, p, b)
}

func (f *fingerprinter) jwtRule(j *ir.JWTRule) digest {
	if j == nil {
		return digest{}
	}
	if d, ok := f.jwtRules[j]; ok {
		return d
	}
	b := f.buf[:0]
	b = putString(b, j.Policy.Namespace)
	b = putString(b, j.Policy.Name)
	b = putString(b, j.Issuer)
	b = putStrings(b, j.Audiences)
	b = putString(b, j.JwksURI)
	b = putString(b, j.Jwks)
	b = putUint(b, uint64(len(j.FromHeaders)))
	for _, h := range j.FromHeaders {
		b = putString(b, h.Name)
		b = putString(b, h.Prefix)
	}
	b = putStrings(b, j.FromParams)
	b = putStrings(b, j.FromCookies)
	b = putString(b, j.OutputPayloadToHeader)
	b = putBool(b, j.ForwardOriginalToken)
	b = putUint(b, uint64(len(j.OutputClaimToHeaders)))
	for _, c := range j.OutputClaimToHeaders {
		b = putString(b, c.Header)
		b = putString(b, c.Claim)
	}
	b = putInt(b, j.TimeoutMs)
	b = putStrings(b, j.SpaceDelimitedClaims)
	b = putBool(b, j.Required)
	return remember(f, f.jwtRules, j, b)
}

func putMatch(b []byte, m *ir.HTTPMatch) []byte {
	b = putPresent(b, m.Path != nil)
	if m.Path != nil {
		b = putString(b, string(m.Path.Type))
		b = putString(b, m.Path.Value)
	}
	b = putUint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = putString(b, string(h.Type))
		b = putString(b, h.Name)
		b = putString(b, h.Value)
	}
	b = putUint(b, uint64(len(m.QueryParams)))
	for _, q := range m.QueryParams {
		b = putString(b, string(q.Type))
		b = putString(b, q.Name)
		b = putString(b, q.Value)
	}
	return putString(b, m.Method)
}

func putWeightedBackend(b []byte, w *ir.WeightedBackend) []byte {
	b = putString(b, w.Backend)
	b = putUint(b, uint64(w.Weight))
	b = putHeaderModifier(b, w.RequestHeaders)
	return putHeaderModifier(b, w.ResponseHeaders)
}

func putHeaderModifier(b []byte, m *ir.HeaderModifier) []byte {
	b = putPresent(b, m != nil)
	if m == nil {
		return b
	}
	b = putUint(b, uint64(len(m.Set)))
	for _, h := range m.Set {
		b = putString(b, h.Name)
		b = putString(b, h.Value)
	}
	b = putUint(b, uint64(len(m.Add)))
	for _, h := range m.Add {
		b = putString(b, h.Name)
		b = putString(b, h.Value)
	}
	return putStrings(b, m.Remove)
}

func putPathModifier(b []byte, p *ir.PathModifier) []byte {
	b = putPresent(b, p != nil)
	if p == nil {
		return b
	}
	b = putString(b, p.Type)
	return putString(b, p.Value)
}

func putUint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func putInt(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func putBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// putPresent marks whether an optional value follows.
func putPresent(b []byte, present bool) []byte { return putBool(b, present) }

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = putString(b, s)
	}
	return b
}
