"""The adapter contract every vendor package implements.

An adapter is thin: request signing, REST calls and drive-channel framing for one vendor.
Everything that is not a vendor fact lives in shared code driven by the adapter's declared
:class:`Capabilities`: audio conversion and pacing (``core.audio``, ``gateway.drive``),
retries, polling, rate limits, keepalive scheduling and reconnect backoff
(``core.resilience``), text splitting (``core.text``), and the mapping of errors to
gRPC (``core.errors``). See docs/architecture.md §1 and §5.

Shapes and units used throughout:

* audio handed to a channel is mono s16le PCM at one of ``Capabilities.sample_rates_hertz``,
  in frames of ``Capabilities.pacing.frame_ms`` (the last frame of a turn may be shorter);
* times are seconds (``float``) unless a name says ``_ms``;
* turn ids are the gateway's (``"1"``, ``"2"``, ...); adapters map them to vendor ids
  (ZEGO DriveId, Tencent ReqId, Akool mid) and put them on every event.
"""

from __future__ import annotations

import asyncio
import enum
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict

from core.queues import SingleConsumerQueue
from core.resilience import RateLimiter, RateLimitStorage


@dataclass(frozen=True)
class PacingRule:
    """How audio frames are released to the vendor, on a monotonic clock.

    A token bucket per turn: it starts with ``burst_frames`` tokens, gains one every
    ``interval_ms`` and holds at most ``burst_frames``; each frame sent takes one. So a
    turn's first ``burst_frames`` frames go at once and the rest one per ``interval_ms``.

    * Tencent (tencent.md §5 SEND_AUDIO): 160 ms frames, first 6 at once, then one
      every 120 ms: ``PacingRule(160, 6, 120)``.
    * Push ahead of real time, bounded (ZEGO zegocloud.md §8, Akool akool.md §6): ``frame_ms``
    frames, up to
      ``burst_frames * frame_ms`` ahead, then real time: ``PacingRule(20, 100, 20)``.

    Attributes:
        frame_ms: frame duration sent to the vendor (ms).
        burst_frames: frames that may be sent before pacing applies.
        interval_ms: spacing of frames once the burst is used (ms).
    """

    frame_ms: int
    burst_frames: int
    interval_ms: float

    @property
    def max_push_ahead_ms(self) -> float:
        """How far ahead of real time a turn can get (ms): burst minus one interval of drain."""
        return self.burst_frames * self.frame_ms


