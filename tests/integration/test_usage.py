"""Usage metering over real gRPC (docs/architecture.md §4.4): per session, per vendor and tenant.

1. One gateway process (``python -m gateway serve --sandbox``, ZEGOCLOUD emulator, JSON logs)
   with a keys file of two tenants. A session of tenant ``acme`` is driven with 1.0 s of
   16 kHz mono audio and a known text, one of tenant ``globex`` with a non-ASCII text only.
   Its usage shows on GetSession and ListSessions (audio seconds and text characters equal
   to what the emulator received), its vendor session time grows while it lives and stops
   at its close (equal to close_time - create_time, unchanged on later reads); the
   ``session_closed`` log line carries the usage; ``/metrics`` has it by vendor and tenant.
2. Two replica processes sharing a real redis-server (Tencent emulator): usage accumulated on
   one replica is visible from the other at the end of each turn (the Drive still open), a
   session driven on both is counted once per turn, and what a replica drove survives its
   ``kill -9``; the vendor billed within the session's create_time .. close_time.
3. The registry (in memory, and a real redis-server) keeps each replica's largest share, so a
   stale or late write lowers and doubles nothing; an ended session's usage is final, ended
   once (``finish``), and expires with its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2, timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import hash_key
from gateway.registry import (
    MemoryRegistry,
    RedisRegistry,
    SessionFilter,
    SessionRecord,
    SessionRegistry,
)
from gateway.usage import Tally, total
from tests.conftest import (
    LoggingProcess,
    base_env,
    emulate,
    gateway_process,
    paced_requests,
    tone,
)
from tests.integration.test_replicas import TENCENT, cluster, create, one_turn, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEYS = {"acme": "agk_acme_usage_0123456789ab", "globex": "agk_globex_usage_0123456789"}
ACME_TEXT = "Hello there, how are you?"
GLOBEX_TEXT = "Bonjour à tous."  # 15 code points, 16 UTF-8 bytes: counted as 15
TOLERANCE_S = 0.002
"""Audio seconds: soxr's flush may add or drop a sample or two (62.5 µs at 16 kHz)."""


def seconds(d: duration_pb2.Duration) -> float:
    return d.ToNanoseconds() / 1e9


