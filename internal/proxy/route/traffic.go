package route

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/ratelimit"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/rls"
)

// Traffic is a compiled ir.TrafficPolicy (kgateway's TrafficPolicy, merged).
type Traffic struct {
	IR *ir.TrafficPolicy
	// Limit is the local rate limit's bucket, nil without one.
	Limit *ratelimit.Bucket
	// CORS is the policy's CORS, for traffic no route entry takes (an
	// entry's policy CORS is folded into the entry's own by the
	// translator).
	CORS *CORS
	// CSRF is the compiled CSRF policy, nil without one.
	CSRF *CSRF
	// Global is the global rate limit's descriptor, nil without one.
	Global *rls.Descriptor
}

// CompileTraffic compiles p (nil stays nil), taking its bucket from limits.
func CompileTraffic(p *ir.TrafficPolicy, limits *ratelimit.Registry) (*Traffic, error) {
	if p == nil {
		return nil, nil
	}
	t := &Traffic{IR: p, CORS: CompileCORS(p.CORS)}
	if p.LocalRateLimit != nil {
		t.Limit = limits.Get(*p.LocalRateLimit)
	}
	if p.GlobalRateLimit != nil {
		d, err := rls.Compile(p.GlobalRateLimit)
		if err != nil {
			return nil, err
		}
		t.Global = d
	}
	if p.CSRF != nil {
		c, err := compileCSRF(p.CSRF)
		if err != nil {
			return nil, err
		}
		t.CSRF = c
	}
	return t, nil
}

// CSRF is Envoy's CSRF filter, compiled.
type CSRF struct {
	enabled, shadow uint32
	origins         []stringMatcher
}

type stringMatcher struct {
	m  ir.StringMatch // Exact/Prefix/Suffix/Contains lower-cased when IgnoreCase
	re *regexp.Regexp
}

func compileCSRF(c *ir.CSRF) (*CSRF, error) {
	out := &CSRF{enabled: c.EnabledPercent, shadow: c.ShadowPercent}
	for _, m := range c.AdditionalOrigins {
		sm := stringMatcher{m: m}
		if m.Regex != "" {
			re, err := compileFull(m.Regex)
			if err != nil {
				return nil, fmt.Errorf("csrf additional origin regex %q: %w", m.Regex, err)
			}
			sm.re = re
		} else if m.IgnoreCase {
			sm.m.Exact, sm.m.Prefix = strings.ToLower(m.Exact), strings.ToLower(m.Prefix)
			sm.m.Suffix, sm.m.Contains = strings.ToLower(m.Suffix), strings.ToLower(m.Contains)
		}
		out.origins = append(out.origins, sm)
	}
	return out, nil
}

func (m *stringMatcher) match(s string) bool {
	if m.re != nil {
		return m.re.MatchString(s)
	}
	if m.m.IgnoreCase {
		s = strings.ToLower(s)
	}
	switch {
	case m.m.Exact != "":
		return s == m.m.Exact
	case m.m.Prefix != "":
		return strings.HasPrefix(s, m.m.Prefix)
	case m.m.Suffix != "":
		return strings.HasSuffix(s, m.m.Suffix)
	case m.m.Contains != "":
		return strings.Contains(s, m.m.Contains)
	}
	return false
}

// CSRF verdicts.
const (
	CSRFAllowed  = iota // not checked, or the origin is allowed
	CSRFDenied          // refuse: 403 "Invalid origin"
	CSRFShadowed        // invalid, but only shadowed: let through, count
)

// Check applies the policy to a request as Envoy's CSRF filter does. roll
// is a random number in [0, 100) drawn for the request (the runtime
// fractions of filter_enabled and shadow_enabled).
func (c *CSRF) Check(r *http.Request, roll uint32) int {
	enabled, shadow := roll < c.enabled, roll < c.shadow
	if !enabled && !shadow {
		return CSRFAllowed
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
	default:
		return CSRFAllowed
	}
	source := sourceOrigin(r)
	if source != "" && c.valid(source, r.Host) {
		return CSRFAllowed
	}
	if enabled {
		return CSRFDenied
	}
	return CSRFShadowed
}

func (c *CSRF) valid(source, host string) bool {
	if source == host {
		return true
	}
	for i := range c.origins {
		if c.origins[i].match(source) {
			return true
		}
	}
	return false
}

// sourceOrigin is the host and port of the Origin header, else of the
// Referer (Envoy's hostAndPort: an absolute URL's authority, else the
// value as it is).
func sourceOrigin(r *http.Request) string {
	v := r.Header.Get("Origin")
	if v == "" {
		v = r.Header.Get("Referer")
	}
	if v == "" {
		return ""
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Host
	}
	return v
}