@dataclass(frozen=True)
class Capabilities:
    """What a vendor can do, declared once per adapter class; shared code acts on it.

    Attributes:
        vendor: vendor id, the ``vendor`` of CreateSession.
        display_name: human-readable vendor name.
        sample_rates_hertz: rates the vendor takes natively (Hz), ascending.
        pacing: how audio frames are released.
        audio: audio can drive the avatar.
        text: text can drive the avatar.
        streaming_text: the vendor takes text pieces as they come (else the gateway buffers
            to sentence boundaries and sends whole segments).
        interrupt: interrupt is supported.
        interrupt_ack: the vendor acknowledges an interrupt (an ``INTERRUPTED`` event); else
            the gateway acknowledges after its local flush and the vendor command.
        interrupt_ack_timeout_s: bounded wait for the vendor's ack before one is synthesised.
        max_text_chars: largest text per vendor request (characters).
        max_text_bytes: largest text per vendor request (UTF-8 bytes), when the vendor
            counts bytes.
        keepalive_interval_s: send :meth:`DriveChannel.keepalive` when the channel carried
            nothing for this long (Tencent: 45 s); ``None``: no keepalive.
        rest_qps: per-operation request rate limit (ZEGO: 10/s per Action); ``None``: none.
        list_avatars: ListAvatars works.
        speech_seconds_per_char: upper estimate of the vendor's speaking time per character
            of text (s): with ``speech_end_timeout_s`` it bounds the wait for a text turn's
            end (and so how long ``sequential_turns`` holds the next turn). Latin speech is
            ~0.08 s per character, slow CJK speech ~0.25.
        speech_end_timeout_s: after the last audio of a turn, how long to wait for the
            vendor's speech-ended event before the turn is reported as failed, beyond the
            turn's own duration.
        sequential_turns: a new drive cuts the one playing (ZEGO: a WS drive interrupts the
            current broadcast, zegocloud.md §5; Tencent: switching rules, tencent.md §5), so the
            gateway holds a
            turn's first send until the earlier turns finished speaking (bounded by their
            expected end); an interrupt releases the wait.
        ready_poll_interval_s: how often CreateSession asks the vendor whether the session is
            ready, during the first ``ready_poll_fast_s`` (s); later the interval grows 1.5x
            per poll up to 2 s. It bounds what CreateSession adds after the vendor is ready.
        ready_poll_fast_s: how long (s, from the first poll) the ready poll keeps
            ``ready_poll_interval_s``; 0 grows the interval from the first poll (for vendors
            with a per-operation rate limit shared by all sessions, e.g. ZEGO's 10/s).
        open_channel_at_ready: the replica that created the session opens its drive channel
            (:meth:`VendorAdapter.open_channel`) in the background as soon as the session is
            ready, so the first turn does not wait for it (Akool: joining the LiveKit room,
            ~100 ms; Tencent: the command channel's WebSocket handshake). A Drive still gets
            VENDOR_SESSION_LOST when the vendor ended the session meanwhile: a channel that
            learns so closes itself, and the Drive then opens a new one, which fails.
        open_channel_at_create: open the channel as soon as the vendor created the session,
            while CreateSession waits for readiness, so that the channel can notice readiness
            itself and say so (:meth:`VendorAdapter.notify_status`; Akool: the avatar joining
            the gateway's own LiveKit room). Implies ``open_channel_at_ready``.
    """

    vendor: str
    display_name: str
    sample_rates_hertz: tuple[int, ...]
    pacing: PacingRule
    audio: bool = True
    text: bool = True
    streaming_text: bool = False
    interrupt: bool = True
    interrupt_ack: bool = False
    interrupt_ack_timeout_s: float = 2.0
    max_text_chars: int = 4000
    max_text_bytes: int | None = None
    keepalive_interval_s: float | None = None
    rest_qps: float | None = None
    list_avatars: bool = True
    speech_seconds_per_char: float = 0.08
    speech_end_timeout_s: float = 10.0
    sequential_turns: bool = False
    ready_poll_interval_s: float = 0.1
    ready_poll_fast_s: float = 0.0
    open_channel_at_ready: bool = False
    open_channel_at_create: bool = False

    def vendor_rate_for(self, input_rate_hertz: int, preferred_hertz: int = 0) -> int:
        """The vendor rate audio at ``input_rate_hertz`` is converted to (Hz).

        ``preferred_hertz`` (a session option) wins when it is a native rate. Otherwise the
        smallest native rate not below the input (no information is thrown away and nothing
        is upsampled needlessly), else the largest native rate.
        """
        if preferred_hertz in self.sample_rates_hertz:
            return preferred_hertz
        for rate in self.sample_rates_hertz:
            if rate >= input_rate_hertz:
                return rate
        return self.sample_rates_hertz[-1]


OptionsT = TypeVar("OptionsT", bound=Message)


@dataclass(frozen=True)
class SessionSpec:
    """What CreateSession asks of an adapter.

    Attributes:
        session_id: the gateway's session id (``sessions/{session_id}``); adapters derive
            vendor-side ids from it (ZEGO StreamId, Tencent UserId, LiveKit room) so a
            session can be found on the vendor even if the create answer was lost.
        avatar_id: the vendor's avatar id.
        max_duration_s: maximum lifetime (s); adapters always set the vendor backstop.
        idle_timeout_s: idle time before closing (s); adapters set the vendor backstop.
        options: the vendor's typed options message from CreateSessionRequest (its
            ``vendor_options`` oneof), or ``None``.
    """

    session_id: str
    avatar_id: str
    max_duration_s: float
    idle_timeout_s: float
    options: Message | None = None

    def options_as(self, kind: type[OptionsT]) -> OptionsT | None:
        """:attr:`options` as the vendor's options message ``kind`` (``None`` when unset).

        Raises:
            TypeError: the options are another vendor's (the server checks the oneof
                against the vendor's ``options_field`` first, so this is a wiring bug).
        """
        if self.options is None:
            return None
        if not isinstance(self.options, kind):
            raise TypeError(f"options are {type(self.options).__name__}, not {kind.__name__}")
        return self.options


