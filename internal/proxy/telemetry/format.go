package telemetry

import (
	"slices"
	"strconv"
	"strings"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry/logformat"
)

// customFormat is a provider's own log format: Envoy's text format string,
// or JSON labels (key to command operators), compiled once.
type customFormat struct {
	text   []logformat.Segment // nil: labels
	labels []labelFormat       // sorted by key
}

type labelFormat struct {
	key  string
	segs []logformat.Segment
}

func compileFormat(text string, labels map[string]string) (*customFormat, error) {
	if len(labels) > 0 {
		f := &customFormat{}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range labels {
				if !yield(k) {
					return
				}
			}
		}) {
			segs, err := logformat.Parse(labels[k])
			if err != nil {
				return nil, err
			}
			f.labels = append(f.labels, labelFormat{key: k, segs: segs})
		}
		return f, nil
	}
	if text == "" {
		return nil, nil
	}
	segs, err := logformat.Parse(text)
	if err != nil {
		return nil, err
	}
	return &customFormat{text: segs}, nil
}

// value is one command operator's value for the line ("" when empty).
func opValue(s logformat.Segment, l *logLine, r *RequestRecord) string {
	var v string
	switch s.Op {
	case "START_TIME":
		v = string(appendTime(nil, l.start))
	case "REQ":
		v = reqHeader(s.Arg, l, r)
		if v == "" && s.Alt != "" {
			v = reqHeader(s.Alt, l, r)
		}
	case "RESP":
		v = respHeader(s.Arg, l, r)
		if v == "" && s.Alt != "" {
			v = respHeader(s.Alt, l, r)
		}
	case "METHOD":
		v = l.method
	case "PROTOCOL":
		v = l.protocol
	case "RESPONSE_CODE":
		v = strconv.Itoa(l.code)
	case "RESPONSE_FLAGS":
		v = l.flags
	case "RESPONSE_CODE_DETAILS":
		v = l.details
	case "CONNECTION_TERMINATION_DETAILS":
		v = l.term
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		v = l.transport
	case "BYTES_RECEIVED":
		v = strconv.FormatInt(l.received, 10)
	case "BYTES_SENT":
		v = strconv.FormatInt(l.sent, 10)
	case "DURATION":
		v = strconv.FormatInt(l.duration, 10)
	case "UPSTREAM_HOST":
		v = l.upstreamHost
	case "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW":
		v = l.upstreamCluster
	case "UPSTREAM_LOCAL_ADDRESS":
		v = l.upstreamLocal
	case "DOWNSTREAM_LOCAL_ADDRESS":
		v = l.downstreamLocal
	case "DOWNSTREAM_REMOTE_ADDRESS":
		v = l.downstreamRemote
	case "DOWNSTREAM_PEER_URI_SAN":
		v = l.peer
	case "REQUESTED_SERVER_NAME":
		v = l.serverName
	case "ROUTE_NAME":
		v = l.route
	case "GRPC_STATUS":
		if r != nil {
			v = r.GRPCStatus
		}
	}
	if s.MaxLen > 0 && len(v) > s.MaxLen {
		v = v[:s.MaxLen]
	}
	return v
}

func reqHeader(name string, l *logLine, r *RequestRecord) string {
	switch name {
	case ":method":
		return l.method
	case ":path", "x-envoy-original-path":
		return l.path
	case ":authority", "host":
		return l.authority
	case ":scheme":
		if r != nil {
			return r.Scheme
		}
		return ""
	case "x-request-id":
		return l.requestID
	case "user-agent":
		return l.userAgent
	case "x-forwarded-for":
		return l.xff
	}
	if r == nil || r.RequestHeaders == nil {
		return ""
	}
	return strings.Join(r.RequestHeaders.Values(name), ",")
}

func respHeader(name string, l *logLine, r *RequestRecord) string {
	if name == "x-envoy-upstream-service-time" {
		if l.serviceTime < 0 {
			return ""
		}
		return strconv.FormatInt(l.serviceTime, 10)
	}
	if r == nil || r.ResponseHeaders == nil {
		return ""
	}
	return strings.Join(r.ResponseHeaders.Values(name), ",")
}

// appendCustom writes the line in the custom format, with a newline.
func (f *customFormat) appendLine(b []byte, l *logLine, r *RequestRecord) []byte {
	if f.text != nil {
		for _, s := range f.text {
			if s.Op == "" {
				b = append(b, s.Literal...)
				continue
			}
			b = appendText(b, opValue(s, l, r))
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		return b
	}
	b = append(b, '{')
	for i, lf := range f.labels {
		if i > 0 {
			b = append(b, ',')
		}
		if len(lf.segs) == 1 && lf.segs[0].Op != "" && logformat.Numeric(lf.segs[0].Op) {
			b = appendJSONKey(b, lf.key)
			b = append(b, opValue(lf.segs[0], l, r)...)
			continue
		}
		var v strings.Builder
		for _, s := range lf.segs {
			if s.Op == "" {
				v.WriteString(s.Literal)
			} else {
				v.WriteString(opValue(s, l, r))
			}
		}
		field := appendJSONField(nil, lf.key, v.String())
		b = append(b, field[1:]...) // without the leading comma
	}
	return append(b, "}\n"...)
}

func appendJSONKey(b []byte, key string) []byte {
	field := appendJSONField(nil, key, "")
	// appendJSONField wrote ,"key":null: keep "key":
	return append(b, field[1:len(field)-len("null")]...)
}
