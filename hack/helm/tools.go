//go:build tools

// Package helm pins the helm command hack/helm/build.sh builds.
package helm

import _ "helm.sh/helm/v3/cmd/helm"
