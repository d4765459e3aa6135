package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// istioTextFormat is EnvoyTextLogFormat as published in istio/istio
// pilot/pkg/model/telemetry_logging.go: TextFormat must not drift from it.
const istioTextFormat = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" " +
	"%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% " +
	"\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% " +
	"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" " +
	"\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% " +
	"%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% " +
	"%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"

// textParser parses lines of an Envoy text format: it turns the format
// into a regular expression, one group per %COMMAND%.
type textParser struct {
	re       *regexp.Regexp
	commands []string
}

var commandRE = regexp.MustCompile(`%[A-Z_]+(\([^)]*\))?%`)

func newTextParser(format string) *textParser {
	var pat strings.Builder
	pat.WriteString("^")
	p := &textParser{}
	last := 0
	for _, loc := range commandRE.FindAllStringIndex(format, -1) {
		pat.WriteString(regexp.QuoteMeta(format[last:loc[0]]))
		p.commands = append(p.commands, format[loc[0]:loc[1]])
		// A value is a run of escaped or ordinary bytes, never a raw quote
		// nor, unless the command alone fills a quoted field, a space: that
		// is what makes a line splittable.
		if loc[0] > 0 && format[loc[0]-1] == '"' && loc[1] < len(format) && format[loc[1]] == '"' {
			pat.WriteString(`((?:\\.|[^"\\\n])*)`)
		} else {
			pat.WriteString(`((?:\\.|[^"\\ \n])*)`)
		}
		last = loc[1]
	}
	pat.WriteString(regexp.QuoteMeta(format[last:]))
	pat.WriteString("$")
	p.re = regexp.MustCompile(pat.String())
	return p
}

