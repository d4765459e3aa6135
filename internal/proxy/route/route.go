// Package route matches HTTP requests against a service port's route table.
// Tables are compiled once per configuration (regular expressions compiled,
// header names canonicalised, weights accumulated); matching a request
// parses nothing and allocates nothing.
package route

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/ratelimit"
)

// Table is the compiled route table of one service port: the producer
// routes, which apply to every client, and the consumer routes of each
// client namespace, which replace them for that namespace's clients.
type Table struct {
	rules    []*Rule
	consumer map[string][]*Rule
}

// Rule is one compiled route entry.
type Rule struct {
	// IR is the entry this rule was compiled from.
	IR *ir.HTTPRouteRule

	path    pathMatcher
	method  string
	headers []headerMatcher
	queries []queryMatcher

	// cumulative weights of IR.Backends; total 0 means no backend can be chosen.
	cumulative []uint32
	total      uint32

	// CORS is the compiled CORS filter, nil when the rule has none.
	CORS *CORS
	// Traffic is the entry's compiled TrafficPolicy, nil without one.
	Traffic *Traffic
}

type pathMatcher struct {
	typ   ir.MatchType // "" matches every path
	value string
	re    *regexp.Regexp
}

type headerMatcher struct {
	name  string // canonical MIME header key
	value string
	re    *regexp.Regexp
}

type queryMatcher struct {
	name  string
	value string
	re    *regexp.Regexp
}

// Compile builds a table from route entries that are already in precedence
// order. An entry that cannot be compiled is an error: the translator
// validates matches, so this only happens with a corrupt config.
func Compile(entries []*ir.HTTPRouteRule) (*Table, error) { return CompileWith(entries, nil) }

// CompileWith is Compile with the rate limit buckets of the entries'
// TrafficPolicies taken from limits (nil: new buckets of their own).
func CompileWith(entries []*ir.HTTPRouteRule, limits *ratelimit.Registry) (*Table, error) {
	t := &Table{rules: make([]*Rule, 0, len(entries))}
	for i, e := range entries {
		r, err := compileRule(e, limits)
		if err != nil {
			return nil, fmt.Errorf("route %s rule %d match %d (entry %d): %w", e.Route, e.RuleIndex, e.MatchIndex, i, err)
		}
		if e.ClientNamespace != "" {
			if t.consumer == nil {
				t.consumer = map[string][]*Rule{}
			}
			t.consumer[e.ClientNamespace] = append(t.consumer[e.ClientNamespace], r)
			continue
		}
		t.rules = append(t.rules, r)
	}
	return t, nil
}

func compileRule(e *ir.HTTPRouteRule, limits *ratelimit.Registry) (*Rule, error) {
	r := &Rule{IR: e, method: e.Match.Method}
	if p := e.Match.Path; p != nil {
		r.path = pathMatcher{typ: p.Type, value: p.Value}
		switch p.Type {
		case ir.MatchExact:
		case ir.MatchPathPrefix:
			// "/foo/" and "/foo" both match "/foo" and "/foo/bar": compare
			// without the trailing slash, then require an element boundary.
			if len(p.Value) > 1 {
				r.path.value = strings.TrimRight(p.Value, "/")
				if r.path.value == "" {
					r.path.value = "/"
				}
			}
		case ir.MatchRegularExpression:
			re, err := compileFull(p.Value)
			if err != nil {
				return nil, err
			}
			r.path.re = re
		default:
			return nil, fmt.Errorf("unknown path match type %q", p.Type)
		}
	}
	for _, h := range e.Match.Headers {
		m := headerMatcher{name: http.CanonicalHeaderKey(h.Name), value: h.Value}
		if h.Type == ir.MatchRegularExpression {
			re, err := compileFull(h.Value)
			if err != nil {
				return nil, err
			}
			m.re = re
		}
		r.headers = append(r.headers, m)
	}
	for _, q := range e.Match.QueryParams {
		m := queryMatcher{name: q.Name, value: q.Value}
		if q.Type == ir.MatchRegularExpression {
			re, err := compileFull(q.Value)
			if err != nil {
				return nil, err
			}
			m.re = re
		}
		r.queries = append(r.queries, m)
	}
	for _, b := range e.Backends {
		r.total += b.Weight
		r.cumulative = append(r.cumulative, r.total)
	}
	r.CORS = CompileCORS(e.CORS)
	tr, err := CompileTraffic(e.Traffic, limits)
	if err != nil {
		return nil, err
	}
	r.Traffic = tr
	return r, nil
}

// Len is the number of producer entries in the table.
func (t *Table) Len() int { return len(t.rules) }

// Match returns the first rule that matches a request from a client of
// namespace clientNS. When that namespace has consumer routes for this
// service, only they are considered (GAMMA consumer routes). routed is
// false when no route applies to this client at all: the request then
// goes to the service itself; a nil rule with routed true is a 404.
func (t *Table) Match(req *http.Request, clientNS string) (rule *Rule, routed bool) {
	rules := t.rules
	if t.consumer != nil {
		if c, ok := t.consumer[clientNS]; ok {
			rules = c
		}
	}
	for _, r := range rules {
		if r.matches(req) {
			return r, true
		}
	}
	return nil, len(rules) > 0
}

