"""The Tencent IVH WebSocket command channel: framing, reconnect/resume and status events.

Vendor rules implemented here (docs/vendors/tencent.md):

* one command channel per session, signed with ``requestid=<SessionId>``; it may drop at any
  time and must be re-opened while the session is open (tencent.md §5). Opening makes at most
  ``CONNECT_ATTEMPTS`` (3) handshakes (one :func:`core.resilience.retry_call`); each drop is
  then its own operation, :func:`core.resilience.reconnect` with at most
  ``RECONNECT_BACKOFF.max_attempts`` (8) handshakes, a fresh signature per attempt. The two
  loops never nest: one handshake is exactly one ``_connect_once``;
* upstream frames are JSON ``{"Header": {}, "Payload": {ReqId, SessionId, Command, Data}}``
  (tencent.md §5); audio is base64 inside JSON;
* ``SEND_AUDIO``: 16 kHz mono s16le in 5120-byte / 160 ms packets, ``Seq`` from 1, one
  ``ReqId`` per utterance, closed by an empty packet with ``IsFinal`` (tencent.md §5). Pacing is the
  gateway's job (``PacingRule(160, 6, 128)``, see adapter.py), not this module's;
* ``SEND_TEXT``: one ``ReqId`` per send, sends more than 1 s apart (tencent.md §5.3). This
  channel is the only owner of that spacing (``_space_send_text``, 1.1 s between any two
  SEND_TEXTs: whole texts and empty-text interrupts alike); the gateway sends text turns back
  to back, because only here is it known which command a piece becomes. ``SEND_STREAMTEXT``
  and ``SEND_AUDIO`` are never held by it;
* ``SEND_STREAMTEXT``: one ``ReqId`` per streamed reply, ``Seq`` from 1, at most 1000 bytes of
  text per packet (the stricter, international limit; cut by :func:`core.text.split_exact`,
  which keeps every character, because the vendor joins the pieces as sent), always closed by
  ``IsFinal`` (tencent.md §5.4);
* the vendor finalises a drive by itself when no packet arrives for ``StreamMaxInterval``
  (default 2 s, tencent.md §4); after that the ``ReqId`` is spent, so a turn that pauses that long
  continues under a new ``ReqId``;
* switching modes (tencent.md §5.6): text → audio waits for ``TextOver``; audio → text finishes
  the audio with ``IsFinal`` and waits for ``AudioOver``; a new text waits for the text playing
  (it would cut it); a new ``ReqId`` inside one turn waits for the turn's previous drive. The
  order of gateway turns as such is the gateway's (``sequential_turns``): audio after audio of
  another turn is not held here (see ``TencentChannel._switch_mode``);
* interrupt as the vendor SDK 2.3.3 ``stop()`` does it (tencent.md §5);
* ``SEND_HEARTBEAT`` ``{"Text": "PING"}`` keeps an idle link (tencent.md §7);
* downstream ``Type`` 3 (``SpeakStatus``), 4 (LLM text) and 9 (drive failed) (tencent.md §6) become
  :class:`core.contract.VendorEvent` s correlated to gateway turns by ``ReqId``.

Resume after a reconnect (no audio lost or duplicated). The protocol has no per-packet ack,
so the channel cannot know which of the packets written just before a drop the vendor
processed. It keeps every drive command of the current drives sent in the last
``StreamMaxInterval`` (older ones are either processed or the vendor has finalised that
drive anyway) and re-sends them, in order, on the new socket before anything else. This
relies on the vendor ignoring a ``(ReqId, Seq)`` it already has (and a ``SEND_TEXT``
``ReqId`` it already has): the wire format carries ``Seq`` for exactly that, but the
documentation does not say so explicitly (inferred; the emulator implements that rule).
The vendor re-pushes the last statuses of its last 3 drives on reconnect (tencent.md §5); the
per-drive state below makes those re-pushes idempotent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Response

from adapters.tencent.api import (
    CODE_WRONG_TIME,
    SESSION_GONE_CODES,
    VENDOR,
    TencentApi,
    map_code,
    new_req_id,
)
from adapters.tencent.models import (
    ChatTextMessage,
    DownstreamFrame,
    DriveFailedMessage,
    Envelope,
    Header,
    SpeakStatusMessage,
)
from core.contract import DriveChannel, EventKind, VendorEvent
from core.errors import (
    EventReason,
    GatewayError,
    Reason,
    VendorError,
    failed_precondition,
    invalid_argument,
    vendor_timeout,
    vendor_unavailable,
)
from core.resilience import Backoff, reconnect, retry_call
from core.text import split_exact
from core.tracing import vendor_connect_span
from core.websocket import write_now

log = structlog.get_logger("adapters.tencent.channel")

AUDIO_SAMPLE_RATE_HERTZ = 16000
"""The only input rate SEND_AUDIO takes (Hz, mono s16le; tencent.md §5)."""

AUDIO_PACKET_BYTES = 5120
"""One SEND_AUDIO packet: 160 ms of 16 kHz mono s16le (bytes; tencent.md §5)."""

AUDIO_BYTES_PER_SECOND = AUDIO_SAMPLE_RATE_HERTZ * 2

STREAM_TEXT_PACKET_BYTES = 1000
"""Largest ``Text`` of one SEND_STREAMTEXT packet (UTF-8 bytes; tencent.md §5, intl 1000, cn
2000)."""

TEXT_MAX_BYTES = 4000
"""Largest ``Text`` of one SEND_TEXT (UTF-8 bytes; tencent.md §5)."""

TEXT_SEND_INTERVAL_S = 1.1
"""Least spacing of two SEND_TEXT (s). The vendor wants strictly more than 1 s between
arrivals (tencent.md §5.3); 0.1 s of margin absorbs network jitter. Applied by
``TencentChannel._space_send_text`` only."""

CONNECT_ATTEMPTS = 3
"""Most WebSocket handshakes one :meth:`TencentChannel.connect` makes (the first included)."""

CONNECT_BACKOFF = Backoff(base_s=0.1, cap_s=0.5, max_attempts=CONNECT_ATTEMPTS)
"""Backoff of the first connect (s): short, the slot of a channel just closed frees fast."""

RECONNECT_BACKOFF = Backoff(base_s=0.1, cap_s=2.0, max_attempts=8)
"""Default backoff of the reconnect after each drop (s; at most 8 handshakes per drop)."""

DEFAULT_STREAM_MAX_INTERVAL_S = 2.0
"""The vendor's default ``StreamMaxInterval`` (s; tencent.md §4)."""

