#!/usr/bin/env bash
# Builds promtool (Prometheus's rule checker and unit-test runner) from its Go module at a
# pinned version, for checking and testing the alert rules in deploy/observability/
# (tests/integration/test_alert_rules.py: `promtool check rules`, `promtool test rules`).
#
# Output: $PROMTOOL_BIN, default <repo>/.cache/bin/promtool. Does nothing when that binary
# already reports the pinned version, so CI and test fixtures can call it every time.
# Needs only Go (>= the module's go directive) and the Go module proxy; runs unattended.
#
# Prometheus 3.x is published to the module proxy as v0.3XX.Y (Prometheus v3.XX.Y). Built
# with `go install .../cmd/promtool@<version>` (its go.mod has no replace directives), with
# GOBIN pointing at a scratch directory next to the output, then moved into place, so a
# half-written binary is never seen under the final name. The -X flags set the version string
# `promtool --version` prints (what Prometheus's own build sets through promu). The
# `remove_all_sd` tag (Prometheus's own build option) leaves out the cloud service-discovery
# plugins (AWS, Azure, GCE...): rule checks and tests do not use them, and without their SDKs
# there is much less to download and compile.
set -euo pipefail

PROMETHEUS_MODULE_VERSION="v0.316.0"
MODULE="github.com/prometheus/prometheus"
# The release that module version is: v0.3XX.Y is Prometheus v3.XX.Y.
minor="${PROMETHEUS_MODULE_VERSION#v0.3}"
RELEASE="3.$((10#${minor%%.*})).${PROMETHEUS_MODULE_VERSION##*.}"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${PROMTOOL_BIN:-$root/.cache/bin/promtool}"

installed_version() {
  [ -x "$out" ] && "$out" --version 2>/dev/null | head -n 1 || true
}

if [[ "$(installed_version)" == *"version ${RELEASE} "* ]]; then
  echo "promtool ${RELEASE} already built: $out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed; it is needed to build promtool ${RELEASE}" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# Test fixtures in parallel processes may call this at once: build once, under a lock.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [[ "$(installed_version)" == *"version ${RELEASE} "* ]]; then
  echo "promtool ${RELEASE} already built: $out"
  exit 0
fi

# A local toolchain only: an automatic toolchain download would need hosts CI cannot reach.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

start=$(date +%s)
echo "building promtool ${RELEASE} (${MODULE} ${PROMETHEUS_MODULE_VERSION}) into $out" \
  "(first build takes a few minutes)"
scratch="$(mktemp -d "$(dirname "$out")/.promtool-build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
ldflags="-s -w"
ldflags+=" -X github.com/prometheus/common/version.Version=${RELEASE}"
ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
ldflags+=" -X github.com/prometheus/common/version.Revision=${PROMETHEUS_MODULE_VERSION}"
GOBIN="$scratch" CGO_ENABLED=0 go install -trimpath -tags netgo,remove_all_sd -ldflags "$ldflags" \
  "${MODULE}/cmd/promtool@${PROMETHEUS_MODULE_VERSION}"
mv -f "$scratch/promtool" "$out"
got="$(installed_version)"
if [[ "$got" != *"version ${RELEASE} "* ]]; then
  echo "error: built promtool reports '${got}', expected version ${RELEASE}" >&2
  exit 1
fi
echo "built ${got} in $(($(date +%s) - start)) s: $out"
