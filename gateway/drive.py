"""One Drive stream: client requests in, vendor drive channel out, vendor events back.

Three tasks per stream (conventions §3.2: reader and writer decoupled, owned together):

* **reader** pulls requests from the gRPC stream, validates them, converts audio
  (``gateway.audio``) and puts vendor frames and commands on a bounded work queue. When
  the queue is full the reader stops pulling, so gRPC flow control slows a client that
  sends faster than the vendor takes audio (design.md §3 "Audio path").
* **sender** takes work in order, paces audio frames by the adapter's rule on a monotonic
  clock and calls the drive channel. It is the only task that calls the channel.
* **pump** turns vendor events into ``DriveResponse`` messages and tracks which turns the
  vendor still has to finish.

Interrupt (peer-lessons (c) 6): the reader drops queued work at once (a generation counter
makes the sender skip anything taken before), resets the converter, and queues the vendor
interrupt first in line; the ack is the vendor's, or synthesised after a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from google.protobuf import duration_pb2

from adapters.base import Capabilities, DriveChannel, EventKind, VendorEvent
from adapters.text import SentenceBuffer, split_exact, utf8_len
from gateway import metrics
from gateway.audio import (
    MAX_AUDIO_CHUNK_BYTES,
    AudioConverter,
    FrameChunker,
    Pacer,
    duration_s,
    frame_bytes_for,
    unsupported_audio_format,
    validate_audio_format,
)
from gateway.errors import (
    GatewayError,
    VendorError,
    failed_precondition,
    internal_error,
    invalid_argument,
)
from gateway.queues import SingleConsumerQueue
from gateway.registry import SessionRecord

log = structlog.get_logger("gateway.drive")

MAX_TEXT_CHARS = 16384
"""Largest ``TextInput.text`` accepted (characters); documented in the proto."""
QUEUE_AHEAD_S = 2.0
"""Audio the work queue holds beyond what the pacer releases (s)."""
TEXT_SECONDS_PER_CHAR = 0.08
"""Rough speaking time per character, to bound the wait for a text turn's speech end."""

# Work item kinds (tuples are cheaper than objects on the per-chunk path).
_AUDIO, _END_AUDIO, _TEXT, _EOF = range(4)
WorkItem = tuple[int, str, int, object]


@dataclass
class TurnState:
    """What the stream knows of one turn."""

    turn_id: str
    mode: str  # "audio" | "text"
    first_input: float = field(default_factory=time.monotonic)
    first_sent: float = 0.0
    audio_bytes_sent: int = 0
    text_chars_sent: int = 0
    ended_input: bool = False
    failed: bool = False
    interrupted: bool = False
    speaking: bool = False
    # When set, the latest time to wait for the vendor's speech-ended (interrupted turns).
    deadline: float = 0.0


def _no_turn_ids() -> str:
    raise RuntimeError("DriveStream.run() was not called")


def _no_activity() -> None:
    return None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(max(0, int(seconds * 1e9)))
    return d


