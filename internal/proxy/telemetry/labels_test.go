package telemetry

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/admin"
)

const curlID = "spiffe://cluster.local/ns/client-ns/sa/curl"

func TestDeriveSourceTrustRule(t *testing.T) {
	claimed := func(principal, baggage string) Peer {
		p := PeerFromPrincipal(principal)
		ParseBaggage(baggage, &p)
		return p
	}
	full := "k8s.deployment.name=curl,service.name=curl,service.version=v2,app.name=curl,app.version=v2,k8s.cluster.name=c1"
	cases := []struct {
		name    string
		peer    Peer
		want    sourceLabels
		vouched bool
		folded  string
	}{
		{"identity and matching claims", claimed(curlID, full+",k8s.namespace.name=client-ns"),
			sourceLabels{curlID, "client-ns", claims{"curl", "curl", "v2", "curl", "v2", "c1"}}, true, ""},
		{"identity, no claims", claimed(curlID, ""),
			sourceLabels{curlID, "client-ns", claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, ""},
		{"no identity: baggage namespace and workload are not believed",
			claimed("", "k8s.namespace.name=ns-1234,k8s.deployment.name=w-1234"),
			sourceLabels{unknown, unknown, claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, foldUnvouched},
		{"identity without a namespace", claimed("spiffe://cluster.local/sa/curl", full),
			sourceLabels{unknown, unknown, claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, foldUnvouched},
		{"not a SPIFFE identity", claimed("hello", ""),
			sourceLabels{unknown, unknown, claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, foldInvalid},
		{"extra path segments", claimed("spiffe://td/ns/a/sa/b/ns/c", ""),
			sourceLabels{unknown, unknown, claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, foldInvalid},
		{"namespace contradicting the identity", claimed(curlID, full+",k8s.namespace.name=other"),
			sourceLabels{curlID, "client-ns", claims{unknown, unknown, latest, unknown, unknown, unknown}}, false, foldUnvouched},
		{"invalid claim values fold one by one",
			claimed(curlID, "k8s.deployment.name=curl,app.name=a b,app.version="+strings.Repeat("v", 64)),
			sourceLabels{curlID, "client-ns", claims{"curl", unknown, latest, unknown, unknown, unknown}}, true, foldInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, vouched, folded := deriveSource(&tc.peer)
			if got != tc.want || vouched != tc.vouched || folded != tc.folded {
				t.Errorf("deriveSource(%+v)\n got %+v vouched=%v folded=%q\nwant %+v vouched=%v folded=%q",
					tc.peer, got, vouched, folded, tc.want, tc.vouched, tc.folded)
			}
		})
	}
}

// FuzzDeriveSource checks the properties of the source labels for any
// identity and baggage: every value is a default or label-safe and
// bounded; the principal and namespace come from a well-formed identity
// only; claims survive only when vouched and then exactly as given.
func FuzzDeriveSource(f *testing.F) {
	f.Add(curlID, "k8s.deployment.name=curl,app.name=curl")
	f.Add("", "k8s.namespace.name=x,k8s.deployment.name=y")
	f.Add("spiffe://td/ns/a/sa/b", "k8s.namespace.name=b,service.version=1")
	f.Add("spiffe://td/ns//sa/b", "app.name=\x00")
	f.Add("spiffe://td/ns/a/sa/b/c", ",,;=,k8s.pod.name= p ")
	f.Add("", "app.name=unknown,service.version=latest")
	f.Fuzz(func(t *testing.T, principal, baggage string) {
		p := PeerFromPrincipal(principal)
		ParseBaggage(baggage, &p)
		in := p
		l, vouched, folded := deriveSource(&p)
		if p != in {
			t.Fatal("deriveSource changed its input")
		}
		_, ns, _, ok := parseSPIFFE(principal)
		if ok {
			if l.principal != principal || l.namespace != ns {
				t.Fatalf("identity %q gave principal %q namespace %q", principal, l.principal, l.namespace)
			}
		} else if l.principal != unknown || l.namespace != unknown || vouched {
			t.Fatalf("malformed identity %q gave %+v vouched=%v", principal, l, vouched)
		}
		for _, v := range []struct {
			got, claim, def string
			max             int
		}{
			{l.workload, p.Workload, unknown, 253}, {l.canonicalService, p.CanonicalService, unknown, 63},
			{l.canonicalRevision, p.CanonicalRevision, latest, 63}, {l.app, p.App, unknown, 63},
			{l.version, p.Version, unknown, 63}, {l.cluster, p.Cluster, unknown, 253},
		} {
			if v.got == v.def {
				continue // Istio's default: always allowed
			}
			if !vouched || v.got != v.claim || !labelSafe(v.got, v.max) {
				t.Fatalf("source value %q from claim %q (vouched=%v)", v.got, v.claim, vouched)
			}
		}
		if len(l.principal) > len("spiffe:///ns//sa/")+255+63+253 {
			t.Fatalf("principal label of %d bytes", len(l.principal))
		}
		switch folded {
		case "", foldInvalid, foldUnvouched:
		default:
			t.Fatalf("fold reason %q", folded)
		}
	})
}

// FuzzBackendLabels checks that whatever a backend answers, the code and
// gRPC status labels stay within their fixed sets.
func FuzzBackendLabels(f *testing.F) {
	f.Add(200, "0", "-")
	f.Add(999, "+007", "UF,URX")
	f.Add(-1, " 16 ", "UF,,x")
	f.Add(1<<40, "17", "DC")
	f.Fuzz(func(t *testing.T, code int, grpc, flags string) {
		c, ok := codeLabel(code)
		if ok != (code == 0 || code >= 100 && code <= 599) {
			t.Fatalf("code %d ok=%v", code, ok)
		}
		if ok && c != fmt.Sprint(code) || !ok && c != unknown {
			t.Fatalf("code %d labelled %q", code, c)
		}
		g := grpcStatusLabel(grpc)
		switch {
		case grpc == "" && g != "":
			t.Fatalf("no gRPC status labelled %q", g)
		case grpc != "" && g != "-1":
			n := -1
			_, _ = fmt.Sscan(g, &n)
			if n < 0 || n > 16 || fmt.Sprint(n) != g {
				t.Fatalf("gRPC status %q labelled %q", grpc, g)
			}
		}
		fl := flagsLabel(flags)
		if fl != FlagNone && fl != unknown {
			for _, one := range strings.Split(fl, ",") {
				if !knownFlags[one] {
					t.Fatalf("flags %q labelled %q", flags, fl)
				}
			}
		}
	})
}

func TestGRPCStatusLabel(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "0": "0", "14": "14", "16": "16", "+7": "7", " 007 ": "7",
		"17": "-1", "-1": "-1", "1e3": "-1", "ok": "-1", " ": "-1", "99999999999999999999": "-1",
	} {
		if got := grpcStatusLabel(in); got != want {
			t.Errorf("grpcStatusLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClientChosenValuesCannotGrowSeries records what an attacker sends
// (a new baggage, identity or code every time) and scrapes the result over
// a socket: the series stay within the bounds of labels.go.
func TestClientChosenValuesCannotGrowSeries(t *testing.T) {
	const maxSeries = 50
	tel, err := New(Options{MaxSeries: maxSeries})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.MetricsHandler(tel.Registry()))
	defer srv.Close()
	count := func() int {
		return len(scrape(t, srv.URL+"/stats/prometheus")["istio_requests_total"].GetMetric())
	}
	base := func() RequestRecord {
		return RequestRecord{ResponseCode: 403, DestinationService: "httpbin.httpbin.svc.cluster.local",
			DestinationServiceName: "httpbin", DestinationServiceNamespace: "httpbin", ConnectionSecurityPolicy: SecurityMutualTLS}
	}

	// No identity, a new namespace and workload in every baggage: one series.
	for i := range 2000 {
		r := base()
		ParseBaggage(fmt.Sprintf("k8s.namespace.name=ns-%d,k8s.deployment.name=w-%d,app.name=a%d", i, i, i), &r.Source)
		tel.RecordRequest(&r)
	}
	if n := count(); n != 1 {
		t.Fatalf("identity-less clients with 2000 baggages made %d series, want 1", n)
	}
	// One identity, a new claim every time: the budget, plus the folded one.
	for i := range 2000 {
		r := base()
		r.Source = PeerFromPrincipal(curlID)
		ParseBaggage(fmt.Sprintf("k8s.deployment.name=w-%d,service.version=v%d", i, i), &r.Source)
		tel.RecordRequest(&r)
	}
	if n, want := count(), 1+maxClaimsPerIdentity+1; n != want {
		t.Fatalf("one identity with 2000 claims: %d series, want %d", n, want)
	}
	// Backend-chosen codes and gRPC statuses fold to their fixed sets.
	for i := range 1000 {
		r := base()
		r.ResponseCode, r.Protocol, r.GRPCStatus = 600+i%400, ProtocolGRPC, fmt.Sprint(17+i)
		tel.RecordRequest(&r)
	}
	// A new identity every time (a peer speaking PROXY for anyone): the
	// hard cap, plus the overflow series.
	for i := range 2000 {
		r := base()
		r.Source = PeerFromPrincipal(fmt.Sprintf("spiffe://cluster.local/ns/n%d/sa/s%d", i, i))
		tel.RecordRequest(&r)
	}
	mfs := scrape(t, srv.URL+"/stats/prometheus")
	for _, name := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		if n := len(mfs[name].GetMetric()); n > maxSeries+1 {
			t.Errorf("%s: %d series, the cap is %d plus the overflow series", name, n, maxSeries)
		}
	}
	for _, m := range mfs["istio_requests_total"].GetMetric() {
		l := labelMap(m)
		if c := l["response_code"]; c != "403" && c != unknown {
			t.Errorf("response_code %q", c)
		}
		if g := l["grpc_response_status"]; g != "" && g != "-1" {
			t.Errorf("grpc_response_status %q", g)
		}
	}
	folded := func(reason string) float64 {
		return series(t, mfs, "kgateway_waypoint_telemetry_labels_folded_total", map[string]string{"reason": reason}).GetCounter().GetValue()
	}
	if v := folded(foldUnvouched); v != 2000 {
		t.Errorf("unvouched folds %v, want 2000", v)
	}
	if v := folded(foldBudget); v != 2000-maxClaimsPerIdentity {
		t.Errorf("budget folds %v, want %d", v, 2000-maxClaimsPerIdentity)
	}
	if v := folded(foldInvalid); v != 2000 { // 1000 codes and 1000 gRPC statuses
		t.Errorf("invalid folds %v, want 2000", v)
	}
	if v := series(t, mfs, "kgateway_waypoint_telemetry_series_overflow_total", nil).GetCounter().GetValue(); v == 0 {
		t.Error("the cap was reached but no overflow was counted")
	}
}

func TestClaimsBudgetBoundsIdentities(t *testing.T) {
	b := newClaimsBudget(3)
	c := claims{workload: "w"}
	for i := range 3 {
		if !b.admit(fmt.Sprintf("id-%d", i), &c) {
			t.Fatalf("identity %d refused under the bound", i)
		}
	}
	if b.admit("id-3", &c) {
		t.Fatal("a fourth identity was admitted past maxIdentities 3")
	}
	if !b.admit("id-0", &c) {
		t.Fatal("a claim admitted before must stay admitted")
	}
}

// TestRecordRequestWarmIsAllocationFree: the trust rule and the folding
// cost the data path no allocation once a label set exists.
func TestRecordRequestWarmIsAllocationFree(t *testing.T) {
	tel, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := baseRecord() // identity plus baggage claims: the budget is consulted
	tel.RecordRequest(&r)
	if allocs := testing.AllocsPerRun(200, func() { tel.RecordRequest(&r) }); allocs != 0 {
		t.Errorf("RecordRequest with a warm label set: %v allocations, want 0", allocs)
	}
}
