"""Unpack a Go toolchain from the Go module proxy (``golang.org/toolchain``) into a directory.

Used by deploy/livekit/Dockerfile's build stage: the proxy serves every Go release as a
module zip, so no Go image and no image registry are needed. Standard library only.

Usage: python3 fetch_go_toolchain.py VERSION DEST   (e.g. 1.26.8 /go/toolchain); the proxy
is the first entry of ``$GOPROXY`` (default https://proxy.golang.org).
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import sys
import urllib.request
import zipfile


def main(version: str, dest: str) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0].rstrip("/")
    name = f"v0.0.1-go{version}.linux-{arch}"
    with urllib.request.urlopen(f"{proxy}/golang.org/toolchain/@v/{name}.zip", timeout=600) as r:
        archive = zipfile.ZipFile(io.BytesIO(r.read()))
    prefix = f"golang.org/toolchain@{name}/"
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        target = os.path.join(dest, info.filename[len(prefix) :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(target, (info.external_attr >> 16) & 0o777 or 0o644)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
