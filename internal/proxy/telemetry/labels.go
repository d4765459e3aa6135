package telemetry

import (
	"strings"
	"sync"
)

// Where each label value of Istio's metrics comes from, and why none of
// them can make series without bound:
//
//	reporter                         constant "waypoint"
//	source_principal                 the PROXY v2 identity TLV, only when it is a SPIFFE ID of
//	                                 Istio's form spiffe://<td>/ns/<ns>/sa/<sa>; else "unknown"
//	source_workload_namespace        the <ns> of that identity; else "unknown" (never a header)
//	source_workload, source_app,     what the client says of itself (baggage), kept only when
//	source_version, source_cluster,  the identity vouches for the client (a valid identity whose
//	source_canonical_service/_rev    namespace the claim does not contradict), each value is a
//	                                 valid label value, and the identity has not used up its
//	                                 budget of distinct claims (maxClaimsPerIdentity); else
//	                                 "unknown" ("latest" for the canonical revision)
//	destination_*                    the configuration: the service's hostname, name, namespace
//	request_protocol                 fixed set: http, grpc, tcp
//	response_code                    0 or 100..599; anything else "unknown"
//	grpc_response_status             "" or 0..16; anything else "-1", Envoy's InvalidCode
//	response_flags                   Envoy's flag set, comma-joined; anything else "unknown"
//	connection_security_policy       fixed set: mutual_tls, none, unknown
//
// Istio's own waypoint takes the source's workload fields from the control
// plane's workload records (peer_metadata workload_discovery, looked up by
// the peer's address), never from request headers; this waypoint has no
// such records, so a client's baggage is the only source and is treated as
// a claim that the identity must back. Methods, paths, hosts and other
// headers are never labels. On top of these rules, each metric family holds
// at most Options.MaxSeries label sets (see httpSeriesFor).

// maxClaimsPerIdentity bounds the distinct workload claims (baggage tuples)
// one identity may put into the metrics: a service account that runs a few
// workloads and versions stays well under it, one that invents a new claim
// per request folds past it.
const maxClaimsPerIdentity = 16

// Fold reasons (the reason label of kgateway_waypoint_telemetry_labels_folded_total).
const (
	foldUnvouched = "unvouched" // baggage from a client whose identity does not back it
	foldInvalid   = "invalid"   // a value that is not a valid label value or code
	foldBudget    = "budget"    // the identity's distinct claims are used up
)

// claims is what a client says of itself beyond its identity.
type claims struct {
	workload, canonicalService, canonicalRevision, app, version, cluster string
}

func (c *claims) empty() bool { return *c == claims{} }

func (c *claims) clone() claims {
	return claims{
		workload: strings.Clone(c.workload), canonicalService: strings.Clone(c.canonicalService),
		canonicalRevision: strings.Clone(c.canonicalRevision), app: strings.Clone(c.app),
		version: strings.Clone(c.version), cluster: strings.Clone(c.cluster),
	}
}

// sourceLabels are the source_* label values of one record.
type sourceLabels struct {
	principal, namespace string
	claims
}

// deriveSource applies the trust rule above to a source peer, leaving out
// only the per-identity budget (which needs state): it is pure and does
// not allocate. vouched reports that claims from the peer survived (the
// caller still has to charge them to the identity's budget); folded is
// the reason some client-supplied value was dropped ("" for none).
func deriveSource(p *Peer) (l sourceLabels, vouched bool, folded string) {
	l = sourceLabels{principal: unknown, namespace: unknown}
	c := claims{
		workload: p.Workload, canonicalService: p.CanonicalService, canonicalRevision: p.CanonicalRevision,
		app: p.App, version: p.Version, cluster: p.Cluster,
	}
	_, ns, _, ok := parseSPIFFE(p.Principal)
	switch {
	case !ok:
		if p.Principal != "" {
			folded = foldInvalid
		}
		if !c.empty() || p.Namespace != NamespaceFromPrincipal(p.Principal) {
			folded = foldUnvouched // baggage that no identity backs
		}
	case p.contradicted || (p.Namespace != "" && p.Namespace != ns):
		// The claims describe a workload of another namespace than the
		// identity's: none of them is believed.
		l.principal, l.namespace = p.Principal, ns
		folded = foldUnvouched
	default:
		l.principal, l.namespace = p.Principal, ns
		l.claims, folded = validClaims(c)
		vouched = !l.empty()
	}
	l.fill()
	return l, vouched, folded
}

// validClaims keeps the claims that are valid label values: Kubernetes
// names (253 bytes) for the workload and cluster, label values (63 bytes)
// for the rest.
func validClaims(c claims) (claims, string) {
	var folded string
	keep := func(s string, max int) string {
		if s != "" && !labelSafe(s, max) {
			folded = foldInvalid
			return ""
		}
		return s
	}
	return claims{
		workload:          keep(c.workload, 253),
		canonicalService:  keep(c.canonicalService, 63),
		canonicalRevision: keep(c.canonicalRevision, 63),
		app:               keep(c.app, 63),
		version:           keep(c.version, 63),
		cluster:           keep(c.cluster, 253),
	}, folded
}

