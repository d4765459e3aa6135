#!/usr/bin/env bash
# The full test command: formatting and lint, vet, then every test with the
# race detector. It installs what it needs (golangci-lint, pinned) into
# .cache/bin, and builds the real kube-apiserver, etcd and kubectl the
# integration tests run against into .cache/kube (hack/kube/build.sh) and
# helm into .cache/helm (hack/helm/build.sh), Istio's echo server and HBONE
# client into .cache/istio-interop (hack/istio-interop/build.sh), and the
# real istiod (pilot-discovery, with the ztunnel-xds client) into
# .cache/istiod (hack/istiod/build.sh: about 9 minutes the first time), and
# Envoy's rate limit service into .cache/ratelimit (hack/ratelimit/build.sh)
# with Debian's redis-server (installed with apt-get when missing) for the
# global rate limit end-to-end test, so it runs on a fresh machine that has
# Go.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
bin="$PWD/.cache/bin"
mkdir -p "$bin"
if ! "$bin/golangci-lint" version 2>/dev/null | grep -q "${GOLANGCI_LINT_VERSION#v}"; then
  echo "== installing golangci-lint $GOLANGCI_LINT_VERSION"
  GOBIN="$bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi

echo "== go vet"
go vet ./...

echo "== golangci-lint"
"$bin/golangci-lint" run ./...

echo "== kube-apiserver, etcd, kubectl for the integration tests (hack/kube)"
KUBEBUILDER_ASSETS="$(hack/kube/build.sh)"
export KUBEBUILDER_ASSETS
echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
echo "== helm for rendering the chart in the end-to-end test (hack/helm)"
HELM_BIN="$(hack/helm/build.sh)/helm"
export HELM_BIN
"$HELM_BIN" lint install/helm/kgateway-waypoint
echo "== istiod (pilot-discovery) and ztunnel-xds for the capture end-to-end test (hack/istiod)"
ISTIOD_BIN_DIR="$(nice -n 10 hack/istiod/build.sh)"
export ISTIOD_BIN_DIR
echo "ISTIOD_BIN_DIR=$ISTIOD_BIN_DIR"

echo "== Istio's echo server and HBONE client for the HBONE interop test (hack/istio-interop)"
ISTIO_INTEROP_BIN="$(hack/istio-interop/build.sh)"
export ISTIO_INTEROP_BIN

# --- global rate limit (hack/ratelimit): envoyproxy/ratelimit and redis-server
echo "== Envoy's rate limit service and redis-server for the global rate limit end-to-end test (hack/ratelimit)"
RATELIMIT_BIN="$(nice -n 10 hack/ratelimit/build.sh)/ratelimit"
export RATELIMIT_BIN
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The test starts its own on a free port: not the distribution's service.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
fi
REDIS_SERVER="$(command -v redis-server)"
export REDIS_SERVER
echo "RATELIMIT_BIN=$RATELIMIT_BIN REDIS_SERVER=$REDIS_SERVER"
# --- end of global rate limit

echo "== go test -race"
go test -race -count=1 ./...

echo "== fuzz (bounded)"
hack/fuzz.sh "${FUZZTIME:-10s}"