STALE_MARGIN_S = 0.25
"""A drive idle for ``StreamMaxInterval - STALE_MARGIN_S`` is treated as auto-finalised: the
vendor's clock starts when our packet arrives, so we must decide slightly early."""

TEXT_SECONDS_PER_CHAR_MAX = 0.3
"""Upper estimate of speech time per character (s; slow CJK speech is ~0.25 s/char). Only
bounds waits for ``TextOver``; real waits end at the vendor's status."""

TEXT_START_WAIT_S = 3.0
"""Bounded wait for ``TextStart`` before an interrupt (tencent.md §5: interrupt after TextStart)."""

_TEXT_KINDS = ("text", "stream")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

DriveKind = Literal["audio", "text", "stream", "control"]


@dataclass
class _Drive:
    """One vendor drive (one ReqId) and what the vendor reported about it."""

    req_id: str
    turn_id: str
    kind: DriveKind
    seq: int = 0
    final_sent: bool = False
    interrupted: bool = False
    acknowledged: bool = False  # any status seen: the vendor has the command
    started: bool = False
    ended: bool = False
    failed: bool = False
    audio_s: float = 0.0
    text_chars: int = 0
    last_sent_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    start_event: asyncio.Event = field(default_factory=asyncio.Event)
    end_event: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Turn:
    """A gateway turn: one or more drives (a turn may outlive a vendor auto-finalisation)."""

    turn_id: str
    drives: list[_Drive] = field(default_factory=list)
    input_done: bool = False
    interrupted: bool = False
    started_emitted: bool = False
    ended_emitted: bool = False
    failed_emitted: bool = False
    first_start: float | None = None
    last_end: float | None = None


@dataclass(slots=True)
class _Packet:
    """An upstream command, kept for re-sending after a reconnect when it is a drive command.

    What is kept is the command, not its JSON frame: a SEND_AUDIO packet holds its 5120 bytes
    of PCM (``pcm``), and the frame, with the PCM as base64 in ``Data.Audio``, is built
    afresh for each write (:meth:`TencentChannel._frame_of`). The frame is a third larger
    than the PCM, and 2 s of them were kept per stream (bench/RESULTS.md, T2).
    """

    command: str
    req_id: str
    data: dict[str, Any]
    retain: bool
    pcm: bytes | None = None
    sent_gen: int = 0
    sent_at: float = 0.0


