#!/usr/bin/env bash
# Prepares this machine to build and run the project's images without any image registry:
# podman (+ runc, overlay, netavark), its configuration, podman-compose, and a local Debian
# base image with Python made by mmdebstrap from the Debian mirror apt already uses.
#
# Our machines reach the package registries but no container registry, so the Dockerfiles'
# default bases (python:3.11-slim-bookworm) cannot be pulled; CI builds with
# BASE_IMAGE=localhost/debian-python:bookworm instead (docs/deployment.md §4).
# Idempotent: every step is skipped when already done. Needs root (or sudo) for apt.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE_LOCAL:-localhost/debian-python:bookworm}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi

need=""
for cmd in podman runc mmdebstrap fuse-overlayfs slirp4netns newuidmap; do
  command -v "$cmd" >/dev/null 2>&1 || need="$need $cmd"
done
if [ -n "$need" ]; then
  echo "installing podman and friends (missing:$need)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    podman runc fuse-overlayfs slirp4netns uidmap mmdebstrap >/dev/null
fi

# crun cannot set RLIMIT_NOFILE without CAP_SYS_RESOURCE and does not support hybrid cgroups
# here; runc with explicit ulimits works.
conf=/etc/containers/containers.conf
want="$(printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
  "$(ulimit -Hn)" "$(ulimit -Hn)")"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  printf '%s\n' "$want" | $SUDO tee "$conf" >/dev/null
fi

if ! podman image exists "$BASE_IMAGE"; then
  # Without a terminal mmdebstrap reads its sources from stdin: name the mirror explicitly.
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  echo "building $BASE_IMAGE with mmdebstrap from $mirror (about a minute)"
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$scratch/rootfs.tar" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    </dev/null >/dev/null
  podman import --change 'CMD ["/bin/bash"]' "$scratch/rootfs.tar" "$BASE_IMAGE" >/dev/null
fi
echo "containers ready: $(podman --version), base image $BASE_IMAGE"
