"""Client faults over real gRPC: cancels, deadlines, a client that stops reading, and a
client that sends faster than real time for a long time.

The memory tests run the gateway as a separate process (``python -m gateway serve``, sandbox
mode: its emulators run inside it) so that its resident memory (``VmRSS``) can be measured
without the test's own allocations; what the emulators received is read back from their
``/_emulator/state`` endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Gateway, audio_format, paced_requests, tone
from tests.faultproxy import DOWN, FaultProxy
from tests.integration.test_faults import AVATARS, events, received_audio, sha, wait_for

pytestmark = pytest.mark.integration

C = grpc.StatusCode
ROOT = Path(__file__).resolve().parents[2]

DOCUMENTED_BUFFER_S = 2.0
"""README: "A client faster than real time is slowed by gRPC flow control (bounded buffer
≈ 2 s)"; the proto: "the server reads audio no faster than the vendor accepts it plus a
bounded buffer"."""
HTTP2_DEFAULT_WINDOW = 65_535
"""One HTTP/2 stream flow-control window (RFC 9113 §6.9.2): data a client may have in flight
before the server's reads grant more."""
RSS_GROWTH_BOUND_MB = 12.0
"""What the gateway process may grow by while clients misbehave. The overdriving clients
below push ~25 MB of audio at it; an unbounded buffer would exceed this bound twice over."""


# ---- cancel and deadline mid-turn ----------------------------------------------------------

CASES = [
    ("zegocloud", "cancel"),
    ("tencent", "cancel"),
    ("akool", "cancel"),
    ("zegocloud", "deadline"),
    ("tencent", "deadline"),
    ("akool", "deadline"),
]


def vendor_turn_closed(vendor: str, emulator: Any, vendor_session_id: str) -> bool:
    """Whether the vendor was told the first turn is over (not left waiting for audio)."""
    if vendor == "zegocloud":
        (drive, *_) = emulator.drives_for_task(vendor_session_id)
        return bool(drive.stopped and drive.status == 4 and not drive.violations)
    if vendor == "tencent":
        (drive, *_) = emulator.drives_of(vendor_session_id, "audio")
        return bool(drive.final and drive.final_type == 1)  # IsFinal from us, not a timeout
    (turn, *_) = emulator.sessions[vendor_session_id].audio_turns
    return bool(turn.complete and turn.finished)


@pytest.mark.parametrize(
    ("gateway", "mode"),
    [({"sandbox_vendors": v}, mode) for v, mode in CASES],
    indirect=["gateway"],
    ids=[f"{v}-{mode}" for v, mode in CASES],
)
async def test_client_gone_mid_turn_ends_the_vendor_turn_and_the_session_stays_usable(
    gateway: Gateway, mode: str
) -> None:
    """The client pushes a 3 s turn as fast as it may, then cancels its Drive (or its
    deadline passes) 0.8 s in. The gateway still ends the vendor's turn (ZEGO Stop, Tencent
    IsFinal, Akool end of stream), and the client's next Drive on the session, opened right
    away and without ``preempt``, is accepted and plays a new turn: a stream the client has
    abandoned must not hold the session."""
    vendor = gateway.server.settings.sandbox_vendors
    emulator = gateway.emulator(vendor)
    s = await gateway.create(vendor, AVATARS[vendor])
    pcm = tone(3.0, freq=263)
    call = gateway.stub.Drive(
        paced_requests(s.name, pcm, realtime=False), timeout=0.8 if mode == "deadline" else 30
    )
    if mode == "cancel":
        asyncio.get_running_loop().call_later(0.8, call.cancel)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for _ in call:
            pass
    expected = C.DEADLINE_EXCEEDED if mode == "deadline" else C.CANCELLED
    assert await call.code() == expected
    # Right away, no preempt: the abandoned stream is not in the way.
    pcm2 = tone(0.5, freq=587)
    again = gateway.stub.Drive(paced_requests(s.name, pcm2, realtime=False), timeout=20)
    responses = []
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for r in again:
            responses.append(r)
    assert await again.code() == C.OK, f"{(await again.code()).name}: {await again.details()}"
    ended = [(e.turn_id, e.interrupted) for e in events(responses, "speech_ended")]
    # Turn 1's end may still be reported here: the vendor finishes playing what it had.
    assert ("2", False) in ended and {t for t, _ in ended} <= {"1", "2"}, ended
    assert received_audio(vendor, emulator, s.vendor_session_id)[-1] == sha(pcm2)
    assert vendor_turn_closed(vendor, emulator, s.vendor_session_id)