class VendorSessionData(BaseModel):
    """Typed vendor details of one session that the adapter needs after CreateSession.

    Each vendor subclasses it (room ids, mode, TTS settings...) and names the subclass in
    :attr:`VendorAdapter.session_data_type`. The registry stores its JSON form
    (``model_dump(mode="json")``), so a replica that adopts the session gets it back typed.

    Attributes:
        sample_rate_hertz: the vendor rate the session asked for (Hz); 0 lets Drive streams
            choose per :meth:`Capabilities.vendor_rate_for`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    sample_rate_hertz: int = 0


SessionDataT = TypeVar("SessionDataT", bound=VendorSessionData)


@dataclass
class VendorSessionHandle:
    """The vendor side of a session, as the registry stores it.

    Attributes:
        vendor_session_id: the vendor's id (ZEGO TaskId, Tencent SessionId, Akool _id).
        playback: what a viewer needs (``avatar.gateway.v1.Playback``).
        data: the adapter's typed session details (its ``session_data_type``).
    """

    vendor_session_id: str
    playback: pb.Playback = field(default_factory=pb.Playback)
    data: VendorSessionData = field(default_factory=VendorSessionData)

    def data_as(self, kind: type[SessionDataT]) -> SessionDataT:
        """:attr:`data` as the adapter's own model ``kind``.

        Raises:
            TypeError: the handle carries another vendor's data (a wiring bug).
        """
        if not isinstance(self.data, kind):
            raise TypeError(f"session data is {type(self.data).__name__}, not {kind.__name__}")
        return self.data


class ReadyState(enum.Enum):
    """What a vendor reports about a session that is starting."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionStatus:
    """A vendor's answer to "is the session ready?" (ZEGO status, Tencent statsession)."""

    state: ReadyState
    detail: str = ""
    vendor_code: str = ""


@dataclass(frozen=True)
class AvatarInfo:
    """One avatar a vendor offers."""

    avatar_id: str
    display_name: str
    preview_url: str = ""
    public: bool = True


@dataclass(frozen=True)
class AvatarPage:
    """A page of avatars and the token of the next page ("" on the last)."""

    avatars: list[AvatarInfo]
    next_page_token: str = ""


class EventKind(enum.Enum):
    """Kinds of normalised vendor events (architecture.md §3)."""

    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    TRANSCRIPT = "transcript"
    INTERRUPTED = "interrupted"
    WARNING = "warning"
    TURN_FAILED = "turn_failed"
    SESSION_LOST = "session_lost"


@dataclass(frozen=True)
class VendorEvent:
    """A vendor event in the gateway's vocabulary.

    Attributes:
        kind: what happened.
        turn_id: the gateway turn it belongs to ("" when none).
        interrupted: SPEECH_ENDED: the turn was cut short.
        played_s: SPEECH_ENDED: how long the avatar spoke (s), from vendor event times.
        text: TRANSCRIPT text.
        role: TRANSCRIPT author: ``"avatar"`` or ``"user"``.
        final: TRANSCRIPT: last piece of this text.
        reason: WARNING / TURN_FAILED / SESSION_LOST reason, UPPER_SNAKE.
        message: developer-facing message.
        metadata: details, lowerCamelCase keys.
        monotonic_time: ``time.monotonic()`` when the adapter received the vendor event.
    """

    kind: EventKind
    turn_id: str = ""
    interrupted: bool = False
    played_s: float | None = None
    text: str = ""
    role: str = "avatar"
    final: bool = True
    reason: str = ""
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    monotonic_time: float = field(default_factory=time.monotonic)


