//go:build tools

// Package istiod pins the istiod command hack/istiod/build.sh builds:
// pilot-discovery from the istio.io/istio module (see go.mod for the
// version). It lives in its own module so the main module never imports
// istio.io/istio.
package istiod

import (
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
