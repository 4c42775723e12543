"""ZEGOCLOUD Digital Human adapter: stream tasks as sessions (docs/vendors/zegocloud.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import vendor_options_pb2
from pydantic import ValidationError

from adapters.zegocloud.api import VENDOR, ZegoApi, is_already_closed, verify_callback_signature
from adapters.zegocloud.channel import ZegoDriveChannel
from adapters.zegocloud.models import (
    TASK_INIT_FAILED,
    TASK_STOPPED,
    TASK_STOPPING,
    TASK_STREAMING,
    CallbackSignature,
    DriveStatusCallback,
    TaskStatusCallback,
    parse_callback,
)
from adapters.zegocloud.settings import ZegocloudSettings
from core.contract import (
    AvatarInfo,
    AvatarPage,
    CallbackRejected,
    CallbackRoute,
    Capabilities,
    DriveChannel,
    PacingRule,
    ReadyState,
    SessionSpec,
    SessionStatus,
    VendorAdapter,
    VendorCallback,
    VendorSessionData,
    VendorSessionHandle,
)
from core.errors import (
    Reason,
    VendorError,
    invalid_argument,
)
from core.resilience import create_or_adopt

log = structlog.get_logger("adapters.zegocloud")

CALLBACK_PATH = "/callbacks/zegocloud"
TTL_RANGE_S = (10, 86400)  # zegocloud.md §4 CreateDigitalHumanStreamTask TTL
MAX_IDLE_RANGE_S = (30, 86400)  # zegocloud.md §4 MaxIdleTime
BACKSTOP_MARGIN_S = 60
"""Vendor backstops sit this far beyond the gateway's own limits, so the gateway's reaper
closes first and the vendor only acts if the gateway is gone."""


def stream_id_for(session_id: str) -> str:
    """The StreamId derived from a gateway session id (unique per AppID, zegocloud.md §4)."""
    return f"ag_{session_id}"


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], math.ceil(value)))


class ZegocloudSessionData(VendorSessionData):
    """What a ZEGO session keeps (zegocloud.md §4).

    Attributes:
        room_id: the RTC room the task publishes in.
        stream_id: the RTC stream id (derived from the session id, unique per AppID).
        tts: DriveByText ``TTSConfig`` (``TimbreId`` and the optional rates and volume).
    """

    room_id: str = ""
    stream_id: str = ""
    tts: dict[str, str | int | float] = {}


class ZegocloudAdapter(VendorAdapter):
    """ZEGOCLOUD: REST with MD5 signatures, WSS PCM drives, HTTP drive-status callbacks.

    Args:
        settings: credentials, API URL, callback secret, default timbre.
        sandbox: whether the API URL is the local emulator.
    """

    session_data_type = ZegocloudSessionData
    capabilities = Capabilities(
        vendor=VENDOR,
        display_name="ZEGOCLOUD Digital Human",
        sample_rates_hertz=(16000, 24000),  # zegocloud.md §8 Start.SampleRate
        # Push ahead of real time, bounded at 2 s (zegocloud.md §8: examples send unpaced; the
        # backend buffers). 20 ms frames keep the added latency of re-chunking low.
        pacing=PacingRule(frame_ms=20, burst_frames=100, interval_ms=20),
        text=True,
        streaming_text=False,
        interrupt=True,
        interrupt_ack=True,  # InterruptDriveTask's Code 0 is the vendor's acknowledgement
        max_text_chars=1800,  # zegocloud.md §4 DriveByText
        rest_qps=10.0,  # zegocloud.md §1, per Action
        list_avatars=True,
        # A WS drive interrupts the current broadcast (zegocloud.md §5): play turns one after
        # another.
        sequential_turns=True,
        # The channel prepares the first audio turn's drive (zegocloud.md §8.6) when it opens:
        # once the task is streaming, not on the first frame.
        open_channel_at_ready=True,
    )

    def __init__(self, settings: ZegocloudSettings, *, sandbox: bool = False) -> None:
        super().__init__(sandbox=sandbox)
        assert settings.app_id is not None and settings.server_secret is not None
        self.settings = settings
        self.api = ZegoApi(
            settings.app_id,
            settings.server_secret.get_secret_value(),
            settings.api_url,
            self.rate_limiter,
        )
        self._callback_secret = (
            settings.callback_secret.get_secret_value() if settings.callback_secret else ""
        )
        self._channels: dict[str, ZegoDriveChannel] = {}

    async def create_session(self, spec: SessionSpec) -> VendorSessionHandle:
        """CreateDigitalHumanStreamTask with TTL and MaxIdleTime always set (zegocloud.md §4).

        TTL and MaxIdleTime (s) sit ``BACKSTOP_MARGIN_S`` beyond the session's own limits.
        Vendor HTTP calls: at most 1 CreateDigitalHumanStreamTask (never retried: a lost
        answer may mean a billed task) and, only when that answer is lost (unavailable or
        timed out), at most 4 QueryDigitalHumanStreamTasks to find and adopt the task.
        """
        opts = (
            spec.options_as(vendor_options_pb2.ZegocloudOptions)
            or vendor_options_pb2.ZegocloudOptions()
        )
        room_id = opts.room_id or f"ag-{spec.session_id[:20]}"
        stream_id = opts.stream_id or stream_id_for(spec.session_id)
        if (
            opts.sample_rate_hertz
            and opts.sample_rate_hertz not in self.capabilities.sample_rates_hertz
        ):
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"zegocloud.sample_rate_hertz must be 16000 or 24000, got {opts.sample_rate_hertz}",
                field="vendor_options.zegocloud.sample_rate_hertz",
            )

        async def create() -> str:
            created = await self.api.create_stream_task(
                digital_human_id=spec.avatar_id,
                room_id=room_id,
                stream_id=stream_id,
                ttl_s=_clamp(spec.max_duration_s + BACKSTOP_MARGIN_S, TTL_RANGE_S),
                max_idle_time_s=_clamp(spec.idle_timeout_s + BACKSTOP_MARGIN_S, MAX_IDLE_RANGE_S),
                background_color=opts.background_color,
            )
            return created.task_id

        # A lost answer (the task is billed until its TTL) is found by our StreamId, derived
        # from the session id and unique per AppID (zegocloud.md §4), and adopted.
        task_id = await create_or_adopt(
            create, lambda: self._find_task(stream_id), vendor=VENDOR, avatar_id=spec.avatar_id
        )
        tts: dict[str, Any] = {"TimbreId": opts.timbre_id or self.settings.timbre_id}
        if opts.speech_rate:
            tts["SpeechRate"] = opts.speech_rate
        if opts.pitch_rate:
            tts["PitchRate"] = opts.pitch_rate
        if opts.volume:
            tts["Volume"] = opts.volume
        playback = pb.Playback(
            zegocloud=pb.ZegocloudPlayback(
                app_id=self.api.app_id, room_id=room_id, stream_id=stream_id
            )
        )
        return VendorSessionHandle(
            task_id,
            playback=playback,
            data=ZegocloudSessionData(
                room_id=room_id,
                stream_id=stream_id,
                tts=tts,
                sample_rate_hertz=opts.sample_rate_hertz,
            ),
        )

    async def find_vendor_session(self, session_id: str) -> str | None:
        """The live task publishing the StreamId derived from ``session_id`` (see the base).

        A task created with a caller-chosen ``stream_id`` option is not found.
        """
        return await self._find_task(stream_id_for(session_id))

    async def _find_task(self, stream_id: str) -> str | None:
        """The TaskId of the live task publishing ``stream_id``, if ZEGO lists one.

        One QueryDigitalHumanStreamTasks, at most 4 HTTP calls (the api's retries only).
        """
        try:
            listed = await self.api.query_stream_tasks()
        except VendorError:
            return None
        return next((t.task_id for t in listed.tasks if t.stream_id == stream_id), None)

    async def session_status(self, handle: VendorSessionHandle) -> SessionStatus:
        """GetDigitalHumanStreamTaskStatus: 1 initialising, 2 failed, 3 live (zegocloud.md §5).

        Vendor HTTP calls: at most 4 GetDigitalHumanStreamTaskStatus (retries of retryable
        errors, bounded by the caller's deadline). The gateway's readiness poll calls this
        repeatedly; each probe keeps this bound.
        """
        answer = await self.api.get_stream_task_status(handle.vendor_session_id)
        if answer.status == TASK_STREAMING:
            return SessionStatus(ReadyState.READY)
        if answer.status == TASK_INIT_FAILED:
            return SessionStatus(ReadyState.FAILED, answer.fail_reason or "init failed")
        if answer.status in (TASK_STOPPING, TASK_STOPPED):
            return SessionStatus(ReadyState.CLOSED, "task stopped")
        return SessionStatus(ReadyState.PENDING)

    async def close_session(self, handle: VendorSessionHandle) -> None:
        """StopDigitalHumanStreamTask; "not found" / "already stopped" count as closed.

        Vendor HTTP calls: at most 4 StopDigitalHumanStreamTask (retries of retryable errors,
        bounded by the caller's deadline); closing the channel makes none.
        """
        channel = self._channels.pop(handle.vendor_session_id, None)
        if channel is not None:
            await channel.aclose()
        try:
            await self.api.stop_stream_task(handle.vendor_session_id)
        except VendorError as exc:
            if not is_already_closed(exc):
                raise

    async def open_channel(self, handle: VendorSessionHandle, session_id: str) -> DriveChannel:
        """A channel that drives the task and receives its routed callbacks.

        Vendor HTTP calls: none here. With ``prepare_drive_socket`` the channel asks at once, in
        the background, for the first audio turn's DriveByWsStream (1 call, never retried);
        see the channel's methods for the others.
        """
        task_id = handle.vendor_session_id
        channel = ZegoDriveChannel(
            self.api,
            task_id,
            dict(handle.data_as(ZegocloudSessionData).tts or {"TimbreId": self.settings.timbre_id}),
            on_close=lambda ch: (
                self._channels.pop(task_id, None) if self._channels.get(task_id) is ch else None
            ),
            prepare_drives=self.settings.prepare_drive_socket,
        )
        self._channels[task_id] = channel
        channel.prepare_next_drive()
        return channel

    async def list_avatars(self, page_size: int, page_token: str) -> AvatarPage:
        """GetDigitalHumanList, offset paging, at most 20 per page (zegocloud.md §4).

        Vendor HTTP calls: at most 4 GetDigitalHumanList (retries of retryable errors).
        """
        offset = 0
        if page_token:
            # Tokens are the offsets this method issued: ASCII digits within ZEGO's range.
            if not (page_token.isascii() and page_token.isdigit() and len(page_token) <= 7):
                raise invalid_argument(
                    Reason.INVALID_ARGUMENT,
                    "page_token is not one this server issued",
                    field="page_token",
                )
            offset = int(page_token)
        limit = max(1, min(20, page_size))
        page = await self.api.get_digital_human_list(offset=offset, limit=limit)
        avatars = [
            AvatarInfo(
                avatar_id=h.digital_human_id,
                display_name=h.name,
                preview_url=h.avatar_url,
                public=h.is_public,
            )
            for h in page.digital_humans
        ]
        nxt = offset + len(avatars)
        return AvatarPage(avatars, str(nxt) if avatars and nxt < page.total else "")

    async def list_open_vendor_sessions(self) -> list[str]:
        """QueryDigitalHumanStreamTasks: tasks initialising or streaming (zegocloud.md §4).

        Vendor HTTP calls: at most 4 QueryDigitalHumanStreamTasks (retries of retryable errors).
        """
        listed = await self.api.query_stream_tasks()
        return [t.task_id for t in listed.tasks]

    def callback_routes(self) -> list[CallbackRoute]:
        """The drive-status callback endpoint (zegocloud.md §6)."""
        return [CallbackRoute("POST", CALLBACK_PATH, self._accept_callback, self._deliver_callback)]

    def _accept_callback(self, raw: bytes, headers: Mapping[str, str]) -> VendorCallback:
        """Verify one ZEGO callback (zegocloud.md §6): signature first (401), then the body (400).

        An unsigned body is refused before its fields are looked at, so a forger learns
        nothing about validation. Unknown EventTypes are accepted (and later ignored).

        Raises:
            CallbackRejected: 401 bad signature, 400 malformed.
        """
        try:
            signed = CallbackSignature.model_validate_json(raw)
        except ValidationError:
            raise CallbackRejected(400, "malformed callback") from None
        if not verify_callback_signature(
            self._callback_secret, signed.timestamp, signed.nonce, signed.signature
        ):
            log.warning("callback_signature_invalid")
            raise CallbackRejected(401, "bad signature")
        try:
            callback = parse_callback(raw)
            issued_at = float(int(signed.timestamp))
        except (ValidationError, ValueError):
            log.warning("callback_malformed")
            raise CallbackRejected(400, "malformed callback") from None
        # The signature covers the secret, Timestamp and Nonce, not the body
        # (zegocloud.md §6): a captured one must not carry another body, nor outlive its time.
        return VendorCallback(
            callback.task_id,
            replay_key=f"{signed.timestamp}:{signed.nonce}",
            issued_at=issued_at,
        )

    def _deliver_callback(self, raw: bytes) -> bool:
        """Apply an accepted callback to this process's channel of its task, if it has one.

        A task-status callback saying the task is streaming (3) or failed to start (2)
        (zegocloud.md §5, §6) ends a CreateSession's readiness wait in this process at once
        (:meth:`VendorAdapter.notify_status`), rather than at its next status poll.
        """
        callback = parse_callback(raw)
        if isinstance(callback, TaskStatusCallback):
            task = callback.detail
            if task.status == TASK_STREAMING and self.notify_status(
                callback.task_id, SessionStatus(ReadyState.READY)
            ):
                return True
            if task.status == TASK_INIT_FAILED and self.notify_status(
                callback.task_id,
                SessionStatus(ReadyState.FAILED, task.fail_reason or "init failed"),
            ):
                return True
        channel = self._channels.get(callback.task_id)
        if channel is None:
            return False
        if isinstance(callback, DriveStatusCallback):
            detail = callback.detail
            channel.on_drive_status(detail.drive_id, detail.status, callback.event_time_ms)
        elif isinstance(callback, TaskStatusCallback) and callback.detail.status in (
            TASK_STOPPING,
            TASK_STOPPED,
        ):
            channel.on_task_stopped(callback.detail.fail_reason or "the vendor stopped the task")
        return True

    async def aclose(self) -> None:
        """Close channels and the HTTP client."""
        for channel in list(self._channels.values()):
            await channel.aclose()
        await self.api.aclose()
