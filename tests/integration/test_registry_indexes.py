"""The two registries behave alike: live limit, owner and state indexes, cursors, retention.

The Redis registry runs against a real ``redis-server``; its indexes are checked by reading
Redis directly, so a listing that happened to work by scanning everything would fail here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from gateway import registry as registry_module
from gateway.registry import (
    MemoryRegistry,
    RedisRegistry,
    SessionFilter,
    SessionRecord,
    SessionRegistry,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
async def registry(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[SessionRegistry]:
    if request.param == "memory":
        yield MemoryRegistry(retention_s=60)
        return
    shared = RedisRegistry(redis_url, retention_s=60)
    try:
        yield shared
    finally:
        await shared.aclose()


def rec(n: int, owner: str = "a", **kw: Any) -> SessionRecord:
    """Record ``n``, created ``n`` seconds after a fixed time (creation order = ``n``)."""
    return SessionRecord(
        session_id=f"s{n:02d}",
        vendor="zegocloud",
        avatar_id="zego_emma",
        owner=owner,
        create_time=1_800_000_000.0 + n,
        **kw,
    )


async def test_insert_counts_live_records_atomically_with_the_write(
    registry: SessionRegistry,
) -> None:
    assert await registry.insert(rec(1), max_live=2) == ""  # stored
    assert await registry.insert(rec(2), max_live=2) == ""
    assert await registry.insert(rec(3), max_live=2) == "cluster"
    assert await registry.get("s03") is None
    ended = rec(1, state=pb.SESSION_STATE_CLOSED)
    await registry.put(ended)
    assert await registry.live_count() == 1
    assert await registry.insert(rec(3), max_live=2) == ""
    assert await registry.insert(rec(4)) == ""  # no limit


async def test_insert_counts_a_tenants_live_records(registry: SessionRegistry) -> None:
    assert await registry.insert(rec(1, tenant="acme"), max_tenant_live=1) == ""
    assert await registry.insert(rec(2, tenant="globex"), max_tenant_live=1) == ""
    assert await registry.insert(rec(3, tenant="acme"), max_tenant_live=1) == "tenant"
    assert await registry.get("s03") is None
    await registry.put(rec(1, tenant="acme", state=pb.SESSION_STATE_CLOSED))
    assert await registry.insert(rec(3, tenant="acme"), max_tenant_live=1) == ""
    # The cluster limit is checked first; both may be given.
    assert await registry.insert(rec(4, tenant="x"), max_live=2, max_tenant_live=5) == "cluster"


async def test_owner_and_state_indexes_follow_the_record(registry: SessionRegistry) -> None:
    r = rec(1, owner="a", state=pb.SESSION_STATE_READY)
    await registry.put(r)
    assert [x.session_id for x in await registry.owned_by("a")] == ["s01"]
    r.owner = ""  # released by a replica that shut down
    await registry.put(r)
    assert await registry.owned_by("a") == []
    assert [x.session_id for x in await registry.owned_by("")] == ["s01"]
    ready = SessionFilter(state=pb.SESSION_STATE_READY)
    closed = SessionFilter(state=pb.SESSION_STATE_CLOSED)
    assert [x.session_id for x in await registry.list_records(ready, "", 10)] == ["s01"]
    r.state = pb.SESSION_STATE_CLOSED
    await registry.put(r)
    assert await registry.owned_by("") == []
    assert await registry.list_records(ready, "", 10) == []
    assert [x.session_id for x in await registry.list_records(closed, "", 10)] == ["s01"]


async def test_a_cursor_pages_newest_first_and_survives_changes(
    registry: SessionRegistry,
) -> None:
    for n in range(1, 8):
        await registry.put(rec(n, labels={"team": "x" if n % 2 else "y"}))
    everything = SessionFilter()
    page = await registry.list_records(everything, "", 3)
    assert [x.session_id for x in page] == ["s07", "s06", "s05"]
    cursor = page[-1].index_key
    # Newer records appear and a listed one disappears: the next page does not move.
    await registry.put(rec(9, labels={"team": "x"}))
    await registry.delete("s06")
    page = await registry.list_records(everything, cursor, 3)
    assert [x.session_id for x in page] == ["s04", "s03", "s02"]
    page = await registry.list_records(everything, page[-1].index_key, 3)
    assert [x.session_id for x in page] == ["s01"]
    xs = await registry.list_records(SessionFilter(labels={"team": "x"}), "", 2)
    assert [x.session_id for x in xs] == ["s09", "s07"]
    xs = await registry.list_records(SessionFilter(labels={"team": "x"}), xs[-1].index_key, 9)
    assert [x.session_id for x in xs] == ["s05", "s03", "s01"]


async def test_delete_forgets_the_record_everywhere(registry: SessionRegistry) -> None:
    await registry.put(rec(1))
    await registry.delete("s01")
    assert await registry.get("s01") is None
    assert await registry.owned_by("a") == []
    assert await registry.list_records(SessionFilter(), "", 10) == []
    assert await registry.live_count() == 0


async def test_the_memory_registry_forgets_ended_records_after_the_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_800_000_000.0]
    monkeypatch.setattr(registry_module.time, "time", lambda: now[0])
    memory = MemoryRegistry(retention_s=60)
    await memory.put(rec(1, state=pb.SESSION_STATE_READY))
    await memory.put(rec(2, state=pb.SESSION_STATE_CLOSED))
    now[0] += 59
    assert await memory.get("s02") is not None
    now[0] += 2
    assert await memory.get("s02") is None
    assert [x.session_id for x in await memory.list_records(SessionFilter(), "", 9)] == ["s01"]
    # A live record never expires.
    now[0] += 10_000
    assert await memory.get("s01") is not None


async def test_the_redis_registry_keeps_ended_records_for_the_retention(redis_url: str) -> None:
    shared = RedisRegistry(redis_url, retention_s=60)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await shared.put(rec(1, state=pb.SESSION_STATE_READY))
        await shared.put(rec(2, state=pb.SESSION_STATE_FAILED))
        assert await client.pttl("ag:session:s01") == -1
        assert 59_000 < await client.pttl("ag:session:s02") <= 60_000
        # An ended record is out of the live and owner indexes, in the expiry index.
        assert await client.smembers("ag:idx:live") == {"s01"}
        assert await client.smembers("ag:idx:owner:a") == {"s01"}
        assert await client.zrange("ag:idx:ended", 0, -1) == [rec(2).index_key]
    finally:
        await client.aclose()
        await shared.aclose()


async def test_records_of_an_earlier_version_are_indexed_once(redis_url: str) -> None:
    # Before the indexes, every record was in one sorted set, ag:sessions.
    client = aioredis.from_url(redis_url, decode_responses=True)
    shared = RedisRegistry(redis_url)
    try:
        old = rec(1, state=pb.SESSION_STATE_READY)
        raw = RedisRegistry._encode(old)
        await client.set("ag:session:s01", raw.replace(f', "_index": "{old.index_key}"', ""))
        await client.zadd("ag:sessions", {"s01": old.create_time})
        assert await shared.owned_by("a") == []
        assert await shared.migrate() == 1
        assert [x.session_id for x in await shared.owned_by("a")] == ["s01"]
        assert not await client.exists("ag:sessions")
        assert await shared.migrate() == 0
    finally:
        await client.aclose()
        await shared.aclose()
