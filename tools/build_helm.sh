#!/usr/bin/env bash
# Builds Helm (the helm CLI) from its Go module at a pinned version, for linting and rendering
# the chart in deploy/helm/avatar-gateway (tests/deploy/test_helm_chart.py, `make helm`).
#
# Output: $HELM_BIN, default <repo>/.cache/bin/helm. Does nothing when that binary already
# reports the pinned version, so CI and test fixtures can call it every time.
# Needs only Go (>= the module's go directive) and the Go module proxy; runs unattended.
#
# Built with `go install helm.sh/helm/v3/cmd/helm@<version>` (helm's go.mod has no replace
# directives, unlike livekit-server's), with GOBIN pointing at a scratch directory next to the
# output, then moved into place, so a half-written binary is never seen under the final name.
# The -X flags set what helm's own Makefile sets: its version string (otherwise a `go install`
# build may report only "v3.21") and the Kubernetes version it assumes when no cluster is
# reachable (`helm template` without --kube-version; otherwise an old built-in default).
set -euo pipefail

HELM_VERSION="v3.21.4"
MODULE="helm.sh/helm/v3"
# The Kubernetes version helm v3.21.4 is built against (its go.mod: k8s.io/client-go v0.36.2),
# as its Makefile derives it (client-go v0.X -> Kubernetes 1.X).
K8S_MAJOR="1"
K8S_MINOR="36"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${HELM_BIN:-$root/.cache/bin/helm}"

installed_version() {
  [ -x "$out" ] && "$out" version --template '{{.Version}}' 2>/dev/null || true
}

if [ "$(installed_version)" = "$HELM_VERSION" ]; then
  echo "helm ${HELM_VERSION} already built: $out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed; it is needed to build helm ${HELM_VERSION}" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# Test fixtures in parallel processes may call this at once: build once, under a lock.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [ "$(installed_version)" = "$HELM_VERSION" ]; then
  echo "helm ${HELM_VERSION} already built: $out"
  exit 0
fi

# A local toolchain only: an automatic toolchain download would need hosts CI cannot reach.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

start=$(date +%s)
echo "building helm ${HELM_VERSION} into $out (first build takes a few minutes)"
scratch="$(mktemp -d "$(dirname "$out")/.helm-build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
ldflags="-s -w"
ldflags+=" -X ${MODULE}/internal/version.version=${HELM_VERSION}"
ldflags+=" -X ${MODULE}/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X ${MODULE}/${pkg}.k8sVersionMajor=${K8S_MAJOR}"
  ldflags+=" -X ${MODULE}/${pkg}.k8sVersionMinor=${K8S_MINOR}"
done
GOBIN="$scratch" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "${MODULE}/cmd/helm@${HELM_VERSION}"
mv -f "$scratch/helm" "$out"
got="$(installed_version)"
if [ "$got" != "$HELM_VERSION" ]; then
  echo "error: built helm reports version '${got}', expected ${HELM_VERSION}" >&2
  exit 1
fi
echo "built helm ${got} in $(($(date +%s) - start)) s: $out"
