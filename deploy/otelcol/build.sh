#!/bin/sh
# Builds otelcol-survey, the Collector distribution of builder.yaml, from the
# Go sources in otelcol-survey/ (go.mod and go.sum pin every module) into
# ${CARGO_TARGET_DIR:-target}/otelcol-survey. Skips the build when the
# sources and the Go version are those of the binary already there.
#   deploy/otelcol/build.sh            -> prints the binary's path
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
binary="$target/otelcol-survey"
stamp="$binary.sources"

if ! command -v go >/dev/null 2>&1; then
    echo "deploy/otelcol/build.sh: Go is not installed; otelcol-survey needs Go 1.26 or later (go.mod)" >&2
    exit 1
fi
sources="$here/otelcol-survey"
# The sources, the toolchain and target, and how this script builds.
fingerprint=$( (go version; go env GOOS GOARCH CGO_ENABLED GOFLAGS; cat "$0";
    cd "$sources" && cat go.mod go.sum ./*.go) | sha256sum | cut -d' ' -f1)
if [ -x "$binary" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    echo "$binary"
    exit 0
fi
mkdir -p "$target"
echo "building otelcol-survey (first build: a few minutes)" >&2
partial=$(mktemp "$binary.XXXXXX")
trap 'rm -f "$partial"' EXIT
# -mod=readonly: go.mod and go.sum as committed, never rewritten.
(cd "$sources" && GOFLAGS="$(go env GOFLAGS) -mod=readonly" go build -trimpath -ldflags="-s -w" -o "$partial" .)
mv "$partial" "$binary"
echo "$fingerprint" > "$stamp"
echo "$binary"
