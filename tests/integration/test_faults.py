"""Vendor faults over real gRPC and real emulator sockets: nothing is lost, nothing leaks.

Faults come from the emulators' own hooks (``FaultPlan.fail_next`` / ``stall_next``,
``drop_channels``, ``drop_drive_sockets``, ``end_session``) and, where a socket-level fault
is needed, from :class:`tests.faultproxy.FaultProxy` between the gateway and an emulator
(RST cuts, latency, a blackhole, lost answers, a vendor that reads slowly).

What "nothing lost" means here: the SHA-256 of what the emulator received for a turn equals
the SHA-256 of what the client sent (16 kHz mono, so the gateway forwards it unchanged),
wherever the vendor protocol allows resuming (Tencent). Where it does not (a ZEGO WS drive
cannot be resumed), the turn fails with one ``turn_failed`` and the session stays usable.
What "nothing leaks" means: every vendor session an emulator reports open is one the gateway
reports READY (so its reaper and CloseSession reach it), and each logical CreateSession (one
``request_id``) costs at most one vendor session.

Helpers here are shared by ``test_client_faults.py`` and ``test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from pydantic import SecretStr

from adapters.akool.settings import AkoolSettings
from adapters.tencent.settings import TencentSettings
from adapters.zegocloud.settings import ZegocloudSettings
from gateway.server import GatewayServer
from tests.conftest import (
    Gateway,
    audio_format,
    collect,
    drive_error,
    error_info,
    kinds,
    make_settings,
    paced_requests,
    tone,
)
from tests.faultproxy import UP, FaultProxy

pytestmark = pytest.mark.integration

C = grpc.StatusCode
VENDORS = ("zegocloud", "tencent", "akool")
AVATARS = {
    "zegocloud": "zego_emma",
    "tencent": "sandbox-project",
    "akool": "dvp_Tristan_cloth2_1080P",
}
# Per vendor, as FaultPlan operation names: the REST call that creates a session, the one
# polled until it is ready and the idempotent close; and a non-retryable quota code.
CREATE_OP = {
    "zegocloud": "CreateDigitalHumanStreamTask",
    "tencent": "createsession",
    "akool": "session/create",
}
STATUS_OP = {
    "zegocloud": "GetDigitalHumanStreamTaskStatus",
    "tencent": "statsession",
    "akool": "session/detail",
}
CLOSE_OP = {
    "zegocloud": "StopDigitalHumanStreamTask",
    "tencent": "closesession",
    "akool": "session/close",
}
QUOTA_CODE = {"zegocloud": 400000008, "tencent": 100008, "akool": 1006}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_vendor_sessions(vendor: str, emulator: Any) -> set[str]:
    """Vendor session ids the emulator still bills (its own leak audit)."""
    if vendor == "zegocloud":
        return {t.task_id for t in emulator.open_tasks()}
    return set(emulator.open_sessions())


async def list_all_sessions(stub: pb_grpc.AvatarGatewayStub) -> list[pb.Session]:
    out: list[pb.Session] = []
    token = ""
    for _ in range(100):  # bounded paging
        page = await stub.ListSessions(
            pb.ListSessionsRequest(page_size=500, page_token=token), timeout=10
        )
        out.extend(page.sessions)
        token = page.next_page_token
        if not token:
            return out
    raise AssertionError("ListSessions never ended")


async def untracked_open(stub: pb_grpc.AvatarGatewayStub, emulators: dict[str, Any]) -> set[str]:
    """Open vendor sessions the gateway does not report READY: billed, but nobody reaps them."""
    tracked = {
        s.vendor_session_id
        for s in await list_all_sessions(stub)
        if s.state == pb.SESSION_STATE_READY
    }
    leaked: set[str] = set()
    for vendor, emulator in emulators.items():
        leaked |= {f"{vendor}:{v}" for v in open_vendor_sessions(vendor, emulator) - tracked}
    return leaked


async def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` (sync or async) until true or ``timeout_s``; return the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() >= deadline:
            return bool(value)
        await asyncio.sleep(interval_s)


def received_audio(vendor: str, emulator: Any, vendor_session_id: str) -> list[str]:
    """SHA-256 of each audio turn the emulator received for a session, in order."""
    if vendor == "zegocloud":
        return [d.sha256 for d in emulator.drives_for_task(vendor_session_id) if d.kind == "ws"]
    if vendor == "tencent":
        return [d.sha256 for d in emulator.drives_of(vendor_session_id, "audio")]
    return [t.sha256 for t in emulator.sessions[vendor_session_id].audio_turns]


def events(responses: list[pb.DriveResponse], kind: str) -> list[Any]:
    return [getattr(r, kind) for r in responses if r.HasField(kind)]  # type: ignore[arg-type]


# ---- a gateway whose vendor sits behind a fault proxy ------------------------------------


@dataclass
class Rig:
    """A gateway (not sandboxed) driving one emulator through a :class:`FaultProxy`."""

    gw: Gateway
    vendor: str
    emulator: Any
    proxy: FaultProxy
    drive_proxy: FaultProxy | None = None
    callback_proxy: FaultProxy | None = None


@contextlib.asynccontextmanager
async def proxied_gateway(
    vendor: str,
    livekit: Any = None,
    *,
    proxy_drive: bool = False,
    proxy_callbacks: bool = False,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """Emulator ← proxy ← gateway. The proxy carries the vendor's REST API (and, for
    Tencent, the command channel on the same host). ZEGO only: with ``proxy_drive`` a second
    proxy carries the drive sockets (the emulator advertises it in ``WssAddress``), with
    ``proxy_callbacks`` a third one carries the vendor's drive-status callbacks."""
    drive_proxy: FaultProxy | None = None
    callback_proxy: FaultProxy | None = None
    emulator: Any
    settings: dict[str, Any]
    if vendor == "zegocloud":
        from emulators.zegocloud import ZegocloudEmulator

        secret, callback = secrets.token_hex(16), secrets.token_hex(8)
        emulator = ZegocloudEmulator(app_id=4242, server_secret=secret, callback_secret=callback)
        await emulator.start()
        proxy = FaultProxy("127.0.0.1", emulator.rest.port)
        if proxy_drive:
            drive_proxy = FaultProxy("127.0.0.1", emulator.drive_server.port)
            await drive_proxy.start()
            # Vendor behind a slow network: DriveByWsStream hands out the proxy's address.
            emulator.drive_server.port = drive_proxy.port
        await proxy.start()
        settings = {
            "zegocloud": ZegocloudSettings(
                app_id=4242,
                server_secret=SecretStr(secret),
                callback_secret=SecretStr(callback),
                api_url=proxy.url + "/",
            )
        }
    elif vendor == "tencent":
        from emulators.tencent import TencentEmulator

        appkey, token = secrets.token_hex(16), secrets.token_hex(16)
        emulator = TencentEmulator(appkey=appkey, access_token=token)
        await emulator.start()
        proxy = FaultProxy("127.0.0.1", emulator.port)
        await proxy.start()
        settings = {
            "tencent": TencentSettings(
                appkey=appkey,
                access_token=SecretStr(token),
                api_url=proxy.url,
                project_id=AVATARS["tencent"],
            )
        }
    else:
        from emulators.akool import AkoolEmulator

        key = secrets.token_hex(16)
        emulator = AkoolEmulator.on_livekit(
            livekit,
            api_key=key,
            client_id="faults",
            client_secret=key,
        )
        await emulator.start()
        proxy = FaultProxy("127.0.0.1", emulator.port)
        await proxy.start()
        settings = {
            "akool": AkoolSettings(
                api_key=SecretStr(key),
                api_url=proxy.url,
                livekit_url=livekit.url,
                livekit_api_key=livekit.api_key,
                livekit_api_secret=SecretStr(livekit.api_secret),
            )
        }
    server = GatewayServer(make_settings(sandbox=False, vendors=settings, **overrides))
    await server.start()
    if vendor == "zegocloud":
        emulator.callback_url = f"{server.callbacks_url}/callbacks/zegocloud"
        if proxy_callbacks:
            callback_proxy = FaultProxy("127.0.0.1", server.callbacks_port)
            await callback_proxy.start()
            emulator.callback_url = f"{callback_proxy.url}/callbacks/zegocloud"
    channel = grpc.aio.insecure_channel(server.grpc_target)
    stub = pb_grpc.AvatarGatewayStub(channel)
    try:
        yield Rig(
            Gateway(server, channel, stub), vendor, emulator, proxy, drive_proxy, callback_proxy
        )
    finally:
        await channel.close()
        await server.stop(grace_s=1.0)
        for extra in (proxy, drive_proxy, callback_proxy):
            if extra is not None:
                await extra.stop()
        await emulator.stop()


