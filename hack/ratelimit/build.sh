#!/usr/bin/env bash
# Builds Envoy's rate limit service (github.com/envoyproxy/ratelimit, its
# src/service_cmd main, at the version in go.mod) into
# .cache/ratelimit/<sha256 of hack/ratelimit/go.sum>/ratelimit and prints that
# folder. Built once per go.sum; callers can always run it:
#
#   export RATELIMIT_BIN="$(hack/ratelimit/build.sh)/ratelimit"
#
# The global rate limit end-to-end test runs it against a real redis-server
# (hack/test.sh installs Debian's). Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(sha256sum "$here/go.sum" | cut -c1-16)"
out="$root/.cache/ratelimit/$key"
cd "$here"

if [[ ! -x "$out/ratelimit" ]]; then
  version="$(grep -oE 'github.com/envoyproxy/ratelimit v[^ ]+' go.mod | head -1 | cut -d" " -f2)"
  echo "== building ratelimit (github.com/envoyproxy/ratelimit $version) into $out" >&2
  mkdir -p "$out"
  start=$SECONDS
  go build -trimpath -ldflags "-s -w" -o "$out/ratelimit.tmp" github.com/envoyproxy/ratelimit/src/service_cmd >&2
  mv "$out/ratelimit.tmp" "$out/ratelimit"
  echo "== ratelimit built in $((SECONDS - start))s" >&2
fi
echo "$out"