class TencentChannel(DriveChannel):
    """The command channel of one Tencent IVH session (see the module docstring).

    Text: ``send_text(turn, text, final=True)`` on a turn with no streamed text open sends
    one SEND_TEXT (new ReqId); ``send_text(turn, piece, final=False)`` opens or continues the
    turn's SEND_STREAMTEXT stream, and the next ``final=True`` call (its text may be empty),
    ``end_audio``, a new turn or :meth:`aclose` closes it with ``IsFinal``.

    Blocking, all of it vendor protocol:

    * the first send of a new drive waits until the previous drive ended when the vendor
      needs that (mode switches, a text after a text, a new ``ReqId`` inside a turn;
      tencent.md §5.6, see :meth:`_switch_mode`), bounded by the previous drive's expected
      remaining time plus ``switch_grace_s``. Audio after another turn's audio is not held:
      turn order is the gateway's ``sequential_turns`` wait (architecture.md §5);
    * every SEND_TEXT (a whole text or an empty-text interrupt) goes at least
      ``TEXT_SEND_INTERVAL_S`` (1.1 s) after the previous one (tencent.md §5.3). This channel is
      the only owner of that rule: the gateway does not space text turns. SEND_STREAMTEXT
      packets are never held by it.

    A concurrent :meth:`interrupt` wakes a wait for the previous drive, and a send for the
    interrupted turn then returns without sending.

    Args:
        api: the adapter's REST client (signing, URLs).
        vendor_session_id: Tencent ``SessionId``.
        session_name: the gateway session (``sessions/{id}``), for error metadata.
        driver_type: 1 text only, 3 audio and text (tencent.md §4).
        stream_max_interval_s: the session's ``StreamMaxInterval`` (s).
        switch_grace_s: slack added to the bounded mode-switch waits (s).
        reconnect_backoff: backoff of automatic reconnects.
    """

    def __init__(
        self,
        api: TencentApi,
        *,
        vendor_session_id: str,
        session_name: str,
        driver_type: int = 3,
        stream_max_interval_s: float = DEFAULT_STREAM_MAX_INTERVAL_S,
        switch_grace_s: float = 5.0,
        reconnect_backoff: Backoff | None = None,
    ) -> None:
        super().__init__()
        self._api = api
        self.vendor_session_id = vendor_session_id
        self.session_name = session_name
        self.driver_type = driver_type
        self.stream_max_interval_s = stream_max_interval_s
        self.switch_grace_s = switch_grace_s
        self.send_timeout_s = 15.0
        self._backoff = reconnect_backoff or RECONNECT_BACKOFF
        self._ws: ClientConnection | None = None
        self._gen = 0
        self._connected = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: VendorError | None = None
        self._session_gone: VendorError | None = None
        self._closing = False
        self._retained: deque[_Packet] = deque()
        self._drives: dict[str, _Drive] = {}
        self._turns: dict[str, _Turn] = {}
        self._current_turn: _Turn | None = None
        self._open_audio: _Drive | None = None
        self._open_stream: _Drive | None = None
        self._last_drive: _Drive | None = None
        self._dropped_turns: set[str] = set()
        self._controls: deque[str] = deque()
        self._interrupt_acks: list[tuple[str, set[str]]] = []
        self._wake = asyncio.Event()
        self._last_text_sent_at = 0.0
        self.reconnects = 0

    # ---- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the channel (retrying transient failures) and start the receive loop.

        At most ``CONNECT_ATTEMPTS`` (3) handshakes; reconnects after a later drop are the
        supervisor's, never nested in this retry.

        Raises:
            VendorError: the vendor refused the channel (session not started, closed, a
                channel already open...) or could not be reached.
        """

        async def first_connect() -> ClientConnection:
            try:
                return await self._connect_once()
            except VendorError as exc:
                # The channel this one replaces may have closed an instant ago and still
                # hold the single slot (tencent.md §5 one channel per session): worth a short retry.
                if exc.vendor_code == str(CODE_WRONG_TIME):
                    exc.retryable = True
                raise

        ws = await retry_call(first_connect, backoff=CONNECT_BACKOFF, operation="commandchannel")
        await self._install(ws, resend=False)
        self._supervisor = asyncio.create_task(self._supervise(), name="tencent-channel")

    async def _connect_once(self) -> ClientConnection:
        url = self._api.command_channel_url(self.vendor_session_id)
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            with vendor_connect_span(VENDOR, url, "websocket"):
                return await connect(
                    url,
                    # Environment proxies apply to the vendor, never to a loopback emulator.
                    proxy=None if host in _LOOPBACK else True,
                    open_timeout=self._api.timeout_s,
                    max_size=4 * 1024 * 1024,
                    close_timeout=2.0,
                    # permessage-deflate is the library default, not a vendor requirement
                    # (tencent.md §5 documents plain JSON frames): on base64 speech it cost
                    # ~380 µs and ~165 KiB per stream for a 44 % saving (bench/RESULTS.md).
                    compression=None,
                )
        except InvalidStatus as exc:
            error = self._refusal_error(exc.response)
            if error.vendor_code and int(error.vendor_code) in SESSION_GONE_CODES:
                self._session_gone = error
            raise error from exc
        except TimeoutError as exc:
            raise vendor_timeout(VENDOR, "command channel: connect timed out") from exc
        except (OSError, InvalidHandshake) as exc:
            raise vendor_unavailable(VENDOR, f"command channel: {type(exc).__name__}") from exc

    def _refusal_error(self, response: Response) -> VendorError:
        # Refusals are undocumented (tencent.md §10); Tencent-style servers answer with the HTTP
        # envelope, so read Header.Code when there is one.
        header: Header | None = None
        try:
            data = json.loads(bytes(response.body).decode("utf-8"))
        except ValueError:
            data = None
        if isinstance(data, dict):
            header = Envelope.model_validate(data).header
        if header is None or "code" not in header.model_fields_set or header.code is None:
            return vendor_unavailable(
                VENDOR, f"command channel refused with HTTP {response.status_code}"
            )
        return map_code(header.code, header.message, session=self.session_name)

    def _still_wanted(self) -> bool:
        return not self.closed and self._session_gone is None

    async def _install(self, ws: ClientConnection, *, resend: bool) -> None:
        async with self._send_lock:
            self._gen += 1
            self._ws = ws
            if resend:
                self._prune_retained(force=True)
                for packet in list(self._retained):
                    try:
                        await self._write(ws, packet)
                    except ConnectionClosed:
                        break  # dropped again: the supervisor comes round once more
                    packet.sent_gen, packet.sent_at = self._gen, time.monotonic()
                if self._retained:
                    self.mark_activity()
            self._connected.set()

    async def _supervise(self) -> None:
        try:
            while True:
                ws = self._ws
                assert ws is not None
                await self._read(ws)
                if self.closed:
                    return
                if self._gen and self._ws is ws:
                    self._connected.clear()
                log.info("tencent_channel_dropped", session=self.session_name)
                try:
                    ws = await reconnect(
                        self._connect_once,
                        vendor=VENDOR,
                        still_wanted=self._still_wanted,
                        backoff=self._backoff,
                    )
                except VendorError as exc:
                    self._lose(self._session_gone or exc)
                    return
                if self.closed:
                    await ws.close()
                    return
                await self._install(ws, resend=True)
                self.reconnects += 1
                self.warn(
                    EventReason.VENDOR_RECONNECTED,
                    "the Tencent command channel dropped and was re-opened",
                    metadata={"reconnects": str(self.reconnects)},
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave senders waiting forever
            log.exception("tencent_channel_supervisor_failed")
            self._lose(vendor_unavailable(VENDOR, f"command channel failed: {exc!r}"))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue  # the protocol has no binary frames (tencent.md §5)
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("tencent_downstream_not_json", size=len(raw))
                    continue
                if isinstance(message, dict):
                    try:
                        self._on_message(DownstreamFrame.parse(message))
                    except Exception:
                        log.exception("tencent_downstream_handler_failed")

    def _lose(self, error: VendorError) -> None:
        if self._failure is not None:
            return
        self._failure = error
        self.closed = True
        self._connected.set()  # wake senders: they raise the failure
        self._wake_waiters()
        for drive in self._drives.values():
            drive.end_event.set()
            drive.start_event.set()
        self.emit(
            VendorEvent(
                EventKind.SESSION_LOST,
                reason=error.reason,
                message=error.message,
                metadata=dict(error.metadata),
            )
        )

    # ---- sending ------------------------------------------------------------------------

    def _raise_if_unusable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self.closed:
            raise vendor_unavailable(VENDOR, "the command channel is closed")

    def _frame(self, command: str, req_id: str, data: dict[str, Any]) -> str:
        return json.dumps(
            {
                "Header": {},
                "Payload": {
                    "ReqId": req_id,
                    "SessionId": self.vendor_session_id,
                    "Command": command,
                    "Data": data,
                },
            },
            ensure_ascii=False,
        )

    def _frame_of(self, packet: _Packet) -> bytes:
        """The UTF-8 JSON frame of ``packet``; SEND_AUDIO's PCM goes in as base64 ``Audio``."""
        data = packet.data
        if packet.pcm is not None:
            data = {"Audio": base64.b64encode(packet.pcm).decode("ascii"), **data}
        return self._frame(packet.command, packet.req_id, data).encode()

    async def _write(self, ws: ClientConnection, packet: _Packet) -> None:
        """Write ``packet``'s frame on ``ws``: at once when nothing can make it wait."""
        frame = self._frame_of(packet)
        if not write_now(ws, (frame,), text=True):
            await ws.send(frame, text=True)

    async def _transmit(self, packet: _Packet) -> None:
        """Write ``packet`` once on the current socket, waiting out a reconnect if needed."""
        self._raise_if_unusable()
        if packet.retain:
            self._prune_retained()
            self._retained.append(packet)
        deadline = time.monotonic() + self.send_timeout_s
        try:
            while True:
                self._raise_if_unusable()
                if not self._connected.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise vendor_timeout(VENDOR, "the command channel did not reconnect")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._connected.wait(), remaining)
                    continue
                gen, ws = self._gen, self._ws
                assert ws is not None
                async with self._send_lock:
                    if packet.sent_gen == gen:
                        return  # re-sent by the reconnect before we got the lock
                    if gen != self._gen:
                        continue
                    try:
                        await self._write(ws, packet)
                    except ConnectionClosed:
                        # The supervisor reconnects; the retained packet goes out then.
                        if gen == self._gen:
                            self._connected.clear()
                        if not packet.retain:
                            return  # a heartbeat on a dead socket is moot
                        continue
                    packet.sent_gen, packet.sent_at = gen, time.monotonic()
                self.mark_activity()
                return
        except BaseException:
            if packet.retain and packet.sent_gen == 0:
                # Never written: the caller gets the error, so the packet must not go later.
                with contextlib.suppress(ValueError):
                    self._retained.remove(packet)
            raise

    def _prune_retained(self, *, force: bool = False) -> None:
        now = time.monotonic()
        window = self.stream_max_interval_s

        def keep(packet: _Packet) -> bool:
            drive = self._drives.get(packet.req_id)
            if drive is None or drive.ended:
                return False
            if drive.kind in ("text", "control") and drive.acknowledged:
                return False  # a status for it proves the vendor has it
            return packet.sent_gen == 0 or now - packet.sent_at <= window

        if force:
            self._retained = deque(p for p in self._retained if keep(p))
            return
        while self._retained and not keep(self._retained[0]):
            self._retained.popleft()

    async def _send_command(
        self, drive: _Drive, command: str, data: dict[str, Any], pcm: bytes | None = None
    ) -> None:
        """Send (and retain) a drive command; ``pcm``: SEND_AUDIO's audio (see :class:`_Packet`)."""
        await self._transmit(_Packet(command, drive.req_id, data, True, pcm))
        drive.last_sent_at = time.monotonic()

    # ---- turns and drives ---------------------------------------------------------------

    async def _begin_turn(self, turn_id: str) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is not None:
            return turn
        previous = self._current_turn
        if previous is not None and not previous.input_done:
            # The gateway moved on without closing the turn: tencent.md §5 wants every drive closed.
            await self._close_turn_input(previous)
        turn = _Turn(turn_id)
        self._turns[turn_id] = turn
        self._current_turn = turn
        self._forget_old()
        return turn

    def _forget_old(self) -> None:
        # Bounded memory on long sessions: keep the recent turns and their drives only.
        if len(self._turns) <= 64:
            return
        for turn_id in list(self._turns)[:-64]:
            turn = self._turns.pop(turn_id)
            for drive in turn.drives:
                self._drives.pop(drive.req_id, None)
        if len(self._dropped_turns) > 256:
            self._dropped_turns = {t for t in self._dropped_turns if t in self._turns}

    def _new_drive(self, turn: _Turn, kind: DriveKind) -> _Drive:
        drive = _Drive(new_req_id(), turn.turn_id, kind)
        self._drives[drive.req_id] = drive
        turn.drives.append(drive)
        self._last_drive = drive
        return drive

    def _new_control(self, turn_id: str) -> _Drive:
        # Interrupt commands have their own ReqId (tencent.md §5) but are not speech of any turn.
        drive = _Drive(new_req_id(), turn_id, "control")
        self._drives[drive.req_id] = drive
        self._controls.append(drive.req_id)
        if len(self._controls) > 64:
            self._drives.pop(self._controls.popleft(), None)
        return drive

    def _wake_waiters(self) -> None:
        # Broadcast: every waiter holds the Event it started with; a new one replaces it.
        self._wake.set()
        self._wake = asyncio.Event()

    def _stale(self, drive: _Drive) -> bool:
        return (
            drive.seq > 0
            and time.monotonic() - drive.last_sent_at >= self.stream_max_interval_s - STALE_MARGIN_S
        )

    def _expected_remaining_s(self, drive: _Drive) -> float:
        now = time.monotonic()
        if drive.kind == "audio":
            if drive.started_at is not None:
                return max(0.0, drive.started_at + drive.audio_s - now)
            return drive.audio_s
        speech = min(600.0, drive.text_chars * TEXT_SECONDS_PER_CHAR_MAX)
        if drive.started_at is not None:
            return max(0.0, drive.started_at + speech - now)
        return speech

    async def _wait_end(self, drive: _Drive, timeout_s: float, turn_id: str) -> bool:
        """Wait until ``drive`` ended or ``timeout_s`` passed.

        Gives up early when an interrupt drops ``turn_id``: the send that waits is moot then.
        """
        deadline = time.monotonic() + timeout_s
        while not drive.ended and self._failure is None:
            if turn_id in self._dropped_turns:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            woken = self._wake
            end = asyncio.ensure_future(drive.end_event.wait())
            wake = asyncio.ensure_future(woken.wait())
            try:
                await asyncio.wait({end, wake}, timeout=remaining, return_when="FIRST_COMPLETED")
            finally:
                end.cancel()
                wake.cancel()
        return drive.ended

    async def _switch_mode(self, turn: _Turn, kind: DriveKind) -> None:
        """Before a new drive: close the previous one; wait for its end where the vendor needs it.

        The previous drive is always closed with ``IsFinal`` first (tencent.md §5.4, §5.5).
        Then a bounded wait (the previous drive's expected remaining time plus
        ``switch_grace_s``) for its end, in these cases, all vendor protocol:

        * text → audio: ``TextOver`` first; on timeout an empty-text interrupt, then
          ``TextOver`` (tencent.md §5.6);
        * audio → text: ``IsFinal``, then ``AudioOver`` (tencent.md §5.6);
        * any new ``ReqId`` inside one turn (a pause of ``StreamMaxInterval`` spent the old
          one, tencent.md §4): the turn's continuation must not cut or overtake its own start.

        Not waited for here: the same mode across turns (audio → audio, text → text). That
        is turn order, owned by the gateway (``Capabilities.sequential_turns``,
        architecture.md §5): it holds a turn's first send until the earlier turns ended,
        bounded by their audio duration, or for text by ``speech_seconds_per_char`` (the
        adapter declares the slow-speech 0.3 s), plus ``speech_end_timeout_s``.
        """
        prev = self._last_drive
        if prev is None or prev.ended:
            return
        if not prev.final_sent:
            await self._finish_drive(prev)
        same_mode = (kind == prev.kind == "audio") or (
            kind in _TEXT_KINDS and prev.kind in _TEXT_KINDS
        )
        if same_mode and prev.turn_id != turn.turn_id:
            return  # turn order: the gateway's
        bound = self._expected_remaining_s(prev) + self.switch_grace_s
        if await self._wait_end(prev, bound, turn.turn_id):
            return
        if turn.turn_id in self._dropped_turns or self._failure is not None:
            return
        if prev.kind in _TEXT_KINDS and kind == "audio":
            # tencent.md §5: "send an empty-text interrupt and wait for TextOver before sending
            # audio".
            await self._send_text_interrupt(turn.turn_id)
            if await self._wait_end(prev, 2.0, turn.turn_id):
                return
        self.warn(
            EventReason.VENDOR_SWITCH_TIMEOUT,
            f"Tencent did not report the end of the previous {prev.kind} drive "
            "in time; sending anyway",
            turn_id=turn.turn_id,
            metadata={"reqId": prev.req_id, "previousTurnId": prev.turn_id},
        )

    async def _finish_drive(self, drive: _Drive) -> None:
        """Close an audio or streamed-text drive with ``IsFinal`` (tencent.md §5)."""
        if drive.final_sent or drive.ended or drive.kind not in ("audio", "stream"):
            drive.final_sent = True
            return
        drive.final_sent = True
        drive.seq += 1
        if drive.kind == "audio":
            data: dict[str, Any] = {"Audio": "", "Seq": drive.seq, "IsFinal": True}
            await self._send_command(drive, "SEND_AUDIO", data)
        else:
            data = {"Text": "", "Seq": drive.seq, "IsFinal": True}
            await self._send_command(drive, "SEND_STREAMTEXT", data)
        if self._open_audio is drive:
            self._open_audio = None
        if self._open_stream is drive:
            self._open_stream = None

    async def _close_turn_input(self, turn: _Turn) -> None:
        for drive in (self._open_audio, self._open_stream):
            if drive is not None and drive.turn_id == turn.turn_id:
                await self._finish_drive(drive)
        turn.input_done = True
        self._maybe_end_turn(turn)

    async def _space_send_text(self) -> None:
        """Hold a SEND_TEXT until ``TEXT_SEND_INTERVAL_S`` after the previous one (tencent.md §5.3).

        The one owner of the spacing rule: called for whole texts and empty-text interrupts,
        never for SEND_STREAMTEXT or SEND_AUDIO.
        """
        wait = self._last_text_sent_at + TEXT_SEND_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_text_sent_at = time.monotonic()

    async def _send_text_interrupt(self, turn_id: str) -> None:
        """SEND_TEXT with empty text and ``Interrupt``: stop to silence (tencent.md §5)."""
        control = self._new_control(turn_id)
        await self._space_send_text()
        await self._send_command(control, "SEND_TEXT", {"Text": "", "Interrupt": True})

    # ---- DriveChannel -------------------------------------------------------------------

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None:
        """Send one frame of 16 kHz mono s16le PCM (normally 5120 bytes = 160 ms).

        The first frame of a turn opens a new ReqId (``Seq`` 1). Frames above 5120 bytes are
        split into packets of 5120 bytes (tencent.md §5).

        Raises:
            GatewayError: FAILED_PRECONDITION ``AUDIO_NOT_SUPPORTED`` on a DriverType 1
                session; INVALID_ARGUMENT ``UNSUPPORTED_AUDIO_FORMAT`` for another rate.
            VendorError: the channel is lost.
        """
        if self.driver_type != 3:
            raise failed_precondition(
                Reason.AUDIO_NOT_SUPPORTED,
                f"Tencent session {self.session_name} was created with DriverType "
                f"{self.driver_type} (text only); create it with driver_type 3 to drive audio",
                vendor=VENDOR,
                session=self.session_name,
            )
        if sample_rate_hertz != AUDIO_SAMPLE_RATE_HERTZ or len(pcm) % 2:
            raise invalid_argument(
                Reason.UNSUPPORTED_AUDIO_FORMAT,
                f"Tencent takes 16000 Hz mono s16le audio, got {sample_rate_hertz} Hz and "
                f"{len(pcm)} bytes",
                audioEncoding="LINEAR16",
                sampleRateHertz=str(sample_rate_hertz),
                audioChannelCount="1",
            )
        if turn_id in self._dropped_turns or not pcm:
            return  # late audio of an interrupted turn
        self._raise_if_unusable()
        turn = await self._begin_turn(turn_id)
        if turn.failed_emitted:
            return  # the vendor failed this turn; the gateway stops feeding it shortly
        for start in range(0, len(pcm), AUDIO_PACKET_BYTES):
            await self._send_audio_packet(turn, pcm[start : start + AUDIO_PACKET_BYTES])

    async def _send_audio_packet(self, turn: _Turn, packet: bytes) -> None:
        drive = self._open_audio
        if drive is not None and (drive.turn_id != turn.turn_id or drive.ended):
            drive = None
        if drive is not None and self._stale(drive):
            # The vendor has (or is about to have) finalised this ReqId after a pause of
            # StreamMaxInterval (tencent.md §4): close it and continue the turn under a new ReqId.
            await self._finish_drive(drive)
            drive = None
        if drive is None:
            await self._switch_mode(turn, "audio")
            if turn.turn_id in self._dropped_turns:
                return
            drive = self._new_drive(turn, "audio")
            self._open_audio = drive
        drive.seq += 1
        drive.audio_s += len(packet) / AUDIO_BYTES_PER_SECOND
        # The frame's Data is {"Audio": base64, "Seq", "IsFinal"} (_frame_of adds Audio).
        await self._send_command(
            drive, "SEND_AUDIO", {"Seq": drive.seq, "IsFinal": False}, pcm=bytes(packet)
        )

    async def end_audio(self, turn_id: str) -> None:
        """The turn's input is complete: close its open drives with ``IsFinal`` (tencent.md §5)."""
        turn = self._turns.get(turn_id)
        if turn is None or self._failure is not None:
            return
        await self._close_turn_input(turn)

    async def send_text(self, turn_id: str, text: str, final: bool) -> None:
        """Send text for ``turn_id``: SEND_TEXT for a whole text, SEND_STREAMTEXT for pieces.

        Streamed pieces above 1000 UTF-8 bytes are split into several packets
        (:func:`core.text.split_exact`); a SEND_TEXT above 4000 bytes is sent as a stream instead
        (tencent.md §5.3, §5.4). Each SEND_TEXT waits for the 1.1 s spacing
        (:meth:`_space_send_text`, the only owner of that rule); streamed packets never do.

        Raises:
            VendorError: the channel is lost.
        """
        if turn_id in self._dropped_turns:
            return
        self._raise_if_unusable()
        turn = await self._begin_turn(turn_id)
        if turn.failed_emitted:
            return
        stream = self._open_stream
        if stream is not None and (stream.turn_id != turn_id or stream.ended):
            stream = None
        if stream is None and final:
            if text.strip() and len(text.encode("utf-8")) <= TEXT_MAX_BYTES:
                await self._send_whole_text(turn, text)
                return
            if not text.strip():
                await self._close_turn_input(turn)
                return
        if stream is not None and self._stale(stream):
            await self._finish_drive(stream)
            stream = None
        if stream is None and not text:
            return
        if stream is None:
            await self._switch_mode(turn, "stream")
            if turn_id in self._dropped_turns:
                return
            stream = self._new_drive(turn, "stream")
            self._open_stream = stream
        pieces = split_exact(text, STREAM_TEXT_PACKET_BYTES) if text else []
        if final and not pieces:
            pieces = [""]
        for i, piece in enumerate(pieces):
            is_final = final and i == len(pieces) - 1
            stream.seq += 1
            stream.text_chars += len(piece)
            data = {"Text": piece, "Seq": stream.seq, "IsFinal": is_final}
            if is_final:
                stream.final_sent = True
            await self._send_command(stream, "SEND_STREAMTEXT", data)
        if final:
            if self._open_stream is stream:
                self._open_stream = None
            turn.input_done = True
            self._maybe_end_turn(turn)

    async def _send_whole_text(self, turn: _Turn, text: str) -> None:
        await self._switch_mode(turn, "text")
        if turn.turn_id in self._dropped_turns:
            return
        drive = self._new_drive(turn, "text")
        drive.text_chars = len(text)
        drive.final_sent = True
        await self._space_send_text()
        # NotUseChat: the avatar speaks our text; a bound chat bot must not answer it.
        data = {"Text": text, "Interrupt": False, "ChatCommand": "NotUseChat"}
        await self._send_command(drive, "SEND_TEXT", data)
        turn.input_done = True
        self._maybe_end_turn(turn)

    async def interrupt(self, turn_id: str) -> None:
        """Stop the avatar now, per mode as the vendor SDK 2.3.3 ``stop()`` does (tencent.md §5).

        Audio: ``SEND_AUDIO`` with the drive's ReqId and ``{"Interrupt": true}`` (then the
        closing ``IsFinal`` packet, because the vendor may ignore an audio interrupt);
        streamed text: ``SEND_STREAMTEXT`` with the ReqId, ``Interrupt`` and the next
        ``Seq``; text: an empty ``SEND_TEXT`` with ``Interrupt``, after the drive's
        ``TextStart`` (tencent.md §5) and the 1 s spacing. An ``INTERRUPTED`` event follows when the
        vendor reports every interrupted drive over, or at once when nothing was playing.
        """
        self._dropped_turns.add(turn_id)
        self._wake_waiters()
        active = [d for d in self._drives.values() if d.kind != "control" and not d.ended]
        for drive in active:
            drive.interrupted = True
            owner = self._turns.get(drive.turn_id)
            if owner is not None:
                owner.interrupted = True
                owner.input_done = True
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn.input_done = True
        self._open_audio = None
        self._open_stream = None
        if not active:
            self.emit(
                VendorEvent(
                    EventKind.INTERRUPTED,
                    turn_id=turn_id,
                    message="nothing was playing",
                    metadata={"vendorIdle": "true"},
                )
            )
            if turn is not None:
                self._maybe_end_turn(turn)
            return
        if self._failure is not None:
            return
        self._interrupt_acks.append((turn_id, {d.req_id for d in active}))
        text_drives: list[_Drive] = []
        for drive in active:
            if drive.kind == "audio":
                await self._send_command(drive, "SEND_AUDIO", {"Interrupt": True})
                await self._finish_drive(drive)
            elif drive.kind == "stream":
                drive.seq += 1
                drive.final_sent = True
                data = {"Interrupt": True, "Seq": drive.seq, "Text": ""}
                await self._send_command(drive, "SEND_STREAMTEXT", data)
            else:
                text_drives.append(drive)
        if text_drives:
            waiting = [d for d in text_drives if not d.started and not d.ended]
            if waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*(d.start_event.wait() for d in waiting)),
                        TEXT_START_WAIT_S,
                    )
            if any(not d.ended for d in text_drives) and self._failure is None:
                await self._send_text_interrupt(text_drives[-1].turn_id)

    async def keepalive(self) -> None:
        """``SEND_HEARTBEAT`` ``{"Text": "PING"}`` (tencent.md §7); skipped while reconnecting."""
        if self.closed or not self._connected.is_set():
            return
        await self._transmit(_Packet("SEND_HEARTBEAT", new_req_id(), {"Text": "PING"}, False))

    async def aclose(self) -> None:
        """Close open drives with ``IsFinal`` (best effort, 2 s), then the socket. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._failure is None and not self.closed:
            with contextlib.suppress(GatewayError, TimeoutError):
                async with asyncio.timeout(2.0):
                    for drive in (self._open_audio, self._open_stream):
                        if drive is not None:
                            await self._finish_drive(drive)
        self.closed = True
        self._connected.set()
        self._wake_waiters()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor

    # ---- downstream ---------------------------------------------------------------------

    def _on_message(self, frame: DownstreamFrame) -> None:
        header, message = frame.header, frame.message
        drive = self._drives.get(frame.req_id)
        if header.code and not message.type:
            # A channel-level error (undocumented shape, tencent.md §6): report it; a session
            # that is gone shows up as a refused reconnect right after.
            self.warn(
                EventReason.VENDOR_CHANNEL_ERROR,
                f"Tencent command channel error {header.code}: {header.message}",
                turn_id=drive.turn_id if drive else "",
                metadata={"vendorCode": str(header.code)},
            )
            return
        if isinstance(message, SpeakStatusMessage):
            if drive is not None:
                self._on_status(drive, message)
        elif isinstance(message, ChatTextMessage):
            text = message.text_display or message.text
            if text:
                self.emit(
                    VendorEvent(
                        EventKind.TRANSCRIPT,
                        turn_id=drive.turn_id if drive else "",
                        text=text,
                        role="avatar",
                        final=True if message.final is None else message.final,
                    )
                )
        elif isinstance(message, DriveFailedMessage):
            self._on_drive_failed(drive, message)
        # Type 5 ("thinking") and the old 2/7 are not ours to surface (tencent.md §6).

    def _on_status(self, drive: _Drive, message: SpeakStatusMessage) -> None:
        status = message.speak_status
        drive.acknowledged = True
        if drive.kind == "control":
            return  # statuses of an interrupt command are not speech
        if status in ("TextStart", "AudioStart"):
            self._drive_started(drive)
        elif status in ("TextOver", "AudioOver"):
            self._drive_ended(drive, final_type=message.final_type)
        elif status == "Error":
            self._drive_failed(drive, message.error_code, message.error_text)

    def _drive_started(self, drive: _Drive) -> None:
        if drive.started:
            return  # re-pushed after a reconnect (tencent.md §5)
        now = time.monotonic()
        drive.started, drive.started_at = True, now
        drive.start_event.set()
        turn = self._turns.get(drive.turn_id)
        if turn is None or turn.started_emitted:
            return
        turn.started_emitted, turn.first_start = True, now
        self.emit(
            VendorEvent(
                EventKind.SPEECH_STARTED,
                turn_id=turn.turn_id,
                metadata={"reqId": drive.req_id},
                monotonic_time=now,
            )
        )

    def _mark_ended(self, drive: _Drive) -> float:
        """Mark ``drive`` over (waiters wake, it stops being the open drive); return the time."""
        now = time.monotonic()
        drive.ended, drive.ended_at = True, now
        drive.end_event.set()
        drive.start_event.set()
        if self._open_audio is drive:
            self._open_audio = None
        if self._open_stream is drive:
            self._open_stream = None
        return now

    def _drive_ended(self, drive: _Drive, *, final_type: int) -> None:
        if drive.ended:
            return
        if not drive.started:
            self._drive_started(drive)  # e.g. only the Over was re-pushed after a reconnect
        now = self._mark_ended(drive)
        turn = self._turns.get(drive.turn_id)
        if final_type == 2:
            self.warn(
                EventReason.VENDOR_AUTO_FINALIZED,
                "Tencent finalised the drive itself: no packet arrived within "
                f"StreamMaxInterval ({self.stream_max_interval_s:g} s)",
                turn_id=drive.turn_id,
                metadata={"reqId": drive.req_id},
            )
        if turn is not None:
            turn.last_end = now
            self._maybe_end_turn(turn)
        self._check_interrupt_acks()

    def _drive_failed(self, drive: _Drive, code: int, message: str) -> None:
        if drive.ended:
            return
        drive.failed = True
        self._mark_ended(drive)
        turn = self._turns.get(drive.turn_id)
        if turn is not None and not turn.failed_emitted and not turn.ended_emitted:
            turn.failed_emitted = True
            self.fail_turn(
                turn.turn_id,
                EventReason.VENDOR_DRIVE_FAILED,
                f"Tencent failed the {drive.kind} drive: code {code} {message}".strip(),
                metadata={"vendorCode": str(code), "reqId": drive.req_id},
            )
        self._check_interrupt_acks()

    def _on_drive_failed(self, drive: _Drive | None, message: DriveFailedMessage) -> None:
        code, text = message.error_code, message.error_text
        if drive is not None and drive.kind == "control":
            self.warn(
                EventReason.VENDOR_INTERRUPT_FAILED,
                f"Tencent rejected the interrupt: code {code} {text}".strip(),
                turn_id=drive.turn_id,
                metadata={"vendorCode": str(code)},
            )
            return
        if drive is not None and not drive.started and not drive.ended:
            self._drive_failed(drive, code, text)
            return
        if drive is not None and drive.failed:
            return  # the vendor repeats the failure for later packets of the drive
        # The avatar is speaking (or done): a non-fatal problem with part of the drive.
        self.warn(
            EventReason.VENDOR_DRIVE_ERROR,
            f"Tencent reported a drive error: code {code} {text}".strip(),
            turn_id=drive.turn_id if drive else "",
            metadata={"vendorCode": str(code), "reqId": message.req_id},
        )

    def _maybe_end_turn(self, turn: _Turn) -> None:
        if turn.ended_emitted or turn.failed_emitted or not turn.input_done:
            return
        if not turn.drives or not turn.started_emitted:
            return
        if not all(d.ended for d in turn.drives):
            return
        turn.ended_emitted = True
        played = None
        if turn.first_start is not None and turn.last_end is not None:
            played = max(0.0, turn.last_end - turn.first_start)
        self.emit(
            VendorEvent(
                EventKind.SPEECH_ENDED,
                turn_id=turn.turn_id,
                interrupted=turn.interrupted,
                played_s=played,
                metadata={"reqId": turn.drives[-1].req_id},
            )
        )

    def _check_interrupt_acks(self) -> None:
        pending: list[tuple[str, set[str]]] = []
        for turn_id, req_ids in self._interrupt_acks:
            if all(self._drives[r].ended for r in req_ids if r in self._drives):
                self.emit(VendorEvent(EventKind.INTERRUPTED, turn_id=turn_id))
            else:
                pending.append((turn_id, req_ids))
        self._interrupt_acks = pending
