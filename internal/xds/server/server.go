// Package server is the controller's xDS server: go-control-plane's
// aggregated discovery service with a linear cache of one resource per
// waypoint (xds.TypeURL), each proxy authenticated (xds.Authenticator) and
// allowed only its own Gateway. It is apart from package xds, the proxy's
// side, so that a proxy links none of go-control-plane's server and cache
// (and the Envoy resource types they bring).
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// Server is the xDS server of the controller.
type Server struct {
	log   *slog.Logger
	auth  xds.Authenticator
	cache *cachev3.LinearCache
	grpc  *grpc.Server

	setMu   sync.Mutex
	mu      sync.Mutex
	current map[string][]byte     // resource name -> IR JSON in the cache
	streams map[int64]*streamInfo // open streams

	pushes, acks, nacks, rejected atomic.Int64
}

type streamInfo struct {
	id    xds.Identity
	node  string
	names []string
}

// Options configure a Server.
type Options struct {
	Auth   xds.Authenticator
	Logger *slog.Logger
	// VersionPrefix distinguishes controller replicas' versions.
	VersionPrefix string
}

// New makes the xDS server; Serve runs it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:     o.Logger,
		auth:    o.Auth,
		current: map[string][]byte{},
		streams: map[int64]*streamInfo{},
	}
	prefix := o.VersionPrefix
	if prefix == "" {
		prefix = fmt.Sprintf("%x-", time.Now().UnixNano())
	}
	s.cache = cachev3.NewLinearCache(xds.TypeURL, cachev3.WithVersionPrefix(prefix), cachev3.WithLogger(nopLogger{}))
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc:     s.onStreamOpen,
		StreamClosedFunc:   s.onStreamClosed,
		StreamRequestFunc:  s.onStreamRequest,
		StreamResponseFunc: s.onStreamResponse,
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return status.Error(codes.Unimplemented, "use the state-of-the-world aggregated stream")
		},
		FetchRequestFunc: func(context.Context, *discovery.DiscoveryRequest) error {
			return status.Error(codes.Unimplemented, "use the state-of-the-world aggregated stream")
		},
	}
	xs := serverv3.NewServer(context.Background(), s.cache, cb)
	s.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(4<<20),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.grpc, xs)
	return s
}

// Serve serves on the listener until Stop.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// Stop closes every stream and the listener.
func (s *Server) Stop() { s.grpc.Stop() }

// Set makes the given waypoints the whole configuration: changed waypoints
// are pushed to the proxies subscribed to them (and only to them); absent
// ones are removed. It returns the names of the resources that changed.
func (s *Server) Set(wps map[ir.NamespacedName]*ir.Waypoint) ([]string, error) {
	// setMu orders Sets; mu (taken by the stream callbacks) is not held
	// while the cache notifies the streams.
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.mu.Lock()
	current := s.current
	s.mu.Unlock()
	update := map[string]types.Resource{}
	var changed, remove []string
	next := map[string][]byte{}
	for gw, w := range wps {
		name := xds.ResourceName(gw)
		res, err := xds.Encode(w)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		next[name] = res.GetValue()
		if old, ok := current[name]; ok && bytes.Equal(old, res.GetValue()) {
			continue
		}
		update[name] = res
		changed = append(changed, name)
	}
	for name := range current {
		if _, ok := next[name]; !ok {
			remove = append(remove, name)
			changed = append(changed, name)
		}
	}
	if len(update) == 0 && len(remove) == 0 {
		return nil, nil
	}
	if err := s.cache.UpdateResources(update, remove); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.current = next
	s.mu.Unlock()
	return changed, nil
}

// Stats are counters for tests and metrics.
type Stats struct {
	Streams                       int
	Pushes, ACKs, NACKs, Rejected int64
}

// Stats reports the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.streams)
	s.mu.Unlock()
	return Stats{Streams: n, Pushes: s.pushes.Load(), ACKs: s.acks.Load(), NACKs: s.nacks.Load(), Rejected: s.rejected.Load()}
}

func (s *Server) onStreamOpen(ctx context.Context, id int64, _ string) error {
	token := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t, ok := strings.CutPrefix(v, "Bearer "); ok {
				token = strings.TrimSpace(t)
			}
		}
	}
	if s.auth == nil {
		s.rejected.Add(1)
		return status.Error(codes.Unauthenticated, "no authenticator configured")
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ident, err := s.auth.Authenticate(rctx, token)
	if err != nil {
		s.rejected.Add(1)
		s.log.Warn("xds: proxy not authenticated", "stream", id, "error", err.Error())
		return status.Error(codes.Unauthenticated, err.Error())
	}
	s.mu.Lock()
	s.streams[id] = &streamInfo{id: ident}
	s.mu.Unlock()
	return nil
}

func (s *Server) onStreamClosed(id int64, node *core.Node) {
	s.mu.Lock()
	si := s.streams[id]
	delete(s.streams, id)
	s.mu.Unlock()
	if si != nil {
		s.log.Info("xds: proxy disconnected", "stream", id, "node", node.GetId(), "resources", si.names)
	}
}

func (s *Server) onStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	s.mu.Lock()
	si := s.streams[id]
	s.mu.Unlock()
	if si == nil {
		return status.Error(codes.Unauthenticated, "stream not authenticated")
	}
	if req.GetTypeUrl() != xds.TypeURL {
		s.rejected.Add(1)
		return status.Errorf(codes.InvalidArgument, "unknown resource type %q (want %s)", req.GetTypeUrl(), xds.TypeURL)
	}
	names := req.GetResourceNames()
	if len(names) != 1 || !si.id.Allowed(names[0]) {
		s.rejected.Add(1)
		s.log.Warn("xds: proxy asked for a configuration that is not its own", "stream", id,
			"serviceAccount", si.id.Namespace+"/"+si.id.ServiceAccount, "resources", names)
		return status.Errorf(codes.PermissionDenied, "ServiceAccount %s/%s may only subscribe to the waypoint %s/%s",
			si.id.Namespace, si.id.ServiceAccount, si.id.Namespace, si.id.ServiceAccount)
	}
	s.mu.Lock()
	first := si.names == nil
	si.names, si.node = names, req.GetNode().GetId()
	s.mu.Unlock()
	switch {
	case first:
		s.log.Info("xds: proxy connected", "stream", id, "node", si.node, "resource", names[0])
	case req.GetErrorDetail() != nil:
		s.nacks.Add(1)
		s.log.Warn("xds: proxy rejected a configuration (NACK); it keeps its previous one", "stream", id,
			"node", si.node, "resource", names[0], "nonce", req.GetResponseNonce(), "error", req.GetErrorDetail().GetMessage())
	case req.GetResponseNonce() != "":
		s.acks.Add(1)
		s.log.Debug("xds: ACK", "stream", id, "node", si.node, "version", req.GetVersionInfo())
	}
	return nil
}

func (s *Server) onStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.pushes.Add(1)
	s.log.Debug("xds: push", "stream", id, "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
}

// ErrClosed is returned by clients of a stopped server.
var ErrClosed = errors.New("xds server closed")

type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}
