// Package httpwire is the HTTP/1.1 wire syntax both ends of the proxy
// parse: tokens, field values, field lines and comma-separated lists (RFC
// 9110 5, RFC 9112 5). The inbound reader of client requests and the
// upstream reader of backend responses share it, so they refuse the same
// things; each maps a FieldError to its own answer (a 400 or 431 to a
// client, a 502 for a backend).
package httpwire

import (
	"net/http"
	"net/textproto"
	"strings"
)

// FieldError says why a field line was refused.
type FieldError struct{ Kind FieldErrorKind }

// FieldErrorKind is the class of a refused field line.
type FieldErrorKind int

const (
	// Folded is an obs-fold continuation line (a line starting with SP or HTAB).
	Folded FieldErrorKind = iota
	// Malformed is a line without a colon, or a name that is not a token.
	Malformed
	// BadValue is a value with a control character other than HTAB, or DEL.
	BadValue
	// TooMany is one field more than the limit.
	TooMany
)

func (e *FieldError) Error() string {
	switch e.Kind {
	case Folded:
		return "obsolete line folding in header fields"
	case Malformed:
		return "malformed header field"
	case BadValue:
		return "invalid character in a header field value"
	default:
		return "too many header fields"
	}
}

var (
	errFolded    = &FieldError{Folded}
	errMalformed = &FieldError{Malformed}
	errBadValue  = &FieldError{BadValue}
	errTooMany   = &FieldError{TooMany}
)

// ParseLine splits one field line ("Name: value", without its line end)
// into its canonical name and its value trimmed of spaces and tabs. The
// name is the line's own substring when it is already canonical.
func ParseLine(line string) (key, value string, err error) {
	if line != "" && (line[0] == ' ' || line[0] == '\t') {
		return "", "", errFolded
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok || !ValidToken(name) {
		return "", "", errMalformed
	}
	value = strings.Trim(value, " \t")
	if !ValidFieldValue(value) {
		return "", "", errBadValue
	}
	if !IsCanonical(name) {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	return name, value, nil
}

// ParseFields parses the field lines of a head (CRLF- or LF-terminated,
// up to an empty line or the end) into h, at most maxFields of them. The
// values share one backing slice: a field seen once costs no allocation.
func ParseFields(fields string, h http.Header, maxFields int) error {
	values := make([]string, 0, strings.Count(fields, "\n"))
	count := 0
	for {
		var line string
		line, fields = CutLine(fields)
		if line == "" {
			return nil
		}
		if count++; count > maxFields {
			return errTooMany
		}
		key, value, err := ParseLine(line)
		if err != nil {
			return err
		}
		if vv, seen := h[key]; seen {
			h[key] = append(vv, value)
			continue
		}
		values = append(values, value)
		n := len(values)
		h[key] = values[n-1 : n : n]
	}
}

// CutLine returns the first line of s without its CRLF (or LF), and the rest.
func CutLine(s string) (string, string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	return strings.TrimSuffix(s[:i], "\r"), s[i+1:]
}

// ValidToken reports an RFC 9110 token (methods, field names).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// ValidFieldValue reports an RFC 9110 field value: visible characters,
// obs-text, spaces and tabs; no other control character (NUL, CR, LF, VT,
// DEL ...), which backends split or strip in ways that differ.
func ValidFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// IsCanonical reports whether a field name is already in canonical form
// ("Content-Type"), so it can be a map key as it is.
func IsCanonical(s string) bool {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// HasToken reports whether a comma-separated list of field values holds
// the token (case-insensitive), as Connection and Upgrade are read.
func HasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(item, " \t"), token) {
				return true
			}
		}
	}
	return false
}
