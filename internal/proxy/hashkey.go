package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/upstream"
)

// hashKey is the consistent-hash key of a request for a backend that
// hashes (ir.ConsistentHash), as Envoy's route hash policies compute it:
// the header's first value, the cookie's value (without its quotes), the
// client's IP, or the query parameter's first value (as sent, not
// decoded). ok is false when the request has no key (the pick is then
// random). With a cookie policy that generates (a ttl), a request without
// the cookie gets one made up from the client's and the waypoint's
// addresses (as Envoy makes it: the same per connection), hashed as if the
// client had sent it, and setCookie is the Set-Cookie for the response.
func hashKey(x *exchange, ch *ir.ConsistentHash) (key uint64, ok bool, setCookie string) {
	r := x.r
	switch {
	case ch.Header != "":
		if v := r.Header[http.CanonicalHeaderKey(ch.Header)]; len(v) > 0 {
			return upstream.HashKey(v[0]), true, ""
		}
	case ch.Cookie != nil:
		if v, found := cookieValue(r.Header["Cookie"], ch.Cookie.Name); found {
			return upstream.HashKey(v), true, ""
		}
		if ch.Cookie.Generate {
			v := strconv.FormatUint(upstream.HashKey(x.info.Source.String()+x.info.Destination.String()), 16)
			return upstream.HashKey(v), true, makeSetCookie(ch.Cookie, v)
		}
	case ch.SourceIP:
		if a := x.info.Source.Addr(); a.IsValid() {
			b := a.As16()
			return upstream.HashBytes(b[:]), true, ""
		}
	case ch.QueryParameter != "":
		if v, found := queryValue(r.URL.RawQuery, ch.QueryParameter); found {
			return upstream.HashKey(v), true, ""
		}
	}
	return 0, false, ""
}

// cookieValue finds a cookie in Cookie header lines ("a=1; b=2"),
// without allocating; a value in double quotes loses them (RFC 6265).
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			k, v, found := strings.Cut(part, "=")
			if !found || k != name {
				continue
			}
			v = strings.TrimRight(v, " \t")
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// queryValue finds a query parameter's first value in a raw query.
func queryValue(q, name string) (string, bool) {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// makeSetCookie is the Set-Cookie of a generated hash cookie, as Envoy
// writes it: name="value"; Max-Age=ttl (not for a session cookie);
// Path=path; the attributes; HttpOnly.
func makeSetCookie(c *ir.HashCookie, value string) string {
	var b strings.Builder
	b.WriteString(c.Name)
	b.WriteString(`="`)
	b.WriteString(value)
	b.WriteByte('"')
	if c.TTLSeconds > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(c.TTLSeconds, 10))
	}
	if c.Path != "" {
		b.WriteString("; Path=")
		b.WriteString(c.Path)
	}
	for _, a := range c.Attributes {
		b.WriteString("; ")
		b.WriteString(a.Name)
		if a.Value != "" {
			b.WriteByte('=')
			b.WriteString(a.Value)
		}
	}
	b.WriteString("; HttpOnly")
	return b.String()
}
