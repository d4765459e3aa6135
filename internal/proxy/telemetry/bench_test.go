package telemetry

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkRecordRequest measures what one request costs the data path:
// "off" is a nil *Telemetry (telemetry disabled), "metrics" the Istio
// metrics alone, "text" and "json" the metrics plus an access log line to
// io.Discard. The label set is warm, as it is after the first request of a
// client to a service.
func BenchmarkRecordRequest(b *testing.B) {
	cases := []struct {
		name string
		opts *Options
	}{
		{"off", nil},
		{"metrics", &Options{}},
		{"text", &Options{AccessLog: io.Discard}},
		{"json", &Options{AccessLog: io.Discard, AccessLogFormat: FormatJSON}},
	}
	for _, c := range cases {
		var tel *Telemetry
		if c.opts != nil {
			var err error
			if tel, err = New(*c.opts); err != nil {
				b.Fatal(err)
			}
		}
		r := baseRecord()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tel.RecordRequest(&r)
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := baseRecord()
				for pb.Next() {
					tel.RecordRequest(&r)
				}
			})
		})
	}
}

// BenchmarkStartSpan measures StartSpan and End with tracing off (a nil
// *Telemetry) and on with an unsampled parent (the common case at a 1%
// sampling ratio: the context is propagated, nothing is exported).
func BenchmarkStartSpan(b *testing.B) {
	on, err := New(Options{Tracing: &TracingOptions{Endpoint: "http://127.0.0.1:1", SamplingRatio: 0}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = on.Shutdown(b.Context()) }()
	for _, c := range []struct {
		name string
		tel  *Telemetry
	}{{"off", nil}, {"unsampled", on}} {
		b.Run(c.name, func(b *testing.B) {
			h := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
				_, s := c.tel.StartSpan(b.Context(), h, "x")
				s.End(200)
			}
		})
	}
}
