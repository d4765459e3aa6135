//go:build tools

// Package caddy pins the Caddy command hack/caddy/build.sh builds: the
// standard distribution (github.com/caddyserver/caddy/v2/cmd/caddy, with
// every standard module, among them the proxy_protocol listener wrapper).
package caddy

import _ "github.com/caddyserver/caddy/v2/cmd/caddy"
