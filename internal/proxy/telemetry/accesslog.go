package telemetry

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// TextFormat is Istio's default access log format
// (EnvoyTextLogFormat in istio/istio pilot/pkg/model/telemetry_logging.go);
// the text access log writes exactly these fields, "-" for empty ones.
const TextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% ` +
	`%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% ` +
	`%REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// JSONFields are the keys of the JSON access log, Istio's default JSON
// format (EnvoyJSONLogFormatIstio), in the order they are written.
// response_code, bytes_received, bytes_sent and duration are numbers; the
// others strings, or null when empty, as Envoy writes them.
var JSONFields = []string{
	"start_time", "method", "path", "protocol", "response_code", "response_flags",
	"response_code_details", "connection_termination_details", "upstream_transport_failure_reason",
	"bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for",
	"user_agent", "request_id", "authority", "upstream_host", "upstream_cluster",
	"upstream_local_address", "downstream_local_address", "downstream_remote_address",
	"requested_server_name", "route_name",
}

// envoyTime is Envoy's default %START_TIME% layout (%Y-%m-%dT%H:%M:%E3SZ, UTC).
const envoyTime = "2006-01-02T15:04:05.000Z"

// appendTime writes t in envoyTime, several times faster than AppendFormat.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, envoyTime)
	}
	b = append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.')
	ms := t.Nanosecond() / 1e6
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// logLine is the access log's fields for either kind of record.
type logLine struct {
	start                                time.Time
	method, path, protocol               string
	code                                 int
	flags, details, term, transport      string
	received, sent, duration             int64
	serviceTime                          int64 // < 0: no upstream response
	xff, userAgent, requestID, authority string
	upstreamHost, upstreamCluster        string
	upstreamLocal, downstreamLocal       string
	downstreamRemote, serverName, route  string
	peer                                 string // custom formats only
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (t *Telemetry) logRequest(r *RequestRecord, p *policy) {
	details := r.ResponseCodeDetails
	if details == "" && r.UpstreamHost != "" && (r.ResponseFlags == "" || r.ResponseFlags == FlagNone) && r.ResponseCode != 0 {
		details = DetailsViaUpstream
	}
	l := logLine{
		start: r.Start, method: r.Method, path: r.Path, protocol: r.HTTPProtocol,
		code: r.ResponseCode, flags: or(r.ResponseFlags, FlagNone), details: noSpaces(details),
		term: noSpaces(r.ConnectionTerminationDetails), transport: r.UpstreamTransportFailureReason,
		received: r.RequestBytes, sent: r.ResponseBytes, duration: r.Duration.Milliseconds(),
		xff: r.XForwardedFor, userAgent: r.UserAgent, requestID: r.RequestID, authority: r.Authority,
		upstreamHost: r.UpstreamHost, upstreamCluster: r.UpstreamCluster, upstreamLocal: r.UpstreamLocal,
		downstreamLocal: r.DownstreamLocal, downstreamRemote: r.DownstreamRemote,
		serverName: r.RequestedServerName, route: r.RouteName, peer: r.Source.Principal,
	}
	l.serviceTime = -1
	if details == DetailsViaUpstream {
		// x-envoy-upstream-service-time is only on responses from upstream.
		l.serviceTime = max(r.UpstreamServiceTimeMs, 0)
	}
	t.writeLines(&l, p, r, nil)
}

// writeLines writes l to the options' access log, or, when a Telemetry
// policy sets the access log, to each of its sinks whose filter vars
// satisfy.
func (t *Telemetry) writeLines(l *logLine, p *policy, r *RequestRecord, tcp *TCPRecord) {
	if p == nil || !p.logSet {
		if t.accessLog != nil {
			t.writeLine(l, t.json, func(b []byte) error {
				t.logMu.Lock()
				defer t.logMu.Unlock()
				_, err := t.accessLog.Write(b)
				return err
			})
		}
		return
	}
	var vars *requestVars
	for _, s := range p.sinks {
		if s.filter != nil {
			if vars == nil {
				vars = &requestVars{r: r, tcp: tcp}
			}
			if !s.filter.Bool(vars) {
				continue
			}
		}
		write := s.write
		if s.format != nil {
			t.writeCustom(l, s.format, r, write)
			continue
		}
		t.writeLine(l, s.json && s.otel == nil, write)
	}
}

func (t *Telemetry) logTCP(r *TCPRecord, p *policy) {
	l := logLine{
		start: r.Start, flags: or(r.ResponseFlags, FlagNone),
		term: noSpaces(r.ConnectionTerminationDetails), transport: r.UpstreamTransportFailureReason,
		received: r.ReceivedBytes, sent: r.SentBytes, duration: r.Duration.Milliseconds(),
		upstreamHost: r.UpstreamHost, upstreamCluster: r.UpstreamCluster, upstreamLocal: r.UpstreamLocal,
		downstreamLocal: r.DownstreamLocal, downstreamRemote: r.DownstreamRemote,
		serverName: r.RequestedServerName, route: r.RouteName, serviceTime: -1, peer: r.Source.Principal,
	}
	t.writeLines(&l, p, nil, r)
}

// noSpaces replaces spaces with underscores, as Envoy does for details,
// which the text format prints unquoted.
func noSpaces(s string) string {
	if strings.IndexByte(s, ' ') < 0 {
		return s
	}
	return strings.ReplaceAll(s, " ", "_")
}

func (t *Telemetry) writeLine(l *logLine, json bool, write func([]byte) error) {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if l.start.IsZero() {
		l.start = time.Now()
	}
	if json {
		b = appendJSONLine(b, l)
	} else {
		b = appendTextLine(b, l)
	}
	if err := write(b); err != nil {
		t.health.accessLogErrs.Inc()
	}
	if cap(b) <= 64<<10 { // do not keep a huge line's buffer
		*bp = b
		bufPool.Put(bp)
	}
}

// writeCustom writes l in a provider's own format.
func (t *Telemetry) writeCustom(l *logLine, f *customFormat, r *RequestRecord, write func([]byte) error) {
	bp := bufPool.Get().(*[]byte)
	if l.start.IsZero() {
		l.start = time.Now()
	}
	b := f.appendLine((*bp)[:0], l, r)
	if err := write(b); err != nil {
		t.health.accessLogErrs.Inc()
	}
	if cap(b) <= 64<<10 {
		*bp = b
		bufPool.Put(bp)
	}
}

func appendTextLine(b []byte, l *logLine) []byte {
	b = append(b, '[')
	b = appendTime(b, l.start)
	b = append(b, "] \""...)
	b = appendText(b, l.method)
	b = append(b, ' ')
	b = appendText(b, l.path)
	b = append(b, ' ')
	b = appendText(b, l.protocol)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(l.code), 10)
	b = append(b, ' ')
	b = appendText(b, l.flags)
	b = append(b, ' ')
	b = appendText(b, l.details)
	b = append(b, ' ')
	b = appendText(b, l.term)
	b = append(b, " \""...)
	b = appendText(b, l.transport)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, l.received, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, l.sent, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, l.duration, 10)
	b = append(b, ' ')
	if l.serviceTime < 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, l.serviceTime, 10)
	}
	for _, s := range [...]string{l.xff, l.userAgent, l.requestID, l.authority, l.upstreamHost} {
		b = append(b, " \""...)
		b = appendText(b, s)
		b = append(b, '"')
	}
	for _, s := range [...]string{l.upstreamCluster, l.upstreamLocal, l.downstreamLocal, l.downstreamRemote, l.serverName, l.route} {
		b = append(b, ' ')
		b = appendText(b, s)
	}
	return append(b, '\n')
}

