//go:build tools

// Package ratelimit pins the rate limit service hack/ratelimit/build.sh
// builds: Envoy's reference implementation of envoy.service.ratelimit.v3
// (github.com/envoyproxy/ratelimit, its src/service_cmd main), which the
// global rate limit end-to-end test (test/e2e) runs against a real Redis. It
// lives in its own module so the main module never depends on it.
package ratelimit

import (
	_ "github.com/envoyproxy/ratelimit/src/service_cmd"
)
