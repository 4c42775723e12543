"""``avatar-gateway emulate <vendor>``: each emulator as a process of its own, as in compose.

One set of ``AVATAR_GATEWAY_<VENDOR>__*`` variables (the "env file") configures both the
emulator process and a non-sandbox gateway; the gateway creates a session, drives one audio
turn and closes it, and the emulator's records, read over HTTP at ``/_emulator/state``, show
the audio arrived intact. The emulator's start line (JSON, on stderr) carries its bound
address, so the tests await it instead of guessing ports or sleeping. Also: a missing
credential is one line naming the variables and a non-zero exit; SIGTERM and SIGINT exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from emulators.livekit_server import LiveKitServer
from tests.conftest import (
    ROOT,
    Gateway,
    base_env,
    collect,
    emulate,
    free_port,
    make_settings,
    paced_requests,
    running_gateway,
    tone,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900 if not LiveKitServer.is_built() else 90),
]


async def run_emulate(vendor: str, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``emulate`` to completion (it must not start); return (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway", "emulate", vendor, *args),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


@contextlib.asynccontextmanager
async def gateway_with(
    monkeypatch: pytest.MonkeyPatch, vendor_env: dict[str, str], **overrides: Any
) -> AsyncIterator[Gateway]:
    """A non-sandbox gateway (in this process) reading its vendor settings from ``vendor_env``."""
    for name, value in vendor_env.items():
        monkeypatch.setenv(name, value)
    async with running_gateway(make_settings(sandbox=False, **overrides)) as gw:
        yield gw


async def drive_one_turn(gw: Gateway, vendor: str, avatar_id: str, pcm: bytes) -> pb.Session:
    """Create, drive ``pcm`` as one audio turn (spoken to its end), close."""
    session = await gw.create(vendor, avatar_id)
    assert session.state == pb.SESSION_STATE_READY
    responses = await collect(
        gw.stub.Drive(paced_requests(session.name, pcm, realtime=False), timeout=30)
    )
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert [e.turn_id for e in ended] == ["1"] and not ended[0].interrupted, responses
    closed = await gw.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=15)
    assert closed.state == pb.SESSION_STATE_CLOSED
    return session


async def test_zegocloud_standalone_serves_a_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    callbacks_port = free_port()
    vendor_env = {
        "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "424242",
        "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "zego-server-secret-0123456789abcd",
        "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": "zego-callback-secret",
    }
    callback = f"http://127.0.0.1:{callbacks_port}/callbacks/zegocloud"
    # The callback URL from the env, as a compose file would set it; listening on every
    # interface, the URLs handed out default to loopback.
    env = base_env(**vendor_env, AVATAR_GATEWAY_EMULATOR__CALLBACK_URL=callback)
    async with emulate("zegocloud", env, "--listen", "0.0.0.0:0") as emu:
        port = emu.started["listen"].rsplit(":", 1)[1]
        assert emu.started["listen"] == f"0.0.0.0:{port}"
        assert emu.url == f"http://127.0.0.1:{port}/"
        gateway_env = {**vendor_env, "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": emu.url}
        async with gateway_with(
            monkeypatch, gateway_env, callbacks_listen=f"127.0.0.1:{callbacks_port}"
        ) as gw:
            pcm = tone(1.0)
            session = await drive_one_turn(gw, "zegocloud", "zego_emma", pcm)
        state = await emu.state()
        # One port: the drive socket is plain ws:// on the public address (no TLS asked).
        assert state["wss_url"] == f"ws://127.0.0.1:{port}"
        assert state["callback_url"] == callback
        drives = [d for d in state["drives"].values() if d["task_id"] == session.vendor_session_id]
        (drive,) = drives
        assert drive["kind"] == "ws" and drive["status"] == 4 and not drive["violations"]
        # Resampled to the vendor's 24 kHz: the duration, not the bytes, must match.
        assert drive["duration_s"] == pytest.approx(1.0, abs=0.03)
        assert state["tasks"][session.vendor_session_id]["status"] in (4, 5)  # stopping/ed
        assert state["callbacks"]["delivered"] >= 2 and state["callbacks"]["failed"] == 0
        assert state["rejected"] == {}
        assert await emu.stop(signal.SIGTERM) == 0
    assert any('"emulator_stopping"' in line for line in emu.lines)


async def test_tencent_standalone_serves_a_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    vendor_env = {
        "AVATAR_GATEWAY_TENCENT__APPKEY": "tencent-appkey-0123",
        "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": "tencent-access-token-4567",
    }
    async with emulate("tencent", base_env(**vendor_env), "--listen", "127.0.0.1:0") as emu:
        assert emu.started["admin_state_url"] == f"{emu.url}/_emulator/state"
        async with gateway_with(
            monkeypatch, {**vendor_env, "AVATAR_GATEWAY_TENCENT__API_URL": emu.url}
        ) as gw:
            pcm = tone(1.0)
            session = await drive_one_turn(gw, "tencent", "sandbox-project", pcm)
        state = await emu.state()
        (drive,) = [
            d
            for d in state["drives"]
            if d["sessionId"] == session.vendor_session_id and d["kind"] == "audio"
        ]
        assert drive["sha256"] == hashlib.sha256(pcm).hexdigest()
        assert not drive["pacingViolations"]
        assert state["openSessions"] == []
        assert await emu.stop(signal.SIGINT) == 0


async def test_akool_standalone_serves_a_gateway(
    monkeypatch: pytest.MonkeyPatch, livekit: LiveKitServer
) -> None:
    # livekit-server runs on its own (a compose service): the emulator and the gateway share
    # its URL and key pair through the Akool settings.
    vendor_env = {
        "AVATAR_GATEWAY_AKOOL__API_KEY": "akool-api-key-0123456789",
        "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": livekit.url,
        "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY": livekit.api_key,
        "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET": livekit.api_secret,
    }
    async with emulate("akool", base_env(**vendor_env), "--listen", "127.0.0.1:0") as emu:
        async with gateway_with(
            monkeypatch, {**vendor_env, "AVATAR_GATEWAY_AKOOL__API_URL": emu.url}
        ) as gw:
            pcm = tone(1.0)
            session = await drive_one_turn(gw, "akool", "dvp_Tristan_cloth2_1080P", pcm)
        state = await emu.state()
        assert state["base_url"] == emu.url and state["livekit_url"] == livekit.url
        record = state["sessions"][session.vendor_session_id]
        (turn,) = record["audio_turns"]
        assert turn["sha256"] == hashlib.sha256(pcm).hexdigest() and turn["complete"]
        assert record["livekit_url"] == livekit.url and not record["join_error"]
        assert state["open_sessions"] == []
        assert await emu.stop(signal.SIGTERM) == 0


async def test_urls_handed_out_come_from_the_public_url() -> None:
    env = base_env(
        AVATAR_GATEWAY_ZEGOCLOUD__APP_ID="7",
        AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET="s",
        AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET="c",
        AVATAR_GATEWAY_EMULATOR__PUBLIC_URL="http://ignored.invalid:1",
    )
    public = "http://zego-emulator:9000"
    args = ("--listen", "127.0.0.1:0", "--public-url", public, "--callback-url", "http://gw/cb")
    async with emulate("zegocloud", env, *args) as emu:
        # The flag wins over the env; the admin URL is the bound address this side reads.
        assert emu.started["public_url"] == public + "/"
        admin = emu.started["admin_state_url"]
        assert admin == f"{public}/_emulator/state"
        # Not resolvable from here: read the state on the bound address instead.
        port = emu.started["listen"].rsplit(":", 1)[1]
        emu.started["admin_state_url"] = f"http://127.0.0.1:{port}/_emulator/state"
        state = await emu.state()
        assert state["rest_url"] == public and state["wss_url"] == "ws://zego-emulator:9000"
        assert await emu.stop() == 0


@pytest.mark.parametrize(
    ("vendor", "env", "missing"),
    [
        (
            "zegocloud",
            {"AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "7"},
            [
                "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET",
                "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET",
                "--callback-url (or AVATAR_GATEWAY_EMULATOR__CALLBACK_URL)",
            ],
        ),
        (
            "tencent",
            {"AVATAR_GATEWAY_TENCENT__APPKEY": "a"},
            ["AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN"],
        ),
        (
            "akool",
            {"AVATAR_GATEWAY_AKOOL__CLIENT_ID": "c", "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": "ws://x"},
            [
                "AVATAR_GATEWAY_AKOOL__API_KEY (or AVATAR_GATEWAY_AKOOL__CLIENT_ID and"
                " AVATAR_GATEWAY_AKOOL__CLIENT_SECRET)",
                "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY",
                "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET",
            ],
        ),
    ],
)
async def test_missing_credentials_are_named_on_one_line(
    vendor: str, env: dict[str, str], missing: list[str]
) -> None:
    code, stderr = await run_emulate(vendor, base_env(**env), "--listen", "127.0.0.1:0")
    assert code != 0
    assert stderr.splitlines() == [
        f"avatar-gateway emulate: cannot emulate {vendor}: missing {', '.join(missing)}"
    ]


async def test_a_vendor_without_a_standalone_emulator_is_refused() -> None:
    # The echo plugin has a sandbox emulator only; the refusal lists the ones that exist.
    code, stderr = await run_emulate("echo", base_env(AVATAR_GATEWAY_PLUGINS="tests.plugins.echo"))
    assert code != 0
    assert stderr.splitlines() == [
        "avatar-gateway emulate: vendor 'echo' has no standalone emulator"
        " (known: ['akool', 'tencent', 'zegocloud'])"
    ]


async def test_an_address_in_use_is_one_line() -> None:
    env = base_env(AVATAR_GATEWAY_TENCENT__APPKEY="a", AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN="b")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = await run_emulate("tencent", env, "--listen", f"127.0.0.1:{port}")
    assert code != 0
    (line,) = stderr.splitlines()
    assert line.startswith(f"avatar-gateway emulate: cannot listen on 127.0.0.1:{port}: ")


async def test_without_the_sandbox_extra_the_fix_is_named(tmp_path: Path) -> None:
    # A gateway-only install lacks the emulators' dependencies (trustme): shadow it.
    (tmp_path / "trustme.py").write_text("raise ImportError(\"No module named 'trustme'\")\n")
    env = base_env(AVATAR_GATEWAY_TENCENT__APPKEY="a", AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN="b")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    code, stderr = await run_emulate("tencent", env)
    assert code != 0
    (line,) = stderr.splitlines()
    assert "cannot load the tencent emulator" in line and "'.[sandbox]'" in line
