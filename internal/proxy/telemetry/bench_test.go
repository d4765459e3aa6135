package telemetry

import (
	"io"
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
// *Telemetry) and on with an unsampled parent (the common case at 1%).
func BenchmarkStartSpanOff(b *testing.B) {
	var tel *Telemetry
	b.ReportAllocs()
	for b.Loop() {
		h := map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}
		_, s := tel.StartSpan(b.Context(), h, "x")
		s.End(200)
	}
}