def only(vendor: str) -> dict[str, str]:
    return {"sandbox_vendors": vendor}


READY_DELAY_ATTR = {
    "zegocloud": "task_ready_delay_s",
    "tencent": "session_ready_delay_s",
    "akool": "queueing_s",
}


@contextlib.contextmanager
def readiness_held(vendor: str, emulator: Any, seconds: float) -> Iterator[None]:
    """New sessions of ``vendor`` become ready only after ``seconds``: the vendor is slow, so
    no readiness notification (ZEGO's task callback, Akool's avatar in the room) comes
    before then either, and only the status poll speaks."""
    attr = READY_DELAY_ATTR[vendor]
    before = getattr(emulator, attr)
    setattr(emulator, attr, seconds)
    try:
        yield
    finally:
        setattr(emulator, attr, before)


# ---- drive sockets dropped mid-turn --------------------------------------------------------


@pytest.mark.parametrize("gateway", [only("tencent")], indirect=True)
async def test_tencent_channel_dropped_twice_mid_turn_resumes_without_loss(
    gateway: Gateway,
) -> None:
    """Tencent's command channel may drop at any time (tencent.md §5): the gateway reconnects and
    re-sends what the vendor may have missed; the vendor dedupes by (ReqId, Seq)."""
    s = await gateway.create("tencent", AVATARS["tencent"])
    emulator = gateway.emulator("tencent")
    pcm = tone(3.0, freq=311)
    started = asyncio.Event()
    drops: list[int] = []

    async def dropper() -> None:
        await started.wait()
        for _ in range(2):
            await asyncio.sleep(0.8)
            drops.append(await emulator.drop_channels(s.vendor_session_id))

    task = asyncio.create_task(dropper())
    responses = []
    async for r in gateway.stub.Drive(paced_requests(s.name, pcm, realtime=False), timeout=30):
        responses.append(r)
        if r.HasField("started"):
            started.set()
    await task
    assert drops == [1, 1]
    assert [w.reason for w in events(responses, "warning")] == ["VENDOR_RECONNECTED"] * 2
    assert [e.turn_id for e in events(responses, "speech_started")] == ["1"]
    assert [(e.turn_id, e.interrupted) for e in events(responses, "speech_ended")] == [("1", False)]
    assert events(responses, "turn_failed") == []
    (drive,) = emulator.drives_of(s.vendor_session_id, "audio")
    # Nothing lost, nothing duplicated: the vendor's audio is byte-for-byte what was sent.
    assert drive.sha256 == sha(pcm) and drive.audio_bytes == len(pcm)
    assert drive.missing_seqs == [] and drive.conflicts == []
    assert drive.final_type == 1  # resumed within StreamMaxInterval: not auto-finalised
    assert len(drive.connections) == 3
    # The session stays usable: a new Drive plays a new turn intact.
    pcm2 = tone(0.5, freq=523)
    more = await collect(
        gateway.stub.Drive(paced_requests(s.name, pcm2, realtime=False), timeout=20)
    )
    assert [e.turn_id for e in events(more, "speech_ended")] == ["2"]
    assert received_audio("tencent", emulator, s.vendor_session_id) == [sha(pcm), sha(pcm2)]


