"""Session registry: where session records live (memory, or Redis for shared replicas).

A record is everything a replica needs to get, list, drive or close a session: the
vendor handle included, so a session created on one replica can be closed by another.
Records are recorded *before* the vendor create call returns (architecture.md §4):
the record exists in state CREATING with the vendor-side ids the adapter will use, so a
crash between the vendor's answer and ours still leaves a trace to clean up.

The registry stays small: the record of an ended (CLOSED or FAILED) session is forgotten
``retention_s`` after it ended, and listing and reaping read indexes (creation order, state,
owner, live), never every record.

Beside the records, the registry keeps the leases replicas coordinate with
(docs/architecture.md §4.1): each replica's liveness lease (a session belongs to its owner
while the owner's lease lives), per-session claims (one replica at a time changes a session's
owner or closes it), and each session's drive lease with its fencing token and turn counter
(at most one Drive per session across replicas; turn ids unique within a session).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from gateway.usage import Tally, merge_shares, total, usage_proto, vendor_session_seconds

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
        tenant: the tenant that created the session ("" without authentication).
        last_turn: the session's highest turn number as of its last Drive stream's end; the
            floor of the next drive lease's turn ids, so they stay unique even after the
            registry lost its turn counter (architecture.md §4.3).
        usage: audio and text driven, as each replica's share (replica id -> running
            total, :mod:`gateway.usage`). Writes merge it share by share (the larger value
            wins), so no write counts anything twice or drops another replica's share.
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
    last_turn: int = 0
    tenant: str = ""
    usage: dict[str, Tally] = field(default_factory=dict)

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

    def add_share(self, replica: str, share: Tally) -> None:
        """Merge ``replica``'s latest share of the usage into the record."""
        self.usage = merge_shares(self.usage, {replica: share})

    def vendor_session_s(self, now: float | None = None) -> float:
        """Vendor session time so far (s; final once ended): see :mod:`gateway.usage`."""
        return vendor_session_seconds(
            self.create_time,
            self.close_time,
            ended=self.terminal,
            vendor_session=bool(self.vendor_session_id),
            now=time.time() if now is None else now,
        )

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
            tenant=self.tenant,
            last_activity_time=_ts(self.last_activity_time),
            usage=usage_proto(self.vendor_session_s(), total(self.usage)),
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
    tenant: str | None = None
    """Only this tenant's sessions (``None``: every tenant's, for an admin)."""

    def matches(self, record: SessionRecord) -> bool:
        """Whether ``record`` passes the filter."""
        if self.tenant is not None and record.tenant != self.tenant:
            return False
        if self.vendor and record.vendor != self.vendor:
            return False
        if self.state and record.state != self.state:
            return False
        return all(record.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class LeaseState:
    """The answer of a drive-lease operation (:meth:`SessionRegistry.acquire_drive` ...).

    Attributes:
        held: the caller holds the lease (with ``token``).
        holder: the replica holding it when the caller does not ("" when nobody does).
        token: the fencing token of the caller's lease (0 when not held).
        preempted_by: a replica asked (``preempt``) to take the Drive over ("" when none).
        turn: the turn number allocated (:meth:`SessionRegistry.next_turn`; 0 otherwise).
    """

    held: bool
    holder: str = ""
    token: int = 0
    preempted_by: str = ""
    turn: int = 0


class RegistryRebuilding(Exception):
    """The registry lost its data, or replicas are still putting back what they hold.

    ``lost``: the loss happened just now (nobody noticed yet). Either way a missing entry
    proves nothing yet (architecture.md §4.3).
    """

    def __init__(self, *, lost: bool) -> None:
        super().__init__("the registry lost its data" if lost else "the registry is rebuilt")
        self.lost = lost


@dataclass(frozen=True)
class ReplicaMessage:
    """A message from one replica to another, through the registry (architecture.md §4.2).

    Attributes:
        entry_id: the queue's id of the entry (``<ms>-<seq>``, increasing).
        kind: ``callback`` (a vendor callback for the session this replica drives) or
            ``release`` (another replica adopted a session: drop its channel here).
        vendor: vendor id (picks the adapter that applies a callback; "" otherwise).
        body: the verified callback body as the vendor sent it, or the session id (bytes).
    """

    entry_id: str
    kind: str
    vendor: str
    body: bytes


class SessionRegistry(ABC):
    """Storage of session records, shared by replicas when backed by Redis.

    Args:
        retention_s: how long the record of an ended session stays after it ended (s).
    """

    unavailable_errors: tuple[type[Exception], ...] = ()
    """Errors that mean the registry cannot be reached now (callers answer UNAVAILABLE
    ``REGISTRY_UNAVAILABLE`` and retry later); none for the in-memory registry."""

    def __init__(self, retention_s: float = 3600.0) -> None:
        self.retention_s = retention_s

    @abstractmethod
    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later.

        Its ``usage`` is merged with the stored one share by share (the larger wins).
        """

    @abstractmethod
    async def finish(self, record: SessionRecord) -> bool:
        """Write the record of a session that just ended, unless it had ended already.

        As :meth:`put`, atomically with the check: when two replicas close one session at
        once, exactly one call writes (and counts its usage, architecture.md §4.4).

        Returns:
            Whether this call ended it (``False``: the stored record was already terminal
            and is left unchanged).
        """

    @abstractmethod
    async def record_usage(self, session_id: str, replica: str, share: Tally) -> bool:
        """Raise ``replica``'s share of the session's usage to ``share`` (never lower it).

        Only while the session has not ended: an ended session's usage is final.

        Returns:
            Whether the session is live and its share was merged.
        """

    @abstractmethod
    async def insert(
        self,
        record: SessionRecord,
        max_live: int | None = None,
        max_tenant_live: int | None = None,
    ) -> str:
        """Store a new record unless a limit of live (not terminal) records is reached.

        The count and the write are one atomic step across replicas, so concurrent creates
        cannot overshoot a limit. The count is of the records themselves (the live indexes),
        not a separate counter, so a replica that dies mid-create cannot make it drift.

        Args:
            record: the new record.
            max_live: live records of every tenant at most (``None``: no limit).
            max_tenant_live: live records of ``record.tenant`` at most (``None``: no limit).

        Returns:
            "" when stored; else the limit that refused it: ``cluster`` or ``tenant``.
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
    async def claim_request_id(
        self, request_id: str, session_id: str, *, settled_after_s: float = 0.0
    ) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound; return the earlier binding.

        Args:
            request_id: the caller's idempotency key.
            session_id: the new session's id, bound when the key is free.
            settled_after_s: refuse while the registry lost its data less than this long
                ago (replicas may not have put back the binding yet).

        Raises:
            RegistryRebuilding: the data was lost just now or is being rebuilt (not bound).
        """

    @abstractmethod
    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id`` (the create failed before a vendor session existed)."""

    @abstractmethod
    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by replica ``owner`` that are not terminal."""

    @abstractmethod
    async def live_count(self) -> int:
        """How many records are not terminal (every replica's)."""

    # ---- replica leases ---------------------------------------------------------------

    @abstractmethod
    async def renew_replica(self, owner: str, ttl_s: float) -> bool:
        """Hold replica ``owner``'s liveness lease for ``ttl_s`` more seconds.

        Returns:
            Whether the lease was still alive (``False`` on the first call, and after a
            lapse: the replica's sessions may have been adopted or closed meanwhile).
        """

    @abstractmethod
    async def drop_replica(self, owner: str) -> None:
        """End replica ``owner``'s lease now (clean shutdown)."""

    @abstractmethod
    async def lapsed_replicas(self, grace_s: float) -> list[str]:
        """Replicas whose lease lapsed at least ``grace_s`` seconds ago (never renewed since)."""

    @abstractmethod
    async def forget_replica(self, owner: str) -> None:
        """Stop listing lapsed replica ``owner`` (its sessions were all settled)."""

    # ---- session claims ---------------------------------------------------------------

    @abstractmethod
    async def claim(self, session_id: str, owner: str, ttl_s: float) -> bool:
        """Take the session's claim unless another replica holds it; ``True`` when taken.

        Who holds the claim alone may change the session's owner or close it (adoption of a
        dead replica's session, the reaper), so exactly one replica does. The claim lapses
        after ``ttl_s`` seconds should its holder die.
        """

    @abstractmethod
    async def unclaim(self, session_id: str, owner: str) -> None:
        """Give the claim back, only if ``owner`` still holds it."""

    # ---- drive leases -----------------------------------------------------------------

    @abstractmethod
    async def acquire_drive(
        self, session_id: str, owner: str, ttl_s: float, *, preempt: bool = False
    ) -> LeaseState:
        """Take the session's drive lease with a new fencing token.

        Taken when nobody holds it, when this replica holds it (a stale lease of its own is
        replaced), or when its holder's replica lease lapsed. Otherwise the answer names the
        holder and, with ``preempt``, asks it to end its Drive (its next renewal says so).
        """

    @abstractmethod
    async def renew_drive(
        self, session_id: str, owner: str, token: int, ttl_s: float
    ) -> LeaseState:
        """Extend the drive lease of ``token`` by ``ttl_s`` seconds, if it is still ours.

        A lease that lapsed while nobody took a newer token is taken back (also when the
        registry lost its data). Not held: the answer names the replica that took over.
        """

    @abstractmethod
    async def next_turn(
        self, session_id: str, owner: str, token: int, ttl_s: float, floor: int
    ) -> LeaseState:
        """Renew as :meth:`renew_drive`, then allocate the session's next turn number.

        The number is above every number allocated before for the session, on any replica,
        and above ``floor`` (the last one this lease handed out). Nothing is allocated when
        the lease is not held or a preempt was asked for.
        """

    @abstractmethod
    async def release_drive(self, session_id: str, token: int) -> None:
        """Drop the drive lease, only if ``token`` still holds it."""

    @abstractmethod
    async def drive_holder(self, session_id: str) -> str:
        """The replica holding the session's drive lease ("" when none does)."""

    # ---- data loss ----------------------------------------------------------------------

    @abstractmethod
    async def mark_data(self, *, rebuilding: bool) -> None:
        """Mark the registry's data as present, unless marked already (``ag:data``).

        Args:
            rebuilding: the data was just lost and replicas are putting back what they
                hold: :meth:`data_age` counts from now. Otherwise (a first start) from never.
        """

    @abstractmethod
    async def data_age(self) -> float | None:
        """Seconds since the registry lost its data and was marked rebuilding.

        ``inf`` when it never was; ``None`` when the mark is missing: the data was lost just
        now.
        """

    # ---- vendor callbacks and messages between replicas --------------------------------

    @abstractmethod
    async def find_live(self, vendor: str, vendor_session_id: str) -> SessionRecord | None:
        """The live (not ended) record of ``vendor``'s session ``vendor_session_id``, if any."""

    @abstractmethod
    async def mark_seen(self, keys: list[str], ttl_s: float) -> list[bool]:
        """Mark each key seen for ``ttl_s`` s, in one round trip.

        Returns:
            For each key, whether it was not seen before (``False``: a duplicate).
        """

    @abstractmethod
    async def forget_seen(self, key: str) -> None:
        """Unmark ``key`` (its handling failed: the vendor's retry must count)."""

    @abstractmethod
    async def send_to_replica(self, owner: str, kind: str, vendor: str, body: bytes) -> None:
        """Queue a :class:`ReplicaMessage` for replica ``owner``; durable once returned."""

    @abstractmethod
    async def read_messages(self, owner: str, after: str, block_s: float) -> list[ReplicaMessage]:
        """Replica ``owner``'s queued messages after entry ``after``, oldest first.

        ``after`` "0-0" reads all; with none queued, waits up to ``block_s`` s for one.
        """

    @abstractmethod
    async def ack_messages(self, owner: str, entry_ids: list[str]) -> None:
        """Remove handled entries from replica ``owner``'s queue."""


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
        # Leases, with expiry times on the monotonic clock (s). One process: its own replica
        # lease never lapses while it runs, so behaviour is that of a single replica.
        self._replicas: dict[str, float] = {}
        self._claims: dict[str, tuple[str, float]] = {}
        self._drives: dict[str, _MemoryDriveLease] = {}
        self._seq: dict[str, list[int]] = {}  # session id -> [last token, last turn]
        # Callbacks: seen keys (monotonic expiry, s) and each replica's queue.
        # Seen keys, in the order they were marked: expired ones are pruned from the front
        # (the router marks every key for as long, so that is expiry order).
        self._seen: dict[str, float] = {}
        self._by_vendor_id: dict[tuple[str, str], str] = {}  # (vendor, vendor id) -> id
        self._inboxes: dict[str, list[ReplicaMessage]] = {}
        self._inbox_events: dict[str, asyncio.Event] = {}
        self._entry_seq = 0

    def _prune(self) -> None:
        now = time.time()
        while self._expiry:
            session_id, at = next(iter(self._expiry.items()))
            if at > now:
                break
            del self._expiry[session_id]
            self._forget(session_id)

    def _forget(self, session_id: str) -> None:
        gone = self._records.pop(session_id, None)
        if gone is not None:
            self._by_vendor_id.pop((gone.vendor, gone.vendor_session_id), None)

    def _store(self, record: SessionRecord) -> None:
        stored = _copy(record)
        before = self._records.get(record.session_id)
        if before is not None:
            stored.usage = merge_shares(before.usage, stored.usage)
        self._records[record.session_id] = stored
        self._expiry.pop(record.session_id, None)
        if record.terminal:
            self._expiry[record.session_id] = time.time() + self.retention_s
        elif record.vendor_session_id:
            self._by_vendor_id[(record.vendor, record.vendor_session_id)] = record.session_id

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later."""
        self._prune()
        self._store(record)

    async def finish(self, record: SessionRecord) -> bool:
        """Write an ended session's record unless it had ended already (see the base)."""
        self._prune()
        stored = self._records.get(record.session_id)
        if stored is not None and stored.terminal:
            return False
        self._store(record)
        return True

    async def record_usage(self, session_id: str, replica: str, share: Tally) -> bool:
        """Raise ``replica``'s share of a live session's usage (see the base class)."""
        stored = self._records.get(session_id)
        if stored is None or stored.terminal:
            return False
        stored.add_share(replica, share)
        return True

    async def insert(
        self,
        record: SessionRecord,
        max_live: int | None = None,
        max_tenant_live: int | None = None,
    ) -> str:
        """Store a new record unless a limit is reached (see the base class)."""
        self._prune()
        if max_live is not None and await self.live_count() >= max_live:
            return "cluster"
        if max_tenant_live is not None:
            tenant_live = sum(
                1 for r in self._records.values() if r.tenant == record.tenant and not r.terminal
            )
            if tenant_live >= max_tenant_live:
                return "tenant"
        self._store(record)
        return ""

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None``."""
        self._prune()
        record = self._records.get(session_id)
        return _copy(record) if record else None

    async def delete(self, session_id: str) -> None:
        """Forget a record."""
        self._forget(session_id)
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

    async def claim_request_id(
        self, request_id: str, session_id: str, *, settled_after_s: float = 0.0
    ) -> str | None:
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

    def _replica_alive(self, owner: str) -> bool:
        return self._replicas.get(owner, 0.0) > time.monotonic()

    async def renew_replica(self, owner: str, ttl_s: float) -> bool:
        """Hold replica ``owner``'s lease for ``ttl_s`` more seconds; whether it was alive."""
        alive = self._replica_alive(owner)
        self._replicas[owner] = time.monotonic() + ttl_s
        return alive

    async def drop_replica(self, owner: str) -> None:
        """End replica ``owner``'s lease now."""
        self._replicas.pop(owner, None)

    async def lapsed_replicas(self, grace_s: float) -> list[str]:
        """Replicas whose lease lapsed at least ``grace_s`` seconds ago."""
        now = time.monotonic()
        return [owner for owner, until in self._replicas.items() if until + grace_s <= now]

    async def forget_replica(self, owner: str) -> None:
        """Stop listing lapsed replica ``owner``."""
        if not self._replica_alive(owner):
            self._replicas.pop(owner, None)

    async def claim(self, session_id: str, owner: str, ttl_s: float) -> bool:
        """Take the session's claim unless another replica holds it."""
        now = time.monotonic()
        holder = self._claims.get(session_id)
        if holder is not None and holder[1] > now and holder[0] != owner:
            return False
        self._claims[session_id] = (owner, now + ttl_s)
        return True

    async def unclaim(self, session_id: str, owner: str) -> None:
        """Give the claim back if ``owner`` holds it."""
        holder = self._claims.get(session_id)
        if holder is not None and holder[0] == owner:
            del self._claims[session_id]

    def _live_drive(self, session_id: str) -> _MemoryDriveLease | None:
        lease = self._drives.get(session_id)
        if lease is not None and lease.until <= time.monotonic():
            del self._drives[session_id]
            return None
        return lease

    async def acquire_drive(
        self, session_id: str, owner: str, ttl_s: float, *, preempt: bool = False
    ) -> LeaseState:
        """Take the session's drive lease with a new fencing token (see the base class)."""
        lease = self._live_drive(session_id)
        if lease is not None and lease.owner != owner and self._replica_alive(lease.owner):
            if preempt:
                lease.preempt = owner
            return LeaseState(held=False, holder=lease.owner)
        seq = self._seq.setdefault(session_id, [0, 0])
        seq[0] += 1
        self._drives[session_id] = _MemoryDriveLease(owner, seq[0], time.monotonic() + ttl_s)
        return LeaseState(held=True, holder=owner, token=seq[0])

    def _renew(self, session_id: str, owner: str, token: int, ttl_s: float) -> LeaseState:
        lease = self._live_drive(session_id)
        if lease is None and self._seq.get(session_id, [0, 0])[0] == token:
            lease = self._drives[session_id] = _MemoryDriveLease(owner, token, 0.0)
        if lease is None or lease.token != token or lease.owner != owner:
            return LeaseState(held=False, holder=lease.owner if lease else "")
        lease.until = time.monotonic() + ttl_s
        return LeaseState(held=True, holder=owner, token=token, preempted_by=lease.preempt)

    async def renew_drive(
        self, session_id: str, owner: str, token: int, ttl_s: float
    ) -> LeaseState:
        """Extend the drive lease of ``token`` if it is still ours (see the base class)."""
        return self._renew(session_id, owner, token, ttl_s)

    async def next_turn(
        self, session_id: str, owner: str, token: int, ttl_s: float, floor: int
    ) -> LeaseState:
        """Renew, then allocate the session's next turn number (see the base class)."""
        state = self._renew(session_id, owner, token, ttl_s)
        if not state.held or state.preempted_by:
            return state
        seq = self._seq[session_id]
        seq[1] = max(seq[1], floor) + 1
        return LeaseState(held=True, holder=owner, token=token, turn=seq[1])

    async def release_drive(self, session_id: str, token: int) -> None:
        """Drop the drive lease if ``token`` still holds it."""
        lease = self._drives.get(session_id)
        if lease is not None and lease.token == token:
            del self._drives[session_id]

    async def drive_holder(self, session_id: str) -> str:
        """The replica holding the session's drive lease ("" when none does)."""
        lease = self._live_drive(session_id)
        return lease.owner if lease is not None else ""

    async def mark_data(self, *, rebuilding: bool) -> None:
        """Nothing to mark: in-process data is never lost while the process runs."""

    async def data_age(self) -> float | None:
        """Never lost: ``inf``."""
        return math.inf

    async def find_live(self, vendor: str, vendor_session_id: str) -> SessionRecord | None:
        """The live record of ``vendor``'s session ``vendor_session_id``, if any."""
        session_id = self._by_vendor_id.get((vendor, vendor_session_id))
        record = self._records.get(session_id) if session_id is not None else None
        if record is None or record.terminal or record.vendor_session_id != vendor_session_id:
            return None
        return _copy(record)

    async def mark_seen(self, keys: list[str], ttl_s: float) -> list[bool]:
        """Mark each key seen for ``ttl_s`` s; for each, whether it was not seen before."""
        now = time.monotonic()
        while self._seen:
            oldest, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[oldest]
        fresh = []
        for key in keys:
            if self._seen.get(key, 0.0) > now:
                fresh.append(False)
                continue
            self._seen.pop(key, None)  # re-marked: to the back, in expiry order
            self._seen[key] = now + ttl_s
            fresh.append(True)
        return fresh

    async def forget_seen(self, key: str) -> None:
        """Unmark ``key``."""
        self._seen.pop(key, None)

    async def send_to_replica(self, owner: str, kind: str, vendor: str, body: bytes) -> None:
        """Queue a message for replica ``owner`` (a replica of this process)."""
        self._entry_seq += 1
        entry = ReplicaMessage(f"{self._entry_seq}-0", kind, vendor, body)
        self._inboxes.setdefault(owner, []).append(entry)
        self._inbox_events.setdefault(owner, asyncio.Event()).set()

    async def read_messages(self, owner: str, after: str, block_s: float) -> list[ReplicaMessage]:
        """Replica ``owner``'s queued messages after entry ``after``, oldest first."""
        floor = int(after.split("-")[0])
        event = self._inbox_events.setdefault(owner, asyncio.Event())
        entries = [e for e in self._inboxes.get(owner, []) if int(e.entry_id.split("-")[0]) > floor]
        if not entries:
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), block_s)
            entries = [
                e for e in self._inboxes.get(owner, []) if int(e.entry_id.split("-")[0]) > floor
            ]
        return entries

    async def ack_messages(self, owner: str, entry_ids: list[str]) -> None:
        """Remove handled entries from replica ``owner``'s queue."""
        done = set(entry_ids)
        self._inboxes[owner] = [e for e in self._inboxes.get(owner, []) if e.entry_id not in done]


