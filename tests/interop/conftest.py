"""Fixtures of the interop suite: a sandbox gateway process, WAV files, built drivers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop import runner


def require_or_skip(reason: str) -> None:
    """Skip locally; in CI (CI=true) a missing toolchain is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run every language)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def interop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def wavs(interop_dir: Path) -> dict[str, str]:
    return runner.make_wavs(interop_dir / "wav")


@pytest.fixture(scope="session")
def shared_gateway(interop_dir: Path) -> Iterator[runner.GatewayProcess]:
    """One gateway for every scenario that does not stop it."""
    gw = runner.GatewayProcess(interop_dir).start()
    try:
        yield gw
    finally:
        gw.stop()


class Drivers:
    """Builds each language's driver once per session (the first time it is needed)."""

    def __init__(self) -> None:
        self._built: dict[str, list[str] | Exception] = {}

    def command(self, lang: str) -> list[str]:
        tool = runner.missing_toolchain(lang)
        if tool is not None:
            require_or_skip(f"{lang} driver needs {tool}, which is not installed")
        if lang not in self._built:
            try:
                self._built[lang] = runner.build_driver(lang)
            except Exception as exc:  # reported by every test of the language
                self._built[lang] = exc
        built = self._built[lang]
        if isinstance(built, Exception):
            pytest.fail(f"building the {lang} driver failed: {built}")
        return built


@pytest.fixture(scope="session")
def drivers() -> Drivers:
    return Drivers()
