"""The Python example (clients/python/examples/drive_wav.py) runs against the sandbox gateway
with no --avatar: it takes the vendor's first listed avatar (Tencent lists its configured
project), and stops with a clear message when a vendor lists none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop import runner

pytestmark = pytest.mark.interop

EXAMPLE = runner.ROOT / "clients/python/examples/drive_wav.py"


def run_example(gateway: runner.GatewayProcess, vendor: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # TLS with the gateway's CA, and its API key, as a production caller would.
        [
            sys.executable,
            str(EXAMPLE),
            "--target",
            gateway.target,
            "--ca-file",
            gateway.client.ca_file,
            "--server-name",
            gateway.client.server_name,
            "--vendor",
            vendor,
        ],
        env={**os.environ, "AVATAR_GATEWAY_CREDENTIAL": gateway.client.credential or ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("vendor", ["zegocloud", "tencent", "akool"])
def test_example_drives_the_first_listed_avatar(
    vendor: str, shared_gateway: runner.GatewayProcess
) -> None:
    out = run_example(shared_gateway, vendor)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "event: speech_started" in out.stdout
    assert "drive ended: OK" in out.stdout
    assert "closed: SESSION_STATE_CLOSED" in out.stdout


def test_example_names_the_vendor_that_lists_no_avatars(tmp_path: Path) -> None:
    """A vendor that lists no avatar (the test-only echo plugin): one clear line, exit 1."""
    gateway = runner.GatewayProcess(
        tmp_path,
        extra_env={
            "AVATAR_GATEWAY_PLUGINS": "tests.plugins.echo",
            "AVATAR_GATEWAY_SANDBOX_VENDORS": "echo",
        },
    ).start()
    try:
        out = run_example(gateway, "echo")
    finally:
        gateway.stop()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "vendor echo lists no avatars: pass --avatar" in out.stderr