async def test_tencent_connection_reset_latency_and_blackhole_lose_nothing() -> None:
    """Socket-level faults between gateway and vendor: 40 ms of latency throughout, an RST
    cut mid-turn, then a 1 s blackhole (nothing moves, buffers fill) mid-turn."""
    async with proxied_gateway("tencent") as rig:
        s = await rig.gw.create("tencent", AVATARS["tencent"])
        rig.proxy.latency_s = 0.04
        pcm = tone(3.0, freq=347)
        started = asyncio.Event()

        async def faults() -> None:
            await started.wait()
            await asyncio.sleep(0.7)
            assert await rig.proxy.cut() >= 1
            await asyncio.sleep(0.7)
            rig.proxy.blackhole()
            await asyncio.sleep(1.0)
            rig.proxy.release()

        task = asyncio.create_task(faults())
        responses = []
        call = rig.gw.stub.Drive(paced_requests(s.name, pcm, realtime=False), timeout=30)
        async for r in call:
            responses.append(r)
            if r.HasField("started"):
                started.set()
        await task
        assert await call.code() == C.OK
        assert [(e.turn_id, e.interrupted) for e in events(responses, "speech_ended")] == [
            ("1", False)
        ]
        assert events(responses, "turn_failed") == []
        (drive,) = rig.emulator.drives_of(s.vendor_session_id, "audio")
        assert drive.sha256 == sha(pcm) and drive.missing_seqs == [] and drive.conflicts == []
        closed = await rig.gw.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)
        assert closed.state == pb.SESSION_STATE_CLOSED
        assert open_vendor_sessions("tencent", rig.emulator) == set()


