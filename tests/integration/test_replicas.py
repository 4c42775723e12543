"""Replicas that die: three real gateway processes, one real redis-server, real emulators.

Each replica is ``python -m gateway serve`` (not the sandbox) configured against a vendor
emulator run as its own server (``python -m gateway emulate``), all sharing one
``redis-server``, with a short lease TTL so that the leases' bounds are seconds
(docs/architecture.md §4.1). Tencent is the vendor where no callback is needed, except in
scenario 5, which is about ZEGOCLOUD's callbacks. Scenarios:

1. ``kill -9`` of the replica driving a session mid-turn: the client reconnects to another
   replica (``preempt``: a reconnect) and drives the same session; its turn arrives whole
   (SHA-256 at the emulator) with a turn id no earlier turn had.
2. ``kill -9`` with no client coming back: the vendor session is closed, once, within
   2 x TTL + reaper interval (the measured time is printed).
3. Two Drives at once on two live replicas: exactly one wins; the other gets
   ``DRIVE_ALREADY_ACTIVE`` naming the winner.
4. A stale token: the driving replica is stopped (SIGSTOP) past its lease, another replica
   takes the Drive over and sends, the first is resumed: its stream ends with
   ``DRIVE_TAKEN_OVER`` and it writes nothing more to the vendor (ZEGOCLOUD records every
   drive socket's bytes).
5. ZEGOCLOUD posts its callbacks to a replica that does not drive the session: they reach
   the one that does (docs/architecture.md §4.2); one callback posted to every replica is
   applied once.
6. A CreateSession burst spread over the three processes: zero rate-limit refusals at the
   vendor (the limit is counted in Redis for all replicas, docs/architecture.md §4).

Every wait polls a condition with a deadline; nothing sleeps a fixed time for an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from emulators.zegocloud import callback_signature
from tests.conftest import (
    EmulatorProcess,
    LoggingProcess,
    audio_format,
    base_env,
    emulate,
    error_info,
    free_port,
    gateway_process,
    kinds,
    tone,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TTL_S = 2.0
"""Replica and drive lease TTL of the replicas under test (s)."""
REAPER_S = 1.0
"""Reaper interval of the replicas under test (s)."""
TENCENT = {
    "AVATAR_GATEWAY_TENCENT__APPKEY": "tencent-appkey-0123",
    "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": "tencent-access-token-4567",
}
ZEGO = {
    "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "424242",
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "zego-server-secret-0123456789abcd",
    "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": "zego-callback-secret",
}


@dataclass
class Replica:
    """One gateway process of the cluster and a client of it."""

    name: str
    process: LoggingProcess
    channel: grpc.aio.Channel
    stub: pb_grpc.AvatarGatewayStub

    @property
    def replica_id(self) -> str:
        return str(self.process.started["replica"])

    def send(self, sig: signal.Signals) -> None:
        self.process.proc.send_signal(sig)

    async def kill(self) -> None:
        """``kill -9``: no drain, no release, nothing said to Redis or the vendor."""
        self.process.proc.kill()
        await self.process.proc.wait()


@contextlib.asynccontextmanager
async def cluster(
    redis_url: str,
    vendor_env: dict[str, str],
    count: int = 3,
    callbacks_ports: dict[int, int] | None = None,
) -> AsyncIterator[list[Replica]]:
    """``count`` replicas started concurrently, each ready once it logs ``gateway_started``."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(i: int) -> Replica:
            env = base_env(
                **vendor_env,
                AVATAR_GATEWAY_LISTEN="127.0.0.1:0",
                AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0",
                AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{(callbacks_ports or {}).get(i, 0)}",
                AVATAR_GATEWAY_REDIS_URL=redis_url,
                AVATAR_GATEWAY_REPLICA_LEASE_TTL_S=str(TTL_S),
                AVATAR_GATEWAY_REAPER_INTERVAL_S=str(REAPER_S),
                AVATAR_GATEWAY_SHUTDOWN_GRACE_S="1",
                AVATAR_GATEWAY_EVENT_LOOP="asyncio",
            )
            process = await stack.enter_async_context(
                gateway_process(env, "serve", started="gateway_started")
            )
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(str(process.started["listen"]))
            )
            return Replica("ABC"[i], process, channel, pb_grpc.AvatarGatewayStub(channel))

        replicas = await asyncio.gather(*(start(i) for i in range(count)))
        assert len({r.replica_id for r in replicas}) == count
        yield list(replicas)


