"""Typed Akool payloads: REST answers (akool.md §1–4) and downstream stream messages (§5.4, §6.1).

Everything Akool sends the gateway is parsed here, once, at the boundary: :mod:`adapters.akool.api`
turns each HTTP answer into an :class:`Envelope` and its ``data`` into the endpoint's model, and
:mod:`adapters.akool.channel` turns each data packet into one :data:`StreamMessage` and each
``lk.playback_finished`` payload into a :class:`PlaybackFinished`.

Leniency follows what the adapter relied on before the models existed, so a malformed answer keeps
its error mapping:

* The envelope is strict where Akool's React demo is (akool.md §2): ``code`` an integer, ``msg``
  a string when present. Anything else is "no envelope" and is judged by its HTTP status.
* Read answers (avatar list, session detail and list) are lenient: ``data`` that is not an object
  reads as empty, list entries that are not valid objects are skipped, unknown keys are ignored,
  fields the gateway does not use are not modelled.
* The create answer is strict on ``data._id`` (a string): without it the session cannot be
  tracked, and the adapter looks the session up by its room instead (akool.md §3, §4).

Wire names that are not snake_case identifiers are aliases (``_id``, ``thumbnailUrl``, ``from``);
models are populated by alias, as the wire sends them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from core.wire import LenientInt, VendorPayload

__all__ = [
    "Avatar",
    "AvatarPage",
    "ChatMessage",
    "ChatPayload",
    "CommandAck",
    "CommandAckPayload",
    "CreatedSession",
    "Envelope",
    "EventMessage",
    "EventPayload",
    "PlaybackFinished",
    "Session",
    "SessionCredentials",
    "SessionPage",
    "StreamMessage",
    "TokenAnswer",
    "parse_stream_message",
]

M = TypeVar("M", bound=BaseModel)


class _Wire(VendorPayload):
    """Base of the models of what Akool sends; numbers are read as text where text is due."""

    model_config = ConfigDict(coerce_numbers_to_str=True)


def _valid_entries(model: type[M], value: Any) -> list[M]:
    """The entries of a JSON list that validate as ``model``; anything else is skipped."""
    if not isinstance(value, list):
        return []
    out: list[M] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            continue
    return out


def _skip_invalid(model: type[BaseModel]) -> BeforeValidator:
    """Validator of a list field whose invalid entries are skipped (see ``_valid_entries``)."""
    return BeforeValidator(lambda value: _valid_entries(model, value))


Count = LenientInt
"""A list answer's ``count``: 0 when absent, null or not a number."""


def _object_or_none(value: Any) -> Any:
    """A JSON value that should be an object: anything else reads as absent."""
    return value if isinstance(value, dict) else None


# ---- REST (akool.md §1–4) ------------------------------------------------------------------


class Envelope(VendorPayload):
    """Every REST answer: ``{"code", "msg", "data"}``, ``code == 1000`` on success (akool.md §2).

    Attributes:
        code: Akool's business code (akool.md §8); an integer, or the answer is no envelope.
        msg: Akool's message; a string when present, as the React demo requires.
        data: the answer's payload, validated by the endpoint's own model after ``code``
            has been checked (a failure's ``data`` is not looked at).
        token: getToken's bearer token, the one answer that carries it at the top level
            instead of in ``data`` (akool.md §1); checked by :class:`TokenAnswer`.
    """

    code: StrictInt
    msg: StrictStr = ""
    data: Any = None
    token: Any = None


class TokenAnswer(VendorPayload):
    """getToken's success answer: a non-empty ``token`` at the top level (akool.md §1)."""

    token: Annotated[StrictStr, Field(min_length=1)]


class Avatar(_Wire):
    """One entry of ``avatar/list`` (akool.md §3 ``Avatar``); only the fields the gateway uses.

    Attributes:
        avatar_id: what ``session/create`` takes.
        name: display name.
        url: the avatar's video.
        thumbnail_url: its preview image (``thumbnailUrl``).
        from_: ``from``: 2 official, 3 created by the account (akool.md §3).
    """

    avatar_id: str = ""
    name: str | None = None
    url: str | None = None
    thumbnail_url: str | None = Field(None, alias="thumbnailUrl")
    from_: int | str | None = Field(None, alias="from")


class AvatarPage(_Wire):
    """``avatar/list`` ``data``: ``{count, result[Avatar]}`` (akool.md §3).

    Attributes:
        count: avatars in all pages (0 when absent or not a number).
        result: this page's avatars (entries that are not valid avatars are skipped).
    """

    count: Count = 0
    result: Annotated[list[Avatar], _skip_invalid(Avatar)] = Field(default_factory=list)


class SessionCredentials(_Wire):
    """A session's LiveKit ``credentials`` as Akool echoes them (akool.md §4).

    That the bring-your-own keys are echoed is inferred there.

    Attributes:
        livekit_url: the LiveKit server.
        livekit_room_name: the room; the gateway derives it from its session id.
    """

    livekit_url: str | None = None
    livekit_room_name: str | None = None


