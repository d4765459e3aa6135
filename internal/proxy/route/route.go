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
)

// Table is the compiled route table of one service port.
type Table struct {
	rules []*Rule
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
func Compile(entries []*ir.HTTPRouteRule) (*Table, error) {
	t := &Table{rules: make([]*Rule, 0, len(entries))}
	for i, e := range entries {
		r, err := compileRule(e)
		if err != nil {
			return nil, fmt.Errorf("route %s rule %d match %d (entry %d): %w", e.Route, e.RuleIndex, e.MatchIndex, i, err)
		}
		t.rules = append(t.rules, r)
	}
	return t, nil
}

func compileRule(e *ir.HTTPRouteRule) (*Rule, error) {
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
	return r, nil
}

// Len is the number of entries in the table.
func (t *Table) Len() int { return len(t.rules) }

// Match returns the first rule that matches the request, or nil.
func (t *Table) Match(req *http.Request) *Rule {
	for _, r := range t.rules {
		if r.matches(req) {
			return r
		}
	}
	return nil
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

// PickBackend chooses a backend by weight for a random number n. It returns
// ok=false when every weight is zero or the rule has no backends (the
// request then gets a 500). An empty key with ok=true is a reference that
// could not be resolved (also a 500).
func (r *Rule) PickBackend(n uint32) (key string, ok bool) {
	if r.total == 0 {
		return "", false
	}
	x := n % r.total
	for i, c := range r.cumulative {
		if x < c {
			return r.IR.Backends[i].Backend, true
		}
	}
	return "", false
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
