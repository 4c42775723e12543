"""Shared fixtures: a real gateway on loopback (sandbox emulators) and a real gRPC stub;
real processes (``redis-server``, ``avatar-gateway emulate``) for the multi-process tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2

from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.server import GatewayServer

# AVATAR_GATEWAY_TEST_LOG_LEVEL=info shows every RPC's server-side outcome when a test needs
# diagnosing (the client of a bidirectional call can read INTERNAL instead of the server's
# status when the server ends the call while the client still writes).
configure_logging(os.environ.get("AVATAR_GATEWAY_TEST_LOG_LEVEL", "warning"), "console")

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Gateway:
    """A running gateway and a client for it."""

    server: GatewayServer
    channel: grpc.aio.Channel
    stub: pb_grpc.AvatarGatewayStub

    def emulator(self, vendor: str) -> Any:
        assert self.server.sandbox is not None
        return self.server.sandbox.emulators[vendor]

    async def create(
        self, vendor: str = "zegocloud", avatar_id: str = "zego_emma", **kw: Any
    ) -> pb.Session:
        return await self.stub.CreateSession(
            pb.CreateSessionRequest(vendor=vendor, avatar_id=avatar_id, **kw), timeout=30
        )


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "ops_listen": "127.0.0.1:0",
        "callbacks_listen": "127.0.0.1:0",
        "sandbox": True,
        # Also when a test turns the sandbox off: TLS has its own tests (test_tls.py).
        "plaintext": True,
        "sandbox_vendors": "zegocloud",
        "reaper_interval_s": 0.2,
        "shutdown_grace_s": 2.0,
        # An in-process test gateway shares its event loop with the test's clients and
        # emulators, so that loop's lag is not the gateway's own: no lag bound unless a test
        # sets one (tests/integration/test_admission.py).
        "overload_event_loop_lag_ms": 60_000.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def livekit() -> Iterator[Any]:
    """A real livekit-server on loopback for the whole run (built first if missing)."""
    from emulators.livekit_server import LiveKitServer

    LiveKitServer.ensure_built()
    server = LiveKitServer()
    asyncio.run(server.start())
    yield server
    asyncio.run(server.stop())


@pytest.fixture
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    """A sandboxed gateway; parametrize indirectly with a dict of Settings overrides."""
    overrides = getattr(request, "param", {}) or {}
    async with running_gateway(make_settings(**overrides)) as gw:
        yield gw


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A started in-process gateway with a channel to it; stopped (1 s grace) on exit."""
    server = GatewayServer(settings)
    await server.start()
    channel = grpc.aio.insecure_channel(server.grpc_target)
    try:
        yield Gateway(server, channel, pb_grpc.AvatarGatewayStub(channel))
    finally:
        await channel.close()
        await server.stop(grace_s=1.0)


