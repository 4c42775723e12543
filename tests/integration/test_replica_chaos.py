"""Chaos across replicas: real processes, random kills and restarts, a Redis restart, audits.

Three gateway processes (``python -m gateway serve``, not the sandbox) share one real
``redis-server``; the ZEGOCLOUD and Tencent emulators run as their own servers
(``python -m gateway emulate``). ZEGOCLOUD posts its callbacks to one URL, as to a
Kubernetes Service: a TCP proxy in front of a live replica, moved to another when that one
is killed. Clients run ``SESSIONS`` session lives, ``CONCURRENCY`` at a time, each on
random live replicas: CreateSession (retried with its request_id elsewhere when a replica
dies under it), a few one-turn Drives (each on any live replica, ``preempt`` as reconnects
do; retried elsewhere), then CloseSession or abandonment (a short ``max_duration``: the
reaper must close it). Meanwhile Redis is restarted empty once, and replicas are killed
(``kill -9``) and replaced every few seconds.

Audits, once the clients are done (docs/architecture.md §4.1-4.3):

* zero vendor sessions open that the registry does not know as READY;
* zero sessions open at the vendor after their client closed them (CloseSession answered
  CLOSED), and every abandoned one closed by a reaper;
* every turn the gateway reported spoken (``speech_ended``) reached the vendor whole (SHA-256),
  and no two turns of a session share an id;
* every ended session's billed seconds stopped at its close: its usage says it was billed
  from create_time to close_time, a later read (on any replica) says the same, and the
  emulator billed the vendor session only within that window (docs/architecture.md §4.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2, timestamp_pb2

from tests.conftest import (
    EmulatorProcess,
    LoggingProcess,
    RedisServer,
    audio_format,
    base_env,
    emulate,
    error_info,
    gateway_process,
    tone,
)
from tests.faultproxy import FaultProxy
from tests.integration.test_replicas import TENCENT, ZEGO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SEED = 20261206
SESSIONS = 24
CONCURRENCY = 6
REPLICAS = 3
KILLS = 4
TTL_S = 2.0
"""Replica and drive lease TTL of the replicas (s)."""
REAPER_S = 0.5
ABANDON_MAX_DURATION_S = 8.0
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,  # a replica killed under the call, draining, Redis away
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,  # DRIVE_TAKEN_OVER / DRIVE_PREEMPTED: reconnect
    # The client of a bidirectional call that the server ends while it writes can read this
    # instead of the server's status (grpc-python); the Drive is simply retried.
    grpc.StatusCode.INTERNAL,
}
AVATARS = {"zegocloud": "zego_emma", "tencent": "sandbox-project"}
T = TypeVar("T")


@dataclass(eq=False)
class Replica:
    """One gateway process and a client of it."""

    process: LoggingProcess
    stack: contextlib.AsyncExitStack
    channel: grpc.aio.Channel
    stub: pb_grpc.AvatarGatewayStub
    callbacks_port: int
    alive: bool = True


class Fleet:
    """The replicas: started, killed (``kill -9``) and replaced; the callback "Service"."""

    def __init__(self, env: dict[str, str], callbacks: FaultProxy) -> None:
        self.env = env
        self.callbacks = callbacks
        self.replicas: list[Replica] = []
        self.kills = 0

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    async def start_one(self) -> Replica:
        stack = contextlib.AsyncExitStack()
        process = await stack.enter_async_context(
            gateway_process(self.env, "serve", started="gateway_started")
        )
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(str(process.started["listen"]))
        )
        callbacks_port = int(str(process.started["callbacks"]).rsplit(":", 1)[1])
        replica = Replica(
            process, stack, channel, pb_grpc.AvatarGatewayStub(channel), callbacks_port
        )
        self.replicas.append(replica)
        if len(self.live()) == 1:
            self.callbacks.upstream_port = callbacks_port
        return replica

    async def kill(self, replica: Replica) -> None:
        replica.alive = False
        replica.process.proc.kill()
        await replica.process.proc.wait()
        self.kills += 1
        if self.callbacks.upstream_port == replica.callbacks_port and self.live():
            self.callbacks.upstream_port = self.live()[0].callbacks_port
        # Its client channel stays open until the end: closing it would cancel the calls in
        # flight on it locally, where a client sees the replica's death as UNAVAILABLE.

    async def aclose(self) -> None:
        for replica in self.replicas:
            if replica.alive:
                replica.alive = False
                with contextlib.suppress(ProcessLookupError):
                    replica.process.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replica.process.proc.wait(), 15)
            await replica.stack.aclose()


@dataclass
class Turn:
    session: str
    vendor_session_id: str
    vendor: str
    pcm: bytes
    turn_id: str = ""
    outcome: str = ""  # spoken | failed | gave_up


@dataclass
class Report:
    created: int = 0
    create_failed: list[str] = field(default_factory=list)
    closed: list[pb.Session] = field(default_factory=list)
    abandoned: list[pb.Session] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    retries: int = 0


def _dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


class Clients:
    """The session lives, on whatever replicas are alive."""

    def __init__(self, fleet: Fleet, rng: random.Random) -> None:
        self.fleet = fleet
        self.rng = rng
        self.report = Report()
        self.live = asyncio.Event()  # set once a session is READY

    async def on_any(
        self, what: str, call: Callable[[pb_grpc.AvatarGatewayStub], Awaitable[T]]
    ) -> T:
        """``call`` on a random live replica, again elsewhere while it fails retryably."""
        last: Exception | None = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            live = self.fleet.live()
            if live:
                try:
                    return await call(self.rng.choice(live).stub)
                except grpc.aio.AioRpcError as err:
                    # SESSION_NOT_READY: a create with this request_id is still settling
                    # (its replica died mid-way: the reaper fails it, then it answers).
                    retryable = err.code() in RETRYABLE or (
                        error_info(err)[1] == "SESSION_NOT_READY"
                    )
                    if not retryable:
                        raise
                    last = err
                    self.report.retries += 1
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what} kept failing for 90 s: {last}")

    async def life(self, index: int) -> None:
        rng = random.Random(SEED * 1000 + index)
        vendor = ("zegocloud", "tencent")[index % 2]
        ending = rng.choice(("close", "close", "abandon"))
        request = pb.CreateSessionRequest(
            vendor=vendor,
            avatar_id=AVATARS[vendor],
            request_id=str(uuid.UUID(int=rng.getrandbits(128))),
            max_duration=_dur(ABANDON_MAX_DURATION_S if ending == "abandon" else 600),
        )
        session = await self.on_any("CreateSession", lambda s: s.CreateSession(request, timeout=20))
        if session.state != pb.SESSION_STATE_READY:
            self.report.create_failed.append(f"{session.name} {session.failure.reason}")
            return
        self.report.created += 1
        self.live.set()
        for k in range(rng.choice((1, 2, 3))):
            pcm = tone(rng.uniform(0.4, 0.9), freq=180 + 7 * index + 3 * k)
            turn = Turn(session.name, session.vendor_session_id, vendor, pcm)
            self.report.turns.append(turn)
            try:
                await self.drive(turn)
            except grpc.aio.AioRpcError as err:
                # An abandoned session may reach its max_duration while its client still
                # retries a Drive on a dying replica: the reaper did its job.
                if ending != "abandon" or error_info(err)[1] != "SESSION_CLOSED":
                    raise
                turn.outcome = "session_closed"
                break
        if ending == "abandon":
            self.report.abandoned.append(session)
            return
        closed = await self.on_any(
            "CloseSession",
            lambda s: s.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30),
        )
        assert closed.state == pb.SESSION_STATE_CLOSED, closed
        self.report.closed.append(closed)

    async def drive(self, turn: Turn) -> None:
        """One turn on one Drive; on a replica that dies, the turn again on another."""

        async def attempt(stub: pb_grpc.AvatarGatewayStub) -> list[pb.DriveResponse]:
            async def requests() -> AsyncIterator[pb.DriveRequest]:
                config = pb.DriveConfig(
                    session=turn.session, audio_format=audio_format(), preempt=True
                )
                yield pb.DriveRequest(config=config)
                for i in range(0, len(turn.pcm), 3200):
                    yield pb.DriveRequest(audio=turn.pcm[i : i + 3200])
                yield pb.DriveRequest(end_turn=pb.EndTurn())

            return [r async for r in stub.Drive(requests(), timeout=40)]

        responses = await self.on_any("Drive", attempt)
        ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
        failed = [r.turn_failed for r in responses if r.HasField("turn_failed")]
        if ended and not ended[0].interrupted:
            turn.outcome, turn.turn_id = "spoken", ended[0].turn_id
        elif failed:
            turn.outcome, turn.turn_id = "failed", failed[0].turn_id
        else:
            # A SPEECH_END_TIMEOUT warning: the vendor's speech events did not come (a ZEGO
            # callback lost with the replica it reached). Reported, so not a silent loss.
            turn.outcome = "unconfirmed"


async def chaos(
    fleet: Fleet, redis: RedisServer, rng: random.Random, done: asyncio.Event, live: asyncio.Event
) -> None:
    """Restart Redis empty once sessions live (``live``); then kill and replace replicas
    until ``KILLS``."""
    await live.wait()
    await redis.stop()
    await redis.start()
    while fleet.kills < KILLS and not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), rng.uniform(1.0, 2.0))
        if done.is_set():
            break
        await fleet.kill(rng.choice(fleet.live()))
        await fleet.start_one()


async def open_at_vendors(emulators: dict[str, EmulatorProcess]) -> dict[str, str]:
    """Vendor session id -> vendor, for every session an emulator still bills."""
    out: dict[str, str] = {}
    zego = await emulators["zegocloud"].state()
    for task_id, task in zego["tasks"].items():
        if task["status"] in (1, 3):
            out[task_id] = "zegocloud"
    tencent = await emulators["tencent"].state()
    for session_id in tencent["openSessions"]:
        out[session_id] = "tencent"
    return out


async def spoken_hashes(emulators: dict[str, EmulatorProcess]) -> dict[str, set[str]]:
    """Vendor session id -> SHA-256 of each audio turn it received."""
    out: dict[str, set[str]] = {}
    zego = await emulators["zegocloud"].state()
    for drive in zego["drives"].values():
        out.setdefault(drive["task_id"], set()).add(drive["sha256"])
    tencent = await emulators["tencent"].state()
    for drive in tencent["drives"]:
        if drive["kind"] == "audio":
            out.setdefault(drive["sessionId"], set()).add(drive["sha256"])
    return out


async def billing_windows(
    emulators: dict[str, EmulatorProcess],
) -> dict[str, tuple[float, float | None]]:
    """Vendor session id -> when the emulator billed it from and until (Unix s; None: still)."""
    out: dict[str, tuple[float, float | None]] = {}
    zego = await emulators["zegocloud"].state()
    for task_id, task in zego["tasks"].items():
        out[task_id] = (task["billed_from"], task["billed_until"])
    tencent = await emulators["tencent"].state()
    for session in tencent["sessions"]:
        out[session["sessionId"]] = (session["billedFrom"], session["billedUntil"])
    return out


async def session_or_none(clients: Clients, name: str) -> pb.Session | None:
    """GetSession on any live replica; ``None`` when the registry no longer has it (a closed
    session's record is not put back after Redis restarted empty, architecture.md §4.3)."""
    try:
        return await clients.on_any(
            "GetSession",
            lambda st: st.GetSession(pb.GetSessionRequest(name=name), timeout=10),
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def unix(ts: timestamp_pb2.Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


async def ready_sessions(clients: Clients) -> dict[str, pb.Session]:
    async def page(stub: pb_grpc.AvatarGatewayStub) -> pb.ListSessionsResponse:
        return await stub.ListSessions(pb.ListSessionsRequest(page_size=1000), timeout=10)

    listed = await clients.on_any("ListSessions", page)
    return {s.vendor_session_id: s for s in listed.sessions if s.state == pb.SESSION_STATE_READY}


async def test_chaos_across_replicas_leaks_no_session(redis_server: RedisServer) -> None:
    rng = random.Random(SEED)
    callbacks = FaultProxy("127.0.0.1", 9)  # the upstream is set when a replica starts
    await callbacks.start()
    zego_args = (
        "--listen",
        "127.0.0.1:0",
        "--callback-url",
        f"{callbacks.url}/callbacks/zegocloud",
    )
    try:
        async with (
            emulate("zegocloud", base_env(**ZEGO), *zego_args) as zego,
            emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as tencent,
        ):
            emulators = {"zegocloud": zego, "tencent": tencent}
            env = base_env(
                **ZEGO,
                **TENCENT,
                AVATAR_GATEWAY_ZEGOCLOUD__API_URL=zego.url,
                AVATAR_GATEWAY_TENCENT__API_URL=tencent.url,
                AVATAR_GATEWAY_LISTEN="127.0.0.1:0",
                AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0",
                AVATAR_GATEWAY_REDIS_URL=redis_server.url,
                AVATAR_GATEWAY_REPLICA_LEASE_TTL_S=str(TTL_S),
                AVATAR_GATEWAY_REAPER_INTERVAL_S=str(REAPER_S),
                AVATAR_GATEWAY_SHUTDOWN_GRACE_S="1",
                AVATAR_GATEWAY_EVENT_LOOP="asyncio",
            )
            fleet = Fleet(env, callbacks)
            try:
                await asyncio.gather(*(fleet.start_one() for _ in range(REPLICAS)))
                clients = Clients(fleet, rng)
                gate = asyncio.Semaphore(CONCURRENCY)
                done = asyncio.Event()

                async def guarded(i: int) -> None:
                    async with gate:
                        await clients.life(i)

                chaos_task = asyncio.create_task(
                    chaos(fleet, redis_server, rng, done, clients.live)
                )
                try:
                    await asyncio.wait_for(
                        asyncio.gather(*(guarded(i) for i in range(SESSIONS))), 240
                    )
                finally:
                    done.set()
                    await chaos_task
                report = clients.report
                print(
                    f"\nsessions {report.created} created, {len(report.create_failed)} failed"
                    f" to start; {len(report.closed)} closed, {len(report.abandoned)} abandoned;"
                    f" turns {[t.outcome for t in report.turns]}; {fleet.kills} kills;"
                    f" {report.retries} client retries"
                )
                # The Redis restart came while sessions lived: their owners put them back.
                assert any(r.process.events("registry_rebuilt") for r in fleet.replicas)
                await audit(clients, emulators)
            finally:
                await fleet.aclose()
    finally:
        await callbacks.stop()


async def audit(clients: Clients, emulators: dict[str, EmulatorProcess]) -> None:
    report = clients.report
    assert report.created >= SESSIONS // 2, report.create_failed
    assert clients.fleet.kills == KILLS

    # Abandoned sessions are reaped (the owner may be dead: then after its lease lapsed).
    async def reaped() -> bool:
        for s in report.abandoned:
            got = await clients.on_any(
                "GetSession",
                lambda st, n=s.name: st.GetSession(pb.GetSessionRequest(name=n), timeout=10),
            )
            if got.state != pb.SESSION_STATE_CLOSED:
                return False
        return True

    deadline = time.monotonic() + ABANDON_MAX_DURATION_S + 2 * TTL_S + 20
    while not await reaped():
        assert time.monotonic() < deadline, "abandoned sessions not reaped"
        await asyncio.sleep(0.3)

    # Leak audit: every open vendor session is one the registry knows as READY ...
    open_now = await open_at_vendors(emulators)
    ready = await ready_sessions(clients)
    unknown = {v: vendor for v, vendor in open_now.items() if v not in ready}
    assert not unknown, f"vendor sessions open that the registry does not know: {unknown}"
    # ... and none of them is one its client closed or abandoned.
    ended = {s.vendor_session_id for s in (*report.closed, *report.abandoned)}
    assert not ended & set(open_now), f"closed sessions still open: {ended & set(open_now)}"

    # Audio: every turn reported spoken reached the vendor whole; turn ids unique per session.
    hashes = await spoken_hashes(emulators)
    lost = [
        f"{t.vendor} {t.session} turn {t.turn_id}"
        for t in report.turns
        if t.outcome == "spoken"
        and hashlib.sha256(t.pcm).hexdigest() not in hashes.get(t.vendor_session_id, set())
    ]
    assert not lost, lost
    by_session: dict[str, list[str]] = {}
    for t in report.turns:
        if t.turn_id:
            by_session.setdefault(t.session, []).append(t.turn_id)
    assert all(len(ids) == len(set(ids)) for ids in by_session.values()), by_session
    assert any(t.outcome == "spoken" for t in report.turns)

    # Billing stops at the close: closed sessions as CloseSession answered, abandoned ones as
    # read once reaped; each read again now (it must not have grown meanwhile).
    ended = list(report.closed)
    for s in report.abandoned:
        got = await session_or_none(clients, s.name)
        if got is not None:
            ended.append(got)
    windows = await billing_windows(emulators)
    billing: list[str] = []
    for s in ended:
        billed = s.usage.vendor_session_duration.ToNanoseconds() / 1e9
        create, close = unix(s.create_time), unix(s.close_time)
        if abs(billed - (close - create)) > 1e-3:
            billing.append(
                f"{s.name}: billed {billed:.3f} s, created to closed {close - create:.3f}"
            )
        start, until_ = windows.get(s.vendor_session_id, (create, close))
        if until_ is None or start < create - 1e-3 or until_ > close + 1e-3:
            end = "now" if until_ is None else f"{until_ - close:+.3f} s after close_time"
            billing.append(f"{s.name}: the vendor billed {start - create:+.3f} s .. {end}")
        later = await session_or_none(clients, s.name)
        if (
            later is not None
            and later.usage.vendor_session_duration != s.usage.vendor_session_duration
        ):
            billing.append(f"{s.name}: billed {billed:.3f} s, later {later.usage}")
    assert not billing, billing
    assert len(ended) >= len(report.closed) > 0
