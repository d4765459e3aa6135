#!/usr/bin/env bash
# Builds the real istiod (pilot-discovery, from the istio.io/istio version in
# go.mod) and ztunnel-xds (./ztunnel-xds: asks istiod's plaintext xDS port what
# a ztunnel would be told) into .cache/istiod/<sha256 of hack/istiod/go.sum>/
# and prints that folder. pilot-discovery is built once per go.sum (about 9
# minutes on 2 cores); ztunnel-xds is rebuilt when its source changes (seconds).
# Callers can always run it:
#
#   export ISTIOD_BIN_DIR="$(hack/istiod/build.sh)"
#
# Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(sha256sum "$here/go.sum" | cut -c1-16)"
out="$root/.cache/istiod/$key"
cd "$here"

if [[ ! -x "$out/pilot-discovery" ]]; then
  istio_version="$(awk '$1 == "istio.io/istio" && $2 ~ /^v/ {print $2; exit}' go.mod)"
  if [[ -z "$istio_version" ]]; then
    echo "hack/istiod/build.sh: no istio.io/istio version in go.mod" >&2
    exit 1
  fi
  rev="${istio_version##*-}"
  ldflags="-s -w \
 -X istio.io/istio/pkg/version.buildVersion=1.31-dev \
 -X istio.io/istio/pkg/version.buildGitRevision=$rev \
 -X istio.io/istio/pkg/version.buildTag=1.31-dev \
 -X istio.io/istio/pkg/version.buildStatus=Clean"
  echo "== building pilot-discovery (istio.io/istio $istio_version) into $out" >&2
  mkdir -p "$out"
  start=$SECONDS
  go build -trimpath -ldflags "$ldflags" -o "$out/pilot-discovery.tmp" istio.io/istio/pilot/cmd/pilot-discovery >&2
  mv "$out/pilot-discovery.tmp" "$out/pilot-discovery"
  echo "== pilot-discovery built in $((SECONDS - start))s" >&2
fi

src="$(cat go.sum ztunnel-xds/*.go | sha256sum | cut -c1-16)"
if [[ ! -x "$out/ztunnel-xds" || "$(cat "$out/ztunnel-xds.src" 2>/dev/null)" != "$src" ]]; then
  echo "== building ztunnel-xds into $out" >&2
  mkdir -p "$out"
  go build -trimpath -ldflags "-s -w" -o "$out/ztunnel-xds.tmp" ./ztunnel-xds >&2
  mv "$out/ztunnel-xds.tmp" "$out/ztunnel-xds"
  echo "$src" >"$out/ztunnel-xds.src"
fi
echo "$out"
