"""The turn ledger of one Drive stream: turn states, pending turns, deadlines.

A turn is *pending* from its first send to the vendor until the vendor reports its end
(speech ended, failed) or an interrupt makes clear no end will come. The ledger owns that
set and the bounded waits on it: ``sequential_turns`` vendors hold a turn's first send until
earlier turns ended, and a half-closed stream waits for every sent turn before it ends with
OK (docs/architecture.md §3). It also owns the interrupt generation: an interrupt starts a
new one, and work queued in an older one is skipped.

Each turn has a span (``drive turn``, a child of the Drive RPC's server span) from its first
input until the vendor reports its end, it fails, an interrupt makes clear no end will come,
or the stream ends; its events mark the first send to the vendor (``first_vendor_byte``),
``speech_started``, ``interrupt_sent`` and ``interrupt_acknowledged`` (architecture.md §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from core import tracing
from core.audio import duration_s
from core.contract import Capabilities
from core.errors import GatewayError
from core.pipeline import TurnMode
from gateway import metrics


@dataclass(slots=True)
class TurnState:
    """What the stream knows of one turn.

    Attributes:
        turn_id: the gateway turn ("1", "2", ...).
        mode: audio or text.
        first_input: ``time.monotonic()`` of the turn's first input.
        first_sent: ``time.monotonic()`` of its first send to the vendor (0: not yet).
        audio_bytes_sent: vendor-rate PCM bytes sent.
        text_chars_sent: characters of text sent.
        ended_input: the client ended the turn (end_turn, final text, interrupt).
        failed: the turn failed (one ``turn_failed`` was reported).
        interrupted: an interrupt stopped the turn.
        speaking: the vendor reported speech started.
        deadline: when set, the latest time to wait for the vendor's speech-ended
            (interrupted turns), else derived from what was sent.
        span: the turn's span (non-recording when tracing is off; ended once the turn is
            over, see :meth:`TurnLedger.end_span`).
    """

    turn_id: str
    mode: TurnMode
    first_input: float = field(default_factory=time.monotonic)
    first_sent: float = 0.0
    audio_bytes_sent: int = 0
    text_chars_sent: int = 0
    ended_input: bool = False
    failed: bool = False
    interrupted: bool = False
    speaking: bool = False
    deadline: float = 0.0
    span: trace.Span = trace.INVALID_SPAN

    def event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        """Add event ``name`` to the turn's span, unless the span is over (or not recording)."""
        if self.span.is_recording():
            self.span.add_event(name, attributes)


@dataclass(slots=True)
class DriveOutcome:
    """How the stream ends: ``error`` is the first fatal error, or ``None`` for OK."""

    error: GatewayError | None = None

    def fail(self, error: GatewayError) -> None:
        """Record ``error`` unless an earlier one is already the outcome."""
        if self.error is None:
            self.error = error


