package extauthz

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

func TestNewErrors(t *testing.T) {
	resolve := func(string, uint16) (string, error) { return "127.0.0.1:1", nil }
	valid := &ir.ExtAuthzProvider{Name: "p", Kind: ir.ExtAuthzHTTP, Host: "h", Port: 1}
	for _, c := range []struct {
		name string
		p    *ir.ExtAuthzProvider
		opts Options
		want string
	}{
		{"nil provider", nil, Options{Resolve: resolve}, "nil provider"},
		{"invalid provider", &ir.ExtAuthzProvider{Name: "bad", Kind: ir.ExtAuthzHTTP, Invalid: "a single wildcard"}, Options{Resolve: resolve}, `"bad" is invalid: a single wildcard`},
		{"no resolver", valid, Options{}, "Resolve is required"},
		{"no kind", &ir.ExtAuthzProvider{Name: "k", Host: "h", Port: 1}, Options{Resolve: resolve}, "no kind"},
	} {
		if _, err := New(c.p, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	for _, kind := range []ir.ProviderKind{ir.ExtAuthzHTTP, ir.ExtAuthzGRPC} {
		p := *valid
		p.Kind = kind
		c, err := New(&p, Options{Resolve: resolve})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("%s: Close: %v", kind, err)
		}
	}
}

func TestMatcher(t *testing.T) {
	m := newMatcher([]string{"X-Exact", "x-pre*", "*-SUF"}, "authorization")
	for name, want := range map[string]bool{
		"x-exact": true, "X-EXACT": true, "x-exactly": false,
		"x-pre": true, "X-Prefix": true, "y-pre": false,
		"a-suf": true, "-suf": true, "a-sufx": false,
		"Authorization": true, "cookie": false,
	} {
		if got := m.match(name); got != want {
			t.Errorf("match(%q) = %v, want %v", name, got, want)
		}
	}
	if newMatcher(nil).match("anything") {
		t.Error("an empty list matches nothing")
	}
}

func TestHeaderMap(t *testing.T) {
	got := headerMap(http.Header{
		"X-A":                       {"1", "2"},
		"x-a":                       {"3"}, // another spelling of the same name
		"Connection":                {"close"},
		"Transfer-Encoding":         {"chunked"},
		"X-Envoy-Auth-Partial-Body": {"true"},
		"X-Bin":                     {"a\xff\xfeb"},
		"X-Empty":                   {},
	})
	want := map[string]string{"x-a": "1,2,3", "x-bin": "a!!b"}
	if got["x-a"] != "1,2,3" && got["x-a"] != "3,1,2" {
		t.Errorf("x-a = %q", got["x-a"])
	}
	got["x-a"] = want["x-a"]
	if !reflect.DeepEqual(got, want) {
		t.Errorf("headerMap = %v, want %v", got, want)
	}
}

func TestSanitizeUTF8(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "é ok": "é ok", "a\xffb": "a!b", "\xe2\x82": "!!", "x\xc3\xa9\x80": "xé!"} {
		if got := sanitizeUTF8(in); got != want {
			t.Errorf("sanitizeUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProtocol(t *testing.T) {
	for in, want := range map[string]string{"": "HTTP/1.1", "HTTP/1.1": "HTTP/1.1", "HTTP/1.0": "HTTP/1.0", "HTTP/2.0": "HTTP/2", "HTTP/2": "HTTP/2", "HTTP/3": "HTTP/3"} {
		if got := protocol(in); got != want {
			t.Errorf("protocol(%q) = %q, want %q", in, got, want)
		}
	}
}

// Pseudo-headers and Host are never changed upstream, whatever the
// authorizer asks.
func TestApplyUpstreamProtectsHost(t *testing.T) {
	d := Decision{
		UpstreamHeaders: http.Header{"Host": {"evil"}, ":authority": {"evil"}, "X-A": {"1"}},
		UpstreamAppend:  http.Header{"host": {"evil"}, "X-B": {"2"}},
		UpstreamRemove:  []string{"host", ":path", "x-c"},
	}
	h := http.Header{"Host": {"good"}, "X-C": {"gone"}, "X-B": {"1"}}
	d.ApplyUpstream(h, nil)
	want := http.Header{"Host": {"good"}, "X-A": {"1"}, "X-B": {"1,2"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headers %v, want %v", h, want)
	}
}