// fill puts Istio's defaults where a source value is unknown.
func (l *sourceLabels) fill() {
	l.workload = or(l.workload, unknown)
	l.canonicalService = or(l.canonicalService, unknown)
	l.canonicalRevision = or(l.canonicalRevision, latest)
	l.app = or(l.app, unknown)
	l.version = or(l.version, unknown)
	l.cluster = or(l.cluster, unknown)
}

// foldClaims drops what the client said of itself, keeping the identity.
func (l *sourceLabels) foldClaims() {
	l.claims = claims{}
	l.fill()
}

// parseSPIFFE splits spiffe://<td>/ns/<ns>/sa/<sa>, Istio's only form of
// workload identity (ztunnel's Identity::Spiffe). Each part must be
// non-empty, of label-safe bytes and of Kubernetes' lengths. It does not
// allocate.
func parseSPIFFE(id string) (td, ns, sa string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", "", "", false
	}
	td, rest, ok = strings.Cut(rest, "/ns/")
	if !ok {
		return "", "", "", false
	}
	ns, sa, ok = strings.Cut(rest, "/sa/")
	if !ok || !labelSafe(td, 255) || !labelSafe(ns, 63) || !labelSafe(sa, 253) {
		return "", "", "", false
	}
	return td, ns, sa, true
}

// labelSafe reports whether s is 1..max bytes of [A-Za-z0-9._-], the
// alphabet of Kubernetes names and label values.
func labelSafe(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if (b < 'a' || b > 'z') && (b < 'A' || b > 'Z') && (b < '0' || b > '9') && b != '.' && b != '_' && b != '-' {
			return false
		}
	}
	return true
}

// claimsBudget remembers, per identity, the distinct claims admitted into
// the metrics, at most maxClaimsPerIdentity each and for at most
// maxIdentities identities; past either bound, claims are folded.
type claimsBudget struct {
	mu            sync.RWMutex
	ids           map[string]map[claims]struct{}
	maxIdentities int
}

func newClaimsBudget(maxIdentities int) *claimsBudget {
	return &claimsBudget{ids: map[string]map[claims]struct{}{}, maxIdentities: maxIdentities}
}

// admit reports whether principal may label series with c. A claim seen
// before costs a read lock and two map lookups, no allocation.
func (b *claimsBudget) admit(principal string, c *claims) bool {
	b.mu.RLock()
	_, seen := b.ids[principal][*c]
	b.mu.RUnlock()
	if seen {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	set, ok := b.ids[principal]
	if !ok {
		if len(b.ids) >= b.maxIdentities {
			return false
		}
		set = map[claims]struct{}{}
		b.ids[strings.Clone(principal)] = set
	}
	if _, seen := set[*c]; seen {
		return true
	}
	if len(set) >= maxClaimsPerIdentity {
		return false
	}
	set[c.clone()] = struct{}{}
	return true
}

// grpcStatuses are the label values of gRPC's known status codes.
var grpcStatuses = func() (s [17]string) {
	for i := range s {
		s[i] = itoa(i)
	}
	return s
}()

// grpcStatusLabel is grpc_response_status as Envoy's Grpc::Common::
// getGrpcStatus reports it: "" when there is none, the code for 0..16,
// and -1 (InvalidCode) for anything else, so a backend cannot mint values.
func grpcStatusLabel(s string) string {
	if s == "" {
		return ""
	}
	digits := strings.TrimPrefix(strings.TrimSpace(s), "+")
	if digits == "" {
		return "-1"
	}
	n := 0
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "-1"
		}
		if n = n*10 + int(digits[i]-'0'); n >= len(grpcStatuses) {
			return "-1"
		}
	}
	return grpcStatuses[n]
}

// codeLabel is response_code: 0 (nothing was sent) or a status in
// 100..599; anything else is "unknown".
func codeLabel(c int) (string, bool) {
	if c == 0 || c >= 100 && c < len(statusCodes) {
		return statusCodes[c], true
	}
	return unknown, false
}

// knownFlags are Envoy's response flags this waypoint sets.
var knownFlags = map[string]bool{
	FlagNoHealthyUpstream: true, FlagUpstreamConnectionFailure: true, FlagUpstreamRetryLimitExceeded: true,
	FlagNoRouteFound: true, FlagNoClusterFound: true, FlagUpstreamRequestTimeout: true,
	FlagUpstreamConnectionTermination: true, FlagUpstreamRemoteReset: true,
	FlagDownstreamConnectionTermination: true, FlagLocalReset: true, FlagUpstreamOverflow: true,
	FlagStreamIdleTimeout: true, FlagDurationTimeout: true, FlagDownstreamProtocolError: true,
	FlagUpstreamProtocolError: true, FlagFaultInjected: true, FlagDelayInjected: true, FlagRateLimited: true,
	FlagUnauthorizedExternalService: true, FlagRateLimitServiceError: true, FlagInvalidEnvoyRequestHeaders: true,
}

// flagsLabel is response_flags: "-", or known flags joined with ",".
func flagsLabel(f string) string {
	if f == "" || f == FlagNone {
		return FlagNone
	}
	if len(f) > 64 {
		return unknown
	}
	for rest := f; ; {
		one, more, found := strings.Cut(rest, ",")
		if !knownFlags[one] {
			return unknown
		}
		if !found {
			return f
		}
		rest = more
	}
}

// oneOf returns s when it is one of the allowed values, else "unknown".
func oneOf(s string, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			return a
		}
	}
	return unknown
}
