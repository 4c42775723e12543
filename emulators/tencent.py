"""A faithful local emulator of Tencent Cloud IVH interactive aPaaS (cloud rendering).

The sandbox the gateway runs against without Tencent credentials, and the test double of
``adapters.tencent``. It implements docs/vendors/tencent.md on one aiohttp
server (HTTP and WebSocket on the same host:port, as Tencent serves both from one host,
tencent.md §1):

* ``POST /v2/ivh/sessionmanager/sessionmanagerservice/<op>`` with the signed query and the
  ``{Header, Payload}`` envelope; errors are HTTP 200 with a non-zero ``Header.Code``
  (tencent.md §2–4, §10). Sessions report ``SessionStatus`` 3 and turn 1 after
  ``session_ready_delay_s``; a new session with the same ``UserId`` closes the old one
  (code 110022);
* ``GET /v2/ws/ivh/interactdriver/interactdriverservice/commandchannel`` (tencent.md §5), signed
with
  ``requestid=<SessionId>``; refused unless the session is ready and started, and while
  another channel of the session is open (one channel per session). Refusals are HTTP
  errors whose body is the usual envelope (the vendor's exact behaviour is undocumented,
  tencent.md §10; inferred);
* ``SEND_TEXT`` / ``SEND_STREAMTEXT`` / ``SEND_AUDIO`` / ``SEND_HEARTBEAT`` with the
  documented rules, and downstream ``Type`` 3 SpeakStatus sequences with playback in real
  time: ``AudioOver`` when the received audio has played, text at
  ``text_seconds_per_char`` (tencent.md §5, §6).

Rules enforced and recorded (violations never pass silently):

* signature (exact tencent.md §2 algorithm, ``requestid`` included on WS) and a 5-minute timestamp
  window → 100005;
* ``SEND_TEXT`` more than 1 s apart: a closer one is rejected with a Type 9 ``100012`` and
  recorded in ``text_spacing_violations``;
* text ≤ 4000 bytes, stream-text packets ≤ 1000 bytes, audio packets ≤ 5120 bytes with only
  the last (by Seq) shorter (``size_violations``);
* pacing of ``SEND_AUDIO``: after the first 6 packets of a drive, the wall time between
  packets must be at least 0.75 × the audio they carry (tencent.md §5, real-time factor ≤ 1/0.75).
  It is checked as a policer (GCRA with a 6-packet burst allowance and
  ``PACING_JITTER_S`` tolerance), which is the same as checking every sliding window of
  recent packets; the minimum 8-packet window ratio is also recorded. A packet that comes
  too early is recorded in ``pacing_violations`` and throttled: the emulator stops reading
  the socket until the packet conforms (TCP backpressure), as rate limiting would;
  too slow shows up as playback ``underruns`` (the picture stalls, tencent.md §5);
* mode switches (tencent.md §5): audio while text plays, or text while audio plays (before
  ``AudioOver``), is rejected with Type 9 ``110015`` and recorded in ``switch_violations``;
* interrupts: an empty ``SEND_TEXT`` interrupt before ``TextStart`` and a stream interrupt
  without a non-zero ``Seq`` are ineffective (tencent.md §5) and recorded;
* ``StreamMaxInterval``: no packet for that long finalises an audio drive (``AudioOver``
  with ``FinalType`` 2) or a text stream (tencent.md §4, §6);
* idle (tencent.md §7): the WS is dropped after 3 min and the session closed after 10 min without
  upstream commands (heartbeats included) or downstream statuses, both × ``time_scale``;
* ``DriverType`` 1 sessions reject ``SEND_AUDIO`` with Type 9 ``110015`` (tencent.md §5).

Dedupe and ordering (chosen here and documented, the vendor does not say; inferred): audio
and stream-text packets are keyed by ``(ReqId, Seq)``. A Seq already received is ignored
(``duplicates``; ``conflicts`` if its content differs), a packet arriving out of Seq order
is accepted (``out_of_order``) and the audio is assembled in Seq order, so
:attr:`DriveRecord.sha256` is the sha256 of the decoded PCM in Seq order. A ``SEND_TEXT``
whose ReqId is known is ignored as a re-send. On reconnect the last status of each of the
last 3 drives is re-pushed (tencent.md §5), and the pacing measurement of a drive restarts (the
vendor's buffer refills after the gap; inferred).

Faults (``faults``): operations are the REST path's last segment, ``"commandchannel"`` (the
WS upgrade: code → refused with that code, ``http_status`` → that status, stall → delayed)
and the command names (``"SEND_AUDIO"``...: code → a Type 9 with that code for the packet,
stall → processing delayed). :meth:`drop_channels` drops sockets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from emulators._base import EmulatorServer

__all__ = ["CommandRecord", "DriveRecord", "SessionRecord", "TencentEmulator"]

SESSION_PREFIX = "/v2/ivh/sessionmanager/sessionmanagerservice/"
COMMAND_CHANNEL_PATH = "/v2/ws/ivh/interactdriver/interactdriverservice/commandchannel"

# Codes (tencent.md §8).
CODE_OK = 0
CODE_SYSTEM = 100000
CODE_BAD_PARAMS = 100001
CODE_UNAUTHORIZED = 100005
CODE_CONCURRENCY = 100008
CODE_TOO_FREQUENT = 100012
CODE_SESSION_CLOSED = 110013
CODE_NOT_READY = 110014
CODE_WRONG_TIME = 110015
CODE_NOT_STARTED = 110016
CODE_SESSION_NOT_FOUND = 110018
CODE_REPLACED = 110022
CODE_STREAM_CREATE_TIMEOUT = -111004

# Session status (tencent.md §4).
STATUS_READY = 1
STATUS_CLOSED = 2
STATUS_PREPARING = 3
STATUS_FAILED = 4

TIMESTAMP_SKEW_S = 300.0
"""Largest |server clock - timestamp| accepted (s; tencent.md §2)."""
TEXT_INTERVAL_S = 1.0
"""SEND_TEXT must arrive more than this apart (s; tencent.md §5)."""
TEXT_MAX_BYTES = 4000
STREAM_TEXT_MAX_BYTES = 1000
AUDIO_PACKET_BYTES = 5120
"""160 ms of 16 kHz mono s16le (bytes; tencent.md §5)."""
AUDIO_BYTES_PER_SECOND = 32000
PACKET_S = AUDIO_PACKET_BYTES / AUDIO_BYTES_PER_SECOND
BURST_PACKETS = 6
MIN_INTERVAL_RATIO = 0.75
"""Least wall time per second of audio after the burst (tencent.md §5: real-time factor 0.75-1)."""
PACING_JITTER_S = 0.1
"""Arrival jitter tolerated by the pacing policer (s; inferred). A sender 10 % too fast is
still caught within about 10 packets."""
WINDOW_PACKETS = 8
UNDERRUN_TOLERANCE_S = 0.05
WS_IDLE_S = 180.0
"""WS dropped after this long without traffic (s, × time_scale; tencent.md §7)."""
SESSION_IDLE_S = 600.0
"""Session closed after this long without traffic (s, × time_scale; tencent.md §7)."""
REPUSH_DRIVES = 3
TICK_S = 0.02

_REQ_ID = re.compile(r"[0-9a-fA-F]{32}")
_PROTOCOLS = ("rtmp", "webrtc", "trtc")


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> float:
    return time.monotonic()


def sign(params: dict[str, str], access_token: str) -> str:
    """Tencent's signature (tencent.md §2), written independently of the adapter's on purpose."""
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    mac = hmac.new(access_token.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


@dataclass
class CommandRecord:
    """One upstream command frame as received (tencent.md §5)."""

    at: float
    session_id: str
    command: str
    req_id: str
    connection: int
    seq: int | None = None
    is_final: bool = False
    interrupt: bool = False
    text_bytes: int = 0
    audio_bytes: int = 0
    outcome: str = "ok"

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "at": round(self.at, 4),
            "sessionId": self.session_id,
            "command": self.command,
            "reqId": self.req_id,
            "connection": self.connection,
            "seq": self.seq,
            "isFinal": self.is_final,
            "interrupt": self.interrupt,
            "textBytes": self.text_bytes,
            "audioBytes": self.audio_bytes,
            "outcome": self.outcome,
        }


@dataclass
class DriveRecord:
    """What one drive (one ReqId) received and what it played.

    ``kind`` is ``audio``, ``text``, ``stream`` or ``interrupt`` (an empty SEND_TEXT).
    Audio is kept per Seq (16 kHz mono s16le); :attr:`sha256` hashes it in Seq order.
    """

    req_id: str
    session_id: str
    kind: str
    created_at: float
    text: str = ""
    packets: dict[int, bytes] = field(default_factory=dict)
    pieces: dict[int, str] = field(default_factory=dict)
    seen_seqs: set[int] = field(default_factory=set)
    max_seq: int = 0
    duplicates: int = 0
    conflicts: list[int] = field(default_factory=list)
    out_of_order: int = 0
    final: bool = False
    final_seq: int | None = None
    final_type: int | None = None
    auto_finalized: bool = False
    interrupted: bool = False
    rejected_code: int | None = None
    late_packets: int = 0
    connections: set[int] = field(default_factory=set)
    statuses: list[str] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    pacing_violations: list[dict[str, Any]] = field(default_factory=list)
    size_violations: list[dict[str, Any]] = field(default_factory=list)
    underruns: list[dict[str, Any]] = field(default_factory=list)
    min_window_ratio: float | None = None
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def pcm(self) -> bytes:
        """Decoded audio in Seq order, each Seq once."""
        return b"".join(self.packets[s] for s in sorted(self.packets))

    @property
    def audio_bytes(self) -> int:
        """Bytes of distinct audio received."""
        return sum(len(p) for p in self.packets.values())

    @property
    def duration_s(self) -> float:
        """Seconds of distinct audio received (16 kHz mono s16le)."""
        return self.audio_bytes / AUDIO_BYTES_PER_SECOND

    @property
    def sha256(self) -> str:
        """sha256 hex of :attr:`pcm`."""
        return hashlib.sha256(self.pcm).hexdigest()

    @property
    def stream_text(self) -> str:
        """Streamed text in Seq order."""
        return "".join(self.pieces[s] for s in sorted(self.pieces))

    @property
    def missing_seqs(self) -> list[int]:
        """Seqs below the highest one received that never arrived."""
        return [s for s in range(1, self.max_seq + 1) if s not in self.seen_seqs]

    @property
    def played_s(self) -> float | None:
        """Seconds between the Start and Over statuses, when both were pushed."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """JSON view (audio as its duration and hash)."""
        return {
            "reqId": self.req_id,
            "sessionId": self.session_id,
            "kind": self.kind,
            "textBytes": len((self.text or self.stream_text).encode()),
            "audioBytes": self.audio_bytes,
            "durationS": round(self.duration_s, 4),
            "sha256": self.sha256 if self.packets else "",
            "packets": len(self.packets),
            "maxSeq": self.max_seq,
            "missingSeqs": self.missing_seqs,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "outOfOrder": self.out_of_order,
            "final": self.final,
            "finalType": self.final_type,
            "autoFinalized": self.auto_finalized,
            "interrupted": self.interrupted,
            "rejectedCode": self.rejected_code,
            "latePackets": self.late_packets,
            "connections": sorted(self.connections),
            "statuses": self.statuses,
            "errors": self.errors,
            "pacingViolations": self.pacing_violations,
            "sizeViolations": self.size_violations,
            "underruns": self.underruns,
            "minWindowRatio": self.min_window_ratio,
            "playedS": None if self.played_s is None else round(self.played_s, 3),
        }


@dataclass
class SessionRecord:
    """One emulated session, its channel history and the rule violations seen on it."""

    session_id: str
    user_id: str
    protocol: str
    driver_type: int
    stream_max_interval_ms: int
    play_stream_addr: str
    request: dict[str, Any]
    project_id: str = ""
    asset_key: str = ""
    status: int = STATUS_PREPARING
    started: bool = False
    close_reason: str = ""
    close_code: int = 0
    created_at: float = field(default_factory=_now)
    ready_at: float = 0.0
    will_fail: bool = False
    last_activity: float = field(default_factory=_now)
    channel_opened_at: float = 0.0
    channel_connects: int = 0
    refused_connects: list[dict[str, Any]] = field(default_factory=list)
    idle_drops: int = 0
    heartbeats: int = 0
    last_text_at: float | None = None
    drives: list[str] = field(default_factory=list)
    speak_status: str = "Initial"
    text_spacing_violations: list[dict[str, Any]] = field(default_factory=list)
    switch_violations: list[dict[str, Any]] = field(default_factory=list)
    ineffective_interrupts: list[dict[str, Any]] = field(default_factory=list)
    last_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Unix s (wall clock) from the create request's handling to the close (or the failure to
    # start): what the account is billed for, its concurrency slot held (tencent.md §4.2).
    billed_from: float = field(default_factory=time.time)
    billed_until: float | None = None
    # Runtime, not part of the JSON view.
    ws: web.WebSocketResponse | None = field(default=None, repr=False)
    connection: int = 0
    playing: _Play | None = field(default=None, repr=False)
    audio_queue: deque[_Play] = field(default_factory=deque, repr=False)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def open(self) -> bool:
        """Not closed (and not failed)."""
        return self.status in (STATUS_READY, STATUS_PREPARING)

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "sessionId": self.session_id,
            "userId": self.user_id,
            "projectId": self.project_id,
            "assetVirtualmanKey": self.asset_key,
            "protocol": self.protocol,
            "driverType": self.driver_type,
            "streamMaxIntervalMs": self.stream_max_interval_ms,
            "status": self.status,
            "started": self.started,
            "closeReason": self.close_reason,
            "channelOpen": self.ws is not None,
            "channelConnects": self.channel_connects,
            "refusedConnects": self.refused_connects,
            "idleDrops": self.idle_drops,
            "heartbeats": self.heartbeats,
            "speakStatus": self.speak_status,
            "drives": self.drives,
            "textSpacingViolations": self.text_spacing_violations,
            "switchViolations": self.switch_violations,
            "ineffectiveInterrupts": self.ineffective_interrupts,
            "billedFrom": self.billed_from,
            "billedUntil": self.billed_until,
        }


@dataclass
class _Play:
    """Runtime state of one drive's playback."""

    record: DriveRecord
    session: SessionRecord
    kind: str
    task: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    begun: bool = False
    started: bool = False
    ended: bool = False
    final: bool = False
    last_packet_at: float = field(default_factory=_now)
    received_s: float = 0.0
    chars: int = 0
    new_data: asyncio.Event = field(default_factory=asyncio.Event)
    late_reported: bool = False
    # pacing
    pace_connection: int = -1
    tat: float | None = None
    segment_packets: int = 0
    window: deque[tuple[float, float]] = field(default_factory=deque)