async def test_zegocloud_drive_dropped_mid_turn_fails_that_turn_once_and_the_next_plays() -> None:
    """A ZEGO WS drive cannot be resumed (a new drive interrupts the old one, zegocloud.md §5):
    the turn
    fails with one clear ``turn_failed``; the same stream's next turn plays intact. The
    vendor's drive-status callbacks arrive 300 ms late (a slow callback path), so the
    gateway learns of the failure twice: from the socket and from the vendor."""
    async with proxied_gateway("zegocloud", proxy_callbacks=True) as rig:
        assert rig.callback_proxy is not None
        rig.callback_proxy.latency_s = 0.3
        s = await rig.gw.create()
        first, second = tone(3.0, freq=251), tone(1.0, freq=499)
        dropped: list[int] = []

        async def requests() -> AsyncIterator[pb.DriveRequest]:
            config = pb.DriveConfig(session=s.name, audio_format=audio_format())
            yield pb.DriveRequest(config=config)
            for n, i in enumerate(range(0, len(first), 1280)):
                yield pb.DriveRequest(audio=first[i : i + 1280])
                await asyncio.sleep(0.04)
                if n == 25:  # 1 s into the turn, in real time
                    dropped.append(await rig.emulator.drop_drive_sockets())
            yield pb.DriveRequest(end_turn=pb.EndTurn())
            yield pb.DriveRequest(audio=second)
            yield pb.DriveRequest(end_turn=pb.EndTurn())

        call = rig.gw.stub.Drive(requests(), timeout=30)
        responses = [r async for r in call]
        assert await call.code() == C.OK and dropped == [1]
        failed = events(responses, "turn_failed")
        assert len(failed) == 1 and failed[0].turn_id == "1", f"one turn_failed per turn: {failed}"
        assert failed[0].reason in ("VENDOR_UNAVAILABLE", "VENDOR_DRIVE_FAILED")
        assert [(e.turn_id, e.interrupted) for e in events(responses, "speech_ended")] == [
            ("2", False)
        ]
        drives = rig.emulator.drives_for_task(s.vendor_session_id)
        assert [d.status for d in drives] == [3, 4]  # failed, then ended normally
        assert drives[1].sha256 == sha(second) and drives[1].stopped and not drives[1].violations


# ---- lost answers, client retries and deadlines on CreateSession --------------------------


@pytest.mark.parametrize("vendor", VENDORS)
async def test_lost_create_answer_leaves_exactly_one_vendor_session(
    vendor: str, livekit: Any
) -> None:
    """The vendor creates the session but its answer is lost (connection reset). The client
    retries CreateSession with the same request_id until it succeeds; in the end exactly one
    vendor session is open and it is the one the gateway returned (no billed orphan)."""
    async with proxied_gateway(vendor, livekit) as rig:
        rig.proxy.lose_next_answers(1)
        session: pb.Session | None = None
        for _ in range(3):
            try:
                session = await rig.gw.create(vendor, AVATARS[vendor], request_id="lost-1")
                break
            except grpc.aio.AioRpcError as err:
                assert err.code() == C.UNAVAILABLE, err
        assert session is not None and session.state == pb.SESSION_STATE_READY
        assert rig.proxy.stats.lost_answers == 1
        await asyncio.sleep(0.5)  # anything the vendor still does with the lost call
        assert open_vendor_sessions(vendor, rig.emulator) == {session.vendor_session_id}
        await rig.gw.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=20)
        assert await wait_for(lambda: not open_vendor_sessions(vendor, rig.emulator), 3)