@contextlib.asynccontextmanager
async def zego_cluster(
    redis_url: str, callbacks_to: int, *, prepare_drives: bool = True
) -> AsyncIterator[tuple[EmulatorProcess, list[Replica]]]:
    """A standalone ZEGOCLOUD emulator and the cluster configured against it.

    The emulator's callbacks go to the replica of index ``callbacks_to``. Without
    ``prepare_drives`` no drive is asked for ahead of its turn (zegocloud.md §8.6), so every
    callback belongs to a turn a test drives.
    """
    port = free_port()  # the replica's callbacks port, which the emulator must know first
    args = (
        "--listen",
        "127.0.0.1:0",
        "--callback-url",
        f"http://127.0.0.1:{port}/callbacks/zegocloud",
    )
    async with (
        emulate("zegocloud", base_env(**ZEGO), *args) as emu,
        cluster(
            redis_url,
            {
                **ZEGO,
                "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": emu.url,
                "AVATAR_GATEWAY_ZEGOCLOUD__PREPARE_DRIVE_SOCKET": str(prepare_drives).lower(),
            },
            callbacks_ports={callbacks_to: port},
        ) as replicas,
    ):
        yield emu, replicas


def turn_ids(responses: list[pb.DriveResponse]) -> set[str]:
    ids = set()
    for r in responses:
        kind = r.WhichOneof("response")
        if kind in ("speech_started", "speech_ended", "turn_failed"):
            ids.add(getattr(r, kind).turn_id)
    return ids - {""}


async def requests_for(
    session: str, pcm: bytes, *, preempt: bool = False
) -> AsyncIterator[pb.DriveRequest]:
    """Config, ``pcm`` as one audio turn (as fast as flow control allows), end_turn, half-close."""
    config = pb.DriveConfig(session=session, audio_format=audio_format(), preempt=preempt)
    yield pb.DriveRequest(config=config)
    for i in range(0, len(pcm), 6400):  # 200 ms chunks
        yield pb.DriveRequest(audio=pcm[i : i + 6400])
    yield pb.DriveRequest(end_turn=pb.EndTurn())


async def one_turn(
    stub: pb_grpc.AvatarGatewayStub, session: str, pcm: bytes, *, preempt: bool = False
) -> list[pb.DriveResponse]:
    """Drive ``pcm`` as one audio turn, half-close, and return every response (OK status)."""
    call = stub.Drive(requests_for(session, pcm, preempt=preempt), timeout=60)
    return [r async for r in call]


async def create(replica: Replica, vendor: str, avatar_id: str) -> pb.Session:
    session = await replica.stub.CreateSession(
        pb.CreateSessionRequest(vendor=vendor, avatar_id=avatar_id), timeout=30
    )
    assert session.state == pb.SESSION_STATE_READY
    return session


# ---- 1. kill -9 mid-turn, the client drives on another replica ---------------------------


