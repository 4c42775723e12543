"""ZEGOCLOUD drive channel: WebSocket PCM drives per audio turn, DriveByText per text segment.

zegocloud.md §8: each audio turn gets a fresh ``DriveByWsStream`` (new DriveId and
token, as the docs say), a ``wss://`` connection whose certificate must not be verified, a
JSON ``Start``, binary s16le PCM frames, and a prompt JSON ``Stop`` (a late Stop makes the
avatar stutter). Text turns use ``DriveByText`` per segment (≤ 1800 characters, queued with
InterruptMode 0). Speaking status comes from drive-status callbacks (zegocloud.md §6, EventType 4),
which the adapter routes here: status 2 → speech started, 4 → ended, 3 → failed.

The next audio turn's drive is prepared ahead (zegocloud.md §8.6): while the task is idle the
channel asks for its ``DriveByWsStream`` and opens its socket, so a turn's first frame only
waits for ``Start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets
from opentelemetry import trace
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from adapters.zegocloud.api import VENDOR, ZegoApi
from core.contract import DriveChannel, EventKind, VendorEvent
from core.errors import (
    EventReason,
    GatewayError,
    vendor_unavailable,
)
from core.tracing import VENDOR as TRACE_VENDOR
from core.tracing import tracer, vendor_connect_span
from core.websocket import write_now

DRIVE_QUEUED, DRIVE_DRIVING, DRIVE_FAILED, DRIVE_ENDED = 1, 2, 3, 4


def _insecure_tls() -> ssl.SSLContext:
    # ZEGO's drive socket is an IP literal with a certificate clients are told not to verify
    # (zegocloud.md §8, every vendor example sets InsecureSkipVerify). Only this socket skips it. A
    # bare
    # client context loads no CA bundle (create_default_context would load ~150 CAs, ~860 KiB
    # and ~20 ms of event-loop time per context, only to switch verification off).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_DRIVE_TLS = _insecure_tls()
"""One context for every drive socket of the process."""

PREPARED_DRIVE_MAX_AGE_S = 600.0
"""A drive prepared longer ago than this (s) is closed unused and the turn gets a fresh one.
No lifetime of a DriveId or of an idle drive socket is documented; the vendor's Go server keeps
one socket and DriveId for a whole task (zegocloud.md §8.4), so ten minutes is conservative."""


PREPARE_AFTER_IDLE_S = 0.2
"""How long the task stays idle before the next turn's drive is prepared (s)."""

PREPARE_WAIT_S = 5.0
"""How long closing the channel waits for a drive being prepared (s) before cutting it."""


FORGOTTEN_MAX = 256
"""How many finished turns and drives a channel remembers, to ignore their late callbacks (ZEGO
retries a callback for up to ~62 s, zegocloud.md §6)."""


def _remember(seen: dict[str, None], key: str) -> None:
    """Add ``key`` to the insertion-ordered ``seen``, dropping the oldest past the bound."""
    seen[key] = None
    while len(seen) > FORGOTTEN_MAX:
        del seen[next(iter(seen))]


@dataclass
class _PreparedDrive:
    """A drive asked for and connected ahead of its turn: no ``Start`` sent yet."""

    drive_id: str
    ws: ClientConnection
    prepared_at: float
    """``time.monotonic()`` when its socket opened."""


@dataclass
class _Turn:
    turn_id: str
    drives: list[str] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)
    final: bool = False
    started_ms: int | None = None
    last_end_ms: int = 0
    interrupted: bool = False
    done: bool = False