func (r *Rule) matches(req *http.Request) bool {
	if r.method != "" && req.Method != r.method {
		return false
	}
	if !r.path.matches(req.URL.Path) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].matches(req.Header) {
			return false
		}
	}
	if len(r.queries) > 0 {
		for i := range r.queries {
			if !r.queries[i].matches(req.URL.RawQuery) {
				return false
			}
		}
	}
	return true
}

func (m *pathMatcher) matches(path string) bool {
	switch m.typ {
	case "":
		return true
	case ir.MatchExact:
		return path == m.value
	case ir.MatchPathPrefix:
		if m.value == "/" {
			return true
		}
		if !strings.HasPrefix(path, m.value) {
			return false
		}
		// Prefix matching is per path element: "/v2" matches "/v2" and
		// "/v2/x" but not "/v2example".
		return len(path) == len(m.value) || path[len(m.value)] == '/'
	case ir.MatchRegularExpression:
		return m.re.MatchString(path)
	}
	return false
}

func (m *headerMatcher) matches(h http.Header) bool {
	vals := h[m.name]
	if len(vals) == 0 {
		return false
	}
	// Several values of one header are matched as one comma-joined value,
	// as Envoy does; the common single-value case does not allocate.
	v := vals[0]
	if len(vals) > 1 {
		v = strings.Join(vals, ",")
	}
	if m.re != nil {
		return m.re.MatchString(v)
	}
	return v == m.value
}

// matches finds the parameter in the raw query without building a map. The
// first occurrence of the name decides, as Envoy does.
func (m *queryMatcher) matches(rawQuery string) bool {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
		}
		if k != m.name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if dv, err := url.QueryUnescape(v); err == nil {
				v = dv
			}
		}
		if m.re != nil {
			return m.re.MatchString(v)
		}
		return v == m.value
	}
	return false
}

// PickBackend chooses a backendRef by weight for a random number n. It
// returns nil when every weight is zero or the rule has no backends (the
// request then gets a 500). A backendRef with an empty Backend is a
// reference that could not be resolved (also a 500).
func (r *Rule) PickBackend(n uint32) *ir.WeightedBackend {
	if r.total == 0 {
		return nil
	}
	x := n % r.total
	for i, c := range r.cumulative {
		if x < c {
			return &r.IR.Backends[i]
		}
	}
	return nil
}

// PickWeighted is PickBackend over any list of weighted backends (TCPRoute
// backends); nil when no weight is positive.
func PickWeighted(list []ir.WeightedBackend, n uint32) *ir.WeightedBackend {
	var total uint32
	for _, b := range list {
		total += b.Weight
	}
	if total == 0 {
		return nil
	}
	x := n % total
	for i := range list {
		if x < list[i].Weight {
			return &list[i]
		}
		x -= list[i].Weight
	}
	return nil
}

// MatchedPrefix is the path prefix the rule matched on, as
// ReplacePrefixMatch rewrites it ("/" when the rule has no path match).
func (r *Rule) MatchedPrefix() string {
	if r.path.typ == ir.MatchPathPrefix {
		return r.path.value
	}
	return "/"
}

// ReplacePrefix replaces the matched prefix of path with repl, as the
// Gateway API's ReplacePrefixMatch does: "/foo" → "/xyz" turns "/foo/bar"
// into "/xyz/bar", and "/foo" → "/" turns "/foo/bar" into "/bar".
func ReplacePrefix(path, prefix, repl string) string {
	rest := path
	if prefix != "/" {
		rest = path[min(len(prefix), len(path)):]
	}
	out := strings.TrimSuffix(repl, "/") + rest
	if out == "" {
		return "/"
	}
	if out[0] != '/' {
		out = "/" + out
	}
	return out
}

// RewritePath applies a path modifier to path for this rule.
func (r *Rule) RewritePath(path string, m *ir.PathModifier) string {
	if m == nil {
		return path
	}
	if m.Type == ir.ReplaceFullPath {
		return m.Value
	}
	return ReplacePrefix(path, r.MatchedPrefix(), m.Value)
}

// ApplyHeaders applies a header modifier to h: remove, then set, then add.
func ApplyHeaders(h http.Header, m *ir.HeaderModifier) {
	if m == nil {
		return
	}
	for _, name := range m.Remove {
		h.Del(name)
	}
	for _, s := range m.Set {
		h.Set(s.Name, s.Value)
	}
	for _, a := range m.Add {
		h.Add(a.Name, a.Value)
	}
}

// compileFull compiles a regular expression that must match the whole value,
// as Envoy's safe_regex matchers do.
func compileFull(expr string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + expr + ")$")
}
