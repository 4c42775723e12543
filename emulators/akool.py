"""A faithful local emulator of the Akool Streaming Avatar API, with a real avatar in LiveKit.

The sandbox the gateway runs against when no Akool credentials exist, and the test double of
the Akool adapter. It implements docs/vendors/akool.md:

* REST (plain HTTP, the gateway's ``API_URL``): ``x-api-key`` or the legacy clientId/secret →
  ``getToken`` → ``Authorization: Bearer`` flow (akool.md §1), the ``{code, msg, data}`` envelope
  (akool.md §2), avatar list/detail and session create/detail/close/list (akool.md §3–4) with
  Akool's
  codes (akool.md §8). Sessions have Akool's status (1 queueing, 2 processing, 3 completed, 4
  failed)
  and end when their ``duration`` runs out (× ``time_scale``).
* The avatar: on create, a real LiveKit participant joins the session's room with the
  credentials the caller brought (or ones the emulator mints, when none are given) and
  publishes a small video track, as Akool's avatar does. In the room it

  - answers stream messages (akool.md §5): acks commands (``set-params``, ``interrupt``,
    ``set-action``) with code 1000 or 1003; speaks chat text: ``event audio_start``, a ``bot``
    chat echo per part, speech time proportional to the text, ``event audio_end``;
  - enforces the documented data-channel limits: at most 1024 B per message and 6000 B/s
    (violations are recorded; oversized messages are dropped);
  - receives lip-sync audio over LiveKit's avatar data-stream protocol (akool.md §6): byte streams
  on
    ``lk.audio_stream`` with ``sample_rate`` / ``num_channels`` attributes, played in real time
    in 100 ms frames, ``lk.playback_started`` / ``lk.playback_finished`` RPCs back to the
    sender, ``lk.clear_buffer`` honoured;
  - records every message, command, text turn and audio turn (bytes, duration, sha256).

Everything is kept in :class:`SessionRecord` and served as JSON at ``GET /_emulator/state``.
Facts the vendor does not document are marked "(inferred)" where they are implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from livekit import api as lkapi
from livekit import rtc

from emulators._base import EmulatorServer
from emulators.livekit_server import LiveKitServer

__all__ = ["AkoolEmulator", "AudioTurn", "SessionRecord", "TextTurn"]

CODE_OK = 1000
CODE_PARAM = 1003
CODE_NOT_FOUND = 1008
CODE_TOKEN_INVALID = 1101
CODE_TOKEN_EMPTY = 1102
CODE_SESSION_NOT_FOUND = 1216
CODE_SESSION_CLOSED = 1219

_MESSAGES: dict[int, str] = {
    CODE_OK: "OK",
    CODE_PARAM: "parameter error",
    1005: "too frequent",
    1006: "insufficient quota",
    CODE_NOT_FOUND: "content does not exist",
    CODE_TOKEN_INVALID: "illegal or expired token",
    CODE_TOKEN_EMPTY: "token empty",
    1104: "insufficient credits",
    1200: "account blocked",
    1215: "liveAvatar busy",
    CODE_SESSION_NOT_FOUND: "liveAvatar session not exist",
    CODE_SESSION_CLOSED: "liveAvatar closed",
}

STATUS_QUEUEING = 1
STATUS_PROCESSING = 2
STATUS_COMPLETED = 3
STATUS_FAILED = 4

MAX_DURATION_S = 3600  # akool.md §4
DEFAULT_DURATION_S = 600  # (inferred) the docs do not give the default of the optional field
MAX_MESSAGE_BYTES = 1024  # akool.md §5 "≤1 KB per message"
MAX_BYTES_PER_SECOND = 6000  # akool.md §5 "≤6 KB/s"
# (inferred) arrival times jitter on a busy machine even when the sender paces exactly (and in
# tests the emulator shares the sender's event loop): the rate bucket holds one full message
# plus 0.5 s of rate before a burst counts as a violation. Sustained over-rate sending and
# bursts of five or more full messages are still caught.
_RATE_BUCKET_BYTES = MAX_MESSAGE_BYTES + MAX_BYTES_PER_SECOND // 2
CHARS_PER_SECOND = 15.0  # (inferred) speaking rate for chat text, about 150 words a minute
_TURN_IDLE_END_S = 30.0  # (inferred) a chat turn without fin ends after this long (× time_scale)
AUDIO_FRAME_S = 0.1  # the avatar plays data-stream audio in 100 ms frames (LK receiver default)
AUDIO_SAMPLE_RATE = 16000  # akool.md §6 "16 kHz mono"
AUDIO_STREAM_TOPIC = "lk.audio_stream"
RPC_CLEAR_BUFFER = "lk.clear_buffer"
RPC_PLAYBACK_STARTED = "lk.playback_started"
RPC_PLAYBACK_FINISHED = "lk.playback_finished"
DEFAULT_AVATAR_IDENTITY = "akool-avatar-agent"

_ACTIONS = frozenset(
    {"hand_wave", "cheer", "thumbs_up", "pump_fists", "nod", "shake", "waft_left", "waft_right"}
)
_EXPRESSIONS = frozenset(
    {"angry", "disgust", "fear", "happiness", "sadness", "surprise", "contempt"}
)

_DEFAULT_AVATARS: list[dict[str, Any]] = [
    {"avatar_id": "dvp_Tristan_cloth2_1080P", "name": "Tristan", "gender": "male"},
    {"avatar_id": "dvp_Alinna_realisticbg_20241224", "name": "Alinna", "gender": "female"},
    {"avatar_id": "dvp_Dave_casual_1080P", "name": "Dave", "gender": "male"},
]


def _object_id() -> str:
    """A 24-hex id like Akool's (Mongo ObjectId-looking, akool.md §9)."""
    return secrets.token_hex(12)


