package inbound

import (
	"net/url"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/httpwire"
)

// registeredMethods are the methods the waypoint accepts unless custom
// methods are allowed: the ones Envoy's HTTP/1 codec knows (RFC 9110,
// WebDAV, the IANA registry's common entries). Methods are case-sensitive
// (RFC 9110 9.1): "delete" is not DELETE, and a policy on DELETE must not
// be dodged by a backend that folds case, so it is refused.
var registeredMethods = map[string]struct{}{}

func init() {
	for _, m := range strings.Fields(`GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH
		ACL BASELINE-CONTROL BIND CHECKIN CHECKOUT COPY LABEL LINK LOCK MERGE MKACTIVITY
		MKCALENDAR MKCOL MKREDIRECTREF MKWORKSPACE MOVE ORDERPATCH PROPFIND PROPPATCH
		PURGE REBIND REPORT SEARCH UNBIND UNCHECKOUT UNLINK UNLOCK UPDATE
		UPDATEREDIRECTREF VERSION-CONTROL M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE SOURCE`) {
		registeredMethods[m] = struct{}{}
	}
}

// MethodAllowed reports whether a request method is served: a registered
// method, or any token when custom methods are allowed.
func MethodAllowed(method string, allowCustom bool) bool {
	if _, ok := registeredMethods[method]; ok {
		return true
	}
	return allowCustom && validToken(method)
}

// targetForm is one of the four request-target forms of RFC 9112 3.2.
type targetForm int

const (
	originForm    targetForm = iota // "/path?query"
	absoluteForm                    // "http://host/path?query"
	authorityForm                   // "host:port" (CONNECT only)
	asteriskForm                    // "*" (OPTIONS only)
)

// parseTarget classifies a request target by its form, as RFC 9112 3.2
// defines them, and returns its URL and its origin-form ("/path?query",
// or "*"): what the waypoint matches, normalizes and forwards. A target
// is origin-form exactly when it starts with "/", so "/a?r=http://b/c" is
// a path with a query, never an absolute URI. Fragments are refused (a
// client never sends one; Envoy answers 400 too).
func parseTarget(method, target string) (*url.URL, string, targetForm, error) {
	if strings.IndexByte(target, '#') >= 0 {
		return nil, "", 0, badRequest("fragment in request target")
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return nil, "", 0, badRequest("invalid character in request target")
		}
	}
	switch {
	case target == "*":
		if method != "OPTIONS" {
			return nil, "", 0, badRequest("asterisk-form is only valid for OPTIONS")
		}
		return &url.URL{Path: "*"}, "*", asteriskForm, nil
	case target[0] == '/':
		u, err := parseOrigin(target)
		if err != nil {
			return nil, "", 0, err
		}
		return u, target, originForm, nil
	case hasScheme(target):
		u, err := url.Parse(target)
		if err != nil || u.Opaque != "" || u.Host == "" || u.User != nil {
			return nil, "", 0, badRequest("malformed absolute-form request target")
		}
		if !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https") {
			return nil, "", 0, badRequest("request target scheme is not http or https")
		}
		if !validAuthority(u.Host) {
			return nil, "", 0, badRequest("invalid host in request target")
		}
		// The origin-form part: the path from the first "/" after the
		// authority, "/" when there is none.
		rest := target[len(u.Scheme)+3:]
		origin := "/"
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			origin = rest[i:]
			if origin[0] == '?' {
				origin = "/" + origin
			}
		}
		ou, err := parseOrigin(origin)
		if err != nil {
			return nil, "", 0, err
		}
		ou.Scheme, ou.Host = strings.ToLower(u.Scheme), u.Host
		return ou, origin, absoluteForm, nil
	default:
		// authority-form (CONNECT) or garbage: neither is served here.
		return nil, "", authorityForm, badRequest("malformed request target")
	}
}

// parseOrigin parses an origin-form target ("/path?query").
func parseOrigin(target string) (*url.URL, error) {
	path, query, _ := strings.Cut(target, "?")
	u := &url.URL{RawQuery: query}
	p, err := url.PathUnescape(path)
	if err != nil {
		return nil, badRequest("malformed percent-encoding in request path")
	}
	u.Path = p
	if p != path {
		u.RawPath = path
	}
	return u, nil
}

// hasScheme reports whether s starts with "scheme://" (RFC 3986 3.1:
// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
func hasScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return strings.HasPrefix(s[i:], "://")
		default:
			return false
		}
	}
	return false
}

// validAuthority reports whether a Host header or :authority is
// uri-host [":" port] (RFC 3986 3.2): an IP-literal in brackets or a
// reg-name of unreserved, percent-encoded and sub-delim characters, then
// an optional port of digits. Userinfo is not allowed (RFC 9110 4.2.1).
func validAuthority(h string) bool {
	if h == "" {
		return false
	}
	host, port := h, ""
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, port = h[1:end], h[end+1:]
		if host == "" {
			return false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !isHex(c) && c != ':' && !isUnreserved(c) && !isSubDelim(c) {
				return false
			}
		}
		if port != "" && port[0] != ':' {
			return false
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i:]
	}
	if port != "" {
		port = port[1:]
		if len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	if h[0] == '[' {
		return true
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case isUnreserved(c), isSubDelim(c):
		case c == '%':
			if i+2 >= len(host) || !isHex(host[i+1]) || !isHex(host[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool { return strings.IndexByte("!$&'()*+,;=", c) >= 0 }

// ValidHeaderValue reports an RFC 9110 field value (httpwire.ValidFieldValue).
func ValidHeaderValue(v string) bool { return httpwire.ValidFieldValue(v) }

// HasToken reports whether a comma-separated header value list holds the
// token (case-insensitive), as Connection and Upgrade are read.
func HasToken(values []string, token string) bool { return httpwire.HasToken(values, token) }

func hasToken(values []string, token string) bool { return httpwire.HasToken(values, token) }

func validToken(s string) bool { return httpwire.ValidToken(s) }
