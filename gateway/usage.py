"""Usage metering: what each session used, counted once whichever replicas drove it.

A session's usage (docs/architecture.md §4.4) is its vendor session time, which the vendor
bills from the session's creation to its close, and the audio seconds and text characters
its Drive streams handed to the vendor.

The time is derived from the record's ``create_time`` and ``close_time``. Audio and text are
counted by the replica that sends them, as *shares*: each replica keeps its own running
total for the session (:class:`UsageMeter`) and stores it under its replica id
(:class:`Tally` in ``SessionRecord.usage``). A share only grows, so the registry merges a
write by keeping each share's larger value: writing a share twice, late, or from a stale
copy of the record never counts anything twice nor loses what another replica stored, and
the session's usage is the sum of its shares.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from google.protobuf import duration_pb2

log = structlog.get_logger("gateway.usage")

FLUSH_WAIT_S = 5.0
"""How long closing a meter waits for its last write to the registry (s)."""


@dataclass(frozen=True, slots=True)
class Tally:
    """One replica's share of one session's usage: running totals, never decreasing.

    Attributes:
        audio_s: audio handed to the vendor (s of vendor-rate PCM).
        text_characters: text handed to the vendor (Unicode code points).
    """

    audio_s: float = 0.0
    text_characters: int = 0

    def plus(self, *, audio_s: float = 0.0, text_characters: int = 0) -> Tally:
        """This tally with more audio (s) and text (code points) counted."""
        return Tally(self.audio_s + audio_s, self.text_characters + text_characters)

    def merged(self, other: Tally) -> Tally:
        """The larger of two versions of one share, field by field (both only grow)."""
        return Tally(
            max(self.audio_s, other.audio_s), max(self.text_characters, other.text_characters)
        )


def merge_shares(a: Mapping[str, Tally], b: Mapping[str, Tally]) -> dict[str, Tally]:
    """Two views of a session's shares (replica id -> :class:`Tally`) merged share by share."""
    out = dict(a)
    for replica, share in b.items():
        mine = out.get(replica)
        out[replica] = share if mine is None else mine.merged(share)
    return out


def total(shares: Mapping[str, Tally]) -> Tally:
    """The session's usage: the sum of every replica's share."""
    return Tally(
        sum(s.audio_s for s in shares.values()),
        sum(s.text_characters for s in shares.values()),
    )


def vendor_session_seconds(
    create_time: float, close_time: float, *, ended: bool, vendor_session: bool, now: float
) -> float:
    """How long the vendor session existed (s): what the vendor bills.

    From ``create_time`` (taken before the vendor's create call) to ``close_time`` (taken
    once the vendor's close call returned), so never shorter than what the vendor counts;
    to ``now`` while the session has not ended.

    Args:
        create_time: the record's creation (Unix s).
        close_time: when it was closed (Unix s; 0 while not closed).
        ended: the session is CLOSED or FAILED.
        vendor_session: the vendor ever made a session (its id is known). An ended session
            whose vendor session never existed (a create cut short before the vendor
            answered, and none found at close) cost nothing: 0.
        now: the time of the read (Unix s).
    """
    if ended:
        return max(0.0, close_time - create_time) if vendor_session and close_time else 0.0
    return max(0.0, now - create_time)


def usage_proto(vendor_s: float, tally: Tally) -> pb.Usage:
    """The API's ``Usage`` message."""
    return pb.Usage(
        vendor_session_duration=_duration(vendor_s),
        audio_duration=_duration(tally.audio_s),
        text_character_count=tally.text_characters,
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


class UsageMeter:
    """This replica's share of one session's usage, and its writes to the registry.

    The Drive sender counts what it hands the vendor (:meth:`add`); at the end of each turn
    (:meth:`store_soon`) the share is written in the background, so a live Drive never
    waits on the registry (architecture.md §4.3) and GetSession on any replica shows every
    finished turn. Writes are of the running total: one that fails is made good by the next.

    Args:
        start: the share this replica already stored for the session (it drove it before).
        store: writes the share to the registry (``SessionRegistry.record_usage``); ``None``
            to count without storing (no session record).
        session_id: for log lines.
    """

    def __init__(
        self,
        start: Tally | None = None,
        store: Callable[[Tally], Awaitable[object]] | None = None,
        session_id: str = "",
    ) -> None:
        start = start or Tally()
        # Running totals as plain numbers: add() runs per audio frame, a Tally per call cost
        # more than the sum (bench/RESULTS.md, issue 15 profile).
        self._audio_s = start.audio_s
        self._text_characters = start.text_characters
        self._store = store
        self._session_id = session_id
        self._written = start
        self._task: asyncio.Task[None] | None = None

    @property
    def tally(self) -> Tally:
        """The share counted so far."""
        return Tally(self._audio_s, self._text_characters)

    def add(self, *, audio_s: float = 0.0, text_characters: int = 0) -> None:
        """Count audio (s) or text (code points) just handed to the vendor."""
        self._audio_s += audio_s
        self._text_characters += text_characters

    def store_soon(self) -> None:
        """Store the share in the background (a turn's input was all handed to the vendor)."""
        if self._store is None or self.tally == self._written:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_loop(), name="usage-flush")

    async def flush(self) -> None:
        """Store the share now (after any write in flight); errors are logged, not raised."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)
        if self._store is not None and self.tally != self._written:
            await self._write()

    async def aclose(self) -> None:
        """Store the share a last time, waiting at most ``FLUSH_WAIT_S``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), FLUSH_WAIT_S)

    async def _flush_loop(self) -> None:
        # Counts that arrive while a write is in flight are written by the next round.
        while self.tally != self._written:
            if not await self._write():
                return  # the registry failed: the next turn's end (or the close) writes it

    async def _write(self) -> bool:
        assert self._store is not None
        tally = self.tally
        try:
            await self._store(tally)
        except Exception as exc:
            log.warning("usage_not_stored", session_id=self._session_id, error=type(exc).__name__)
            return False
        self._written = tally
        return True