# The ZEGO and Akool emulators read a stalled create's body only after the stall, so a client
# that gave up leaves no vendor session there; the readiness stall covers those two.
RETRY_CASES = [
    ("zegocloud", "ready"),
    ("tencent", "create"),
    ("tencent", "ready"),
    ("akool", "ready"),
]


@pytest.mark.parametrize(
    ("gateway", "phase"),
    [(only(v), phase) for v, phase in RETRY_CASES],
    indirect=["gateway"],
    ids=[f"{v}-{phase}" for v, phase in RETRY_CASES],
)
async def test_create_retried_after_a_client_deadline_makes_one_vendor_session(
    gateway: Gateway, phase: str
) -> None:
    """The vendor stalls (its create call, or the readiness poll) past the client's deadline;
    the client retries with the same request_id. The retry returns the one session the
    first call started (proto: "a retry with the same id returns the same session and never
    creates a second vendor session"), and nothing is left behind."""
    vendor = gateway.server.settings.sandbox_vendors
    emulator = gateway.emulator(vendor)
    op = CREATE_OP[vendor] if phase == "create" else STATUS_OP[vendor]
    emulator.faults.stall_next(op, 1.2)
    request = pb.CreateSessionRequest(vendor=vendor, avatar_id=AVATARS[vendor], request_id="rq-1")
    if phase == "ready":
        with readiness_held(vendor, emulator, 3.0):
            await _failed_in_time_and_the_retry_gets_it(gateway, vendor, emulator, request)
        return
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.CreateSession(request, timeout=0.6)
    assert err.value.code() == C.DEADLINE_EXCEEDED
    retry: pb.Session | None = None
    for _ in range(20):  # a retry may be told to come back while the first is in progress
        try:
            retry = await gateway.stub.CreateSession(request, timeout=15)
            break
        except grpc.aio.AioRpcError as exc:
            assert error_info(exc)[:2] == (C.FAILED_PRECONDITION, "SESSION_NOT_READY"), exc
            await asyncio.sleep(0.2)
    assert retry is not None and retry.state == pb.SESSION_STATE_READY
    await asyncio.sleep(1.0)  # let the stalled vendor call finish whatever it does
    assert open_vendor_sessions(vendor, emulator) == {retry.vendor_session_id}
    sessions = await list_all_sessions(gateway.stub)
    assert [(x.name, x.state) for x in sessions] == [(retry.name, pb.SESSION_STATE_READY)], (
        "one logical CreateSession must leave one session, not a stuck CREATING record"
    )


async def _failed_in_time_and_the_retry_gets_it(
    gateway: Gateway, vendor: str, emulator: Any, request: pb.CreateSessionRequest
) -> None:
    # The readiness poll is bounded by the caller's deadline: the gateway answers in time
    # with a FAILED session (its vendor session closed), and a retry with the same
    # request_id returns that same result (AIP-155), creating nothing new.
    first = await gateway.stub.CreateSession(request, timeout=0.6)
    assert first.state == pb.SESSION_STATE_FAILED and first.failure.reason == "VENDOR_TIMEOUT"
    again = await gateway.stub.CreateSession(request, timeout=5)
    assert again.name == first.name and again.state == pb.SESSION_STATE_FAILED
    await asyncio.sleep(1.5)  # let the stalled vendor call finish whatever it does
    assert open_vendor_sessions(vendor, emulator) == set()