class TencentEmulator(EmulatorServer):
    """Tencent IVH over real HTTP and WebSocket on loopback (see the module docstring).

    Args:
        appkey: the appkey clients must sign with.
        access_token: the HMAC key.
        session_ready_delay_s: SessionStatus goes 3 → 1 after this long (s; 0 = at once).
        time_scale: multiplies the 3-min WS idle and 10-min session idle limits (tencent.md §7).
        host: listen address.
        port: listen port; 0 picks a free one.
        tls: serve https/wss with a self-signed certificate.
        public_url: ``http(s)://host:port`` clients reach the emulator by (``None``: the bound
            address); see :class:`emulators._base.EmulatorServer`.

    Attributes tests may set: ``known_projects`` (``None`` = any project id exists),
    ``max_concurrency`` (open sessions before 100008), ``fail_sessions`` (the next N
    sessions end in status 4), ``text_seconds_per_char`` and ``text_start_delay_s`` (text
    playback model), ``max_records`` (drive records kept, oldest dropped first).
    """

    def __init__(
        self,
        *,
        appkey: str,
        access_token: str,
        session_ready_delay_s: float = 0.3,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        public_url: str | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, public_url=public_url)
        self.appkey = appkey
        self.access_token = access_token
        self.session_ready_delay_s = session_ready_delay_s
        self.time_scale = time_scale
        self.known_projects: set[str] | None = None
        self.max_concurrency: int | None = None
        self.fail_sessions = 0
        self.text_seconds_per_char = 0.06
        self.text_start_delay_s = 0.05
        self.max_records = 2000
        self.sessions: dict[str, SessionRecord] = {}
        self.records: dict[str, DriveRecord] = {}
        self.commands: deque[CommandRecord] = deque(maxlen=50_000)
        self.rest_calls: deque[dict[str, Any]] = deque(maxlen=5_000)
        self._plays: dict[str, _Play] = {}
        self._ws_sessions: dict[web.WebSocketResponse, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._connections = 0

    # ---- server -------------------------------------------------------------------------

    def build_routes(self, app: web.Application) -> None:
        """The session-management REST API and the command channel."""
        app.router.add_post(SESSION_PREFIX + "{op}", self._rest)
        app.router.add_get(COMMAND_CHANNEL_PATH, self._command_channel)

    async def start(self) -> None:
        """Bind, serve and start the idle watchdog."""
        await super().start()
        self._watchdog = asyncio.create_task(self._watch_idle(), name="tencent-emulator-idle")

    async def stop(self) -> None:
        """Stop playback tasks, the watchdog, every socket and the listener."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in [*self._tasks, *([self._watchdog] if self._watchdog else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for session in self.sessions.values():
            session.ws = None
        await super().stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- inspection ---------------------------------------------------------------------

    def open_sessions(self) -> list[str]:
        """Ids of sessions not closed (status 1 or 3): the leak audit."""
        for session in self.sessions.values():
            self._refresh(session)
        return [s.session_id for s in self.sessions.values() if s.open]

    def audio_for(self, req_id: str) -> DriveRecord | None:
        """The audio drive ``req_id`` (``duration_s``, ``sha256``, violations...)."""
        record = self.records.get(req_id)
        return record if record is not None and record.kind == "audio" else None

    def drives_of(self, session_id: str, kind: str | None = None) -> list[DriveRecord]:
        """The drives of a session in arrival order, optionally of one ``kind``."""
        session = self.sessions.get(session_id)
        if session is None:
            return []
        out = [self.records[r] for r in session.drives if r in self.records]
        return [d for d in out if kind is None or d.kind == kind]

    def violations(self, session_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every recorded rule violation, by kind (empty lists when the client behaved)."""
        out: dict[str, list[dict[str, Any]]] = {
            "textSpacing": [],
            "switch": [],
            "ineffectiveInterrupt": [],
            "pacing": [],
            "size": [],
            "underrun": [],
        }
        for session in self.sessions.values():
            if session_id is not None and session.session_id != session_id:
                continue
            out["textSpacing"] += session.text_spacing_violations
            out["switch"] += session.switch_violations
            out["ineffectiveInterrupt"] += session.ineffective_interrupts
            for record in self.drives_of(session.session_id):
                out["pacing"] += [{"reqId": record.req_id, **v} for v in record.pacing_violations]
                out["size"] += [{"reqId": record.req_id, **v} for v in record.size_violations]
                out["underrun"] += [{"reqId": record.req_id, **v} for v in record.underruns]
        return out

    def snapshot(self) -> dict[str, Any]:
        """Sessions, drives (audio as duration + sha256), command counts, violations."""
        for session in self.sessions.values():
            self._refresh(session)
        counts: dict[str, int] = {}
        for command in self.commands:
            counts[command.command] = counts.get(command.command, 0) + 1
        return {
            "vendor": "tencent",
            "sessions": [s.to_json() for s in self.sessions.values()],
            "openSessions": self.open_sessions(),
            "drives": [r.to_json() for r in self.records.values()],
            "commandCounts": counts,
            "restCalls": list(self.rest_calls)[-200:],
            "violations": self.violations(),
            "faultsInjected": self.faults.injected,
        }

    async def drop_channels(self, session_id: str | None = None) -> int:
        """Drop open command channels (all, or one session's) as a network fault; return how many.

        The session stays open, so a client should reconnect (tencent.md §5).
        """
        victims = {
            ws for ws, sid in self._ws_sessions.items() if session_id is None or sid == session_id
        }
        for ws in victims:
            session = self.sessions.get(self._ws_sessions[ws])
            if session is not None and session.ws is ws:
                session.ws = None  # the slot is free before the client can reconnect
        return await self.drop_websockets(lambda ws: ws in victims)

    async def push_downstream(
        self, session_id: str, payload: dict[str, Any], header: dict[str, Any] | None = None
    ) -> None:
        """Push a raw downstream message (tests: Type 4 LLM text, Type 9 failures...)."""
        session = self.sessions[session_id]
        await self._push(session, payload, header)

    # ---- signing ------------------------------------------------------------------------

    def _auth(self, query: Any, *, ws: bool) -> tuple[int, str]:
        appkey = query.get("appkey")
        timestamp = query.get("timestamp")
        signature = query.get("signature")
        if not appkey or not timestamp or not signature:
            return CODE_UNAUTHORIZED, "appkey, timestamp and signature are required"
        if ws and not query.get("requestid"):
            return CODE_BAD_PARAMS, "requestid (the SessionId) is required"
        if appkey != self.appkey:
            return CODE_UNAUTHORIZED, "unknown appkey"
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            return CODE_UNAUTHORIZED, "timestamp is not an integer"
        if skew > TIMESTAMP_SKEW_S:
            return CODE_UNAUTHORIZED, "timestamp expired"
        params = {k: v for k, v in query.items() if k != "signature"}
        # The query arrives URL-decoded: a client that did not URL-encode the base64 value
        # sees its '+' turned into a space here and fails, as the docs warn (tencent.md §2).
        if not hmac.compare_digest(sign(params, self.access_token), signature):
            return CODE_UNAUTHORIZED, "signature mismatch"
        return CODE_OK, ""

    # ---- REST ---------------------------------------------------------------------------

    @staticmethod
    def _envelope(code: int, message: str, payload: dict[str, Any], req_id: str) -> web.Response:
        header = {"Code": code, "Message": message, "RequestID": req_id}
        return web.json_response({"Header": header, "Payload": payload})

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        op = request.match_info["op"]
        call: dict[str, Any] = {"op": op, "at": round(_now(), 4), "code": CODE_OK}
        self.rest_calls.append(call)
        req_id = ""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        payload: dict[str, Any] = {}
        if isinstance(body, dict) and isinstance(body.get("Payload"), dict):
            payload = body["Payload"]
            req_id = str(payload.get("ReqId") or "")
        fault = self.faults.take(op)
        await self.apply_stall(fault)
        if fault is not None and fault.http_status is not None:
            call["code"] = f"HTTP {fault.http_status}"
            return web.Response(status=fault.http_status, text="emulated failure")
        if fault is not None and fault.code is not None:
            call["code"] = fault.code
            return self._envelope(fault.code, "injected fault", {}, req_id)
        try:
            code, message = self._auth(request.query, ws=False)
            if code:
                raise _Fail(code, message)
            if not isinstance(body, dict) or "Header" not in body or "Payload" not in body:
                raise _Fail(CODE_BAD_PARAMS, "the body must be {Header, Payload}")
            if not _REQ_ID.fullmatch(req_id):
                raise _Fail(CODE_BAD_PARAMS, "ReqId must be a 32-character hex UUID")
            handler = {
                "createsession": self._op_create,
                "createsessionbyasset": self._op_create_by_asset,
                "statsession": self._op_stat,
                "startsession": self._op_start,
                "closesession": self._op_close,
                "listsessionofuin": self._op_list_uin,
                "listsessionofprojectid": self._op_list_project,
                "listsessionofassetvk": self._op_list_asset,
                "gettrtcsign": self._op_trtc_sign,
            }.get(op)
            if handler is None:
                return web.Response(status=404, text=f"unknown operation {op}")
            out = handler(payload)
        except _Fail as fail:
            call["code"] = fail.code
            return self._envelope(fail.code, fail.message, {}, req_id)
        return self._envelope(CODE_OK, "", {"ReqId": req_id, **out}, req_id)

    def _refresh(self, session: SessionRecord) -> None:
        if session.status == STATUS_PREPARING and _now() >= session.ready_at:
            session.status = STATUS_FAILED if session.will_fail else STATUS_READY
            if session.will_fail:
                session.billed_until = time.time()

    def _session(self, payload: dict[str, Any]) -> SessionRecord:
        session = self.sessions.get(str(payload.get("SessionId") or ""))
        if session is None:
            raise _Fail(CODE_SESSION_NOT_FOUND, "session does not exist")
        self._refresh(session)
        return session

    def _op_create(self, payload: dict[str, Any]) -> dict[str, Any]:
        project = str(payload.get("VirtualmanProjectId") or "")
        if not project:
            raise _Fail(CODE_BAD_PARAMS, "VirtualmanProjectId is required")
        if self.known_projects is not None and project not in self.known_projects:
            # The vendor documents no "project not found" code (inferred).
            raise _Fail(CODE_SESSION_NOT_FOUND, f"VirtualmanProjectId {project} not found")
        return self._create(payload, project=project)

    def _op_create_by_asset(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = str(payload.get("AssetVirtualmanKey") or "")
        if not key:
            raise _Fail(CODE_BAD_PARAMS, "AssetVirtualmanKey is required")
        layers = len(payload.get("Backgrounds") or []) + len(payload.get("Foregrounds") or [])
        if layers > 5:
            raise _Fail(CODE_BAD_PARAMS, "at most 5 video layers")
        return self._create(payload, asset_key=key)

    def _create(
        self, payload: dict[str, Any], *, project: str = "", asset_key: str = ""
    ) -> dict[str, Any]:
        if "SessionId" in payload:
            raise _Fail(CODE_BAD_PARAMS, "SessionId is only for private deployments")
        user_id = str(payload.get("UserId") or "")
        if not user_id:
            raise _Fail(CODE_BAD_PARAMS, "UserId is required")
        protocol = payload.get("Protocol")
        if protocol not in _PROTOCOLS:
            raise _Fail(CODE_BAD_PARAMS, "Protocol must be rtmp, webrtc or trtc (lowercase)")
        driver_type = payload.get("DriverType", 1)
        if driver_type not in (1, 3):
            raise _Fail(CODE_BAD_PARAMS, "DriverType must be 1 or 3")
        interval = payload.get("StreamMaxInterval", 2000)
        if not isinstance(interval, int) or not 2000 <= interval <= 6000:
            raise _Fail(CODE_BAD_PARAMS, "StreamMaxInterval must be 2000-6000 ms")
        open_sessions = [s for s in self.sessions.values() if s.open]
        # A new session with the same UserId closes the previous one (tencent.md §4).
        for other in open_sessions:
            if other.user_id == user_id:
                self._close(other, "another session was created with the same UserId", 110022)
        open_count = sum(1 for s in self.sessions.values() if s.open)
        if self.max_concurrency is not None and open_count >= self.max_concurrency:
            raise _Fail(CODE_CONCURRENCY, "over the concurrency limit")
        session_id = uuid.uuid4().hex
        session = SessionRecord(
            session_id=session_id,
            user_id=user_id,
            protocol=str(protocol),
            driver_type=int(driver_type),
            stream_max_interval_ms=interval,
            play_stream_addr=self._play_addr(str(protocol), session_id, user_id, payload),
            request=dict(payload),
            project_id=project,
            asset_key=asset_key,
        )
        session.ready_at = session.created_at + self.session_ready_delay_s
        if self.fail_sessions > 0:
            self.fail_sessions -= 1
            session.will_fail = True
        self._refresh(session)
        self.sessions[session_id] = session
        return {
            "SessionId": session_id,
            "SessionStatus": session.status,
            "PlayStreamAddr": session.play_stream_addr,
        }

    @staticmethod
    def _play_addr(protocol: str, session_id: str, user_id: str, payload: dict[str, Any]) -> str:
        # The forms of tencent.md §4 (doc examples and the SDK's TRTC parser).
        if protocol == "rtmp":
            return f"rtmp://live.qq.com/live/{session_id}"
        if protocol == "trtc":
            option = payload.get("ProtocolOption") or {}
            room = option.get("TrtcRoomId") or option.get("TrtcStrRoomId") or 1234
            app_id = option.get("TrtcAppId") or 1400000000
            return (
                f"trtc://{room}?appId={app_id}&userSig={secrets.token_hex(8)}"
                f"&privateMapKey={secrets.token_hex(8)}&virtualManUserId={user_id}"
            )
        return f"webrtc://liveplay.ivh.qq.com/live/{session_id}?min_delay_ms=100"

    def _op_stat(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        error_code, error_message = 0, ""
        if session.status == STATUS_FAILED:
            error_code, error_message = CODE_STREAM_CREATE_TIMEOUT, "stream creation failed"
        elif session.status == STATUS_CLOSED:
            error_code, error_message = session.close_code, session.close_reason
        return {
            "SessionStatus": session.status,
            "PlayStreamAddr": session.play_stream_addr,
            "SpeakStatus": session.speak_status,
            "IsSessionStarted": session.started,
            "ErrorCode": error_code,
            "ErrorMessage": error_message,
        }

    def _op_start(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        if session.status == STATUS_CLOSED:
            raise _Fail(CODE_SESSION_CLOSED, "session closed")
        if session.status != STATUS_READY:
            raise _Fail(CODE_NOT_READY, "session not ready")
        session.started = True
        session.last_activity = _now()
        return {}

    def _op_close(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        if session.status == STATUS_CLOSED:
            raise _Fail(CODE_SESSION_CLOSED, "session closed")
        self._close(session, "closesession", 0)
        return {}

    def _listing(self, predicate: Any) -> dict[str, Any]:
        sessions = []
        for session in self.sessions.values():
            self._refresh(session)
            if session.open and predicate(session):
                sessions.append(
                    {
                        "UserId": session.user_id,
                        "SessionId": session.session_id,
                        "SessionStatus": session.status,
                        "PlayStreamAddr": session.play_stream_addr,
                        "DriverType": session.driver_type,
                        "IsSessionStarted": session.started,
                    }
                )
        return {"Sessions": sessions}

    def _op_list_uin(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._listing(lambda s: True)

    def _op_list_project(self, payload: dict[str, Any]) -> dict[str, Any]:
        project = str(payload.get("VirtualmanProjectId") or "")
        if not project:
            raise _Fail(CODE_BAD_PARAMS, "VirtualmanProjectId is required")
        return self._listing(lambda s: s.project_id == project)

    def _op_list_asset(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = str(
            payload.get("AssetVirtualmanKey") or ""
        )  # field name not verified (tencent.md §4)
        return self._listing(lambda s: s.asset_key == key)

    def _op_trtc_sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._session(payload)
        return {"UserSig": secrets.token_hex(16), "PrivateMapKey": secrets.token_hex(16)}

    def _close(self, session: SessionRecord, reason: str, code: int) -> None:
        if session.billed_until is None:
            session.billed_until = time.time()
        session.status = STATUS_CLOSED
        session.close_reason = reason
        session.close_code = code
        for req_id in session.drives:
            play = self._plays.pop(req_id, None)
            if play is not None:
                play.ended = True
                for task in (play.task, play.watcher):
                    if task is not None:
                        task.cancel()
        session.playing = None
        session.audio_queue.clear()
        ws, session.ws = session.ws, None
        if ws is not None:
            self._spawn(ws.close(code=1000, message=b"session closed"), "tencent-close-ws")

    # ---- command channel ----------------------------------------------------------------

    @staticmethod
    def _refuse(status: int, code: int, message: str) -> web.Response:
        body = {"Header": {"Code": code, "Message": message, "RequestID": ""}, "Payload": {}}
        return web.json_response(body, status=status)

    async def _command_channel(self, request: web.Request) -> web.StreamResponse:
        fault = self.faults.take("commandchannel")
        await self.apply_stall(fault)
        if fault is not None and fault.http_status is not None:
            return web.Response(status=fault.http_status, text="emulated failure")
        if fault is not None and fault.code is not None:
            return self._refuse(403, fault.code, "injected fault")
        code, message = self._auth(request.query, ws=True)
        if code:
            return self._refuse(403 if code == CODE_UNAUTHORIZED else 400, code, message)
        session = self.sessions.get(request.query["requestid"])
        if session is None:
            return self._refuse(404, CODE_SESSION_NOT_FOUND, "session does not exist")
        self._refresh(session)
        refusal: tuple[int, int, str] | None = None
        if session.status == STATUS_CLOSED:
            refusal = (410, CODE_SESSION_CLOSED, "session closed")
        elif session.status != STATUS_READY:
            refusal = (409, CODE_NOT_READY, "session not ready")
        elif not session.started:
            refusal = (409, CODE_NOT_STARTED, "call startsession before the command channel")
        elif session.ws is not None:
            # One channel per session (tencent.md §5); the refusal code is not documented
            # (inferred).
            refusal = (409, CODE_WRONG_TIME, "only one command channel per session")
        if refusal is not None:
            session.refused_connects.append(
                {"at": round(_now(), 4), "code": refusal[1], "message": refusal[2]}
            )
            return self._refuse(*refusal)
        ws = web.WebSocketResponse(autoclose=False, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        self._connections += 1
        connection = self._connections
        self.track_websocket(ws)
        self._ws_sessions[ws] = session.session_id
        session.ws = ws
        session.connection = connection
        session.channel_connects += 1
        session.channel_opened_at = _now()
        try:
            await self._repush(session)
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(session, connection, str(msg.data))
                elif msg.type == WSMsgType.BINARY:
                    await self._push_error(session, "", CODE_BAD_PARAMS, "binary frames unused")
                elif msg.type == WSMsgType.CLOSE:
                    # Free the slot before answering the close, so an immediate reconnect of
                    # the same client is not refused as a second channel.
                    self._release(session, ws)
                    await ws.close()
                    break
                else:
                    break
        finally:
            self._release(session, ws)
            self.untrack_websocket(ws)
            self._ws_sessions.pop(ws, None)
        return ws

    @staticmethod
    def _release(session: SessionRecord, ws: web.WebSocketResponse) -> None:
        if session.ws is ws:
            session.ws = None

    async def _repush(self, session: SessionRecord) -> None:
        # tencent.md §5: after a reconnect the cloud re-pushes the status of the last 3 drives.
        recent = [r for r in session.drives if r in session.last_status][-REPUSH_DRIVES:]
        for req_id in recent:
            await self._push(session, session.last_status[req_id])

    async def _push(
        self,
        session: SessionRecord,
        payload: dict[str, Any],
        header: dict[str, Any] | None = None,
    ) -> None:
        ws = session.ws
        if ws is None or ws.closed:
            return
        message = {
            "Header": header
            or {"Code": 0, "Message": "", "RequestID": str(payload.get("ReqId", ""))},
            "Payload": payload,
        }
        session.last_activity = _now()  # downstream traffic counts (tencent.md §7)
        async with session.send_lock:
            with contextlib.suppress(Exception):  # a socket closing under us
                await ws.send_str(json.dumps(message, ensure_ascii=False))

    async def _status(self, play: _Play, status: str, **extra: Any) -> None:
        session, record = play.session, play.record
        payload: dict[str, Any] = {
            "Type": 3,
            "SessionId": session.session_id,
            "ReqId": record.req_id,
            "SpeakStatus": status,
            "ErrorCode": 0,
            "ErrorMessage": "",
            **extra,
        }
        record.statuses.append(status)
        if status in ("TextStart", "AudioStart"):
            record.started_at = _now()
        if status in ("TextOver", "AudioOver"):
            record.ended_at = _now()
        session.last_status[record.req_id] = payload
        session.speak_status = status
        await self._push(session, payload)

    async def _push_error(self, session: SessionRecord, req_id: str, code: int, msg: str) -> None:
        record = self.records.get(req_id)
        if record is not None:
            record.errors.append(code)
        payload = {
            "Type": 9,
            "SessionId": session.session_id,
            "ReqId": req_id,
            "ErrorCode": code,
            "ErrorMessage": msg,
        }
        await self._push(session, payload)

    async def _on_frame(self, session: SessionRecord, connection: int, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        payload = message.get("Payload") if isinstance(message, dict) else None
        if (
            not isinstance(message, dict)
            or "Header" not in message
            or not isinstance(payload, dict)
        ):
            await self._push_error(session, "", CODE_BAD_PARAMS, "frames are {Header, Payload}")
            return
        command = str(payload.get("Command") or "")
        req_id = str(payload.get("ReqId") or "")
        data = payload.get("Data") if isinstance(payload.get("Data"), dict) else {}
        assert isinstance(data, dict)
        record = CommandRecord(_now(), session.session_id, command, req_id, connection)
        seq = data.get("Seq")
        record.seq = seq if isinstance(seq, int) else None
        record.is_final = bool(data.get("IsFinal"))
        record.interrupt = bool(data.get("Interrupt"))
        record.text_bytes = len(str(data.get("Text") or "").encode())
        record.audio_bytes = len(str(data.get("Audio") or "")) * 3 // 4
        self.commands.append(record)
        if not _REQ_ID.fullmatch(req_id):
            record.outcome = "rejected: ReqId"
            await self._push_error(session, req_id, CODE_BAD_PARAMS, "ReqId must be 32 hex")
            return
        if payload.get("SessionId") not in (None, session.session_id):
            record.outcome = "rejected: SessionId"
            await self._push_error(session, req_id, CODE_BAD_PARAMS, "SessionId mismatch")
            return
        session.last_activity = _now()
        fault = self.faults.take(command)
        await self.apply_stall(fault)
        if fault is not None and fault.code is not None:
            record.outcome = f"fault {fault.code}"
            await self._push_error(session, req_id, fault.code, "injected fault")
            return
        try:
            if command == "SEND_HEARTBEAT":
                session.heartbeats += 1
            elif command == "SEND_TEXT":
                await self._send_text(session, record, data)
            elif command == "SEND_STREAMTEXT":
                await self._send_stream_text(session, record, data, connection)
            elif command == "SEND_AUDIO":
                await self._send_audio(session, record, data, connection)
            else:
                raise _Fail(CODE_BAD_PARAMS, f"unknown Command {command!r}")
        except _Fail as fail:
            record.outcome = f"rejected {fail.code}: {fail.message}"
            drive = self.records.get(req_id)
            if drive is not None and drive.rejected_code is None and not drive.statuses:
                drive.rejected_code = fail.code
            await self._push_error(session, req_id, fail.code, fail.message)

    # ---- drives -------------------------------------------------------------------------

    def _new_drive(self, session: SessionRecord, req_id: str, kind: str) -> DriveRecord:
        record = DriveRecord(req_id, session.session_id, kind, _now())
        self.records[req_id] = record
        session.drives.append(req_id)
        # A long sandbox run must not keep every utterance's PCM: forget the oldest drives.
        while len(self.records) > self.max_records:
            oldest = next(iter(self.records))
            self.records.pop(oldest)
            self._plays.pop(oldest, None)
        return record

    def _audio_busy(self, session: SessionRecord) -> bool:
        playing = session.playing
        return bool(session.audio_queue) or (playing is not None and playing.kind == "audio")

    def _text_playing(self, session: SessionRecord) -> _Play | None:
        playing = session.playing
        return playing if playing is not None and playing.kind != "audio" else None

    async def _switch_to_text(self, session: SessionRecord, req_id: str) -> None:
        """Switching rules before a new text drive (SEND_TEXT or SEND_STREAMTEXT, tencent.md §5).

        Audio queued or playing refuses it (the client must wait for AudioOver; recorded as
        a switch violation); a text drive playing is stopped, as new text interrupts it
        (tencent.md §5,
        cn 2025-07).

        Raises:
            _Fail: CODE_WRONG_TIME (110015) while audio is queued or playing.
        """
        if self._audio_busy(session):
            session.switch_violations.append(
                {"reqId": req_id, "rule": "audio -> text before AudioOver"}
            )
            raise _Fail(CODE_WRONG_TIME, "wait for AudioOver before sending text")
        current = self._text_playing(session)
        if current is not None:
            await self._stop(current)

    async def _send_text(
        self, session: SessionRecord, command: CommandRecord, data: dict[str, Any]
    ) -> None:
        text = data.get("Text", "")
        if not isinstance(text, str):
            raise _Fail(CODE_BAD_PARAMS, "Text must be a string")
        known = self.records.get(command.req_id)
        if known is not None:
            if known.kind not in ("text", "interrupt"):
                raise _Fail(CODE_BAD_PARAMS, "ReqId already used by another command")
            known.duplicates += 1  # a re-send after a reconnect: already have it
            command.outcome = "duplicate"
            return
        if len(text.encode()) > TEXT_MAX_BYTES:
            raise _Fail(CODE_BAD_PARAMS, "Text is longer than 4000 bytes")
        interrupt = bool(data.get("Interrupt"))
        if not text and not interrupt:
            raise _Fail(CODE_BAD_PARAMS, "Text is empty")
        now = _now()
        record = self._new_drive(session, command.req_id, "text" if text else "interrupt")
        record.text = text
        record.connections.add(command.connection)
        if session.last_text_at is not None and now - session.last_text_at <= TEXT_INTERVAL_S:
            interval = now - session.last_text_at
            session.text_spacing_violations.append(
                {"reqId": command.req_id, "intervalS": round(interval, 4)}
            )
            raise _Fail(CODE_TOO_FREQUENT, f"SEND_TEXT {interval:.3f} s after the previous one")
        session.last_text_at = now
        if not text:
            await self._interrupt_to_silence(session, record)
            return
        await self._switch_to_text(session, command.req_id)
        play = self._new_play(session, record, "text")
        play.final = True
        play.chars = len(text)
        self._begin(play)

    async def _interrupt_to_silence(self, session: SessionRecord, record: DriveRecord) -> None:
        current = session.playing
        if current is None:
            record.statuses.append("NothingToInterrupt")
            return
        if current.kind != "audio" and not current.started:
            # tencent.md §5: wait for TextStart before sending an interrupt.
            session.ineffective_interrupts.append(
                {"reqId": record.req_id, "reason": "interrupt before TextStart"}
            )
            return
        for queued in list(session.audio_queue):
            await self._stop(queued)
        await self._stop(current)

    async def _send_stream_text(
        self,
        session: SessionRecord,
        command: CommandRecord,
        data: dict[str, Any],
        connection: int,
    ) -> None:
        seq = data.get("Seq")
        text = data.get("Text", "")
        if not isinstance(text, str):
            raise _Fail(CODE_BAD_PARAMS, "Text must be a string")
        record = self.records.get(command.req_id)
        if record is not None and record.kind != "stream":
            raise _Fail(CODE_BAD_PARAMS, "ReqId already used by another command")
        if data.get("Interrupt"):
            if not isinstance(seq, int) or seq <= 0:
                session.ineffective_interrupts.append(
                    {"reqId": command.req_id, "reason": "stream interrupt without a Seq"}
                )
                return
            play = self._plays.get(command.req_id)
            if play is not None and not play.ended:
                await self._stop(play)
            if record is not None:
                record.seen_seqs.add(seq)
            return
        if not isinstance(seq, int) or seq < 1:
            raise _Fail(CODE_BAD_PARAMS, "Seq starts at 1")
        if len(text.encode()) > STREAM_TEXT_MAX_BYTES:
            if record is not None:
                record.size_violations.append({"seq": seq, "bytes": len(text.encode())})
            raise _Fail(CODE_BAD_PARAMS, "stream text packets carry at most 1000 bytes")
        if record is None:
            record = self._new_drive(session, command.req_id, "stream")
            await self._switch_to_text(session, command.req_id)
            self._begin(self._new_play(session, record, "stream"))
        record.connections.add(connection)
        if record.rejected_code is not None:
            command.outcome = "ignored: drive rejected"
            return
        if _is_duplicate(record, seq, record.pieces.get(seq, text) != text, command):
            return
        play = self._plays.get(record.req_id)
        if play is None or play.ended or play.final:
            await self._late(session, record, play, command, bool(data.get("IsFinal")) and not text)
            return
        if seq != record.max_seq + 1:
            record.out_of_order += 1
        record.seen_seqs.add(seq)
        record.max_seq = max(record.max_seq, seq)
        record.pieces[seq] = text
        play.chars += len(text)
        play.last_packet_at = _now()
        if data.get("IsFinal"):
            play.final = record.final = True
            record.final_seq, record.final_type = seq, 1
        play.new_data.set()

    async def _late(
        self,
        session: SessionRecord,
        record: DriveRecord,
        play: _Play | None,
        command: CommandRecord,
        only_final: bool,
    ) -> None:
        # A packet for a drive that is over (final, auto-finalised or interrupted). A lone
        # closing IsFinal is harmless; anything else is reported once per drive (inferred).
        record.late_packets += 1
        command.outcome = "late"
        if only_final or play is None or play.late_reported:
            return
        play.late_reported = True
        await self._push_error(session, record.req_id, CODE_WRONG_TIME, "the drive is over")

    async def _send_audio(
        self,
        session: SessionRecord,
        command: CommandRecord,
        data: dict[str, Any],
        connection: int,
    ) -> None:
        record = self.records.get(command.req_id)
        if record is not None and record.kind != "audio":
            raise _Fail(CODE_BAD_PARAMS, "ReqId already used by another command")
        if data.get("Interrupt"):
            # The vendor SDK's audio stop() (tencent.md §5); the drive ends now.
            play = self._plays.get(command.req_id)
            if play is not None and not play.ended:
                for queued in [p for p in session.audio_queue if p is play]:
                    session.audio_queue.remove(queued)
                await self._stop(play)
            return
        if session.driver_type != 3:
            if record is None:
                record = self._new_drive(session, command.req_id, "audio")
                record.rejected_code = CODE_WRONG_TIME
                raise _Fail(CODE_WRONG_TIME, "SEND_AUDIO needs a DriverType 3 session")
            command.outcome = "ignored: drive rejected"
            return
        seq = data.get("Seq")
        audio_b64 = data.get("Audio", "")
        if not isinstance(seq, int) or seq < 1:
            raise _Fail(CODE_BAD_PARAMS, "Seq starts at 1")
        if not isinstance(audio_b64, str):
            raise _Fail(CODE_BAD_PARAMS, "Audio must be base64")
        try:
            pcm = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Fail(CODE_BAD_PARAMS, "Audio is not valid base64") from exc
        if record is None:
            record = self._new_drive(session, command.req_id, "audio")
            if self._text_playing(session) is not None:
                session.switch_violations.append(
                    {"reqId": command.req_id, "rule": "text -> audio before TextOver"}
                )
                raise _Fail(CODE_WRONG_TIME, "interrupt the text and wait for TextOver first")
            self._new_play(session, record, "audio")
        record.connections.add(connection)
        if record.rejected_code is not None:
            command.outcome = "ignored: drive rejected"
            return
        if _is_duplicate(record, seq, record.packets.get(seq, pcm) != pcm, command):
            return
        play = self._plays.get(record.req_id)
        is_final = bool(data.get("IsFinal"))
        if play is None or play.ended or play.final:
            await self._late(session, record, play, command, is_final and not pcm)
            return
        if pcm:
            delay = self._pace(play, record, connection, seq, len(pcm))
            if delay > 0:
                command.outcome = f"throttled {delay:.3f} s"
                await asyncio.sleep(delay)
            if len(pcm) > AUDIO_PACKET_BYTES or len(pcm) % 2:
                record.size_violations.append({"seq": seq, "bytes": len(pcm)})
        if seq != record.max_seq + 1:
            record.out_of_order += 1
        record.seen_seqs.add(seq)
        record.max_seq = max(record.max_seq, seq)
        if pcm:
            record.packets[seq] = pcm
            play.received_s += len(pcm) / AUDIO_BYTES_PER_SECOND
        play.last_packet_at = _now()
        if is_final:
            play.final = record.final = True
            record.final_seq, record.final_type = seq, 1
            self._check_sizes(record)
        if not play.begun:
            self._begin(play)
        play.new_data.set()

    def _pace(
        self, play: _Play, record: DriveRecord, connection: int, seq: int, size: int
    ) -> float:
        """GCRA policer for tencent.md §5 pacing; returns how long to throttle this packet (s)."""
        now = _now()
        if play.pace_connection != connection:
            # A new connection (reconnect): the measurement restarts with a fresh burst.
            play.pace_connection = connection
            play.tat = None
            play.segment_packets = 0
            play.window.clear()
        duration = size / AUDIO_BYTES_PER_SECOND
        emission = MIN_INTERVAL_RATIO * duration
        tolerance = (BURST_PACKETS - 1) * MIN_INTERVAL_RATIO * PACKET_S + PACING_JITTER_S
        tat = now if play.tat is None else play.tat
        delay = 0.0
        if now < tat - tolerance:
            delay = tat - tolerance - now
            record.pacing_violations.append(
                {
                    "seq": seq,
                    "earlyS": round(delay, 4),
                    "atS": round(now - record.created_at, 4),
                }
            )
        play.tat = max(now + delay, tat) + emission
        play.segment_packets += 1
        if play.segment_packets > BURST_PACKETS:
            play.window.append((now + delay, duration))
            if len(play.window) > WINDOW_PACKETS + 1:
                play.window.popleft()
            if len(play.window) == WINDOW_PACKETS + 1:
                elapsed = play.window[-1][0] - play.window[0][0]
                audio = sum(d for _, d in list(play.window)[:-1])
                ratio = round(elapsed / audio, 4)
                if record.min_window_ratio is None or ratio < record.min_window_ratio:
                    record.min_window_ratio = ratio
        return delay

    @staticmethod
    def _check_sizes(record: DriveRecord) -> None:
        seqs = sorted(record.packets)
        for seq in seqs[:-1]:
            size = len(record.packets[seq])
            if size != AUDIO_PACKET_BYTES and not any(
                v["seq"] == seq for v in record.size_violations
            ):
                # Only the last packet may be shorter than 160 ms (tencent.md §5).
                record.size_violations.append({"seq": seq, "bytes": size, "rule": "short"})

    # ---- playback -----------------------------------------------------------------------

    def _new_play(self, session: SessionRecord, record: DriveRecord, kind: str) -> _Play:
        play = _Play(record, session, kind)
        self._plays[record.req_id] = play
        if kind != "text":
            play.watcher = self._spawn(self._watch_final(play), f"tencent-final-{record.req_id}")
        return play

    def _begin(self, play: _Play) -> None:
        play.begun = True
        session = play.session
        if play.kind == "audio" and session.playing is not None:
            # Audio after audio waits its turn (inferred: the docs do not say).
            session.audio_queue.append(play)
            self._spawn(self._status(play, "WaitingAudioStart"), "tencent-status")
            return
        self._play_now(play)

    def _play_now(self, play: _Play) -> None:
        play.session.playing = play
        runner = {"audio": self._run_audio, "text": self._run_text, "stream": self._run_stream}
        play.task = self._spawn(runner[play.kind](play), f"tencent-play-{play.record.req_id}")

    def _ended(self, play: _Play) -> None:
        play.ended = True
        session = play.session
        if play in session.audio_queue:
            session.audio_queue.remove(play)
        if session.playing is play:
            session.playing = None
            if session.audio_queue and session.status == STATUS_READY:
                self._play_now(session.audio_queue.popleft())

    async def _stop(self, play: _Play) -> None:
        """Interrupt ``play`` now: its Over status follows at once."""
        if play.ended:
            return
        play.record.interrupted = True
        play.ended = True
        current = asyncio.current_task()
        for task in (play.task, play.watcher):
            if task is not None and task is not current:
                task.cancel()
        over = "AudioOver" if play.kind == "audio" else "TextOver"
        extra: dict[str, Any] = {"FinalType": 1} if play.kind == "audio" else {}
        if play.kind == "audio":
            play.record.final_type = play.record.final_type or 1
        await self._status(play, over, **extra)
        self._ended(play)

    async def _run_text(self, play: _Play) -> None:
        await self._status(play, "WaitingTextStart")
        await asyncio.sleep(self.text_start_delay_s)
        await self._status(play, "TextStart")
        play.started = True
        await asyncio.sleep(max(0.2, play.chars * self.text_seconds_per_char))
        await self._finish_text(play)

    async def _run_stream(self, play: _Play) -> None:
        await self._status(play, "WaitingTextStart")
        await asyncio.sleep(self.text_start_delay_s)
        await self._status(play, "TextStart")
        play.started = True
        played = 0.0
        while True:
            if play.final and played >= play.chars:
                break
            if played >= play.chars:
                play.new_data.clear()
                await play.new_data.wait()
                continue
            await asyncio.sleep(TICK_S)
            played = min(float(play.chars), played + TICK_S / self.text_seconds_per_char)
        await self._finish_text(play)

    async def _finish_text(self, play: _Play) -> None:
        if play.ended:
            return
        await self._status(play, "WaitingTextOver")
        play.ended = True
        await self._status(play, "TextOver")
        self._ended(play)

    async def _run_audio(self, play: _Play) -> None:
        record = play.record
        if "WaitingAudioStart" not in record.statuses:
            await self._status(play, "WaitingAudioStart")
        await self._status(play, "AudioStart")
        play.started = True
        played = 0.0
        last = _now()
        while True:
            if play.final and played >= play.received_s - 1e-9:
                break
            if play.received_s - played <= 1e-9:
                stalled_at = _now()
                play.new_data.clear()
                await play.new_data.wait()
                last = _now()
                if play.received_s - played > 1e-9 and last - stalled_at > UNDERRUN_TOLERANCE_S:
                    # Audio ran out mid-utterance: the picture stalls (sent too slowly,
                    # tencent.md §5).
                    record.underruns.append(
                        {"atPlayedS": round(played, 3), "stallS": round(last - stalled_at, 3)}
                    )
                continue
            await asyncio.sleep(min(TICK_S, play.received_s - played))
            now = _now()
            played = min(play.received_s, played + (now - last))
            last = now
        if play.ended:
            return
        play.ended = True
        await self._status(play, "AudioOver", FinalType=record.final_type or 1)
        self._ended(play)

    async def _watch_final(self, play: _Play) -> None:
        """Auto-finalise after ``StreamMaxInterval`` without a packet (tencent.md §4, §6)."""
        limit = play.session.stream_max_interval_ms / 1000
        while not play.final and not play.ended:
            wait = play.last_packet_at + limit - _now()
            if wait <= 0:
                play.final = play.record.final = True
                play.record.final_type = 2
                play.record.auto_finalized = True
                if play.kind == "audio":
                    self._check_sizes(play.record)
                if not play.begun:
                    self._begin(play)
                play.new_data.set()
                return
            await asyncio.sleep(wait)

    # ---- idle rules ---------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        """tencent.md §7: drop the WS after 3 min and close the session after 10 min of silence."""
        ws_limit = WS_IDLE_S * self.time_scale
        session_limit = SESSION_IDLE_S * self.time_scale
        tick = max(0.005, min(1.0, ws_limit / 40))
        while True:
            await asyncio.sleep(tick)
            now = _now()
            for session in list(self.sessions.values()):
                self._refresh(session)
                if not session.open:
                    continue
                if now - session.last_activity > session_limit:
                    self._close(session, "no drive or heartbeat for 10 minutes", 0)
                    continue
                ws = session.ws
                since = max(session.last_activity, session.channel_opened_at)
                if ws is not None and now - since > ws_limit:
                    session.idle_drops += 1
                    session.ws = None
                    self._spawn(ws.close(code=1000, message=b"idle"), "tencent-idle-drop")


def _is_duplicate(record: DriveRecord, seq: int, differs: bool, command: CommandRecord) -> bool:
    """Whether ``seq`` was already received for this ReqId; if so, count it as a duplicate.

    A client resending after a reconnect repeats Seqs; they are ignored, and a resend whose
    content differs is recorded as a conflict.
    """
    if seq not in record.seen_seqs:
        return False
    record.duplicates += 1
    if differs:
        record.conflicts.append(seq)
    command.outcome = "duplicate"
    return True