def audio_format(rate: int = 16000, channels: int = 1) -> media_pb2.AudioFormat:
    return media_pb2.AudioFormat(
        audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=rate,
        audio_channel_count=channels,
    )


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, channels: int = 1) -> bytes:
    """A sine tone as s16le PCM (interleaved when stereo)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    if channels == 2:
        return np.repeat(mono, 2).tobytes()
    return mono.tobytes()


async def paced_requests(
    session: str,
    pcm: bytes,
    *,
    rate: int = 16000,
    channels: int = 1,
    chunk_ms: int = 40,
    realtime: bool = True,
    tail: list[pb.DriveRequest] | None = None,
    hold: asyncio.Event | None = None,
) -> AsyncIterator[pb.DriveRequest]:
    """Config, then ``pcm`` in chunks (at real time unless told not to), end_turn, then ``tail``."""
    yield pb.DriveRequest(
        config=pb.DriveConfig(session=session, audio_format=audio_format(rate, channels))
    )
    step = rate * channels * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        yield pb.DriveRequest(audio=pcm[i : i + step])
        if realtime:
            await asyncio.sleep(chunk_ms / 1000)
    yield pb.DriveRequest(end_turn=pb.EndTurn())
    for item in tail or []:
        yield item
    if hold is not None:
        await hold.wait()


async def until(
    what: str, check: Callable[[], Any], timeout_s: float = 30.0, every_s: float = 0.05
) -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy, and return that;
    fail the test after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(every_s)


async def collect(call: Any) -> list[pb.DriveResponse]:
    return [r async for r in call]


def kinds(responses: list[pb.DriveResponse]) -> list[str]:
    return [str(r.WhichOneof("response")) for r in responses]


def error_info(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, ErrorInfo.reason, metadata) of a failed call; asserts exactly one ErrorInfo."""
    from google.rpc import error_details_pb2, status_pb2

    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None, f"no status details on {err.code()}: {err.details()}"
    rich = status_pb2.Status.FromString(raw)
    infos = [d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == "avatargateway.dev"
    return err.code(), info.reason, dict(info.metadata)


async def drive_error(
    stub: pb_grpc.AvatarGatewayStub, requests: list[pb.DriveRequest]
) -> tuple[grpc.StatusCode, str, dict[str, str], list[pb.DriveResponse]]:
    """Run a Drive that must fail; return (code, reason, metadata, responses before the error)."""

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        for r in requests:
            yield r
        await asyncio.sleep(30)  # keep the stream open: the server must end it

    got: list[pb.DriveResponse] = []
    try:
        async for r in stub.Drive(gen(), timeout=20):
            got.append(r)
    except grpc.aio.AioRpcError as err:
        code, reason, md = error_info(err)
        return code, reason, md, got
    raise AssertionError(f"Drive did not fail; got {kinds(got)}")


async def still_serving(gw: Gateway) -> None:
    """The server keeps serving: health is SERVING and a new session can be created."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    h = await health_pb2_grpc.HealthStub(gw.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert h.status == health_pb2.HealthCheckResponse.SERVING
    s = await gw.create()
    assert s.state == pb.SESSION_STATE_READY


# ---- real processes ---------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port (only where a port must be known before its server starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` on a loopback port, without persistence.

    A test may :meth:`stop` it and :meth:`start` it again on the same port: it comes back
    empty, as a restarted Redis without persistence (or a failover to an empty replica).
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required (make system-deps installs it)"
        self.binary = binary
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start and wait until it answers PING."""
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no"),
            stdout=asyncio.subprocess.DEVNULL,
        )
        import redis.asyncio as aioredis

        client = aioredis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except Exception:
                    await asyncio.sleep(0.05)
            raise AssertionError(f"redis-server on port {self.port} did not answer")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Kill it (SIGKILL: nothing is saved)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A real redis-server on loopback, started for the test and removed after it."""
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    """The URL of a real redis-server started for the test (see :class:`RedisServer`)."""
    return redis_server.url


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AVATAR_GATEWAY_* variable, plus ``extra``.

    A gateway started with it serves plaintext gRPC (TLS has its own tests: test_tls.py) and
    its callbacks listener on any free loopback port, as one process (with Redis, ``serve``
    would otherwise start a worker per CPU: tests/integration/test_workers.py), unless
    ``extra`` says otherwise.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_GATEWAY_")}
    env.update(
        AVATAR_GATEWAY_LOG_FORMAT="json",
        AVATAR_GATEWAY_LOG_LEVEL="info",
        AVATAR_GATEWAY_PLAINTEXT="true",
        AVATAR_GATEWAY_CALLBACKS_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_WORKERS="1",
    )
    env.update(extra)
    return env


@dataclass
class LoggingProcess:
    """A ``python -m gateway ...`` process, its start line (JSON) and every stderr line."""

    proc: asyncio.subprocess.Process
    started: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines whose ``event`` is ``name``."""
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    out.append(event)
        return out


@contextlib.asynccontextmanager
async def gateway_process(
    env: dict[str, str], *args: str, started: str
) -> AsyncIterator[LoggingProcess]:
    """Run ``python -m gateway *args`` until its ``started`` log line (no fixed sleep).

    Its stderr is drained for the process's life (into ``lines``); the process is killed on
    exit if still running.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    stderr = proc.stderr
    lines: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(90):
            while True:
                raw = await stderr.readline()
                assert raw, f"{' '.join(args)} exited before it started:\n" + "".join(lines)
                lines.append(raw.decode())
                with contextlib.suppress(ValueError):
                    event = json.loads(raw)
                    if isinstance(event, dict) and event.get("event") == started:
                        break

        async def keep_reading() -> None:
            # Keep the pipe drained so the process never blocks on a full stderr.
            while raw := await stderr.readline():
                lines.append(raw.decode())

        drain = asyncio.create_task(keep_reading())
        yield LoggingProcess(proc, event, lines)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a test may have stopped it
            proc.kill()
            await proc.wait()
        if drain is not None:
            await drain


@dataclass
class EmulatorProcess(LoggingProcess):
    """A running ``avatar-gateway emulate`` process and its ``emulator_started`` line."""

    @property
    def url(self) -> str:
        return str(self.started["public_url"])

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.started["admin_state_url"], timeout=10)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 30)


@contextlib.asynccontextmanager
async def emulate(vendor: str, env: dict[str, str], *args: str) -> AsyncIterator[EmulatorProcess]:
    """Start ``python -m gateway emulate`` and wait for its start line (no fixed sleep)."""
    async with gateway_process(env, "emulate", vendor, *args, started="emulator_started") as p:
        yield EmulatorProcess(p.proc, p.started, p.lines)