@pytest.mark.parametrize("gateway", [only(v) for v in VENDORS], indirect=True, ids=VENDORS)
async def test_create_answers_within_the_callers_deadline_when_the_vendor_fails(
    gateway: Gateway,
) -> None:
    """The vendor is slow to be ready and its readiness poll keeps failing with HTTP 503
    (twice, 2 s deadline), then hangs (a call stalled 3 s, 1.5 s deadline). Retries
    (jittered backoff) and the wait on a hung call must end in time for the gateway to
    answer before the caller's deadline: a FAILED session (VENDOR_TIMEOUT) or an
    UNAVAILABLE status, never DEADLINE_EXCEEDED; and the vendor session each attempt
    started is closed, not left billing."""
    vendor = gateway.server.settings.sandbox_vendors
    emulator = gateway.emulator(vendor)
    request = pb.CreateSessionRequest(vendor=vendor, avatar_id=AVATARS[vendor])
    outcomes = []
    with readiness_held(vendor, emulator, 10.0):
        for fault, timeout in (("503", 2.0), ("503", 2.0), ("hang", 1.5)):
            emulator.faults.clear()
            if fault == "503":
                emulator.faults.fail_next(STATUS_OP[vendor], http_status=503, count=10_000)
            else:
                emulator.faults.stall_next(STATUS_OP[vendor], 3.0)
            t0 = time.monotonic()
            try:
                s = await gateway.stub.CreateSession(request, timeout=timeout)
                outcomes.append(f"{fault}: {pb.SessionState.Name(s.state)}/{s.failure.reason}")
            except grpc.aio.AioRpcError as err:
                outcomes.append(f"{fault}: {err.code().name}")
            assert time.monotonic() - t0 < timeout + 0.5
    emulator.faults.clear()
    await wait_for(lambda: not open_vendor_sessions(vendor, emulator), 1.5)
    leaked = open_vendor_sessions(vendor, emulator)
    answered = all(
        o.split(": ")[1] in ("SESSION_STATE_FAILED/VENDOR_TIMEOUT", "UNAVAILABLE") for o in outcomes
    )
    assert answered and not leaked, f"outcomes {outcomes}; vendor sessions left open {leaked}"


@pytest.mark.parametrize("gateway", [only(v) for v in VENDORS], indirect=True, ids=VENDORS)
async def test_idempotent_calls_retry_through_5xx(gateway: Gateway) -> None:
    """HTTP 5xx on the readiness poll and on close are retried (backoff) and succeed."""
    vendor = gateway.server.settings.sandbox_vendors
    emulator = gateway.emulator(vendor)
    before = emulator.faults.injected
    emulator.faults.fail_next(STATUS_OP[vendor], http_status=503, count=2)
    s = await gateway.create(vendor, AVATARS[vendor])
    assert s.state == pb.SESSION_STATE_READY
    emulator.faults.fail_next(CLOSE_OP[vendor], http_status=502, count=2)
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)
    assert closed.state == pb.SESSION_STATE_CLOSED
    assert emulator.faults.injected - before == 4  # every injected 5xx was met and retried
    assert await wait_for(lambda: not open_vendor_sessions(vendor, emulator), 2.0)