def unix(ts: timestamp_pb2.Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def auth(tenant: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {KEYS[tenant]}"),)


def usage_metrics(text: str) -> dict[tuple[str, str, str], float]:
    """``avatar_gateway_usage_*`` samples by (name, vendor, tenant)."""
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("avatar_gateway_usage_") and sample.name.endswith("_total"):
                key = (sample.name, sample.labels["vendor"], sample.labels["tenant"])
                out[key] = sample.value
    return out


@contextlib.asynccontextmanager
async def sandbox_gateway(
    tmp_path: Path,
) -> AsyncIterator[tuple[LoggingProcess, pb_grpc.AvatarGatewayStub]]:
    keys = tmp_path / "keys"
    keys.write_text("".join(f"{tenant} {hash_key(key)}\n" for tenant, key in KEYS.items()))
    env = base_env(
        AVATAR_GATEWAY_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_SANDBOX_VENDORS="zegocloud",
        AVATAR_GATEWAY_API_KEYS_FILE=str(keys),
    )
    async with (
        gateway_process(env, "serve", "--sandbox", started="gateway_started") as process,
        grpc.aio.insecure_channel(str(process.started["listen"])) as channel,
    ):
        yield process, pb_grpc.AvatarGatewayStub(channel)


async def text_turn(session: str, text: str) -> AsyncIterator[pb.DriveRequest]:
    yield pb.DriveRequest(config=pb.DriveConfig(session=session))
    yield pb.DriveRequest(text=pb.TextInput(text=text, final=True))


async def test_usage_on_the_session_in_the_close_line_and_in_metrics_by_tenant(
    tmp_path: Path,
) -> None:
    async with sandbox_gateway(tmp_path) as (process, stub), httpx.AsyncClient() as http:
        ops = str(process.started["ops"])
        emulator_state = f"{process.started['emulators']['zegocloud']}/_emulator/state"

        async def get(name: str, tenant: str) -> pb.Session:
            return await stub.GetSession(
                pb.GetSessionRequest(name=name), metadata=auth(tenant), timeout=10
            )

        a = await stub.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
            metadata=auth("acme"),
            timeout=30,
        )
        assert a.state == pb.SESSION_STATE_READY and a.tenant == "acme"
        before = await get(a.name, "acme")
        assert seconds(before.usage.audio_duration) == 0
        assert before.usage.text_character_count == 0

        # One Drive: a 1.0 s audio turn (16 kHz mono), then a text turn.
        requests = paced_requests(
            a.name,
            tone(1.0),
            realtime=False,
            tail=[pb.DriveRequest(text=pb.TextInput(text=ACME_TEXT, final=True))],
        )
        responses = [r async for r in stub.Drive(requests, metadata=auth("acme"), timeout=60)]
        ended = [r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")]
        assert ended == ["1", "2"], responses

        # What the vendor received, by its own records.
        state = (await http.get(emulator_state, timeout=10)).json()
        drives = [d for d in state["drives"].values() if d["task_id"] == a.vendor_session_id]
        vendor_audio_s = sum(
            d["bytes_received"] / (2 * d["sample_rate"] * d["channels"])
            for d in drives
            if d["kind"] == "ws"
        )
        vendor_text = "".join(d["text"] for d in drives if d["kind"] == "text")
        assert abs(vendor_audio_s - 1.0) < TOLERANCE_S and vendor_text == ACME_TEXT

        async def driven(name: str) -> pb.Session | None:
            s = await get(name, "acme")
            return s if s.usage.text_character_count else None

        # Stored at the Drive's end (just after the call's status: poll, do not sleep).
        live = await until("the Drive's usage", lambda: driven(a.name), 10)
        assert abs(seconds(live.usage.audio_duration) - vendor_audio_s) < TOLERANCE_S
        assert live.usage.text_character_count == len(ACME_TEXT)
        # The vendor session time runs while the session lives: about now - create_time.
        vendor_s = seconds(live.usage.vendor_session_duration)
        assert vendor_s > seconds(before.usage.vendor_session_duration) + 1.0  # the Drive's time
        assert abs(vendor_s - (time.time() - unix(a.create_time))) < 2.0
        listed = await stub.ListSessions(
            pb.ListSessionsRequest(), metadata=auth("acme"), timeout=10
        )
        (in_list,) = listed.sessions
        assert in_list.usage.audio_duration == live.usage.audio_duration
        assert in_list.usage.text_character_count == len(ACME_TEXT)

        # Tenant globex: text only, closed first.
        b = await stub.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
            metadata=auth("globex"),
            timeout=30,
        )
        responses = [
            r
            async for r in stub.Drive(
                text_turn(b.name, GLOBEX_TEXT), metadata=auth("globex"), timeout=30
            )
        ]
        assert any(r.HasField("speech_ended") for r in responses)
        closed_b = await stub.CloseSession(
            pb.CloseSessionRequest(name=b.name), metadata=auth("globex"), timeout=30
        )
        assert closed_b.usage.text_character_count == len(GLOBEX_TEXT) == 15
        assert seconds(closed_b.usage.audio_duration) == 0

        closed = await stub.CloseSession(
            pb.CloseSessionRequest(name=a.name), metadata=auth("acme"), timeout=30
        )
        assert closed.state == pb.SESSION_STATE_CLOSED
        assert abs(seconds(closed.usage.audio_duration) - vendor_audio_s) < TOLERANCE_S
        assert closed.usage.text_character_count == len(ACME_TEXT)
        # Billed from creation to close, not a moment more.
        final_s = seconds(closed.usage.vendor_session_duration)
        assert abs(final_s - (unix(closed.close_time) - unix(closed.create_time))) < 1e-3
        assert final_s >= vendor_s
        # ... and it stays so: a later read shows the same time, to the nanosecond (a time
        # still running would have grown by the round trip at least).
        assert (await get(a.name, "acme")).usage == closed.usage

        # The close log lines carry the usage (JSON, one line each).
        lines = await until(
            "two session_closed lines", lambda: _events(process, "session_closed", 2), 10
        )
        by_tenant = {line["tenant"]: line for line in lines}
        assert by_tenant["acme"]["session_id"] == a.name.split("/")[1]
        assert by_tenant["acme"]["vendor"] == "zegocloud"
        assert by_tenant["acme"]["close_reason"] == "CLOSE_REASON_CLIENT"
        assert abs(by_tenant["acme"]["audio_s"] - vendor_audio_s) < TOLERANCE_S
        assert by_tenant["acme"]["text_characters"] == len(ACME_TEXT)
        assert abs(by_tenant["acme"]["vendor_session_s"] - final_s) < 1e-3
        assert by_tenant["globex"]["text_characters"] == 15
        assert by_tenant["globex"]["audio_s"] == 0

        # Metrics by vendor and tenant, each session counted once.
        metrics = usage_metrics((await http.get(f"{ops}/metrics", timeout=10)).text)
        z = "zegocloud"
        assert metrics[("avatar_gateway_usage_sessions_total", z, "acme")] == 1
        assert metrics[("avatar_gateway_usage_sessions_total", z, "globex")] == 1
        audio = metrics[("avatar_gateway_usage_audio_seconds_total", z, "acme")]
        assert abs(audio - vendor_audio_s) < TOLERANCE_S
        assert metrics[("avatar_gateway_usage_audio_seconds_total", z, "globex")] == 0
        assert metrics[("avatar_gateway_usage_text_characters_total", z, "acme")] == len(ACME_TEXT)
        assert metrics[("avatar_gateway_usage_text_characters_total", z, "globex")] == 15
        billed = metrics[("avatar_gateway_usage_vendor_session_seconds_total", z, "acme")]
        assert abs(billed - final_s) < 1e-3
        billed_b = metrics[("avatar_gateway_usage_vendor_session_seconds_total", z, "globex")]
        assert abs(billed_b - seconds(closed_b.usage.vendor_session_duration)) < 1e-3
        # A second close changes nothing and counts nothing.
        await stub.CloseSession(
            pb.CloseSessionRequest(name=a.name), metadata=auth("acme"), timeout=30
        )
        assert usage_metrics((await http.get(f"{ops}/metrics", timeout=10)).text) == metrics
        assert (await get(a.name, "acme")).usage == closed.usage


async def _events(process: LoggingProcess, name: str, count: int) -> list[dict[str, Any]]:
    events = process.events(name)
    return events if len(events) >= count else []


# ---- 2. replicas sharing Redis -------------------------------------------------------------


async def test_usage_is_shared_by_replicas_and_survives_a_kill(redis_url: str) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        cluster(redis_url, {**TENCENT, "AVATAR_GATEWAY_TENCENT__API_URL": emu.url}, count=2) as (
            a,
            b,
        ),
    ):
        session = await create(a, "tencent", "sandbox-project")

        async def audio_on(stub: pb_grpc.AvatarGatewayStub, want_s: float) -> pb.Session | None:
            got = await stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
            return got if abs(seconds(got.usage.audio_duration) - want_s) < TOLERANCE_S else None

        # 0.6 s driven on A is visible on B once A's Drive ended.
        await one_turn(a.stub, session.name, tone(0.6))
        await until("A's turn seen from B", lambda: audio_on(b.stub, 0.6), 10)

        # B drives a 0.4 s turn and keeps its Drive open: A sees the turn at its end.
        await held_turn(b.stub, session.name, tone(0.4), lambda: audio_on(a.stub, 1.0))

        # A drives again (it adopts the session back from B), keeps its Drive open, and is
        # killed once its turn ended: its 0.5 s stay counted, nothing twice.
        killed = asyncio.Event()

        async def kill_a() -> bool:
            if await audio_on(b.stub, 1.5) is None:
                return False
            await a.kill()
            killed.set()
            return True

        await held_turn(a.stub, session.name, tone(0.5), kill_a, dies=True)
        assert killed.is_set()
        # The client reconnects to B (preempt: A's lease must lapse first) for 0.2 s more.
        await one_turn(b.stub, session.name, tone(0.2), preempt=True)
        closed = await b.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
        assert closed.state == pb.SESSION_STATE_CLOSED
        assert abs(seconds(closed.usage.audio_duration) - 1.7) < TOLERANCE_S, closed.usage
        final_s = seconds(closed.usage.vendor_session_duration)
        assert abs(final_s - (unix(closed.close_time) - unix(closed.create_time))) < 1e-3
        # The vendor billed within that window: from after create_time to before close_time.
        state = await emu.state()
        (vendor,) = [s for s in state["sessions"] if s["sessionId"] == session.vendor_session_id]
        assert unix(closed.create_time) <= vendor["billedFrom"]
        assert vendor["billedUntil"] is not None
        assert vendor["billedUntil"] <= unix(closed.close_time)
        lines = b.process.events("session_closed")
        assert [line["audio_s"] for line in lines] == [
            round(seconds(closed.usage.audio_duration), 3)
        ]


