#!/usr/bin/env bash
# Builds the helm command (version in go.mod) into
# .cache/helm/<sha256 of hack/helm/go.sum>/ and prints that folder; when the
# binary is already there it only prints the folder.
#
#   export HELM_BIN="$(hack/helm/build.sh)/helm"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(sha256sum "$here/go.sum" | cut -c1-16)"
out="$root/.cache/helm/$key"
if [[ -x "$out/helm" ]]; then
  echo "$out"
  exit 0
fi
echo "== building helm into $out" >&2
mkdir -p "$out"
cd "$here"
go build -trimpath -ldflags "-s -w" -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm >&2
mv "$out/helm.tmp" "$out/helm"
echo "$out"
