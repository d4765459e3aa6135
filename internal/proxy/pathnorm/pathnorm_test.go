package pathnorm

import (
	"errors"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Expected values follow Envoy's behaviour: test/common/http/path_utility_test.cc
// (NormalizeValidPaths, NormalizeCasePath, InvalidPaths, MergeSlashes,
// UnescapeSlashes) and the order of ConnectionManagerUtility::maybeNormalizePath.
func TestNormalize(t *testing.T) {
	const bad = "\x00invalid" // marker: ErrInvalidPath expected
	type want struct{ none, base, merge, decode string }
	cases := []struct {
		in string
		want
	}{
		// The brief's cases.
		{"/admin/../x", want{"/admin/../x", "/x", "/x", "/x"}},
		{"//admin", want{"//admin", "//admin", "/admin", "/admin"}},
		{"/%2e%2e/admin", want{"/%2e%2e/admin", "/admin", "/admin", "/admin"}},
		{"/a%2Fb", want{"/a%2Fb", "/a%2Fb", "/a%2Fb", "/a/b"}},
		{"/a%5Cb", want{"/a%5Cb", "/a%5Cb", "/a%5Cb", "/a/b"}},
		{"/a%2fb", want{"/a%2fb", "/a%2fb", "/a%2fb", "/a/b"}},
		{"/a%5cb", want{"/a%5cb", "/a%5cb", "/a%5cb", "/a/b"}},
		// Decoded slashes take part in dot segments and merging only in
		// DECODE_AND_MERGE_SLASHES.
		{"/public%2F..%2Fadmin", want{"/public%2F..%2Fadmin", "/public%2F..%2Fadmin", "/public%2F..%2Fadmin", "/admin"}},
		{"/public%5C..%5Cadmin", want{"/public%5C..%5Cadmin", "/public%5C..%5Cadmin", "/public%5C..%5Cadmin", "/admin"}},
		{"/a%2F%2Fb", want{"/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a/b"}},
		// Envoy NormalizeValidPaths.
		{"/a/b/../c", want{"/a/b/../c", "/a/c", "/a/c", "/a/c"}},
		{"/a/b/./c", want{"/a/b/./c", "/a/b/c", "/a/b/c", "/a/b/c"}},
		{"a/b/../c", want{"a/b/../c", "/a/c", "/a/c", "/a/c"}},
		{"/a/b/../../../../c", want{"/a/b/../../../../c", "/c", "/c", "/c"}},
		{`/a/..\c`, want{`/a/..\c`, "/c", "/c", "/c"}},
		{"/%c0%af", want{"/%c0%af", "/%c0%af", "/%c0%af", "/%c0%af"}},
		{"/%5c%25", want{"/%5c%25", "/%5c%25", "/%5c%25", "/%25"}},
		{"/a/b/%2E%2E/c", want{"/a/b/%2E%2E/c", "/a/c", "/a/c", "/a/c"}},
		{"/a/b/%2E./c", want{"/a/b/%2E./c", "/a/c", "/a/c", "/a/c"}},
		{"/a/b/%2E/c", want{"/a/b/%2E/c", "/a/b/c", "/a/b/c", "/a/b/c"}},
		{"..", want{"..", "/", "/", "/"}},
		{"/../a/b", want{"/../a/b", "/a/b", "/a/b", "/a/b"}},
		{"/./a/b", want{"/./a/b", "/a/b", "/a/b", "/a/b"}},
		{"/xyz/..;foo=bar/abc", want{"/xyz/..;foo=bar/abc", "/abc", "/abc", "/abc"}},
		{"/xyz/.;foo=bar", want{"/xyz/.;foo=bar", "/xyz/", "/xyz/", "/xyz/"}},
		{"/.;aaa/..;foo=bar/abc/.;mmm", want{"/.;aaa/..;foo=bar/abc/.;mmm", "/abc/", "/abc/", "/abc/"}},
		{"/xyz/..;foo=bar/.;fff=zzz?blah=woops", want{"/xyz/..;foo=bar/.;fff=zzz?blah=woops", "/?blah=woops", "/?blah=woops", "/?blah=woops"}},
		{"/xyz/..foo", want{"/xyz/..foo", "/xyz/..foo", "/xyz/..foo", "/xyz/..foo"}},
		// Envoy NormalizeCasePath: no case folding, kept escapes keep their case.
		{"/A/B/C", want{"/A/B/C", "/A/B/C", "/A/B/C", "/A/B/C"}},
		{"/a/b/%2e%2e/c", want{"/a/b/%2e%2e/c", "/a/c", "/a/c", "/a/c"}},
		{"/a/%2F%2f/c", want{"/a/%2F%2f/c", "/a/%2F%2f/c", "/a/%2F%2f/c", "/a/c"}},
		// Envoy InvalidPaths: a NUL, raw or escaped, cannot be normalized.
		{"/xyz/.%00../abc", want{"/xyz/.%00../abc", bad, bad, bad}},
		{"/xyz/%00.%00./abc", want{"/xyz/%00.%00./abc", bad, bad, bad}},
		{"/xyz/AAAAA%%0000/abc", want{"/xyz/AAAAA%%0000/abc", bad, bad, bad}},
		{"/a\x00b", want{"/a\x00b", bad, bad, bad}},
		// Envoy MergeSlashes.
		{"/a//b/c", want{"/a//b/c", "/a//b/c", "/a/b/c", "/a/b/c"}},
		{"/a/b/c//", want{"/a/b/c//", "/a/b/c//", "/a/b/c/", "/a/b/c/"}},
		{"/a////b/c", want{"/a////b/c", "/a////b/c", "/a/b/c", "/a/b/c"}},
		{"/a//b?a=///c", want{"/a//b?a=///c", "/a//b?a=///c", "/a/b?a=///c", "/a/b?a=///c"}},
		{"//a/?b", want{"//a/?b", "//a/?b", "/a/?b", "/a/?b"}},
		{"//", want{"//", "//", "//", "//"}}, // Envoy's merge keeps "/" + "" + "/"
		// Unreserved characters are decoded, other escapes are kept, unsafe
		// characters are encoded with upper-case hex.
		{"/%41%7a%30%2D%5F%7E", want{"/%41%7a%30%2D%5F%7E", "/Az0-_~", "/Az0-_~", "/Az0-_~"}},
		{"/%61dmin", want{"/%61dmin", "/admin", "/admin", "/admin"}},
		{"/%3A%40%21%25", want{"/%3A%40%21%25", "/%3A%40%21%25", "/%3A%40%21%25", "/%3A%40%21%25"}},
		{"/a b\"<>`{|}^\x7f\xc3\xa9", want{"/a b\"<>`{|}^\x7f\xc3\xa9", "/a%20b%22%3C%3E%60%7B%7C%7D%5E%7F%C3%A9", "/a%20b%22%3C%3E%60%7B%7C%7D%5E%7F%C3%A9", "/a%20b%22%3C%3E%60%7B%7C%7D%5E%7F%C3%A9"}},
		{"/a%zz%4", want{"/a%zz%4", "/a%zz%4", "/a%zz%4", "/a%zz%4"}},
		{"/a.b/c./.d/...", want{"/a.b/c./.d/...", "/a.b/c./.d/...", "/a.b/c./.d/...", "/a.b/c./.d/..."}},
		{"/a/.", want{"/a/.", "/a/", "/a/", "/a/"}},
		{"/a/..", want{"/a/..", "/", "/", "/"}},
		// Nested escapes (Chromium CheckForNestedEscapes): "%%30%30" must not
		// become the valid escape "%00".
		{"/%%30%30", want{"/%%30%30", "/%2500", "/%2500", "/%2500"}},
		{"/%%300", want{"/%%300", "/%2500", "/%2500", "/%2500"}},
		// The query is left alone; a fragment is stripped in every mode.
		{"/a/../b?x=/../y&z=%2e", want{"/a/../b?x=/../y&z=%2e", "/b?x=/../y&z=%2e", "/b?x=/../y&z=%2e", "/b?x=/../y&z=%2e"}},
		{"/a%2Fb?q=%2F", want{"/a%2Fb?q=%2F", "/a%2Fb?q=%2F", "/a%2Fb?q=%2F", "/a/b?q=%2F"}},
		{"/a/../b#/../c", want{"/a/../b", "/b", "/b", "/b"}},
		{"", want{"", "/", "/", "/"}},
	}
	modes := []struct {
		mode ir.PathNormalization
		get  func(want) string
	}{
		{ir.NormalizeNone, func(w want) string { return w.none }},
		{ir.NormalizeBase, func(w want) string { return w.base }},
		{ir.NormalizeMergeSlashes, func(w want) string { return w.merge }},
		{ir.NormalizeDecodeAndMergeSlashes, func(w want) string { return w.decode }},
	}
	for _, c := range cases {
		for _, m := range modes {
			got, err := Normalize(m.mode, c.in)
			exp := m.get(c.want)
			if exp == bad {
				if !errors.Is(err, ErrInvalidPath) {
					t.Errorf("%s Normalize(%q) = %q, %v; want ErrInvalidPath", m.mode, c.in, got, err)
				}
				continue
			}
			if err != nil || got != exp {
				t.Errorf("%s Normalize(%q) = %q, %v; want %q", m.mode, c.in, got, err, exp)
			}
		}
	}
}

// Normalizing twice changes nothing: the proxy may normalize a path that an
// earlier Istio hop already normalized.
func TestNormalizeIdempotent(t *testing.T) {
	for _, in := range []string{"/a/../b", "/%2e%2e/x", "//a//b/", "/a%2Fb/%2e/c", "/%%30%30", "/a b", "/x/..;p/y", `/a\b`} {
		for _, m := range []ir.PathNormalization{ir.NormalizeBase, ir.NormalizeMergeSlashes, ir.NormalizeDecodeAndMergeSlashes} {
			once, err := Normalize(m, in)
			if err != nil {
				t.Fatalf("%s Normalize(%q): %v", m, in, err)
			}
			twice, err := Normalize(m, once)
			if err != nil || twice != once {
				t.Errorf("%s: Normalize(%q) = %q, again %q (%v)", m, in, once, twice, err)
			}
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/a/../b", "/%2e%2E/", "//x", `\..\`, "/%%300", "/a%2F..%5C..", "/?q#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, m := range []ir.PathNormalization{ir.NormalizeBase, ir.NormalizeMergeSlashes, ir.NormalizeDecodeAndMergeSlashes} {
			out, err := Normalize(m, in)
			if err != nil {
				continue
			}
			path := out
			for i := 0; i < len(path); i++ {
				if path[i] == '?' {
					path = path[:i]
					break
				}
			}
			if path == "" || path[0] != '/' {
				t.Fatalf("%s Normalize(%q) = %q: no leading slash", m, in, out)
			}
			for _, seg := range splitSegments(path) {
				if seg == ".." || seg == "." || seg == "%2e%2e" || seg == "%2E%2E" {
					t.Fatalf("%s Normalize(%q) = %q: dot segment left", m, in, out)
				}
			}
		}
	})
}

func splitSegments(p string) []string {
	var segs []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			segs = append(segs, p[start:i])
			start = i + 1
		}
	}
	return segs
}

// The zero mode is Istio's default, BASE.
func TestZeroModeIsBase(t *testing.T) {
	for _, in := range []string{"/a/../b", "//x", "/%2e%2e/admin", "/a%2Fb", "/x/./y?q=/../"} {
		base, berr := Normalize(ir.NormalizeBase, in)
		zero, zerr := Normalize("", in)
		if base != zero || (berr == nil) != (zerr == nil) {
			t.Errorf("Normalize(%q): BASE %q %v, zero mode %q %v", in, base, berr, zero, zerr)
		}
	}
}
