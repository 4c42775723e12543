"""The lease operations of both registries: what two replicas may and may not both win.

The same cases run against a real redis-server (the Lua scripts) and the in-memory registry
(one process), with short TTLs awaited by polling, never by a fixed sleep for an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.registry import MemoryRegistry, RedisRegistry, SessionRegistry

pytestmark = pytest.mark.integration

TTL_S = 0.3


@pytest.fixture(params=["redis", "memory"])
async def registry(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[SessionRegistry]:
    if request.param == "memory":
        yield MemoryRegistry()
        return
    registry = RedisRegistry(redis_url)
    try:
        yield registry
    finally:
        await registry.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_one_drive_lease_per_session_with_increasing_tokens(
    registry: SessionRegistry,
) -> None:
    for owner in ("a", "b"):
        await registry.renew_replica(owner, 60)
    first = await registry.acquire_drive("s1", "a", 60)
    assert first.held and first.token == 1
    refused = await registry.acquire_drive("s1", "b", 60)
    assert not refused.held and refused.holder == "a"
    assert await registry.drive_holder("s1") == "a"
    # Another replica's stale release does nothing; the holder's does.
    await registry.release_drive("s1", first.token + 1)
    assert await registry.drive_holder("s1") == "a"
    await registry.release_drive("s1", first.token)
    assert await registry.drive_holder("s1") == ""
    second = await registry.acquire_drive("s1", "b", 60)
    assert second.held and second.token == 2
    # The first holder's token is stale now: not renewed, and the answer names the holder.
    stale = await registry.renew_drive("s1", "a", first.token, 60)
    assert not stale.held and stale.holder == "b"
    assert not (await registry.next_turn("s1", "a", first.token, 60, 0)).held


async def test_a_lapsed_lease_is_taken_back_only_if_nobody_took_a_newer_token(
    registry: SessionRegistry,
) -> None:
    await registry.renew_replica("a", 60)
    await registry.renew_replica("b", 60)
    lease = await registry.acquire_drive("s1", "a", TTL_S)
    await eventually(lambda: _no_holder(registry, "s1"))
    back = await registry.renew_drive("s1", "a", lease.token, 60)
    assert back.held  # nobody drove meanwhile
    await registry.release_drive("s1", lease.token)
    newer = await registry.acquire_drive("s1", "b", TTL_S)
    await eventually(lambda: _no_holder(registry, "s1"))
    assert not (await registry.renew_drive("s1", "a", lease.token, 60)).held
    assert newer.token > lease.token


async def _no_holder(registry: SessionRegistry, session_id: str) -> bool:
    return await registry.drive_holder(session_id) == ""


async def test_a_dead_replicas_drive_lease_is_taken_over_at_once(
    registry: SessionRegistry,
) -> None:
    await registry.renew_replica("a", TTL_S)
    await registry.renew_replica("b", 60)
    await registry.acquire_drive("s1", "a", 60)  # outlives its replica's lease

    async def a_dead() -> bool:
        return (await registry.acquire_drive("s1", "b", 60)).held

    await eventually(a_dead)
    assert await registry.drive_holder("s1") == "b"


async def test_preempt_is_seen_by_the_holder_at_its_next_renewal(
    registry: SessionRegistry,
) -> None:
    await registry.renew_replica("a", 60)
    await registry.renew_replica("b", 60)
    lease = await registry.acquire_drive("s1", "a", 60)
    assert not (await registry.acquire_drive("s1", "b", 60, preempt=True)).held
    renewed = await registry.renew_drive("s1", "a", lease.token, 60)
    assert renewed.held and renewed.preempted_by == "b"
    # No turn is started once a preempt was asked for.
    turn = await registry.next_turn("s1", "a", lease.token, 60, 0)
    assert turn.turn == 0 and turn.preempted_by == "b"
    await registry.release_drive("s1", lease.token)
    assert (await registry.acquire_drive("s1", "b", 60)).held


async def test_turn_numbers_continue_across_holders_and_past_the_floor(
    registry: SessionRegistry,
) -> None:
    await registry.renew_replica("a", 60)
    await registry.renew_replica("b", 60)
    a = await registry.acquire_drive("s1", "a", 60)
    turns = [(await registry.next_turn("s1", "a", a.token, 60, 0)).turn for _ in range(2)]
    await registry.release_drive("s1", a.token)
    b = await registry.acquire_drive("s1", "b", 60)
    turns.append((await registry.next_turn("s1", "b", b.token, 60, 0)).turn)
    # A holder that numbered turns locally (Redis unreachable) raises the counter past them.
    turns.append((await registry.next_turn("s1", "b", b.token, 60, 10)).turn)
    turns.append((await registry.next_turn("s1", "b", b.token, 60, 11)).turn)
    assert turns == [1, 2, 3, 11, 12]
    other = await registry.acquire_drive("s2", "b", 60)
    assert (await registry.next_turn("s2", "b", other.token, 60, 0)).turn == 1


async def test_claims_are_exclusive_and_released_only_by_their_holder(
    registry: SessionRegistry,
) -> None:
    assert await registry.claim("s1", "a", 60)
    assert await registry.claim("s1", "a", 60)  # re-entrant for its holder
    assert not await registry.claim("s1", "b", 60)
    await registry.unclaim("s1", "b")
    assert not await registry.claim("s1", "b", 60)
    await registry.unclaim("s1", "a")
    assert await registry.claim("s1", "b", TTL_S)

    async def lapsed() -> bool:
        return await registry.claim("s1", "c", 60)

    await eventually(lapsed)


async def test_replicas_are_listed_as_lapsed_after_the_grace(registry: SessionRegistry) -> None:
    assert not await registry.renew_replica("a", TTL_S)  # new
    assert await registry.renew_replica("a", TTL_S)  # alive
    assert not await registry.renew_replica("b", 60)
    assert await registry.lapsed_replicas(0) == []

    async def a_lapsed() -> bool:
        return await registry.lapsed_replicas(TTL_S) == ["a"]

    await eventually(a_lapsed)
    assert not await registry.renew_replica("a", 60)  # it comes back: the lapse is reported
    assert await registry.lapsed_replicas(0) == []
    await registry.drop_replica("b")
    assert await registry.lapsed_replicas(0) == []  # a clean shutdown is not a lapse
    await registry.renew_replica("c", TTL_S)
    await eventually(lambda: _lapsed(registry, "c"))
    await registry.forget_replica("c")
    assert await registry.lapsed_replicas(0) == []


async def _lapsed(registry: SessionRegistry, owner: str) -> bool:
    return owner in await registry.lapsed_replicas(0)


async def test_redis_that_lost_its_data_neither_fences_the_holder_nor_confuses_tokens(
    redis_url: str,
) -> None:
    registry = RedisRegistry(redis_url)
    try:
        await registry.renew_replica("a", 60)
        lease = await registry.acquire_drive("s1", "a", 60)
        await registry._redis.flushall()  # a restart without persistence
        await registry.renew_replica("a", 60)
        assert (await registry.renew_drive("s1", "a", lease.token, 60)).held
        await registry._redis.flushall()
        await registry.renew_replica("b", 60)
        taken = await registry.acquire_drive("s1", "b", 60)
        assert taken.token == lease.token  # the counter restarted: tokens repeat...
        # ...but the owner is compared too, so A learns it lost the lease.
        lost = await registry.renew_drive("s1", "a", lease.token, 60)
        assert not lost.held and lost.holder == "b"
    finally:
        await registry.aclose()
