"""The Python example (clients/python/examples/drive_wav.py) runs against the sandbox gateway
with no --avatar: it takes the vendor's first listed avatar, or stops with a clear message
when the vendor lists none (Tencent)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.interop import runner

pytestmark = pytest.mark.interop

EXAMPLE = runner.ROOT / "clients/python/examples/drive_wav.py"


def run_example(gateway: runner.GatewayProcess, vendor: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--target", gateway.target, "--vendor", vendor],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("vendor", ["zegocloud", "akool"])
def test_example_drives_the_first_listed_avatar(
    vendor: str, shared_gateway: runner.GatewayProcess
) -> None:
    out = run_example(shared_gateway, vendor)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "event: speech_started" in out.stdout
    assert "drive ended: OK" in out.stdout
    assert "closed: SESSION_STATE_CLOSED" in out.stdout


def test_example_names_the_vendor_that_lists_no_avatars(
    shared_gateway: runner.GatewayProcess,
) -> None:
    out = run_example(shared_gateway, "tencent")
    assert out.returncode == 1
    assert "vendor tencent lists no avatars: pass --avatar" in out.stderr
