"""SIGTERM on a real gateway process: go_away on every Drive stream, drain, close, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulators.zegocloud import ZegocloudEmulator
from tests.conftest import audio_format, tone

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_drains_streams_and_closes_owned_sessions() -> None:
    emulator = ZegocloudEmulator(app_id=7, server_secret="s3cret", callback_secret="cb")
    await emulator.start()
    port, ops, callbacks = free_port(), free_port(), free_port()
    emulator.callback_url = f"http://127.0.0.1:{callbacks}/callbacks/zegocloud"
    env = dict(
        os.environ,
        AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{port}",
        AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{ops}",
        AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{callbacks}",
        AVATAR_GATEWAY_PLAINTEXT="true",
        AVATAR_GATEWAY_SANDBOX="false",
        AVATAR_GATEWAY_ZEGOCLOUD__APP_ID="7",
        AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET="s3cret",
        AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET="cb",
        AVATAR_GATEWAY_ZEGOCLOUD__API_URL=emulator.rest.base_url + "/",
        AVATAR_GATEWAY_SHUTDOWN_GRACE_S="5",
        AVATAR_GATEWAY_LOG_FORMAT="json",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await health.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                        break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
                assert time.monotonic() < deadline
            stub = pb_grpc.AvatarGatewayStub(channel)
            sessions = [
                await stub.CreateSession(
                    pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=10
                )
                for _ in range(2)
            ]
            go_away = [asyncio.Event(), asyncio.Event()]

            async def drive(i: int) -> tuple[list[str], grpc.StatusCode]:
                async def gen():  # type: ignore[no-untyped-def]
                    yield pb.DriveRequest(
                        config=pb.DriveConfig(session=sessions[i].name, audio_format=audio_format())
                    )
                    yield pb.DriveRequest(audio=tone(0.2))
                    await go_away[i].wait()
                    # A well-behaved client finishes its turn and half-closes on go_away.
                    yield pb.DriveRequest(end_turn=pb.EndTurn())

                call = stub.Drive(gen(), timeout=30)
                got = []
                async for r in call:
                    got.append(str(r.WhichOneof("response")))
                    if r.HasField("go_away"):
                        assert r.go_away.time_left.ToSeconds() == 5
                        go_away[i].set()
                return got, await call.code()

            tasks = [asyncio.create_task(drive(i)) for i in range(2)]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
            for got, code in results:
                assert "go_away" in got and code == grpc.StatusCode.OK
            # While draining, new work is refused with a status clients can retry elsewhere.
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0
        await asyncio.sleep(0.2)
        assert emulator.open_tasks() == []  # the process closed every session it owned
        assert {emulator.tasks[s.vendor_session_id].stop_reason for s in sessions} == {"api"}
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
        assert "s3cret" not in logs and '"session_closed"' in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await emulator.stop()


async def test_sandbox_mode_is_the_first_log_line_and_sigterm_exits_cleanly() -> None:
    """`serve --sandbox` says it is in sandbox mode before anything else."""
    port, ops = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_GATEWAY_")}
    env.update(
        AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{port}",
        AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{ops}",
        AVATAR_GATEWAY_CALLBACKS_LISTEN="127.0.0.1:0",
        # No AVATAR_GATEWAY_PLAINTEXT: the sandbox may run plaintext, and says so.
        AVATAR_GATEWAY_SANDBOX_VENDORS="zegocloud",
        AVATAR_GATEWAY_LOG_FORMAT="json",
        AVATAR_GATEWAY_LOG_LEVEL="debug",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--sandbox",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        lines: list[dict[str, object]] = []
        while not any(line.get("event") == "gateway_started" for line in lines):
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert raw, f"serve exited early: {lines}"
            lines.append(json.loads(raw))
        assert lines[0]["event"] == "sandbox_mode"
        assert lines[0]["transport"] == "plaintext" and lines[0]["authentication"] == "none"
        assert "open to anyone" in str(lines[0]["message"]), lines[0]
        # serve's malloc tuning ran (glibc here) and was not refused.
        events = [line["event"] for line in lines]
        assert "malloc_tuned" in events and "malloc_tuning_refused" not in events
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
