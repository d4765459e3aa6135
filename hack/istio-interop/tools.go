//go:build tools

// Package istiointerop pins the Istio programs the HBONE interop test runs
// against our waypoint: Istio's echo server (its --hbone port is the
// destination "ztunnel") and, in hboneclient/, a client built on Istio's
// pkg/hbone dialer. hack/istio-interop/build.sh builds both.
package istiointerop

import _ "istio.io/istio/pkg/test/echo/cmd/server"
