"""Production mode: vendors only with credentials, never a silent sandbox, a clear first line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc

from emulators.zegocloud import ZegocloudEmulator
from tests.tlsutil import CertificateAuthority

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXIT_CONFIGURATION = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`python -m gateway serve` with only the given AVATAR_GATEWAY_* variables."""

    def __init__(self, *args: str, **env: str) -> None:
        self.port, self.ops, self.callbacks = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_GATEWAY_")}
        self.env.update(
            AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{self.ops}",
            AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{self.callbacks}",
            AVATAR_GATEWAY_PLAINTEXT="true",
            AVATAR_GATEWAY_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.args = args
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Serve:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            *self.args,
            cwd=ROOT,
            env=self.env,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def until(self, event: str) -> list[dict[str, Any]]:
        """Log lines up to the first ``event`` (fails if the process exits first)."""
        assert self.proc is not None and self.proc.stderr is not None
        while not any(line.get("event") == event for line in self.lines):
            raw = await asyncio.wait_for(self.proc.stderr.readline(), 60)
            assert raw, f"serve exited ({await self.proc.wait()}) before {event}: {self.lines}"
            self.lines.append(json.loads(raw))
        return self.lines

    async def exit_code(self) -> int:
        """Wait for the process to exit by itself; collect the rest of its log."""
        assert self.proc is not None and self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), 60)
        self.lines.extend(json.loads(line) for line in rest.splitlines() if line.strip())
        return await asyncio.wait_for(self.proc.wait(), 10)

    async def sigterm(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


async def test_no_vendor_configured_exits_nonzero_with_one_line_naming_the_settings() -> None:
    async with Serve() as serve:
        code = await serve.exit_code()
        assert code == EXIT_CONFIGURATION, serve.lines
        assert len(serve.lines) == 1, serve.lines
        (line,) = serve.lines
        assert line["event"] == "gateway_not_started" and line["level"] == "error"
        reason = str(line["reason"])
        for variable in (
            "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID",
            "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET",
            "AVATAR_GATEWAY_TENCENT__APPKEY",
            "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN",
            "AVATAR_GATEWAY_AKOOL__API_KEY",
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL",
            "--sandbox",
        ):
            assert variable in reason, reason


async def test_configured_vendor_is_live_first_line_names_it_and_its_url(tmp_path: Path) -> None:
    """Credentials from a mounted secrets directory; a half-configured vendor is not offered."""
    emulator = ZegocloudEmulator(app_id=7, server_secret="s3cret", callback_secret="cb")
    await emulator.start()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET").write_text("s3cret\n")
    (secrets_dir / "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET").write_text("cb\n")
    api_url = emulator.rest.base_url + "/"
    serve = Serve(
        AVATAR_GATEWAY_SECRETS_DIR=str(secrets_dir),
        AVATAR_GATEWAY_ZEGOCLOUD__APP_ID="7",
        AVATAR_GATEWAY_ZEGOCLOUD__API_URL=api_url,
        # Tencent with an appkey but no access token: a Secret that mounted only in part.
        AVATAR_GATEWAY_TENCENT__APPKEY="half",
    )
    emulator.callback_url = f"http://127.0.0.1:{serve.callbacks}/callbacks/zegocloud"
    try:
        async with serve:
            lines = await serve.until("gateway_started")
            assert lines[0]["event"] == "vendors_live", lines
            assert lines[0]["mode"] == "production"
            assert lines[0]["vendors"] == {"zegocloud": {"api_url": api_url}}
            assert lines[0]["transport"] == "plaintext"
            assert any(line["event"] == "plaintext_grpc" for line in lines), lines
            (not_offered,) = [line for line in lines if line["event"] == "vendor_not_offered"]
            assert not_offered["vendor"] == "tencent"
            assert "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN" in not_offered["reason"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{serve.port}") as channel:
                stub = pb_grpc.AvatarGatewayStub(channel)
                vendors = (await stub.ListVendors(pb.ListVendorsRequest(), timeout=10)).vendors
                assert [(v.vendor, v.sandbox) for v in vendors] == [("zegocloud", False)]
                # The secret read from the file signs requests the emulator accepts.
                session = await stub.CreateSession(
                    pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
                )
                assert session.state == pb.SESSION_STATE_READY
                await stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
            # The image's HEALTHCHECK: readiness on the ops listener. No /sandbox outside
            # the sandbox; the public listener serves callbacks and nothing else.
            assert await health_command(f"127.0.0.1:{serve.ops}") == 0
            async with httpx.AsyncClient(timeout=10) as http:
                ops, public = f"http://127.0.0.1:{serve.ops}", f"http://127.0.0.1:{serve.callbacks}"
                assert (await http.get(f"{ops}/sandbox")).status_code == 404
                for path in ("/metrics", "/healthz", "/livez", "/sandbox"):
                    assert (await http.get(f"{public}{path}")).status_code == 404, path
            assert await serve.sigterm() == 0
    finally:
        await emulator.stop()


async def test_sandbox_that_cannot_start_any_vendor_exits_nonzero_saying_how_to_fix_it(
    tmp_path: Path,
) -> None:
    serve = Serve(
        "--sandbox",
        AVATAR_GATEWAY_SANDBOX_VENDORS="akool",
        LIVEKIT_SERVER_BIN=str(tmp_path / "no-livekit-server"),
    )
    async with serve:
        code = await serve.exit_code()
    assert code == EXIT_CONFIGURATION, serve.lines
    assert serve.lines[0]["event"] == "sandbox_mode"
    assert serve.lines[-1]["event"] == "gateway_not_started"
    assert "make livekit" in serve.lines[-1]["reason"], serve.lines


async def health_command(target: str) -> int:
    """``avatar-gateway health --target <ops host:port>``: its exit code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "health", "--target", target, cwd=ROOT
    )
    return await asyncio.wait_for(proc.wait(), 30)


ZEGO_ENV = {
    "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "7",
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "s3cret",
    "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": "http://127.0.0.1:9/",
}


async def test_production_without_tls_or_explicit_plaintext_does_not_start() -> None:
    """Plaintext only when asked for: no certificate and no AVATAR_GATEWAY_PLAINTEXT is one
    line naming both ways out, before anything listens."""
    async with Serve(AVATAR_GATEWAY_PLAINTEXT="false", **ZEGO_ENV) as serve:
        code = await serve.exit_code()
    assert code == EXIT_CONFIGURATION, serve.lines
    (line,) = serve.lines
    assert line["event"] == "gateway_not_started", line
    for variable in ("AVATAR_GATEWAY_TLS_CERT_FILE", "AVATAR_GATEWAY_PLAINTEXT=true"):
        assert variable in line["reason"], line


async def test_tls_from_files_the_first_line_says_so(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    cert, key = ca.server_pair().write(tmp_path, "server")
    tls = {
        "AVATAR_GATEWAY_PLAINTEXT": "false",
        "AVATAR_GATEWAY_TLS_CERT_FILE": str(cert),
        "AVATAR_GATEWAY_TLS_KEY_FILE": str(key),
    }
    async with Serve(**tls, **ZEGO_ENV) as serve:
        lines = await serve.until("gateway_started")
        assert lines[0]["event"] == "vendors_live" and lines[0]["transport"] == "tls", lines
        assert not any(line["event"] == "plaintext_grpc" for line in lines), lines
        creds = grpc.ssl_channel_credentials(ca.cert_pem)
        async with grpc.aio.secure_channel(f"127.0.0.1:{serve.port}", creds) as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            assert (await stub.ListVendors(pb.ListVendorsRequest(), timeout=10)).vendors
        # Probes do not need the gRPC port's certificates.
        assert await health_command(f"127.0.0.1:{serve.ops}") == 0
        assert await serve.sigterm() == 0
    # A key that is not the certificate's, or TLS and plaintext both: not started.
    (tmp_path / "other-key.pem").write_bytes(ca.server_pair().key_pem)
    for wrong, says in (
        ({"AVATAR_GATEWAY_TLS_KEY_FILE": str(tmp_path / "other-key.pem")}, "is not the key"),
        ({"AVATAR_GATEWAY_PLAINTEXT": "true"}, "contradicts"),
    ):
        async with Serve(**{**tls, **wrong}, **ZEGO_ENV) as serve:
            code = await serve.exit_code()
        assert code == EXIT_CONFIGURATION, serve.lines
        assert serve.lines[-1]["event"] == "gateway_not_started", serve.lines
        assert says in serve.lines[-1]["reason"], serve.lines
