#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each (default 10s). Crashes
# found are written to testdata/fuzz/ by go test and become regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-10s}"
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "-- $pkg $target ($fuzztime)"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
