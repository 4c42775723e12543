"""Limits across replicas and a registry that stays small, over real gRPC and a real Redis.

Replicas are ``GatewayServer``s in this process sharing one ``redis-server``; the vendor is
an independent ZEGOCLOUD emulator, which records every call it refused for its rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from emulators.zegocloud import CODE_RATE_LIMITED, ZegocloudEmulator
from gateway.server import GatewayServer
from tests.conftest import Gateway, error_info, make_settings

pytestmark = pytest.mark.integration

C = grpc.StatusCode


@dataclass
class Replica:
    server: GatewayServer
    channel: grpc.aio.Channel
    stub: pb_grpc.AvatarGatewayStub

    async def create(self, avatar_id: str = "zego_emma", **kw: Any) -> pb.Session:
        return await self.stub.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id=avatar_id, **kw), timeout=60
        )

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(grace_s=0.5)  # idempotent


async def start_replica(emulator: ZegocloudEmulator, **overrides: Any) -> Replica:
    settings = make_settings(
        sandbox=False,
        vendors={
            "zegocloud": {
                "app_id": emulator.app_id,
                "server_secret": emulator.server_secret,
                "callback_secret": emulator.callback_secret,
                "api_url": emulator.rest.base_url + "/",
            }
        },
        **overrides,
    )
    server = GatewayServer(settings)
    await server.start()
    channel = grpc.aio.insecure_channel(server.grpc_target)
    return Replica(server, channel, pb_grpc.AvatarGatewayStub(channel))


@contextlib.asynccontextmanager
async def fleet(n: int, **overrides: Any) -> AsyncIterator[tuple[ZegocloudEmulator, list[Replica]]]:
    """``n`` replicas with the same settings, and the ZEGO emulator they all call."""
    emulator = ZegocloudEmulator(app_id=9, server_secret="x", callback_secret="cb")
    await emulator.start()
    replicas: list[Replica] = []
    try:
        for _ in range(n):
            replicas.append(await start_replica(emulator, **overrides))
        yield emulator, replicas
    finally:
        for replica in replicas:
            await replica.stop()
        await emulator.stop()


def retry_delay_s(err: grpc.aio.AioRpcError) -> float:
    """The ``google.rpc.RetryInfo`` delay of a failed call (exactly one is required)."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None
    rich = status_pb2.Status.FromString(raw)
    found = [d for d in rich.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(found) == 1, rich
    info = error_details_pb2.RetryInfo()
    found[0].Unpack(info)
    return info.retry_delay.ToNanoseconds() / 1e9


def split(results: list[Any]) -> tuple[list[pb.Session], list[grpc.aio.AioRpcError]]:
    made = [r for r in results if isinstance(r, pb.Session)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(made) + len(failed) == len(results), results
    return made, failed


# ---- vendor rate limits across replicas ---------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
async def test_a_create_burst_over_three_replicas_keeps_the_vendor_rate(
    redis_url: str, shared: bool
) -> None:
    # 24 CreateSessions at once, 8 per replica. ZEGO allows 10 calls per second per Action
    # (zegocloud.md §1) and the emulator refuses (and counts) the 11th within a second.
    async with fleet(3, redis_url=redis_url if shared else None) as (emulator, replicas):
        results = await asyncio.gather(
            *(replicas[i % 3].create() for i in range(24)), return_exceptions=True
        )
        violations = emulator.rejected.get(CODE_RATE_LIMITED, 0)
        made, failed = split(results)
        if shared:
            # One window for the vendor account: every create waits its turn, none refused.
            assert violations == 0, emulator.rejected
            assert not failed, [e.details() for e in failed]
            assert {s.state for s in made} == {pb.SESSION_STATE_READY}
            assert emulator.calls["CreateDigitalHumanStreamTask"] == 24
        else:
            # The control: each process allows 10 per second, together 24 at once.
            assert violations > 0
            assert {error_info(e)[1] for e in failed} <= {"VENDOR_RATE_LIMITED"}


# ---- max_sessions per replica, and across the cluster ------------------------------------


@pytest.mark.parametrize("gateway", [{"max_sessions": 2}], indirect=True)
async def test_a_full_replica_refuses_with_error_info_and_retry_info(gateway: Gateway) -> None:
    results = await asyncio.gather(*(gateway.create() for _ in range(5)), return_exceptions=True)
    made, refused = split(results)
    assert len(made) == 2 and len(refused) == 3
    for err in refused:
        assert error_info(err) == (
            C.RESOURCE_EXHAUSTED,
            "SESSION_LIMIT_REACHED",
            {"scope": "replica", "limit": "2"},
        )
        assert retry_delay_s(err) == 1.0
    # A refused create left nothing behind, and an ended session frees its place.
    listed = await gateway.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
    assert sorted(s.name for s in listed.sessions) == sorted(s.name for s in made)
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=made[0].name), timeout=10)
    assert (await gateway.create()).state == pb.SESSION_STATE_READY


