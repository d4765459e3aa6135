// Package tokenreview authenticates the proxies to the controller's xDS
// server: a proxy's projected ServiceAccount token is checked with the API
// server's TokenReview. It is the control plane's side and kept apart from
// package xds, which the proxies use too and which knows no Kubernetes API.
package tokenreview

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/xds"
)

// Authenticator checks tokens with the API server's TokenReview
// for one audience, and remembers positive answers for a short while.
type Authenticator struct {
	Client   authnclient.TokenReviewsGetter
	Audience string
	// TTL of a positive answer (default 1 minute).
	TTL time.Duration

	mu    sync.Mutex
	known map[[32]byte]cached
}

type cached struct {
	id      xds.Identity
	expires time.Time
}

const saPrefix = "system:serviceaccount:"

// Authenticate reviews the token and returns its ServiceAccount.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (xds.Identity, error) {
	if token == "" {
		return xds.Identity{}, errors.New("no bearer token")
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	a.mu.Lock()
	if c, ok := a.known[key]; ok && now.Before(c.expires) {
		a.mu.Unlock()
		return c.id, nil
	}
	a.mu.Unlock()
	tr, err := a.Client.TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return xds.Identity{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		msg := tr.Status.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return xds.Identity{}, fmt.Errorf("token rejected: %s", msg)
	}
	if !audienceIn(a.Audience, tr.Status.Audiences) {
		return xds.Identity{}, fmt.Errorf("token is not for audience %q", a.Audience)
	}
	user := tr.Status.User.Username
	rest, ok := strings.CutPrefix(user, saPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return xds.Identity{}, fmt.Errorf("%q is not a ServiceAccount", user)
	}
	id := xds.Identity{Namespace: ns, ServiceAccount: sa}
	ttl := a.TTL
	if ttl == 0 {
		ttl = time.Minute
	}
	a.mu.Lock()
	if a.known == nil || len(a.known) > 10000 {
		a.known = map[[32]byte]cached{}
	}
	a.known[key] = cached{id: id, expires: now.Add(ttl)}
	a.mu.Unlock()
	return id, nil
}

func audienceIn(want string, got []string) bool {
	if len(got) == 0 {
		return true // API servers that do not echo audiences checked them already
	}
	for _, g := range got {
		if g == want {
			return true
		}
	}
	return false
}