class DriveStream:
    """Runs one Drive RPC after its config was accepted.

    Args:
        record: the session record at attach time.
        capabilities: the vendor's capabilities (pacing, limits).
        config: the stream's config request.

    :meth:`run` takes the session's drive channel, the session-wide turn-id allocator and
    the activity callback.
    """

    def __init__(
        self,
        record: SessionRecord,
        capabilities: Capabilities,
        config: pb.DriveConfig,
    ) -> None:
        self.record = record
        self.caps = capabilities
        self.config = config
        self.channel: DriveChannel | None = None
        self.out: SingleConsumerQueue[pb.DriveResponse | None] = SingleConsumerQueue(1024)
        self.error: GatewayError | None = None
        self.closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._generation = 0
        self._open_turn: TurnState | None = None
        self._last_turn: TurnState | None = None
        self._turns: dict[str, TurnState] = {}
        self._pending: set[str] = set()
        self._pending_changed = asyncio.Event()
        self._interrupt_waiters: dict[str, asyncio.Future[VendorEvent]] = {}
        self._interrupt_task: asyncio.Task[None] | None = None
        self._terminated = False
        # Whether the client's call has ended (set by the servicer): such a stream is only
        # waiting for its cleanup, and a reconnecting client may take its place at once.
        self.call_done: Callable[[], bool] = lambda: False
        self._next_turn_id: Callable[[], str] = _no_turn_ids
        self._on_activity: Callable[[], None] = _no_activity
        fmt = config.audio_format
        self.has_audio = config.HasField("audio_format")
        input_rate = fmt.sample_rate_hertz if self.has_audio else capabilities.sample_rates_hertz[0]
        preferred = int(record.vendor_data.get("sample_rate_hertz", 0) or 0)
        self.vendor_rate = capabilities.vendor_rate_for(input_rate, preferred)
        self.converter = AudioConverter(
            input_rate, fmt.audio_channel_count if self.has_audio else 1, self.vendor_rate
        )
        self.chunker = FrameChunker(frame_bytes_for(capabilities.pacing, self.vendor_rate))
        self.pacer = Pacer(capabilities.pacing)
        queue_frames = max(8, int(QUEUE_AHEAD_S * 1000 / capabilities.pacing.frame_ms))
        self.work: SingleConsumerQueue[WorkItem] = SingleConsumerQueue(queue_frames)
        max_bytes = capabilities.max_text_bytes
        self.sentences = SentenceBuffer(capabilities.max_text_chars, max_bytes)
        self._last_text_send = 0.0
        self._pacing_turn = ""
        self.log = log.bind(session_id=record.session_id, vendor=record.vendor)

    @staticmethod
    def validate_config(config: pb.DriveConfig) -> None:
        """Check the config request; raises INVALID_ARGUMENT / UNSUPPORTED_AUDIO_FORMAT."""
        if config.HasField("audio_format"):
            validate_audio_format(config.audio_format)

    def started_response(self) -> pb.DriveResponse:
        """The ``started`` answer to the config."""
        vendor_fmt = media_pb2.AudioFormat(
            audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=self.vendor_rate,
            audio_channel_count=1,
        )
        return pb.DriveResponse(
            started=pb.DriveStarted(
                session=self.record.name,
                input_audio_format=self.config.audio_format,
                vendor_audio_format=vendor_fmt,
                max_audio_chunk_bytes=MAX_AUDIO_CHUNK_BYTES,
                vendor=self.record.vendor,
            )
        )

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(
        self,
        requests: AsyncIterator[pb.DriveRequest],
        channel: DriveChannel,
        next_turn_id: Callable[[], str],
        on_activity: Callable[[], None],
    ) -> AsyncIterator[pb.DriveResponse]:
        """Drive the session; yields responses until the stream ends.

        On return ``self.error`` holds the fatal error to end the call with, or ``None``
        for OK.
        """
        self.channel = channel
        self._next_turn_id = next_turn_id
        self._on_activity = on_activity
        for stale in channel.drain_events():
            self.log.debug(
                "stale_vendor_event_dropped", kind=stale.kind.value, turn_id=stale.turn_id
            )
        self._tasks = [
            asyncio.create_task(self._guard(self._read(requests)), name="drive-reader"),
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
        """Run one of the stream's tasks; any error it raises ends the stream with a status.

        A task that died silently would leave the call hanging until its deadline.
        """
        try:
            await work
        except asyncio.CancelledError:
            raise
        except GatewayError as exc:
            self._fail(exc)
            self._finish()
        except Exception as exc:
            self.log.exception("drive_task_failed")
            self._fail(internal_error(exc))
            self._finish()

    async def _shutdown_tasks(self) -> None:
        if self._interrupt_task is not None:
            self._tasks.append(self._interrupt_task)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiter in self._interrupt_waiters.values():
            waiter.cancel()
        # A client that vanished mid-turn: still tell the vendor the utterance is over, so
        # the avatar does not hang waiting for audio (ZEGO §1.8: a late Stop stutters).
        turn = self._open_turn
        if turn is not None and turn.first_sent and not self._terminated and self.channel:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.channel.end_audio(turn.turn_id), 2.0)
        self.closed.set()

    async def terminate(self, error: GatewayError) -> None:
        """End the stream now with ``error`` (preempted, session closed). Waits until done."""
        self._terminated = True
        if self.error is None:
            self.error = error
        for task in self._tasks:
            task.cancel()
        self._finish()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5.0)

    def go_away(self, time_left_s: float) -> None:
        """Tell the client the server is draining (it keeps the stream until it ends)."""
        self._emit(pb.DriveResponse(go_away=pb.GoAway(time_left=_duration(time_left_s))))

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

    def _fail(self, error: GatewayError) -> None:
        if self.error is None:
            self.error = error

    # ---- reader -------------------------------------------------------------------------

    async def _read(self, requests: AsyncIterator[pb.DriveRequest]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                self._on_activity()
                if kind == "audio":
                    await self._on_audio(request.audio)
                elif kind == "text":
                    await self._on_text(request.text)
                elif kind == "end_turn":
                    await self._end_turn()
                elif kind == "interrupt":
                    await self._on_interrupt()
                elif kind == "config":
                    raise invalid_argument(
                        "CONFIG_ALREADY_SENT",
                        "config may only be the first request of a Drive stream",
                        session=self.record.name,
                    )
                else:
                    raise invalid_argument(
                        "INVALID_ARGUMENT",
                        "empty DriveRequest: set one request kind",
                        field="request",
                    )
        except GatewayError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError:
            return  # the client went away; cleanup happens in run()
        # Half-close (or a fatal input error): finish the open turn so that everything
        # accepted so far reaches the vendor, then let the sender wind down.
        with contextlib.suppress(GatewayError):
            await self._end_turn()
        await self.work.put((_EOF, "", self._generation, None))

    def _ensure_turn(self, mode: str) -> TurnState:
        turn = self._open_turn
        if turn is not None and turn.mode == mode:
            return turn
        turn = TurnState(self._next_turn_id(), mode)
        self._turns[turn.turn_id] = turn
        self._open_turn = turn
        self._last_turn = turn
        return turn

    async def _on_audio(self, data: bytes) -> None:
        if len(data) > MAX_AUDIO_CHUNK_BYTES:
            raise invalid_argument(
                "CHUNK_TOO_LARGE",
                f"audio chunk of {len(data)} bytes exceeds the maximum of {MAX_AUDIO_CHUNK_BYTES}",
                chunkBytes=str(len(data)),
                maxChunkBytes=str(MAX_AUDIO_CHUNK_BYTES),
            )
        if not self.has_audio:
            raise unsupported_audio_format(
                "audio sent on a stream whose config has no audio_format", self.config.audio_format
            )
        if not self.caps.audio:
            raise failed_precondition(
                "AUDIO_NOT_SUPPORTED",
                f"{self.record.vendor} cannot be driven by audio",
                vendor=self.record.vendor,
                session=self.record.name,
            )
        if self._open_turn is not None and self._open_turn.mode != "audio":
            await self._end_turn()
        turn = self._ensure_turn("audio")
        pcm = self.converter.convert(data)
        if not pcm:
            return
        gen = self._generation
        for frame in self.chunker.push(pcm):
            await self.work.put((_AUDIO, turn.turn_id, gen, frame))

    async def _on_text(self, text_input: pb.TextInput) -> None:
        text, final = text_input.text, text_input.final
        if len(text) > MAX_TEXT_CHARS:
            raise invalid_argument(
                "TEXT_TOO_LONG",
                f"text of {len(text)} characters exceeds the maximum of {MAX_TEXT_CHARS}",
                textLength=str(len(text)),
                maxTextLength=str(MAX_TEXT_CHARS),
            )
        if not self.caps.text:
            raise failed_precondition(
                "TEXT_NOT_SUPPORTED",
                f"{self.record.vendor} cannot be driven by text",
                vendor=self.record.vendor,
                session=self.record.name,
            )
        if not text and not final:
            return
        if not text and (self._open_turn is None or self._open_turn.mode != "text"):
            return  # a final marker for no text: nothing to close
        if self._open_turn is not None and self._open_turn.mode != "text":
            await self._end_turn()
        turn = self._ensure_turn("text")
        if self.caps.streaming_text:
            # Streamed deltas go on exactly as written: vendors join them as sent, so a
            # stripped "Hello " + "world" would be spoken "Helloworld".
            limit = self.caps.max_text_bytes or self.caps.max_text_chars
            measure = utf8_len if self.caps.max_text_bytes else len
            pieces = split_exact(text, limit, measure) if text else []
        else:
            pieces = self.sentences.push(text)
            if final:
                pieces += self.sentences.flush()
        gen = self._generation
        if final:
            # The last piece carries final, so a complete text is one vendor message (Tencent
            # SEND_TEXT rather than a stream, Akool fin on the part itself).
            pieces = pieces or [""]
            turn.ended_input = True
            self._open_turn = None
        for n, piece in enumerate(pieces, 1):
            await self.work.put((_TEXT, turn.turn_id, gen, (piece, final and n == len(pieces))))

    async def _end_turn(self) -> None:
        turn = self._open_turn
        if turn is None:
            return
        self._open_turn = None
        turn.ended_input = True
        gen = self._generation
        if turn.mode == "audio":
            tail = self.converter.flush()
            frames = self.chunker.push(tail) if tail else []
            rest = self.chunker.flush()
            if rest:
                frames.append(rest)
            for frame in frames:
                await self.work.put((_AUDIO, turn.turn_id, gen, frame))
            await self.work.put((_END_AUDIO, turn.turn_id, gen, None))
        else:
            pieces = self.sentences.flush() or [""]
            for n, piece in enumerate(pieces, 1):
                await self.work.put((_TEXT, turn.turn_id, gen, (piece, n == len(pieces))))

    async def _on_interrupt(self) -> None:
        ack_turn = self._open_turn or self._last_turn
        self._generation += 1
        while not self.work.empty():
            self.work.get_nowait()
        self.converter.reset()
        self.chunker.clear()
        self.sentences.clear()
        self._open_turn = None
        self._pending_changed.set()  # release a sender waiting for an earlier turn
        if ack_turn is None:
            # Nothing to interrupt: acknowledge so the client's barge-in logic never waits.
            self._emit(pb.DriveResponse(interrupted=pb.Interrupted(vendor_acknowledged=False)))
            return
        ack_turn.ended_input = True
        # The vendor commands run now, beside the sender: a sender blocked in a channel call
        # (Tencent waits for the previous turn's AudioOver) must not hold up a barge-in
        # (peer-lessons (b) 3). The sender waits for them before sending anything newer.
        assert self.channel is not None
        self._interrupt_task = asyncio.create_task(
            self._send_interrupt(self.channel, ack_turn.turn_id, time.monotonic()),
            name="drive-interrupt",
        )

    # ---- sender -------------------------------------------------------------------------

    async def _send(self) -> None:
        channel = self.channel
        assert channel is not None
        while True:
            kind, turn_id, gen, payload = await self.work.get()
            interrupting = self._interrupt_task
            if interrupting is not None and not interrupting.done():
                await asyncio.wait([interrupting])
            if kind == _EOF:
                break
            if gen != self._generation:
                continue  # queued before an interrupt
            turn = self._turns.get(turn_id)
            if turn is None or turn.failed:
                continue
            if not turn.first_sent and kind != _END_AUDIO and self.caps.sequential_turns:
                await self._wait_for_earlier_turns(turn, gen)
                if gen != self._generation:
                    continue
            try:
                if kind == _AUDIO:
                    frame: bytes = payload  # type: ignore[assignment]
                    if turn_id != self._pacing_turn:
                        self.pacer.reset()
                        self._pacing_turn = turn_id
                    wait = self.pacer.reserve()
                    if wait > 0:
                        await asyncio.sleep(wait)
                        if gen != self._generation:
                            continue
                    self._mark_sent(turn)  # before the call: an interrupt must see it live
                    await channel.send_audio(turn_id, frame, self.vendor_rate)
                    turn.audio_bytes_sent += len(frame)
                elif kind == _END_AUDIO:
                    if turn.first_sent:
                        await channel.end_audio(turn_id)
                        metrics.AUDIO_SECONDS.labels(self.record.vendor).inc(
                            duration_s(turn.audio_bytes_sent, self.vendor_rate)
                        )
                else:
                    piece: str
                    final: bool
                    piece, final = payload  # type: ignore[misc]
                    if piece or turn.first_sent:
                        await self._space_text(turn, piece)
                        self._mark_sent(turn)
                        await channel.send_text(turn_id, piece, final)
                        turn.text_chars_sent += len(piece)
            except VendorError as exc:
                if gen != self._generation:
                    continue  # the call was cut short by an interrupt of this turn
                self._turn_failed(turn, exc)
                if exc.reason in ("VENDOR_SESSION_LOST", "VENDOR_SESSION_NOT_FOUND"):
                    self._fail(exc)
                    break
        await self._wait_pending()
        self._finish()

    def _mark_sent(self, turn: TurnState) -> None:
        if not turn.first_sent:
            turn.first_sent = time.monotonic()
            self._pending.add(turn.turn_id)
            metrics.TURNS.labels(self.record.vendor, turn.mode).inc()

    async def _space_text(self, turn: TurnState, piece: str) -> None:
        interval = self.caps.min_text_interval_s
        # Streaming vendors take a turn's pieces back to back; spacing applies between turns.
        if not interval or (self.caps.streaming_text and turn.first_sent):
            return
        wait = self._last_text_send + interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_text_send = time.monotonic()

    def _turn_failed(self, turn: TurnState, exc: GatewayError) -> None:
        if turn.failed:
            return  # the failed send and the vendor's own report describe one failure
        turn.failed = True
        self._pending.discard(turn.turn_id)
        self._pending_changed.set()
        self.log.warning(
            "turn_failed", turn_id=turn.turn_id, reason=exc.reason, message=exc.message
        )
        self._emit(
            pb.DriveResponse(
                turn_failed=pb.TurnFailed(
                    turn_id=turn.turn_id, reason=exc.reason, message=exc.message
                )
            )
        )

    async def _send_interrupt(self, channel: DriveChannel, ack_turn: str, requested: float) -> None:
        """Stop every turn the vendor may hold: those playing or queued there, and the newest.

        Newest first, so that a send woken by the interrupt finds its turn already stopped.
        The ack waits (bounded) for the vendor's acknowledgement of any of them.
        """
        self.pacer.reset()
        playing = sorted(self._pending, key=int)
        targets = sorted(set(playing) | {ack_turn}, key=int, reverse=True)
        loop = asyncio.get_running_loop()
        waiters = {t: loop.create_future() for t in targets}
        self._interrupt_waiters.update(waiters)
        acknowledged = False
        try:
            if playing:  # a turn is pending from its first send on, so nothing else is live
                for turn_id in targets:
                    await channel.interrupt(turn_id)
                if self.caps.interrupt_ack:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            asyncio.wait(waiters.values(), return_when=asyncio.FIRST_COMPLETED),
                            self.caps.interrupt_ack_timeout_s,
                        )
                    acknowledged = any(w.done() and not w.cancelled() for w in waiters.values())
        except VendorError as exc:
            self._emit(
                pb.DriveResponse(
                    warning=pb.Warning(
                        reason="VENDOR_INTERRUPT_FAILED",
                        message=exc.message,
                        turn_id=ack_turn,
                        metadata=exc.metadata,
                    )
                )
            )
        finally:
            for turn_id, waiter in waiters.items():
                self._interrupt_waiters.pop(turn_id, None)
                waiter.cancel()
        now = time.monotonic()
        for turn_id in playing:
            if turn_id not in self._pending:
                continue
            turn = self._turns[turn_id]
            turn.interrupted = True
            if turn.speaking:
                # Keep waiting (briefly) for the vendor's speech_ended(interrupted), so a
                # client that half-closes right after the ack still gets the played duration.
                turn.deadline = now + self.caps.interrupt_ack_timeout_s
            else:
                self._pending.discard(turn_id)  # never started speaking: no end will come
        self._pending_changed.set()
        metrics.INTERRUPT_ACK_LATENCY.labels(
            self.record.vendor, "vendor" if acknowledged else "gateway"
        ).observe(now - requested)
        self._emit(
            pb.DriveResponse(
                interrupted=pb.Interrupted(
                    turn_id=ack_turn,
                    vendor_acknowledged=acknowledged,
                    latency=_duration(now - requested),
                )
            )
        )

    async def _wait_for_turns(self, which: Callable[[], list[str]]) -> list[str]:
        """Wait until ``which()`` is empty or the latest of its turns' deadlines passed.

        Returns the turns still pending at the deadline (``[]`` when all ended). Wakes on
        every change of the pending set (speech ended, turn failed, interrupt).
        """
        while turns := which():
            deadline = max(self._turn_deadline(self._turns[t]) for t in turns)
            now = time.monotonic()
            if now >= deadline:
                return turns
            self._pending_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._pending_changed.wait(), deadline - now)
        return []

    async def _wait_for_earlier_turns(self, turn: TurnState, gen: int) -> None:
        """``sequential_turns``: hold a turn's first send until earlier turns have ended.

        If the vendor never reports their end, the turn goes on after their deadline; an
        interrupt (a new generation) releases the wait at once.
        """
        number = int(turn.turn_id)
        await self._wait_for_turns(
            lambda: [t for t in self._pending if int(t) < number] if gen == self._generation else []
        )

    async def _wait_pending(self) -> None:
        """After the last input: wait (bounded) until the vendor finished every sent turn."""
        late = await self._wait_for_turns(
            lambda: sorted(self._pending) if self.error is None else []
        )
        for turn_id in late:
            if self._turns[turn_id].interrupted:
                continue  # acknowledged already; the vendor sent no end for it
            self._emit(
                pb.DriveResponse(
                    warning=pb.Warning(
                        reason="SPEECH_END_TIMEOUT",
                        message="the vendor did not report the end of speech in time",
                        turn_id=turn_id,
                    )
                )
            )

    def _turn_deadline(self, turn: TurnState) -> float:
        if turn.deadline:
            return turn.deadline
        speech = duration_s(turn.audio_bytes_sent, self.vendor_rate)
        speech += turn.text_chars_sent * TEXT_SECONDS_PER_CHAR
        return turn.first_sent + speech + self.caps.speech_end_timeout_s

    # ---- pump ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        channel = self.channel
        assert channel is not None
        async for event in channel.events():
            self._on_event(event)
            if event.kind is EventKind.SESSION_LOST:
                self._fail(
                    VendorError(
                        grpc.StatusCode.UNAVAILABLE,
                        "VENDOR_SESSION_LOST",
                        f"the vendor ended session {self.record.name}: {event.message}",
                        vendor=self.record.vendor,
                        metadata={"session": self.record.name},
                    )
                )
                self._finish()
                return

    def _on_event(self, event: VendorEvent) -> None:
        turn = self._turns.get(event.turn_id)
        kind = event.kind
        if event.turn_id and turn is None:
            # A turn of an earlier stream on this session (a client that cancelled while the
            # avatar still spoke): its late events are not this stream's to report.
            self.log.debug("foreign_turn_event_dropped", kind=kind.value, turn_id=event.turn_id)
            return
        if kind is EventKind.SPEECH_STARTED:
            latency = 0.0
            if turn is not None:
                turn.speaking = True
                latency = event.monotonic_time - turn.first_input
                metrics.SPEECH_START_LATENCY.labels(self.record.vendor).observe(latency)
            self._emit(
                pb.DriveResponse(
                    speech_started=pb.SpeechStarted(
                        turn_id=event.turn_id, latency=_duration(latency)
                    )
                )
            )
        elif kind is EventKind.SPEECH_ENDED:
            self._resolve(event.turn_id)
            ended = pb.SpeechEnded(turn_id=event.turn_id, interrupted=event.interrupted)
            if event.played_s is not None:
                ended.played_duration.CopyFrom(_duration(event.played_s))
            self._emit(pb.DriveResponse(speech_ended=ended))
        elif kind is EventKind.TRANSCRIPT:
            role = pb.TRANSCRIPT_ROLE_USER if event.role == "user" else pb.TRANSCRIPT_ROLE_AVATAR
            self._emit(
                pb.DriveResponse(
                    transcript=pb.Transcript(
                        turn_id=event.turn_id, role=role, text=event.text, final=event.final
                    )
                )
            )
        elif kind is EventKind.INTERRUPTED:
            waiter = self._interrupt_waiters.get(event.turn_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        elif kind is EventKind.TURN_FAILED:
            if turn is not None:
                self._turn_failed(
                    turn,
                    GatewayError(
                        grpc.StatusCode.UNKNOWN,
                        event.reason or "VENDOR_DRIVE_FAILED",
                        event.message,
                    ),
                )
            else:
                self._emit(
                    pb.DriveResponse(
                        turn_failed=pb.TurnFailed(
                            turn_id=event.turn_id,
                            reason=event.reason or "VENDOR_DRIVE_FAILED",
                            message=event.message,
                        )
                    )
                )
        elif kind is EventKind.WARNING:
            self._emit(
                pb.DriveResponse(
                    warning=pb.Warning(
                        reason=event.reason,
                        message=event.message,
                        turn_id=event.turn_id,
                        metadata=event.metadata,
                    )
                )
            )

    def _resolve(self, turn_id: str) -> None:
        self._pending.discard(turn_id)
        self._pending_changed.set()