@dataclass
class _MemoryDriveLease:
    owner: str
    token: int
    until: float
    preempt: str = ""


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionRecord))


def _copy(record: SessionRecord) -> SessionRecord:
    return SessionRecord(
        **{
            **record.__dict__,
            "labels": dict(record.labels),
            "vendor_data": dict(record.vendor_data),
            "usage": dict(record.usage),
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
#   ag:usage:{id}         hash of the record's usage shares (SessionRecord.usage), fields
#                         ``audio_s:{replica}`` and ``text_characters:{replica}``: kept
#                         beside the JSON so that a write raises each share in place (the
#                         larger value wins) without rewriting the record; it expires with it
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
  redis.call('SREM', 'ag:idx:tenant:' .. (o.tenant or ''), id)
  if o.vendor_session_id and o.vendor_session_id ~= '' then
    redis.call('DEL', 'ag:idx:vendor:' .. o.vendor .. ':' .. o.vendor_session_id)
  end
end
"""

# Raises usage shares (the hash KEYS[1]) to the values of ARGV[first], ARGV[first + 1], ...
# (field, value pairs): a share only grows, so the larger value is the later one.
_RAISE_SHARES = """
local function raise_shares(key, first)
  for i = first, #ARGV - 1, 2 do
    local current = redis.call('HGET', key, ARGV[i])
    if not current or tonumber(ARGV[i + 1]) > tonumber(current) then
      redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    end
  end
end
"""

# KEYS[1]: ag:session:{id}, KEYS[2]: ag:usage:{id}. ARGV: id, JSON, index key, state, owner,
# "1" if terminal, retention (ms), "insert", "put" or "finish", max live ("-1": none),
# tenant, the tenant's max live ("-1": none), lifetime of a live record's usage (ms), then
# the usage shares as field, value pairs. Returns 1 if stored, 0 if the live limit refused
# it, 2 if the tenant's did, 3 if "finish" found the record already ended.
_PUT = (
    _PRUNE
    + _RAISE_SHARES
    + """
local id, json, member, state, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local terminal, retention = ARGV[6] == '1', tonumber(ARGV[7])
local max_live = tonumber(ARGV[9])
local tenant, tenant_max = ARGV[10], tonumber(ARGV[11])
if ARGV[8] == 'insert' then
  if max_live >= 0 and redis.call('SCARD', 'ag:idx:live') >= max_live then return 0 end
  if tenant_max >= 0 and redis.call('SCARD', 'ag:idx:tenant:' .. tenant) >= tenant_max then
    return 2
  end
end
local old = redis.call('GET', KEYS[1])
if ARGV[8] == 'finish' and old then
  local ended = cjson.decode(old).state
  if ended == 4 or ended == 5 then return 3 end
end
raise_shares(KEYS[2], 13)
-- A live record's usage also expires, long after any session ends: a replica of a version
-- before usage closes a session without expiring it.
redis.call('PEXPIRE', KEYS[2], terminal and retention or tonumber(ARGV[12]))
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
  redis.call('SADD', 'ag:idx:tenant:' .. tenant, id)
  local r = cjson.decode(json)
  if r.vendor_session_id ~= '' then
    redis.call('SET', 'ag:idx:vendor:' .. r.vendor .. ':' .. r.vendor_session_id, id)
  end
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
redis.call('DEL', 'ag:usage:' .. ARGV[1])
return 1
"""
)

# KEYS[1]: ag:usage:{id}. ARGV: id, lifetime of the usage (ms), then one replica's shares as
# field, value pairs. Only while the record is live (an ended session's usage is final).
# Returns 1 if raised, 0 if the session is not live.
_RECORD_USAGE = (
    _RAISE_SHARES
    + """
if redis.call('SISMEMBER', 'ag:idx:live', ARGV[1]) == 0 then return 0 end
raise_shares(KEYS[1], 3)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

_PRUNE_NOW = _PRUNE + "\nreturn prune(now_ms())\n"


REDIS_TIMEOUT_S = 2.0
"""Socket connect and read timeout of every Redis command (s); a blocking read asks less."""
REDIS_RETRIES = 2
"""Retries of a Redis command that failed to connect or timed out, 20-100 ms apart."""
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""redis-py's errors for a Redis that cannot be reached (a restart's LOADING included)."""


def redis_client(url: str) -> Any:
    """An asyncio redis-py client (``decode_responses``) that gives up fast.

    redis-py 8 retries a failed command 10 times, up to 1 s apart, each try waiting up to
    5 s for its socket: a CreateSession would hang for seconds, holding its caller, before
    it could answer UNAVAILABLE. Here a command fails within about ``REDIS_RETRIES`` x
    ``REDIS_TIMEOUT_S`` when Redis is silent, at once (after 2 quick retries) when it
    refuses connections.

    Args:
        url: ``redis://host:port/db``.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.1), REDIS_RETRIES),
    )


