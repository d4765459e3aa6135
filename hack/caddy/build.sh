#!/usr/bin/env bash
# Builds Caddy (the version in go.mod: the standard distribution, with the
# proxy_protocol listener wrapper) into .cache/caddy/<sha256 of
# hack/caddy/go.sum>/ and prints that folder; when the binary is already
# there it only prints the folder. meshbench runs it for its "caddy" target:
#
#   CADDY="$(hack/caddy/build.sh)/caddy"
#
# Debian 12's caddy package (2.6.2) has no proxy_protocol listener wrapper,
# hence the build. A cold build takes a few minutes on 2 cores; progress goes
# to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(sha256sum "$here/go.sum" | cut -c1-16)"
out="$root/.cache/caddy/$key"
if [[ -x "$out/caddy" ]]; then
  echo "$out"
  exit 0
fi
version="$(awk '$1 == "require" && $2 == "github.com/caddyserver/caddy/v2" {print $3; exit}' "$here/go.mod")"
echo "== building caddy $version into $out" >&2
mkdir -p "$out"
cd "$here"
start=$SECONDS
go build -trimpath -ldflags "-s -w" -o "$out/caddy.tmp.$$" github.com/caddyserver/caddy/v2/cmd/caddy >&2
mv "$out/caddy.tmp.$$" "$out/caddy"
echo "== built in $((SECONDS - start))s" >&2
echo "$out"
