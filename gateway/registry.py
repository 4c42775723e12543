"""Session registry: where session records live (memory, or Redis for shared replicas).

A record is everything a replica needs to get, list, drive or close a session: the
vendor handle included, so a session created on one replica can be closed by another.
Records are recorded *before* the vendor create call returns (architecture.md §4):
the record exists in state CREATING with the vendor-side ids the adapter will use, so a
crash between the vendor's answer and ours still leaves a trace to clean up.

The registry stays small: the record of an ended (CLOSED or FAILED) session is forgotten
``retention_s`` after it ended, and listing and reaping read indexes (creation order, state,
owner, live), never every record.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from google.protobuf import duration_pb2, timestamp_pb2

log = structlog.get_logger("gateway.registry")


@dataclass
class SessionRecord:
    """One session as stored. Times are Unix seconds (wall clock), durations seconds.

    Attributes:
        session_id: id part of ``sessions/{session_id}``.
        vendor: vendor id.
        avatar_id: vendor avatar id.
        state: ``pb.SessionState`` value.
        owner: replica id of the process holding the drive channel and reaping it.
        request_id: CreateSession idempotency key ("" when none).
        request_fingerprint: hash of the CreateSession request without request_id.
        vendor_session_id: vendor's id ("" until the vendor answers).
        vendor_data: adapter's JSON-serialisable details (``VendorSessionHandle.data``).
        playback: serialized ``pb.Playback``.
        vendor_sample_rate_hertz: rate the vendor receives (0: not driven yet).
    """

    session_id: str
    vendor: str
    avatar_id: str
    owner: str
    state: int = pb.SESSION_STATE_CREATING
    labels: dict[str, str] = field(default_factory=dict)
    create_time: float = field(default_factory=time.time)
    max_duration_s: float = 3600.0
    idle_timeout_s: float = 300.0
    request_id: str = ""
    request_fingerprint: str = ""
    vendor_session_id: str = ""
    vendor_data: dict[str, Any] = field(default_factory=dict)
    playback: bytes = b""
    close_time: float = 0.0
    close_reason: int = pb.CLOSE_REASON_UNSPECIFIED
    failure_reason: str = ""
    failure_message: str = ""
    failure_vendor_code: str = ""
    last_activity_time: float = field(default_factory=time.time)
    drive_active: bool = False
    vendor_sample_rate_hertz: int = 0

    @property
    def name(self) -> str:
        """Resource name ``sessions/{session_id}``."""
        return f"sessions/{self.session_id}"

    @property
    def expire_time(self) -> float:
        """When max_duration runs out (Unix s)."""
        return self.create_time + self.max_duration_s

    @property
    def terminal(self) -> bool:
        """Whether the session is CLOSED or FAILED."""
        return self.state in (pb.SESSION_STATE_CLOSED, pb.SESSION_STATE_FAILED)

    @property
    def index_key(self) -> str:
        """Its position in creation order: ``<create time, µs, 16 digits>:<session_id>``.

        Strings compare as (create_time, session_id) do, so one sorted index orders records
        and a key is a stable page cursor: it still marks the same place after records
        before or after it were added or removed.
        """
        return f"{int(self.create_time * 1_000_000):016d}:{self.session_id}"

    def to_proto(self) -> pb.Session:
        """The API view of the record."""
        session = pb.Session(
            name=self.name,
            vendor=self.vendor,
            avatar_id=self.avatar_id,
            state=self.state,  # type: ignore[arg-type]
            labels=self.labels,
            create_time=_ts(self.create_time),
            expire_time=_ts(self.expire_time),
            idle_timeout=_dur(self.idle_timeout_s),
            max_duration=_dur(self.max_duration_s),
            vendor_session_id=self.vendor_session_id,
            close_reason=self.close_reason,  # type: ignore[arg-type]
            drive_active=self.drive_active,
            last_activity_time=_ts(self.last_activity_time),
        )
        if self.playback:
            session.playback.ParseFromString(self.playback)
        if self.close_time:
            session.close_time.CopyFrom(_ts(self.close_time))
        if self.failure_reason:
            session.failure.CopyFrom(
                pb.SessionFailure(
                    reason=self.failure_reason,
                    message=self.failure_message,
                    vendor_code=self.failure_vendor_code,
                )
            )
        if self.vendor_sample_rate_hertz:
            session.vendor_audio_format.CopyFrom(
                media_pb2.AudioFormat(
                    audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
                    sample_rate_hertz=self.vendor_sample_rate_hertz,
                    audio_channel_count=1,
                )
            )
        return session


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


@dataclass(frozen=True)
class SessionFilter:
    """ListSessions filter; empty fields match everything."""

    vendor: str = ""
    state: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def matches(self, record: SessionRecord) -> bool:
        """Whether ``record`` passes the filter."""
        if self.vendor and record.vendor != self.vendor:
            return False
        if self.state and record.state != self.state:
            return False
        return all(record.labels.get(k) == v for k, v in self.labels.items())


class SessionRegistry(ABC):
    """Storage of session records, shared by replicas when backed by Redis.

    Args:
        retention_s: how long the record of an ended session stays after it ended (s).
    """

    def __init__(self, retention_s: float = 3600.0) -> None:
        self.retention_s = retention_s

    @abstractmethod
    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later."""

    @abstractmethod
    async def insert(self, record: SessionRecord, max_live: int | None = None) -> bool:
        """Store a new record unless ``max_live`` live (not terminal) records exist already.

        The count and the write are one atomic step across replicas, so concurrent creates
        cannot overshoot the limit. The count is of the records themselves (the live index),
        not a separate counter, so a replica that dies mid-create cannot make it drift.

        Returns:
            Whether the record was stored.
        """

    @abstractmethod
    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None`` (never stored, deleted, or past its retention)."""

    @abstractmethod
    async def delete(self, session_id: str) -> None:
        """Forget a record (a create that failed before any vendor session existed)."""

    @abstractmethod
    async def list_records(self, flt: SessionFilter, after: str, limit: int) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, at most ``limit``.

        Args:
            flt: the filter.
            after: a :attr:`SessionRecord.index_key`: only records older than it ("" for
                the newest).
            limit: most records returned.
        """

    @abstractmethod
    async def claim_request_id(self, request_id: str, session_id: str) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound; return the earlier binding."""

    @abstractmethod
    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id`` (the create failed before a vendor session existed)."""

    @abstractmethod
    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by replica ``owner`` that are not terminal."""

    @abstractmethod
    async def live_count(self) -> int:
        """How many records are not terminal (every replica's)."""


class MemoryRegistry(SessionRegistry):
    """In-process registry (one replica). Records are copied in and out like a store would.

    Args:
        retention_s: how long the record of an ended session stays after it ended (s).
    """

    def __init__(self, retention_s: float = 3600.0) -> None:
        super().__init__(retention_s)
        self._records: dict[str, SessionRecord] = {}
        self._request_ids: dict[str, str] = {}
        # Ended sessions by when they are forgotten (wall clock, s), oldest first: every
        # record ends with the same retention, so insertion order is expiry order.
        self._expiry: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def _prune(self) -> None:
        now = time.time()
        while self._expiry:
            session_id, at = next(iter(self._expiry.items()))
            if at > now:
                break
            del self._expiry[session_id]
            self._records.pop(session_id, None)

    def _store(self, record: SessionRecord) -> None:
        self._records[record.session_id] = _copy(record)
        self._expiry.pop(record.session_id, None)
        if record.terminal:
            self._expiry[record.session_id] = time.time() + self.retention_s

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later."""
        self._prune()
        self._store(record)

    async def insert(self, record: SessionRecord, max_live: int | None = None) -> bool:
        """Store a new record unless ``max_live`` live records exist already."""
        self._prune()
        if max_live is not None and await self.live_count() >= max_live:
            return False
        self._store(record)
        return True

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""
        self._prune()
        record = self._records.get(session_id)
        return _copy(record) if record else None

    async def delete(self, session_id: str) -> None:
        """Forget a record."""
        self._records.pop(session_id, None)
        self._expiry.pop(session_id, None)

    async def list_records(self, flt: SessionFilter, after: str, limit: int) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, older than ``after``, at most ``limit``."""
        self._prune()
        matching = [
            r
            for r in self._records.values()
            if flt.matches(r) and (not after or r.index_key < after)
        ]
        matching.sort(key=lambda r: r.index_key, reverse=True)
        return [_copy(r) for r in matching[:limit]]

    async def claim_request_id(self, request_id: str, session_id: str) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound; return the earlier binding."""
        async with self._lock:
            existing = self._request_ids.get(request_id)
            if existing is None:
                self._request_ids[request_id] = session_id
            return existing

    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id``."""
        self._request_ids.pop(request_id, None)

    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by ``owner`` that are not terminal."""
        return [_copy(r) for r in self._records.values() if r.owner == owner and not r.terminal]

    async def live_count(self) -> int:
        """How many records are not terminal."""
        return sum(1 for r in self._records.values() if not r.terminal)


def _copy(record: SessionRecord) -> SessionRecord:
    return SessionRecord(
        **{
            **record.__dict__,
            "labels": dict(record.labels),
            "vendor_data": dict(record.vendor_data),
        }
    )


# ---- Redis ----------------------------------------------------------------------------
#
# Keys (prefix ``ag:``):
#   ag:session:{id}       the record as JSON; expires retention_s after the session ended
#   ag:idx:all            sorted set of index keys (SessionRecord.index_key) of every record
#   ag:idx:state:{state}  the same, per state
#   ag:idx:live           set of the ids of records not terminal
#   ag:idx:owner:{owner}  set of the ids of records not terminal, per owner
#   ag:idx:ended          sorted set of index keys of ended records, scored by when their
#                         record expires (ms): what to drop from the indexes, and when
#   ag:request:{rid}      the session id bound to an idempotency key
#
# Index members of the sorted sets all have score 0 and are ordered by their bytes
# (``ZRANGE ... BYLEX``): that is creation order, so a page cursor is just an index key.
# Every write of a record and of its index entries is one Lua script, so the indexes never
# disagree with the records. The scripts name the index keys of the record's old state and
# owner, which they read from the stored record: fine on one Redis (or a primary with
# replicas), not on Redis Cluster.

_PRUNE = """
local function prune(now_ms)
  local gone = redis.call('ZRANGEBYSCORE', 'ag:idx:ended', '-inf', now_ms, 'LIMIT', 0, 200)
  for _, member in ipairs(gone) do
    redis.call('ZREM', 'ag:idx:all', member)
    redis.call('ZREM', 'ag:idx:state:4', member)
    redis.call('ZREM', 'ag:idx:state:5', member)
    redis.call('ZREM', 'ag:idx:ended', member)
  end
  return #gone
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function unindex(old, id)
  local o = cjson.decode(old)
  if o._index then
    redis.call('ZREM', 'ag:idx:all', o._index)
    redis.call('ZREM', 'ag:idx:state:' .. o.state, o._index)
    redis.call('ZREM', 'ag:idx:ended', o._index)
  end
  redis.call('SREM', 'ag:idx:owner:' .. o.owner, id)
  redis.call('SREM', 'ag:idx:live', id)
end
"""

# KEYS[1]: ag:session:{id}. ARGV: id, JSON, index key, state, owner, "1" if terminal,
# retention (ms), "insert" or "put", max live ("-1": none). Returns 1 if stored, 0 if the
# live limit refused it.
_PUT = (
    _PRUNE
    + """
local id, json, member, state, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local terminal, retention = ARGV[6] == '1', tonumber(ARGV[7])
local max_live = tonumber(ARGV[9])
if ARGV[8] == 'insert' and max_live >= 0 and redis.call('SCARD', 'ag:idx:live') >= max_live then
  return 0
end
local old = redis.call('GET', KEYS[1])
if old then unindex(old, id) end
redis.call('ZADD', 'ag:idx:all', 0, member)
redis.call('ZADD', 'ag:idx:state:' .. state, 0, member)
if terminal then
  local now = now_ms()
  redis.call('SET', KEYS[1], json, 'PX', retention)
  redis.call('ZADD', 'ag:idx:ended', now + retention, member)
  prune(now)
else
  redis.call('SET', KEYS[1], json)
  redis.call('SADD', 'ag:idx:live', id)
  redis.call('SADD', 'ag:idx:owner:' .. owner, id)
end
return 1
"""
)

# KEYS[1]: ag:session:{id}. ARGV: id.
_DELETE = (
    _PRUNE
    + """
local old = redis.call('GET', KEYS[1])
if old then unindex(old, ARGV[1]) end
redis.call('DEL', KEYS[1])
return 1
"""
)

_PRUNE_NOW = _PRUNE + "\nreturn prune(now_ms())\n"


class RedisRegistry(SessionRegistry):
    """Registry shared by replicas (Kubernetes): one Redis, every replica reads and writes.

    Layout: see the comment above this class. ``ag:request:{request_id}`` binds an
    idempotency key to a session id (``SET NX``, so two replicas cannot both create).

    Args:
        url: ``redis://host:port/db``.
        request_id_ttl_s: how long an idempotency key stays bound (s).
        retention_s: how long the record of an ended session stays after it ended (s).
    """

    def __init__(
        self, url: str, request_id_ttl_s: int = 86400, retention_s: float = 3600.0
    ) -> None:
        import redis.asyncio as aioredis

        super().__init__(retention_s)
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._ttl = request_id_ttl_s
        self._put = self._redis.register_script(_PUT)
        self._delete = self._redis.register_script(_DELETE)
        self._prune = self._redis.register_script(_PRUNE_NOW)

    @staticmethod
    def _encode(record: SessionRecord) -> str:
        data = dict(record.__dict__)
        data["playback"] = base64.b64encode(record.playback).decode()
        # The scripts read the old index key back when the record changes state or owner.
        data["_index"] = record.index_key
        return json.dumps(data)

    @staticmethod
    def _decode(raw: str) -> SessionRecord:
        data = json.loads(raw)
        data.pop("_index", None)
        data["playback"] = base64.b64decode(data["playback"])
        return SessionRecord(**data)

    async def _write(self, record: SessionRecord, mode: str, max_live: int | None) -> bool:
        stored = await self._put(
            keys=[f"ag:session:{record.session_id}"],
            args=[
                record.session_id,
                self._encode(record),
                record.index_key,
                record.state,
                record.owner,
                "1" if record.terminal else "0",
                max(1, int(self.retention_s * 1000)),
                mode,
                -1 if max_live is None else max_live,
            ],
        )
        return bool(int(stored))

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later."""
        await self._write(record, "put", None)

    async def insert(self, record: SessionRecord, max_live: int | None = None) -> bool:
        """Store a new record unless ``max_live`` live records exist (atomic in Redis)."""
        return await self._write(record, "insert", max_live)

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""
        raw = await self._redis.get(f"ag:session:{session_id}")
        return self._decode(str(raw)) if raw else None

    async def delete(self, session_id: str) -> None:
        """Forget a record and its index entries."""
        await self._delete(keys=[f"ag:session:{session_id}"], args=[session_id])

    async def list_records(self, flt: SessionFilter, after: str, limit: int) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, older than ``after``, at most ``limit``.

        Walks the creation-order index (the state's, when the filter names one) from
        ``after`` in batches, so a page reads about as many records as it returns when the
        filter is by state alone; vendor and label filters are applied to what is read.
        """
        await self._prune(keys=[], args=[])
        index = f"ag:idx:state:{flt.state}" if flt.state else "ag:idx:all"
        out: list[SessionRecord] = []
        cursor = after
        while len(out) < limit:
            batch = max(2 * (limit - len(out)), 16)
            members: list[str] = await self._redis.zrange(
                index,
                f"({cursor}" if cursor else "+",
                "-",
                desc=True,
                bylex=True,
                offset=0,
                num=batch,
            )
            if not members:
                break
            ids = [m.partition(":")[2] for m in members]
            raws = await self._redis.mget([f"ag:session:{i}" for i in ids])
            for raw in raws:
                # A record may expire between the prune and the read: skip it.
                if raw and flt.matches(record := self._decode(str(raw))):
                    out.append(record)
                    if len(out) == limit:
                        break
            cursor = members[-1]
            if len(members) < batch:
                break
        return out

    async def claim_request_id(self, request_id: str, session_id: str) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound (atomic across replicas)."""
        key = f"ag:request:{request_id}"
        if await self._redis.set(key, session_id, nx=True, ex=self._ttl):
            return None
        existing = await self._redis.get(key)
        return str(existing) if existing is not None else None

    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id``."""
        await self._redis.delete(f"ag:request:{request_id}")

    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by ``owner`` that are not terminal (from the owner's index)."""
        ids = sorted(await self._redis.smembers(f"ag:idx:owner:{owner}"))
        if not ids:
            return []
        raws = await self._redis.mget([f"ag:session:{i}" for i in ids])
        records = [self._decode(str(r)) for r in raws if r]
        return [r for r in records if r.owner == owner and not r.terminal]

    async def live_count(self) -> int:
        """How many records are not terminal (every replica's)."""
        return int(await self._redis.scard("ag:idx:live"))

    async def migrate(self) -> int:
        """Index the records an earlier version wrote, once; return how many.

        Versions before the indexes kept one sorted set, ``ag:sessions``, of every record
        ever written. Its live records must reach the owner and live indexes, or no reaper
        would find them (billed sessions nobody closes); its ended ones get their retention.

        Raises:
            redis.exceptions.RedisError: Redis failed.
        """
        ids = await self._redis.zrange("ag:sessions", 0, -1)
        for session_id in ids:
            raw = await self._redis.get(f"ag:session:{session_id}")
            if raw:
                await self.put(self._decode(str(raw)))
        if ids:
            await self._redis.delete("ag:sessions")
            log.info("registry_migrated", records=len(ids))
        return len(ids)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
