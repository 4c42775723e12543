"""One Drive stream: its parts, their three tasks, and how the stream ends.

The parts (docs/architecture.md §3), each with its collaborators given at construction:

* :class:`~gateway.drive.input.DriveInput` reads and validates requests, converts audio and
  splits text into typed work items (``core.pipeline``) on a bounded queue;
* :class:`~gateway.drive.sender.DriveSender` paces and sends them to the drive channel and
  runs interrupts;
* :class:`~gateway.drive.ledger.TurnLedger` holds turn states, pending turns and deadlines;
* :mod:`gateway.drive.translator` turns vendor events into ``DriveResponse`` messages.

Three tasks per stream, owned together (reader, sender, event pump): any error in one ends
the call with a status; a task that died silently would leave the call hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import grpc
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from core.audio import AudioConverter, FrameChunker, frame_bytes_for, validate_audio_format
from core.contract import Capabilities, DriveChannel, EventKind, VendorEvent
from core.errors import EventReason, GatewayError, Reason, VendorError, internal_error
from core.pipeline import WorkItem
from core.queues import SingleConsumerQueue
from gateway import metrics
from gateway.admission import Strain
from gateway.drive import translator
from gateway.drive.input import DriveInput
from gateway.drive.ledger import DriveOutcome, TurnLedger
from gateway.drive.sender import DriveSender, Fence
from gateway.registry import SessionRecord
from gateway.usage import UsageMeter

log = structlog.get_logger("gateway.drive")

QUEUE_AHEAD_S = 2.0
"""Audio the work queue holds beyond what the pacer releases (s)."""


class DriveStream:
    """Runs one Drive RPC after its config was accepted and the session's channel is open.

    Args:
        record: the session record at attach time.
        capabilities: the vendor's capabilities (pacing, limits).
        config: the stream's config request.
        channel: the session's drive channel.
        next_turn_id: the session-wide turn-id allocator ("1", "2", ..., unique across
            replicas); raises when this replica no longer drives the session.
        fence: checked before every vendor write: the session's drive lease.
        on_activity: called for every request (the session is not idle).
        call_done: whether the client's call has ended: such a stream only waits for its
            cleanup, and a reconnecting client may take its place at once.
        preferred_rate_hertz: the vendor rate the session asked for (Hz; 0: none).
        usage: this replica's share of the session's usage (``None``: counted, not stored).
        strain: the gateway's own strain since a moment, for the warnings of late turns
            (:meth:`gateway.admission.AdmissionControl.strain_since`).
    """

    def __init__(
        self,
        record: SessionRecord,
        capabilities: Capabilities,
        config: pb.DriveConfig,
        *,
        channel: DriveChannel,
        next_turn_id: Callable[[], Awaitable[str]],
        fence: Fence,
        on_activity: Callable[[], None],
        call_done: Callable[[], bool],
        preferred_rate_hertz: int = 0,
        usage: UsageMeter | None = None,
        strain: Callable[[float], Strain | None] | None = None,
    ) -> None:
        self.record = record
        self.caps = capabilities
        self.config = config
        self.channel = channel
        self.fence = fence
        self.call_done = call_done
        self.out: SingleConsumerQueue[pb.DriveResponse | None] = SingleConsumerQueue(1024)
        self.outcome = DriveOutcome()
        self.closed = asyncio.Event()
        self.ending = False
        """Its tasks are being stopped: the stream is over but for cleanup (then ``closed``)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._terminated = False
        self.log = log.bind(session_id=record.session_id, vendor=record.vendor)
        fmt = config.audio_format
        has_audio = self.has_audio = config.HasField("audio_format")
        input_rate = fmt.sample_rate_hertz if has_audio else capabilities.sample_rates_hertz[0]
        self.vendor_rate = capabilities.vendor_rate_for(input_rate, preferred_rate_hertz)
        self.ledger = TurnLedger(record.vendor, capabilities, self.vendor_rate, next_turn_id)
        queue_frames = max(8, int(QUEUE_AHEAD_S * 1000 / capabilities.pacing.frame_ms))
        work: SingleConsumerQueue[WorkItem] = SingleConsumerQueue(queue_frames)
        self.work = work
        self.sender = DriveSender(
            vendor=record.vendor,
            capabilities=capabilities,
            channel=channel,
            vendor_rate_hertz=self.vendor_rate,
            ledger=self.ledger,
            work=work,
            outcome=self.outcome,
            emit=self._emit,
            log=self.log,
            fence=fence,
            usage=usage or UsageMeter(),
            strain=strain,
        )
        self.input = DriveInput(
            session=record.name,
            vendor=record.vendor,
            capabilities=capabilities,
            config=config,
            converter=AudioConverter(
                input_rate, fmt.audio_channel_count if has_audio else 1, self.vendor_rate
            ),
            chunker=FrameChunker(frame_bytes_for(capabilities.pacing, self.vendor_rate)),
            ledger=self.ledger,
            work=work,
            outcome=self.outcome,
            on_activity=on_activity,
            on_interrupt=self.sender.start_interrupt,
            send_now=self.sender.send_now,
        )

    @property
    def error(self) -> GatewayError | None:
        """The fatal error to end the call with, or ``None`` for OK (valid once run ended)."""
        return self.outcome.error

    def backlog_s(self) -> float:
        """Input queued for the sender now, in seconds of audio (a text item counts as a frame)."""
        return self.work.qsize() * self.caps.pacing.frame_ms / 1000

    @staticmethod
    def validate_config(config: pb.DriveConfig) -> None:
        """Check the config request; raises INVALID_ARGUMENT / UNSUPPORTED_AUDIO_FORMAT."""
        if config.HasField("audio_format"):
            validate_audio_format(config.audio_format)

    def started_response(self) -> pb.DriveResponse:
        """The ``started`` answer to the config."""
        return translator.started(
            self.record.name, self.record.vendor, self.config.audio_format, self.vendor_rate
        )

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(
        self, requests: AsyncIterator[pb.DriveRequest]
    ) -> AsyncIterator[pb.DriveResponse]:
        """Drive the session; yields responses until the stream ends.

        On return :attr:`error` holds the fatal error to end the call with, or ``None``.
        """
        for stale in self.channel.drain_events():
            self.log.debug(
                "stale_vendor_event_dropped", kind=stale.kind.value, turn_id=stale.turn_id
            )
        self._tasks = [
            asyncio.create_task(self._guard(self.input.run(requests)), name="drive-reader"),
            asyncio.create_task(self._guard(self._send()), name="drive-sender"),
            asyncio.create_task(self._guard(self._pump()), name="drive-pump"),
        ]
        try:
            while True:
                response = await self.out.get()
                if response is None:
                    break
                yield response
        finally:
            await self._shutdown_tasks()

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except GatewayError as exc:
            self.outcome.fail(exc)
            self._finish()
        except Exception as exc:
            self.log.exception("drive_task_failed")
            self.outcome.fail(internal_error(exc))
            self._finish()

    async def _send(self) -> None:
        await self.sender.run()
        self._finish()

    async def _shutdown_tasks(self) -> None:
        self.ending = True
        tasks = list(self._tasks)
        if self.sender.interrupt_task is not None:
            tasks.append(self.sender.interrupt_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.sender.cancel_waiters()
        # A client that vanished mid-turn: still tell the vendor the utterance is over, so
        # the avatar does not hang waiting for audio (zegocloud.md §8: a late Stop stutters).
        turn = self.ledger.open_turn
        if turn is not None and turn.first_sent and not self._terminated:
            with contextlib.suppress(Exception):
                if not self.fence.fresh():
                    await self.fence.confirm()  # raises (no write) if driven elsewhere now
                await asyncio.wait_for(self.channel.end_audio(turn.turn_id), 2.0)
        self.ledger.end_spans()
        self.closed.set()

    async def terminate(self, error: GatewayError) -> None:
        """End the stream now with ``error`` (preempted, session closed). Waits until done."""
        self._terminated = True
        self.outcome.fail(error)
        for task in self._tasks:
            task.cancel()
        self._finish()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5.0)

    def go_away(self, time_left_s: float) -> None:
        """Tell the client the server is draining (it keeps the stream until it ends)."""
        self._emit(translator.go_away(time_left_s))

    def _emit(self, response: pb.DriveResponse) -> None:
        response.event_time.GetCurrentTime()
        try:
            self.out.put_nowait(response)
        except asyncio.QueueFull:
            # A client that stopped reading: drop its events rather than grow without bound.
            self.log.warning("drive_response_dropped", kind=response.WhichOneof("response"))

    def _finish(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)

    # ---- vendor events ------------------------------------------------------------------

    async def _pump(self) -> None:
        async for event in self.channel.events():
            self._on_event(event)
            if event.kind is EventKind.SESSION_LOST:
                self.outcome.fail(
                    VendorError(
                        grpc.StatusCode.UNAVAILABLE,
                        Reason.VENDOR_SESSION_LOST,
                        f"the vendor ended session {self.record.name}: {event.message}",
                        vendor=self.record.vendor,
                        metadata={"session": self.record.name},
                    )
                )
                self._finish()
                return

    def _on_event(self, event: VendorEvent) -> None:
        """Update the ledger from a vendor event and send the client its translation."""
        kind = event.kind
        turn = self.ledger.get(event.turn_id)
        if event.turn_id and turn is None:
            # A turn of an earlier stream on this session (a client that cancelled while the
            # avatar still spoke): its late events are not this stream's to report.
            self.log.debug("foreign_turn_event_dropped", kind=kind.value, turn_id=event.turn_id)
            return
        latency = 0.0
        if kind is EventKind.SPEECH_STARTED and turn is not None:
            turn.speaking = True
            latency = event.monotonic_time - turn.first_input
            metrics.SPEECH_START_LATENCY.labels(self.record.vendor).observe(latency)
            turn.event("speech_started", {"avatar_gateway.latency_s": latency})
        elif kind is EventKind.SPEECH_ENDED:
            self.ledger.resolve(event.turn_id)
        elif kind is EventKind.INTERRUPTED:
            self.sender.on_interrupt_ack(event)
        elif kind is EventKind.TURN_FAILED and turn is not None:
            reason = event.reason or EventReason.VENDOR_DRIVE_FAILED
            self.sender.turn_failed(turn, reason, event.message)
            return
        response = translator.translate(event, latency)
        if response is not None:
            self._emit(response)
