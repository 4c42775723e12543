"""Redis faults, over real gRPC, a real redis-server and a real ZEGOCLOUD emulator.

Two replicas (``GatewayServer``s in this process) share one ``redis-server``
(docs/architecture.md §4.3):

1. **Unreachable.** A TCP proxy between the replicas and Redis partitions them from it
   (connections reset; Redis keeps running with its data). CreateSession, GetSession and
   CloseSession fail at once with UNAVAILABLE ``REGISTRY_UNAVAILABLE``; a Drive opened before
   goes on (a new turn reaches the vendor whole and its speech events arrive); the reaper
   closes nothing, not even a session past its max_duration. When Redis is reachable again,
   the reaper closes that session, and every vendor session is closed exactly once.
2. **Restarted empty.** redis-server is killed and started again on its port without its
   data. A replica puts back the records of the sessions it owns, and of those a drained
   replica released: each is listed and readable again, can be driven, closed, and reaped.

3. **A create cut before its record learnt the vendor's id** (its replica killed between
   the two, as the chaos run across replicas found): its close finds the vendor session by
   the id derived from ours and closes it.

Every wait polls a condition with a deadline, except the outage's own length.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from google.protobuf import duration_pb2

from core.contract import SessionSpec
from emulators.zegocloud import ZegocloudEmulator
from gateway.registry import SessionRecord
from tests.conftest import Gateway, RedisServer, audio_format, error_info, kinds, tone
from tests.faultproxy import FaultProxy
from tests.integration.test_faults import open_vendor_sessions
from tests.integration.test_replica_limits import Replica, start_replica
from tests.integration.test_replicas import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TTL_S = 1.5
"""Replica and drive lease TTL of the replicas under test (s)."""
REAPER_S = 0.2
"""Reaper interval of the replicas under test (s)."""


@contextlib.asynccontextmanager
async def pair(redis_url: str) -> AsyncIterator[tuple[ZegocloudEmulator, Replica, Replica]]:
    """A ZEGOCLOUD emulator and two replicas on ``redis_url``; callbacks go to the first."""
    emulator = ZegocloudEmulator(app_id=9, server_secret="x", callback_secret="cb")
    await emulator.start()
    replicas: list[Replica] = []
    try:
        for _ in range(2):
            replicas.append(
                await start_replica(
                    emulator,
                    redis_url=redis_url,
                    replica_lease_ttl_s=TTL_S,
                    reaper_interval_s=REAPER_S,
                )
            )
        emulator.callback_url = f"{replicas[0].server.callbacks_url}/callbacks/zegocloud"
        yield emulator, replicas[0], replicas[1]
    finally:
        for replica in replicas:
            await replica.stop()
        await emulator.stop()


def _dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


async def create(replica: Replica, **kw: Any) -> pb.Session:
    session = await replica.stub.CreateSession(
        pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma", **kw), timeout=30
    )
    assert session.state == pb.SESSION_STATE_READY
    return session


class LiveDrive:
    """One Drive stream whose requests the test writes turn by turn."""

    def __init__(self, replica: Replica, session: pb.Session) -> None:
        self.session = session
        self.call = replica.stub.Drive(timeout=120)
        self.responses: list[pb.DriveResponse] = []

    async def open(self) -> None:
        config = pb.DriveConfig(session=self.session.name, audio_format=audio_format())
        await self.call.write(pb.DriveRequest(config=config))
        first = await self.call.read()
        assert isinstance(first, pb.DriveResponse) and first.HasField("started"), first

    async def turn(self, pcm: bytes) -> list[str]:
        """Send ``pcm`` as one turn; wait for its ``speech_ended``; the kinds it got."""
        for i in range(0, len(pcm), 6400):
            await self.call.write(pb.DriveRequest(audio=pcm[i : i + 6400]))
        await self.call.write(pb.DriveRequest(end_turn=pb.EndTurn()))
        got: list[pb.DriveResponse] = []
        while True:
            r = await asyncio.wait_for(self.call.read(), 30)
            assert isinstance(r, pb.DriveResponse), r
            got.append(r)
            if r.HasField("speech_ended") or r.HasField("turn_failed"):
                break
        self.responses += got
        return kinds(got)

    async def finish(self) -> grpc.StatusCode:
        await self.call.done_writing()
        while (r := await self.call.read()) is not grpc.aio.EOF:
            assert isinstance(r, pb.DriveResponse)
            self.responses.append(r)
        code: grpc.StatusCode = await self.call.code()
        return code


def sha(pcm: bytes) -> str:
    return hashlib.sha256(pcm).hexdigest()


def stops(emulator: ZegocloudEmulator, task_id: str) -> int:
    """How many StopDigitalHumanStreamTask calls named ``task_id`` (any answer)."""
    return emulator.calls_for_task(task_id).get("StopDigitalHumanStreamTask", 0)


def is_open(emulator: ZegocloudEmulator, task_id: str) -> bool:
    return task_id in {t.task_id for t in emulator.open_tasks()}


async def test_redis_unreachable_fails_fast_keeps_drives_and_closes_once_after(
    redis_server: RedisServer,
) -> None:
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    try:
        async with pair(f"redis://127.0.0.1:{proxy.port}/0") as (emulator, a, b):
            driven = await create(a)
            expiring = await create(b, max_duration=_dur(4.0))  # B reaps it, after the outage
            drive = LiveDrive(a, driven)
            await drive.open()
            first = tone(0.6, freq=200)
            assert "speech_ended" in await drive.turn(first)

            await proxy.partition()
            outage_started = time.time()
            # Unary calls fail at once (well within their deadline), with the registry named.
            for call in (
                a.stub.CreateSession(
                    pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
                    timeout=10,
                ),
                b.stub.GetSession(pb.GetSessionRequest(name=driven.name), timeout=10),
                b.stub.CloseSession(pb.CloseSessionRequest(name=expiring.name), timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await call
                code, reason, _ = error_info(failed.value)
                assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "REGISTRY_UNAVAILABLE")
            # The open Drive goes on: a new turn, whole at the vendor, with its speech events.
            second = tone(0.7, freq=300)
            got = await drive.turn(second)
            assert "speech_started" in got and "speech_ended" in got, got
            assert sha(second) in {
                d.sha256 for d in emulator.drives_for_task(driven.vendor_session_id)
            }
            # Nothing is closed while Redis is away, even past max_duration (the reaper of B
            # cannot claim it). The outage lasts past the expiry and several lease TTLs.
            expire_at = expiring.expire_time.ToNanoseconds() / 1e9
            await asyncio.sleep(max(expire_at, outage_started + 3 * TTL_S) - time.time() + 1.0)
            assert is_open(emulator, expiring.vendor_session_id)
            assert stops(emulator, expiring.vendor_session_id) == 0
            assert proxy.stats.connections > 0 and proxy.refusing

            proxy.heal()
            # Back: B's reaper closes the expired session, and only it.
            await until(
                "the expired session closed",
                lambda: _closed(b, expiring.name),
                10 + 2 * TTL_S,
            )
            closed = await b.stub.GetSession(pb.GetSessionRequest(name=expiring.name), timeout=10)
            assert closed.close_reason == pb.CLOSE_REASON_MAX_DURATION
            assert not is_open(emulator, expiring.vendor_session_id)
            # A's Drive and its session live on (no replica took A for dead).
            third = tone(0.5, freq=400)
            assert "speech_ended" in await drive.turn(third)
            assert await drive.finish() == grpc.StatusCode.OK
            live = await b.stub.GetSession(pb.GetSessionRequest(name=driven.name), timeout=10)
            assert live.state == pb.SESSION_STATE_READY
            done = await b.stub.CloseSession(pb.CloseSessionRequest(name=driven.name), timeout=30)
            assert done.state == pb.SESSION_STATE_CLOSED
            for session in (driven, expiring):
                assert stops(emulator, session.vendor_session_id) == 1, session.name
            assert not emulator.open_tasks()
    finally:
        await proxy.stop()


async def _closed(replica: Replica, name: str) -> bool:
    s = await replica.stub.GetSession(pb.GetSessionRequest(name=name), timeout=10)
    return bool(s.state == pb.SESSION_STATE_CLOSED)


async def test_redis_restarted_empty_replicas_put_back_what_they_own(
    redis_server: RedisServer,
) -> None:
    async with pair(redis_server.url) as (emulator, a, b):
        on_a = [await create(a, labels={"n": str(i)}) for i in range(2)]
        on_b = await create(b, request_id="req-b-1", max_duration=_dur(600))
        expiring = await create(b, max_duration=_dur(2 * TTL_S + 6.0))
        names = {s.name for s in (*on_a, on_b, expiring)}
        # B drains: its sessions are released (owner ""), for any replica to adopt or reap.
        await b.server.stop(grace_s=0.5)
        released = {s.name.removeprefix("sessions/") for s in (on_b, expiring)}
        manager = a.server.manager
        assert manager is not None

        async def seen_released() -> bool:
            # What A's reaper last read of the released sessions (no API shows it).
            return released <= set(manager._released)

        await until("A's reaper to read the released sessions", seen_released, 10)

        await redis_server.stop()
        await redis_server.start()  # same port, no data

        async def all_listed() -> bool:
            page = await a.stub.ListSessions(pb.ListSessionsRequest(page_size=100), timeout=10)
            return {s.name for s in page.sessions} == names

        await until("every session listed again", all_listed, 6 * TTL_S)
        again = await a.stub.GetSession(pb.GetSessionRequest(name=on_a[0].name), timeout=10)
        assert again.state == pb.SESSION_STATE_READY and dict(again.labels) == {"n": "0"}
        # The request_id binding is back: a retry returns the same session. Until every
        # replica had a lease TTL to put its records back, a retry is told to wait instead
        # of risking a second vendor session for a binding not back yet.
        retry = pb.CreateSessionRequest(
            vendor="zegocloud",
            avatar_id="zego_emma",
            request_id="req-b-1",
            max_duration=_dur(600),
        )

        async def retried_create() -> pb.Session | None:
            try:
                return await a.stub.CreateSession(retry, timeout=30)
            except grpc.aio.AioRpcError as err:
                code, reason, _ = error_info(err)
                assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "REGISTRY_UNAVAILABLE")
                return None

        retried = await until("the request_id retry to be answered", retried_create, 4 * TTL_S)
        assert retried.name == on_b.name
        # Each can be driven (here: the released one, which A adopts) and closed once.
        drive = LiveDrive(a, on_b)
        await drive.open()
        pcm = tone(0.5, freq=250)
        await drive.turn(pcm)
        assert await drive.finish() == grpc.StatusCode.OK
        assert sha(pcm) in {d.sha256 for d in emulator.drives_for_task(on_b.vendor_session_id)}
        # The reaper knows them again: the expiring one is closed for its max_duration.
        await until("the expiring session reaped", lambda: _closed(a, expiring.name), 30)
        for session in (*on_a, on_b):
            done = await a.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
            assert done.state == pb.SESSION_STATE_CLOSED
        for session in (*on_a, on_b, expiring):
            assert stops(emulator, session.vendor_session_id) == 1, session.name
        assert not emulator.open_tasks()


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud,tencent"}], indirect=True)
async def test_a_create_cut_before_its_record_knew_the_vendor_id_is_still_closed(
    gateway: Gateway,
) -> None:
    """A replica killed between the vendor's create answer and the record's update leaves
    a CREATING record without the vendor's id. Its close finds the vendor session by the
    id derived from ours (ZEGO StreamId, Tencent UserId) and closes it."""
    manager = gateway.server.manager
    assert manager is not None
    for vendor, avatar in (("zegocloud", "zego_emma"), ("tencent", "sandbox-project")):
        session_id = uuid.uuid4().hex
        adapter = manager.adapters[vendor]
        spec = SessionSpec(
            session_id=session_id, avatar_id=avatar, max_duration_s=600, idle_timeout_s=300
        )
        handle = await adapter.create_session(spec)  # the vendor made it ...
        record = SessionRecord(session_id=session_id, vendor=vendor, avatar_id=avatar, owner="")
        await manager.registry.put(record)  # ... and the record never learnt its id
        emulator = gateway.emulator(vendor)
        assert handle.vendor_session_id in open_vendor_sessions(vendor, emulator)
        closed = await manager.close(f"sessions/{session_id}", pb.CLOSE_REASON_FAILED)
        assert closed.state == pb.SESSION_STATE_FAILED
        assert closed.vendor_session_id == handle.vendor_session_id
        assert handle.vendor_session_id not in open_vendor_sessions(vendor, emulator)
