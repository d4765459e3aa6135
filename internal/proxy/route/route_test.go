package route

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func req(method, target string, hdr ...string) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func entry(m ir.HTTPMatch) *ir.HTTPRouteRule {
	return &ir.HTTPRouteRule{Match: m, Backends: []ir.WeightedBackend{{Backend: "b", Weight: 1}}}
}

func TestPathMatching(t *testing.T) {
	cases := []struct {
		typ   ir.MatchType
		value string
		path  string
		want  bool
	}{
		{ir.MatchExact, "/a", "/a", true},
		{ir.MatchExact, "/a", "/a/", false},
		{ir.MatchPathPrefix, "/v2", "/v2", true},
		{ir.MatchPathPrefix, "/v2", "/v2/", true},
		{ir.MatchPathPrefix, "/v2", "/v2/x", true},
		{ir.MatchPathPrefix, "/v2", "/v2example", false},
		{ir.MatchPathPrefix, "/v2/", "/v2", true},
		{ir.MatchPathPrefix, "/v2/", "/v2/x", true},
		{ir.MatchPathPrefix, "/", "/anything", true},
		{ir.MatchRegularExpression, "/v[0-9]+/.*", "/v12/x", true},
		{ir.MatchRegularExpression, "/v[0-9]+", "/v12/x", false}, // the whole path must match
	}
	for _, tc := range cases {
		tab, err := Compile([]*ir.HTTPRouteRule{entry(ir.HTTPMatch{Path: &ir.PathMatch{Type: tc.typ, Value: tc.value}})})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := tab.Match(req("GET", tc.path), "")
		if (r != nil) != tc.want {
			t.Errorf("%s %q vs %q: matched %v, want %v", tc.typ, tc.value, tc.path, r != nil, tc.want)
		}
	}
}

func TestHeaderQueryAndMethodMatching(t *testing.T) {
	tab, err := Compile([]*ir.HTTPRouteRule{entry(ir.HTTPMatch{
		Method:      "POST",
		Headers:     []ir.HeaderMatch{{Type: ir.MatchExact, Name: "x-env", Value: "prod"}, {Type: ir.MatchRegularExpression, Name: "X-Ver", Value: "v[12]"}},
		QueryParams: []ir.QueryParamMatch{{Type: ir.MatchExact, Name: "a b", Value: "1+2"}, {Type: ir.MatchRegularExpression, Name: "n", Value: "[0-9]+"}},
	})})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		r    *http.Request
		want bool
	}{
		{req("POST", "/?a+b=1%2B2&n=42", "X-Env", "prod", "x-ver", "v2"), true},
		{req("GET", "/?a+b=1%2B2&n=42", "X-Env", "prod", "x-ver", "v2"), false},
		{req("POST", "/?a+b=1%2B2&n=42", "X-Env", "Prod", "x-ver", "v2"), false},
		{req("POST", "/?a+b=1%2B2&n=42", "X-Env", "prod", "x-ver", "v3"), false},
		{req("POST", "/?a+b=1%2B2&n=4x2", "X-Env", "prod", "x-ver", "v2"), false},
		{req("POST", "/?n=42", "X-Env", "prod", "x-ver", "v2"), false},
		{req("POST", "/?a+b=1%2B2&n=42&n=x", "X-Env", "prod", "x-ver", "v2"), true}, // first value decides
	}
	for i, tc := range cases {
		r, _ := tab.Match(tc.r, "")
		if (r != nil) != tc.want {
			t.Errorf("case %d (%s %s %v): matched %v, want %v", i, tc.r.Method, tc.r.URL, tc.r.Header, r != nil, tc.want)
		}
	}
}

func TestConsumerTables(t *testing.T) {
	prod := entry(ir.HTTPMatch{})
	cons := entry(ir.HTTPMatch{Path: &ir.PathMatch{Type: ir.MatchExact, Value: "/only"}})
	cons.ClientNamespace = "clients"
	tab, err := Compile([]*ir.HTTPRouteRule{prod, cons})
	if err != nil {
		t.Fatal(err)
	}
	if r, routed := tab.Match(req("GET", "/x"), "other"); r == nil || r.IR != prod || !routed {
		t.Error("a client without consumer routes sees the producer route")
	}
	if r, routed := tab.Match(req("GET", "/x"), "clients"); r != nil || !routed {
		t.Error("a consumer namespace sees only its own routes: /x must not match (404)")
	}
	if r, _ := tab.Match(req("GET", "/only"), "clients"); r == nil || r.IR != cons {
		t.Error("the consumer route must match its client")
	}
}

