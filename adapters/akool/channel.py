"""The Akool drive channel: the gateway's own participant in the session's LiveKit room.

Akool has no drive socket (akool.md §5): the gateway joins the room it created the
session with and talks to the avatar participant there.

* **Stream messages** (akool.md §5): JSON ``{"v": 2, "type": "chat" | "command", "mid", ...}`` sent
  with reliable ``publishData`` to the avatar. A text is sent as parts sharing one ``mid``
  with ``idx`` counting from 0 and ``fin`` on the last; each message stays within
  :data:`MAX_MESSAGE_BYTES` and messages are spaced to :data:`BYTES_PER_SECOND` (the sender
  waits ``size / rate`` after each message, as Akool's own sender does). Downstream: ``event``
  ``audio_start`` / ``audio_end``, ``chat`` from ``bot`` / ``user``, command acks.
* **Audio** (akool.md §6, lip-sync ``scene_mode: "meeting"``): LiveKit's avatar data-stream
  protocol, as livekit-agents' ``DataStreamAudioOutput`` speaks it: one byte stream per turn
  on topic ``lk.audio_stream`` to the avatar, with attributes ``sample_rate`` and
  ``num_channels``, closed at the end of the turn; RPC ``lk.clear_buffer`` to the avatar on
  interrupt; the avatar calls our ``lk.playback_started`` and ``lk.playback_finished``
  (payload ``{"playback_position": s, "interrupted": bool}``).

Each downstream message and playback report is parsed once into :mod:`adapters.akool.models`.
Events carry the gateway's turn ids. Akool's ``audio_start`` / ``audio_end`` events and the
playback RPCs carry no id, so turns are matched in the order they were sent (the avatar
speaks them in that order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from livekit import rtc

from adapters.akool.models import (
    ChatMessage,
    CommandAck,
    EventMessage,
    PlaybackFinished,
    parse_stream_message,
)
from core.contract import DriveChannel, EventKind, VendorEvent
from core.errors import (
    EventReason,
    Reason,
    VendorError,
    vendor_timeout,
    vendor_unavailable,
)
from core.resilience import send_until_acknowledged
from core.text import split_exact
from core.tracing import vendor_connect_span

log = structlog.get_logger("adapters.akool.channel")

VENDOR = "akool"

MAX_MESSAGE_BYTES = 950
"""Largest encoded stream message we send (B): the docs' MAX_ENCODED_SIZE (akool.md §5), under the
documented 1 KB message cap and the React demo's 960 B."""
BYTES_PER_SECOND = 5760
"""Data-channel byte rate we keep to (B/s): the vendor demo's LiveKit value, under the
documented 6 KB/s (akool.md §5)."""
MAX_TEXT_BYTES = 800
"""UTF-8 bytes of text that always fit one chat message with its envelope (declared as
``Capabilities.max_text_bytes``); longer or escape-heavy text is split into more parts."""

AUDIO_STREAM_TOPIC = "lk.audio_stream"
RPC_CLEAR_BUFFER = "lk.clear_buffer"
RPC_PLAYBACK_STARTED = "lk.playback_started"
RPC_PLAYBACK_FINISHED = "lk.playback_finished"

ACK_OK = 1000
RPC_TIMEOUT_S = 2.0
SET_PARAMS_ACK_WAIT_S = 2.0
"""How long :meth:`AkoolChannel.connect` waits for the ``set-params`` ack after each send (s),
akool.md §5.3. The avatar acks every command (akool.md §5.4): the ack shows that it hears us."""
SET_PARAMS_ATTEMPTS = 2
"""``set-params`` sends at most while waiting for its ack (the first included), akool.md §5.3: a
message sent before the avatar's data path is up is lost (akool.md §5.1); resending is safe."""


