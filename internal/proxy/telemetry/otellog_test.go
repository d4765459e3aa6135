package telemetry

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

type logsReceiver struct {
	collogspb.UnimplementedLogsServiceServer
	mu     sync.Mutex
	bodies []string
	names  []string
}

func (r *logsReceiver) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.GetResourceLogs() {
		for _, a := range rl.GetResource().GetAttributes() {
			if a.GetKey() == "log_name" {
				r.names = append(r.names, a.GetValue().GetStringValue())
			}
		}
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				r.bodies = append(r.bodies, lr.GetBody().GetStringValue())
			}
		}
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

func (r *logsReceiver) got() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...), append([]string(nil), r.names...)
}

// An envoyOtelAls sink exports its lines as OTLP log records to a real
// OTLP/gRPC logs receiver, filtered like any sink.
func TestApplyOTelAccessLog(t *testing.T) {
	rcv := &logsReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(gs, rcv)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	tel, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Apply(&ir.Waypoint{Telemetry: &ir.Telemetry{AccessLog: &ir.AccessLogConfig{Sinks: []*ir.AccessLogSink{
		{Provider: "als", Kind: ir.AccessLogOTel, Endpoint: ln.Addr().String(), LogName: "waypoint-log", Filter: "!has(response.code) || response.code != 204"},
	}}}}); err != nil {
		t.Fatal(err)
	}
	tel.RecordRequest(rec(200, "/exported"))
	tel.RecordRequest(rec(204, "/filtered-out"))
	tcp := &TCPRecord{DestinationServiceNamespace: "ns", DestinationServiceName: "svc", UpstreamHost: "10.0.0.9:5432"}
	tel.TCPOpened(tcp)
	tel.TCPClosed(tcp)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	var bodies, names []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if bodies, names = rcv.got(); len(bodies) >= 2 {
			break
		}
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"GET /exported `) || !strings.Contains(bodies[1], "10.0.0.9:5432") {
		t.Fatalf("exported bodies %q", bodies)
	}
	if strings.HasSuffix(bodies[0], "\n") || names[0] != "waypoint-log" {
		t.Errorf("body %q, log_name %v", bodies[0], names)
	}
}