# ---- barge-in before the vendor has started speaking ---------------------------------------


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "akool"}], indirect=True)
async def test_barge_in_right_after_the_first_audio_keeps_turn_ids_straight(
    gateway: Gateway,
) -> None:
    """Six clients at once each send 0.8 s of audio and barge in at once (before the avatar
    may have reported that it started), then send a second turn. Every speech event must
    name its own turn (proto: turn ids "appear on every event of that turn"): turn 1 ends
    interrupted, turn 2 is reported started and ended, not interrupted."""

    async def one(k: int) -> list[tuple[str, str, bool]]:
        s = await gateway.create("akool", AVATARS["akool"])
        first, second = tone(0.8, freq=300 + 17 * k), tone(0.5, freq=700 + 17 * k)

        async def requests() -> AsyncIterator[pb.DriveRequest]:
            config = pb.DriveConfig(session=s.name, audio_format=audio_format())
            yield pb.DriveRequest(config=config)
            for i in range(0, len(first), 3200):
                yield pb.DriveRequest(audio=first[i : i + 3200])
            yield pb.DriveRequest(interrupt=pb.Interrupt())
            yield pb.DriveRequest(audio=second)
            yield pb.DriveRequest(end_turn=pb.EndTurn())

        responses = [r async for r in gateway.stub.Drive(requests(), timeout=30)]
        out = []
        for r in responses:
            kind = str(r.WhichOneof("response"))
            if kind in ("speech_started", "speech_ended"):
                event = getattr(r, kind)
                out.append((kind, event.turn_id, kind == "speech_ended" and event.interrupted))
        return out

    results = []
    for round_ in range(3):  # the race is timing-dependent: several rounds of six
        results += await asyncio.gather(*(one(6 * round_ + k) for k in range(6)))
    for got in results:
        assert {turn for _, turn, _ in got} <= {"1", "2"}, f"events of no turn: {got}"
        ended = {turn: interrupted for kind, turn, interrupted in got if kind == "speech_ended"}
        assert ended.get("2") is False, f"turn 2 not reported ended normally: {got}"
        assert ended.get("1", True) is True, f"turn 1 reported ended but not interrupted: {got}"
        assert ("speech_started", "2", False) in got, got


# ---- a gateway process whose memory we can measure -----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class GatewayProcess:
    pid: int
    target: str
    port: int
    ops_url: str

    def emulator_state(self, vendor: str) -> dict[str, Any]:
        urls = httpx.get(f"{self.ops_url}/sandbox", timeout=5).json()
        state: dict[str, Any] = httpx.get(f"{urls[vendor]}/_emulator/state", timeout=5).json()
        return state

    def zego_drives(self, task_id: str) -> list[dict[str, Any]]:
        drives = self.emulator_state("zegocloud")["drives"].values()
        return [d for d in drives if d["task_id"] == task_id]


@pytest.fixture(scope="module")
def gateway_process() -> Iterator[GatewayProcess]:
    port, ops = free_port(), free_port()
    env = dict(
        os.environ,
        AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{port}",
        AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{ops}",
        AVATAR_GATEWAY_CALLBACKS_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_PLAINTEXT="true",
        AVATAR_GATEWAY_SANDBOX="true",
        AVATAR_GATEWAY_SANDBOX_VENDORS="zegocloud",
        AVATAR_GATEWAY_LOG_LEVEL="error",
        AVATAR_GATEWAY_SHUTDOWN_GRACE_S="2",
    )
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env, stderr=log
        )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                deadline = time.monotonic() + 30
                while True:
                    assert proc.poll() is None, "the gateway process exited"
                    with contextlib.suppress(grpc.RpcError):
                        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                        if answer.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    assert time.monotonic() < deadline, "the gateway process did not start"
                    time.sleep(0.1)
            yield GatewayProcess(proc.pid, f"127.0.0.1:{port}", port, f"http://127.0.0.1:{ops}")
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.asynccontextmanager
async def client(target: str) -> AsyncIterator[pb_grpc.AvatarGatewayStub]:
    channel = grpc.aio.insecure_channel(target)
    try:
        yield pb_grpc.AvatarGatewayStub(channel)
    finally:
        await channel.close()


