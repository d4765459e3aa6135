package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Client is the proxy's side: it subscribes to its waypoint's configuration
// and hands each version to Apply. When the controller is unreachable it
// reconnects with exponential backoff; the configuration in force stays.
type Client struct {
	// Address of the xDS server (host:port).
	Address string
	// Gateway is the waypoint to subscribe to.
	Gateway ir.NamespacedName
	// NodeID names this proxy in the server's logs (the pod name).
	NodeID string
	// Token returns the bearer token for each connection (the projected
	// ServiceAccount token is re-read, as the kubelet rotates it).
	Token func() (string, error)
	// Apply installs a configuration; an error NACKs it.
	Apply func(*ir.Waypoint) error
	// OnStream, when set, is told when a stream to the server opens (true)
	// and ends (false).
	OnStream func(up bool)
	// MinBackoff and MaxBackoff bound the reconnection delay (0.2s, 30s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// TokenFile reads a token from a file at every connection.
func TokenFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
}

type bearer struct{ token func() (string, error) }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.token == nil {
		return nil, nil
	}
	t, err := b.token()
	if err != nil {
		return nil, fmt.Errorf("reading the xDS token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + t}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// Run subscribes until ctx ends. It returns only ctx's error.
func (c *Client) Run(ctx context.Context) error {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB := c.MinBackoff, c.MaxBackoff
	if minB == 0 {
		minB = 200 * time.Millisecond
	}
	if maxB == 0 {
		maxB = 30 * time.Second
	}
	conn, err := grpc.NewClient(c.Address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer{c.Token}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		return fmt.Errorf("xds client: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	backoff := minB
	version := ""
	for {
		start := time.Now()
		v, err := c.stream(ctx, ads, version, log)
		if v != "" {
			version = v
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 10*time.Second {
			backoff = minB // the stream was healthy for a while
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter
		log.Warn("xds: stream ended; keeping the configuration in force and reconnecting",
			"address", c.Address, "error", errString(err), "retryIn", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxB)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// stream runs one ADS stream; it returns the last version applied.
func (c *Client) stream(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient, version string, log *slog.Logger) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return "", err
	}
	name := ResourceName(c.Gateway)
	node := &core.Node{Id: c.NodeID}
	req := &discovery.DiscoveryRequest{Node: node, TypeUrl: TypeURL, ResourceNames: []string{name}, VersionInfo: version}
	if err := st.Send(req); err != nil {
		return "", err
	}
	if c.OnStream != nil {
		c.OnStream(true)
		defer c.OnStream(false)
	}
	applied := ""
	for {
		resp, err := st.Recv()
		if err != nil {
			return applied, err
		}
		ack := &discovery.DiscoveryRequest{Node: node, TypeUrl: TypeURL, ResourceNames: []string{name},
			ResponseNonce: resp.GetNonce(), VersionInfo: version}
		w, aerr := c.decode(resp, name)
		if aerr == nil && w != nil {
			aerr = c.Apply(w)
		}
		if aerr != nil {
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: aerr.Error()}
			log.Error("xds: configuration rejected (NACK); keeping the configuration in force",
				"version", resp.GetVersionInfo(), "error", aerr.Error())
		} else {
			version = resp.GetVersionInfo()
			ack.VersionInfo = version
			applied = version
			if w != nil {
				log.Info("xds: configuration applied", "version", version, "services", len(w.Services))
			}
		}
		if err := st.Send(ack); err != nil {
			return applied, err
		}
	}
}

// decode extracts our waypoint from a response; nil when the response does
// not carry it (the resource was removed: the proxy keeps what it has).
func (c *Client) decode(resp *discovery.DiscoveryResponse, name string) (*ir.Waypoint, error) {
	if resp.GetTypeUrl() != TypeURL {
		return nil, fmt.Errorf("unexpected resource type %q", resp.GetTypeUrl())
	}
	res := resp.GetResources()
	if len(res) == 0 {
		return nil, nil
	}
	if len(res) > 1 {
		return nil, fmt.Errorf("got %d resources, want only %s", len(res), name)
	}
	w, err := Decode(res[0].GetValue())
	if err != nil {
		return nil, err
	}
	if ResourceName(w.Gateway) != name {
		return nil, fmt.Errorf("got the configuration of %s, not %s", ResourceName(w.Gateway), name)
	}
	return w, nil
}

// ErrNoConfig is reported while no configuration has arrived yet.
var ErrNoConfig = errors.New("no configuration received yet")

// DefaultTokenFile is where a waypoint pod's projected ServiceAccount token
// for the xDS server is mounted (the deployer mounts it there).
const DefaultTokenFile = "/var/run/secrets/kgateway-waypoint/xds-token"
