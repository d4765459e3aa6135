// Package logformat parses Envoy access log formats (the mesh config's
// logFormat.text, and the command operators of logFormat.labels) into
// segments, once per configuration. It knows which command operators the
// waypoint can fill; a format naming another is refused, so the translator
// reports it on the Telemetry and the proxy never prints a wrong value.
package logformat

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Segment is a literal or a command operator.
type Segment struct {
	// Literal text (Op empty).
	Literal string
	// Op is the operator name (START_TIME, REQ, RESPONSE_CODE, ...).
	Op string
	// Arg and Alt are REQ(Arg?Alt) / RESP(Arg?Alt)'s header names, lower
	// case.
	Arg, Alt string
	// MaxLen truncates the value (":N" after the operator); 0: no limit.
	MaxLen int
}

// Operators are the command operators the waypoint fills.
var Operators = []string{
	"START_TIME", "REQ", "RESP", "PROTOCOL", "RESPONSE_CODE", "RESPONSE_FLAGS", "RESPONSE_CODE_DETAILS",
	"CONNECTION_TERMINATION_DETAILS", "UPSTREAM_TRANSPORT_FAILURE_REASON", "BYTES_RECEIVED", "BYTES_SENT",
	"DURATION", "UPSTREAM_HOST", "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "UPSTREAM_LOCAL_ADDRESS",
	"DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_PEER_URI_SAN", "REQUESTED_SERVER_NAME",
	"ROUTE_NAME", "GRPC_STATUS", "METHOD",
}

// Parse splits an Envoy format string into segments.
func Parse(format string) ([]Segment, error) {
	var out []Segment
	lit := strings.Builder{}
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' { // %% is a literal %
			lit.WriteByte('%')
			i += 2
			continue
		}
		end := strings.IndexByte(format[i+1:], '%')
		if end < 0 {
			return nil, fmt.Errorf("unterminated command operator at %q", format[i:])
		}
		seg, err := parseOp(format[i+1 : i+1+end])
		if err != nil {
			return nil, err
		}
		if lit.Len() > 0 {
			out = append(out, Segment{Literal: lit.String()})
			lit.Reset()
		}
		out = append(out, seg)
		i += end + 2
	}
	if lit.Len() > 0 {
		out = append(out, Segment{Literal: lit.String()})
	}
	return out, nil
}

func parseOp(s string) (Segment, error) {
	var seg Segment
	name, rest := s, ""
	if i := strings.IndexByte(s, '('); i >= 0 {
		j := strings.IndexByte(s, ')')
		if j < i {
			return seg, fmt.Errorf("command operator %%%s%%: unbalanced parentheses", s)
		}
		name, rest = s[:i], s[j+1:]
		arg := s[i+1 : j]
		seg.Arg, seg.Alt, _ = strings.Cut(strings.ToLower(arg), "?")
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		name, rest = s[:i], s[i:]
	}
	if rest != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
		if !strings.HasPrefix(rest, ":") || err != nil || n <= 0 {
			return seg, fmt.Errorf("command operator %%%s%%: bad length %q", s, rest)
		}
		seg.MaxLen = n
	}
	if !slices.Contains(Operators, name) {
		return seg, fmt.Errorf("command operator %%%s%% is not supported by this waypoint", name)
	}
	if (name == "REQ" || name == "RESP") && seg.Arg == "" {
		return seg, fmt.Errorf("command operator %%%s%% needs a header name", s)
	}
	if name == "START_TIME" && seg.Arg != "" {
		return seg, fmt.Errorf("command operator %%%s%%: a custom time format is not supported", s)
	}
	seg.Op = name
	return seg, nil
}

// Numeric reports whether an operator's value is a number in JSON.
func Numeric(op string) bool {
	switch op {
	case "RESPONSE_CODE", "BYTES_RECEIVED", "BYTES_SENT", "DURATION":
		return true
	}
	return false
}