@pytest.mark.parametrize("gateway", [only(v) for v in VENDORS], indirect=True, ids=VENDORS)
async def test_business_error_on_create_is_a_clear_status_and_leaves_nothing(
    gateway: Gateway,
) -> None:
    vendor = gateway.server.settings.sandbox_vendors
    emulator = gateway.emulator(vendor)
    emulator.faults.fail_next(CREATE_OP[vendor], QUOTA_CODE[vendor])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.create(vendor, AVATARS[vendor])
    code, reason, metadata = error_info(err.value)
    assert (code, reason) == (C.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED")
    assert metadata["vendor"] == vendor and metadata["vendorCode"] == str(QUOTA_CODE[vendor])
    assert open_vendor_sessions(vendor, emulator) == set()
    assert all(x.state != pb.SESSION_STATE_CREATING for x in await list_all_sessions(gateway.stub))
    s = await gateway.create(vendor, AVATARS[vendor])  # the vendor recovered: so does the caller
    assert s.state == pb.SESSION_STATE_READY
    assert open_vendor_sessions(vendor, emulator) == {s.vendor_session_id}


@pytest.mark.parametrize("gateway", [only("tencent")], indirect=True)
async def test_tencent_rejected_audio_fails_the_turn_and_stalls_lose_nothing(
    gateway: Gateway,
) -> None:
    """Turn 1: the vendor rejects its first audio packet with a business code (Type 9) →
    ``turn_failed`` for turn 1. Turn 2: the vendor stalls 1 s mid-turn (stops reading) →
    the turn still arrives byte for byte."""
    s = await gateway.create("tencent", AVATARS["tencent"])
    emulator = gateway.emulator("tencent")
    emulator.faults.fail_next("SEND_AUDIO", 100000)
    first = tone(1.0, freq=277)
    responses = await collect(
        gateway.stub.Drive(paced_requests(s.name, first, realtime=False), timeout=30)
    )
    assert [(f.turn_id, f.reason) for f in events(responses, "turn_failed")] == [
        ("1", "VENDOR_DRIVE_FAILED")
    ]
    second = tone(2.0, freq=433)
    stalled = asyncio.Event()

    async def stall() -> None:
        await asyncio.sleep(0.8)
        emulator.faults.stall_next("SEND_AUDIO", 1.0)
        stalled.set()

    task = asyncio.create_task(stall())
    more = await collect(
        gateway.stub.Drive(paced_requests(s.name, second, realtime=False), timeout=30)
    )
    await task
    assert stalled.is_set() and events(more, "turn_failed") == []
    assert [(e.turn_id, e.interrupted) for e in events(more, "speech_ended")] == [("2", False)]
    assert received_audio("tencent", emulator, s.vendor_session_id)[-1] == sha(second)


async def test_vendor_reading_slowly_still_gets_every_byte() -> None:
    """ZEGO's drive socket reads at 20 KB/s (0.6x real time for 16 kHz mono): the gateway
    waits on the socket instead of failing or dropping, and the turn completes intact."""
    async with proxied_gateway("zegocloud", proxy_drive=True) as rig:
        assert rig.drive_proxy is not None
        s = await rig.gw.create()
        rig.drive_proxy.set_rate(UP, 20_000)
        pcm = tone(3.0, freq=389)
        t0 = time.monotonic()
        call = rig.gw.stub.Drive(paced_requests(s.name, pcm, realtime=False), timeout=40)
        responses = [r async for r in call]
        elapsed = time.monotonic() - t0
        assert await call.code() == C.OK
        assert events(responses, "turn_failed") == [] and events(responses, "warning") == []
        assert [(e.turn_id, e.interrupted) for e in events(responses, "speech_ended")] == [
            ("1", False)
        ]
        (drive,) = rig.emulator.drives_for_task(s.vendor_session_id)
        assert drive.sha256 == sha(pcm) and drive.stopped and not drive.violations
        assert elapsed >= len(pcm) / 20_000 - 1.0  # it really was throttled by the vendor
        assert elapsed < len(pcm) / 20_000 + 5.0


# ---- the vendor ends the session -----------------------------------------------------------


@pytest.mark.parametrize("gateway", [only("akool")], indirect=True)
async def test_vendor_ending_the_session_closes_it_in_the_gateway(gateway: Gateway) -> None:
    """Akool ends the session (its duration ran out): the open Drive fails with
    VENDOR_SESSION_LOST, and the gateway's session is CLOSED (reason VENDOR), so callers
    and the reaper see the truth; a new Drive is refused with SESSION_CLOSED."""
    s = await gateway.create("akool", AVATARS["akool"])
    emulator = gateway.emulator("akool")

    async def end() -> None:
        await asyncio.sleep(0.8)
        await emulator.end_session(s.vendor_session_id, "expired")

    task = asyncio.create_task(end())
    config = pb.DriveRequest(config=pb.DriveConfig(session=s.name, audio_format=audio_format()))
    code, reason, metadata, got = await drive_error(gateway.stub, [config])
    await task
    assert (code, reason, metadata["vendor"]) == (C.UNAVAILABLE, "VENDOR_SESSION_LOST", "akool")
    assert kinds(got) == ["started"]

    async def closed() -> bool:
        got = await gateway.stub.GetSession(pb.GetSessionRequest(name=s.name), timeout=5)
        return got.state == pb.SESSION_STATE_CLOSED

    assert await wait_for(closed, 3.0), "the gateway still reports the lost session READY"
    final = await gateway.stub.GetSession(pb.GetSessionRequest(name=s.name), timeout=5)
    assert final.close_reason == pb.CLOSE_REASON_VENDOR
    code, reason, _, _ = await drive_error(gateway.stub, [config])
    assert (code, reason) == (C.FAILED_PRECONDITION, "SESSION_CLOSED")
