"""ZEGOCLOUD wire payloads as pydantic models, parsed once where they enter the adapter.

``api.py`` parses each REST answer's ``Data`` (zegocloud.md §3, §4) into one of the models
below; ``adapter.py`` parses drive- and task-status callback bodies (zegocloud.md §6) with
:func:`parse_callback`. Attributes are snake_case; each field's alias is the vendor's wire
name. Fields ZEGO adds later are ignored (zegocloud.md §6 asks receivers not to hard-code
the field set). A payload that does not fit raises :class:`pydantic.ValidationError`, which
``api.py`` turns into ``VENDOR_UNAVAILABLE`` like any other malformed answer.

Tolerances kept on purpose (each was the adapter's behaviour before these models):

- ids and strings given as JSON numbers are read as their decimal text;
- a list given as ``null`` reads as empty (a Go server encodes an empty slice as ``null``);
- a missing ``Data`` reads as ``{}`` (zegocloud.md §3), so Actions with nothing to return
  parse as :class:`NoData`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
)

from core.wire import VendorPayload

TASK_INITIALISING, TASK_INIT_FAILED, TASK_STREAMING, TASK_STOPPING, TASK_STOPPED = 1, 2, 3, 4, 5
"""Task ``Status`` values (zegocloud.md §5); 5 appears in callbacks only."""

EVENT_TASK_STATUS, EVENT_DRIVE_STATUS = 3, 4
"""Callback ``EventType`` values (zegocloud.md §6)."""


def _none_as_empty(value: object) -> object:
    return [] if value is None else value


class ZegoModel(VendorPayload):
    """Base of every ZEGO payload; numeric ids are read as text."""

    model_config = ConfigDict(coerce_numbers_to_str=True)


# ---- REST answers (zegocloud.md §4) --------------------------------------------------------


class NoData(ZegoModel):
    """``Data`` of Actions that return nothing: Stop, InterruptDriveTask (zegocloud.md §3, §4)."""


class CreateTaskData(ZegoModel):
    """``CreateDigitalHumanStreamTask`` answer (zegocloud.md §4).

    Attributes:
        task_id: ``TaskId``, the stream task (our vendor session id).
    """

    task_id: str = Field(alias="TaskId", min_length=1)


class TaskStatusData(ZegoModel):
    """``GetDigitalHumanStreamTaskStatus`` answer (zegocloud.md §4, §5).

    Attributes:
        status: ``Status``: 1 initialising, 2 failed, 3 streaming, 4 stopping (zegocloud.md §5).
        room_id: ``RoomId`` the task publishes in.
        stream_id: ``StreamId`` it publishes.
        fail_reason: ``FailReason``, only for Status 2 (``""`` otherwise).
        create_time_s: ``CreateTime``, Unix seconds, if given.
    """

    status: int = Field(alias="Status")
    room_id: str = Field("", alias="RoomId")
    stream_id: str = Field("", alias="StreamId")
    fail_reason: str = Field("", alias="FailReason")
    create_time_s: int | None = Field(None, alias="CreateTime")


class TaskListItem(ZegoModel):
    """One running task of ``QueryDigitalHumanStreamTasks`` (zegocloud.md §4).

    Attributes:
        task_id: ``TaskId``.
        room_id: ``RoomId``.
        stream_id: ``StreamId`` (ours derive from the session id, unique per AppID).
        status: ``Status``, 1 or 3 (zegocloud.md §5); 0 when absent.
        create_time_s: ``CreateTime``, Unix seconds, if given.
    """

    task_id: str = Field(alias="TaskId", min_length=1)
    room_id: str = Field("", alias="RoomId")
    stream_id: str = Field("", alias="StreamId")
    status: int = Field(0, alias="Status")
    create_time_s: int | None = Field(None, alias="CreateTime")


class TaskListData(ZegoModel):
    """``QueryDigitalHumanStreamTasks`` answer: tasks initialising or streaming (zegocloud.md §4).

    Attributes:
        tasks: ``TaskList`` (``null`` or absent reads as empty).
    """

    tasks: Annotated[list[TaskListItem], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list, alias="TaskList"
    )


class DriveData(ZegoModel):
    """``DriveByText`` answer (zegocloud.md §4).

    Attributes:
        drive_id: ``DriveId`` the drive-status callbacks name (zegocloud.md §6).
    """

    drive_id: str = Field(alias="DriveId", min_length=1)


class WsDriveData(ZegoModel):
    """``DriveByWsStream`` answer (zegocloud.md §4, §8.1).

    Attributes:
        drive_id: ``DriveId``, sent in the socket's ``Start`` frame (zegocloud.md §8.2).
        wss_address: ``WssAddress``, ``wss://<ip>:<port>/ws?Token=...``, used as given.
    """

    drive_id: str = Field(alias="DriveId", min_length=1)
    wss_address: str = Field(alias="WssAddress", min_length=1)


class AvatarAction(ZegoModel):
    """One entry of a digital human's ``Actions`` (zegocloud.md §4).

    Attributes:
        action: ``Action`` name, for ``DoAction``.
        preview_url: ``PreviewUrl`` (valid 24 h).
    """

    action: str = Field("", alias="Action")
    preview_url: str = Field("", alias="PreviewUrl")


class DigitalHuman(ZegoModel):
    """One avatar of ``GetDigitalHumanList`` (zegocloud.md §4).

    Attributes:
        digital_human_id: ``DigitalHumanId``.
        name: ``Name``.
        avatar_url: ``AvatarUrl``, a preview image valid for 24 h (zegocloud.md §9).
        is_public: ``IsPublic``.
        actions: ``Actions`` (``null`` or absent reads as empty).
    """

    digital_human_id: str = Field(alias="DigitalHumanId", min_length=1)
    name: str = Field("", alias="Name")
    avatar_url: str = Field("", alias="AvatarUrl")
    is_public: bool = Field(False, alias="IsPublic")
    actions: Annotated[list[AvatarAction], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list, alias="Actions"
    )


class DigitalHumanPage(ZegoModel):
    """``GetDigitalHumanList`` answer: one offset page of at most 20 (zegocloud.md §4).

    Attributes:
        total: ``Total`` avatars the FetchMode selects (0 when absent).
        digital_humans: ``DigitalHumans`` of this page (``null`` or absent reads as empty).
    """

    total: int = Field(0, alias="Total")
    digital_humans: Annotated[list[DigitalHuman], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list, alias="DigitalHumans"
    )


# ---- callbacks (zegocloud.md §6) -----------------------------------------------------------


class CallbackSignature(ZegoModel):
    """The signed fields of a callback, read before anything else (zegocloud.md §6).

    Missing fields read as ``""`` so that an unsigned body fails the signature check (401)
    rather than validation.

    Attributes:
        timestamp: ``Timestamp``, Unix seconds as a string.
        nonce: ``Nonce``.
        signature: ``Signature``, sha1 hex.
    """

    timestamp: str = Field("", alias="Timestamp")
    nonce: str = Field("", alias="Nonce")
    signature: str = Field("", alias="Signature")


class TaskStatusDetail(ZegoModel):
    """``Detail`` of a task-status callback, EventType 3 (zegocloud.md §6).

    Attributes:
        status: ``Status`` 1..5 (zegocloud.md §5).
        room_id: ``RoomId``.
        stream_id: ``StreamId``.
        fail_reason: ``FailReason`` (``""`` when absent).
    """

    status: int = Field(alias="Status")
    room_id: str = Field("", alias="RoomId")
    stream_id: str = Field("", alias="StreamId")
    fail_reason: str = Field("", alias="FailReason")


class DriveStatusDetail(ZegoModel):
    """``Detail`` of a drive-status callback, EventType 4 (zegocloud.md §6).

    Attributes:
        drive_id: ``DriveId``.
        status: ``Status``: 1 queued, 2 driving, 3 failed, 4 ended (zegocloud.md §5).
    """

    drive_id: str = Field(alias="DriveId", min_length=1)
    status: int = Field(alias="Status")


class _CallbackBase(ZegoModel):
    """The fields every callback carries (zegocloud.md §6).

    Attributes:
        app_id: ``AppId``.
        timestamp: ``Timestamp``, Unix seconds when sent.
        nonce: ``Nonce``.
        signature: ``Signature``.
        event_time_ms: ``EventTime``, Unix milliseconds when the event happened.
        task_id: ``TaskId``.
    """

    app_id: int | None = Field(None, alias="AppId")
    timestamp: str = Field("", alias="Timestamp")
    nonce: str = Field("", alias="Nonce")
    signature: str = Field("", alias="Signature")
    event_time_ms: int = Field(0, alias="EventTime")
    task_id: str = Field("", alias="TaskId")


class TaskStatusCallback(_CallbackBase):
    """A task-status callback, EventType 3 (zegocloud.md §6).

    The common fields are :class:`_CallbackBase`'s.

    Attributes:
        event_type: always 3.
        detail: the task's new status.
    """

    event_type: int = Field(alias="EventType")
    detail: TaskStatusDetail = Field(alias="Detail")


class DriveStatusCallback(_CallbackBase):
    """A drive-status callback, EventType 4 (zegocloud.md §6).

    The common fields are :class:`_CallbackBase`'s.

    Attributes:
        event_type: always 4.
        detail: the drive's new status.
    """

    event_type: int = Field(alias="EventType")
    detail: DriveStatusDetail = Field(alias="Detail")


class OtherCallback(_CallbackBase):
    """A callback of an EventType the adapter does not use; acknowledged, then ignored.

    ZEGO may add event types (zegocloud.md §6).

    Attributes:
        event_type: ``EventType``.
        detail: ``Detail``, unparsed.
    """

    event_type: int = Field(alias="EventType")
    detail: dict[str, Any] = Field(default_factory=dict, alias="Detail")


def _callback_kind(value: Any) -> str:
    # EventType is a Number (zegocloud.md §6); its decimal text is accepted too, as the
    # int fields of every model accept it.
    event_type = value.get("EventType") if isinstance(value, dict) else None
    if isinstance(event_type, str) and event_type.strip().isdigit():
        event_type = int(event_type)
    if isinstance(event_type, bool) or not isinstance(event_type, int):
        return "other"
    return {EVENT_TASK_STATUS: "task", EVENT_DRIVE_STATUS: "drive"}.get(event_type, "other")


ZegoCallback = Annotated[
    Annotated[TaskStatusCallback, Tag("task")]
    | Annotated[DriveStatusCallback, Tag("drive")]
    | Annotated[OtherCallback, Tag("other")],
    Discriminator(_callback_kind),
]
"""A callback body (zegocloud.md §6), typed by its ``EventType``."""

_CALLBACK = TypeAdapter[ZegoCallback](ZegoCallback)


def parse_callback(raw: bytes | str) -> TaskStatusCallback | DriveStatusCallback | OtherCallback:
    """Parse a callback body (JSON, zegocloud.md §6); check its signature first.

    Raises:
        pydantic.ValidationError: not a JSON object, or a known EventType whose fields do
            not fit.
    """
    return _CALLBACK.validate_json(raw)