async def held_turn(
    stub: pb_grpc.AvatarGatewayStub,
    session: str,
    pcm: bytes,
    seen: Any,
    *,
    dies: bool = False,
) -> None:
    """One audio turn on a Drive kept open until ``seen()`` is truthy (polled), then closed.

    ``dies``: the replica is killed meanwhile (the call then ends with an error).
    """
    hold = asyncio.Event()
    spoken = asyncio.Event()

    async def drive() -> None:
        requests = paced_requests(session, pcm, realtime=False, hold=hold)
        try:
            async for r in stub.Drive(requests, timeout=60):
                if r.HasField("speech_ended"):
                    spoken.set()
        except grpc.aio.AioRpcError:
            if not dies:
                raise

    task = asyncio.create_task(drive())
    try:
        await asyncio.wait_for(spoken.wait(), 30)
        await until("the turn's usage", seen, 10)
    finally:
        hold.set()
        await asyncio.wait_for(task, 30)


# ---- 3. the registry's merge, in memory and in Redis -----------------------------------------


async def test_memory_registry_merges_usage_shares() -> None:
    await registry_merges_usage_shares(MemoryRegistry(retention_s=60))


async def test_redis_registry_merges_usage_shares(redis_url: str) -> None:
    registry = RedisRegistry(redis_url, retention_s=60)
    try:
        await registry_merges_usage_shares(registry)
    finally:
        await registry.aclose()