async def test_kill_mid_turn_then_the_client_drives_the_session_on_another_replica(
    redis_url: str,
) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        cluster(redis_url, {**TENCENT, "AVATAR_GATEWAY_TENCENT__API_URL": emu.url}) as (a, b, _),
    ):
        session = await create(a, "tencent", "sandbox-project")
        vendor_id = session.vendor_session_id
        second_speaking = asyncio.Event()
        got_on_a: list[pb.DriveResponse] = []

        async def requests() -> AsyncIterator[pb.DriveRequest]:
            yield pb.DriveRequest(
                config=pb.DriveConfig(session=session.name, audio_format=audio_format())
            )
            yield pb.DriveRequest(audio=tone(0.5))
            yield pb.DriveRequest(end_turn=pb.EndTurn())
            long = tone(20.0, freq=300)
            for i in range(0, len(long), 1280):  # turn 2 at real time, never ended
                yield pb.DriveRequest(audio=long[i : i + 1280])
                await asyncio.sleep(0.04)

        async def drive_on_a() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):  # A dies under it
                async for r in a.stub.Drive(requests(), timeout=60):
                    got_on_a.append(r)
                    started = [
                        x.speech_started.turn_id for x in got_on_a if x.HasField("speech_started")
                    ]
                    if len(started) >= 2:
                        second_speaking.set()

        on_a = asyncio.create_task(drive_on_a())
        await asyncio.wait_for(second_speaking.wait(), 30)
        earlier = turn_ids(got_on_a)
        assert len(earlier) == 2, kinds(got_on_a)

        await a.kill()
        killed = time.monotonic()
        await asyncio.wait_for(on_a, 30)

        # The client reconnects to B at once; as a reconnecting client it sets preempt, so B
        # waits for A's lease to lapse (A is dead) instead of refusing.
        pcm = tone(1.0, freq=330)
        responses = await one_turn(b.stub, session.name, pcm, preempt=True)
        started = next(r for r in responses if r.HasField("started"))
        assert started.started.session == session.name
        (new_turn,) = turn_ids(responses)
        assert new_turn not in earlier, (new_turn, earlier)
        assert int(new_turn) == max(int(t) for t in earlier) + 1
        ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
        assert len(ended) == 1 and not ended[0].interrupted
        print(f"kill -9 -> turn driven on another replica: {time.monotonic() - killed:.2f} s")

        state = await emu.state()
        audio = [d for d in state["drives"] if d["sessionId"] == vendor_id and d["kind"] == "audio"]
        assert audio[-1]["sha256"] == hashlib.sha256(pcm).hexdigest()
        assert audio[-1]["final"] and not audio[-1]["missingSeqs"]
        (vendor_session,) = [s for s in state["sessions"] if s["sessionId"] == vendor_id]
        assert vendor_session["status"] == 1  # still open: adopted, not reaped
        got = await b.stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
        assert got.state == pb.SESSION_STATE_READY


# ---- 2. kill -9 and nobody comes back -----------------------------------------------------


async def test_kill_without_a_client_closes_the_vendor_session_within_the_bound(
    redis_url: str,
) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        cluster(redis_url, {**TENCENT, "AVATAR_GATEWAY_TENCENT__API_URL": emu.url}) as (a, b, c),
    ):
        session = await create(a, "tencent", "sandbox-project")
        vendor_id = session.vendor_session_id
        # A drives a turn first, so it also holds the command channel and a drive lease.
        responses = await one_turn(a.stub, session.name, tone(0.3))
        assert turn_ids(responses) == {"1"}

        await a.kill()
        killed = time.monotonic()

        async def closed() -> bool:
            return vendor_id not in (await emu.state())["openSessions"]

        await until("the vendor session to be closed", closed, 2 * TTL_S + REAPER_S + 30)
        took = time.monotonic() - killed
        bound = 2 * TTL_S + REAPER_S
        print(f"kill -9 -> vendor session closed: {took:.2f} s (bound {bound:.1f} s + slack)")
        assert took <= bound + 2.0, f"closed after {took:.2f} s, bound {bound} s"

        state = await emu.state()
        closes = [c for c in state["restCalls"] if c["op"] == "closesession"]
        assert [c["code"] for c in closes] == [0], closes  # closed once, by one replica
        (vendor_session,) = [s for s in state["sessions"] if s["sessionId"] == vendor_id]
        assert vendor_session["closeReason"] == "closesession"
        for replica in (b, c):

            async def recorded(replica: Replica = replica) -> bool:
                got = await replica.stub.GetSession(
                    pb.GetSessionRequest(name=session.name), timeout=10
                )
                return got.state == pb.SESSION_STATE_CLOSED

            await until("the registry to say CLOSED", recorded, 10)
            got = await replica.stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
            assert got.close_reason == pb.CLOSE_REASON_SHUTDOWN

        async def logged() -> list[dict[str, Any]]:
            return [e for r in (b, c) for e in r.process.events("orphan_session_closed")]

        closers = await until("the closing replica's log line", logged, 10)
        assert len(closers) == 1 and closers[0]["replica"] == a.replica_id
        assert closers[0]["session_id"] == session.name.split("/")[1]


