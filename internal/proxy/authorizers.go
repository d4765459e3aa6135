package proxy

import (
	"net"
	"reflect"
	"strconv"
	"time"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/extauthz"
)

// authorizers are the clients of one configuration's external authorizers
// (ir.Waypoint.ExtAuthzProviders), by provider name. A provider that could
// not be set up maps to nil: its CUSTOM policies deny, as Istio's do.
type authorizers struct {
	providers map[string]*ir.ExtAuthzProvider
	clients   map[string]extauthz.Client
	// backends maps an authorizer's host and port to the key of the backend
	// the translator resolved it to (Waypoint.Backends).
	backends map[hostPort]string
}

// retireAfter is how long the clients of authorizers a new configuration
// replaced stay open, so that checks already under way finish on them.
const retireAfter = time.Minute

// authorizersFor returns the authorizer clients for w: prev's when the
// providers are the same (where they are reached may differ: that is looked
// up per connection), else new ones, and prev's are closed after
// retireAfter.
func (p *Proxy) authorizersFor(w *ir.Waypoint, prev *authorizers) *authorizers {
	a := &authorizers{providers: w.ExtAuthzProviders, backends: map[hostPort]string{}}
	for _, prov := range w.ExtAuthzProviders {
		if prov.Backend != "" {
			a.backends[hostPort{prov.Host, prov.Port}] = prov.Backend
		}
	}
	if prev != nil && sameProviders(prev.providers, w.ExtAuthzProviders) {
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

// sameProviders compares two provider sets, leaving out the backends they
// resolve to.
func sameProviders(a, b map[string]*ir.ExtAuthzProvider) bool {
	if len(a) != len(b) {
		return false
	}
	for name, pa := range a {
		pb, ok := b[name]
		if !ok || pb == nil || pa == nil {
			return false
		}
		x, y := *pa, *pb
		x.Backend, y.Backend = "", ""
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func closeClients(clients map[string]extauthz.Client) {
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}

// resolve finds where to dial an external authorizer's host and port: an
// endpoint of the backend the translator resolved it to, else of a service
// this waypoint serves by that hostname, else the address itself. It is
// called for every new connection to the authorizer, so it follows the
// configuration in force.
func (p *Proxy) resolve(host string, port uint16) (string, error) {
	if c := p.config.Load(); c != nil {
		if c.auth != nil {
			if key, ok := c.auth.backends[hostPort{host, port}]; ok {
				if b := c.backends[key]; b != nil {
					if ep, ok := b.Pick(); ok {
						return ep, nil
					}
				}
			}
		}
		if sp := c.byHost[hostPort{host, port}]; sp != nil && sp.defaultBackend != nil {
			if ep, ok := sp.defaultBackend.Pick(); ok {
				return ep, nil
			}
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}
