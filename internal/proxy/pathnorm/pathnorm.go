// Package pathnorm normalizes request paths as an Istio proxy does for the
// mesh config's pathNormalization (ir.PathNormalization). istiod turns the
// mode into Envoy HttpConnectionManager settings (pilot/pkg/networking/core,
// "Setup normalization"); every mode but DECODE_AND_MERGE_SLASHES uses
// path_with_escaped_slashes_action=KEEP_UNCHANGED.
package pathnorm

import (
	"errors"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// ErrInvalidPath is returned by Normalize for a path Envoy's normalization
// refuses (a NUL byte, literal or percent-encoded). Envoy answers such a
// request with 400 Bad Request (response code details
// "path_normalization_failed") before any filter or route sees it.
var ErrInvalidPath = errors.New("path cannot be normalized")

// Normalize returns path normalized the way an Istio proxy with mode n ("": BASE)
// does it (Envoy ConnectionManagerUtility::maybeNormalizePath), in this order:
//
//  1. DECODE_AND_MERGE_SLASHES: %2F and %2f become "/", %5C and %5c become
//     "\" (Envoy PathUtil::unescapeSlashes); nothing else is decoded here.
//  2. BASE and above: RFC 3986 canonicalization by Chromium's URL library as
//     Envoy uses it (PathUtil::canonicalPath): dot segments, also written
//     %2e/%2E, are resolved and cannot climb above the root; "\" is a
//     separator and becomes "/"; percent-encoded unreserved characters
//     (ALPHA, DIGIT, "-", "_", "~") are decoded; other valid escapes are kept
//     exactly as written (hex case included: %2f stays %2f); a "%" that does
//     not start a valid escape is kept; space, control characters, bytes >=
//     0x80 and " # < > ` { | } ^ are percent-encoded (upper-case hex); a
//     missing leading "/" is added. A NUL byte (raw or %00) is an error.
//     Before that, ";parameters" on "." and ".." segments are dropped
//     ("/a/..;x/b" is "/b", Envoy's strip_dotdot_segments_with_parameters).
//  3. MERGE_SLASHES and above: runs of "/" collapse to one (PathUtil::
//     mergeSlashes), keeping a leading and a trailing slash.
//
// path is the path as received, still percent-encoded: the origin-form
// request-target (use the raw request URI, not net/url's decoded Path). A
// "#fragment" is cut off in every mode, NONE included (Istio configures Envoy
// with http_reject_path_with_fragment=false, which strips it). If a "?"
// remains, the query is split off, left untouched and appended again, as
// Envoy does with :path. NONE returns the rest unchanged.
func Normalize(n ir.PathNormalization, path string) (string, error) {
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	if n == ir.NormalizeNone {
		return path, nil
	}
	p, query := path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		p, query = path[:i], path[i:]
	}
	if n == ir.NormalizeDecodeAndMergeSlashes && strings.IndexByte(p, '%') >= 0 {
		p = slashUnescaper.Replace(p)
	}
	p = stripDotSegmentParameters(p)
	p, ok := canonicalizePath(p)
	if !ok {
		return "", ErrInvalidPath
	}
	if n == ir.NormalizeMergeSlashes || n == ir.NormalizeDecodeAndMergeSlashes {
		p = mergeSlashes(p)
	}
	return p + query, nil
}