async def new_session(stub: pb_grpc.AvatarGatewayStub) -> pb.Session:
    request = pb.CreateSessionRequest(vendor="zegocloud", avatar_id=AVATARS["zegocloud"])
    return await stub.CreateSession(request, timeout=20)


async def warm_up(stub: pb_grpc.AvatarGatewayStub) -> None:
    """One full session so that lazily allocated state is in the RSS baseline."""
    s = await new_session(stub)
    async for _ in stub.Drive(paced_requests(s.name, tone(0.3), realtime=False), timeout=20):
        pass
    await stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)


class RssSampler:
    """Samples a process's RSS every 0.1 s in the background; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_mb(pid)
        self.peak = self.base
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_mb(self.pid))

    @property
    def growth(self) -> float:
        return self.peak - self.base


async def turn_is_intact(
    proc: GatewayProcess, stub: pb_grpc.AvatarGatewayStub, s: pb.Session
) -> None:
    pcm = tone(0.5, freq=659)
    responses = [
        r async for r in stub.Drive(paced_requests(s.name, pcm, realtime=False), timeout=20)
    ]
    assert [e.interrupted for e in events(responses, "speech_ended")] == [False]
    assert proc.zego_drives(s.vendor_session_id)[-1]["sha256"] == sha(pcm)


# ---- a client that stops reading -----------------------------------------------------------


async def test_client_that_stops_reading_is_bounded_and_others_are_served(
    gateway_process: GatewayProcess,
) -> None:
    """A client's network stops delivering to it (nothing it is sent arrives; what it sends
    still flows) while it floods the stream with requests that each produce a response.
    The gateway's memory stays bounded, other clients are served meanwhile, and once the
    client is gone its session takes a new Drive."""
    proxy = FaultProxy("127.0.0.1", gateway_process.port)
    await proxy.start()
    try:
        async with client(gateway_process.target) as stub:
            await warm_up(stub)
            stuck_session = await new_session(stub)
            async with client(f"127.0.0.1:{proxy.port}") as stuck_stub:
                with RssSampler(gateway_process.pid) as rss:
                    call = stuck_stub.Drive(timeout=60)
                    config = pb.DriveConfig(session=stuck_session.name, audio_format=audio_format())
                    await call.write(pb.DriveRequest(config=config))
                    assert (await call.read()).HasField("started")
                    proxy.blackhole(DOWN)
                    written = 0

                    async def flood() -> None:
                        nonlocal written
                        for _ in range(30_000):  # each interrupt is answered by an ack
                            await call.write(pb.DriveRequest(interrupt=pb.Interrupt()))
                            written += 1

                    flooding = asyncio.create_task(flood())
                    await asyncio.sleep(1.0)
                    # Meanwhile another client is served normally.
                    t0 = time.monotonic()
                    async with grpc.aio.insecure_channel(gateway_process.target) as channel:
                        health = health_pb2_grpc.HealthStub(channel)
                        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    assert answer.status == health_pb2.HealthCheckResponse.SERVING
                    other = await new_session(stub)
                    await turn_is_intact(gateway_process, stub, other)
                    assert time.monotonic() - t0 < 5.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(flooding), 4.0)
                    flooding.cancel()
                    # The client gives up and vanishes (connection reset).
                    call.cancel()
                    await proxy.cut()
                print(
                    f"\nstuck client: {written} requests written, gateway RSS +{rss.growth:.1f} MB"
                )
                assert written >= 1000, "the server stopped reading the client's requests early"
                assert rss.growth <= RSS_GROWTH_BOUND_MB, f"RSS grew {rss.growth:.1f} MB"
            # The abandoned stream is gone: the session takes a new Drive without preempt.
            assert await wait_for(lambda: _drive_released(stub, stuck_session), 3.0), (
                "the vanished client's Drive is still attached"
            )
            await turn_is_intact(gateway_process, stub, stuck_session)
    finally:
        await proxy.stop()


async def _drive_released(stub: pb_grpc.AvatarGatewayStub, s: pb.Session) -> bool:
    got = await stub.GetSession(pb.GetSessionRequest(name=s.name), timeout=5)
    return not got.drive_active


# ---- a client faster than real time for a long time ----------------------------------------


async def overdrive(
    stub: pb_grpc.AvatarGatewayStub,
    s: pb.Session,
    pcm: bytes,
    rate: int,
    channels: int,
    window_s: float,
) -> tuple[float, int]:
    """Write ``pcm`` as fast as the gateway lets us for ``window_s``, then vanish (cancel).

    Returns how far ahead of real time the client ever got (s) and the bytes written.
    """
    bytes_per_s = rate * channels * 2
    chunk = bytes_per_s * 40 // 1000
    call = stub.Drive(timeout=window_s + 30)
    config = pb.DriveConfig(session=s.name, audio_format=audio_format(rate, channels))
    await call.write(pb.DriveRequest(config=config))
    assert (await call.read()).HasField("started")

    async def drain() -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while await call.read() is not grpc.aio.EOF:
                pass

    reader = asyncio.create_task(drain())
    t0 = time.monotonic()
    sent, lead = 0, 0.0
    while sent < len(pcm) and time.monotonic() - t0 < window_s:
        await call.write(pb.DriveRequest(audio=pcm[sent : sent + chunk]))
        sent += chunk
        lead = max(lead, sent / bytes_per_s - (time.monotonic() - t0))
    call.cancel()
    await reader
    return lead, min(sent, len(pcm))


async def test_client_faster_than_real_time_is_held_back_and_memory_stays_bounded(
    gateway_process: GatewayProcess,
) -> None:
    """Two clients push audio as fast as they can for 10 s: one 60 s of 16 kHz mono (the
    usual TTS format), one 120 s of 48 kHz stereo (23 MB). gRPC flow control must hold each
    within what the vendor accepts (ListVendors ``max_push_ahead``) plus the documented
    ~2 s buffer plus one HTTP/2 window in flight; the gateway's RSS stays bounded; every byte
    the vendor got is, in order, what was sent; the session takes a new turn afterwards."""
    async with client(gateway_process.target) as stub:
        await warm_up(stub)
        vendors = await stub.ListVendors(pb.ListVendorsRequest(), timeout=5)
        (zego,) = vendors.vendors
        push_ahead = zego.capabilities.max_push_ahead.ToMilliseconds() / 1000
        mono, stereo = await new_session(stub), await new_session(stub)
        pcm_mono = tone(60.0, 16000, freq=233)
        pcm_stereo = tone(120.0, 48000, freq=181, channels=2)
        with RssSampler(gateway_process.pid) as rss:
            (lead_mono, sent_mono), (lead_stereo, _) = await asyncio.gather(
                overdrive(stub, mono, pcm_mono, 16000, 1, 10.0),
                overdrive(stub, stereo, pcm_stereo, 48000, 2, 10.0),
            )
        bound_mono = push_ahead + DOCUMENTED_BUFFER_S + HTTP2_DEFAULT_WINDOW / 32000 + 1.0
        bound_stereo = push_ahead + DOCUMENTED_BUFFER_S + HTTP2_DEFAULT_WINDOW / 192000 + 1.0
        print(
            f"\noverdrive: 16 kHz mono {lead_mono:.2f} s ahead (bound {bound_mono:.2f}), "
            f"48 kHz stereo {lead_stereo:.2f} s ahead (bound {bound_stereo:.2f}), "
            f"gateway RSS +{rss.growth:.1f} MB"
        )

        # What the vendor received is a prefix of what the client sent: nothing lost inside,
        # nothing duplicated (16 kHz mono goes to ZEGO unchanged).
        async def stopped() -> bool:
            drives = gateway_process.zego_drives(mono.vendor_session_id)
            return bool(drives) and drives[0]["stopped"]

        assert await wait_for(stopped, 3.0)
        (drive,) = gateway_process.zego_drives(mono.vendor_session_id)
        got = drive["bytes_received"]
        assert (
            0 < got <= sent_mono and drive["sha256"] == hashlib.sha256(pcm_mono[:got]).hexdigest()
        )
        await turn_is_intact(gateway_process, stub, mono)
        assert rss.growth <= RSS_GROWTH_BOUND_MB, f"RSS grew {rss.growth:.1f} MB"
        assert lead_mono <= bound_mono and lead_stereo <= bound_stereo, (
            f"clients got {lead_mono:.1f} s (16 kHz mono, bound {bound_mono:.1f} s) and "
            f"{lead_stereo:.1f} s (48 kHz stereo, bound {bound_stereo:.1f} s) ahead of real time"
        )