// appendText writes s as Envoy would, "-" when empty. Unlike Envoy, it
// escapes '"', '\\' and control bytes, so that a header cannot forge fields
// or lines.
func appendText(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	for {
		i := 0
		for i < len(s) && !textEscape[s[i]] {
			i++
		}
		b = append(b, s[:i]...) // the common case: the whole value at once
		if i == len(s) {
			return b
		}
		c := s[i]
		if c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
		s = s[i+1:]
	}
}

// jsonEscape marks the bytes appendJSONField looks at: escapes and
// multi-byte sequences, whose validity it checks.
var jsonEscape = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	for c := 0x7f; c < 0x100; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// textEscape marks the bytes appendText escapes.
var textEscape = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t[0x7f], t['"'], t['\\'] = true, true, true
	return t
}()

const hexDigits = "0123456789abcdef"

func appendJSONLine(b []byte, l *logLine) []byte {
	b = append(b, `{"start_time":"`...)
	b = appendTime(b, l.start)
	b = append(b, '"')
	b = appendJSONField(b, "method", l.method)
	b = appendJSONField(b, "path", l.path)
	b = appendJSONField(b, "protocol", l.protocol)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(l.code), 10)
	b = appendJSONField(b, "response_flags", l.flags)
	b = appendJSONField(b, "response_code_details", l.details)
	b = appendJSONField(b, "connection_termination_details", l.term)
	b = appendJSONField(b, "upstream_transport_failure_reason", l.transport)
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendInt(b, l.received, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, l.sent, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, l.duration, 10)
	if l.serviceTime < 0 {
		b = append(b, `,"upstream_service_time":null`...)
	} else { // a header value: a string
		b = append(b, `,"upstream_service_time":"`...)
		b = strconv.AppendInt(b, l.serviceTime, 10)
		b = append(b, '"')
	}
	b = appendJSONField(b, "x_forwarded_for", l.xff)
	b = appendJSONField(b, "user_agent", l.userAgent)
	b = appendJSONField(b, "request_id", l.requestID)
	b = appendJSONField(b, "authority", l.authority)
	b = appendJSONField(b, "upstream_host", l.upstreamHost)
	b = appendJSONField(b, "upstream_cluster", l.upstreamCluster)
	b = appendJSONField(b, "upstream_local_address", l.upstreamLocal)
	b = appendJSONField(b, "downstream_local_address", l.downstreamLocal)
	b = appendJSONField(b, "downstream_remote_address", l.downstreamRemote)
	b = appendJSONField(b, "requested_server_name", l.serverName)
	b = appendJSONField(b, "route_name", l.route)
	return append(b, "}\n"...)
}

// appendJSONField writes ,"key":"value" (null when empty).
func appendJSONField(b []byte, key, s string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	if s == "" {
		return append(b, "null"...)
	}
	b = append(b, '"')
	for {
		i := 0
		for i < len(s) && !jsonEscape[s[i]] {
			i++
		}
		b = append(b, s[:i]...) // the common case: the whole value at once
		if i == len(s) {
			break
		}
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			s = s[i+size:]
			continue
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		s = s[i+1:]
	}
	return append(b, '"')
}
