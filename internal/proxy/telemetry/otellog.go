package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// otelLogs is an envoyOtelAls provider's access log: each line becomes an
// OTLP log record (body: the line in Istio's text format, as Envoy's
// OpenTelemetry access logger with Istio's default format), exported over
// OTLP/gRPC in batches. A record never waits for the collector: past
// otelLogQueue pending lines, lines are dropped and counted as write errors.
type otelLogs struct {
	conn    *grpc.ClientConn
	client  collogspb.LogsServiceClient
	logName string
	service string
	log     *slog.Logger

	queue chan *logspb.LogRecord
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

const (
	otelLogQueue = 4096
	otelLogBatch = 512
)

// otelLogFlush is the longest a line waits before export.
var otelLogFlush = time.Second

func newOTelLogs(endpoint, logName, service string, log *slog.Logger) (*otelLogs, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	if logName == "" {
		logName = "otel_envoy_accesslog"
	}
	o := &otelLogs{conn: conn, client: collogspb.NewLogsServiceClient(conn), logName: logName, service: service, log: log,
		queue: make(chan *logspb.LogRecord, otelLogQueue), stop: make(chan struct{}), done: make(chan struct{})}
	go o.run()
	return o, nil
}

// write queues one line (without its newline) as a log record.
func (o *otelLogs) write(b []byte) error {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	now := uint64(time.Now().UnixNano())
	r := &logspb.LogRecord{TimeUnixNano: now, ObservedTimeUnixNano: now,
		Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(b)}}}
	select {
	case o.queue <- r:
		return nil
	default:
		return errOTelQueueFull
	}
}

type otelErr string

func (e otelErr) Error() string { return string(e) }

const errOTelQueueFull = otelErr("OTLP access log queue full: line dropped")

func (o *otelLogs) run() {
	defer close(o.done)
	tick := time.NewTicker(otelLogFlush)
	defer tick.Stop()
	var batch []*logspb.LogRecord
	flush := func() {
		if len(batch) == 0 {
			return
		}
		o.export(batch)
		batch = nil
	}
	for {
		select {
		case r := <-o.queue:
			if batch = append(batch, r); len(batch) >= otelLogBatch {
				flush()
			}
		case <-tick.C:
			flush()
		case <-o.stop:
			for {
				select {
				case r := <-o.queue:
					batch = append(batch, r)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (o *otelLogs) export(batch []*logspb.LogRecord) {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("log_name", o.logName), str("service.name", o.service)}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: batch}},
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := o.client.Export(ctx, req); err != nil {
		o.log.Warn("OTLP access log export", "records", len(batch), "err", err)
	}
}

// close exports what is queued and closes the connection.
func (o *otelLogs) close() {
	o.once.Do(func() {
		close(o.stop)
		<-o.done
		_ = o.conn.Close()
	})
}