# ---- 3. two Drives at once on two live replicas --------------------------------------------


async def test_two_concurrent_drives_on_two_replicas_exactly_one_wins(redis_url: str) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        cluster(redis_url, {**TENCENT, "AVATAR_GATEWAY_TENCENT__API_URL": emu.url}) as (a, b, c),
    ):
        session = await create(a, "tencent", "sandbox-project")
        decided = asyncio.Event()
        pcm = tone(1.0, freq=250)

        async def drive(replica: Replica) -> tuple[str, list[pb.DriveResponse], Any]:
            async def requests() -> AsyncIterator[pb.DriveRequest]:
                yield pb.DriveRequest(
                    config=pb.DriveConfig(session=session.name, audio_format=audio_format())
                )
                await decided.wait()  # hold the stream open until the other one is decided
                for i in range(0, len(pcm), 6400):
                    yield pb.DriveRequest(audio=pcm[i : i + 6400])
                yield pb.DriveRequest(end_turn=pb.EndTurn())

            got: list[pb.DriveResponse] = []
            try:
                async for r in replica.stub.Drive(requests(), timeout=60):
                    got.append(r)
                    if r.HasField("started"):
                        if outcomes:  # the other one already failed
                            decided.set()
                        outcomes.append(("started", replica.name))
            except grpc.aio.AioRpcError as err:
                outcomes.append(("failed", replica.name))
                decided.set()
                return replica.name, got, error_info(err)
            return replica.name, got, None

        outcomes: list[tuple[str, str]] = []
        results = await asyncio.wait_for(asyncio.gather(drive(b), drive(c)), 60)
        failed = [r for r in results if r[2] is not None]
        won = [r for r in results if r[2] is None]
        assert len(failed) == 1 and len(won) == 1, outcomes
        (winner_name, responses, _), (_, lost, (code, reason, metadata)) = won[0], failed[0]
        winner = b if winner_name == "B" else c
        assert lost == []  # refused before `started`
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DRIVE_ALREADY_ACTIVE")
        assert metadata == {"session": session.name, "ownerReplica": winner.replica_id}
        assert kinds(responses)[0] == "started" and len(turn_ids(responses)) == 1

        state = await emu.state()
        (vendor_session,) = [
            s for s in state["sessions"] if s["sessionId"] == session.vendor_session_id
        ]
        # Two command channels were opened for the session: the creator's, at readiness
        # (Capabilities.open_channel_at_ready), let go when the winner adopted the session,
        # and the winner's; the loser opened none, and none was refused.
        assert vendor_session["channelConnects"] == 2 and not vendor_session["refusedConnects"]
        audio = [
            d
            for d in state["drives"]
            if d["sessionId"] == session.vendor_session_id and d["kind"] == "audio"
        ]
        assert len(audio) == 1 and audio[0]["sha256"] == hashlib.sha256(pcm).hexdigest()


# ---- 4. a stale token stops before its next write ------------------------------------------


