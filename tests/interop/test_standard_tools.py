"""Standard gRPC tools work against the gateway: grpcurl (reflection, a unary call, rich
error details) and grpc-health-probe (the Kubernetes-style health check)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.interop import runner
from tests.interop.conftest import require_or_skip

pytestmark = pytest.mark.interop

SERVICE = "avatar.gateway.v1.AvatarGateway"


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    if shutil.which("go") is None and not all(
        (runner.BIN / n).exists() for n in runner.STANDARD_TOOLS
    ):
        require_or_skip("grpcurl and grpc-health-probe need a Go toolchain to build")
    return runner.ensure_standard_tools()


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.timeout(900)  # the first use builds the tools
def test_grpcurl_lists_services_through_reflection(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    tls = shared_gateway.client.grpcurl_args()
    out = run(tools["grpcurl"], *tls, shared_gateway.target, "list")
    assert out.returncode == 0, out.stderr
    services = out.stdout.split()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services


def test_grpcurl_describes_the_service(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    out = run(
        tools["grpcurl"],
        *shared_gateway.client.grpcurl_args(),
        shared_gateway.target,
        "describe",
        SERVICE,
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert f"{SERVICE} is a service:" in text
    pkg = ".avatar.gateway.v1"
    assert (
        f"rpc Drive ( stream {pkg}.DriveRequest ) returns ( stream {pkg}.DriveResponse );" in text
    )
    assert (
        f"rpc ListVendors ( {pkg}.ListVendorsRequest ) returns ( {pkg}.ListVendorsResponse );"
        in text
    )
    msg = run(
        tools["grpcurl"],
        *shared_gateway.client.grpcurl_args(),
        shared_gateway.target,
        "describe",
        "avatar.gateway.v1.DriveConfig",
    )
    assert msg.returncode == 0, msg.stderr
    assert "string session = 1;" in msg.stdout


def test_grpcurl_calls_list_vendors(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    out = run(
        tools["grpcurl"],
        *shared_gateway.client.grpcurl_args(),
        "-d",
        "{}",
        shared_gateway.target,
        f"{SERVICE}/ListVendors",
    )
    assert out.returncode == 0, out.stderr
    vendors = {v["vendor"]: v for v in json.loads(out.stdout)["vendors"]}
    assert "zegocloud" in vendors
    assert vendors["zegocloud"]["name"] == "vendors/zegocloud"
    assert vendors["zegocloud"]["sandbox"] is True


def test_grpcurl_shows_error_info(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    name = "sessions/00000000000000000000000000000000"
    out = run(
        tools["grpcurl"],
        *shared_gateway.client.grpcurl_args(),
        "-format-error",
        "-d",
        json.dumps({"name": name}),
        shared_gateway.target,
        f"{SERVICE}/GetSession",
    )
    assert out.returncode != 0
    status = json.loads(out.stdout or out.stderr)
    assert status["code"] == 5  # NOT_FOUND
    [info] = [
        d for d in status["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    ]
    assert info["reason"] == "SESSION_NOT_FOUND"
    assert info["domain"] == "avatargateway.dev"
    assert info["metadata"] == {"session": name}


def test_grpc_health_probe_reports_serving(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    # Health needs no credential, but the TLS handshake (the probe's -tls flags).
    out = run(
        tools["grpc-health-probe"],
        f"-addr={shared_gateway.target}",
        "-tls",
        f"-tls-ca-cert={shared_gateway.client.ca_file}",
        f"-tls-server-name={shared_gateway.client.server_name}",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status: SERVING" in out.stdout + out.stderr


def test_grpcurl_without_the_credential_is_unauthenticated(
    tools: dict[str, Path], shared_gateway: runner.GatewayProcess
) -> None:
    """Reflection and calls need the credential too (only health is open)."""
    no_key = ["-cacert", shared_gateway.client.ca_file, "-servername", "localhost"]
    for args in (["list"], ["-d", "{}", f"{SERVICE}/ListVendors"]):
        *flags, last = args
        out = run(tools["grpcurl"], *no_key, *flags, shared_gateway.target, last)
        assert out.returncode != 0, out.stdout
        assert "Unauthenticated" in out.stdout + out.stderr, out.stdout + out.stderr
