#!/usr/bin/env bash
# Builds Istio's echo server (istio.io/istio/pkg/test/echo/cmd/server, as
# "echo") and hboneclient (a client on Istio's pkg/hbone dialer) into
# .cache/istio-interop/<sha256 of hack/istio-interop/go.sum and the
# client's source>/ and prints that folder; when both are there it only
# prints the folder. The HBONE interop test reads it from ISTIO_INTEROP_BIN:
#
#   ISTIO_INTEROP_BIN="$(hack/istio-interop/build.sh)"
#
# A cold build takes a few minutes on 2 cores; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(cat "$here/go.sum" "$here/hboneclient/main.go" | sha256sum | cut -c1-16)"
out="$root/.cache/istio-interop/$key"
if [[ -x "$out/echo" && -x "$out/hboneclient" ]]; then
  echo "$out"
  exit 0
fi
echo "== building Istio's echo server and HBONE client into $out" >&2
mkdir -p "$out"
cd "$here"
start=$SECONDS
go build -trimpath -o "$out/echo.tmp.$$" istio.io/istio/pkg/test/echo/cmd/server >&2
go build -trimpath -o "$out/hboneclient.tmp.$$" ./hboneclient >&2
mv "$out/echo.tmp.$$" "$out/echo"
mv "$out/hboneclient.tmp.$$" "$out/hboneclient"
echo "== built in $((SECONDS - start))s" >&2
echo "$out"