async def registry_merges_usage_shares(registry: SessionRegistry) -> None:
    """Each replica's largest share is kept; an ended session's usage is final."""
    record = SessionRecord(session_id="s1", vendor="tencent", avatar_id="x", owner="r1")
    record.state = pb.SESSION_STATE_READY
    record.usage = {"r1": Tally(1.0, 10)}
    stale = SessionRecord(**{**record.__dict__, "usage": {"r1": Tally(0.5, 3)}})
    await registry.put(record)
    await registry.put(stale)  # a writer holding an older copy lowers nothing
    assert (await registry.get("s1")).usage == {"r1": Tally(1.0, 10)}  # type: ignore[union-attr]
    assert await registry.record_usage("s1", "r2", Tally(0.25, 2))
    assert await registry.record_usage("s1", "r2", Tally(0.125, 1))  # late: ignored
    got = await registry.get("s1")
    assert got is not None and got.usage == {"r1": Tally(1.0, 10), "r2": Tally(0.25, 2)}
    assert total(got.usage) == Tally(1.25, 12)
    (listed,) = await registry.list_records(SessionFilter(), "", 10)
    assert listed.usage == got.usage
    (owned,) = await registry.owned_by("r1")
    assert owned.usage == got.usage

    got.state = pb.SESSION_STATE_CLOSED
    got.close_time = time.time()
    got.add_share("r1", Tally(2.0, 20))
    assert await registry.finish(got)
    assert not await registry.finish(got)  # a second closer: not ended again
    assert not await registry.record_usage("s1", "r2", Tally(9.0, 99))  # ended: final
    final = await registry.get("s1")
    assert final is not None and total(final.usage) == Tally(2.25, 22)
    if isinstance(registry, RedisRegistry):
        # The usage expires with the record (retention), not before, not never.
        ttl = await registry._redis.pttl("ag:usage:s1")
        assert 0 < ttl <= 60_000 and abs(ttl - await registry._redis.pttl("ag:session:s1")) < 1000
    await registry.delete("s1")
    assert await registry.get("s1") is None
    assert not await registry.record_usage("s1", "r1", Tally(1.0, 1))
    if isinstance(registry, RedisRegistry):
        assert not await registry._redis.exists("ag:usage:s1")