class DriveChannel(ABC):
    """The drive side of one vendor session: where audio, text and interrupts go.

    One channel per session, opened at the session's first Drive stream and kept until the
    session closes (Tencent allows one command channel per session; Akool's LiveKit room
    lives as long as the session). The gateway calls the methods of one channel from one
    task at a time, in order, with one exception: :meth:`interrupt` may be called while
    another call is in flight (a barge-in must not wait behind a send that is blocked, e.g.
    on the vendor's previous turn), and should make such a call return promptly. Events go
    to :meth:`emit`; the gateway consumes them with :meth:`events`.

    Subclasses implement the vendor framing, including spacing rules between the vendor's
    own commands (only the channel knows which command a send becomes). Shared code around
    them (not in subclasses): pacing, resampling, text splitting, turn order, keepalive
    scheduling (it calls :meth:`keepalive` when :meth:`idle_for` exceeds the declared
    interval), and the bounded wait for interrupt acks.
    """

    def __init__(self) -> None:
        self._events: SingleConsumerQueue[VendorEvent] = SingleConsumerQueue(1024)
        self._last_activity = time.monotonic()
        self.closed = False

    def mark_activity(self) -> None:
        """Record that the channel carried traffic now (resets the keepalive timer)."""
        self._last_activity = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the channel last carried traffic."""
        return time.monotonic() - self._last_activity

    def emit(self, event: VendorEvent) -> None:
        """Queue an event for the gateway. Drops the oldest event if nobody reads for long."""
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[VendorEvent]:
        """Yield events as they come, until the channel is closed and drained."""
        while True:
            event = await self._events.get()
            yield event

    def warn(
        self,
        reason: str,
        message: str,
        *,
        turn_id: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Emit a ``WARNING`` event (non-fatal; the client gets a ``warning``).

        Args:
            reason: an ``EventReason`` (UPPER_SNAKE).
            message: developer-facing message.
            turn_id: the turn it concerns ("" when none).
            metadata: details, lowerCamelCase keys.
        """
        self._report(EventKind.WARNING, turn_id, reason, message, metadata)

    def fail_turn(
        self, turn_id: str, reason: str, message: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Emit a ``TURN_FAILED`` event for ``turn_id`` (the client gets one ``turn_failed``)."""
        self._report(EventKind.TURN_FAILED, turn_id, reason, message, metadata)

    def _report(
        self,
        kind: EventKind,
        turn_id: str,
        reason: str,
        message: str,
        metadata: dict[str, str] | None,
    ) -> None:
        event = VendorEvent(kind, turn_id, reason=reason, message=message, metadata=metadata or {})
        self.emit(event)

    def drain_events(self) -> list[VendorEvent]:
        """Remove and return events that are queued now (e.g. left over from an old stream)."""
        out: list[VendorEvent] = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    @abstractmethod
    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None:
        """Send one frame of mono s16le PCM at ``sample_rate_hertz`` for turn ``turn_id``.

        The first frame of a new turn id starts the vendor drive (ZEGO DriveByWsStream +
        Start, Tencent a new ReqId). Raises :class:`core.errors.VendorError`.
        """

    def send_audio_now(self, turn_id: str, frames: Sequence[bytes], sample_rate_hertz: int) -> bool:
        """Send frames of turn ``turn_id`` at once, without awaiting, if the channel can.

        The gateway's fast path for audio frames of a turn already under way (its first
        frame went through :meth:`send_audio`), called from the reader task while the
        sender is idle, so still one caller at a time. Returns ``False`` when nothing was
        sent because a send would have to wait (a socket to open, a full write buffer, a
        reconnect) or a vendor rule must be checked: the frames then go through
        :meth:`send_audio`. Must not raise for vendor trouble (that is :meth:`send_audio`'s).
        The default: never (``False``).
        """
        return False

    @abstractmethod
    async def end_audio(self, turn_id: str) -> None:
        """The turn's audio is complete: tell the vendor promptly (ZEGO Stop, Tencent IsFinal)."""

    @abstractmethod
    async def send_text(self, turn_id: str, text: str, final: bool) -> None:
        """Send text for turn ``turn_id``.

        With ``Capabilities.streaming_text`` the pieces come as the client sends them;
        otherwise each call carries one segment already split to the vendor's limits and
        ``final`` marks the turn's last text. Vendor spacing rules between sends (Tencent
        SEND_TEXT, tencent.md §5) are the channel's: it alone knows which command it sends.
        """

    @abstractmethod
    async def interrupt(self, turn_id: str) -> None:
        """Stop the avatar now (vendor command). Queued gateway audio is already dropped.

        May run concurrently with one in-flight call of the same channel (see the class
        docstring); that call may then fail, and its error is ignored by the gateway.
        """

    async def keepalive(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Send the vendor's heartbeat (Tencent SEND_HEARTBEAT). No-op by default."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the channel's sockets. Idempotent. Does not close the vendor session."""


@dataclass(frozen=True, slots=True)
class VendorCallback:
    """A vendor callback that passed its signature check and parsed.

    Attributes:
        vendor_session_id: the vendor session it concerns ("" when it names none: it is
            acknowledged and not routed).
        replay_key: what makes the signature unique (e.g. ZEGO's timestamp and nonce), for
            vendors whose signature does not cover the body: a second, different body with
            the same key is a replay and is refused ("": the signature covers the body).
        issued_at: when the vendor signed it (Unix s), if the signature covers a time: an
            older callback than the gateway's freshness window is refused.
    """

    vendor_session_id: str
    replay_key: str = ""
    issued_at: float | None = None


class CallbackRejected(Exception):
    """A callback the vendor must be answered ``status`` (HTTP) for, with ``message``.

    401 for a bad signature (before any field is read), 400 for a signed body that does
    not parse: a vendor that retries on 4xx/5xx then sends it again.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class CallbackRoute:
    """An ops-listener route a vendor posts callbacks to; shared code routes them.

    The gateway reads the body (size-limited), calls ``accept``, drops duplicates, and
    hands the body to ``deliver`` in the replica that holds the session's channel: this
    one, or the owner through the registry (architecture.md §4.1). A vendor package only
    verifies, parses and applies.

    Attributes:
        method: HTTP method (``POST``).
        path: path on the ops listener (``/callbacks/<vendor>``).
        accept: ``(body, headers) -> VendorCallback``; raises :class:`CallbackRejected`.
            Verifies the signature; must not change any state.
        deliver: ``(body) -> bool``: apply an accepted body to this process's channel of
            its session; ``False`` when this process has none (the body is then routed).
    """

    method: str
    path: str
    accept: Callable[[bytes, Mapping[str, str]], VendorCallback]
    deliver: Callable[[bytes], bool]


class VendorAdapter(ABC):
    """Session lifecycle and drive channels for one vendor; one instance per process.

    Subclasses set :attr:`capabilities` and implement the abstract methods with the
    vendor's REST calls. Calls must raise :class:`core.errors.VendorError` built from
    the vendor's code table; transport errors become ``VENDOR_UNAVAILABLE`` /
    ``VENDOR_TIMEOUT``.
    """

    # Declared per class; an instance may replace it (e.g. a configured keepalive interval).
    capabilities: Capabilities
    # The model of VendorSessionHandle.data this adapter writes and reads.
    session_data_type: ClassVar[type[VendorSessionData]] = VendorSessionData

    def __init__(self, *, sandbox: bool = False) -> None:
        self.sandbox = sandbox
        caps = type(self).capabilities
        self.rate_limiter = (
            RateLimiter(caps.rest_qps, vendor=caps.vendor) if caps.rest_qps else None
        )
        self._status_watchers: dict[str, asyncio.Future[SessionStatus]] = {}

    # ---- readiness notifications ----------------------------------------------------------

    def watch_status(self, vendor_session_id: str) -> asyncio.Future[SessionStatus]:
        """A future the next :meth:`notify_status` of ``vendor_session_id`` completes.

        Shared code watches a session while it waits for it to be ready, so a vendor's own
        notification (ZEGO's task-status callback) ends the wait at once instead of at the
        next poll. Call :meth:`unwatch_status` when done.
        """
        watcher = self._status_watchers.get(vendor_session_id)
        if watcher is None or watcher.done():
            watcher = asyncio.get_running_loop().create_future()
            self._status_watchers[vendor_session_id] = watcher
        return watcher

    def unwatch_status(self, vendor_session_id: str) -> None:
        """Stop watching ``vendor_session_id`` (:meth:`watch_status`)."""
        watcher = self._status_watchers.pop(vendor_session_id, None)
        if watcher is not None and not watcher.done():
            watcher.cancel()

    def notify_status(self, vendor_session_id: str, status: SessionStatus) -> bool:
        """A vendor notification says ``vendor_session_id`` is now ``status``.

        For adapters whose vendor reports session status by itself (a signed callback); the
        notification must be as trustworthy as a poll's answer.

        Returns:
            ``True`` when a wait in this process took it, else ``False`` (the callback is then
            routed to the replica that waits, if any).
        """
        watcher = self._status_watchers.get(vendor_session_id)
        if watcher is None or watcher.done():
            return False
        watcher.set_result(status)
        return True

    def share_rate_limits(self, storage: RateLimitStorage, account: str) -> None:
        """Count the vendor's per-operation rate (``Capabilities.rest_qps``) in ``storage``.

        The gateway calls this when replicas share a vendor account, so that the vendor's
        limit holds for their calls together rather than for each replica alone.

        Args:
            storage: the shared count.
            account: public id of the vendor account the credentials belong to
                (``VendorSettings.account_id``); never a secret.
        """
        if self.rate_limiter is not None:
            self.rate_limiter.bind(storage, f"{self.capabilities.vendor}:{account}")

    def vendor_session_handle(
        self, vendor_session_id: str, data: dict[str, Any]
    ) -> VendorSessionHandle:
        """A handle from its stored form (``data``: the JSON of :attr:`session_data_type`).

        Raises:
            pydantic.ValidationError: ``data`` is not a valid :attr:`session_data_type`.
        """
        return VendorSessionHandle(
            vendor_session_id, data=self.session_data_type.model_validate(data)
        )

    @abstractmethod
    async def create_session(self, spec: SessionSpec) -> VendorSessionHandle:
        """Create the vendor session; return as soon as the vendor has answered.

        Must set the vendor backstops (max duration, idle) from ``spec``.
        """

    @abstractmethod
    async def session_status(self, handle: VendorSessionHandle) -> SessionStatus:
        """Ask the vendor whether the session is ready (polled by shared code)."""

    async def start_session(self, handle: VendorSessionHandle) -> None:  # noqa: B027
        """Called once the session is ready, before any drive (Tencent startsession)."""

    @abstractmethod
    async def close_session(self, handle: VendorSessionHandle) -> None:
        """Close the vendor session. Idempotent: "already closed / not found" is success."""

    @abstractmethod
    async def open_channel(self, handle: VendorSessionHandle, session_id: str) -> DriveChannel:
        """Open the session's drive channel (see :class:`DriveChannel`)."""

    async def list_avatars(self, page_size: int, page_token: str) -> AvatarPage:
        """List avatars. Default: an empty page (vendors that cannot list)."""
        return AvatarPage([])

    async def list_open_vendor_sessions(self) -> list[str]:
        """Vendor session ids the vendor reports open (for leak audits). Default: unknown."""
        return []

    async def find_vendor_session(self, session_id: str) -> str | None:
        """The open vendor session a create for gateway session ``session_id`` made, if any.

        Found by the id the adapter derives from ours (ZEGO StreamId, Akool room, Tencent
        UserId): the gateway asks when it closes a session whose create never recorded the
        vendor's answer (a replica killed between the two), so that it is closed rather than
        billed until the vendor's backstop. Default: ``None`` (the vendor cannot tell).
        """
        return None

    def callback_routes(self) -> list[CallbackRoute]:
        """Callback routes the gateway's ops listener must serve for this vendor (at most one)."""
        return []

    async def aclose(self) -> None:  # noqa: B027
        """Release clients and sockets held by the adapter."""