INBOX_MAX = 10000
"""About how many messages a replica's queue keeps (older ones are trimmed)."""
INBOX_TTL_S = 3600.0
"""A replica's queue expires this long after its last entry (s)."""

# KEYS[1]: ag:request:{request_id}. ARGV: session id, binding ttl (s), window (ms; 0: none).
# Returns {0, 'lost' | 'rebuilding'} (not bound), {1, ''} (bound now), {2, earlier id}.
_CLAIM_REQUEST = """
local mark = redis.call('GET', 'ag:data')
if not mark then return {0, 'lost'} end
local window = tonumber(ARGV[3])
if window > 0 and tonumber(mark) > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now - tonumber(mark) < window then return {0, 'rebuilding'} end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return {1, ''} end
return {2, redis.call('GET', KEYS[1]) or ''}
"""

SEQ_TTL_S = 2 * 86400
"""How long a session's fencing-token and turn counters outlive their last use (s): beyond
the longest session (``MAX_DURATION_S``), so a live session never restarts its turn ids."""
USAGE_TTL_S = SEQ_TTL_S
"""How long a live session's usage outlives its last write (s): beyond the longest session."""

# Lua scripts: each runs atomically in Redis, so two replicas never both win a lease. Times
# are the Redis server's clock (TIME), never a replica's, so clock skew between pods does not
# decide who is alive.

