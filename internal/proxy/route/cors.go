package route

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// CORS is a compiled Gateway API CORS filter.
type CORS struct {
	anyOrigin   bool
	origins     map[string]bool // exact origins, lower case
	wildcards   []originWildcard
	credentials bool
	methods     string // joined response values
	headers     string
	expose      string
	maxAge      string
}

// originWildcard is "scheme://*.suffix": any subdomain of suffix.
type originWildcard struct{ scheme, suffix string }

// CompileCORS compiles the filter; nil stays nil.
func CompileCORS(c *ir.CORS) *CORS {
	if c == nil {
		return nil
	}
	out := &CORS{origins: map[string]bool{}, credentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		o = strings.ToLower(o)
		switch {
		case o == "*":
			out.anyOrigin = true
		case strings.Contains(o, "://*."):
			scheme, rest, _ := strings.Cut(o, "://*")
			out.wildcards = append(out.wildcards, originWildcard{scheme: scheme, suffix: rest})
		default:
			out.origins[o] = true
		}
	}
	out.methods = strings.Join(c.AllowMethods, ", ")
	out.headers = strings.Join(c.AllowHeaders, ", ")
	out.expose = strings.Join(c.ExposeHeaders, ", ")
	if c.MaxAge > 0 {
		out.maxAge = strconv.Itoa(int(c.MaxAge))
	}
	return out
}

func (c *CORS) allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if c.anyOrigin {
		return true
	}
	o := strings.ToLower(origin)
	if c.origins[o] {
		return true
	}
	for _, w := range c.wildcards {
		if rest, ok := strings.CutPrefix(o, w.scheme+"://"); ok && strings.HasSuffix(rest, w.suffix) && len(rest) > len(w.suffix) {
			return true
		}
	}
	return false
}

// IsPreflight reports a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// allowOrigin is the Access-Control-Allow-Origin value for origin.
func (c *CORS) allowOrigin(origin string) string {
	if c.anyOrigin && !c.credentials {
		return "*"
	}
	return origin
}

// Preflight writes the preflight answer headers into h; it reports whether
// the origin is allowed (when not, the preflight gets no CORS headers and
// the browser refuses the real request).
func (c *CORS) Preflight(r *http.Request, h http.Header) bool {
	origin := r.Header.Get("Origin")
	if !c.allowed(origin) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", c.allowOrigin(origin))
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.methods != "" {
		h.Set("Access-Control-Allow-Methods", c.methods)
	}
	if c.headers != "" {
		h.Set("Access-Control-Allow-Headers", c.headers)
	}
	if c.maxAge != "" {
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	h.Add("Vary", "Origin")
	return true
}

// Decorate adds the CORS response headers for an actual request.
func (c *CORS) Decorate(r *http.Request, h http.Header) {
	origin := r.Header.Get("Origin")
	if !c.allowed(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", c.allowOrigin(origin))
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
	h.Add("Vary", "Origin")
}
