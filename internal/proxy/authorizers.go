package proxy

import (
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/config"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/extauthz"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/rls"
)

// authorizers are the clients of one configuration's external authorizers
// (ir.Waypoint.ExtAuthzProviders), by provider name. A provider that could
// not be set up maps to nil: its CUSTOM policies deny, as Istio's do.
type authorizers struct {
	providers map[string]*ir.ExtAuthzProvider
	clients   map[string]extauthz.Client
	// The rate limit services' clients (ir.Waypoint.RateLimitProviders),
	// likewise: nil for one that could not be set up (its calls fail).
	rlProviders map[string]*ir.RateLimitProvider
	limiters    map[string]*rls.Client
}

// retireAfter is how long the clients of authorizers a new configuration
// replaced stay open, so that checks already under way finish on them.
const retireAfter = time.Minute

// authorizersFor returns the authorizer clients for w: prev's when the
// providers are the same (where they are reached may differ: that is looked
// up per connection: config.Config.Resolve), else new ones, and prev's are
// closed after retireAfter.
func (p *Proxy) authorizersFor(w *ir.Waypoint, prev *authorizers) *authorizers {
	a := &authorizers{providers: w.ExtAuthzProviders, rlProviders: w.RateLimitProviders}
	a.limiters = p.limitersFor(w, prev)
	if prev != nil && config.SameProviders(prev.providers, w.ExtAuthzProviders) {
		a.clients = prev.clients
		return a
	}
	a.clients = make(map[string]extauthz.Client, len(w.ExtAuthzProviders))
	for name, prov := range w.ExtAuthzProviders {
		if prov.Invalid != "" {
			p.log.Warn("external authorizer is invalid; its CUSTOM policies deny", "provider", name, "reason", prov.Invalid)
			a.clients[name] = nil
			continue
		}
		c, err := extauthz.New(prov, extauthz.Options{Resolve: p.resolve, LocalPrincipal: p.opts.LocalPrincipal})
		if err != nil {
			p.log.Warn("external authorizer cannot be used; its CUSTOM policies deny", "provider", name, "error", err.Error())
			a.clients[name] = nil
			continue
		}
		a.clients[name] = c
	}
	if prev != nil && len(prev.clients) > 0 {
		old := prev.clients
		time.AfterFunc(retireAfter, func() { closeClients(old) })
	}
	return a
}

func closeClients(clients map[string]extauthz.Client) {
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}

// limitersFor returns the rate limit service clients for w: prev's when
// the services are the same, else new ones (prev's closed after
// retireAfter).
func (p *Proxy) limitersFor(w *ir.Waypoint, prev *authorizers) map[string]*rls.Client {
	if prev != nil && config.SameRateLimitProviders(prev.rlProviders, w.RateLimitProviders) {
		return prev.limiters
	}
	out := make(map[string]*rls.Client, len(w.RateLimitProviders))
	for name, prov := range w.RateLimitProviders {
		if prov.Invalid != "" {
			p.log.Warn("rate limit service is invalid; its calls fail", "provider", name, "reason", prov.Invalid)
			out[name] = nil
			continue
		}
		c, err := rls.New(prov, rls.Options{Resolve: p.resolve})
		if err != nil {
			p.log.Warn("rate limit service cannot be used; its calls fail", "provider", name, "error", err.Error())
		}
		out[name] = c
	}
	if prev != nil && len(prev.limiters) > 0 {
		old := prev.limiters
		time.AfterFunc(retireAfter, func() {
			for _, c := range old {
				if c != nil {
					_ = c.Close()
				}
			}
		})
	}
	return out
}