def _envelope(code: int, data: Any = None, msg: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "msg": msg or _MESSAGES.get(code, "error")}
    if data is not None:
        body["data"] = data
    # (inferred) business errors come back with HTTP 200 (akool.md §2).
    return web.json_response(body)


# --- Records -----------------------------------------------------------------------------------


@dataclass
class TextTurn:
    """One chat message (a ``mid``) the avatar received and spoke.

    Attributes:
        mid: the message id shared by the parts.
        text: the parts' texts concatenated in ``idx`` order.
        parts: how many parts arrived.
        fin: the last part (``fin: true``) arrived.
        max_part_bytes: largest encoded part (B).
        started / ended: audio_start / audio_end were sent.
        interrupted: an interrupt cut it short (or dropped it before it started).
        spoken_s: simulated speaking time (s, already × time_scale).
    """

    mid: str
    text: str = ""
    parts: int = 0
    fin: bool = False
    max_part_bytes: int = 0
    started: bool = False
    ended: bool = False
    interrupted: bool = False
    spoken_s: float = 0.0
    _texts: list[str] = field(default_factory=list, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class AudioTurn:
    """One ``lk.audio_stream`` byte stream (one turn of lip-sync audio).

    Attributes:
        stream_id: the byte stream's id.
        name: the stream's name.
        sender: identity of the participant that sent it.
        sample_rate / num_channels: the stream attributes.
        bytes_received: PCM bytes received (all of them, also after a clear).
        sha256: hex SHA-256 of the bytes received.
        duration_s: audio duration of the bytes received (s).
        played_s: audio played before it ended or was cleared (s).
        complete: the sender closed the stream (the segment's end mark arrived).
        started / finished: playback_started / playback_finished were sent.
        interrupted: ``lk.clear_buffer`` cut it short.
    """

    stream_id: str
    name: str
    sender: str
    sample_rate: int
    num_channels: int
    bytes_received: int = 0
    sha256: str = hashlib.sha256().hexdigest()
    duration_s: float = 0.0
    played_s: float = 0.0
    complete: bool = False
    started: bool = False
    finished: bool = False
    interrupted: bool = False
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def add(self, chunk: bytes) -> None:
        """Record and buffer a chunk of PCM."""
        self._hash.update(chunk)
        self.sha256 = self._hash.hexdigest()
        self.bytes_received += len(chunk)
        frame_bytes = 2 * max(1, self.num_channels)
        self.duration_s = self.bytes_received / frame_bytes / max(1, self.sample_rate)
        if not (self.interrupted or self.finished):
            self._buffer.extend(chunk)
        self._changed.set()

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class SessionRecord:
    """Everything the emulator knows about one streaming session.

    Attributes:
        id: the session ``_id``.
        avatar_id: the avatar.
        status: 1 queueing, 2 processing, 3 completed, 4 failed (akool.md §4).
        duration_s: the requested ``duration`` (s, unscaled).
        request: the create body, with the LiveKit token removed.
        room_name / avatar_identity / client_identity: the LiveKit room and identities.
        token_claims: what the avatar's LiveKit token grants (identity, room, kind, ...).
        end_reason: ``closed``, ``expired``, ``failed`` or ``ended`` (a test ended it).
        close_key: the body key ``session/close`` used (``id`` or ``session_id``).
        messages: every stream message received (decoded, with size and time).
        commands: commands received, with the code they were acked with.
        violations: data-channel rule violations (size, rate, format).
        send_failures: messages the avatar could not publish (a reply the client never got).
        unheard: messages that reached the avatar before it listened (the ``avatar:listen``
            fault): lost, never processed nor acked.
        text_turns / audio_turns: what the avatar was asked to say / play.
        processing_since: ``time.monotonic()`` when the avatar was in the room and the status
            became 2 (processing), ``None`` before.
        params: the merged ``set-params`` data.
    """

    id: str
    avatar_id: str
    status: int
    duration_s: int
    mode_type: int
    scene_mode: str
    stream_type: str
    request: dict[str, Any]
    livekit_url: str
    room_name: str
    avatar_identity: str
    client_identity: str
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    processing_since: float | None = None
    end_reason: str = ""
    join_error: str = ""
    close_key: str = ""
    token_claims: dict[str, Any] = field(default_factory=dict)
    client_credentials: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    send_failures: list[dict[str, Any]] = field(default_factory=list)
    unheard: list[dict[str, Any]] = field(default_factory=list)
    text_turns: list[TextTurn] = field(default_factory=list)
    audio_turns: list[AudioTurn] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        """Queueing or processing: billed and alive."""
        return self.status in (STATUS_QUEUEING, STATUS_PROCESSING)

    def data(self) -> dict[str, Any]:
        """The SessionResponse ``data`` Akool returns (create, detail, list)."""
        return {
            "_id": self.id,
            "uid": 1,
            "type": 2,
            "status": self.status,
            "stream_type": self.stream_type,
            "avatar_id": self.avatar_id,
            "duration": self.duration_s,
            "credentials": dict(self.client_credentials),
        }

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        out = {
            k: v
            for k, v in self.__dict__.items()
            if not k.startswith("_") and k not in ("text_turns", "audio_turns")
        }
        out["text_turns"] = [t.to_json() for t in self.text_turns]
        out["audio_turns"] = [t.to_json() for t in self.audio_turns]
        return out


# --- The avatar participant --------------------------------------------------------------------


class _Avatar:
    """The avatar of one session: a LiveKit participant speaking Akool's room protocol."""

    def __init__(self, emulator: AkoolEmulator, record: SessionRecord) -> None:
        self.emulator = emulator
        self.record = record
        self.room = rtc.Room()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._bucket = float(_RATE_BUCKET_BYTES)
        self._bucket_at = time.monotonic()
        self._chats: dict[str, TextTurn] = {}
        self._speech_queue: deque[TextTurn] = deque()
        self._speech_ready = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._streams: deque[AudioTurn] = deque()
        self._streams_ready = asyncio.Event()
        self._playing: AudioTurn | None = None
        self._rpc_queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._video: rtc.VideoSource | None = None
        self._join_task: asyncio.Future[None] | None = None
        # time.monotonic() until which data is lost (the avatar:listen fault); None: not decided.
        self._deaf_until: float | None = None

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def join(self, url: str, token: str) -> None:
        """Join the room; a concurrent :meth:`leave` waits for the join to settle first.

        The join runs as its own shielded task: cancelling an rtc ``connect`` half-way leaves
        the SDK's room half-open (it panics waiting for the room's event subscription).
        """
        self._join_task = asyncio.ensure_future(self._join(url, token))
        await asyncio.shield(self._join_task)

    async def _join(self, url: str, token: str) -> None:
        room = self.room
        room.on("data_received", self._on_data)
        await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
        room.local_participant.register_rpc_method(RPC_CLEAR_BUFFER, self._on_clear_buffer)
        room.register_byte_stream_handler(AUDIO_STREAM_TOPIC, self._on_stream)
        # Akool's avatar publishes its video; a publisher is also announced to the room at
        # once (LiveKit batches join/leave updates of subscribe-only participants by ~3 s).
        self._video = rtc.VideoSource(64, 64)
        track = rtc.LocalVideoTrack.create_video_track("avatar_video", self._video)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        )
        self.spawn(self._video_loop())
        self.spawn(self._speaker())
        self.spawn(self._player())
        self.spawn(self._rpc_sender())

    async def leave(self) -> None:
        if self._join_task is not None and not self._join_task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._join_task), 20.0)
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.room.disconnect()

    async def _video_loop(self) -> None:
        frame = rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA, bytes(64 * 64 * 4))
        while self._video is not None:
            self._video.capture_frame(frame)
            await asyncio.sleep(1.0)

    # ---- data channel ---------------------------------------------------------------------

    def _violation(self, kind: str, **detail: Any) -> None:
        self.record.violations.append({"kind": kind, "at": time.time(), **detail})

    def _deaf(self, now: float) -> bool:
        """Whether data arriving at ``now`` (``time.monotonic()``) is lost (akool.md §9).

        Fault ``avatar:listen`` (``faults.stall_next("avatar:listen", s)``): the avatar is in
        the room and publishing, but loses what it is sent for ``s`` seconds from the first
        message that reaches it, as an avatar whose data path is not up yet does.
        """
        if self._deaf_until is None:
            fault = self.emulator.faults.take("avatar:listen")
            self._deaf_until = now + fault.stall_s if fault is not None else 0.0
        return now < self._deaf_until

    def _on_data(self, packet: rtc.DataPacket) -> None:
        size = len(packet.data)
        now = time.monotonic()
        if self._deaf(now):
            self.record.unheard.append({"at": time.time(), "bytes": size})
            return
        self._bucket = min(
            float(_RATE_BUCKET_BYTES), self._bucket + (now - self._bucket_at) * MAX_BYTES_PER_SECOND
        )
        self._bucket_at = now
        self._bucket -= size
        if self._bucket < 0:
            self._violation("rate", bytes=size, limit_bytes_per_s=MAX_BYTES_PER_SECOND)
        if size > MAX_MESSAGE_BYTES:
            # Akool's transports refuse messages over 1 KB (akool.md §5): the message is lost.
            self._violation("message_too_large", bytes=size, limit_bytes=MAX_MESSAGE_BYTES)
            return
        try:
            message = json.loads(packet.data)
        except ValueError:
            self._violation("invalid_json", bytes=size)
            return
        sender = packet.participant.identity if packet.participant else ""
        self.record.messages.append(
            {"at": time.time(), "bytes": size, "sender": sender, "message": message}
        )
        if not isinstance(message, dict) or message.get("v") != 2:
            return  # v1 and unknown messages are ignored, as Akool's clients do (akool.md §5)
        pld = message.get("pld")
        if not isinstance(pld, dict):
            self._violation("invalid_message", reason="pld missing")
            return
        if message.get("type") == "chat":
            self._on_chat(message, pld, size)
        elif message.get("type") == "command":
            self.spawn(self._on_command(str(message.get("mid", "")), pld))
        else:
            self._violation("invalid_message", reason=f"type {message.get('type')!r}")

    def _on_chat(self, message: dict[str, Any], pld: dict[str, Any], size: int) -> None:
        mid, idx, fin, text = (
            message.get("mid"),
            message.get("idx"),
            message.get("fin"),
            pld.get("text"),
        )
        if not isinstance(mid, str) or not isinstance(text, str) or not isinstance(idx, int):
            self._violation("invalid_message", reason="chat needs mid, idx and pld.text")
            return
        turn = self._chats.get(mid)
        if turn is None:
            turn = TextTurn(mid=mid)
            self._chats[mid] = turn
            self.record.text_turns.append(turn)
            self._speech_queue.append(turn)
            self._speech_ready.set()
        if turn.fin:
            self._violation("chat_after_fin", mid=mid, idx=idx)
            return
        if idx != turn.parts:
            self._violation("idx_out_of_order", mid=mid, idx=idx, expected=turn.parts)
        turn._texts.append(text)
        turn.text += text
        turn.parts += 1
        turn.max_part_bytes = max(turn.max_part_bytes, size)
        turn.fin = bool(fin)
        turn._changed.set()

    async def _on_command(self, mid: str, pld: dict[str, Any]) -> None:
        cmd = str(pld.get("cmd", ""))
        data = pld.get("data") if isinstance(pld.get("data"), dict) else {}
        assert isinstance(data, dict)
        code, msg = CODE_OK, "OK"
        if cmd == "interrupt":
            self._interrupt_speech()
        elif cmd == "set-params":
            problem = _check_params(data)
            if problem:
                code, msg = CODE_PARAM, problem
            else:
                self.record.params.update(data)
        elif cmd == "set-action":
            action, expression = data.get("action"), data.get("expression")
            if (
                (action is None and expression is None)
                or (action is not None and action not in _ACTIONS)
                or (expression is not None and expression not in _EXPRESSIONS)
            ):
                code, msg = CODE_PARAM, "unknown action or expression"
        else:
            code, msg = CODE_PARAM, f"unknown command {cmd!r}"
        fault = self.emulator.faults.take(f"command:{cmd}")
        if fault is not None:
            await self.emulator.apply_stall(fault)
            if fault.code is not None:
                code, msg = fault.code, _MESSAGES.get(fault.code, "error")
        self.record.commands.append({"at": time.time(), "mid": mid, "cmd": cmd, "code": code})
        await self._send(
            {"v": 2, "type": "command", "mid": mid, "pld": {"cmd": cmd, "code": code, "msg": msg}}
        )

    async def _send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            await self.room.local_participant.publish_data(payload, reliable=True)
        except Exception as exc:  # the room may be going away; never silently
            self.record.send_failures.append(
                {"at": time.time(), "message": message, "error": repr(exc)}
            )

    # ---- speaking chat text ---------------------------------------------------------------

    def _interrupt_speech(self) -> None:
        for turn in self._speech_queue:
            turn.interrupted = True
        self._speech_queue.clear()
        self._interrupt.set()

    async def _speak_for(self, seconds: float) -> bool:
        """Speak for ``seconds``; False if an interrupt cut it short."""
        try:
            await asyncio.wait_for(self._interrupt.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _speaker(self) -> None:
        scale = self.emulator.time_scale
        while True:
            while not self._speech_queue:
                self._speech_ready.clear()
                await self._speech_ready.wait()
            turn = self._speech_queue.popleft()
            self._interrupt.clear()
            turn.started = True
            await self._send({"v": 2, "type": "event", "pld": {"event": "audio_start"}})
            spoken = 0
            while True:
                if spoken < len(turn._texts):
                    text = turn._texts[spoken]
                    if self.record.mode_type == 2:
                        text = f"You said: {text}" if text else text
                    last = turn.fin and spoken == len(turn._texts) - 1
                    await self._send(
                        {
                            "v": 2,
                            "type": "chat",
                            "mid": turn.mid,
                            "idx": spoken,
                            "fin": last,
                            "pld": {"from": "bot", "text": text},
                        }
                    )
                    spoken += 1
                    seconds = len(text.strip()) / CHARS_PER_SECOND * scale
                    started = time.monotonic()
                    finished = await self._speak_for(seconds)
                    turn.spoken_s += time.monotonic() - started
                    if not finished:
                        turn.interrupted = True
                        break
                    continue
                if turn.fin:
                    break
                turn._changed.clear()
                try:
                    waiter = asyncio.ensure_future(turn._changed.wait())
                    cut = asyncio.ensure_future(self._interrupt.wait())
                    done, pending = await asyncio.wait(
                        {waiter, cut},
                        timeout=_TURN_IDLE_END_S * scale,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()
                    cut.cancel()
                if cut in done:
                    turn.interrupted = True
                    break
                if not done:
                    self._violation("turn_not_finalised", mid=turn.mid)
                    break
            turn.ended = True
            await self._send({"v": 2, "type": "event", "pld": {"event": "audio_end"}})

    async def say_as_user(self, text: str) -> None:
        """Send what Akool's ASR would send for user microphone speech (``from: user``)."""
        mid = f"asr-{int(time.time() * 1000)}"
        await self._send(
            {
                "v": 2,
                "type": "chat",
                "mid": mid,
                "idx": 0,
                "fin": True,
                "pld": {"from": "user", "text": text},
            }
        )

    # ---- lip-sync audio (LiveKit avatar data stream) --------------------------------------

    def _on_stream(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        attrs = reader.info.attributes or {}
        try:
            rate = int(attrs.get("sample_rate", "0"))
            channels = int(attrs.get("num_channels", "0"))
        except ValueError:
            rate, channels = 0, 0
        turn = AudioTurn(
            stream_id=reader.info.stream_id,
            name=getattr(reader.info, "name", ""),
            sender=sender,
            sample_rate=rate,
            num_channels=channels,
        )
        if rate != AUDIO_SAMPLE_RATE or channels != 1:
            # Akool lip-syncs 16 kHz mono (akool.md §6); the LK receiver refuses streams without
            # them.
            self._violation("audio_format", sample_rate=rate, num_channels=channels)
        self.record.audio_turns.append(turn)
        self._streams.append(turn)
        self._streams_ready.set()
        self.spawn(self._read_stream(reader, turn))

    async def _read_stream(self, reader: rtc.ByteStreamReader, turn: AudioTurn) -> None:
        try:
            async for chunk in reader:
                turn.add(bytes(chunk))
        except Exception as exc:  # the sender left mid-stream
            self._violation("audio_stream_error", stream_id=turn.stream_id, error=str(exc))
        turn.complete = True
        turn._changed.set()

    def _on_clear_buffer(self, data: rtc.RpcInvocationData) -> str:
        # Only the participant that streams audio to us may clear it (the LK receiver rule).
        senders = {t.sender for t in self.record.audio_turns}
        if senders and data.caller_identity not in senders:
            return "reject"
        playing = self._playing
        if playing is not None:
            playing.interrupted = True
            playing._buffer.clear()
            playing._changed.set()
        return "ok"

    async def _player(self) -> None:
        """Play streams in order, in real time, in 100 ms frames (the LK receiver's frames)."""
        while True:
            while not self._streams:
                self._streams_ready.clear()
                await self._streams_ready.wait()
            turn = self._streams.popleft()
            self._playing = turn
            frame_bytes = (
                int(AUDIO_FRAME_S * max(1, turn.sample_rate)) * 2 * max(1, turn.num_channels)
            )
            bytes_per_s = max(1, turn.sample_rate) * 2 * max(1, turn.num_channels)
            deadline = time.monotonic()
            while not turn.interrupted:
                buffer = turn._buffer
                if len(buffer) < frame_bytes and not turn.complete:
                    turn._changed.clear()
                    await turn._changed.wait()
                    deadline = max(deadline, time.monotonic())  # an underrun plays silence
                    continue
                if not buffer:
                    break
                frame = bytes(buffer[:frame_bytes])
                del buffer[:frame_bytes]
                if not turn.started:
                    turn.started = True
                    await self._rpc_queue.put((turn.sender, RPC_PLAYBACK_STARTED, ""))
                deadline += len(frame) / bytes_per_s
                wait = deadline - time.monotonic()
                if wait > 0:
                    turn._changed.clear()
                    # A clear ends the frame early: the mouth stops at once.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wait_cleared(turn), wait)
                if turn.interrupted:
                    turn.played_s += max(
                        0.0, len(frame) / bytes_per_s - (deadline - time.monotonic())
                    )
                    break
                turn.played_s += len(frame) / bytes_per_s
            self._playing = None
            if turn.started:
                turn.finished = True
                payload = json.dumps(
                    {"playback_position": round(turn.played_s, 4), "interrupted": turn.interrupted}
                )
                await self._rpc_queue.put((turn.sender, RPC_PLAYBACK_FINISHED, payload))

    @staticmethod
    async def _wait_cleared(turn: AudioTurn) -> None:
        while not turn.interrupted:
            turn._changed.clear()
            await turn._changed.wait()

    async def _rpc_sender(self) -> None:
        """Notify the sender in order, retrying 3 times as the LK receiver does."""
        while True:
            destination, method, payload = await self._rpc_queue.get()
            for attempt in range(3):
                try:
                    await self.room.local_participant.perform_rpc(
                        destination_identity=destination, method=method, payload=payload
                    )
                    break
                except Exception as exc:
                    if attempt == 2:
                        self._violation("rpc_failed", method=method, error=str(exc))
                    await asyncio.sleep(0.1)


def _check_params(data: dict[str, Any]) -> str:
    """Why ``set-params`` data is invalid ("" when it is fine), akool.md §5."""
    if "mode" in data and data["mode"] not in (1, 2):
        return "mode must be 1 or 2"
    vparams = data.get("vparams", {})
    if not isinstance(vparams, dict):
        return "vparams must be an object"
    speed = vparams.get("speed")
    if speed is not None and not (isinstance(speed, int | float) and 0.8 <= speed <= 1.2):
        return "vparams.speed must be between 0.8 and 1.2"
    return ""


# --- The emulator ------------------------------------------------------------------------------


class AkoolEmulator(EmulatorServer):
    """Akool Streaming Avatar API emulator: REST + an avatar participant per session in LiveKit.

    Args:
        api_key: the API key ``x-api-key`` must carry (akool.md §1).
        client_id: the legacy clientId ``getToken`` accepts.
        client_secret: the legacy clientSecret ``getToken`` accepts.
        livekit_url: the LiveKit server used when a create brings no credentials (the
            emulator then mints tokens itself, as Akool issues credentials, akool.md §4).
        livekit_api_key: that server's API key (also used to verify brought tokens).
        livekit_api_secret: that server's API secret.
        time_scale: multiplies simulated time: session ``duration`` and speaking time of chat
            text (0.01 makes a 3600 s session last 36 s). Audio plays in real time.
        host: the address to bind.
        port: the port to bind; 0 picks a free one.
        tls: serve https with a self-signed certificate.
        public_url: ``http(s)://host:port`` clients reach the emulator by (``None``: the bound
            address); see :class:`emulators._base.EmulatorServer`.
        avatar_livekit_url: the URL the avatars join LiveKit by, when the emulator reaches the
            server by another name than its clients do (containers); ``None``: the URL the
            session's credentials name. Records and answers keep the credentials' URL.
    """

    def __init__(
        self,
        *,
        api_key: str,
        client_id: str,
        client_secret: str,
        livekit_url: str,
        livekit_api_key: str,
        livekit_api_secret: str,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        public_url: str | None = None,
        avatar_livekit_url: str | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, public_url=public_url)
        self.avatar_livekit_url = avatar_livekit_url
        self.api_key = api_key
        self.client_id = client_id
        self.client_secret = client_secret
        self.livekit_url = livekit_url
        self.livekit_api_key = livekit_api_key
        self.livekit_api_secret = livekit_api_secret
        self.time_scale = time_scale
        self.queueing_s = 0.0
        """How long a new session stays queueing (status 1) before its avatar joins (s)."""
        self.sessions: dict[str, SessionRecord] = {}
        self.avatars: list[dict[str, Any]] = [
            {
                **a,
                "_id": _object_id(),
                "uid": 1,
                "type": 2,
                "from": 2,
                "voice_id": "",
                "url": f"https://static.example/{a['avatar_id']}.mp4",
                "thumbnailUrl": f"https://static.example/{a['avatar_id']}.jpg",
                "available": True,
            }
            for a in _DEFAULT_AVATARS
        ]
        self.tokens: set[str] = set()
        self.requests: deque[dict[str, Any]] = deque(maxlen=500)
        self.calls: dict[str, int] = {}
        """Requests received per operation (``session/close``, ...), faults and rejections too."""
        self._avatars_rt: dict[str, _Avatar] = {}
        self._bg: set[asyncio.Task[Any]] = set()
        self._verifier = lkapi.TokenVerifier(livekit_api_key, livekit_api_secret)

    # ---- routes -----------------------------------------------------------------------

    @classmethod
    def on_livekit(
        cls,
        livekit: LiveKitServer,
        *,
        api_key: str,
        client_id: str,
        client_secret: str,
        time_scale: float = 1.0,
    ) -> AkoolEmulator:
        """An emulator whose avatars join ``livekit`` (its URL and API key pair)."""
        return cls(
            api_key=api_key,
            client_id=client_id,
            client_secret=client_secret,
            livekit_url=livekit.url,
            livekit_api_key=livekit.api_key,
            livekit_api_secret=livekit.api_secret,
            time_scale=time_scale,
        )

    def build_routes(self, app: web.Application) -> None:
        """Akool's REST paths (akool.md §3)."""
        routes: list[tuple[str, str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
            ("POST", "/api/open/v3/getToken", "getToken", self._get_token),
            ("GET", "/api/open/v4/liveAvatar/avatar/list", "avatar/list", self._avatar_list),
            ("GET", "/api/open/v4/liveAvatar/avatar/detail", "avatar/detail", self._avatar_detail),
            ("POST", "/api/open/v4/liveAvatar/session/create", "session/create", self._create),
            ("GET", "/api/open/v4/liveAvatar/session/detail", "session/detail", self._detail),
            ("POST", "/api/open/v4/liveAvatar/session/close", "session/close", self._close),
            ("GET", "/api/open/v4/liveAvatar/session/list", "session/list", self._list),
        ]
        for method, path, op, handler in routes:
            app.router.add_route(method, path, self._wrap(op, handler))

    def _wrap(
        self, op: str, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            entry: dict[str, Any] = {"op": op, "at": time.time(), "auth": "none"}
            self.requests.append(entry)
            self.calls[op] = self.calls.get(op, 0) + 1
            fault = self.faults.take(op)
            await self.apply_stall(fault)
            if fault is not None and fault.http_status is not None:
                entry["code"] = f"http_{fault.http_status}"
                return web.Response(status=fault.http_status, text="injected fault")
            if op != "getToken":
                auth_code = self._authenticate(request, entry)
                if auth_code != CODE_OK:
                    entry["code"] = auth_code
                    return _envelope(auth_code)
            if fault is not None and fault.code is not None:
                entry["code"] = fault.code
                return _envelope(fault.code)
            response = await handler(request)
            entry.setdefault("code", CODE_OK)
            return response

        return run

    def _authenticate(self, request: web.Request, entry: dict[str, Any]) -> int:
        """akool.md §1: ``Authorization: Bearer`` wins over ``x-api-key``; none at all is 1102."""
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            entry["auth"] = "bearer"
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return CODE_TOKEN_EMPTY
            return CODE_OK if token in self.tokens else CODE_TOKEN_INVALID
        key = request.headers.get("x-api-key")
        if key is not None:
            entry["auth"] = "api_key"
            return CODE_OK if secrets.compare_digest(key, self.api_key) else CODE_TOKEN_INVALID
        return CODE_TOKEN_EMPTY

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    async def _get_token(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        client_id, client_secret = body.get("clientId"), body.get("clientSecret")
        if not client_id or not client_secret:
            return _envelope(CODE_TOKEN_EMPTY)
        if client_id != self.client_id or not secrets.compare_digest(
            str(client_secret), self.client_secret
        ):
            return _envelope(CODE_TOKEN_INVALID)
        token = "ey" + secrets.token_urlsafe(32)
        self.tokens.add(token)
        # getToken is the one answer with the token at the top level, not in data (akool.md §1).
        return web.json_response({"code": CODE_OK, "msg": "OK", "token": token})

    def _page(self, request: web.Request) -> tuple[int, int] | None:
        try:
            page = int(request.query.get("page", "1"))
            size = int(request.query.get("size", "100"))
        except ValueError:
            return None
        if page < 1 or not 1 <= size <= 100:
            return None
        return page, size

    async def _avatar_list(self, request: web.Request) -> web.Response:
        paging = self._page(request)
        if paging is None:
            return _envelope(CODE_PARAM)
        page, size = paging
        result = self.avatars[(page - 1) * size : page * size]
        return _envelope(CODE_OK, {"count": len(self.avatars), "result": result})

    def _find_avatar(self, avatar_id: str) -> dict[str, Any] | None:
        return next((a for a in self.avatars if a["avatar_id"] == avatar_id), None)

    async def _avatar_detail(self, request: web.Request) -> web.Response:
        avatar = self._find_avatar(request.query.get("avatar_id", ""))
        if avatar is None:
            return _envelope(CODE_NOT_FOUND)
        return _envelope(CODE_OK, {**avatar, "status": 3, "platform": "open"})

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if body is None:
            return _envelope(CODE_PARAM, msg="body must be a JSON object")
        avatar_id = body.get("avatar_id")
        if not isinstance(avatar_id, str) or not avatar_id:
            return _envelope(CODE_PARAM, msg="avatar_id is required")
        duration = body.get("duration", DEFAULT_DURATION_S)
        if not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION_S:
            return _envelope(CODE_PARAM, msg=f"duration must be 1..{MAX_DURATION_S} seconds")
        mode_type = body.get("mode_type", 2)  # (inferred) default: dialogue
        if mode_type not in (1, 2):
            return _envelope(CODE_PARAM, msg="mode_type must be 1 or 2")
        stream_type = body.get("stream_type", "agora")
        if stream_type != "livekit":
            # (inferred) Agora/TRTC need their native SDKs; this emulator serves LiveKit only.
            return _envelope(CODE_PARAM, msg="this emulator supports stream_type livekit only")
        speed = (body.get("voice_params") or {}).get("speed")
        if speed is not None and not (isinstance(speed, int | float) and 0.8 <= speed <= 1.2):
            return _envelope(CODE_PARAM, msg="voice_params.speed must be between 0.8 and 1.2")
        if self._find_avatar(avatar_id) is None:
            return _envelope(CODE_NOT_FOUND)
        session_id = _object_id()
        credentials = body.get("credentials") or {}
        if not isinstance(credentials, dict):
            return _envelope(CODE_PARAM, msg="credentials must be an object")
        byo = bool(credentials.get("livekit_token"))
        client_credentials: dict[str, Any]
        if byo:
            url = str(credentials.get("livekit_url") or "")
            if not url:
                return _envelope(CODE_PARAM, msg="credentials.livekit_url is required")
            token = str(credentials["livekit_token"])
            room = str(credentials.get("livekit_room_name") or "")
            avatar_identity = str(credentials.get("livekit_server_identity") or "")
            client_identity = str(credentials.get("livekit_client_identity") or "")
            client_credentials = {"livekit_url": url, "livekit_room_name": room}
        else:
            # No BYO credentials: Akool issues them (akool.md §4); the emulator mints for its
            # server.
            url = self.livekit_url
            room = f"akool-{session_id}"
            avatar_identity = DEFAULT_AVATAR_IDENTITY
            client_identity = f"client-{session_id[:8]}"
            token = self._mint(avatar_identity, room, duration, kind="agent")
            client_credentials = {
                "livekit_url": url,
                "livekit_token": self._mint(client_identity, room, duration),
                "livekit_room_name": room,
                "livekit_server_identity": avatar_identity,
                "livekit_client_identity": client_identity,
            }
        request_record = json.loads(json.dumps(body))
        if isinstance(request_record.get("credentials"), dict):
            request_record["credentials"].pop("livekit_token", None)
        record = SessionRecord(
            id=session_id,
            avatar_id=avatar_id,
            status=STATUS_QUEUEING,
            duration_s=duration,
            mode_type=mode_type,
            scene_mode=str(body.get("scene_mode") or ""),
            stream_type=stream_type,
            request=request_record,
            livekit_url=url,
            room_name=room,
            avatar_identity=avatar_identity,
            client_identity=client_identity,
            client_credentials=client_credentials,
        )
        self.sessions[session_id] = record
        self._spawn(self._run_session(record, url, token))
        return _envelope(CODE_OK, record.data())

    def _mint(self, identity: str, room: str, duration: int, *, kind: str = "") -> str:
        token = (
            lkapi.AccessToken(self.livekit_api_key, self.livekit_api_secret)
            .with_identity(identity)
            .with_grants(lkapi.VideoGrants(room_join=True, room=room))
            .with_ttl(datetime.timedelta(seconds=duration + 600))
        )
        if kind:
            token = token.with_kind(kind)  # type: ignore[arg-type]
        return token.to_jwt()

    async def _run_session(self, record: SessionRecord, url: str, token: str) -> None:
        """Join the room as the avatar, then end the session when its duration runs out."""
        try:
            claims = self._verifier.verify(token)
        except Exception as exc:  # bad signature, expired, wrong issuer
            record.join_error = f"invalid LiveKit token: {exc}"
            await self._end(record, STATUS_FAILED, "failed")
            return
        video = claims.video
        record.token_claims = {
            "identity": claims.identity,
            "room": video.room if video else "",
            "kind": claims.kind,
            "attributes": dict(claims.attributes or {}),
            "can_publish": bool(video and video.can_publish),
            "can_publish_data": bool(video and video.can_publish_data),
        }
        if not record.room_name and video:
            record.room_name = video.room
        if not record.avatar_identity:
            record.avatar_identity = claims.identity
        if self.queueing_s:
            await asyncio.sleep(self.queueing_s)  # status 1 (queueing) for a while
        avatar = _Avatar(self, record)
        self._avatars_rt[record.id] = avatar
        try:
            await asyncio.wait_for(avatar.join(self.avatar_livekit_url or url, token), 15.0)
        except Exception as exc:
            record.join_error = f"cannot join the LiveKit room: {exc}"
            await self._end(record, STATUS_FAILED, "failed")
            return
        if not record.open:  # closed while the avatar was joining
            await avatar.leave()
            return
        record.status = STATUS_PROCESSING
        record.processing_since = time.monotonic()
        # Credits are pre-charged for the whole duration, which counts from creation (akool.md §4).
        remaining = record.created_at + record.duration_s * self.time_scale - time.time()
        await asyncio.sleep(max(0.0, remaining))
        if record.open:
            await self._end(record, STATUS_COMPLETED, "expired")

    async def _end(self, record: SessionRecord, status: int, reason: str) -> None:
        if record.ended_at is None:
            record.status = status
            record.ended_at = time.time()
            record.end_reason = reason
        avatar = self._avatars_rt.pop(record.id, None)
        if avatar is not None:
            await avatar.leave()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _detail(self, request: web.Request) -> web.Response:
        record = self.sessions.get(request.query.get("id", ""))
        if record is None:
            return _envelope(CODE_SESSION_NOT_FOUND)
        return _envelope(CODE_OK, record.data())

    async def _close(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        # The docs send {"id"}; Akool's LiveKit plugin sends {"session_id"}: accept both
        # (akool.md §3).
        key = "id" if "id" in body else "session_id"
        record = self.sessions.get(str(body.get(key, "")))
        if record is None:
            return _envelope(CODE_SESSION_NOT_FOUND)
        if not record.open:
            return _envelope(CODE_SESSION_CLOSED)  # (inferred) a second close says "closed"
        record.close_key = key
        await self._end(record, STATUS_COMPLETED, "closed")
        return _envelope(CODE_OK)

    async def _list(self, request: web.Request) -> web.Response:
        paging = self._page(request)
        if paging is None:
            return _envelope(CODE_PARAM)
        page, size = paging
        status = request.query.get("status")
        records = [r for r in self.sessions.values() if status is None or str(r.status) == status]
        result = [r.data() for r in records[(page - 1) * size : page * size]]
        return _envelope(CODE_OK, {"count": len(records), "result": result})

    # ---- test and admin hooks ---------------------------------------------------------

    def expire_tokens(self) -> None:
        """Revoke every bearer token issued so far (the next call with one answers 1101)."""
        self.tokens.clear()

    async def end_session(self, session_id: str, reason: str = "ended") -> None:
        """End a session now as if its duration ran out: status 3, the avatar leaves."""
        await self._end(self.sessions[session_id], STATUS_COMPLETED, reason)

    async def say_as_user(self, session_id: str, text: str) -> None:
        """Make the avatar send a ``from: user`` transcript (Akool's ASR of the user's mic)."""
        await self._avatars_rt[session_id].say_as_user(text)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02
    ) -> None:
        """Wait until ``predicate()`` holds (tests); raises ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(interval_s)

    def open_sessions(self) -> list[str]:
        """Ids of sessions still queueing or processing (billed): the leak audit."""
        return [r.id for r in self.sessions.values() if r.open]

    def snapshot(self) -> dict[str, Any]:
        """JSON view, also served at ``GET /_emulator/state``.

        Returns:
            ``sessions`` (every :class:`SessionRecord` field, turns and violations included),
            ``open_sessions``, ``requests`` (op, auth kind, code; the last 500), ``calls``
            (requests per operation, all of them), ``tokens_issued`` and ``faults_injected``.
        """
        return {
            "base_url": self.base_url,
            "livekit_url": self.livekit_url,
            "sessions": {sid: r.to_json() for sid, r in self.sessions.items()},
            "open_sessions": self.open_sessions(),
            "requests": list(self.requests),
            "calls": dict(self.calls),
            "tokens_issued": len(self.tokens),
            "faults_injected": self.faults.injected,
        }

    async def stop(self) -> None:
        """Make every avatar leave, cancel timers, close the REST server."""
        for avatar in list(self._avatars_rt.values()):
            await avatar.leave()
        self._avatars_rt.clear()
        for task in list(self._bg):
            task.cancel()
        for task in list(self._bg):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().stop()
