"""The Tencent Cloud IVH (interactive aPaaS, cloud rendering) vendor adapter.

Session lifecycle over the signed REST API (tencent.md §4):
``createsession`` / ``createsessionbyasset`` → ``statsession`` until ``SessionStatus`` 1 →
``startsession`` → one command channel (:class:`adapters.tencent.channel.TencentChannel`) →
``closesession``. Signing, the envelope and the code table live in :mod:`adapters.tencent.api`.

Backstops: Tencent has no max-duration or idle parameter. Its own rule (tencent.md §7) closes a
session after 10 min without a drive or heartbeat, which is the vendor-side idle backstop;
the gateway's reaper enforces ``max_duration`` and the shorter ``idle_timeout``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import vendor_options_pb2

from adapters.tencent.api import (
    CODE_SESSION_CLOSED,
    CODE_SESSION_NOT_FOUND,
    CREATE_OVERRIDES,
    VENDOR,
    TencentApi,
)
from adapters.tencent.channel import (
    AUDIO_SAMPLE_RATE_HERTZ,
    DEFAULT_STREAM_MAX_INTERVAL_S,
    TEXT_MAX_BYTES,
    TEXT_SECONDS_PER_CHAR_MAX,
    TencentChannel,
)
from adapters.tencent.models import (
    Answer,
    CreateSessionAnswer,
    ListSessionsAnswer,
    StatSessionAnswer,
)
from adapters.tencent.settings import TencentSettings
from core.contract import (
    AvatarInfo,
    AvatarPage,
    Capabilities,
    DriveChannel,
    PacingRule,
    ReadyState,
    SessionSpec,
    SessionStatus,
    VendorAdapter,
    VendorSessionData,
    VendorSessionHandle,
)
from core.errors import (
    Reason,
    VendorError,
    invalid_argument,
    vendor_unavailable,
)
from core.resilience import Backoff, retry_call

PROTOCOLS = ("webrtc", "rtmp", "trtc")
"""``Protocol`` values createsession takes, lowercase (tencent.md §4); webrtc is our default."""

DRIVER_TEXT_ONLY = 1
DRIVER_AUDIO_AND_TEXT = 3

STREAM_MAX_INTERVAL_RANGE_MS = (2000, 6000)
"""Allowed ``StreamMaxInterval`` (ms; tencent.md §4)."""

MAX_VIDEO_LAYERS = 5
"""``Backgrounds`` + ``Foregrounds`` of createsessionbyasset (tencent.md §4)."""

_STATUS_TO_STATE = {
    1: ReadyState.READY,
    2: ReadyState.CLOSED,
    3: ReadyState.PENDING,
    4: ReadyState.FAILED,
    5: ReadyState.FAILED,  # [hist] stream-creation timeout of the old streammanager API
}


REST_ATTEMPTS = 5
"""Most calls one retried REST operation makes (the first included): the adapter's one retry
budget per operation (``Backoff.max_attempts``); the caller's deadline can only cut it short
(``core.resilience.deadline_scope``)."""

USER_ID_PREFIX = "avgw-"
"""Prefix of the UserIds the adapter derives from gateway session ids."""


def user_id_for(session_id: str) -> str:
    """The avatar ``UserId`` derived from the gateway session id.

    Deterministic on purpose: a new session with the same UserId closes the previous one
    (tencent.md §4), so a create retried after a lost answer can never leave a second billed
    session.
    """
    return USER_ID_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "-", session_id)[:58]


class TencentSessionData(VendorSessionData):
    """What a Tencent IVH session keeps (tencent.md §4).

    Attributes:
        protocol: the play protocol asked for (``webrtc``, ``rtmp``, ...).
        driver_type: 1 text only, 3 audio and text.
        user_id: the ``UserId`` derived from the session id.
        stream_max_interval_ms: the session's ``StreamMaxInterval`` (ms).
        session_name: the gateway session (``sessions/{id}``), for error metadata.
        asset_virtualman_key: set for ``createsessionbyasset`` sessions.
        project_id: the ``VirtualmanProjectId`` of ``createsession`` sessions.
        session_status: ``SessionStatus`` the create call answered.
    """

    protocol: str = ""
    driver_type: int = DRIVER_AUDIO_AND_TEXT
    user_id: str = ""
    stream_max_interval_ms: int = int(DEFAULT_STREAM_MAX_INTERVAL_S * 1000)
    session_name: str = ""
    asset_virtualman_key: str = ""
    project_id: str = ""
    session_status: int = 0


class TencentAdapter(VendorAdapter):
    """Tencent Cloud IVH adapter (docs/vendors/tencent.md).

    Args:
        settings: appkey, access token, API URL (https; wss is derived), default project id
            and heartbeat interval (s).
        sandbox: the gateway runs against the in-process emulator.
    """

    session_data_type = TencentSessionData
    capabilities = Capabilities(
        vendor=VENDOR,
        display_name="Tencent Cloud IVH",
        sample_rates_hertz=(AUDIO_SAMPLE_RATE_HERTZ,),
        # tencent.md §5 SEND_AUDIO: 160 ms / 5120-byte packets, first 6 at once, then one per 120 ms
        # at most (interval/duration ratio in [0.75, 1]). A backlogged sender paced at
        # exactly 120 ms sits on the edge of that window and network jitter tips it over
        # (bench/RESULTS.md), so packets go at 128 ms (ratio 0.8), inside the window.
        pacing=PacingRule(160, 6, 128),
        audio=True,
        text=True,
        streaming_text=True,
        interrupt=True,
        # The vendor answers an interrupt with the drive's TextOver / AudioOver (tencent.md §5, §6);
        # an audio interrupt may be ignored (tencent.md §5), hence the bounded wait.
        interrupt_ack=True,
        # A text interrupt must wait for TextStart and the 1 s SEND_TEXT spacing (tencent.md §5).
        interrupt_ack_timeout_s=3.0,
        max_text_chars=4000,
        max_text_bytes=TEXT_MAX_BYTES,
        # tencent.md §7: > 30 s and < 1 min (cn) / < 10 min (intl); the vendor SDK uses 45 s.
        keepalive_interval_s=45.0,
        list_avatars=False,
        # statsession every 40 ms for the first 5 s (the vendor SDK polls every 100 ms;
        # Tencent publishes no numeric QPS, tencent.md §4.2, §8): CreateSession answers
        # within ~50 ms of the session becoming ready, then backs off.
        ready_poll_interval_s=0.04,
        ready_poll_fast_s=5.0,
        # The command channel's WebSocket (TCP, TLS and upgrade round trips) is opened once the
        # session is ready (startsession done), not on the first turn; keepalive holds it.
        open_channel_at_ready=True,
        # The bound of the gateway's turn-order wait for text: IVH voices include slow CJK
        # speech (~0.25 s per character), so a Latin-rate estimate would let a turn go early
        # and cut the text still playing.
        speech_seconds_per_char=TEXT_SECONDS_PER_CHAR_MAX,
        # A new text cuts the one playing (tencent.md §5.6): the gateway holds each turn until
        # the earlier ones ended (turn order is its concern). The vendor's own switching waits
        # (TextOver before audio, AudioOver before text, a new ReqId inside a turn) and the
        # SEND_TEXT spacing stay in the channel.
        sequential_turns=True,
    )

    def __init__(self, settings: TencentSettings, *, sandbox: bool = False) -> None:
        super().__init__(sandbox=sandbox)
        self.settings = settings
        # The gateway reads adapter.capabilities; the heartbeat interval is a setting.
        self.capabilities = dataclasses.replace(
            type(self).capabilities, keepalive_interval_s=settings.heartbeat_interval_s
        )
        token = settings.access_token.get_secret_value() if settings.access_token else None
        self.api = TencentApi(appkey=settings.appkey, access_token=token, api_url=settings.api_url)
        self.backoff = Backoff(max_attempts=REST_ATTEMPTS)
        """Retry budget of every retried REST operation (at most ``max_attempts`` calls)."""
        self.channel_backoff: Backoff | None = None
        """Reconnect backoff of channels (``None``: the shared default)."""

    # ---- sessions -----------------------------------------------------------------------

    async def create_session(self, spec: SessionSpec) -> VendorSessionHandle:
        """Create the vendor session: ``createsession`` or ``createsessionbyasset`` (tencent.md §4).

        ``createsession`` takes ``spec.avatar_id`` (else the configured project id) as the
        VirtualmanProjectId; ``createsessionbyasset`` is used when
        ``TencentOptions.asset_virtualman_key`` is set.

        Vendor calls: at most ``REST_ATTEMPTS`` (5) of that operation (retryable failures are
        repeated with backoff, within the caller's deadline); none when the options are refused.

        Raises:
            GatewayError: INVALID_ARGUMENT for options the vendor would refuse.
            VendorError: from the code table (``AVATAR_NOT_FOUND`` for an unknown project).
        """
        options = (
            spec.options_as(vendor_options_pb2.TencentOptions)
            or vendor_options_pb2.TencentOptions()
        )
        payload, data = self._create_payload(spec, options)
        operation = "createsessionbyasset" if options.asset_virtualman_key else "createsession"
        avatar = options.asset_virtualman_key or str(payload.get("VirtualmanProjectId", ""))

        async def call() -> CreateSessionAnswer:
            return await self.api.call(
                operation,
                payload,
                CreateSessionAnswer,
                overrides=CREATE_OVERRIDES,
                avatar_id=avatar,
            )

        # Safe to repeat: the derived UserId makes the vendor close any earlier attempt.
        answer = await retry_call(call, backoff=self.backoff, operation=operation)
        if not answer.session_id:
            raise vendor_unavailable(VENDOR, f"{operation} answered without a SessionId")
        data.session_status = answer.session_status
        playback = pb.Playback(
            tencent=pb.TencentPlayback(
                play_stream_addr=answer.play_stream_addr,
                protocol=data.protocol,
            )
        )
        return VendorSessionHandle(
            vendor_session_id=answer.session_id, playback=playback, data=data
        )

    def _create_payload(
        self, spec: SessionSpec, options: vendor_options_pb2.TencentOptions
    ) -> tuple[dict[str, Any], TencentSessionData]:
        protocol = (options.protocol or "webrtc").lower()
        if protocol not in PROTOCOLS:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"tencent protocol must be one of {', '.join(PROTOCOLS)}, got {options.protocol!r}",
                field="vendor_options.tencent.protocol",
            )
        driver_type = options.driver_type or DRIVER_AUDIO_AND_TEXT
        if driver_type not in (DRIVER_TEXT_ONLY, DRIVER_AUDIO_AND_TEXT):
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"tencent driver_type must be 1 (text) or 3 (audio and text), got {driver_type}",
                field="vendor_options.tencent.driver_type",
            )
        user_id = options.user_id or user_id_for(spec.session_id)
        payload: dict[str, Any] = {"UserId": user_id, "Protocol": protocol}
        payload["DriverType"] = driver_type
        stream_max_interval_ms = int(DEFAULT_STREAM_MAX_INTERVAL_S * 1000)
        if options.HasField("stream_max_interval"):
            stream_max_interval_ms = options.stream_max_interval.ToMilliseconds()
            low, high = STREAM_MAX_INTERVAL_RANGE_MS
            if not low <= stream_max_interval_ms <= high:
                raise invalid_argument(
                    Reason.INVALID_ARGUMENT,
                    f"tencent stream_max_interval must be 2 s to 6 s, got "
                    f"{stream_max_interval_ms} ms",
                    field="vendor_options.tencent.stream_max_interval",
                )
            # Only sent when asked for: older vendor deployments do not know the field.
            payload["StreamMaxInterval"] = stream_max_interval_ms
        protocol_option = _protocol_option(options)
        if protocol_option:
            payload["ProtocolOption"] = protocol_option
        if options.alpha_channel_enable:
            payload["ExtraInfo"] = {"AlphaChannelEnable": True}
        data = TencentSessionData(
            protocol=protocol,
            driver_type=driver_type,
            user_id=user_id,
            stream_max_interval_ms=stream_max_interval_ms,
            session_name=f"sessions/{spec.session_id}",
        )
        if options.asset_virtualman_key:
            payload["AssetVirtualmanKey"] = options.asset_virtualman_key
            data.asset_virtualman_key = options.asset_virtualman_key
            if len(options.background_urls) > MAX_VIDEO_LAYERS:
                raise invalid_argument(
                    Reason.INVALID_ARGUMENT,
                    f"tencent allows at most {MAX_VIDEO_LAYERS} background layers, got "
                    f"{len(options.background_urls)}",
                    field="vendor_options.tencent.background_urls",
                )
            if options.background_urls:
                # VideoLayer's URL field (inferred; tencent.md §4 names the list, not its fields).
                payload["Backgrounds"] = [{"Url": url} for url in options.background_urls]
            return payload, data
        if options.background_urls:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                "tencent background_urls need asset_virtualman_key (createsessionbyasset)",
                field="vendor_options.tencent.background_urls",
            )
        project = spec.avatar_id or self.settings.project_id
        if not project:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                "tencent needs an avatar_id (VirtualmanProjectId) or the setting "
                "AVATAR_GATEWAY_TENCENT__PROJECT_ID",
                field="avatar_id",
            )
        payload["VirtualmanProjectId"] = project
        data.project_id = project
        return payload, data

    async def session_status(self, handle: VendorSessionHandle) -> SessionStatus:
        """``statsession``: 1 READY, 3 PENDING, 2 CLOSED, 4 FAILED (tencent.md §4).

        Also refreshes ``handle.playback`` when the vendor reports a (new) PlayStreamAddr.

        Vendor calls: exactly 1 ``statsession``, not retried here: the caller polls
        (``core.resilience.poll_until``), and a second loop inside the poll would multiply
        its calls.
        """
        answer = await self.api.call(
            "statsession",
            {"SessionId": handle.vendor_session_id},
            StatSessionAnswer,
            session=_session_name(handle),
        )
        addr = answer.play_stream_addr
        if addr and handle.playback.tencent.play_stream_addr != addr:
            handle.playback.tencent.play_stream_addr = addr
        error_code = answer.error_code
        state = _STATUS_TO_STATE.get(answer.session_status, ReadyState.PENDING)
        return SessionStatus(
            state=state,
            detail=answer.error_message or f"SessionStatus {answer.session_status}",
            vendor_code=str(error_code) if error_code else "",
        )

    async def start_session(self, handle: VendorSessionHandle) -> None:
        """``startsession``: needed after status 1, before the command channel (tencent.md §4).

        Vendor calls: at most ``REST_ATTEMPTS`` (5) ``startsession`` (110014 "not ready" and
        vendor failures are repeated with backoff, within the caller's deadline).
        """

        async def call() -> Answer:
            return await self.api.call(
                "startsession",
                {"SessionId": handle.vendor_session_id},
                Answer,
                session=_session_name(handle),
            )

        await retry_call(call, backoff=self.backoff, operation="startsession")

    async def list_avatars(self, page_size: int, page_token: str) -> AvatarPage:
        """The configured project (``AVATAR_GATEWAY_TENCENT__PROJECT_ID``), if any.

        IVH has no listing API: an avatar is a ``VirtualmanProjectId`` made in the platform
        console (tencent.md §2). Listing the one the gateway is configured with lets callers
        that pick "the first avatar" work on every vendor; ``Capabilities.list_avatars``
        stays ``False`` because the vendor's own avatars cannot be listed.
        """
        if not self.settings.project_id or page_token:
            return AvatarPage([])
        name = f"configured project {self.settings.project_id}"
        return AvatarPage([AvatarInfo(self.settings.project_id, name, public=False)])

    async def close_session(self, handle: VendorSessionHandle) -> None:
        """Close the session with ``closesession``; idempotent.

        "Session closed" (110013) and "does not exist" (110018) count as closed (tencent.md §8).

        Vendor calls: at most ``REST_ATTEMPTS`` (5) ``closesession`` (vendor failures are
        repeated with backoff, within the caller's deadline; the session manager adds no loop
        of its own).
        """

        async def call() -> Answer:
            return await self.api.call(
                "closesession", {"SessionId": handle.vendor_session_id}, Answer
            )

        try:
            await retry_call(call, backoff=self.backoff, operation="closesession")
        except VendorError as exc:
            if exc.vendor_code in (str(CODE_SESSION_CLOSED), str(CODE_SESSION_NOT_FOUND)):
                return
            raise

    async def find_vendor_session(self, session_id: str) -> str | None:
        """The open session whose ``UserId`` is the one derived from ``session_id``.

        Vendor calls: at most ``REST_ATTEMPTS`` (5) ``listsessionofuin``. A session created
        with a caller-chosen ``TencentOptions.user_id`` is not found.
        """
        wanted = user_id_for(session_id)
        answer = await retry_call(
            lambda: self.api.call("listsessionofuin", {}, ListSessionsAnswer),
            backoff=self.backoff,
            operation="listsessionofuin",
        )
        return next(
            (
                s.session_id
                for s in answer.sessions
                if s.user_id == wanted and s.session_id and s.session_status in (1, 3)
            ),
            None,
        )

    async def list_open_vendor_sessions(self) -> list[str]:
        """Ids of open sessions (status 1 or 3) this gateway created, for leak audits.

        ``listsessionofuin`` lists the whole account (tencent.md §4), whatever project a session
        uses; only sessions whose ``UserId`` carries the gateway's derived prefix are
        returned, so an audit never touches other applications' sessions on the account.
        Sessions created with a caller-chosen ``TencentOptions.user_id`` are not covered.

        Vendor calls: at most ``REST_ATTEMPTS`` (5) ``listsessionofuin`` (one page: the
        operation is not paged, tencent.md §4).
        """

        async def call() -> ListSessionsAnswer:
            return await self.api.call("listsessionofuin", {}, ListSessionsAnswer)

        answer = await retry_call(call, backoff=self.backoff, operation="listsessionofuin")
        return [
            s.session_id
            for s in answer.sessions
            if s.session_id and s.session_status in (1, 3) and s.user_id.startswith(USER_ID_PREFIX)
        ]

    # ---- drive --------------------------------------------------------------------------

    async def open_channel(self, handle: VendorSessionHandle, session_id: str) -> DriveChannel:
        """Open the session's single command channel (tencent.md §5) and start its receive loop.

        Vendor calls: at most ``CONNECT_ATTEMPTS`` (3) WebSocket handshakes (a refusal with
        110015, the slot of a channel that just closed, and transport failures are retried).
        Each later drop of the channel is its own operation: at most
        ``channel_backoff.max_attempts`` (default 8) handshakes per drop, in the channel's
        supervisor, never inside this call.
        """
        data = handle.data_as(TencentSessionData)
        name = session_id if session_id.startswith("sessions/") else f"sessions/{session_id}"
        channel = TencentChannel(
            self.api,
            vendor_session_id=handle.vendor_session_id,
            session_name=name,
            driver_type=data.driver_type,
            stream_max_interval_s=data.stream_max_interval_ms / 1000,
            reconnect_backoff=self.channel_backoff,
        )
        await channel.connect()
        return channel

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.api.aclose()


def _protocol_option(options: vendor_options_pb2.TencentOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if options.trtc_use_external_app:
        out["TrtcUseExternalApp"] = True
    if options.trtc_app_id:
        out["TrtcAppId"] = options.trtc_app_id
    if options.trtc_room_id:
        out["TrtcRoomId"] = options.trtc_room_id
    if options.trtc_str_room_id:
        out["TrtcStrRoomId"] = options.trtc_str_room_id
    if options.trtc_user_sig:
        out["TrtcUserSig"] = options.trtc_user_sig
    if options.trtc_private_map_key:
        out["TrtcPrivateMapKey"] = options.trtc_private_map_key
    if options.css_custom_push_url:
        out["CssCustomPushUrl"] = options.css_custom_push_url
    return out


def _session_name(handle: VendorSessionHandle) -> str:
    # Error metadata names the gateway session (create_session stored it), else the vendor's.
    data = handle.data
    name = data.session_name if isinstance(data, TencentSessionData) else ""
    return name or handle.vendor_session_id
