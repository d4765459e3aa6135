package proxy

import "strings"

// normalizePath removes "." and ".." segments as RFC 3986 section 5.2.4
// says (Istio's default BASE path normalization), so that "/admin/../x"
// is matched, authorized and forwarded as "/x". Repeated slashes are kept.
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, ".") {
		return p // fast path: no dot, no dot segment
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}
