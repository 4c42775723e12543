#!/usr/bin/env bash
# Builds Jaeger (the `jaeger` binary: collector, in-memory storage and query API in one process)
# from its Go module at a pinned version, for the tracing test (tests/integration/test_tracing.py
# runs it on loopback and reads the gateway's traces back from its query API).
#
# Output: $JAEGER_BIN, default <repo>/.cache/bin/jaeger. Does nothing when that binary already
# reports the pinned version, so CI and test fixtures can call it every time.
# Needs only Go (>= the module's go directive) and the Go module proxy; runs unattended.
#
# The version and every dependency are pinned by tools/jaeger/go.mod + go.sum (a Go `tool`
# directive, as `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0` wrote it).
# `go install module@version` is not used: jaeger's go.mod has a replace directive (sarama),
# which `go install module@version` refuses; tools/jaeger/go.mod carries the same replace.
set -euo pipefail

JAEGER_VERSION="v1.75.0"
PACKAGE="github.com/jaegertracing/jaeger/cmd/jaeger"

root="$(cd "$(dirname "$0")/.." && pwd)"
module_dir="$root/tools/jaeger"
out="${JAEGER_BIN:-$root/.cache/bin/jaeger}"

installed_version() {
  [ -x "$out" ] && "$out" version 2>/dev/null | sed -n 's/.*"gitVersion":"\([^"]*\)".*/\1/p' || true
}

if [ "$(installed_version)" = "$JAEGER_VERSION" ]; then
  echo "jaeger ${JAEGER_VERSION} already built: $out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed; it is needed to build jaeger ${JAEGER_VERSION}" >&2
  exit 1
fi
if ! grep -q "github.com/jaegertracing/jaeger ${JAEGER_VERSION}" "$module_dir/go.mod"; then
  echo "error: tools/jaeger/go.mod does not pin jaeger ${JAEGER_VERSION}" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# Test fixtures in parallel processes may call this at once: build once, under a lock.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [ "$(installed_version)" = "$JAEGER_VERSION" ]; then
  echo "jaeger ${JAEGER_VERSION} already built: $out"
  exit 0
fi

# A local toolchain only: an automatic toolchain download would need hosts CI cannot reach.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false -mod=readonly"

start=$(date +%s)
echo "building jaeger ${JAEGER_VERSION} into $out (first build takes several minutes)"
# What jaeger's own Makefile sets (scripts/makefiles/BuildInfo.mk): the version `jaeger version`
# reports, read back above.
ldflags="-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=${JAEGER_VERSION}"
(
  cd "$module_dir"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$PACKAGE"
)
mv -f "$out.tmp" "$out"
got="$(installed_version)"
if [ "$got" != "$JAEGER_VERSION" ]; then
  echo "error: built jaeger reports version '${got}', expected ${JAEGER_VERSION}" >&2
  exit 1
fi
echo "built jaeger ${got} in $(($(date +%s) - start)) s: $out"