class ZegoDriveChannel(DriveChannel):
    """The drive side of one ZEGO stream task.

    Args:
        api: signed REST client.
        task_id: the stream task (TaskId).
        tts_config: DriveByText ``TTSConfig`` (TimbreId, SpeechRate, PitchRate, Volume).
        on_close: called when the channel closes (the adapter stops routing callbacks).
        prepare_drives: prepare each audio turn's drive ahead, while the task is idle
            (:meth:`prepare_next_drive`); else a turn's first frame asks for it.
    """

    def __init__(
        self,
        api: ZegoApi,
        task_id: str,
        tts_config: dict[str, Any],
        on_close: Any,
        *,
        prepare_drives: bool = False,
    ) -> None:
        super().__init__()
        self.api = api
        self.task_id = task_id
        self.tts_config = tts_config
        self._on_close = on_close
        self._ws: ClientConnection | None = None
        self._ws_turn = ""
        self._ws_drive = ""
        self._turns: dict[str, _Turn] = {}
        self._drive_to_turn: dict[str, str] = {}
        self._early_status: dict[str, list[tuple[int, int]]] = {}
        # InterruptDriveTask stops every drive of the task (zegocloud.md §4): once one call
        # succeeded, the other turns of the same barge-in need no call of their own, unless a
        # drive was asked for since.
        self._task_interrupted = False
        self.prepare_drives = prepare_drives
        self._prepared: asyncio.Task[_PreparedDrive] | None = None
        self._prepare_begun = False  # the prepared task has called the vendor
        # Turns done and drives done with (finished turns', or prepared and closed unused),
        # the most recent FORGOTTEN_MAX of each: their late callbacks are dropped. A session
        # may run for hours, one drive per turn, so nothing here grows with its length.
        self._finished_turns: dict[str, None] = {}
        self._discarded: dict[str, None] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def _turn(self, turn_id: str) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is None:
            if turn_id in self._finished_turns:
                return _Turn(turn_id, final=True, done=True)  # late: nothing left to do
            self._forget_done_turns()
            turn = self._turns[turn_id] = _Turn(turn_id)
        return turn

    def _forget_done_turns(self) -> None:
        """Drop the state of finished turns (kept only to ignore their late callbacks)."""
        for turn_id, turn in list(self._turns.items()):
            if turn.done:
                del self._turns[turn_id]
                _remember(self._finished_turns, turn_id)
                for drive_id in turn.drives:
                    self._drive_to_turn.pop(drive_id, None)
                    _remember(self._discarded, drive_id)

    def _register_drive(self, turn: _Turn, drive_id: str) -> None:
        self._task_interrupted = False
        turn.drives.append(drive_id)
        self._drive_to_turn[drive_id] = turn.turn_id
        # A callback may beat the REST answer that told us the DriveId.
        for status, event_ms in self._early_status.pop(drive_id, []):
            self.on_drive_status(drive_id, status, event_ms)

    # ---- audio --------------------------------------------------------------------------

    async def _connect_drive(self) -> _PreparedDrive:
        """``DriveByWsStream`` and its socket, no ``Start`` yet (zegocloud.md §8.1).

        Vendor HTTP calls: 1 DriveByWsStream, never retried (a lost answer may have created a
        drive; a second one would be another drive).

        Raises:
            VendorError: the REST call failed; VENDOR_UNAVAILABLE when the socket cannot open.
        """
        drive = await self.api.drive_by_ws_stream(self.task_id)
        drive_id, address = drive.drive_id, drive.wss_address
        try:
            with vendor_connect_span(VENDOR, address, "websocket"):
                ws = await websockets.connect(
                    address,
                    ssl=_DRIVE_TLS if address.startswith("wss:") else None,
                    compression=None,
                    open_timeout=10,
                    max_queue=4,
                )
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            _remember(self._discarded, drive_id)
            raise vendor_unavailable(VENDOR, f"drive socket: {type(exc).__name__}") from None
        return _PreparedDrive(drive_id, ws, time.monotonic())

    async def _prepare(self) -> _PreparedDrive:
        # A turn that follows at once (an answer right after the last one ended, the first
        # turn right after CreateSession) asks for its own drive: preparing one beside it
        # would only compete with it for the vendor and this event loop.
        await asyncio.sleep(PREPARE_AFTER_IDLE_S)
        self._prepare_begun = True
        with tracer.start_as_current_span(
            "prepare drive",
            kind=trace.SpanKind.INTERNAL,
            attributes={TRACE_VENDOR: VENDOR, "avatar_gateway.vendor_session.id": self.task_id},
        ):
            return await self._connect_drive()

    def prepare_next_drive(self) -> None:
        """Get the next audio turn's drive and socket in the background, if the task is idle.

        Only while no drive socket is open (one socket per task, zegocloud.md §8.1), no turn is
        speaking or queued (asking for a WS drive may cut the one playing, zegocloud.md §5)
        and the channel is open. A failure costs nothing: the turn then asks for its own
        drive.
        """
        if (
            not self.prepare_drives
            or self.closed
            or self._prepared is not None
            or self._ws is not None
            or any(not t.done for t in self._turns.values())
        ):
            return
        # Work ahead of a turn belongs to no caller's trace: its own root span, whatever
        # event (a callback, the session's readiness) happened to trigger it.
        self._prepare_begun = False
        self._prepared = asyncio.create_task(
            self._prepare(), name=f"zego-drive-{self.task_id}", context=contextvars.Context()
        )
        # Retrieved by _take_prepared or _discard_prepared; a failure is not an error here.
        self._prepared.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    async def _take_prepared(self) -> _PreparedDrive | None:
        """The prepared drive if it is usable (socket open, younger than the bound)."""
        task, self._prepared = self._prepared, None
        if task is None:
            return None
        if not self._prepare_begun:
            task.cancel()  # still waiting to begin: nothing asked of the vendor yet
            return None
        try:
            prepared = await task
        except GatewayError:
            return None
        if (
            prepared.ws.state is not State.OPEN
            or time.monotonic() - prepared.prepared_at > PREPARED_DRIVE_MAX_AGE_S
        ):
            await self._close_unused(prepared)
            return None
        return prepared

    async def _discard_prepared(self) -> None:
        """Close a prepared drive unused (a text drive or an interrupt comes first)."""
        task, self._prepared = self._prepared, None
        if task is None:
            return
        if not self._prepare_begun:
            task.cancel()
            return
        # Let a preparation under way finish (a REST call and a handshake) rather than cut
        # its request mid-way; bounded, then cut.
        with contextlib.suppress(GatewayError, asyncio.CancelledError, TimeoutError):
            await self._close_unused(await asyncio.wait_for(task, PREPARE_WAIT_S))

    def _drop_prepared(self) -> None:
        """:meth:`_discard_prepared` in the background: the caller's vendor call goes first."""
        if self._prepared is None:
            return
        closing = asyncio.ensure_future(self._discard_prepared())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close_unused(self, prepared: _PreparedDrive) -> None:
        # Closing without Start leaves the drive unstarted; ZEGO's docs say only to close the
        # socket when no WS drive follows (zegocloud.md §8.2, §8.6).
        _remember(self._discarded, prepared.drive_id)
        with contextlib.suppress(websockets.WebSocketException, OSError):
            await prepared.ws.close()

    async def _open_ws(self, turn: _Turn, sample_rate_hertz: int) -> ClientConnection:
        self._task_interrupted = False
        prepared = await self._take_prepared()
        start_error: Exception | None = None
        if prepared is not None:
            start_error = await self._start(prepared, sample_rate_hertz)
            if start_error is not None:
                # The prepared socket broke while idle: nothing of the turn was sent on it.
                await self._close_unused(prepared)
                prepared = None
        if prepared is None:
            prepared = await self._connect_drive()
            start_error = await self._start(prepared, sample_rate_hertz)
        self._register_drive(turn, prepared.drive_id)
        if start_error is not None:
            with contextlib.suppress(websockets.WebSocketException, OSError):
                await prepared.ws.close()
            raise vendor_unavailable(VENDOR, f"drive socket: {type(start_error).__name__}")
        self._ws, self._ws_turn, self._ws_drive = prepared.ws, turn.turn_id, prepared.drive_id
        return prepared.ws

    @staticmethod
    async def _start(prepared: _PreparedDrive, sample_rate_hertz: int) -> Exception | None:
        """Send ``Start`` (zegocloud.md §8.2); the error if the socket is broken."""
        start = {
            "Action": "Start",
            "Payload": {
                "DriveId": prepared.drive_id,
                "SampleRate": sample_rate_hertz,
                "Channel": 1,
            },
        }
        try:
            await prepared.ws.send(json.dumps(start))
        except (OSError, websockets.WebSocketException) as exc:
            return exc
        return None

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None:
        """Send one PCM frame (s16le mono at ``sample_rate_hertz`` Hz, zegocloud.md §8.2).

        The first frame of a turn opens its WS drive (zegocloud.md §8.1). Vendor HTTP calls:
        at most 1 DriveByWsStream per turn, never retried (a new drive would cut off the
        one playing, zegocloud.md §5); other frames make none.
        """
        ws = self._ws
        if ws is None or self._ws_turn != turn_id:
            await self._close_ws(send_stop=True)
            ws = await self._open_ws(self._turn(turn_id), sample_rate_hertz)
        if write_now(ws, (pcm,)):
            self.mark_activity()
            return
        try:
            await ws.send(pcm)
        except websockets.WebSocketException as exc:
            await self._close_ws(send_stop=False)
            # ZEGO cannot resume a WS drive (a new drive interrupts the old one, zegocloud.md §5),
            # so
            # the turn fails; the next turn opens a fresh drive.
            raise vendor_unavailable(VENDOR, f"drive socket closed: {exc}") from None
        self.mark_activity()

    def send_audio_now(self, turn_id: str, frames: Sequence[bytes], sample_rate_hertz: int) -> bool:
        """Write PCM frames on the turn's open drive socket at once, if nothing must wait.

        One binary WebSocket message per frame (zegocloud.md §8.2), all in one transport
        write. ``False`` (nothing sent) when the turn has no open socket yet (its first frame
        opens one, :meth:`send_audio`) or the socket cannot take data without waiting.
        """
        ws = self._ws
        if ws is None or self._ws_turn != turn_id or not write_now(ws, frames):
            return False
        self.mark_activity()
        return True

    async def end_audio(self, turn_id: str) -> None:
        """Send Stop at once and close the socket (zegocloud.md §8.2); no vendor HTTP call."""
        self._turn(turn_id).final = True
        if self._ws_turn == turn_id:
            await self._close_ws(send_stop=True)
        self._maybe_end(self._turn(turn_id))

    async def _close_ws(self, *, send_stop: bool) -> None:
        ws, drive_id = self._ws, self._ws_drive
        self._ws, self._ws_turn, self._ws_drive = None, "", ""
        if ws is None:
            return
        with contextlib.suppress(websockets.WebSocketException, OSError):
            if send_stop:
                await ws.send(json.dumps({"Action": "Stop", "Payload": {"DriveId": drive_id}}))
            await ws.close()

    # ---- text ---------------------------------------------------------------------------

    async def send_text(self, turn_id: str, text: str, final: bool) -> None:
        """DriveByText per segment (queued behind the current drive); final marks the last.

        ``text`` is at most 1800 characters (zegocloud.md §4). Vendor HTTP calls: at most 1
        DriveByText, never retried (a lost answer could mean the text is spoken twice); none
        for an empty ``text``.
        """
        turn = self._turn(turn_id)
        if text:
            self._task_interrupted = False
            # Whether a WS drive asked for but not started holds back a text drive is not
            # documented (zegocloud.md §8.6): none is left pending while text is queued.
            self._drop_prepared()
            drive = await self.api.drive_by_text(
                self.task_id, text, self.tts_config, interrupt_mode=0
            )
            self._register_drive(turn, drive.drive_id)
            self.mark_activity()
        if final:
            turn.final = True
            self._maybe_end(turn)

    # ---- interrupt ----------------------------------------------------------------------

    async def interrupt(self, turn_id: str) -> None:
        """InterruptDriveTask: stops the current drive and drops queued ones (zegocloud.md §4).

        Vendor HTTP calls: at most 4 InterruptDriveTask (retries of retryable errors, bounded
        by the caller's deadline), and none when an earlier call of the same barge-in already
        stopped the task and no drive was asked for since: the gateway interrupts every turn
        the vendor may hold, but one call stops them all.
        """
        turn = self._turn(turn_id)
        turn.interrupted = True
        turn.final = True
        try:
            # The vendor command first: a Stop sent before it would let the drive end
            # normally (not interrupted) when little audio is buffered at the vendor.
            if not self._task_interrupted:
                await self.api.interrupt_drive_task(self.task_id)
                self._task_interrupted = True
        except BaseException:
            await self._after_interrupt(turn_id)
            raise
        # The vendor stopped: acknowledged now, not after the socket's closing handshake.
        self.emit(VendorEvent(EventKind.INTERRUPTED, turn_id=turn_id))
        await self._after_interrupt(turn_id)
        if turn.started_ms is None:
            turn.done = True  # nothing was playing: no speech_ended will come
            self.prepare_next_drive()

    async def _after_interrupt(self, turn_id: str) -> None:
        if self._ws_turn == turn_id:
            await self._close_ws(send_stop=True)
        # InterruptDriveTask discards every queued drive (zegocloud.md §4); whether that
        # includes one asked for but not started is not documented: it is replaced.
        self._drop_prepared()

    # ---- callbacks ----------------------------------------------------------------------

    def on_drive_status(self, drive_id: str, status: int, event_ms: int) -> None:
        """Apply a drive-status callback (EventType 4) to the turn that owns ``drive_id``."""
        turn_id = self._drive_to_turn.get(drive_id)
        if turn_id is None:
            if drive_id in self._discarded:
                return
            self._early_status.setdefault(drive_id, []).append((status, event_ms))
            while len(self._early_status) > FORGOTTEN_MAX:  # another task's, or never ours
                del self._early_status[next(iter(self._early_status))]
            return
        turn = self._turns.get(turn_id)
        if turn is None or turn.done:
            return  # a finished turn, forgotten (_forget_done_turns) or done
        if status == DRIVE_DRIVING and turn.started_ms is None:
            turn.started_ms = event_ms
            self.emit(VendorEvent(EventKind.SPEECH_STARTED, turn_id=turn_id))
        elif status == DRIVE_ENDED:
            turn.ended.add(drive_id)
            turn.last_end_ms = max(turn.last_end_ms, event_ms)
            self._maybe_end(turn)
        elif status == DRIVE_FAILED:
            turn.done = True
            self.fail_turn(
                turn_id,
                EventReason.VENDOR_DRIVE_FAILED,
                f"ZEGOCLOUD reported drive {drive_id} failed",
                metadata={"driveId": drive_id},
            )
            self.prepare_next_drive()

    def _maybe_end(self, turn: _Turn) -> None:
        if turn.done or not turn.final or turn.started_ms is None:
            return
        # Interrupted: the playing drive's end is enough (queued drives were dropped).
        if not turn.interrupted and len(turn.ended) < len(turn.drives):
            return
        if turn.interrupted and not turn.ended:
            return
        turn.done = True
        played = max(0, turn.last_end_ms - turn.started_ms) / 1000.0
        self.emit(
            VendorEvent(
                EventKind.SPEECH_ENDED,
                turn_id=turn.turn_id,
                interrupted=turn.interrupted,
                played_s=played,
            )
        )
        self.prepare_next_drive()

    def on_task_stopped(self, detail: str) -> None:
        """The vendor stopped the task (TTL, idle, or an error): the session is gone."""
        self.emit(
            VendorEvent(EventKind.SESSION_LOST, message=detail, monotonic_time=time.monotonic())
        )

    async def aclose(self) -> None:
        """Close any open drive socket; stop routing callbacks here."""
        if self.closed:
            return
        self.closed = True
        await self._close_ws(send_stop=True)
        await self._discard_prepared()
        self._on_close(self)
