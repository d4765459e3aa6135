#!/usr/bin/env bash
# Builds the real kube-apiserver, etcd and kubectl (see go.mod for versions)
# into .cache/kube/<sha256 of hack/kube/go.sum>/ and prints that folder. When
# the three binaries are already there, it only prints the folder, so callers
# can always run it:
#
#   export KUBEBUILDER_ASSETS="$(hack/kube/build.sh)"
#
# A cold build takes about 4 minutes on 2 cores; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="$(sha256sum "$here/go.sum" | cut -c1-16)"
out="$root/.cache/kube/$key"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -x "$out/kubectl" ]]; then
  echo "$out"
  exit 0
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
if [[ -z "$k8s_version" ]]; then
  echo "hack/kube/build.sh: no k8s.io/kubernetes version in go.mod" >&2
  exit 1
fi
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

echo "== building kube-apiserver, etcd, kubectl ($k8s_version) into $out" >&2
tmp="$(mktemp -d "$root/.cache/kube-build.XXXXXX" 2>/dev/null || { mkdir -p "$root/.cache" && mktemp -d "$root/.cache/kube-build.XXXXXX"; })"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cd "$here"
start=$SECONDS
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "== built in $((SECONDS - start))s" >&2
echo "$out"