async def test_a_replica_that_lost_its_drive_lease_writes_nothing_more(redis_url: str) -> None:
    async with zego_cluster(redis_url, callbacks_to=1) as (emu, (a, b, _)):
        session = await create(a, "zegocloud", "zego_emma")
        task_id = session.vendor_session_id

        async def drives() -> dict[str, dict[str, Any]]:
            state = await emu.state()
            return {k: d for k, d in state["drives"].items() if d["task_id"] == task_id}

        async def a_requests() -> AsyncIterator[pb.DriveRequest]:
            yield pb.DriveRequest(
                config=pb.DriveConfig(session=session.name, audio_format=audio_format())
            )
            long = tone(30.0, freq=200)
            for i in range(0, len(long), 1280):  # one long turn at real time
                yield pb.DriveRequest(audio=long[i : i + 1280])
                await asyncio.sleep(0.04)

        a_got: list[pb.DriveResponse] = []

        async def drive_on_a() -> tuple[str, dict[str, str]]:
            try:
                async for r in a.stub.Drive(a_requests(), timeout=120):
                    a_got.append(r)
            except grpc.aio.AioRpcError as err:
                code, reason, metadata = error_info(err)
                return f"{code.name} {reason}", metadata
            return "OK", {}

        on_a = asyncio.create_task(drive_on_a())

        async def a_sending() -> dict[str, dict[str, Any]]:
            found = await drives()
            return found if any(d["bytes_received"] >= 48000 for d in found.values()) else {}

        a_drives = await until("A's audio at the vendor", a_sending, 30)
        a.send(signal.SIGSTOP)  # A hangs, its sockets stay open, its leases stop renewing
        stopped = time.monotonic()
        try:
            # B is refused while A's drive lease lives, then takes over once it lapsed.
            pcm = tone(1.0, freq=330)
            b_task: asyncio.Task[list[pb.DriveResponse]] | None = None

            async def b_admitted() -> bool:
                nonlocal b_task
                # The write API, not a request generator: nothing is being written when B
                # refuses (the client would report its own write failure instead).
                call = b.stub.Drive(timeout=60)
                await call.write(
                    pb.DriveRequest(
                        config=pb.DriveConfig(session=session.name, audio_format=audio_format())
                    )
                )
                try:
                    first = await call.read()
                except grpc.aio.AioRpcError as err:
                    code, reason, metadata = error_info(err)
                    assert (code, reason) == (
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "DRIVE_ALREADY_ACTIVE",
                    )
                    assert metadata["ownerReplica"] == a.replica_id
                    return False
                assert isinstance(first, pb.DriveResponse) and first.HasField("started")

                async def rest() -> list[pb.DriveResponse]:
                    for i in range(0, len(pcm), 6400):
                        await call.write(pb.DriveRequest(audio=pcm[i : i + 6400]))
                    await call.write(pb.DriveRequest(end_turn=pb.EndTurn()))
                    await call.done_writing()
                    got = [first]
                    while (r := await call.read()) is not grpc.aio.EOF:
                        assert isinstance(r, pb.DriveResponse)
                        got.append(r)
                    assert await call.code() == grpc.StatusCode.OK
                    return got

                b_task = asyncio.create_task(rest())
                return True

            await until("B to take the Drive over", b_admitted, 10 * TTL_S, every_s=0.1)
            took_over = time.monotonic() - stopped
            assert took_over >= TTL_S * 0.5, "B drove while A's lease was alive"

            async def b_sending() -> dict[str, dict[str, Any]]:
                new = {k: d for k, d in (await drives()).items() if k not in a_drives}
                return new if any(d["bytes_received"] > 0 for d in new.values()) else {}

            b_drives = await until("B's audio at the vendor", b_sending, 30)
            before = await drives()
        finally:
            a.send(signal.SIGCONT)

        outcome, metadata = await asyncio.wait_for(on_a, 30)
        assert outcome == "ABORTED DRIVE_TAKEN_OVER", (outcome, kinds(a_got))
        assert metadata == {"session": session.name, "ownerReplica": b.replica_id}
        assert b_task is not None
        responses = await asyncio.wait_for(b_task, 60)
        print(f"SIGSTOP -> B admitted after {took_over:.2f} s")

        after = await drives()
        # Not one more byte from A once B sent, and no new drive but B's.
        for drive_id in a_drives:
            assert after[drive_id]["bytes_received"] == before[drive_id]["bytes_received"]
        # No new drive but B's: the one it played, and at most the next one it prepared
        # (zegocloud.md §8.6: asked for and connected, never started).
        prepared = set(after) - set(a_drives) - set(b_drives)
        assert len(prepared) <= 1
        for drive_id in prepared:
            assert after[drive_id]["start_time"] is None and not after[drive_id]["violations"]
        (b_drive,) = b_drives
        assert after[b_drive]["duration_s"] == pytest.approx(1.0, abs=0.03)
        assert not after[b_drive]["violations"]
        b_turns = turn_ids(responses)
        assert len(b_turns) == 1 and not b_turns & turn_ids(a_got)


