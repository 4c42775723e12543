"""The dependency direction of docs/architecture.md §1, checked on the source.

server (``gateway``) → ``core`` ← vendor plugins (``adapters.<vendor>``). Every import is
read from the syntax tree (module level, function level and ``TYPE_CHECKING`` alike), so a
lazy import cannot hide an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("core", "gateway", "adapters", "emulators", "tests", "bench", "demo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Project modules ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    if package is None:
        package = module_name(path)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                out.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.add(node.module)
    return {name for name in out if name.split(".")[0] in PROJECT}


def allowed(importer: str, imported: str) -> bool:
    """Whether module ``importer`` may import module ``imported``."""
    top = importer.split(".")[0]
    target = imported.split(".")[0]
    if top == "core":
        return target == "core"
    if top == "gateway":
        return target in ("core", "gateway")
    if top == "emulators":
        return target == "emulators"
    if top == "adapters":
        parts = importer.split(".")
        if len(parts) == 1:  # the namespace package itself
            return False
        own = ".".join(parts[:2])
        if target == "core" or imported == own or imported.startswith(own + "."):
            return True
        # The sandbox module of a vendor starts that vendor's emulator (and only it, plus the
        # emulators' shared runners), and is imported only when a sandbox asks for it.
        if parts[2:3] == ["sandbox"] and target == "emulators":
            vendor = parts[1]
            return imported in (f"emulators.{vendor}", "emulators.livekit_server")
        return False
    return True


def edges() -> list[tuple[str, str]]:
    out = []
    for package in ("core", "gateway", "adapters", "emulators"):
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = module_name(path)
            out.extend((importer, imported) for imported in sorted(imports_of(path)))
    return out


def test_every_import_follows_the_dependency_direction() -> None:
    wrong = [f"{a} imports {b}" for a, b in edges() if not allowed(a, b)]
    assert not wrong, "imports against the dependency direction:\n" + "\n".join(wrong)


def test_the_walk_sees_the_edges_it_must_forbid() -> None:
    # The checker itself: edges that must be refused are refused, and the graph is not empty
    # (a walk that found nothing would pass the test above vacuously).
    found = edges()
    assert ("gateway.server", "core.contract") in found
    assert any(a.startswith("adapters.tencent") and b.startswith("core") for a, b in found)
    assert not allowed("core.contract", "gateway.config")
    assert not allowed("adapters.zegocloud.api", "gateway.errors")
    assert not allowed("adapters.zegocloud.api", "adapters.tencent.api")
    assert not allowed("adapters.zegocloud.adapter", "emulators.zegocloud")
    assert not allowed("adapters.zegocloud.sandbox", "emulators.tencent")
    assert not allowed("gateway.vendors", "adapters.zegocloud")
    assert not allowed("gateway.sandbox", "emulators.zegocloud")
    assert not allowed("emulators.tencent", "adapters.tencent.api")
    assert allowed("adapters.akool.sandbox", "emulators.livekit_server")