class TurnLedger:
    """Turns of one Drive stream.

    Args:
        vendor: vendor id (metrics label).
        capabilities: the vendor's capabilities (speech-end timeout, ack timeout).
        vendor_rate_hertz: the stream's vendor sample rate (Hz), to turn bytes into time.
        next_turn_id: the session-wide turn-id allocator ("1", "2", ..., unique within the
            session across replicas); it raises the error that ends the stream when this
            replica no longer drives the session.
    """

    def __init__(
        self,
        vendor: str,
        capabilities: Capabilities,
        vendor_rate_hertz: int,
        next_turn_id: Callable[[], Awaitable[str]],
    ) -> None:
        self.vendor = vendor
        self.caps = capabilities
        self.vendor_rate = vendor_rate_hertz
        self._next_turn_id = next_turn_id
        self.turns: dict[str, TurnState] = {}
        self.open_turn: TurnState | None = None
        self.last_turn: TurnState | None = None
        self.pending: set[str] = set()
        self.interrupting: set[str] = set()
        """Turns whose interrupt commands are under way (the sender's)."""
        self.generation = 0
        self._changed = asyncio.Event()

    # ---- turns --------------------------------------------------------------------------

    async def ensure_turn(self, mode: TurnMode) -> TurnState:
        """The open turn if it has ``mode``, else a new open turn of ``mode``.

        Raises:
            GatewayError: from the allocator (this replica no longer drives the session).
        """
        turn = self.open_turn
        if turn is not None and turn.mode == mode:
            return turn
        turn = TurnState(await self._next_turn_id(), mode)
        # Started in the reader task, whose current span is the Drive RPC's: its child.
        turn.span = tracing.tracer.start_span(
            "drive turn",
            attributes={
                tracing.VENDOR: self.vendor,
                tracing.TURN_ID: turn.turn_id,
                "avatar_gateway.turn.mode": mode,
            },
        )
        self.turns[turn.turn_id] = turn
        self.open_turn = turn
        self.last_turn = turn
        return turn

    def close_open_turn(self) -> TurnState | None:
        """End the client's input of the open turn; return it (``None`` when none is open)."""
        turn = self.open_turn
        if turn is None:
            return None
        self.open_turn = None
        turn.ended_input = True
        return turn

    def get(self, turn_id: str) -> TurnState | None:
        """The turn ``turn_id`` of this stream, or ``None`` (e.g. an earlier stream's)."""
        return self.turns.get(turn_id)

    def mark_sent(self, turn: TurnState) -> None:
        """The turn's first send to the vendor happens now: it becomes pending."""
        if not turn.first_sent:
            turn.first_sent = time.monotonic()
            self.pending.add(turn.turn_id)
            metrics.TURNS.labels(self.vendor, turn.mode).inc()
            turn.event("first_vendor_byte")

    def resolve(self, turn_id: str) -> None:
        """The vendor reported the end of ``turn_id`` (or it failed): its span ends.

        Unless an interrupt of the turn is under way: the vendor may report the end before
        the interrupt command returned, and the interrupt's events belong on the span; the
        interrupt ends it (:meth:`end_span`).
        """
        self.pending.discard(turn_id)
        self._changed.set()
        turn = self.turns.get(turn_id)
        if turn is not None and turn_id not in self.interrupting:
            outcome = "failed" if turn.failed else "interrupted" if turn.interrupted else "spoken"
            self.end_span(turn, outcome)

    def mark_failed(self, turn: TurnState, reason: str = "") -> bool:
        """Mark ``turn`` failed (for ``reason``); ``False`` when it already was.

        One failure, one report.
        """
        if turn.failed:
            return False
        turn.failed = True
        if turn.span.is_recording():
            turn.span.set_status(trace.StatusCode.ERROR, reason or "turn failed")
        self.resolve(turn.turn_id)
        return True

    def end_span(self, turn: TurnState, outcome: str) -> None:
        """End ``turn``'s span with ``outcome`` and what was sent (once; later calls: nothing).

        Outcomes: ``spoken``, ``interrupted``, ``failed``, ``unfinished`` (the stream ended
        before the vendor reported the turn's end).
        """
        span = turn.span
        if not span.is_recording():
            return
        span.set_attributes(
            {
                "avatar_gateway.turn.outcome": outcome,
                "avatar_gateway.turn.audio_bytes": turn.audio_bytes_sent,
                "avatar_gateway.turn.text_characters": turn.text_chars_sent,
            }
        )
        span.end()

    def end_spans(self) -> None:
        """The stream ends: end the spans of the turns still open (``unfinished``)."""
        for turn in self.turns.values():
            self.end_span(turn, "interrupted" if turn.interrupted else "unfinished")

    # ---- interrupts ---------------------------------------------------------------------

    def interrupt(self) -> TurnState | None:
        """Start a new generation; return the turn an ack names (open, else last), if any.

        Releases a sender waiting for earlier turns.
        """
        ack_turn = self.open_turn or self.last_turn
        self.generation += 1
        self.open_turn = None
        self._changed.set()
        if ack_turn is not None:
            ack_turn.ended_input = True
        return ack_turn

    def playing(self) -> list[str]:
        """Pending turns in order: those the vendor may be playing or holding."""
        return sorted(self.pending, key=int)

    def interrupted(self, turn_ids: list[str], now: float) -> None:
        """An interrupt stopped ``turn_ids`` at ``now``.

        A turn that was speaking keeps a brief deadline for the vendor's
        speech_ended(interrupted), so a client that half-closes right after the ack still gets
        the played duration; one that never spoke is no longer pending (no end will come).
        """
        for turn_id in turn_ids:
            if turn_id not in self.pending:
                continue
            turn = self.turns[turn_id]
            turn.interrupted = True
            if turn.speaking:
                turn.deadline = now + self.caps.interrupt_ack_timeout_s
            else:
                self.pending.discard(turn_id)
        self._changed.set()

    # ---- bounded waits ------------------------------------------------------------------

    def deadline(self, turn: TurnState) -> float:
        """Latest ``time.monotonic()`` to wait for ``turn``'s end (s)."""
        if turn.deadline:
            return turn.deadline
        speech = duration_s(turn.audio_bytes_sent, self.vendor_rate)
        speech += turn.text_chars_sent * self.caps.speech_seconds_per_char
        return turn.first_sent + speech + self.caps.speech_end_timeout_s

    async def wait_for(self, which: Callable[[], list[str]]) -> list[str]:
        """Wait until ``which()`` is empty or the latest of its turns' deadlines passed.

        Returns the turns still pending at the deadline (``[]`` when all ended). Wakes on
        every change of the pending set (speech ended, turn failed, interrupt).
        """
        while turns := which():
            deadline = max(self.deadline(self.turns[t]) for t in turns)
            now = time.monotonic()
            if now >= deadline:
                return turns
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - now)
        return []

    async def wait_for_earlier_turns(self, turn: TurnState, generation: int) -> None:
        """``sequential_turns``: hold ``turn``'s first send until earlier turns have ended.

        If the vendor never reports their end, the turn goes on after their deadline; an
        interrupt (a new generation) releases the wait at once.
        """
        number = int(turn.turn_id)
        await self.wait_for(
            lambda: (
                [t for t in self.pending if int(t) < number]
                if generation == self.generation
                else []
            )
        )
