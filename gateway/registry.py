"""Session registry: where session records live (memory now; Redis for shared replicas).

A record is everything a replica needs to get, list, drive or close a session: the
vendor handle included, so a session created on one replica can be closed by another.
Records are recorded *before* the vendor create call returns (architecture.md §4):
the record exists in state CREATING with the vendor-side ids the adapter will use, so a
crash between the vendor's answer and ours still leaves a trace to clean up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from google.protobuf import duration_pb2, timestamp_pb2


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
    """Storage of session records, shared by replicas when backed by Redis."""

    @abstractmethod
    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record."""

    @abstractmethod
    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""

    @abstractmethod
    async def list_records(
        self, flt: SessionFilter, offset: int, limit: int
    ) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, from ``offset``, at most ``limit``."""

    @abstractmethod
    async def claim_request_id(self, request_id: str, session_id: str) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound; return the earlier binding."""

    @abstractmethod
    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id`` (the create failed before a vendor session existed)."""

    @abstractmethod
    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by replica ``owner`` that are not terminal."""


class MemoryRegistry(SessionRegistry):
    """In-process registry (one replica). Records are copied in and out like a store would."""

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._request_ids: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record."""
        self._records[record.session_id] = _copy(record)

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""
        record = self._records.get(session_id)
        return _copy(record) if record else None

    async def list_records(
        self, flt: SessionFilter, offset: int, limit: int
    ) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, from ``offset``, at most ``limit``."""
        matching = [r for r in self._records.values() if flt.matches(r)]
        matching.sort(key=lambda r: (r.create_time, r.session_id), reverse=True)
        return [_copy(r) for r in matching[offset : offset + limit]]

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


def _copy(record: SessionRecord) -> SessionRecord:
    return SessionRecord(
        **{
            **record.__dict__,
            "labels": dict(record.labels),
            "vendor_data": dict(record.vendor_data),
        }
    )


class RedisRegistry(SessionRegistry):
    """Registry shared by replicas (Kubernetes): one Redis, every replica reads and writes.

    Layout (prefix ``ag:``): ``ag:session:{id}`` holds the record as JSON, the sorted set
    ``ag:sessions`` indexes ids by create time, and ``ag:request:{request_id}`` binds an
    idempotency key to a session id (``SET NX``, so two replicas cannot both create).
    Listing scans the index: fine for thousands of sessions per deployment; a large fleet
    would add per-vendor/state indexes.

    Args:
        url: ``redis://host:port/db``.
        request_id_ttl_s: how long an idempotency key stays bound (s).
    """

    def __init__(self, url: str, request_id_ttl_s: int = 86400) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._ttl = request_id_ttl_s

    @staticmethod
    def _encode(record: SessionRecord) -> str:
        data = dict(record.__dict__)
        data["playback"] = base64.b64encode(record.playback).decode()
        return json.dumps(data)

    @staticmethod
    def _decode(raw: str) -> SessionRecord:
        data = json.loads(raw)
        data["playback"] = base64.b64decode(data["playback"])
        return SessionRecord(**data)

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"ag:session:{record.session_id}", self._encode(record))
            pipe.zadd("ag:sessions", {record.session_id: record.create_time})
            await pipe.execute()

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""
        raw = await self._redis.get(f"ag:session:{session_id}")
        return self._decode(str(raw)) if raw else None

    async def _all(self) -> list[SessionRecord]:
        ids = await self._redis.zrevrange("ag:sessions", 0, -1)
        if not ids:
            return []
        raws = await self._redis.mget([f"ag:session:{i!s}" for i in ids])
        return [self._decode(str(r)) for r in raws if r]

    async def list_records(
        self, flt: SessionFilter, offset: int, limit: int
    ) -> list[SessionRecord]:
        """Records passing ``flt``, newest first, from ``offset``, at most ``limit``."""
        matching = [r for r in await self._all() if flt.matches(r)]
        return matching[offset : offset + limit]

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
        """Records owned by ``owner`` that are not terminal."""
        return [r for r in await self._all() if r.owner == owner and not r.terminal]

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
