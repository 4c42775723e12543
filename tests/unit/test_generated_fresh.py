"""The committed generated clients are what the pinned generators make from protos/ today.

Regenerates each language into a temporary directory with tools/gen_clients.sh (which
installs its pinned plugins when missing) and compares file by file with the committed
tree: a stale, missing or extra generated file fails with the command that fixes it.
Python always runs; Go, TypeScript and Java run where their toolchains are installed
(they are in CI).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Directories that hold only generated code, per language.
GENERATED = {
    "python": "clients/python/src/avatar/gateway/v1",
    "go": "clients/go/avatar/gateway/v1",
    "typescript": "clients/typescript/src/gen",
    "java": "clients/java/src/main/java/com/avatargateway/gateway/v1",
}
TOOLCHAINS = {"python": (), "go": ("go",), "typescript": ("node", "npm"), "java": ("mvn",)}


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.timeout(900)  # a fresh machine installs the pinned plugins first
@pytest.mark.parametrize("lang", list(GENERATED))
def test_generated_code_is_fresh(lang: str, tmp_path: Path) -> None:
    missing = [tool for tool in TOOLCHAINS[lang] if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{lang} toolchain not installed ({', '.join(missing)})")
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "tools/gen_clients.sh"), "--lang", lang, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    assert proc.returncode == 0, f"gen_clients.sh failed:\n{proc.stdout}\n{proc.stderr}"

    fresh = _files(tmp_path / GENERATED[lang])
    committed = _files(ROOT / GENERATED[lang])
    assert fresh, f"the generator wrote nothing under {GENERATED[lang]}"
    problems = []
    for name in sorted(fresh.keys() - committed.keys()):
        problems.append(f"missing (not committed): {GENERATED[lang]}/{name}")
    for name in sorted(committed.keys() - fresh.keys()):
        problems.append(f"extra (no longer generated): {GENERATED[lang]}/{name}")
    for name in sorted(fresh.keys() & committed.keys()):
        new, old = fresh[name].read_bytes(), committed[name].read_bytes()
        if new != old:
            diff = difflib.unified_diff(
                old.decode(errors="replace").splitlines(),
                new.decode(errors="replace").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
                n=1,
            )
            problems.append(f"stale: {GENERATED[lang]}/{name}\n" + "\n".join(list(diff)[:30]))
    assert not problems, (
        f"{lang} stubs are stale; run `tools/gen_clients.sh --lang {lang}` and commit:\n"
        + "\n".join(problems)
    )