func TestPickBackendWeights(t *testing.T) {
	e := &ir.HTTPRouteRule{Backends: []ir.WeightedBackend{{Backend: "a", Weight: 1}, {Backend: "zero", Weight: 0}, {Backend: "b", Weight: 3}}}
	tab, _ := Compile([]*ir.HTTPRouteRule{e})
	r, _ := tab.Match(req("GET", "/"), "")
	counts := map[string]int{}
	for n := uint32(0); n < 4000; n++ {
		counts[r.PickBackend(n).Backend]++
	}
	if counts["a"] != 1000 || counts["b"] != 3000 || counts["zero"] != 0 {
		t.Errorf("weights 1:0:3 over 4000 picks gave %v", counts)
	}
	allZero, _ := Compile([]*ir.HTTPRouteRule{{Backends: []ir.WeightedBackend{{Backend: "a"}}}})
	r, _ = allZero.Match(req("GET", "/"), "")
	if r.PickBackend(7) != nil {
		t.Error("all-zero weights must pick nothing (500)")
	}
}

func TestReplacePrefix(t *testing.T) {
	cases := []struct{ path, prefix, repl, want string }{
		{"/prefix/one/two", "/prefix/one", "/one", "/one/two"},
		{"/strip-prefix/three", "/strip-prefix", "/", "/three"},
		{"/strip-prefix", "/strip-prefix", "/", "/"},
		{"/a", "/", "/x", "/x/a"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
	}
	for _, tc := range cases {
		if got := ReplacePrefix(tc.path, tc.prefix, tc.repl); got != tc.want {
			t.Errorf("ReplacePrefix(%q, %q, %q) = %q, want %q", tc.path, tc.prefix, tc.repl, got, tc.want)
		}
	}
}

// FuzzPathPrefix checks the per-element prefix matcher against its
// definition on arbitrary paths and prefixes.
func FuzzPathPrefix(f *testing.F) {
	f.Add("/v2", "/v2example")
	f.Add("/v2/", "/v2/x")
	f.Add("/", "/")
	f.Add("/a//", "/a//b")
	f.Fuzz(func(t *testing.T, prefix, path string) {
		if !strings.HasPrefix(prefix, "/") || !strings.HasPrefix(path, "/") {
			return
		}
		tab, err := Compile([]*ir.HTTPRouteRule{entry(ir.HTTPMatch{Path: &ir.PathMatch{Type: ir.MatchPathPrefix, Value: prefix}})})
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Method: "GET", URL: &url.URL{Path: path}, Header: http.Header{}}
		got, _ := tab.Match(r, "")
		// Reference: compare path elements.
		p := strings.TrimRight(prefix, "/")
		want := p == "" || path == p || strings.HasPrefix(path, p+"/")
		if (got != nil) != want {
			t.Fatalf("prefix %q path %q: matched %v, want %v", prefix, path, got != nil, want)
		}
	})
}

// FuzzRegexMatchers compiles arbitrary expressions and matches arbitrary
// inputs: compile errors are fine, panics are not.
func FuzzRegexMatchers(f *testing.F) {
	f.Add("/v[0-9]+", "/v1", "x", "a=b")
	f.Add("(", "/", "", "")
	f.Fuzz(func(t *testing.T, expr, path, header, query string) {
		e := entry(ir.HTTPMatch{
			Path:        &ir.PathMatch{Type: ir.MatchRegularExpression, Value: expr},
			Headers:     []ir.HeaderMatch{{Type: ir.MatchRegularExpression, Name: "x", Value: expr}},
			QueryParams: []ir.QueryParamMatch{{Type: ir.MatchRegularExpression, Name: "q", Value: expr}},
		})
		tab, err := Compile([]*ir.HTTPRouteRule{e})
		if err != nil {
			return
		}
		r := &http.Request{Method: "GET", URL: &url.URL{Path: path, RawQuery: "q=" + url.QueryEscape(query)}, Header: http.Header{"X": {header}}}
		tab.Match(r, "")
	})
}

// BenchmarkMatch100Rules: a service with 100 rules (exact and prefix paths,
// headers), the request matching the last-but-one; the common case must
// not allocate.
func BenchmarkMatch100Rules(b *testing.B) {
	var entries []*ir.HTTPRouteRule
	for i := 0; i < 50; i++ {
		entries = append(entries, entry(ir.HTTPMatch{Path: &ir.PathMatch{Type: ir.MatchExact, Value: fmt.Sprintf("/api/v1/items/%d", i)}}))
	}
	for i := 0; i < 49; i++ {
		entries = append(entries, entry(ir.HTTPMatch{
			Path:    &ir.PathMatch{Type: ir.MatchPathPrefix, Value: fmt.Sprintf("/svc%d", i)},
			Headers: []ir.HeaderMatch{{Type: ir.MatchExact, Name: "x-tenant", Value: "t"}},
			Method:  "GET",
		}))
	}
	entries = append(entries, entry(ir.HTTPMatch{Path: &ir.PathMatch{Type: ir.MatchPathPrefix, Value: "/"}}))
	tab, err := Compile(entries)
	if err != nil {
		b.Fatal(err)
	}
	r := req("GET", "/svc48/orders?x=1", "X-Tenant", "t")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m, _ := tab.Match(r, ""); m == nil {
			b.Fatal("no match")
		}
	}
}