async def test_the_cluster_maximum_holds_across_two_replicas(redis_url: str) -> None:
    async with fleet(2, redis_url=redis_url, cluster_max_sessions=3) as (_, (a, b)):
        results = await asyncio.gather(
            *(r.create() for r in (a, b, a, b, a, b)), return_exceptions=True
        )
        made, refused = split(results)
        assert len(made) == 3 and len(refused) == 3
        for err in refused:
            assert error_info(err) == (
                C.RESOURCE_EXHAUSTED,
                "SESSION_LIMIT_REACHED",
                {"scope": "cluster", "limit": "3"},
            )
            assert retry_delay_s(err) == 10.0
        listed = await b.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
        assert len(listed.sessions) == 3
        # Closed on one replica, room on the other.
        await a.stub.CloseSession(pb.CloseSessionRequest(name=made[0].name), timeout=10)
        assert (await b.create()).state == pb.SESSION_STATE_READY
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await a.create()
        assert error_info(err.value)[1] == "SESSION_LIMIT_REACHED"


# ---- a registry that stays small ----------------------------------------------------------


async def test_ended_records_expire_after_the_retention(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async with fleet(1, redis_url=redis_url, session_retention_s=0.5) as (_, (a,)):
            s = await a.create()
            key = f"ag:session:{s.name.split('/')[1]}"
            assert await client.pttl(key) == -1  # a live session never expires
            await a.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=10)
            assert 0 < await client.pttl(key) <= 500
            for _ in range(100):  # bounded: Redis expires the key at its TTL
                if not await client.exists(key):
                    break
                await asyncio.sleep(0.05)
            assert not await client.exists(key)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await a.stub.GetSession(pb.GetSessionRequest(name=s.name), timeout=5)
            assert err.value.code() == C.NOT_FOUND
            listed = await a.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
            assert list(listed.sessions) == []
            # Listing pruned the indexes too: nothing is left of the session.
            assert await client.zcard("ag:idx:all") == 0
            assert await client.zcard("ag:idx:ended") == 0
            assert await client.scard("ag:idx:live") == 0
    finally:
        await client.aclose()


async def test_list_pages_are_stable_while_sessions_and_replicas_come_and_go(
    redis_url: str,
) -> None:
    async with fleet(2, redis_url=redis_url) as (emulator, (a, b)):
        made = [await (a, b)[i % 2].create() for i in range(6)]
        newest_first = [s.name for s in reversed(made)]
        seen: list[str] = []
        page = await a.stub.ListSessions(pb.ListSessionsRequest(page_size=2), timeout=5)
        seen += [s.name for s in page.sessions]
        # Sessions created and ended between pages, on both replicas, move no page.
        await asyncio.gather(a.create(), b.create())
        await b.stub.CloseSession(pb.CloseSessionRequest(name=made[0].name), timeout=10)
        page = await b.stub.ListSessions(
            pb.ListSessionsRequest(page_size=2, page_token=page.next_page_token), timeout=5
        )
        seen += [s.name for s in page.sessions]
        # The replica that issued the token goes away; a new one serves the next page.
        await b.stop()
        c = await start_replica(emulator, redis_url=redis_url)
        try:
            page = await c.stub.ListSessions(
                pb.ListSessionsRequest(page_size=2, page_token=page.next_page_token), timeout=5
            )
            seen += [s.name for s in page.sessions]
            assert page.next_page_token == ""
        finally:
            await c.stop()
        assert seen == newest_first


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
async def test_a_failed_create_leaves_no_record(redis_url: str, shared: bool) -> None:
    async with fleet(1, redis_url=redis_url if shared else None) as (emulator, (a,)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await a.create(avatar_id="no_such_avatar", request_id="r-1")
        code, reason, metadata = error_info(err.value)
        assert (code, reason, metadata["avatarId"]) == (
            C.NOT_FOUND,
            "AVATAR_NOT_FOUND",
            "no_such_avatar",
        )
        listed = await a.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
        assert list(listed.sessions) == []
        assert await a.server.registry.live_count() == 0
        if shared:
            client = aioredis.from_url(redis_url, decode_responses=True)
            try:
                assert await client.keys("ag:session:*") == []
                assert await client.zcard("ag:idx:all") == 0
            finally:
                await client.aclose()
        # The documented other case: the vendor made a session that failed to start. The
        # call answers with that session, FAILED, and it is listed.
        emulator.fail_next_task_init("emulated init failure")
        failed = await a.create()
        assert failed.state == pb.SESSION_STATE_FAILED and failed.failure.reason
        listed = await a.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
        assert [s.name for s in listed.sessions] == [failed.name]
