"""Shared fixtures: a real gateway on loopback (sandbox emulators) and a real gRPC stub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2

from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.server import GatewayServer

configure_logging("warning", "console")


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
        "sandbox": True,
        "sandbox_vendors": "zegocloud",
        "reaper_interval_s": 0.2,
        "shutdown_grace_s": 2.0,
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