var slashUnescaper = strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`)

// stripDotSegmentParameters rewrites the segments "..;x" to ".." and ".;x" to
// "." so that canonicalization resolves them (Envoy PathUtil::
// stripParametersFromDotSegments).
func stripDotSegmentParameters(p string) string {
	if !strings.Contains(p, ".;") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, "..;"):
			segs[i] = ".."
		case strings.HasPrefix(s, ".;"):
			segs[i] = "."
		}
	}
	return strings.Join(segs, "/")
}

// mergeSlashes is Envoy's PathUtil::mergeSlashes on a path without query.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	if strings.HasPrefix(p, "/") {
		b.WriteByte('/')
	}
	first := true
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue
		}
		if !first {
			b.WriteByte('/')
		}
		first = false
		b.WriteString(s)
	}
	if strings.HasSuffix(p, "/") {
		b.WriteByte('/')
	}
	return b.String()
}

// Character classes of Chromium's path canonicalizer (url_canon_path.cc,
// kPathCharLookup, the table Envoy's URL library uses).
const (
	chPass     = 0 // copied as is, kept escaped when escaped
	chSpecial  = 1 // needs a look: ".", "\", "%"
	chEscape   = 2 | chSpecial
	chUnescape = 4 // copied as is, decoded when escaped
	chInvalid  = 8 | chSpecial
)

var pathCharClass = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case c == 0:
			t[c] = chInvalid
		case c < 0x20 || c >= 0x7f:
			t[c] = chEscape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = chUnescape
		}
	}
	for _, c := range "-_~" {
		t[c] = chUnescape
	}
	for _, c := range " \"#%<>?\\^`{|}" {
		t[c] = chEscape
	}
	t['.'] = chSpecial
	return t
}()

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeEscape reads a "%XX" escape at s[i]; ok is false when it is not one.
func decodeEscape(s string, i int) (v byte, ok bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

// dotLen is the length of a "." written literally (1) or as %2e/%2E (3) at
// s[i], 0 when there is none.
func dotLen(s string, i int) int {
	if s[i] == '.' {
		return 1
	}
	if s[i] == '%' && i+3 <= len(s) && s[i+1] == '2' && (s[i+2] == 'e' || s[i+2] == 'E') {
		return 3
	}
	return 0
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// canonicalizePath is Chromium's url::CanonicalizePath on a path alone, as
// Envoy calls it; ok is false when the path holds a NUL byte.
func canonicalizePath(s string) (string, bool) {
	if s == "" {
		return "/", true
	}
	out := make([]byte, 0, len(s)+8)
	if !isSlash(s[0]) {
		out = append(out, '/')
	}
	ok := true
	lastInvalidPercent := -4 // index in out of a "%" that began no valid escape
	for i := 0; i < len(s); i++ {
		c := s[i]
		class := pathCharClass[c]
		if class&chSpecial == 0 {
			out = append(out, c)
			continue
		}
		if n := dotLen(s, i); n > 0 {
			if len(out) == 0 || out[len(out)-1] != '/' {
				out = append(out, '.') // part of a name
				i += n - 1
				continue
			}
			switch kind, consumed := classifyAfterDot(s, i+n); kind {
			case notDirectory:
				out = append(out, '.')
				i += n - 1
			case currentDirectory:
				i += n + consumed - 1
			case parentDirectory:
				out = backUpToPreviousSlash(out)
				i += n + consumed - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			v, valid := decodeEscape(s, i)
			if !valid {
				lastInvalidPercent = len(out)
				out = append(out, '%')
				continue
			}
			i += 2
			vc := pathCharClass[v]
			if vc&chUnescape != 0 {
				out = append(out, v)
				if lastInvalidPercent >= len(out)-3 {
					out = fixNestedEscape(s, i+1, lastInvalidPercent, out)
				}
				continue
			}
			out = append(out, '%', s[i-1], s[i])
			if vc == chInvalid {
				ok = false
			}
		case class == chInvalid:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			ok = false
		default: // chEscape
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return string(out), ok
}

type dotKind int

const (
	notDirectory dotKind = iota
	currentDirectory
	parentDirectory
)

// classifyAfterDot looks at what follows a dot that starts a segment;
// consumed is how many input bytes after that dot belong to it.
func classifyAfterDot(s string, after int) (dotKind, int) {
	if after == len(s) {
		return currentDirectory, 0
	}
	if isSlash(s[after]) {
		return currentDirectory, 1
	}
	if n := dotLen(s, after); n > 0 {
		next := after + n
		if next == len(s) {
			return parentDirectory, n
		}
		if isSlash(s[next]) {
			return parentDirectory, n + 1
		}
	}
	return notDirectory, 0
}

// backUpToPreviousSlash drops the last segment of out, which ends with "/",
// never going above the first slash.
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for i > 0 && out[i] != '/' {
		i--
	}
	return out[:i+1]
}

// fixNestedEscape is Chromium's CheckForNestedEscapes: an invalid "%" followed
// by characters that were just decoded must not turn into a valid escape
// ("%%30%30" must not become "%00"); such a "%" is rewritten "%25".
func fixNestedEscape(s string, next, pct int, out []byte) []byte {
	n := len(out)
	last := out[n-1]
	appendNext := pct == n-2
	if appendNext {
		if next == len(s) || s[next] >= 0x80 {
			return out
		}
		out = append(out, s[next])
	}
	if _, valid := decodeEscape(string(out), pct); valid {
		if !appendNext {
			out = append(out, out[pct+1])
		}
		out[pct+1], out[pct+2] = '2', '5'
		return append(out, last)
	}
	if appendNext {
		out = out[:n]
	}
	return out
}