class Session(_Wire):
    """``SessionResponse``: session/detail ``data`` and session/list entries (akool.md §3, §4).

    Attributes:
        id: the session id (``_id``); ``None`` when missing.
        status: 1 queueing, 2 processing, 3 completed, 4 failed (akool.md §4); other values
            are kept as sent, so an unknown status reads as not ready.
        stream_type: ``agora``, ``livekit`` or ``trtc``.
        credentials: the RTC credentials (``None`` when absent or not an object).
    """

    id: str | None = Field(None, alias="_id")
    status: int | str | None = None
    stream_type: str | None = None
    credentials: SessionCredentials | None = None

    @field_validator("credentials", mode="before")
    @classmethod
    def _credentials(cls, value: Any) -> Any:
        return _object_or_none(value)


class CreatedSession(Session):
    """``session/create`` ``data`` (akool.md §4): ``_id`` must be a string."""

    id: StrictStr = Field(alias="_id")


class SessionPage(_Wire):
    """``session/list`` ``data``: ``{count, result[SessionResponse]}`` (akool.md §3).

    Attributes:
        count: sessions matching the filter in all pages (0 when absent or not a number).
        result: this page's sessions (entries that are not valid sessions are skipped).
    """

    count: Count = 0
    result: Annotated[list[Session], _skip_invalid(Session)] = Field(default_factory=list)


# ---- stream messages, avatar → gateway (akool.md §5.4) -------------------------------------


class _Message(_Wire):
    v: Literal[2]
    mid: str = ""


class ChatPayload(_Wire):
    """A chat's ``pld`` (akool.md §5.4).

    Attributes:
        from_: ``from``: ``"bot"`` the avatar's reply, ``"user"`` Akool's ASR of the user.
        text: the part's text.
    """

    from_: str | None = Field(None, alias="from")
    text: StrictStr


class ChatMessage(_Message):
    """``{"v": 2, "type": "chat", "mid", "idx", "fin", "pld": {"from", "text"}}`` (akool.md §5.4).

    Attributes:
        idx: the part's index within ``mid`` (0 when absent).
        fin: the last part of ``mid``; taken as ``True`` when absent.
    """

    type: Literal["chat"]
    idx: int = 0
    fin: bool = True
    pld: ChatPayload


class CommandAckPayload(_Wire):
    """A command ack's ``pld`` (akool.md §5.4).

    Attributes:
        cmd: the acked command (``set-params``, ``interrupt``, ``set-action``).
        code: 1000 success, anything else failure (kept as sent for the warning).
        msg: Akool's message.
    """

    cmd: str = ""
    code: int | str | None = None
    msg: str | None = None


class CommandAck(_Message):
    """A command ack: ``{"v": 2, "type": "command", "mid", "pld": {"cmd", "code", "msg"}}``.

    Its ``mid`` is its command's (akool.md §5.4, inferred there).
    """

    type: Literal["command"]
    pld: CommandAckPayload


class EventPayload(_Wire):
    """An event's ``pld``: ``event`` is ``audio_start`` or ``audio_end`` (akool.md §5.4)."""

    event: str = ""


class EventMessage(_Message):
    """An event: ``{"v": 2, "type": "event", "pld": {"event"}}`` (akool.md §5.4).

    Undocumented; known from Akool's React demo.
    """

    type: Literal["event"]
    pld: EventPayload


StreamMessage = Annotated[ChatMessage | CommandAck | EventMessage, Field(discriminator="type")]
"""One downstream stream message, told apart by ``type``."""

_STREAM_MESSAGE: TypeAdapter[ChatMessage | CommandAck | EventMessage] = TypeAdapter(StreamMessage)


def parse_stream_message(data: bytes | str) -> ChatMessage | CommandAck | EventMessage | None:
    """Parse one data packet from the avatar, or ``None`` for anything the gateway ignores.

    Ignored, as Akool's demo ignores them (akool.md §5.4): what is not JSON, ``v`` other than 2,
    a ``type`` other than chat, command or event, a ``pld`` that is not an object, a chat whose
    text is not a string.
    """
    try:
        return _STREAM_MESSAGE.validate_python(json.loads(data))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        return None


# ---- LiveKit avatar RPCs (akool.md §6.1) ---------------------------------------------------


class PlaybackFinished(VendorPayload):
    """``lk.playback_finished`` payload (akool.md §6.1).

    ``{"playback_position": <s>, "interrupted": <bool>}``, from the avatar to the gateway.

    Attributes:
        playback_position: seconds of the segment played (0.0 when absent).
        interrupted: whether the segment was cut short (``False`` when absent).
    """

    playback_position: float = 0.0
    interrupted: bool = False

    @classmethod
    def parse(cls, payload: str) -> PlaybackFinished | None:
        """The payload (empty means ``{}``), or ``None`` when it is not a valid report."""
        try:
            return cls.model_validate_json(payload or "{}")
        except ValidationError:
            return None
