"""The sender of one Drive stream: the only caller of the vendor drive channel.

It takes work in order, skips what an interrupt made stale, holds a turn's first send while
earlier turns still play (``sequential_turns``), paces audio frames by the vendor's rule on
a monotonic clock, and sends the vendor's interrupt commands beside a blocked call
(docs/architecture.md §3, §5). Before every vendor write it checks its :class:`Fence`, so a
replica that lost the session's drive lease to another replica stops before its next write
(architecture.md §4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from opentelemetry import trace

from core import tracing
from core.audio import Pacer, duration_s
from core.contract import Capabilities, DriveChannel, VendorEvent
from core.errors import EventReason, GatewayError, VendorError
from core.pipeline import AudioFrame, EndAudio, EndOfInput, WorkItem
from core.queues import SingleConsumerQueue
from gateway import metrics
from gateway.admission import Strain
from gateway.drive import translator
from gateway.drive.ledger import DriveOutcome, TurnLedger, TurnState
from gateway.usage import UsageMeter


class Fence(Protocol):
    """Whether this replica may still write to the session's vendor channel (a drive lease).

    ``fresh()`` is a cheap local check run before every write; only when it is ``False`` is
    ``confirm()`` awaited (it may ask the registry), which raises the error that ends the
    stream when the session is driven elsewhere now. ``lost`` is that error once known.
    """

    lost: GatewayError | None

    def fresh(self) -> bool:
        """Whether the lease is known valid now, without asking the registry."""

    async def confirm(self) -> None:
        """Ask the registry; raises :class:`GatewayError` when the lease is gone."""


class DriveSender:
    """Sends one stream's work to the vendor channel.

    Args:
        vendor: vendor id (metrics label).
        capabilities: the vendor's capabilities (pacing, turn order, interrupt ack).
        channel: the session's drive channel.
        vendor_rate_hertz: the stream's vendor sample rate (Hz).
        ledger: the stream's turns.
        work: the queue from the input.
        outcome: the stream's outcome (a lost vendor session is fatal).
        emit: queues a response to the client.
        log: the stream's bound logger.
        fence: checked before every vendor write (the session's drive lease).
        usage: counts what reaches the vendor (audio s, text code points) for the session's
            usage, and stores it at each turn's end (architecture.md §4.4).
        strain: the gateway's own strain since a ``time.monotonic()`` moment
            (:meth:`gateway.admission.AdmissionControl.strain_since`; ``None``: unknown).
    """

    def __init__(
        self,
        *,
        vendor: str,
        capabilities: Capabilities,
        channel: DriveChannel,
        vendor_rate_hertz: int,
        ledger: TurnLedger,
        work: SingleConsumerQueue[WorkItem],
        outcome: DriveOutcome,
        emit: Callable[[pb.DriveResponse], None],
        log: structlog.typing.FilteringBoundLogger,
        fence: Fence,
        usage: UsageMeter,
        strain: Callable[[float], Strain | None] | None = None,
    ) -> None:
        self.vendor = vendor
        self.strain = strain
        self.caps = capabilities
        self.channel = channel
        self.vendor_rate = vendor_rate_hertz
        self.ledger = ledger
        self.work = work
        self.outcome = outcome
        self.emit = emit
        self.log = log
        self.fence = fence
        self.usage = usage
        self.pacer = Pacer(capabilities.pacing)
        self._frame_s = capabilities.pacing.frame_ms / 1000
        self._lateness = metrics.PACING_LATENESS.labels(vendor)
        self._backlog = metrics.DRIVE_BACKLOG.labels(vendor)
        self.interrupt_task: asyncio.Task[None] | None = None
        self._interrupt_waiters: dict[str, asyncio.Future[VendorEvent]] = {}
        self._pacing_turn = ""
        self.idle = False
        """Waiting for work with none queued and nothing in flight (see :meth:`send_now`)."""

    async def run(self) -> None:
        """Send work until end of input or a lost vendor session.

        Then wait (bounded) for the vendor to finish every sent turn.

        Raises:
            GatewayError: from the fence, before a write: another replica drives the
                session now (ABORTED ``DRIVE_TAKEN_OVER`` or ``DRIVE_PREEMPTED``).
        """
        channel = self.channel
        ledger = self.ledger
        fence = self.fence
        while True:
            self.idle = True
            try:
                item = await self.work.get()
            finally:
                self.idle = False
            interrupting = self.interrupt_task
            if interrupting is not None and not interrupting.done():
                await asyncio.wait([interrupting])
            if isinstance(item, EndOfInput):
                break
            gen = item.generation
            if gen != ledger.generation:
                continue  # queued before an interrupt
            turn = ledger.get(item.turn_id)
            if turn is None or turn.failed:
                continue
            if (
                not turn.first_sent
                and not isinstance(item, EndAudio)
                and self.caps.sequential_turns
            ):
                await ledger.wait_for_earlier_turns(turn, gen)
                if gen != ledger.generation:
                    continue
            try:
                if isinstance(item, AudioFrame):
                    if item.turn_id != self._pacing_turn:
                        self.pacer.reset()
                        self._pacing_turn = item.turn_id
                    self._backlog.observe(self.work.qsize() * self._frame_s)
                    wait = self.pacer.reserve()
                    if wait > 0:
                        slot = time.monotonic() + wait
                        await asyncio.sleep(wait)
                        if gen != ledger.generation:
                            continue
                        self._lateness.observe(max(0.0, time.monotonic() - slot))
                    if not fence.fresh():  # a comparison; the registry only when stale
                        await fence.confirm()
                    ledger.mark_sent(turn)  # before the call: an interrupt must see it live
                    # The turn's span current: vendor calls the send makes are its children.
                    with tracing.within(turn.span):
                        await channel.send_audio(item.turn_id, item.pcm, self.vendor_rate)
                    turn.audio_bytes_sent += len(item.pcm)
                    self.usage.add(audio_s=duration_s(len(item.pcm), self.vendor_rate))
                elif isinstance(item, EndAudio):
                    if turn.first_sent:
                        if not fence.fresh():
                            await fence.confirm()
                        with tracing.within(turn.span):
                            await channel.end_audio(item.turn_id)
                        metrics.AUDIO_SECONDS.labels(self.vendor).inc(
                            duration_s(turn.audio_bytes_sent, self.vendor_rate)
                        )
                        self.usage.store_soon()  # the turn is all with the vendor
                elif item.text or turn.first_sent:
                    if not fence.fresh():
                        await fence.confirm()
                    ledger.mark_sent(turn)
                    with tracing.within(turn.span):
                        await channel.send_text(item.turn_id, item.text, item.final)
                    turn.text_chars_sent += len(item.text)
                    # len(): code points, the unit of the API's text limit (Usage in the proto).
                    self.usage.add(text_characters=len(item.text))
                    if item.final:
                        self.usage.store_soon()
            except VendorError as exc:
                if gen != ledger.generation:
                    continue  # the call was cut short by an interrupt of this turn
                self.turn_failed(turn, exc.reason, exc.message)
                if exc.session_gone:
                    self.outcome.fail(exc)
                    break
        await self._wait_pending()

    def send_now(self, turn: TurnState, generation: int, frames: list[bytes]) -> bool:
        """The fast path: send ``frames`` of ``turn`` from the caller (the reader) at once.

        Only when the result is the same as queueing them: the sender is idle with nothing
        queued and no interrupt under way, ``turn`` is current, already sent to (so no turn
        order to wait for) and the one being paced, the lease is known valid, the pacer
        releases every frame now, and the channel can write without waiting
        (:meth:`core.contract.DriveChannel.send_audio_now`). Then the frames are counted as
        the sender counts them (backlog, bytes, usage) and ``True`` is returned; otherwise
        nothing happened and the caller queues them. No await: no task switch, no queue hop.
        """
        interrupting = self.interrupt_task
        if (
            not self.idle
            or not self.work.empty()
            or (interrupting is not None and not interrupting.done())
            or generation != self.ledger.generation
            or not turn.first_sent
            or turn.failed
            or turn.turn_id != self._pacing_turn
            or not self.fence.fresh()
            or self.pacer.available() < len(frames)
            or not self.channel.send_audio_now(turn.turn_id, frames, self.vendor_rate)
        ):
            return False
        self.pacer.take(len(frames))
        nbytes = 0
        for frame in frames:
            self._backlog.observe(0.0)  # nothing queued: sent as it came
            nbytes += len(frame)
        turn.audio_bytes_sent += nbytes
        self.usage.add(audio_s=duration_s(nbytes, self.vendor_rate))
        return True

    def turn_failed(self, turn: TurnState, reason: str, message: str) -> None:
        """Report ``turn`` failed, once (a failed send and the vendor's report are one)."""
        if not self.ledger.mark_failed(turn, reason):
            return
        self.log.warning("turn_failed", turn_id=turn.turn_id, reason=reason, message=message)
        self.emit(translator.turn_failed(turn.turn_id, reason, message))

    async def _wait_pending(self) -> None:
        """After the last input: wait (bounded) until the vendor finished every sent turn."""
        late = await self.ledger.wait_for(
            lambda: sorted(self.ledger.pending) if self.outcome.error is None else []
        )
        for turn_id in late:
            turn = self.ledger.turns[turn_id]
            if turn.interrupted:
                continue  # acknowledged already; the vendor sent no end for it
            self.emit(self._speech_end_timeout(turn))

    def _speech_end_timeout(self, turn: TurnState) -> pb.DriveResponse:
        """The ``SPEECH_END_TIMEOUT`` warning for ``turn``, blaming whoever was late.

        When the gateway itself was under strain during the turn (event-loop lag or a Drive
        backlog at half its overload bound or more, gateway/admission.py), its own backlog
        delayed the audio and the vendor's report: the warning says so (``cause``
        ``gateway``) instead of blaming the vendor (``cause`` ``vendor``).
        """
        strain = self.strain(turn.first_input) if self.strain is not None else None
        if strain is None:
            return translator.warning(
                EventReason.SPEECH_END_TIMEOUT,
                "the vendor did not report the end of speech in time",
                turn.turn_id,
                {"cause": "vendor"},
            )
        return translator.warning(
            EventReason.SPEECH_END_TIMEOUT,
            "the end of speech came too late because this gateway replica was overloaded "
            f"during the turn ({strain.describe()}), not because of the vendor",
            turn.turn_id,
            {"cause": "gateway", "signal": strain.signal, "value": f"{strain.value_ms:.0f}"},
        )

    # ---- interrupts ---------------------------------------------------------------------

    def start_interrupt(self, ack_turn: str | None) -> None:
        """Run the vendor's interrupt commands now, beside any blocked channel call.

        A sender blocked in a channel call (Tencent holds a new turn until the previous
        AudioOver) must not hold up a barge-in (docs/architecture.md §5). Work taken after
        this waits for the commands before it is sent. ``ack_turn`` ``None``: nothing to
        interrupt, the ack is immediate so a client's barge-in logic never waits.
        """
        if ack_turn is None:
            self.emit(translator.interrupted())
            return
        self.interrupt_task = asyncio.create_task(
            self._send_interrupt(ack_turn, time.monotonic()), name="drive-interrupt"
        )

    def on_interrupt_ack(self, event: VendorEvent) -> None:
        """The vendor acknowledged an interrupt of ``event.turn_id``."""
        waiter = self._interrupt_waiters.get(event.turn_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(event)
            turn = self.ledger.get(event.turn_id)
            if turn is not None:
                turn.event("interrupt_acknowledged", {"avatar_gateway.acknowledged_by": "vendor"})

    def cancel_waiters(self) -> None:
        """Stop waiting for acks (the stream ends)."""
        for waiter in self._interrupt_waiters.values():
            waiter.cancel()

    async def _send_interrupt(self, ack_turn: str, requested: float) -> None:
        """Stop every turn the vendor may hold: those playing or queued there, and the newest.

        Newest first, so that a send woken by the interrupt finds its turn already stopped.
        The ack waits (bounded) for the vendor's acknowledgement of any of them.
        """
        self.pacer.reset()
        playing = self.ledger.playing()
        targets = sorted(set(playing) | {ack_turn}, key=int, reverse=True)
        loop = asyncio.get_running_loop()
        waiters = {t: loop.create_future() for t in targets}
        self._interrupt_waiters.update(waiters)
        self.ledger.interrupting.update(targets)
        acknowledged = False
        try:
            if playing:  # a turn is pending from its first send on, so nothing else is live
                if not self.fence.fresh():
                    await self.fence.confirm()
                for turn_id in targets:
                    turn = self.ledger.get(turn_id)
                    span = turn.span if turn is not None else trace.INVALID_SPAN
                    with tracing.within(span):
                        await self.channel.interrupt(turn_id)
                    if turn is not None:
                        turn.event("interrupt_sent")
                if self.caps.interrupt_ack:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            asyncio.wait(waiters.values(), return_when=asyncio.FIRST_COMPLETED),
                            self.caps.interrupt_ack_timeout_s,
                        )
                    acknowledged = any(w.done() and not w.cancelled() for w in waiters.values())
        except VendorError as exc:
            self.emit(
                translator.warning(
                    EventReason.VENDOR_INTERRUPT_FAILED, exc.message, ack_turn, exc.metadata
                )
            )
        except GatewayError as exc:
            # The fence: the session is driven elsewhere now; the stream ends with this.
            self.outcome.fail(exc)
            return
        finally:
            for turn_id, waiter in waiters.items():
                self._interrupt_waiters.pop(turn_id, None)
                waiter.cancel()
            self.ledger.interrupting.difference_update(targets)
        now = time.monotonic()
        self.ledger.interrupted(playing, now)
        metrics.INTERRUPT_ACK_LATENCY.labels(
            self.vendor, "vendor" if acknowledged else "gateway"
        ).observe(now - requested)
        self.emit(translator.interrupted(ack_turn, acknowledged, now - requested))
        acked = self.ledger.get(ack_turn)
        if acked is not None and not acknowledged:
            acked.event("interrupt_acknowledged", {"avatar_gateway.acknowledged_by": "gateway"})
        # Turns the interrupt stopped for good (never sent, or not speaking): over now. One
        # that was speaking ends with the vendor's speech_ended(interrupted).
        for turn_id in targets:
            turn = self.ledger.get(turn_id)
            if turn is not None and turn_id not in self.ledger.pending:
                self.ledger.end_span(turn, "interrupted")
