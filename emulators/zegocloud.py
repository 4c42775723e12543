"""A faithful local emulator of the ZEGOCLOUD Digital Human streaming API.

This is the sandbox the gateway runs against when no ZEGOCLOUD credentials exist, and the test
double of the ZEGOCLOUD adapter. It implements docs/vendors/zegocloud.md and, like
the real service, rejects what the vendor rejects with the documented codes:

* a REST server (plain HTTP, the gateway's ``API_URL``) answering
  ``POST /?Action=...&AppId=&SignatureNonce=&Timestamp=&Signature=&SignatureVersion=2.0``
  with the common envelope ``{"Code","Message","RequestId","Data"}`` (zegocloud.md §1–4);
* a WSS drive server (TLS with a self-signed certificate, clients must skip verification as
  ZEGO says, zegocloud.md §8) that receives ``Start`` / raw s16le PCM / ``Stop`` and plays the
  audio back in real time;
* signed HTTP callbacks (zegocloud.md §6) for task status (EventType 3) and drive status
  (EventType 4), delivered in order per task, with the documented retry schedule.

Everything the emulator received is kept in :class:`TaskRecord` / :class:`DriveRecord` and
served as JSON at ``GET /_emulator/state`` so tests and ``make demo`` can audit it.

Facts the vendor does not document are marked "(inferred)" where they are implemented.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from aiohttp import WSMsgType, web

from emulators._base import EmulatorServer, FaultPlan

__all__ = [
    "ZegocloudEmulator",
    "DriveRecord",
    "TaskRecord",
    "ZegoApiError",
    "callback_signature",
    "request_signature",
    "CODE_OK",
]

# --- Return codes ------------------------------------------------------------------------------
# Gateway-level codes: zegocloud.md §2 (shared ZEGO AIGC gateway page, applicability
# inferred). Business codes: zegocloud.md §10 (return-codes.mdx).
CODE_OK = 0
CODE_BAD_APP_ID = 100000001
CODE_TIMESTAMP_EMPTY = 100000002
CODE_TIMESTAMP_FORMAT = 100000003
CODE_SIGNATURE_EXPIRED = 100000004
CODE_SIGNATURE_INVALID = 100000005
CODE_ACTION_EMPTY = 100000006
CODE_ACTION_UNSUPPORTED = 100000007
CODE_NONCE_EMPTY = 100000008
CODE_SIGNATURE_EMPTY = 100000009
CODE_NO_SERVER_SECRET = 100000010
CODE_BODY_UNREADABLE = 100000012
CODE_SIGNATURE_VERSION_EMPTY = 100000013
CODE_SIGNATURE_VERSION_UNSUPPORTED = 100000014
CODE_INVALID_PARAMS = 400000001
CODE_DIGITAL_HUMAN_NOT_FOUND = 400000003
CODE_TIMBRE_NOT_FOUND = 400000004
CODE_TASK_NOT_FOUND = 400000005
CODE_STREAM_NOT_STARTED = 400000006
CODE_STREAM_STOPPED = 400000007
CODE_CONCURRENCY_LIMIT = 400000008
CODE_STREAM_ID_EXISTS = 400000015
CODE_RATE_LIMITED = 400010009

_MESSAGES: dict[int, str] = {
    CODE_OK: "success",
    CODE_BAD_APP_ID: "AppId format error",
    CODE_TIMESTAMP_EMPTY: "Timestamp is empty",
    CODE_TIMESTAMP_FORMAT: "Timestamp format error",
    CODE_SIGNATURE_EXPIRED: "signature expired",
    CODE_SIGNATURE_INVALID: "signature error",
    CODE_ACTION_EMPTY: "Action is empty",
    CODE_ACTION_UNSUPPORTED: "unsupported Action",
    CODE_NONCE_EMPTY: "SignatureNonce is empty",
    CODE_SIGNATURE_EMPTY: "Signature is empty",
    CODE_NO_SERVER_SECRET: "cannot get ServerSecret",
    CODE_BODY_UNREADABLE: "cannot read body",
    CODE_SIGNATURE_VERSION_EMPTY: "SignatureVersion is empty",
    CODE_SIGNATURE_VERSION_UNSUPPORTED: "unsupported SignatureVersion",
    CODE_INVALID_PARAMS: "invalid params",
    CODE_DIGITAL_HUMAN_NOT_FOUND: "digital human not found",
    CODE_TIMBRE_NOT_FOUND: "timbre not found",
    CODE_TASK_NOT_FOUND: "task not found",
    CODE_STREAM_NOT_STARTED: "video stream not started",
    CODE_STREAM_STOPPED: "video stream already stopped",
    CODE_CONCURRENCY_LIMIT: "concurrency limit reached",
    CODE_STREAM_ID_EXISTS: "StreamId already exists",
    CODE_RATE_LIMITED: "rate limited",
}

# Task status (zegocloud.md §5): 1 initialising, 2 init failed, 3 streaming, 4 stopping, 5 stopped.
TASK_INITIALISING = 1
TASK_INIT_FAILED = 2
TASK_STREAMING = 3
TASK_STOPPING = 4
TASK_STOPPED = 5

# Drive status (zegocloud.md §5, §6): 1 queued, 2 driving (started speaking), 3 failed, 4 ended.
DRIVE_QUEUED = 1
DRIVE_DRIVING = 2
DRIVE_FAILED = 3
DRIVE_ENDED = 4

# Callback EventType (zegocloud.md §6).
EVENT_TASK_STATUS = 3
EVENT_DRIVE_STATUS = 4

_SIGNATURE_MAX_SKEW_S = 600  # zegocloud.md §2 / §9: "Allowed skew is at most 10 min".
_TTL_RANGE = (10, 86400)  # zegocloud.md §4 / §9, seconds, default 86400.
_MAX_IDLE_RANGE = (30, 86400)  # zegocloud.md §4 / §9, seconds, default 900.
_TTL_DEFAULT = 86400
_MAX_IDLE_DEFAULT = 900
_TEXT_MAX_CHARS = 1800  # zegocloud.md §4 DriveByText / 1.9.
_LIST_LIMIT_RANGE = (1, 20)  # zegocloud.md §4 GetDigitalHumanList / GetTimbreList.
_OFFSET_RANGE = (0, 1_000_000)  # zegocloud.md §4 GetDigitalHumanList.
_RTC_ID_MAX_BYTES = 128  # zegocloud.md §4 CreateDigitalHumanStreamTask RTCConfig.
_STREAM_ID_RE = re.compile(r"^[0-9A-Za-z_-]+$")  # zegocloud.md §4 StreamId charset.
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")  # zegocloud.md §4 BackgroundColor "#RRGGBB".
_UINT32_RE = re.compile(r"^[0-9]{1,10}$")  # zegocloud.md §2 AppId is uint32.
_INT64_RE = re.compile(r"^-?[0-9]{1,19}$")  # zegocloud.md §2 Timestamp is int64.
_SAMPLE_RATES = (16000, 24000)  # zegocloud.md §8 [hist]: "only 16000 or 24000 are supported".
_CHANNELS = (1, 2)  # zegocloud.md §8: 1 mono, 2 stereo interleaved.
_VOICE_CHANNELS = (0, 1, 2)  # zegocloud.md §8: 0 mixed, 1 left, 2 right.
_CALLBACK_RETRY_DELAYS_S = (
    2.0,
    4.0,
    8.0,
    16.0,
    32.0,
)  # zegocloud.md §6: "up to 5 times, at 2,4,8,16,32 s".
_NO_STOP_GRACE_S = 2.0  # (inferred) how long a drive lingers after its socket closed sans Stop.
_STOPPING_TO_STOPPED_S = 0.05  # (inferred) how long a task shows Status 4 before 5.
_PLAYBACK_EPSILON_S = 0.002  # slack so "ended" is never reported a hair before the audio ends.
_CALLBACK_TIMEOUT_S = 5.0  # (inferred) per-attempt timeout of a callback POST.

# WebSocket close codes used by the drive server. 1008 (policy violation) for protocol errors is
# (inferred): zegocloud.md §8 says error signalling is undocumented and "most likely it closes".
_WS_CLOSE_POLICY = 1008
_WS_CLOSE_NORMAL = 1000

_ACTIONS = (
    "GetDigitalHumanList",
    "GetDigitalHumanInfo",
    "GetTimbreList",
    "CreateDigitalHumanStreamTask",
    "GetDigitalHumanStreamTaskStatus",
    "QueryDigitalHumanStreamTasks",
    "StopDigitalHumanStreamTask",
    "DriveByText",
    "DriveByWsStream",
    "DoAction",
    "InterruptDriveTask",
)


# --- Signatures --------------------------------------------------------------------------------


def request_signature(
    app_id: int | str, nonce: str, server_secret: str, timestamp: int | str
) -> str:
    """Return the REST request signature of zegocloud.md §2.

    ``md5_hex(str(AppId) + SignatureNonce + ServerSecret + str(Timestamp))``, plain
    concatenation, no separators.

    Args:
        app_id: the project AppID (uint32).
        nonce: the ``SignatureNonce`` query parameter.
        server_secret: the project's ServerSecret.
        timestamp: the ``Timestamp`` query parameter, unix seconds.

    Returns:
        32-character lowercase hex MD5 digest.
    """
    signed = f"{app_id}{nonce}{server_secret}{timestamp}"
    return hashlib.md5(signed.encode()).hexdigest()  # the vendor's algorithm, not for security


def callback_signature(callback_secret: str, timestamp: str, nonce: str) -> str:
    """Return the callback ``Signature`` of zegocloud.md §6.

    Sort ``[callback_secret, timestamp, nonce]`` lexicographically, concatenate, SHA-1 hex.

    Args:
        callback_secret: the secret ZEGO support configured for the callback URL.
        timestamp: the callback body's ``Timestamp`` string (unix seconds).
        nonce: the callback body's ``Nonce`` string.

    Returns:
        40-character lowercase hex SHA-1 digest.
    """
    joined = "".join(sorted([callback_secret, timestamp, nonce]))
    return hashlib.sha1(joined.encode()).hexdigest()  # the vendor's algorithm, not for security


# --- Records -----------------------------------------------------------------------------------


@dataclass
class DriveRecord:
    """Everything the emulator knows about one drive (a ``DriveId``).

    Byte, hash and violation fields accumulate over the drive's life, including a second
    Start/Stop cycle on the same socket (which vendor example code does, zegocloud.md §8); status
    and
    time fields describe the latest cycle.

    Attributes:
        drive_id: the ``DriveId`` returned by DriveByText / DriveByWsStream.
        task_id: the stream task this drive belongs to.
        kind: ``"ws"`` (DriveByWsStream PCM) or ``"text"`` (DriveByText).
        sample_rate: PCM sample rate in Hz from the Start frame (``None`` for text drives or
            before Start).
        channels: PCM channel count from the Start frame (1 or 2; ``None`` before Start).
        voice_channel: ``VoiceChannel`` from the Start frame (0 mixed, 1 left, 2 right).
        bytes_received: PCM bytes received (s16le, interleaved when stereo).
        duration_s: seconds of audio received, ``bytes / (2 * sample_rate * channels)`` per
            frame; for text drives the emulated speech length ``len(text) * seconds_per_char``.
        sha256: hex SHA-256 of every PCM byte received for the drive, in order.
        text: the text of a text drive.
        timbre_id: ``TTSConfig.TimbreId`` of a text drive.
        interrupt_mode: ``InterruptMode`` of a text drive (0 queue, 1 interrupt).
        start_time: monotonic s when the drive took the floor (WS: Start frame).
        first_audio_time: monotonic s of the first audio byte (text: start of speech).
        stop_time: monotonic s the Stop frame arrived.
        end_time: monotonic s the drive reached status 3 or 4.
        stopped: a Stop frame was received for the latest cycle.
        interrupted: the drive was cut short (InterruptDriveTask, a newer drive, task stop).
        status: 1 queued, 2 driving, 3 failed, 4 ended (zegocloud.md §5).
        violations: protocol violations the client committed, human readable.
        underruns: times playback caught up with the received audio before Stop, i.e. the
            sender was slower than real time and the avatar would have stuttered.
        cycles: how many Start frames were accepted.
    """

    drive_id: str
    task_id: str
    kind: Literal["ws", "text"]
    sample_rate: int | None = None
    channels: int | None = None
    voice_channel: int | None = None
    bytes_received: int = 0
    duration_s: float = 0.0
    sha256: str = hashlib.sha256().hexdigest()
    text: str | None = None
    timbre_id: str | None = None
    interrupt_mode: int | None = None
    start_time: float | None = None
    first_audio_time: float | None = None
    stop_time: float | None = None
    end_time: float | None = None
    stopped: bool = False
    interrupted: bool = False
    status: int = DRIVE_QUEUED
    violations: list[str] = field(default_factory=list)
    underruns: int = 0
    cycles: int = 0

    @property
    def begun(self) -> bool:
        """A text drive, or a WS drive whose socket sent a ``Start`` or broke a rule.

        A WS drive asked for ahead of its turn (zegocloud.md §8.6) and not started yet, or
        closed unused, has not begun.
        """
        return self.kind == "text" or self.sample_rate is not None or bool(self.violations)


@dataclass
class TaskRecord:
    """Everything the emulator knows about one stream task (a ``TaskId``).

    Attributes:
        task_id: the ``TaskId`` returned by CreateDigitalHumanStreamTask.
        digital_human_id: ``DigitalHumanConfig.DigitalHumanId``.
        room_id: ``RTCConfig.RoomId`` (RTC room the avatar publishes into).
        stream_id: ``RTCConfig.StreamId`` (the avatar's stream in that room).
        status: 1 initialising, 2 init failed, 3 streaming, 4 stopping, 5 stopped (zegocloud.md §5).
        ttl: ``TTL`` in s (the request's value or the 86400 s default).
        max_idle_time: ``MaxIdleTime`` in s (the request's value or the 900 s default).
        ttl_given: ``TTL`` was present in the request (the gateway must always set backstops).
        max_idle_given: ``MaxIdleTime`` was present in the request.
        fail_reason: ``FailReason`` when status is 2.
        create_time: unix s of creation (``CreateTime``).
        last_drive_time: monotonic s of the last drive activity, ``None`` if never driven.
        streaming_since: monotonic s when the task reached Status 3, ``None`` before.
        stop_reason: ``"api"``, ``"ttl"`` or ``"idle"`` once stopping.
        background_color: ``DigitalHumanConfig.BackgroundColor``.
        output_mode: ``ExtraConfig.OutputMode`` if sent ([hist] field, zegocloud.md §4 notes).
        max_parallel_sockets: most drive sockets open at once for this task; the docs ask for
            one connection per task (zegocloud.md §8), so anything above 1 is suspect.
        billed_from: Unix s (wall clock) the create request was handled: from then on the
            task holds the account's concurrency and is billed (zegocloud.md §9).
        billed_until: Unix s it stopped being billed: it began stopping (Stop, TTL, idle)
            or failed to initialise; ``None`` while it is billed.
    """

    task_id: str
    digital_human_id: str
    room_id: str
    stream_id: str
    status: int = TASK_INITIALISING
    ttl: int = _TTL_DEFAULT
    max_idle_time: int = _MAX_IDLE_DEFAULT
    ttl_given: bool = False
    max_idle_given: bool = False
    fail_reason: str = ""
    create_time: int = 0
    last_drive_time: float | None = None
    stop_reason: str | None = None
    background_color: str = "#000000"
    output_mode: int | None = None
    max_parallel_sockets: int = 0
    billed_from: float = field(default_factory=time.time)
    billed_until: float | None = None
    streaming_since: float | None = None


class ZegoApiError(Exception):
    """A business or gateway error answered as ``{"Code": code, "Message": message}``."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message or _MESSAGES.get(code, "error")


# --- Built-in catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Avatar:
    digital_human_id: str
    name: str
    is_public: bool
    actions: tuple[str, ...]


# zegocloud.md §4: GetDigitalHumanInfo sample action names include idle_action and mute_action.
_AVATARS: tuple[_Avatar, ...] = (
    _Avatar("zego_emma", "Emma", True, ("idle_action", "mute_action", "wave_hand")),
    _Avatar("zego_lily", "Lily", True, ("idle_action", "mute_action")),
    _Avatar("zego_ryan", "Ryan", False, ("idle_action", "mute_action", "nod")),
)
_TIMBRES: tuple[tuple[str, str], ...] = (
    ("zego_timbre_en_female", "English Female"),
    ("zego_timbre_en_male", "English Male"),
    ("zego_timbre_zh_female", "Mandarin Female"),
)
_MEDIA_BASE = "https://media.zego-emulator.invalid"  # .invalid: never resolvable (RFC 2606).


# --- Runtime state (not part of the JSON view) -------------------------------------------------


@dataclass
class _DriveRuntime:
    """Playback and socket state of one drive."""

    hasher: Any = field(default_factory=hashlib.sha256)
    token: str | None = None
    token_used: bool = False
    ended: bool = False
    in_cycle: bool = False  # between an accepted Start and its Stop
    audio_started: bool = False  # playback running for the current play-through
    anchor_pos: float = 0.0  # playhead position (s of audio) at anchor_time
    anchor_time: float = 0.0  # monotonic s
    received_s: float = 0.0  # s of audio received in the current play-through
    starving: bool = False  # an underrun is in progress (already counted)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None  # text playback timer / WS playback loop

    def playhead(self, now: float) -> float:
        """Seconds of audio played so far in this play-through (never beyond what arrived)."""
        return min(self.received_s, self.anchor_pos + (now - self.anchor_time))

    def end_at(self) -> float:
        """Monotonic s at which the audio received so far will have been played."""
        return self.anchor_time + (self.received_s - self.anchor_pos)


@dataclass
class _TaskRuntime:
    """Queue, timers, sockets and callback sender of one task."""

    created_mono: float
    last_activity: float
    current: DriveRecord | None = None
    queue: deque[DriveRecord] = field(default_factory=deque)
    drive_ids: list[str] = field(default_factory=list)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    ready_timer: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    outbox: deque[dict[str, Any]] = field(default_factory=deque)
    sender: asyncio.Task[None] | None = None


@dataclass
class _WsSession:
    """One accepted WSS drive connection."""

    drive: DriveRecord
    ws: web.WebSocketResponse
    saw_start: bool = False


class _RestServer(EmulatorServer):
    """The REST endpoint (the gateway's ``API_URL``), plain HTTP unless ``tls``.

    With ``with_drive`` it also serves the drive socket (one port for a standalone emulator).
    """

    def __init__(
        self,
        emulator: ZegocloudEmulator,
        host: str,
        *,
        port: int = 0,
        tls: bool = False,
        public_url: str | None = None,
        with_drive: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, public_url=public_url)
        self._emulator = emulator
        self._with_drive = with_drive

    def build_routes(self, app: web.Application) -> None:
        """Route ``POST /`` (every Action, zegocloud.md §1), and ``GET /ws`` if single-port."""
        app.router.add_post("/", self._emulator._handle_rest)
        if self._with_drive:
            app.router.add_get("/ws", self._emulator._handle_ws)

    def snapshot(self) -> dict[str, Any]:
        """Return the emulator's JSON view."""
        return self._emulator.snapshot()


class _DriveServer(EmulatorServer):
    """The TLS WebSocket drive endpoint (``WssAddress``, zegocloud.md §8)."""

    def __init__(self, emulator: ZegocloudEmulator, host: str) -> None:
        super().__init__(host=host, tls=True)
        self._emulator = emulator

    def build_routes(self, app: web.Application) -> None:
        """Route ``GET /ws?Token=`` to the emulator."""
        app.router.add_get("/ws", self._emulator._handle_ws)

    def snapshot(self) -> dict[str, Any]:
        """Return the emulator's JSON view."""
        return self._emulator.snapshot()


def _mono() -> float:
    return time.monotonic()


# --- Body field helpers (every type/range failure is 400000001, zegocloud.md §10)
# -------------------


def _opt_int(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    if key not in body or body[key] is None:
        return default
    value = body[key]
    # JSON true/false are ints in Python; the vendor's typed (Go) decoder would reject them.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ZegoApiError(CODE_INVALID_PARAMS, f"{key} must be an integer in [{lo},{hi}]")
    return value


def _opt_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ZegoApiError(CODE_INVALID_PARAMS, f"{key} must be a string")
    return value


def _req_str(body: Mapping[str, Any], key: str, code: int = CODE_INVALID_PARAMS) -> str:
    value = _opt_str(body, key)
    if not value:
        raise ZegoApiError(code, f"{key} is required")
    return value


def _opt_obj(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ZegoApiError(CODE_INVALID_PARAMS, f"{key} must be an object")
    return value


# --- The emulator ------------------------------------------------------------------------------


class ZegocloudEmulator:
    """ZEGOCLOUD Digital Human API emulator: REST + WSS drive server + signed callbacks.

    Args:
        app_id: the AppID requests must carry (uint32, zegocloud.md §2).
        server_secret: the ServerSecret request signatures are checked against (zegocloud.md §2).
        callback_url: where task/drive callbacks are POSTed (zegocloud.md §6); ``None`` disables
            them. Settable later through :attr:`callback_url`.
        callback_secret: secret the callback ``Signature`` is computed with (zegocloud.md §6).
        task_ready_delay_s: seconds a task stays in Status 1 (initialising) before Status 3.
            Emulator choice, not scaled by ``time_scale``.
        qps_per_action: calls admitted per Action per sliding second, per AppId (zegocloud.md §9:
        10/s).
        concurrency_limit: live tasks (Status 1 or 3) allowed at once (zegocloud.md §9, code
        400000008).
        text_seconds_per_char: emulated speech length of DriveByText, s per character.
        time_scale: multiplier on vendor-documented durations (TTL, MaxIdleTime, callback
            retry delays, the no-Stop grace) so tests can exercise them quickly.
        host: address the servers bind (loopback unless standalone).
        port: REST port; 0 picks a free one.
        tls: serve REST over https (self-signed); a single-port drive socket is then wss.
        public_url: ``http(s)://host:port`` clients reach the REST server by; the
            ``WssAddress`` of a single-port emulator is built from it. ``None``: the bound
            address.
        single_port: serve the drive socket on the REST port, as ``ws(s)://<public>/ws``, so
            a standalone emulator needs one published port. Default: a separate wss server
            on a free port with a self-signed certificate, as ZEGO's drive socket is.
    """

    def __init__(
        self,
        *,
        app_id: int,
        server_secret: str,
        callback_url: str | None = None,
        callback_secret: str = "",
        task_ready_delay_s: float = 0.3,
        qps_per_action: int = 10,
        concurrency_limit: int = 50,
        text_seconds_per_char: float = 0.06,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        public_url: str | None = None,
        single_port: bool = False,
    ) -> None:
        self.app_id = app_id
        self.server_secret = server_secret
        self.callback_url = callback_url
        self.callback_secret = callback_secret
        self.task_ready_delay_s = task_ready_delay_s
        self.qps_per_action = qps_per_action
        self.concurrency_limit = concurrency_limit
        self.text_seconds_per_char = text_seconds_per_char
        self.time_scale = time_scale
        self.host = host

        self.faults = FaultPlan()
        self.rest: EmulatorServer = _RestServer(
            self, host, port=port, tls=tls, public_url=public_url, with_drive=single_port
        )
        self.drive_server: EmulatorServer = self.rest if single_port else _DriveServer(self, host)
        # One FaultPlan for both servers: operation names are Action names, and a dropped
        # drive socket counts as an injected fault in the same tally.
        self.rest.faults = self.faults
        self.drive_server.faults = self.faults

        self.drives: dict[str, DriveRecord] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.calls: dict[str, int] = {}
        self.task_calls: dict[str, dict[str, int]] = {}  # TaskId -> Action -> calls received
        self.rejected: dict[int, int] = {}
        self.rejected_http: dict[int, int] = {}
        self.callback_stats: dict[str, int] = {
            "queued": 0,
            "attempts": 0,
            "delivered": 0,
            "failed": 0,
        }
        self.reused_signatures = 0

        self._task_rt: dict[str, _TaskRuntime] = {}
        self._drive_rt: dict[str, _DriveRuntime] = {}
        self._tokens: dict[str, str] = {}  # Token -> DriveId
        self._qps: dict[tuple[int, str], deque[float]] = {}
        self._seen_signatures: set[str] = set()
        self._signature_order: deque[tuple[float, str]] = deque()  # (monotonic s, signature)
        self._dropped: set[web.WebSocketResponse] = set()
        self._init_failures: deque[str] = deque()
        self._bg: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._closing = False
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
            "GetDigitalHumanList": self._get_digital_human_list,
            "GetDigitalHumanInfo": self._get_digital_human_info,
            "GetTimbreList": self._get_timbre_list,
            "CreateDigitalHumanStreamTask": self._create_task,
            "GetDigitalHumanStreamTaskStatus": self._get_task_status,
            "QueryDigitalHumanStreamTasks": self._query_tasks,
            "StopDigitalHumanStreamTask": self._stop_task_api,
            "DriveByText": self._drive_by_text,
            "DriveByWsStream": self._drive_by_ws_stream,
            "DoAction": self._do_action,
            "InterruptDriveTask": self._interrupt_drive_task,
        }
        assert set(self._handlers) == set(_ACTIONS)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the REST server and the drive server (WSS, self-signed), or one if single-port."""
        self._closing = False
        self._http = httpx.AsyncClient(timeout=_CALLBACK_TIMEOUT_S)
        await self.rest.start()
        if self.drive_server is not self.rest:
            await self.drive_server.start()

    async def stop(self) -> None:
        """Close every socket, cancel timers and pending callbacks, release the ports."""
        self._closing = True
        # Close drive sockets as "going away" (1001) first, so that shutting the emulator down is
        # not counted as an injected drop by EmulatorServer.stop().
        for rt in self._task_rt.values():
            for ws in list(rt.sockets):
                self.drive_server.untrack_websocket(ws)
                await ws.close(code=1001, message=b"emulator stopping")
        await self.drive_server.stop()
        await self.rest.stop()
        tasks = list(self._bg)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._bg.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---- public inspection / fault API ---------------------------------------------------------

    def open_tasks(self) -> list[TaskRecord]:
        """Return tasks still billed and not being stopped (Status 1 or 3): the leak audit.

        A task in Status 4 has accepted its stop and ends by itself within milliseconds, so
        it is not a leak.
        """
        return [t for t in self.tasks.values() if t.status in (1, 3)]

    def drives_for_task(self, task_id: str, *, unstarted: bool = False) -> list[DriveRecord]:
        """Return the drives of ``task_id`` that began (:attr:`DriveRecord.begun`), oldest first.

        With ``unstarted``, the WS drives asked for and never started instead.
        """
        rt = self._task_rt.get(task_id)
        drives = [self.drives[d] for d in rt.drive_ids] if rt else []
        return [d for d in drives if d.begun != unstarted]

    def open_drive_sockets(self, task_id: str) -> int:
        """How many WSS drive sockets of ``task_id`` are open now (zegocloud.md §8.1: one)."""
        rt = self._task_rt.get(task_id)
        return len(rt.sockets) if rt else 0

    def calls_for_task(self, task_id: str) -> dict[str, int]:
        """Return how many calls of each Action named ``task_id`` in their body.

        Every call received counts, whatever its answer (errors and injected faults too), so
        tests can bound how often a client retried one operation on one task.
        """
        return dict(self.task_calls.get(task_id, {}))

    def fail_next_task_init(self, reason: str = "emulated init failure") -> None:
        """Make the next created task go 1 -> 2 (init failed, ``FailReason`` = ``reason``)."""
        self._init_failures.append(reason)

    async def drop_drive_sockets(self) -> int:
        """Fault: close every open WSS drive socket with code 1011; return how many.

        A drive whose socket is dropped before its Stop fails (status 3) at once, as a vendor
        restart would look (inferred); audio already received after a Stop still plays out.
        """

        def mark(ws: web.WebSocketResponse) -> bool:
            self._dropped.add(ws)
            return True

        return await self.drive_server.drop_websockets(mark)

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-serialisable view; also served at ``GET /_emulator/state``.

        Returns:
            ``tasks`` and ``drives`` (every record field, ``sha256`` included, keyed by id;
            drives that began), ``unstarted_drives`` (WS drives asked for and never started,
            zegocloud.md §8.6),
            ``calls`` per Action, ``task_calls`` per TaskId and Action (every call whose body
            names the task, whatever its answer), ``rejected`` per Code (HTTP-status faults
            as ``http_<n>``),
            ``faults_injected``, ``callbacks`` delivery counters, ``reused_signatures``.
        """
        return {
            "app_id": self.app_id,
            "rest_url": self.rest.base_url,
            "wss_url": self.drive_server.ws_base_url,
            "callback_url": self.callback_url,
            "tasks": {k: dataclasses.asdict(v) for k, v in self.tasks.items()},
            "drives": {k: dataclasses.asdict(v) for k, v in self.drives.items() if v.begun},
            "unstarted_drives": {
                k: dataclasses.asdict(v) for k, v in self.drives.items() if not v.begun
            },
            "calls": dict(self.calls),
            "task_calls": {k: dict(v) for k, v in self.task_calls.items()},
            "rejected": {
                **{str(k): v for k, v in self.rejected.items()},
                **{f"http_{k}": v for k, v in self.rejected_http.items()},
            },
            "faults_injected": self.faults.injected,
            "callbacks": dict(self.callback_stats),
            "reused_signatures": self.reused_signatures,
        }

    # ---- background task helper ----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # Keep a strong reference (RUF006) so stop() can cancel everything still pending.
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ---- REST ----------------------------------------------------------------------------------

    def _reply(
        self, code: int, data: dict[str, Any] | None = None, message: str | None = None
    ) -> web.Response:
        # zegocloud.md §3: always HTTP 200; Data omitted by APIs that return none, and on errors.
        body: dict[str, Any] = {
            "Code": code,
            "Message": message or _MESSAGES.get(code, "error"),
            "RequestId": str(uuid.uuid4()),
        }
        if data is not None:
            body["Data"] = data
        if code != CODE_OK:
            self.rejected[code] = self.rejected.get(code, 0) + 1
        return web.json_response(body)

    def _check_common(self, query: Mapping[str, str]) -> None:
        """Validate the common query parameters in the gateway's order (zegocloud.md §2)."""
        action = query.get("Action", "")
        if not action:
            raise ZegoApiError(CODE_ACTION_EMPTY)
        if action not in self._handlers:
            # DriveByAudio / DriveByRTCStream (zegocloud.md §4) need a media fetcher / RTC stack the
            # emulator does not have; answering "unsupported" is honest about that.
            raise ZegoApiError(CODE_ACTION_UNSUPPORTED)
        app_id = query.get("AppId", "")
        if not _UINT32_RE.match(app_id) or int(app_id) >= 2**32:
            raise ZegoApiError(CODE_BAD_APP_ID)
        if int(app_id) != self.app_id:
            raise ZegoApiError(CODE_NO_SERVER_SECRET)
        nonce = query.get("SignatureNonce", "")
        if not nonce:
            raise ZegoApiError(CODE_NONCE_EMPTY)
        ts_text = query.get("Timestamp", "")
        if not ts_text:
            raise ZegoApiError(CODE_TIMESTAMP_EMPTY)
        if not _INT64_RE.match(ts_text):
            raise ZegoApiError(CODE_TIMESTAMP_FORMAT)
        signature = query.get("Signature", "")
        if not signature:
            raise ZegoApiError(CODE_SIGNATURE_EMPTY)
        version = query.get("SignatureVersion", "")
        if not version:
            raise ZegoApiError(CODE_SIGNATURE_VERSION_EMPTY)
        if version != "2.0":
            raise ZegoApiError(CODE_SIGNATURE_VERSION_UNSUPPORTED)
        if abs(time.time() - int(ts_text)) > _SIGNATURE_MAX_SKEW_S:
            raise ZegoApiError(CODE_SIGNATURE_EXPIRED)
        expected = request_signature(app_id, nonce, self.server_secret, ts_text)
        # The docs specify lowercase hex; compare exactly, in constant time.
        if not hmac.compare_digest(expected, signature):
            raise ZegoApiError(CODE_SIGNATURE_INVALID)
        # zegocloud.md §2 asks for a fresh signature per request. The vendor's reaction to a replay
        # is undocumented, so count it for audits instead of rejecting.
        # Only signatures inside the +-600 s window can be replayed successfully, so older
        # ones are forgotten.
        now = _mono()
        while (
            self._signature_order and now - self._signature_order[0][0] > 2 * _SIGNATURE_MAX_SKEW_S
        ):
            self._seen_signatures.discard(self._signature_order.popleft()[1])
        if signature in self._seen_signatures:
            self.reused_signatures += 1
        else:
            self._seen_signatures.add(signature)
            self._signature_order.append((now, signature))

    def _admit_qps(self, action: str) -> bool:
        """A sliding one-second window per (AppId, Action): 10 QPS (zegocloud.md §1, §9)."""
        now = _mono()
        window = self._qps.setdefault((self.app_id, action), deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.qps_per_action:
            return False
        window.append(now)
        return True

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        action = request.query.get("Action", "")
        self.calls[action] = self.calls.get(action, 0) + 1
        response = await self._answer_rest(request, action)
        await self._count_task_call(request, action)
        return response

    async def _count_task_call(self, request: web.Request, action: str) -> None:
        """Record one call of ``action`` for the ``TaskId`` its body names (audit only).

        Runs after the answer is decided, so a stalled call's body is still read only after
        its stall; calls answered early (bad signature, rate limit, injected fault) count too.
        """
        try:
            raw = await request.read()
        except OSError:  # the client went away: nothing to attribute
            return
        try:
            body: Any = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return
        task_id = body.get("TaskId") if isinstance(body, dict) else None
        if isinstance(task_id, str) and task_id:
            per_task = self.task_calls.setdefault(task_id, {})
            per_task[action] = per_task.get(action, 0) + 1

    async def _answer_rest(self, request: web.Request, action: str) -> web.StreamResponse:
        query = request.query
        try:
            self._check_common(query)
        except ZegoApiError as err:
            return self._reply(err.code, message=err.message)
        if not self._admit_qps(action):
            return self._reply(CODE_RATE_LIMITED)
        fault = self.faults.take(action)
        if fault is not None:
            await self.rest.apply_stall(fault)
            if fault.http_status is not None:
                status = fault.http_status
                self.rejected_http[status] = self.rejected_http.get(status, 0) + 1
                return web.Response(status=fault.http_status, text="emulated upstream failure")
            if fault.code is not None:
                return self._reply(fault.code, message="injected fault")
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            # (inferred) 100000012 "cannot read body" for a body that is not a JSON object.
            return self._reply(CODE_BODY_UNREADABLE)
        try:
            data = self._handlers[action](body)
        except ZegoApiError as err:
            return self._reply(err.code, message=err.message)
        return self._reply(CODE_OK, data)

    # ---- catalogue Actions (zegocloud.md §4)
    # -------------------------------------------------------

    def _avatar_json(self, avatar: _Avatar) -> dict[str, Any]:
        expires = int(time.time()) + 86400  # AvatarUrl is valid 24 h (zegocloud.md §4 / §9).
        base = f"{_MEDIA_BASE}/{avatar.digital_human_id}"
        return {
            "DigitalHumanId": avatar.digital_human_id,
            "Name": avatar.name,
            "AvatarUrl": f"{base}/avatar.png?Expires={expires}",
            "IsPublic": avatar.is_public,
            "Actions": [
                {"Action": a, "PreviewUrl": f"{base}/{a}.mp4?Expires={expires}"}
                for a in avatar.actions
            ],
        }

    @staticmethod
    def _find_avatar(digital_human_id: str) -> _Avatar | None:
        return next((a for a in _AVATARS if a.digital_human_id == digital_human_id), None)

    def _get_digital_human_list(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetDigitalHumanList: FetchMode 1 all / 2 public / 3 private, Offset, Limit [1,20]."""
        mode = _opt_int(body, "FetchMode", 1, 1, 3)
        offset = _opt_int(body, "Offset", 0, *_OFFSET_RANGE)
        limit = _opt_int(body, "Limit", 20, *_LIST_LIMIT_RANGE)
        chosen = [a for a in _AVATARS if mode == 1 or a.is_public == (mode == 2)]
        page = chosen[offset : offset + limit]
        return {"Total": len(chosen), "DigitalHumans": [self._avatar_json(a) for a in page]}

    def _get_digital_human_info(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetDigitalHumanInfo: DigitalHumanId required; unknown is 400000003."""
        avatar = self._find_avatar(_req_str(body, "DigitalHumanId"))
        if avatar is None:
            raise ZegoApiError(CODE_DIGITAL_HUMAN_NOT_FOUND)
        return self._avatar_json(avatar)

    def _get_timbre_list(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetTimbreList: optional DigitalHumanId (empty = public timbres), Offset, Limit."""
        dh_id = _opt_str(body, "DigitalHumanId")
        if dh_id and self._find_avatar(dh_id) is None:
            raise ZegoApiError(CODE_DIGITAL_HUMAN_NOT_FOUND)
        offset = _opt_int(body, "Offset", 0, *_OFFSET_RANGE)
        limit = _opt_int(body, "Limit", 20, *_LIST_LIMIT_RANGE)
        # (inferred) every built-in timbre is public and usable with every built-in avatar.
        page = _TIMBRES[offset : offset + limit]
        return {
            "Total": len(_TIMBRES),
            "Timbres": [
                {"TimbreId": t, "Name": n, "AvatarUrl": f"{_MEDIA_BASE}/timbres/{t}.png"}
                for t, n in page
            ],
        }

    # ---- task Actions (zegocloud.md §4, §5) ------------------------------------------------------

    def _task(self, body: dict[str, Any]) -> TaskRecord:
        task = self.tasks.get(_req_str(body, "TaskId"))
        if task is None:
            raise ZegoApiError(CODE_TASK_NOT_FOUND)
        return task

    def _live(self) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.status in (TASK_INITIALISING, TASK_STREAMING)]

    def _create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """CreateDigitalHumanStreamTask (zegocloud.md §4): validate; Status 1 -> 3, callbacks."""
        dh_cfg = _opt_obj(body, "DigitalHumanConfig")
        dh_id = _req_str(dh_cfg, "DigitalHumanId", CODE_DIGITAL_HUMAN_NOT_FOUND)
        color = _opt_str(dh_cfg, "BackgroundColor") or "#000000"
        if not _COLOR_RE.match(color):
            raise ZegoApiError(CODE_INVALID_PARAMS, "BackgroundColor must be #RRGGBB")
        rtc = _opt_obj(body, "RTCConfig")
        room_id = _req_str(rtc, "RoomId")
        stream_id = _req_str(rtc, "StreamId")
        for key, value in (("RoomId", room_id), ("StreamId", stream_id)):
            if len(value.encode()) > _RTC_ID_MAX_BYTES:
                raise ZegoApiError(CODE_INVALID_PARAMS, f"{key} longer than 128 bytes")
        if not _STREAM_ID_RE.match(stream_id):
            raise ZegoApiError(CODE_INVALID_PARAMS, "StreamId allows only [0-9A-Za-z_-]")
        ttl = _opt_int(body, "TTL", _TTL_DEFAULT, *_TTL_RANGE)
        max_idle = _opt_int(body, "MaxIdleTime", _MAX_IDLE_DEFAULT, *_MAX_IDLE_RANGE)
        extra = _opt_obj(body, "ExtraConfig")
        output_mode: int | None = None
        if "OutputMode" in extra:
            # [hist] ExtraConfig.OutputMode (1 large image, 2 small image); vendor examples send it.
            output_mode = _opt_int(extra, "OutputMode", 1, 1, 2)
        if self._find_avatar(dh_id) is None:
            raise ZegoApiError(CODE_DIGITAL_HUMAN_NOT_FOUND)
        live = self._live()
        if any(t.stream_id == stream_id for t in live):
            raise ZegoApiError(CODE_STREAM_ID_EXISTS)
        if len(live) >= self.concurrency_limit:
            raise ZegoApiError(CODE_CONCURRENCY_LIMIT)

        now = _mono()
        task = TaskRecord(
            task_id=f"task_{uuid.uuid4().hex}",
            digital_human_id=dh_id,
            room_id=room_id,
            stream_id=stream_id,
            ttl=ttl,
            max_idle_time=max_idle,
            ttl_given=body.get("TTL") is not None,
            max_idle_given=body.get("MaxIdleTime") is not None,
            create_time=int(time.time()),
            background_color=color,
            output_mode=output_mode,
        )
        self.tasks[task.task_id] = task
        rt = _TaskRuntime(created_mono=now, last_activity=now)
        self._task_rt[task.task_id] = rt
        self._task_event(task)
        rt.ready_timer = self._spawn(self._become_ready(task))
        rt.watchdog = self._spawn(self._watchdog(task))
        return {"TaskId": task.task_id}

    async def _become_ready(self, task: TaskRecord) -> None:
        await asyncio.sleep(self.task_ready_delay_s)
        if task.status != TASK_INITIALISING:
            return
        if self._init_failures:
            task.status = TASK_INIT_FAILED
            task.fail_reason = self._init_failures.popleft()
            task.billed_until = time.time()
        else:
            task.status = TASK_STREAMING
            task.streaming_since = _mono()
        self._task_event(task)

    async def _watchdog(self, task: TaskRecord) -> None:
        """Vendor backstops (zegocloud.md §5): stop after TTL s, or MaxIdleTime s without a drive.

        Both are measured from creation (inferred) and scaled by ``time_scale``. A drive that is
        still playing counts as activity: an avatar mid-sentence is not idle.
        """
        rt = self._task_rt[task.task_id]
        while task.status in (TASK_INITIALISING, TASK_STREAMING):
            now = _mono()
            ttl_deadline = rt.created_mono + task.ttl * self.time_scale
            idle_deadline = rt.last_activity + task.max_idle_time * self.time_scale
            if now >= ttl_deadline:
                self._stop_task(task, "ttl")
                return
            if now >= idle_deadline:
                if rt.current is not None and rt.current.status == DRIVE_DRIVING:
                    rt.last_activity = now
                    continue
                self._stop_task(task, "idle")
                return
            await asyncio.sleep(min(ttl_deadline, idle_deadline) - now)

    def _get_task_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetDigitalHumanStreamTaskStatus (zegocloud.md §4); callback-only Status 5 reads as 4."""
        task = self._task(body)
        data: dict[str, Any] = {
            # (inferred) zegocloud.md §5 says 5 appears only in callbacks, so a stopped task reads
            # as 4.
            "Status": min(task.status, TASK_STOPPING),
            "RoomId": task.room_id,
            "StreamId": task.stream_id,
            "CreateTime": task.create_time,
        }
        if task.status == TASK_INIT_FAILED:
            data["FailReason"] = task.fail_reason
        return data

    def _query_tasks(self, body: dict[str, Any]) -> dict[str, Any]:
        """QueryDigitalHumanStreamTasks (zegocloud.md §4): live tasks only, Status 1 or 3."""
        return {
            "TaskList": [
                {
                    "TaskId": t.task_id,
                    "RoomId": t.room_id,
                    "StreamId": t.stream_id,
                    "Status": t.status,
                    "CreateTime": t.create_time,
                }
                for t in self._live()
            ]
        }

    def _stop_task_api(self, body: dict[str, Any]) -> None:
        """StopDigitalHumanStreamTask (zegocloud.md §4, §11): 3 -> 4 -> 5; again: 400000007."""
        task = self._task(body)
        if task.status not in (TASK_INITIALISING, TASK_STREAMING):
            raise ZegoApiError(CODE_STREAM_STOPPED)
        self._stop_task(task, "api")
        return None

    def _stop_task(self, task: TaskRecord, reason: str) -> None:
        rt = self._task_rt[task.task_id]
        task.status = TASK_STOPPING
        task.stop_reason = reason
        if task.billed_until is None:
            task.billed_until = time.time()
        self._task_event(task)
        current = asyncio.current_task()
        for timer in (rt.ready_timer, rt.watchdog):
            if timer is not None and timer is not current:
                timer.cancel()
        self._interrupt(task, advance=False)
        # WS drives whose socket never sent Start are neither current nor queued; they can no
        # longer run either.
        for drive_id in rt.drive_ids:
            if not self._drive_rt[drive_id].ended:
                self._end_drive(self.drives[drive_id], DRIVE_ENDED, interrupted=True, advance=False)
        # (inferred) the drive sockets of a stopped task are useless; close them normally.
        for ws in list(rt.sockets):
            self._spawn(self._close_ws(ws, _WS_CLOSE_NORMAL, "task stopped"))
        self._spawn(self._finish_stop(task))

    async def _finish_stop(self, task: TaskRecord) -> None:
        await asyncio.sleep(_STOPPING_TO_STOPPED_S)
        task.status = TASK_STOPPED
        self._task_event(task)

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse, code: int, message: str) -> None:
        await ws.close(code=code, message=message.encode())

    # ---- drive Actions (zegocloud.md §4, §5, §8) ------------------------------------------------

    def _require_streaming(self, task: TaskRecord) -> None:
        # zegocloud.md §5: whether a drive during Status 1 is queued or rejected is undocumented;
        # 400000006
        # "video stream not started" is the likely answer (inferred), and for 2 (never started).
        if task.status in (TASK_INITIALISING, TASK_INIT_FAILED):
            raise ZegoApiError(CODE_STREAM_NOT_STARTED)
        if task.status in (TASK_STOPPING, TASK_STOPPED):
            raise ZegoApiError(CODE_STREAM_STOPPED)

    def _touch(self, task: TaskRecord) -> None:
        now = _mono()
        task.last_drive_time = now
        self._task_rt[task.task_id].last_activity = now

    def _new_drive(self, task: TaskRecord, kind: Literal["ws", "text"]) -> DriveRecord:
        drive = DriveRecord(drive_id=f"drive_{uuid.uuid4().hex}", task_id=task.task_id, kind=kind)
        self.drives[drive.drive_id] = drive
        self._drive_rt[drive.drive_id] = _DriveRuntime()
        self._task_rt[task.task_id].drive_ids.append(drive.drive_id)
        self._drive_event(drive)
        return drive

    def _drive_by_text(self, body: dict[str, Any]) -> dict[str, Any]:
        """DriveByText (zegocloud.md §4): Text 1..1800 chars, TTSConfig.TimbreId, InterruptMode."""
        task = self._task(body)
        text = _opt_str(body, "Text")
        if not 1 <= len(text) <= _TEXT_MAX_CHARS:
            raise ZegoApiError(CODE_INVALID_PARAMS, "Text must be 1..1800 characters")
        mode = _opt_int(body, "InterruptMode", 0, 0, 1)
        tts = _opt_obj(body, "TTSConfig")
        timbre = _req_str(tts, "TimbreId", CODE_TIMBRE_NOT_FOUND)
        if timbre not in {t for t, _ in _TIMBRES}:
            raise ZegoApiError(CODE_TIMBRE_NOT_FOUND)
        _opt_int(tts, "SpeechRate", 0, -500, 500)
        _opt_int(tts, "PitchRate", 0, -500, 500)
        _opt_int(tts, "Volume", 50, 1, 100)
        self._require_streaming(task)
        self._touch(task)
        drive = self._new_drive(task, "text")
        drive.text = text
        drive.timbre_id = timbre
        drive.interrupt_mode = mode
        drive.duration_s = len(text) * self.text_seconds_per_char
        rt = self._task_rt[task.task_id]
        if mode == 1:
            # zegocloud.md §4: InterruptMode 1 interrupts now (and, like InterruptDriveTask, drops
            # the queue).
            self._interrupt(task, advance=False)
        rt.queue.append(drive)
        self._advance(task)
        return {"DriveId": drive.drive_id}

    def _drive_by_ws_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        """DriveByWsStream (zegocloud.md §4): a DriveId and a WssAddress, its Token bound to it."""
        task = self._task(body)
        self._require_streaming(task)
        self._touch(task)
        drive = self._new_drive(task, "ws")
        token = secrets.token_urlsafe(24)
        self._tokens[token] = drive.drive_id
        self._drive_rt[drive.drive_id].token = token
        return {
            "DriveId": drive.drive_id,
            "WssAddress": f"{self.drive_server.ws_base_url}/ws?Token={token}",
        }

    def _do_action(self, body: dict[str, Any]) -> None:
        """DoAction (zegocloud.md §4): one of the avatar's actions; it counts as a drive."""
        task = self._task(body)
        action = _req_str(body, "Action")
        avatar = self._find_avatar(task.digital_human_id)
        if avatar is None or action not in avatar.actions:
            raise ZegoApiError(CODE_INVALID_PARAMS, "unknown Action for this digital human")
        self._require_streaming(task)
        self._touch(task)
        return None

    def _interrupt_drive_task(self, body: dict[str, Any]) -> None:
        """InterruptDriveTask (zegocloud.md §4): end the drive as interrupted, discard the queue."""
        task = self._task(body)
        self._require_streaming(task)
        self._touch(task)
        self._interrupt(task, advance=False)
        return None

    # ---- drive scheduling ----------------------------------------------------------------------

    def _interrupt(self, task: TaskRecord, *, advance: bool) -> None:
        """End the current drive as interrupted and discard queued ones (zegocloud.md §4, §5).

        Discarded queued drives are reported as status 4 with ``interrupted`` set (inferred:
        the docs say they are "discarded" without naming the status they end in).
        """
        rt = self._task_rt[task.task_id]
        while rt.queue:
            self._end_drive(rt.queue.popleft(), DRIVE_ENDED, interrupted=True, advance=False)
        if rt.current is not None:
            self._end_drive(rt.current, DRIVE_ENDED, interrupted=True, advance=advance)

    def _advance(self, task: TaskRecord) -> None:
        """Start the next queued drive if nothing holds the floor."""
        rt = self._task_rt[task.task_id]
        if rt.current is not None or not rt.queue or task.status != TASK_STREAMING:
            return
        drive = rt.queue.popleft()
        rt.current = drive
        if drive.kind == "text":
            now = _mono()
            drive.start_time = drive.first_audio_time = now
            drive.status = DRIVE_DRIVING
            self._drive_event(drive)
            self._drive_rt[drive.drive_id].timer = self._spawn(self._text_playback(drive))

    async def _text_playback(self, drive: DriveRecord) -> None:
        await asyncio.sleep(drive.duration_s)
        self._end_drive(drive, DRIVE_ENDED)

    def _end_drive(
        self, drive: DriveRecord, status: int, *, interrupted: bool = False, advance: bool = True
    ) -> None:
        """Move ``drive`` to status 3/4 once, send its callback, hand the floor on."""
        drt = self._drive_rt[drive.drive_id]
        if drt.ended:
            return
        drt.ended = True
        drt.audio_started = False
        drt.starving = False
        drt.changed.set()
        if drt.timer is not None and drt.timer is not asyncio.current_task():
            drt.timer.cancel()
        drt.timer = None
        drive.status = status
        drive.end_time = _mono()
        if interrupted:
            drive.interrupted = True
        task = self.tasks[drive.task_id]
        rt = self._task_rt[drive.task_id]
        rt.last_activity = drive.end_time
        if drive in rt.queue:
            rt.queue.remove(drive)
        # Enqueue this drive's callback before the next drive's "2" so order per task holds.
        self._drive_event(drive)
        if rt.current is drive:
            rt.current = None
            if advance:
                self._advance(task)

    # ---- WSS drive server (zegocloud.md §8)
    # --------------------------------------------------------

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("Token", "")
        drive_id = self._tokens.get(token) if token else None
        drive = self.drives.get(drive_id) if drive_id else None
        drt = self._drive_rt.get(drive_id) if drive_id else None
        if drive is None or drt is None or drt.token_used:
            # Unknown or already used Token: refuse before the upgrade (inferred: 401).
            return web.Response(status=401, text="invalid Token")
        task = self.tasks[drive.task_id]
        if task.status != TASK_STREAMING:
            return web.Response(status=401, text="task is not streaming")
        drt.token_used = True  # one connection per Token
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self.drive_server.track_websocket(ws)
        trt = self._task_rt[task.task_id]
        trt.sockets.add(ws)
        task.max_parallel_sockets = max(task.max_parallel_sockets, len(trt.sockets))
        session = _WsSession(drive=drive, ws=ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    problem = self._on_text(session, str(msg.data))
                elif msg.type == WSMsgType.BINARY:
                    problem = self._on_binary(session, bytes(msg.data))
                else:
                    continue
                if problem is not None:
                    await ws.close(code=_WS_CLOSE_POLICY, message=problem.encode()[:120])
                    break
        finally:
            self.drive_server.untrack_websocket(ws)
            trt.sockets.discard(ws)
            dropped = ws in self._dropped
            self._dropped.discard(ws)
            self._on_ws_closed(session, dropped=dropped)
        return ws

    def _violation(self, drive: DriveRecord, text: str) -> str:
        drive.violations.append(text)
        return text

    def _protocol_error(self, session: _WsSession, problem: str) -> str:
        """Record a fatal protocol violation; the caller closes the socket with 1008.

        Before a valid Start the drive never began, so it fails (status 3, inferred); after
        one, the drive is handled like any socket closed without Stop.
        """
        self._violation(session.drive, problem)
        if not session.saw_start:
            self._end_drive(session.drive, DRIVE_FAILED)
        return problem

    def _on_text(self, session: _WsSession, data: str) -> str | None:
        """Handle a text frame; return a problem string to close the socket with 1008."""
        drive = session.drive
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("Payload"), dict):
            problem = "text frame is not a JSON {Action, Payload} object"
            return self._protocol_error(session, problem)
        action = msg.get("Action")
        payload: dict[str, Any] = msg["Payload"]
        if payload.get("DriveId") != drive.drive_id:
            problem = f"{action} with DriveId {payload.get('DriveId')!r} not bound to this Token"
            return self._protocol_error(session, problem)
        if action == "Start":
            return self._on_start(session, payload)
        if action == "Stop":
            if not session.saw_start:
                return self._protocol_error(session, "Stop before Start")
            self._on_stop(session)
            return None
        return self._protocol_error(session, f"unknown Action {action!r}")

    def _on_start(self, session: _WsSession, payload: dict[str, Any]) -> str | None:
        """Start (zegocloud.md §8): SampleRate 16000|24000 Hz, Channel 1|2, VoiceChannel 0|1|2."""
        drive = session.drive
        fail = self._protocol_error
        rate = payload.get("SampleRate")
        if rate is None:
            # [hist] docs: optional, default 16000. The current docs say it must match the
            # audio, so leaving it out is accepted but recorded.
            rate = 16000
            drive.violations.append("Start without SampleRate (defaulted to 16000 Hz)")
        channels = payload.get("Channel", 1)
        voice = payload.get("VoiceChannel", 0)
        if isinstance(rate, bool) or rate not in _SAMPLE_RATES:
            return fail(session, f"unsupported SampleRate {rate!r} (16000 or 24000 Hz)")
        if isinstance(channels, bool) or channels not in _CHANNELS:
            return fail(session, f"unsupported Channel {channels!r} (1 or 2)")
        if isinstance(voice, bool) or voice not in _VOICE_CHANNELS:
            return fail(session, f"unsupported VoiceChannel {voice!r} (0, 1 or 2)")
        drt = self._drive_rt[drive.drive_id]
        task = self.tasks[drive.task_id]
        if drt.in_cycle and not drt.ended:
            # Tolerated (inferred): treat as a continuation, but it is not the documented order.
            drive.violations.append("Start while the previous Start had no Stop")
        session.saw_start = True
        drive.sample_rate = int(rate)
        drive.channels = int(channels)
        drive.voice_channel = int(voice)
        drive.cycles += 1
        drive.stopped = False
        drive.start_time = _mono()
        drt.in_cycle = True
        self._touch(task)
        if task.status != TASK_STREAMING:
            return None  # task stopping: the socket is being closed by _stop_task
        trt = self._task_rt[task.task_id]
        if drt.ended:
            # A new Start/Stop cycle with the same DriveId after the previous one ended (the Go
            # quick start does this): reopen the same record.
            drt.ended = False
            drt.received_s = drt.anchor_pos = 0.0
            drive.status = DRIVE_QUEUED
            drive.interrupted = False
            drive.end_time = None
        if trt.current is not drive:
            # zegocloud.md §5 / drive-by-ws-stream.mdx: a WS drive interrupts the current drive and
            # drops the
            # queue when it starts.
            self._interrupt(task, advance=False)
            trt.current = drive
        return None

    def _on_stop(self, session: _WsSession) -> None:
        """Stop (zegocloud.md §8): the drive ends once everything received has been played."""
        drive = session.drive
        drt = self._drive_rt[drive.drive_id]
        if not drt.in_cycle:
            drive.violations.append("Stop without a preceding Start")
            return
        drt.in_cycle = False
        drive.stopped = True
        drive.stop_time = _mono()
        if drt.ended:
            return  # interrupted meanwhile: nothing left to play
        if not drt.audio_started:
            # A Start/Stop pair with no audio in between: nothing to play, the drive ends now.
            self._end_drive(drive, DRIVE_ENDED)
            return
        drt.changed.set()

    def _on_binary(self, session: _WsSession, data: bytes) -> str | None:
        """Binary frame (zegocloud.md §8): raw s16le PCM, interleaved when stereo, no header."""
        drive = session.drive
        if not session.saw_start:
            return self._protocol_error(session, "binary frame before Start")
        if not data:
            return None
        drt = self._drive_rt[drive.drive_id]
        rate = drive.sample_rate or 16000
        channels = drive.channels or 1
        frame_bytes = 2 * channels
        if len(data) % 2:
            drive.violations.append(f"binary frame of odd length {len(data)} (s16le samples)")
        elif len(data) % frame_bytes:
            drive.violations.append(
                f"binary frame of {len(data)} bytes is not whole {channels}-channel s16le frames"
            )
        # Keep every byte, even of a bad frame: the hash must reflect exactly what was sent.
        drt.hasher.update(data)
        drive.sha256 = drt.hasher.hexdigest()
        drive.bytes_received += len(data)
        frame_s = len(data) / (2 * rate * channels)
        drive.duration_s += frame_s
        task = self.tasks[drive.task_id]
        self._touch(task)
        if not drt.in_cycle:
            drive.violations.append("binary frame after Stop (send Start first)")
            return None
        if drt.ended:
            return None  # interrupted: audio still in flight is accepted and discarded
        now = _mono()
        if not drt.audio_started:
            drt.audio_started = True
            drt.anchor_pos, drt.anchor_time, drt.received_s = 0.0, now, 0.0
            drt.starving = False
            if drive.first_audio_time is None:
                drive.first_audio_time = now
            drive.status = DRIVE_DRIVING
            self._drive_event(drive)
            drt.timer = self._spawn(self._ws_playback(drive))
        elif drt.playhead(now) >= drt.received_s:
            # The playhead had already caught up: playback paused (the avatar stuttered) and
            # resumes from here. Count the underrun unless the playback loop already did.
            if not drt.starving:
                drive.underruns += 1
            drt.anchor_pos, drt.anchor_time = drt.received_s, now
            drt.starving = False
        drt.received_s += frame_s
        drt.changed.set()
        return None

    async def _ws_playback(self, drive: DriveRecord) -> None:
        """Real-time playout of a WS drive; ends it after Stop once all audio has played."""
        drt = self._drive_rt[drive.drive_id]
        while not drt.ended:
            drt.changed.clear()
            now = _mono()
            end_at = drt.end_at()
            if not drt.in_cycle and drive.stopped:
                if now >= end_at + _PLAYBACK_EPSILON_S:
                    self._end_drive(drive, DRIVE_ENDED)
                    return
                timeout: float | None = end_at + _PLAYBACK_EPSILON_S - now
            elif now >= end_at:
                # Caught up with the received audio and no Stop yet: the sender is slower than
                # real time. Freeze the playhead until more audio (or Stop) arrives.
                if not drt.starving:
                    drt.starving = True
                    drive.underruns += 1
                    drt.anchor_pos, drt.anchor_time = drt.received_s, now
                timeout = None
            else:
                timeout = end_at - now
            try:
                await asyncio.wait_for(drt.changed.wait(), timeout)
            except TimeoutError:
                pass

    def _on_ws_closed(self, session: _WsSession, *, dropped: bool) -> None:
        if self._closing:
            return
        drive = session.drive
        drt = self._drive_rt[drive.drive_id]
        if drt.ended:
            return
        if not session.saw_start:
            # A drive prepared ahead and closed unused (zegocloud.md §8.6): no rule forbids it;
            # the drive ends failed (inferred), having played nothing.
            self._end_drive(drive, DRIVE_FAILED)
            return
        if not drt.in_cycle:
            return  # Stop received: the playback loop ends the drive when the audio has played
        if dropped:
            # Emulated vendor-side drop mid-drive: the drive fails (inferred), not the client's
            # fault, so no violation.
            self._end_drive(drive, DRIVE_FAILED)
            return
        drive.violations.append("no Stop: socket closed without Stop")
        self._spawn(self._end_after_grace(drive))

    async def _end_after_grace(self, drive: DriveRecord) -> None:
        # zegocloud.md §8: without Stop "the backend assumes more PCM is coming, waits". The wait
        # length is
        # undocumented; 2 s (x time_scale) is the emulator's choice.
        await asyncio.sleep(_NO_STOP_GRACE_S * self.time_scale)
        self._end_drive(drive, DRIVE_ENDED)

    # ---- callbacks (zegocloud.md §6)
    # ---------------------------------------------------------------

    def _task_event(self, task: TaskRecord) -> None:
        self._queue_event(
            task.task_id,
            EVENT_TASK_STATUS,
            {
                "Status": task.status,
                "RoomId": task.room_id,
                "StreamId": task.stream_id,
                "FailReason": task.fail_reason,
            },
        )

    def _drive_event(self, drive: DriveRecord) -> None:
        self._queue_event(
            drive.task_id, EVENT_DRIVE_STATUS, {"DriveId": drive.drive_id, "Status": drive.status}
        )

    def _queue_event(self, task_id: str, event_type: int, detail: dict[str, Any]) -> None:
        if not self.callback_url or self._closing:
            return
        timestamp = str(int(time.time()))  # zegocloud.md §6 example: 10-digit seconds, as a string
        nonce = str(secrets.randbelow(10**9))
        event = {
            "AppId": self.app_id,
            "EventType": event_type,
            "Nonce": nonce,
            "Timestamp": timestamp,
            "Signature": callback_signature(self.callback_secret, timestamp, nonce),
            "EventTime": int(time.time() * 1000),
            "TaskId": task_id,
            "Detail": detail,
        }
        rt = self._task_rt[task_id]
        rt.outbox.append(event)
        self.callback_stats["queued"] += 1
        # One sender per task so events of a task arrive in order (2 always before 4), even
        # while an earlier one is being retried.
        if rt.sender is None or rt.sender.done():
            rt.sender = self._spawn(self._send_events(rt))

    async def _send_events(self, rt: _TaskRuntime) -> None:
        while rt.outbox:
            event = rt.outbox[0]
            await self._deliver(event)
            rt.outbox.popleft()

    async def _deliver(self, event: dict[str, Any]) -> None:
        """POST one event; non-2xx or no connection: retry after 2,4,8,16,32 s (zegocloud.md §6)."""
        delays = (*_CALLBACK_RETRY_DELAYS_S, None)
        for delay in delays:
            url = self.callback_url
            if url and self._http is not None:
                self.callback_stats["attempts"] += 1
                try:
                    response = await self._http.post(url, json=event)
                    if 200 <= response.status_code < 300:
                        self.callback_stats["delivered"] += 1
                        return
                except httpx.HTTPError:
                    pass
            if delay is None:
                break
            await asyncio.sleep(delay * self.time_scale)
        self.callback_stats["failed"] += 1