_RENEW_REPLICA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX')
if not alive then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
if alive then return 1 end
return 0
"""

# KEYS[1] the replica index; ARGV[1] grace (ms), ARGV[2] the replica key prefix.
_LAPSED_REPLICAS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))) do
  if redis.call('EXISTS', ARGV[2] .. owner) == 0 then table.insert(out, owner) end
end
return out
"""

_FORGET_REPLICA = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 0
"""

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: drive lease hash, counters hash. ARGV: owner, ttl (ms), preempt ('1'/'0'), counters
# ttl (ms), replica key prefix. Returns {held, holder, token}.
_ACQUIRE_DRIVE = """
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[5] .. holder) == 1 then
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'preempt', ARGV[1]) end
  return {0, holder, 0}
end
local token = redis.call('HINCRBY', KEYS[2], 'token', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ARGV[1], token}
"""

# KEYS: drive lease hash, counters hash. ARGV: owner, token, ttl (ms), counters ttl (ms),
# turn floor (-1: renew only). Returns {held, holder, preempted_by, turn}.
_RENEW_DRIVE = """
local token = redis.call('HGET', KEYS[1], 'token')
local holder = redis.call('HGET', KEYS[1], 'owner')
if not token then
  local last = redis.call('HGET', KEYS[2], 'token')
  if last and last ~= ARGV[2] then return {0, '', '', 0} end
  -- Lapsed while nobody took a newer token (nobody else drove), or Redis lost both keys
  -- (a restart): take it back.
  if not last then
    redis.call('HSET', KEYS[2], 'token', ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[2])