// parse returns command → value, "-" kept as is, escapes undone.
func (p *textParser) parse(line string) (map[string]string, error) {
	m := p.re.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("line does not match the format: %q", line)
	}
	out := map[string]string{}
	for i, c := range p.commands {
		out[c] = unescape(m[i+1])
	}
	return out, nil
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		if s[i] == 'x' && i+2 < len(s) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lockedBuffer collects lines written concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSuffix(l.b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// logRecords writes the same records in one format and returns the lines.
func logRecords(t *testing.T, format string) []string {
	t.Helper()
	var buf lockedBuffer
	tel, err := New(Options{AccessLog: &buf, AccessLogFormat: format})
	if err != nil {
		t.Fatal(err)
	}
	ok := baseRecord()
	tel.RecordRequest(&ok)

	denied := baseRecord()
	denied.Method, denied.Path, denied.ResponseCode = "POST", "/anything", 403
	denied.ResponseCodeDetails = RBACDeniedDetails("")
	denied.UpstreamHost, denied.ResponseBytes, denied.Duration = "", 19, 0
	tel.RecordRequest(&denied)

	uf := baseRecord()
	uf.ResponseCode, uf.ResponseFlags = 503, FlagUpstreamConnectionFailure
	uf.ResponseCodeDetails = DetailsConnectionFailure
	uf.UpstreamTransportFailureReason = "delayed connect error: Connection refused"
	tel.RecordRequest(&uf)

	hostile := baseRecord()
	hostile.UserAgent = "evil\" \"x\nforged [line]"
	hostile.XForwardedFor = `1.2.3.4\`
	tel.RecordRequest(&hostile)

	tcp := TCPRecord{
		Start: ok.Start, Duration: 1002 * time.Millisecond, UpstreamHost: "10.244.0.20:9000",
		UpstreamCluster:  UpstreamCluster(9000, "tcp", "", "tcp-echo.echo.svc.cluster.local"),
		DownstreamRemote: "10.244.0.14:40000", DownstreamLocal: "10.96.0.50:9000",
		SentBytes: 148, ReceivedBytes: 157, RouteName: "default",
	}
	tel.TCPOpened(&tcp)
	tel.TCPClosed(&tcp)
	lines := buf.lines()
	if len(lines) != 5 {
		t.Fatalf("%d lines, want one per request and connection: %q", len(lines), lines)
	}
	return lines
}

func TestTextFormatIsIstios(t *testing.T) {
	if TextFormat != istioTextFormat {
		t.Fatalf("TextFormat drifted from Istio's default:\n got %q\nwant %q", TextFormat, istioTextFormat)
	}
}

func TestAccessLogText(t *testing.T) {
	p := newTextParser(istioTextFormat[:len(istioTextFormat)-1]) // one line, no newline
	lines := logRecords(t, FormatText)
	want := []map[string]string{
		{ // 200 from upstream
			"%START_TIME%": "2026-10-09T11:44:22.954Z", "%REQ(:METHOD)%": "GET",
			"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%": "/status/418?x=1", "%PROTOCOL%": "HTTP/1.1",
			"%RESPONSE_CODE%": "200", "%RESPONSE_FLAGS%": "-", "%RESPONSE_CODE_DETAILS%": "via_upstream",
			"%CONNECTION_TERMINATION_DETAILS%": "-", "%UPSTREAM_TRANSPORT_FAILURE_REASON%": "-",
			"%BYTES_RECEIVED%": "0", "%BYTES_SENT%": "429", "%DURATION%": "7",
			"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%": "6", "%REQ(X-FORWARDED-FOR)%": "-",
			"%REQ(USER-AGENT)%": "curl/8.11.1", "%REQ(X-REQUEST-ID)%": "1227bbf1-aa5a-4818-aaac-f9ea2d7fdc3c",
			"%REQ(:AUTHORITY)%": "httpbin:8000", "%UPSTREAM_HOST%": "10.244.0.15:8080",
			"%UPSTREAM_CLUSTER_RAW%":   "inbound-vip|8000|http|httpbin.httpbin.svc.cluster.local",
			"%UPSTREAM_LOCAL_ADDRESS%": "-", "%DOWNSTREAM_LOCAL_ADDRESS%": "10.96.132.123:8000",
			"%DOWNSTREAM_REMOTE_ADDRESS%": "10.244.0.14:59462", "%REQUESTED_SERVER_NAME%": "-",
			"%ROUTE_NAME%": "default",
		},
		{ // denied by policy: no flag, no upstream, no service time
			"%REQ(:METHOD)%": "POST", "%RESPONSE_CODE%": "403", "%RESPONSE_FLAGS%": "-",
			"%RESPONSE_CODE_DETAILS%": "rbac_access_denied_matched_policy[none]", "%BYTES_SENT%": "19",
			"%DURATION%": "0", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%": "-", "%UPSTREAM_HOST%": "-",
		},
		{ // connection failure
			"%RESPONSE_CODE%": "503", "%RESPONSE_FLAGS%": "UF",
			"%RESPONSE_CODE_DETAILS%":               "upstream_reset_before_response_started{connection_failure}",
			"%UPSTREAM_TRANSPORT_FAILURE_REASON%":   "delayed connect error: Connection refused",
			"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%": "-",
		},
		{ // hostile header values come back intact, on one line
			"%REQ(USER-AGENT)%": "evil\" \"x\nforged [line]", "%REQ(X-FORWARDED-FOR)%": `1.2.3.4\`,
			"%ROUTE_NAME%": "default",
		},
		{ // TCP
			"%REQ(:METHOD)%": "-", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%": "-", "%PROTOCOL%": "-",
			"%RESPONSE_CODE%": "0", "%RESPONSE_FLAGS%": "-", "%RESPONSE_CODE_DETAILS%": "-",
			"%BYTES_RECEIVED%": "157", "%BYTES_SENT%": "148", "%DURATION%": "1002",
			"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%": "-", "%REQ(USER-AGENT)%": "-",
			"%UPSTREAM_HOST%": "10.244.0.20:9000", "%UPSTREAM_CLUSTER_RAW%": "inbound-vip|9000|tcp|tcp-echo.echo.svc.cluster.local",
			"%DOWNSTREAM_REMOTE_ADDRESS%": "10.244.0.14:40000", "%DOWNSTREAM_LOCAL_ADDRESS%": "10.96.0.50:9000",
		},
	}
	for i, line := range lines {
		got, err := p.parse(line)
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if len(got) != 24 {
			t.Fatalf("line %d: %d fields, Istio's format has 24", i, len(got))
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d %s = %q, want %q\n%s", i, k, got[k], v, line)
			}
		}
	}
	// The whole first line, byte for byte, as Istio's waypoint writes it.
	const first = `[2026-10-09T11:44:22.954Z] "GET /status/418?x=1 HTTP/1.1" 200 - via_upstream - "-" 0 429 7 6 "-" "curl/8.11.1" ` +
		`"1227bbf1-aa5a-4818-aaac-f9ea2d7fdc3c" "httpbin:8000" "10.244.0.15:8080" inbound-vip|8000|http|httpbin.httpbin.svc.cluster.local ` +
		`- 10.96.132.123:8000 10.244.0.14:59462 - default`
	if lines[0] != first {
		t.Errorf("line\n got %s\nwant %s", lines[0], first)
	}
}

func TestAccessLogJSONHasTheTextFields(t *testing.T) {
	p := newTextParser(istioTextFormat[:len(istioTextFormat)-1])
	text := logRecords(t, FormatText)
	js := logRecords(t, FormatJSON)
	// JSONFields follow the text format's commands one to one.
	if len(JSONFields) != len(p.commands) {
		t.Fatalf("%d JSON fields for %d text commands", len(JSONFields), len(p.commands))
	}
	numeric := map[string]bool{"response_code": true, "bytes_received": true, "bytes_sent": true, "duration": true}
	for i := range text {
		tf, err := p.parse(text[i])
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		dec := json.NewDecoder(strings.NewReader(js[i]))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, js[i])
		}
		if len(obj) != len(JSONFields) {
			t.Fatalf("line %d: %d keys, want %d", i, len(obj), len(JSONFields))
		}
		for j, key := range JSONFields {
			v, ok := obj[key]
			if !ok {
				t.Fatalf("line %d: no %q", i, key)
			}
			want := tf[p.commands[j]]
			switch {
			case numeric[key]:
				n, ok := v.(json.Number)
				if !ok || n.String() != want {
					t.Errorf("line %d %s = %#v, want the number %s", i, key, v, want)
				}
			case want == "-" && key != "response_flags":
				if v != nil {
					t.Errorf("line %d %s = %#v, want null", i, key, v)
				}
			default:
				if s, ok := v.(string); !ok || s != want {
					t.Errorf("line %d %s = %#v, want %q", i, key, v, want)
				}
			}
		}
	}
}

func TestAccessLogFormatRefused(t *testing.T) {
	if _, err := New(Options{AccessLogFormat: "yaml"}); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestAccessLogConcurrentLinesStayWhole(t *testing.T) {
	var buf lockedBuffer
	tel, err := New(Options{AccessLog: &buf})
	if err != nil {
		t.Fatal(err)
	}
	p := newTextParser(istioTextFormat[:len(istioTextFormat)-1])
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r := baseRecord()
				r.RequestID = fmt.Sprintf("g%d-%d", g, i)
				tel.RecordRequest(&r)
			}
		})
	}
	wg.Wait()
	lines := buf.lines()
	seen := map[string]bool{}
	for _, l := range lines {
		f, err := p.parse(l)
		if err != nil {
			t.Fatal(err)
		}
		seen[f["%REQ(X-REQUEST-ID)%"]] = true
	}
	if len(lines) != 400 || len(seen) != 400 {
		t.Fatalf("%d lines, %d distinct ids, want 400", len(lines), len(seen))
	}
}

func TestAppendTimeIsEnvoysLayout(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 10, 9, 11, 44, 22, 954_999_999, time.UTC),
		time.Date(1999, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("x", -7*3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	} {
		if got, want := string(appendTime(nil, tm)), tm.UTC().Format(envoyTime); got != want {
			t.Errorf("%v: %s, want %s", tm, got, want)
		}
	}
}

func TestJSONFieldEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                  "plain",
		"caf\u00e9 \u65e5\u672c": "caf\u00e9 \u65e5\u672c",
		"q\"b\\s\n\r\t\x01\x7f":  "q\"b\\s\n\r\t\x01\x7f",
		"bad\xffbyte":            "bad\ufffdbyte",
	} {
		b := appendJSONField([]byte("{\"x\":0"), "v", in)
		var got struct{ V string }
		if err := json.Unmarshal(append(b, '}'), &got); err != nil || got.V != want {
			t.Errorf("%q: %q (%v) from %s", in, got.V, err, b)
		}
	}
}
