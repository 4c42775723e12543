#!/usr/bin/env bash
# Builds the LiveKit SFU (livekit-server) from its Go module at a pinned version, for the Akool
# emulator, the sandbox and the tests (emulators/livekit_server.py runs it on loopback).
#
# Output: $LIVEKIT_SERVER_BIN, default <repo>/.cache/bin/livekit-server. Does nothing when that
# binary already reports the pinned version, so CI and test fixtures can call it every time.
# Needs only Go (>= the module's go directive) and the Go module proxy; runs unattended.
#
# Why not `go install ...@version`: livekit-server's go.mod has replace directives (its pion
# forks), which `go install module@version` refuses. So the module source is fetched through
# the module cache, copied to a scratch directory and built there as the main module.
#
# Why v1.13.5: later tags (v1.13.6+) pin pseudo-versions of livekit/protocol and forks such as
# livekit/webrtc-pion ...-warp.N that the module proxy does not serve (403 "This module version
# is not available"), so they cannot be built from the proxy alone.
set -euo pipefail

LIVEKIT_VERSION="v1.13.5"
MODULE="github.com/livekit/livekit-server"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${LIVEKIT_SERVER_BIN:-$root/.cache/bin/livekit-server}"
want="version ${LIVEKIT_VERSION#v}"

installed_version() {
  [ -x "$out" ] && "$out" --version 2>/dev/null || true
}

if [[ "$(installed_version)" == *"$want" ]]; then
  echo "livekit-server ${LIVEKIT_VERSION} already built: $out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed; it is needed to build livekit-server ${LIVEKIT_VERSION}" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# Test fixtures in parallel processes may call this at once: build once, under a lock.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [[ "$(installed_version)" == *"$want" ]]; then
  echo "livekit-server ${LIVEKIT_VERSION} already built: $out"
  exit 0
fi

# A local toolchain only: an automatic toolchain download would need hosts CI cannot reach.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

start=$(date +%s)
echo "building livekit-server ${LIVEKIT_VERSION} into $out (first build takes a few minutes)"
src_dir="$(go mod download -json "${MODULE}@${LIVEKIT_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$src_dir" ] || [ ! -d "$src_dir" ]; then
  echo "error: could not download ${MODULE}@${LIVEKIT_VERSION} from the Go module proxy" >&2
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r "$src_dir" "$scratch/src"
chmod -R u+w "$scratch/src"
(
  cd "$scratch/src"
  go build -trimpath -ldflags "-s -w" -o "$out.tmp" ./cmd/server
)
mv -f "$out.tmp" "$out"
echo "built $("$out" --version) in $(($(date +%s) - start)) s: $out"
