"""Pydantic models of what Tencent IVH sends us: the envelope, REST answers, downstream frames.

The wire names are the vendor's (``SessionId``, ``Header.Code``...) and are kept as aliases;
attributes are snake_case. :class:`adapters.tencent.api.TencentApi` parses every answer into
these models at its boundary and :class:`adapters.tencent.channel.TencentChannel` parses each
downstream frame once; nothing past them reads vendor dicts.

Coercion follows what the vendor's shapes allow and what the adapter did before it had models,
so a slightly odd answer is read the same way:

* a missing or ``null`` field takes its default (``""``, ``0``); strings accept any scalar;
* an object where one is expected (``Header``, ``Payload``) that is missing or not an object
  reads as empty;
* ``Header.Code`` that is present but not a number reads as ``None``; the REST client treats
  it as a failure (tencent.md §3, §8), the command channel as no code;
* numbers in REST answers (``SessionStatus``, ``ErrorCode``) must be numbers or numeric
  strings: anything else fails validation, which the REST client reports as a malformed
  answer (``VENDOR_UNAVAILABLE``, like an answer of the wrong shape);
* numbers in downstream frames never fail: a bad ``Type`` or ``FinalType`` reads as 0, so one
  odd frame cannot stop the status of a drive from being read.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator

from core.wire import LenientInt, VendorPayload, lenient_int


def _text(value: Any) -> str:
    # The vendor's ids and messages are strings; a number or a null there is read as before.
    return str(value) if value else ""


def _number_or_zero(value: Any) -> Any:
    # Missing or empty: 0 (tencent.md §4 "ErrorCode 0 means normal"); other values are
    # validated as int by pydantic (numbers and numeric strings pass, the rest fails).
    return 0 if value is None or value == "" else value


def _code(value: Any) -> int | None:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return None


WireStr = Annotated[str, BeforeValidator(_text)]
"""A vendor string: ``null``/missing → ``""``, a number → its text."""

WireInt = Annotated[int, BeforeValidator(_number_or_zero)]
"""A vendor number in a REST answer: missing → 0; a non-number fails validation."""


# ---- envelope (tencent.md §3) ---------------------------------------------------------------


class Header(VendorPayload):
    """``Header`` of an answer or a downstream frame (tencent.md §3, §6).

    Attributes:
        code: ``Header.Code``: 0 success, else a tencent.md §8 code; ``None`` when the vendor
            sent something that is not a number.
        message: ``Header.Message``.
        request_id: ``Header.RequestID`` (echoes the request's).
    """

    code: Annotated[int | None, BeforeValidator(_code)] = Field(default=0, alias="Code")
    message: WireStr = Field(default="", alias="Message")
    request_id: WireStr = Field(default="", alias="RequestID")


class Envelope(VendorPayload):
    """``{"Header": {...}, "Payload": {...}}``: every answer and downstream frame (tencent.md §3).

    ``payload`` stays a mapping here: it is parsed into the operation's own model only once
    the header says the call succeeded, so a failure is never masked by an odd payload.

    Attributes:
        header: the header; ``None`` when the body had none (or not an object).
        payload: the ``Payload`` object; empty when missing or not an object.
    """

    header: Header | None = Field(default=None, alias="Header")
    payload: dict[str, Any] = Field(default_factory=dict, alias="Payload")

    @field_validator("header", mode="before")
    @classmethod
    def _header_object(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_object(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}


# ---- REST answers (tencent.md §4) -----------------------------------------------------------


class Answer(VendorPayload):
    """The ``Payload`` of a successful session-management call (tencent.md §4).

    Attributes:
        req_id: ``ReqId`` echoed by the vendor.
    """

    req_id: WireStr = Field(default="", alias="ReqId")


class CreateSessionAnswer(Answer):
    """``createsession`` / ``createsessionbyasset`` (tencent.md §4.1).

    Attributes:
        session_id: ``SessionId`` (empty when the vendor left it out).
        session_status: ``SessionStatus`` (1 ready, 3 preparing; tencent.md §4.2).
        play_stream_addr: ``PlayStreamAddr``.
    """

    session_id: WireStr = Field(default="", alias="SessionId")
    session_status: WireInt = Field(default=0, alias="SessionStatus")
    play_stream_addr: WireStr = Field(default="", alias="PlayStreamAddr")


class StatSessionAnswer(Answer):
    """``statsession`` (tencent.md §4.2).

    Attributes:
        session_status: ``SessionStatus``: 1 ready, 2 closed, 3 preparing, 4 failed.
        play_stream_addr: ``PlayStreamAddr``.
        speak_status: ``SpeakStatus`` (tencent.md §6).
        is_session_started: ``IsSessionStarted``.
        error_code: ``ErrorCode`` (0 normal, else a tencent.md §8 code).
        error_message: ``ErrorMessage``.
    """

    session_status: WireInt = Field(default=0, alias="SessionStatus")
    play_stream_addr: WireStr = Field(default="", alias="PlayStreamAddr")
    speak_status: WireStr = Field(default="", alias="SpeakStatus")
    is_session_started: bool = Field(default=False, alias="IsSessionStarted")
    error_code: WireInt = Field(default=0, alias="ErrorCode")
    error_message: WireStr = Field(default="", alias="ErrorMessage")

    @field_validator("is_session_started", mode="before")
    @classmethod
    def _started(cls, value: Any) -> bool:
        return bool(value)


class SessionEntry(VendorPayload):
    """One entry of ``Sessions[]`` in the list answers (tencent.md §4).

    Attributes:
        session_id: ``SessionId``.
        user_id: ``UserId`` the session was created with.
        session_status: ``SessionStatus`` (tencent.md §4.2).
        play_stream_addr: ``PlayStreamAddr``.
    """

    session_id: WireStr = Field(default="", alias="SessionId")
    user_id: WireStr = Field(default="", alias="UserId")
    session_status: WireInt = Field(default=0, alias="SessionStatus")
    play_stream_addr: WireStr = Field(default="", alias="PlayStreamAddr")


class ListSessionsAnswer(Answer):
    """``listsessionofuin`` / ``listsessionofprojectid`` / ``listsessionofassetvk`` (tencent.md §4).

    Attributes:
        sessions: ``Sessions[]``; entries that are not objects are skipped.
    """

    sessions: list[SessionEntry] = Field(default_factory=list, alias="Sessions")

    @field_validator("sessions", mode="before")
    @classmethod
    def _objects_only(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return []
        return [entry for entry in value if isinstance(entry, dict)]


# ---- downstream frames (tencent.md §6) ------------------------------------------------------


class DownstreamPayload(VendorPayload):
    """The ``Payload`` of a downstream frame of a type the channel does not act on.

    Attributes:
        type: ``Type``: 3 status, 4 LLM text, 5 thinking, 9 drive failed (tencent.md §6).
        req_id: ``ReqId``: the drive the frame belongs to.
        session_id: ``SessionId``.
    """

    TYPE: ClassVar[int] = 0

    type: LenientInt = Field(default=0, alias="Type")
    req_id: WireStr = Field(default="", alias="ReqId")
    session_id: WireStr = Field(default="", alias="SessionId")


class _DriveError(DownstreamPayload):
    error_code: LenientInt = Field(default=0, alias="ErrorCode")
    error_message: WireStr = Field(default="", alias="ErrorMessage")
    error_msg: WireStr = Field(default="", alias="ErrorMsg")

    @property
    def error_text(self) -> str:
        """``ErrorMessage``, else ``ErrorMsg`` (the demo reads either, tencent.md §6)."""
        return self.error_message or self.error_msg


class SpeakStatusMessage(_DriveError):
    """Type 3: a drive's broadcast status (tencent.md §6).

    Attributes:
        speak_status: ``SpeakStatus`` (``TextStart``, ``AudioOver``, ``Error``...).
        final_type: ``FinalType`` with ``AudioOver``: 1 we sent the final packet, 2 the vendor
            added it after ``StreamMaxInterval``.
        error_code: ``ErrorCode`` with ``Error``.
    """

    TYPE: ClassVar[int] = 3

    speak_status: WireStr = Field(default="", alias="SpeakStatus")
    final_type: LenientInt = Field(default=0, alias="FinalType")


class ChatTextMessage(DownstreamPayload):
    """Type 4: LLM reply content (tencent.md §6).

    Attributes:
        text: ``Text``.
        text_display: ``TextDisplay`` (preferred for display).
        final: ``Final``; ``None`` when the vendor left it out.
    """

    TYPE: ClassVar[int] = 4

    text: WireStr = Field(default="", alias="Text")
    text_display: WireStr = Field(default="", alias="TextDisplay")
    final: bool | None = Field(default=None, alias="Final")

    @field_validator("final", mode="before")
    @classmethod
    def _final(cls, value: Any) -> bool | None:
        return None if value is None else bool(value)


class DriveFailedMessage(_DriveError):
    """Type 9: the vendor failed (part of) a drive (tencent.md §6).

    Attributes:
        error_code: ``ErrorCode`` (tencent.md §8).
    """

    TYPE: ClassVar[int] = 9


_MESSAGE_TYPES: dict[int, type[DownstreamPayload]] = {
    model.TYPE: model for model in (SpeakStatusMessage, ChatTextMessage, DriveFailedMessage)
}


class DownstreamFrame(VendorPayload):
    """One downstream frame, parsed once (tencent.md §6).

    Attributes:
        header: the frame's header (empty when it had none).
        message: the payload as the model of its ``Type``; :class:`DownstreamPayload` for
            types the channel ignores (5, the old 2/7, none).
    """

    header: Header
    message: DownstreamPayload

    @property
    def req_id(self) -> str:
        """The drive the frame is about: ``Payload.ReqId``, else ``Header.RequestID``."""
        return self.message.req_id or self.header.request_id

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> DownstreamFrame:
        """Parse a decoded JSON object; never fails (every field is lenient)."""
        envelope = Envelope.model_validate(raw)
        payload = envelope.payload
        model = _MESSAGE_TYPES.get(lenient_int(payload.get("Type")), DownstreamPayload)
        return cls(header=envelope.header or Header(), message=model.model_validate(payload))