def escaped_len(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string (UTF-8, escapes counted, quotes not)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def encode(message: dict[str, Any]) -> bytes:
    """A stream message as Akool's clients send it: compact UTF-8 JSON."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def session_lost(detail: str) -> VendorError:
    """UNAVAILABLE ``VENDOR_SESSION_LOST``: the avatar or the room is gone."""
    return VendorError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.VENDOR_SESSION_LOST,
        f"the Akool session is gone: {detail}",
        vendor=VENDOR,
    )


@dataclass
class _TextTurn:
    mid: str
    next_idx: int = 0
    finished: bool = False


@dataclass(frozen=True)
class RoomAccess:
    """What the channel needs to join the session's room.

    Attributes:
        livekit_url: the LiveKit server (``ws(s)://``).
        token: access token for the gateway's participant.
        room_name: the room.
        avatar_identity: the avatar participant's identity.
        gateway_identity: our identity (in the token).
    """

    livekit_url: str
    token: str
    room_name: str
    avatar_identity: str
    gateway_identity: str


class AkoolChannel(DriveChannel):
    """The gateway's participant in one Akool session's LiveKit room.

    Args:
        access: room, identities and token.
        set_params: ``set-params`` data sent after joining (voice, language, mode,
            background), or ``None`` for none (then nothing shows that the avatar hears us).
        join_timeout_s: how long :meth:`connect` waits for the avatar to be in the room (s).
        on_avatar_ready: called once the avatar is in the room and has published its video:
            what Akool's LiveKit plugin waits for before it streams audio (akool.md §6).
        ack_wait_s: how long :meth:`connect` waits for the ``set-params`` ack after each of
            its ``ack_attempts`` sends (s).
    """

    def __init__(
        self,
        access: RoomAccess,
        *,
        set_params: dict[str, Any] | None = None,
        join_timeout_s: float = 15.0,
        ack_wait_s: float = SET_PARAMS_ACK_WAIT_S,
        ack_attempts: int = SET_PARAMS_ATTEMPTS,
        on_avatar_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_avatar_ready = on_avatar_ready
        self.access = access
        self.set_params = set_params
        self.join_timeout_s = join_timeout_s
        self.ack_wait_s = ack_wait_s
        self.ack_attempts = ack_attempts
        # Set by any set-params ack: the avatar hears us. Unheard: warn at the first turn.
        self._heard = asyncio.Event()
        self._unheard_warning = ""
        self.room = rtc.Room()
        self._avatar_joined = asyncio.Event()
        self._lost = False
        self._closing = False
        self._next_send = 0.0
        self._send_lock = asyncio.Lock()
        self._text_turns: dict[str, _TextTurn] = {}
        # Text turns sent and not yet started by the avatar, in order; the one speaking.
        self._text_queue: deque[str] = deque()
        self._text_speaking: tuple[str, float] | None = None
        self._commands: dict[str, tuple[str, str]] = {}
        self._interrupted: set[str] = set()
        self._writer: rtc.ByteStreamWriter | None = None
        self._writer_turn = ""
        # Audio turns streamed and not yet started, in order; the one playing.
        self._audio_queue: deque[str] = deque()
        self._audio_playing = ""
        # Turns whose streams an interrupt flushed: the avatar may still report their start
        # or end (its RPCs race the clear), and those reports belong to these turns.
        self._audio_flushed: deque[str] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- joining ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Join the room, wait (bounded) for the avatar, then confirm it hears us.

        The confirmation (:meth:`_confirm_heard`) sends ``set-params`` and waits, bounded, for
        its ack; without one the channel still opens.

        Raises:
            VendorError: VENDOR_UNAVAILABLE when the room cannot be joined, VENDOR_TIMEOUT
                when the avatar is not there within ``join_timeout_s``.
        """
        room = self.room
        room.on("data_received", self._on_data)
        room.on("participant_connected", self._on_participant_connected)
        room.on("track_published", self._on_track_published)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("disconnected", self._on_disconnected)
        # We only send and read data: no need to receive the avatar's media.
        joining = asyncio.ensure_future(
            room.connect(
                self.access.livekit_url, self.access.token, rtc.RoomOptions(auto_subscribe=False)
            )
        )
        try:
            # Shielded: an rtc connect cancelled half-way leaves the SDK's room half-open. A
            # caller that gives up (deadline) gets its cancel; the room is left once joined.
            with vendor_connect_span(VENDOR, self.access.livekit_url, "livekit"):
                await asyncio.shield(joining)
        except asyncio.CancelledError:
            joining.add_done_callback(lambda _: self._spawn(self.aclose()))
            raise
        except Exception as exc:  # the SDK raises ConnectError and plain Exceptions
            raise vendor_unavailable(
                VENDOR, f"cannot join LiveKit room {self.access.room_name}: {exc}"
            ) from None
        local = room.local_participant
        local.register_rpc_method(RPC_PLAYBACK_STARTED, self._on_playback_started)
        local.register_rpc_method(RPC_PLAYBACK_FINISHED, self._on_playback_finished)
        if self.access.avatar_identity in room.remote_participants:
            self._avatar_joined.set()
        try:
            await asyncio.wait_for(self._avatar_joined.wait(), self.join_timeout_s)
        except TimeoutError:
            await self.aclose()
            raise vendor_timeout(
                VENDOR,
                f"the avatar did not join LiveKit room {self.access.room_name} "
                f"within {self.join_timeout_s:g} s",
            ) from None
        avatar = room.remote_participants.get(self.access.avatar_identity)
        if avatar is not None and any(
            p.kind == rtc.TrackKind.KIND_VIDEO for p in avatar.track_publications.values()
        ):
            self._avatar_is_ready()
        if self.set_params:
            try:
                await self._confirm_heard(self.set_params)
            except asyncio.CancelledError:
                self._spawn(self.aclose())  # the caller gave up: nobody else will leave
                raise
            except VendorError:
                await self.aclose()
                raise
        self.mark_activity()

    async def _confirm_heard(self, set_params: dict[str, Any]) -> None:
        """Send ``set-params`` until the avatar acks it (bounded); note it when it never does.

        The avatar being in the room does not mean it hears us: what is sent before its data
        path is up is lost without an error (akool.md §5.1), and a text turn sent then is never
        spoken. The ack (akool.md §5.4) shows it hears us (akool.md §5.3). Waits at most
        ``ack_attempts * ack_wait_s`` seconds; without an ack the channel still opens, and the
        first turn gets a ``VENDOR_COMMAND_UNACKNOWLEDGED`` warning (a warning emitted now
        would reach no drive: the drive starts after the channel is open).
        """
        if await send_until_acknowledged(
            lambda: self.send_command("set-params", set_params),
            self._heard,
            attempts=self.ack_attempts,
            wait_s=self.ack_wait_s,
        ):
            return
        waited = self.ack_attempts * self.ack_wait_s
        self._unheard_warning = (
            f"the Akool avatar did not acknowledge set-params ({self.ack_attempts} sends, "
            f"{waited:g} s): it may not hear what is sent"
        )
        log.warning("akool_set_params_unacknowledged", room=self.access.room_name, waited_s=waited)

    def _warn_if_unheard(self, turn_id: str) -> None:
        """Warn the first turn once when ``set-params`` was never acked (and still is not)."""
        if self._unheard_warning and not self._heard.is_set():
            self.warn(
                EventReason.VENDOR_COMMAND_UNACKNOWLEDGED,
                self._unheard_warning,
                turn_id=turn_id,
                metadata={"command": "set-params"},
            )
        self._unheard_warning = ""

    # ---- sending ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lost or self.closed:
            raise session_lost("the channel is closed")

    async def _publish(
        self, message: dict[str, Any], *, turn_id: str = "", urgent: bool = False
    ) -> None:
        """Send one stream message, keeping to the size and byte-rate rules (akool.md §5).

        ``urgent`` (an interrupt) leaves at once, ahead of chat parts waiting for their share
        of the rate; its bytes still count, so the parts after it wait that much longer. A
        chat part of ``turn_id`` whose turn was interrupted while it waited is dropped.
        """
        payload = encode(message)
        if len(payload) > MAX_MESSAGE_BYTES:  # split_exact guarantees this; a bug otherwise
            raise ValueError(f"stream message of {len(payload)} B exceeds {MAX_MESSAGE_BYTES}")
        if urgent:
            self._check_open()
            start = max(time.monotonic(), self._next_send)
            self._next_send = start + len(payload) / BYTES_PER_SECOND
            await self._send_payload(payload)
            return
        async with self._send_lock:
            self._check_open()
            # Akool's sender waits ceil(1000*size/rate) ms after each message (akool.md §5): the
            # next message may leave once the previous one's share of the rate has passed.
            now = time.monotonic()
            if self._next_send > now:
                await asyncio.sleep(self._next_send - now)
                now = time.monotonic()
            if turn_id and turn_id in self._interrupted:
                return  # the interrupt went ahead of it: the avatar must not start it again
            self._next_send = max(now, self._next_send) + len(payload) / BYTES_PER_SECOND
            await self._send_payload(payload)

    async def _send_payload(self, payload: bytes) -> None:
        try:
            await self.room.local_participant.publish_data(
                payload,
                reliable=True,
                destination_identities=[self.access.avatar_identity],
            )
        except Exception as exc:  # PublishDataError is not exported by the SDK
            raise session_lost(f"cannot send to the room: {exc}") from None
        self.mark_activity()

    def _text_overhead(self, mid: str) -> int:
        """Envelope bytes of a chat part around its text (idx at its widest plausible)."""
        probe = {"v": 2, "type": "chat", "mid": mid, "idx": 99999999, "fin": False}
        return len(encode({**probe, "pld": {"text": ""}}))

    async def send_text(self, turn_id: str, text: str, final: bool) -> None:
        """Send text for ``turn_id`` as chat parts of one ``mid`` (``fin`` with ``final``).

        Raises:
            VendorError: VENDOR_SESSION_LOST when the room or the avatar is gone.
        """
        self._check_open()
        if not text and not final:
            return
        self._warn_if_unheard(turn_id)
        turn = self._text_turns.get(turn_id)
        if turn is None or turn.finished:
            turn = _TextTurn(mid=f"msg-{int(time.time() * 1000)}-{turn_id}")
            self._text_turns[turn_id] = turn
            self._text_queue.append(turn_id)
        budget = MAX_MESSAGE_BYTES - self._text_overhead(turn.mid)
        pieces = split_exact(text, budget, escaped_len) if text else [""]
        for i, piece in enumerate(pieces):
            fin = final and i == len(pieces) - 1
            await self._publish(
                {
                    "v": 2,
                    "type": "chat",
                    "mid": turn.mid,
                    "idx": turn.next_idx,
                    "fin": fin,
                    "pld": {"text": piece},
                },
                turn_id=turn_id,
            )
            turn.next_idx += 1
        if final:
            turn.finished = True

    async def send_command(
        self, cmd: str, data: dict[str, Any] | None = None, turn_id: str = ""
    ) -> str:
        """Send a command (``set-params``, ``interrupt``, ``set-action``); return its mid.

        The ack comes back as a command message with the same mid; a code other than 1000
        becomes a WARNING event.
        """
        mid = f"cmd-{int(time.time() * 1000)}-{secrets.token_hex(3)}"
        self._commands[mid] = (cmd, turn_id)
        pld: dict[str, Any] = {"cmd": cmd}
        if data is not None:
            pld["data"] = data
        # An interrupt must not wait behind text parts pacing to the byte rate.
        await self._publish(
            {"v": 2, "type": "command", "mid": mid, "pld": pld}, urgent=cmd == "interrupt"
        )
        return mid

    async def set_action(self, action: str = "", expression: str = "") -> None:
        """Play a gesture and/or an expression (``set-action``, akool.md §5), e.g. ``"nod"``."""
        data = {k: v for k, v in (("action", action), ("expression", expression)) if v}
        await self.send_command("set-action", data)

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None:
        """Write one frame to the turn's ``lk.audio_stream`` byte stream (opened on first use).

        Raises:
            VendorError: VENDOR_SESSION_LOST when the room or the avatar is gone.
        """
        self._check_open()
        self._warn_if_unheard(turn_id)
        if self._writer is None or self._writer_turn != turn_id:
            await self._close_writer()
            try:
                self._writer = await self.room.local_participant.stream_bytes(
                    f"AUDIO_{turn_id}_{secrets.token_hex(4)}",
                    topic=AUDIO_STREAM_TOPIC,
                    destination_identities=[self.access.avatar_identity],
                    attributes={"sample_rate": str(sample_rate_hertz), "num_channels": "1"},
                )
            except Exception as exc:
                raise session_lost(f"cannot open the audio stream: {exc}") from None
            self._writer_turn = turn_id
            self._audio_queue.append(turn_id)
            self._audio_flushed.clear()  # reports from before this stream are all in
        try:
            await self._writer.write(pcm)
        except Exception as exc:
            raise session_lost(f"cannot write audio: {exc}") from None
        self.mark_activity()

    async def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            # Closing the stream is the end-of-segment mark (DataStreamAudioOutput.flush).
            with contextlib.suppress(Exception):
                await writer.aclose()

    async def end_audio(self, turn_id: str) -> None:
        """Close the turn's byte stream: the avatar plays what it has and reports the end."""
        if self._writer_turn == turn_id:
            await self._close_writer()
        self.mark_activity()

    async def interrupt(self, turn_id: str) -> None:
        """Stop the avatar: ``interrupt`` command (acked → INTERRUPTED) and ``lk.clear_buffer``.

        Raises:
            VendorError: VENDOR_SESSION_LOST when the room or the avatar is gone.
        """
        self._check_open()
        self._interrupted.add(turn_id)
        # Akool drops what it had queued: text turns not started will never be spoken.
        self._text_queue.clear()
        streaming = self._writer is not None or bool(self._audio_playing or self._audio_queue)
        await self.send_command("interrupt", turn_id=turn_id)
        if streaming:
            await self._close_writer()
            # Streams not started yet are flushed by the clear too; the one playing answers
            # with playback_finished(interrupted=true).
            self._audio_flushed.extend(self._audio_queue)
            self._audio_queue.clear()
            try:
                await self.room.local_participant.perform_rpc(
                    destination_identity=self.access.avatar_identity,
                    method=RPC_CLEAR_BUFFER,
                    payload="",
                    response_timeout=RPC_TIMEOUT_S,
                )
            except Exception as exc:  # RpcError, or the room went away
                self.warn(
                    EventReason.VENDOR_CLEAR_BUFFER_FAILED,
                    f"the avatar did not clear its audio buffer: {exc}",
                    turn_id=turn_id,
                )
        self.mark_activity()

    # ---- receiving --------------------------------------------------------------------

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if (
            participant.identity == self.access.avatar_identity
            and publication.kind == rtc.TrackKind.KIND_VIDEO
        ):
            self._avatar_is_ready()

    def _avatar_is_ready(self) -> None:
        ready, self.on_avatar_ready = self.on_avatar_ready, None  # once
        if ready is not None:
            ready()

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.access.avatar_identity:
            self._avatar_joined.set()

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.access.avatar_identity:
            self._lose("the avatar left the room (session closed or its duration ran out)")

    def _on_disconnected(self, reason: Any) -> None:
        if not self._closing:
            self._lose(f"disconnected from the LiveKit room ({reason})")

    def _lose(self, detail: str) -> None:
        """Report SESSION_LOST once and release the room in the background."""
        if self._lost or self._closing:
            return
        self._lost = True
        self.closed = True
        log.warning("akool_session_lost", room=self.access.room_name, detail=detail)
        self.emit(
            VendorEvent(
                EventKind.SESSION_LOST,
                turn_id=self._text_speaking[0] if self._text_speaking else self._audio_playing,
                reason=Reason.VENDOR_SESSION_LOST,
                message=detail,
            )
        )
        self._spawn(self.aclose())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant else ""
        # Packets from an identity the SDK has not announced yet come with no participant;
        # only the avatar and we can publish data in this room (viewers are subscribe-only).
        if sender and sender != self.access.avatar_identity:
            return
        # Anything but a v2 chat, command or event is ignored, as the demo does (akool.md §5.4).
        message = parse_stream_message(packet.data)
        if isinstance(message, EventMessage):
            self._on_event(message)
        elif isinstance(message, ChatMessage):
            self._on_chat(message)
        elif isinstance(message, CommandAck):
            self._on_ack(message)

    def _on_event(self, message: EventMessage) -> None:
        now = time.monotonic()
        event = message.pld.event
        if event == "audio_start":
            # Dialogue-mode replies are not gateway turns: they get no turn id.
            turn_id = self._text_queue.popleft() if self._text_queue else ""
            self._text_speaking = (turn_id, now)
            self.emit(VendorEvent(EventKind.SPEECH_STARTED, turn_id=turn_id, monotonic_time=now))
        elif event == "audio_end" and self._text_speaking is not None:
            turn_id, started = self._text_speaking
            self._text_speaking = None
            self.emit(
                VendorEvent(
                    EventKind.SPEECH_ENDED,
                    turn_id=turn_id,
                    interrupted=turn_id in self._interrupted,
                    played_s=now - started,
                    monotonic_time=now,
                )
            )

    def _on_chat(self, message: ChatMessage) -> None:
        text, fin = message.pld.text, message.fin
        if message.pld.from_ == "user":
            # ASR of the user's microphone (dialogue mode): not a gateway turn.
            self.emit(VendorEvent(EventKind.TRANSCRIPT, text=text, role="user", final=fin))
            return
        # The turn being spoken; else the next one (should the echo precede audio_start).
        if self._text_speaking is not None:
            turn_id = self._text_speaking[0]
        else:
            turn_id = self._text_queue[0] if self._text_queue else ""
        self.emit(
            VendorEvent(EventKind.TRANSCRIPT, turn_id=turn_id, text=text, role="avatar", final=fin)
        )

    def _on_ack(self, message: CommandAck) -> None:
        entry = self._commands.pop(message.mid, None)
        if entry is None:
            return
        cmd, turn_id = entry
        if cmd == "set-params":
            self._heard.set()  # any answer shows the avatar hears us, a refusal too
        code = message.pld.code
        if code == ACK_OK:
            if cmd == "interrupt":
                self.emit(VendorEvent(EventKind.INTERRUPTED, turn_id=turn_id))
            return
        self.warn(
            EventReason.VENDOR_COMMAND_FAILED,
            f"akool answered {cmd} with code {code}: {message.pld.msg or ''}",
            turn_id=turn_id,
            metadata={"command": cmd, "vendorCode": str(code)},
        )

    def _from_avatar(self, data: rtc.RpcInvocationData) -> bool:
        return data.caller_identity == self.access.avatar_identity

    def _on_playback_started(self, data: rtc.RpcInvocationData) -> str:
        if not self._from_avatar(data):
            return "reject"
        if self._audio_queue:
            turn_id = self._audio_queue.popleft()
        elif self._audio_flushed:
            turn_id = self._audio_flushed.popleft()  # a flushed stream's late start
        else:
            return "ok"  # nothing of ours is queued: not a gateway turn, report nothing
        self._audio_playing = turn_id
        self.emit(VendorEvent(EventKind.SPEECH_STARTED, turn_id=turn_id))
        return "ok"

    def _on_playback_finished(self, data: rtc.RpcInvocationData) -> str:
        if not self._from_avatar(data):
            return "reject"
        report = PlaybackFinished.parse(data.payload)
        position = report.playback_position if report is not None else math.nan
        interrupted = report.interrupted if report is not None else False
        turn_id = self._audio_playing
        if not turn_id and self._audio_queue:
            turn_id = self._audio_queue.popleft()
        if not turn_id and self._audio_flushed:
            turn_id = self._audio_flushed.popleft()
        self._audio_playing = ""
        if not turn_id:
            return "ok"  # no turn of ours was playing: report nothing
        self.emit(
            VendorEvent(
                EventKind.SPEECH_ENDED,
                turn_id=turn_id,
                interrupted=interrupted or turn_id in self._interrupted,
                played_s=None if math.isnan(position) else position,
            )
        )
        return "ok"

    # ---- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Leave the room. Idempotent. Does not close the Akool session."""
        if self._closing:
            return
        self._closing = True
        self.closed = True
        await self._close_writer()
        with contextlib.suppress(Exception):
            await self.room.disconnect()