# ---- 5. vendor callbacks reach the replica that drives the session ------------------------


async def callback_counts(replica: Replica) -> Counter[str]:
    """``avatar_gateway_vendor_callbacks_total`` of ``replica`` by outcome (its /metrics)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{replica.process.started['ops']}/metrics", timeout=10)
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "avatar_gateway_vendor_callbacks_total":
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


async def test_callbacks_reach_the_replica_that_drives_the_session(redis_url: str) -> None:
    """ZEGOCLOUD posts every callback to A while B drives: B's turn still gets its speech
    events (they come only from callbacks, zegocloud.md §6), through A's queue for B. Then one
    callback posted to all three replicas is applied once, by B."""
    async with zego_cluster(redis_url, callbacks_to=0, prepare_drives=False) as (emu, (a, b, c)):
        session = await create(b, "zegocloud", "zego_emma")
        pcm = tone(1.0, freq=250)
        responses = [r async for r in b.stub.Drive(requests_for(session.name, pcm), timeout=60)]
        got = kinds(responses)
        assert "speech_started" in got and "speech_ended" in got, got
        assert "warning" not in got, [r.warning for r in responses if r.HasField("warning")]
        on_a, on_b = await callback_counts(a), await callback_counts(b)
        assert on_a["forwarded"] >= 2 and on_a["applied"] == 0, on_a
        # Every forwarded one reached B; those about the task before B opened its channel
        # (task status at create) find none there.
        assert on_b["applied"] >= 2, on_b
        assert on_b["applied"] + on_b["unrouted"] == on_a["forwarded"], (on_a, on_b)

        # One callback (a drive status of this task) sent to every replica: applied once.
        secret = ZEGO["AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET"]
        timestamp, nonce = str(int(time.time())), "every-replica"
        body = {
            "EventType": 4,
            "TaskId": session.vendor_session_id,
            "EventTime": int(time.time() * 1000),
            "Detail": {"DriveId": "drive-not-sent", "Status": 3},
            "Timestamp": timestamp,
            "Nonce": nonce,
            "Signature": callback_signature(secret, timestamp, nonce),
        }
        replicas = (a, b, c)
        before = [await callback_counts(r) for r in replicas]
        async with httpx.AsyncClient() as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"{r.process.started['callbacks']}/callbacks/zegocloud", json=body)
                    for r in replicas
                )
            )
        assert [x.status_code for x in answers] == [200, 200, 200]

        async def settled() -> list[Counter[str]] | None:
            after = [await callback_counts(r) for r in replicas]
            delta = [x - y for x, y in zip(after, before, strict=True)]
            return delta if delta[1]["applied"] else None

        delta = await until("B to apply the callback", settled, 10)
        assert sum((d["duplicate"] for d in delta), 0) == 2, delta
        assert sum((d["applied"] for d in delta), 0) == 1, delta
        assert delta[1]["applied"] == 1, delta


# ---- 6. a CreateSession burst over three replica processes keeps the vendor's rate -------


async def test_a_create_burst_over_three_replica_processes_keeps_the_vendor_rate(
    redis_url: str,
) -> None:
    """24 CreateSessions at once, 8 per replica process. ZEGOCLOUD allows 10 calls per
    second per Action (zegocloud.md §1); its emulator refuses and counts the 11th."""
    async with zego_cluster(redis_url, callbacks_to=0) as (emu, replicas):
        sessions = await asyncio.gather(
            *(create(replicas[i % 3], "zegocloud", "zego_emma") for i in range(24))
        )
        state = await emu.state()
        assert state["rejected"] == {}, state["rejected"]  # no rate refusal, nor any other
        assert state["calls"]["CreateDigitalHumanStreamTask"] == 24
        assert len({s.vendor_session_id for s in sessions}) == 24
