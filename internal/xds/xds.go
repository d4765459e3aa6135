// Package xds carries the waypoint configuration (ir.Waypoint) from the
// controller to the proxies over gRPC, with go-control-plane's aggregated
// discovery service (state of the world), the way istiod streams its own
// resource types to ztunnel.
//
// The resource type is TypeURL; each resource is one waypoint, named
// "namespace/name" after its Gateway, and its payload is a
// google.protobuf.BytesValue holding the IR as JSON (the same JSON as the
// standalone mode's golden files). Versions are the cache's; a proxy ACKs
// a version it applied and NACKs (error_detail) one it could not, keeping
// its previous configuration.
//
// A proxy authenticates with its projected ServiceAccount token (bearer, in
// the "authorization" metadata), checked by a TokenReview for the audience
// the deployer projects; it may subscribe to exactly one resource: the
// Gateway whose ServiceAccount it runs as (namespace and name equal).
package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// TypeURL is the resource type of a waypoint's configuration.
const TypeURL = "type.googleapis.com/kgateway.dev.waypoint.v1.Waypoint"

// ResourceName is the resource of the waypoint of a Gateway.
func ResourceName(gw ir.NamespacedName) string { return gw.Namespace + "/" + gw.Name }

// Encode turns a waypoint's configuration into its resource.
func Encode(w *ir.Waypoint) (*wrapperspb.BytesValue, error) {
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(b), nil
}

// Decode reads a resource payload (a BytesValue's wire bytes) back.
func Decode(payload []byte) (*ir.Waypoint, error) {
	bv := &wrapperspb.BytesValue{}
	if err := proto.Unmarshal(payload, bv); err != nil {
		return nil, fmt.Errorf("decoding the resource: %w", err)
	}
	w := &ir.Waypoint{}
	if err := json.Unmarshal(bv.GetValue(), w); err != nil {
		return nil, fmt.Errorf("decoding the waypoint JSON: %w", err)
	}
	return w, nil
}

// Identity is an authenticated proxy: the ServiceAccount it runs as.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// Authenticator checks a proxy's bearer token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// Allowed reports whether id may subscribe to the resource name.
func (id Identity) Allowed(name string) bool {
	ns, n, ok := strings.Cut(name, "/")
	return ok && ns == id.Namespace && n == id.ServiceAccount
}