elseif token ~= ARGV[2] or holder ~= ARGV[1] then
  -- The owner is compared too: after Redis lost its data, a new token may repeat ours.
  return {0, holder or '', '', 0}
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local preempt = redis.call('HGET', KEYS[1], 'preempt') or ''
local floor = tonumber(ARGV[5])
if floor < 0 or preempt ~= '' then return {1, ARGV[1], preempt, 0} end
local turn = redis.call('HINCRBY', KEYS[2], 'turn', 1)
if turn <= floor then
  turn = floor + 1
  redis.call('HSET', KEYS[2], 'turn', turn)
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, ARGV[1], '', turn}
"""

_RELEASE_DRIVE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisRegistry(SessionRegistry):
    """Registry shared by replicas (Kubernetes): one Redis, every replica reads and writes.

    Layout: see the comment above this class. ``ag:request:{request_id}`` binds an
    idempotency key to a session id (``SET NX``, so two replicas cannot both create).

    Leases (architecture.md §4.1): ``ag:replica:{owner}`` lives while replica ``owner``
    renews it, and ``ag:replicas`` scores each replica by when its lease runs out (ms, Redis
    clock), so lapsed replicas are found without scanning sessions. ``ag:claim:{id}`` is a
    session's claim (``SET NX PX``). ``ag:drive:{id}`` is its drive lease (hash: ``owner``,
    ``token``, ``preempt``; ``PX``) and ``ag:seq:{id}`` its counters (hash: ``token``, the
    last fencing token; ``turn``, the last turn number). Every lease change is one Lua
    script, released by compare-and-delete. The scripts read keys they are not given
    (a holder's replica key), so this layout is for one Redis, not Redis Cluster.

    Args:
        url: ``redis://host:port/db``.
        request_id_ttl_s: how long an idempotency key stays bound (s).
        retention_s: how long the record of an ended session stays after it ended (s).
    """

    unavailable_errors = REDIS_UNAVAILABLE_ERRORS

    def __init__(
        self, url: str, request_id_ttl_s: int = 86400, retention_s: float = 3600.0
    ) -> None:
        super().__init__(retention_s)
        self._redis: Any = redis_client(url)
        self._ttl = request_id_ttl_s
        self._put = self._redis.register_script(_PUT)
        self._delete = self._redis.register_script(_DELETE)
        self._record_usage = self._redis.register_script(_RECORD_USAGE)
        self._prune = self._redis.register_script(_PRUNE_NOW)
        self._claim_request = self._redis.register_script(_CLAIM_REQUEST)
        self._renew_replica = self._redis.register_script(_RENEW_REPLICA)
        self._lapsed_replicas = self._redis.register_script(_LAPSED_REPLICAS)
        self._forget_replica = self._redis.register_script(_FORGET_REPLICA)
        self._compare_and_delete = self._redis.register_script(_COMPARE_AND_DELETE)
        self._acquire_drive = self._redis.register_script(_ACQUIRE_DRIVE)
        self._renew_drive = self._redis.register_script(_RENEW_DRIVE)
        self._release_drive = self._redis.register_script(_RELEASE_DRIVE)

    @staticmethod
    def _encode(record: SessionRecord) -> str:
        data = dict(record.__dict__)
        del data["usage"]  # in its own hash (ag:usage:{id})
        data["playback"] = base64.b64encode(record.playback).decode()
        # The scripts read the old index key back when the record changes state or owner.
        data["_index"] = record.index_key
        return json.dumps(data)

    @staticmethod
    def _decode(raw: str) -> SessionRecord:
        data = json.loads(raw)
        data["playback"] = base64.b64decode(data["playback"])
        # Fields a newer version added are left out (``_index`` too), so that during a
        # rolling upgrade an older replica still reads what a newer one wrote.
        return SessionRecord(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})

    @staticmethod
    def _decode_with_usage(raw: str, usage: dict[str, str]) -> SessionRecord:
        record = RedisRegistry._decode(raw)
        record.usage = _shares_of(usage)
        return record

    async def _records(self, ids: list[str]) -> list[SessionRecord | None]:
        """The records of ``ids`` with their usage, in order (``None`` where missing)."""
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.mget([f"ag:session:{i}" for i in ids])
            for session_id in ids:
                pipe.hgetall(f"ag:usage:{session_id}")
            raws, *usages = await pipe.execute()
        return [
            self._decode_with_usage(str(raw), usage) if raw else None
            for raw, usage in zip(raws, usages, strict=True)
        ]

    async def _write(
        self,
        record: SessionRecord,
        mode: str,
        max_live: int | None,
        max_tenant_live: int | None = None,
    ) -> str:
        stored = await self._put(
            keys=[f"ag:session:{record.session_id}", f"ag:usage:{record.session_id}"],
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
                record.tenant,
                -1 if max_tenant_live is None else max_tenant_live,
                _ms(USAGE_TTL_S),
                *_share_args(record.usage),
            ],
        )
        return {1: "", 0: "cluster", 2: "tenant", 3: "ended"}[int(stored)]

    async def put(self, record: SessionRecord) -> None:
        """Insert or replace a record; a terminal one is forgotten ``retention_s`` later."""
        await self._write(record, "put", None)

    async def finish(self, record: SessionRecord) -> bool:
        """Write an ended session's record unless it had ended already (one script)."""
        return await self._write(record, "finish", None) == ""

    async def record_usage(self, session_id: str, replica: str, share: Tally) -> bool:
        """Raise ``replica``'s share of a live session's usage (one script)."""
        raised = await self._record_usage(
            keys=[f"ag:usage:{session_id}"],
            args=[session_id, _ms(USAGE_TTL_S), *_share_args({replica: share})],
        )
        return bool(int(raised))

    async def insert(
        self,
        record: SessionRecord,
        max_live: int | None = None,
        max_tenant_live: int | None = None,
    ) -> str:
        """Store a new record unless a limit is reached (atomic in Redis; see the base)."""
        return await self._write(record, "insert", max_live, max_tenant_live)

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record (with its usage), or ``None``."""
        return (await self._records([session_id]))[0]

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
            for record in await self._records(ids):
                # A record may expire between the prune and the read: skip it.
                if record is not None and flt.matches(record):
                    out.append(record)
                    if len(out) == limit:
                        break
            cursor = members[-1]
            if len(members) < batch:
                break
        return out

    async def claim_request_id(
        self, request_id: str, session_id: str, *, settled_after_s: float = 0.0
    ) -> str | None:
        """Bind ``request_id`` to ``session_id`` unless bound (see the base class).

        One script, atomic across replicas, which also checks the data mark.
        """
        outcome, value = await self._claim_request(
            keys=[f"ag:request:{request_id}"],
            args=[session_id, self._ttl, _ms(settled_after_s) if settled_after_s else 0],
        )
        if int(outcome) == 0:
            raise RegistryRebuilding(lost=value == "lost")
        return str(value) if int(outcome) == 2 and value else None

    async def release_request_id(self, request_id: str) -> None:
        """Unbind ``request_id``."""
        await self._redis.delete(f"ag:request:{request_id}")

    async def owned_by(self, owner: str) -> list[SessionRecord]:
        """Records owned by ``owner`` that are not terminal (from the owner's index)."""
        ids = sorted(await self._redis.smembers(f"ag:idx:owner:{owner}"))
        records = await self._records(ids)
        return [r for r in records if r is not None and r.owner == owner and not r.terminal]

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

    # ---- leases -----------------------------------------------------------------------

    async def renew_replica(self, owner: str, ttl_s: float) -> bool:
        """Hold replica ``owner``'s lease for ``ttl_s`` more seconds; whether it was alive."""
        alive = await self._renew_replica(
            keys=[f"ag:replica:{owner}", "ag:replicas"], args=[owner, _ms(ttl_s)]
        )
        return bool(int(alive))

    async def drop_replica(self, owner: str) -> None:
        """End replica ``owner``'s lease now."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"ag:replica:{owner}")
            pipe.zrem("ag:replicas", owner)
            await pipe.execute()

    async def lapsed_replicas(self, grace_s: float) -> list[str]:
        """Replicas whose lease lapsed at least ``grace_s`` seconds ago."""
        owners = await self._lapsed_replicas(
            keys=["ag:replicas"], args=[_ms(grace_s), "ag:replica:"]
        )
        return [str(o) for o in owners]

    async def forget_replica(self, owner: str) -> None:
        """Stop listing lapsed replica ``owner`` (unless it renewed meanwhile)."""
        await self._forget_replica(keys=[f"ag:replica:{owner}", "ag:replicas"], args=[owner])

    async def claim(self, session_id: str, owner: str, ttl_s: float) -> bool:
        """Take the session's claim unless another replica holds it (``SET NX PX``)."""
        key = f"ag:claim:{session_id}"
        if await self._redis.set(key, owner, nx=True, px=_ms(ttl_s)):
            return True
        return bool(await self._redis.get(key) == owner)

    async def unclaim(self, session_id: str, owner: str) -> None:
        """Give the claim back if ``owner`` holds it (compare-and-delete)."""
        await self._compare_and_delete(keys=[f"ag:claim:{session_id}"], args=[owner])

    async def acquire_drive(
        self, session_id: str, owner: str, ttl_s: float, *, preempt: bool = False
    ) -> LeaseState:
        """Take the session's drive lease with a new fencing token (see the base class)."""
        held, holder, token = await self._acquire_drive(
            keys=[f"ag:drive:{session_id}", f"ag:seq:{session_id}"],
            args=[owner, _ms(ttl_s), "1" if preempt else "0", _ms(SEQ_TTL_S), "ag:replica:"],
        )
        return LeaseState(held=bool(int(held)), holder=str(holder), token=int(token))

    async def _renew(
        self, session_id: str, owner: str, token: int, ttl_s: float, floor: int
    ) -> LeaseState:
        held, holder, preempted_by, turn = await self._renew_drive(
            keys=[f"ag:drive:{session_id}", f"ag:seq:{session_id}"],
            args=[owner, str(token), _ms(ttl_s), _ms(SEQ_TTL_S), floor],
        )
        is_held = bool(int(held))
        return LeaseState(
            held=is_held,
            holder=str(holder),
            token=token if is_held else 0,
            preempted_by=str(preempted_by),
            turn=int(turn),
        )

    async def renew_drive(
        self, session_id: str, owner: str, token: int, ttl_s: float
    ) -> LeaseState:
        """Extend the drive lease of ``token`` if it is still ours (see the base class)."""
        return await self._renew(session_id, owner, token, ttl_s, -1)

    async def next_turn(
        self, session_id: str, owner: str, token: int, ttl_s: float, floor: int
    ) -> LeaseState:
        """Renew, then allocate the session's next turn number (see the base class)."""
        return await self._renew(session_id, owner, token, ttl_s, floor)

    async def release_drive(self, session_id: str, token: int) -> None:
        """Drop the drive lease if ``token`` still holds it (compare-and-delete)."""
        await self._release_drive(keys=[f"ag:drive:{session_id}"], args=[str(token)])

    async def drive_holder(self, session_id: str) -> str:
        """The replica holding the session's drive lease ("" when none does)."""
        holder = await self._redis.hget(f"ag:drive:{session_id}", "owner")
        return str(holder) if holder else ""

    # ---- data loss --------------------------------------------------------------------

    async def mark_data(self, *, rebuilding: bool) -> None:
        """``SET ag:data NX``: Redis time in ms when rebuilding, else 0."""
        value = 0
        if rebuilding:
            seconds, micros = await self._redis.time()
            value = int(seconds) * 1000 + int(micros) // 1000
        await self._redis.set("ag:data", str(value), nx=True)

    async def data_age(self) -> float | None:
        """From ``ag:data`` and Redis's clock (see the base class)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get("ag:data")
            pipe.time()
            marked, (seconds, micros) = await pipe.execute()
        if marked is None:
            return None
        if int(marked) == 0:
            return math.inf
        return (int(seconds) * 1000 + int(micros) // 1000 - int(marked)) / 1000

    # ---- vendor callbacks -------------------------------------------------------------

    async def find_live(self, vendor: str, vendor_session_id: str) -> SessionRecord | None:
        """The live record of ``vendor``'s session ``vendor_session_id`` (its index), if any."""
        session_id = await self._redis.get(f"ag:idx:vendor:{vendor}:{vendor_session_id}")
        if not session_id:
            return None
        record = await self.get(str(session_id))
        if record is None or record.terminal or record.vendor_session_id != vendor_session_id:
            return None
        return record

    async def mark_seen(self, keys: list[str], ttl_s: float) -> list[bool]:
        """``SET NX PX`` each ``ag:seen:{key}``, pipelined; for each, whether it was set."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(f"ag:seen:{key}", "1", nx=True, px=_ms(ttl_s))
            answers = await pipe.execute()
        return [bool(a) for a in answers]

    async def forget_seen(self, key: str) -> None:
        """Unmark ``key``."""
        await self._redis.delete(f"ag:seen:{key}")

    async def send_to_replica(self, owner: str, kind: str, vendor: str, body: bytes) -> None:
        """``XADD`` a message to replica ``owner``'s stream, ``ag:inbox:{owner}``.

        The stream is capped (about ``INBOX_MAX`` entries) and expires ``INBOX_TTL_S``
        after its last entry, so a dead replica's queue goes away.
        """
        key = f"ag:inbox:{owner}"
        fields = {"kind": kind, "vendor": vendor, "body": base64.b64encode(body).decode()}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, fields, maxlen=INBOX_MAX, approximate=True)
            pipe.pexpire(key, _ms(INBOX_TTL_S))
            await pipe.execute()

    async def read_messages(self, owner: str, after: str, block_s: float) -> list[ReplicaMessage]:
        """``XREAD BLOCK`` replica ``owner``'s stream after entry ``after``."""
        answer = await self._redis.xread(
            {f"ag:inbox:{owner}": after}, count=100, block=_ms(block_s)
        )
        entries: list[ReplicaMessage] = []
        for _, items in answer or []:
            for entry_id, fields in items:
                entries.append(
                    ReplicaMessage(
                        str(entry_id),
                        str(fields.get("kind", "")),
                        str(fields.get("vendor", "")),
                        base64.b64decode(fields.get("body", "")),
                    )
                )
        return entries

    async def ack_messages(self, owner: str, entry_ids: list[str]) -> None:
        """``XDEL`` handled entries."""
        if entry_ids:
            await self._redis.xdel(f"ag:inbox:{owner}", *entry_ids)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _share_args(shares: dict[str, Tally]) -> list[str]:
    """Usage shares as ``ag:usage:{id}`` field, value pairs (``repr``: exact floats)."""
    args: list[str] = []
    for replica, share in shares.items():
        args += [f"audio_s:{replica}", repr(float(share.audio_s))]
        args += [f"text_characters:{replica}", str(int(share.text_characters))]
    return args


def _shares_of(fields: dict[str, str]) -> dict[str, Tally]:
    """The usage shares stored in an ``ag:usage:{id}`` hash."""
    audio: dict[str, float] = {}
    text: dict[str, int] = {}
    for name, value in fields.items():
        kind, _, replica = name.partition(":")
        if kind == "audio_s":
            audio[replica] = float(value)
        elif kind == "text_characters":
            text[replica] = int(value)
    return {r: Tally(audio.get(r, 0.0), text.get(r, 0)) for r in audio.keys() | text.keys()}
