"""Akool Streaming Avatar adapter: sessions over REST, driving in a LiveKit room we own.

docs/vendors/akool.md. The session is created with ``stream_type: "livekit"`` and
bring-your-own credentials (akool.md §4) for the LiveKit server the gateway is configured with, so
the gateway can join the room itself (:mod:`adapters.akool.channel`). The gateway mints three
LiveKit tokens per session:

* the avatar's (handed to Akool): kind ``agent``, may publish, with attribute
  ``lk.publish_on_behalf`` = the gateway's identity, as Akool's LiveKit plugin mints it
  (akool.md §6);
* the gateway's own (minted when the drive channel opens);
* a viewer's, subscribe-only, returned in ``Session.playback.akool`` for a front end.

Lip-sync audio drive needs ``scene_mode: "meeting"`` and audio from the data stream (akool.md §6,
Akool's LiveKit plugin); the adapter sets both by default (see :class:`AkoolAdapter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
from typing import Any

import grpc
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import vendor_options_pb2
from livekit import api as lkapi

from adapters.akool.api import (
    CODE_SESSION_NOT_FOUND,
    VENDOR,
    AkoolApi,
    vendor_code_of,
)
from adapters.akool.channel import MAX_TEXT_BYTES, AkoolChannel, RoomAccess, session_lost
from adapters.akool.models import Session
from adapters.akool.settings import AkoolSettings
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
    GatewayError,
    Reason,
    VendorError,
    invalid_argument,
)
from core.resilience import create_or_adopt

log = structlog.get_logger("adapters.akool")

MAX_DURATION_S = 3600
"""Longest session Akool accepts (``duration``, akool.md §4, §7)."""
SCENE_MODE_MEETING = "meeting"
"""Lip-sync scene: Akool takes our audio from the data stream and only lip-syncs (akool.md §6)."""
AVATAR_IDENTITY = "akool-avatar-agent"
"""The avatar's identity in the room (the one Akool's LiveKit plugin uses)."""
GATEWAY_IDENTITY = "avatar-gateway"
TOKEN_MARGIN_S = 600
"""Tokens outlive the session's duration by this much (s), for late joins and reconnects."""
ATTRIBUTE_PUBLISH_ON_BEHALF = "lk.publish_on_behalf"

# Akool session status (akool.md §4): 1 queueing, 2 processing (running), 3 completed, 4 failed.
STATUS_QUEUEING = 1
STATUS_PROCESSING = 2
STATUS_COMPLETED = 3
STATUS_FAILED = 4

LIST_PAGE_SIZE = 100
"""``session/list`` and ``avatar/list`` page size: the largest Akool takes (akool.md §3)."""
MAX_LIST_PAGES = 50
"""Most ``session/list`` pages read per status by :meth:`AkoolAdapter.list_open_vendor_sessions`
(5,000 sessions), so the audit's HTTP calls are bounded even if Akool's ``count`` is not."""


def _setting_missing(setting: str) -> VendorError:
    return VendorError(
        grpc.StatusCode.INTERNAL,
        Reason.VENDOR_AUTH_FAILED,
        f"the LiveKit server for Akool is not configured; set the gateway setting {setting}",
        vendor=VENDOR,
        metadata={"setting": setting},
    )


class AkoolSessionData(VendorSessionData):
    """What an Akool session keeps (akool.md §4).

    Attributes:
        session_id: the gateway session id.
        room: the LiveKit room the session lives in.
        avatar_identity: the avatar's participant identity there.
        gateway_identity: the gateway's participant identity there.
        duration_s: the session's ``duration`` (s); room tokens live this long plus a margin.
        scene_mode: the ``scene_mode`` asked for ("" for Akool's default).
        set_params: ``set-params`` data sent after joining (voice, language, mode, background).
    """

    session_id: str = ""
    room: str = ""
    avatar_identity: str = AVATAR_IDENTITY
    gateway_identity: str = GATEWAY_IDENTITY
    duration_s: float = MAX_DURATION_S
    scene_mode: str = ""
    set_params: dict[str, Any] | None = None


class AkoolAdapter(VendorAdapter):
    """Akool Streaming Avatar over a LiveKit room the gateway joins (docs/vendors/akool.md).

    Args:
        settings: Akool credentials (API key or client id/secret), base URL, and the LiveKit
            server (URL, API key and secret) the sessions use.
        sandbox: the gateway runs against the in-process emulators.
        scene_mode: ``scene_mode`` sent at create. ``"meeting"`` (default) is Akool's
            lip-sync scene, needed for audio drive (akool.md §6); ``None`` leaves Akool's default
            scene. ``AkoolOptions`` has no field for it yet, so it is per adapter.
    """

    session_data_type = AkoolSessionData
    capabilities = Capabilities(
        vendor=VENDOR,
        display_name="Akool Streaming Avatar",
        sample_rates_hertz=(16000,),
        # Push ahead of real time, bounded: 20 ms frames (Akool's LiveKit plugin chunks its
        # data-stream audio to 20 ms), up to 2 s ahead; the avatar buffers and paces.
        pacing=PacingRule(frame_ms=20, burst_frames=100, interval_ms=20),
        audio=True,
        text=True,
        streaming_text=True,
        interrupt=True,
        interrupt_ack=True,
        interrupt_ack_timeout_s=2.0,
        max_text_chars=MAX_TEXT_BYTES,
        max_text_bytes=MAX_TEXT_BYTES,
        list_avatars=True,
        # Joining the room takes ~100 ms (LiveKit signalling and the WebRTC handshake): done
        # while the session is being created, not on the first turn; the channel then sees
        # the avatar join our room, which ends CreateSession's wait for readiness at once.
        open_channel_at_create=True,
    )

    def __init__(
        self,
        settings: AkoolSettings,
        *,
        sandbox: bool = False,
        scene_mode: str | None = SCENE_MODE_MEETING,
    ) -> None:
        super().__init__(sandbox=sandbox)
        self.settings = settings
        self.scene_mode = scene_mode
        self.api = AkoolApi(settings)
        self._livekit_api: lkapi.LiveKitAPI | None = None
        # Open channels per Akool session id, so close_session can leave their rooms first.
        self._channels: dict[str, set[AkoolChannel]] = {}

    # ---- LiveKit ----------------------------------------------------------------------

    def _livekit(self) -> tuple[str, str, str]:
        s = self.settings
        if not s.livekit_url:
            raise _setting_missing("AVATAR_GATEWAY_AKOOL__LIVEKIT_URL")
        if not s.livekit_api_key:
            raise _setting_missing("AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY")
        if s.livekit_api_secret is None:
            raise _setting_missing("AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET")
        return s.livekit_url, s.livekit_api_key, s.livekit_api_secret.get_secret_value()

    def _token(
        self,
        identity: str,
        room: str,
        ttl_s: float,
        *,
        publish: bool = True,
        kind: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> str:
        _, key, secret = self._livekit()
        grants = lkapi.VideoGrants(
            room_join=True,
            room=room,
            can_publish=publish,
            can_publish_data=publish,
            can_subscribe=True,
        )
        token = (
            lkapi.AccessToken(key, secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(grants)
            .with_ttl(datetime.timedelta(seconds=ttl_s))
        )
        if kind:
            token = token.with_kind(kind)  # type: ignore[arg-type]
        if attributes:
            token = token.with_attributes(attributes)
        return token.to_jwt()

    def _room_service(self) -> lkapi.LiveKitAPI:
        if self._livekit_api is None:
            url, key, secret = self._livekit()
            self._livekit_api = lkapi.LiveKitAPI(url, key, secret, failover=False)
        return self._livekit_api

    async def _avatar_in_room(self, room: str, identity: str) -> bool:
        try:
            answer = await asyncio.wait_for(
                self._room_service().room.list_participants(
                    lkapi.ListParticipantsRequest(room=room)
                ),
                5.0,
            )
        except Exception:  # room not created yet, or the server is briefly unreachable
            return False
        return any(p.identity == identity for p in answer.participants)

    # ---- sessions ---------------------------------------------------------------------

    def _options(self, spec: SessionSpec) -> dict[str, Any]:
        """Validated create fields from ``AkoolOptions`` (only what was set)."""
        opts = spec.options_as(vendor_options_pb2.AkoolOptions)
        out: dict[str, Any] = {"mode_type": 1}
        if opts is None:
            return out
        if opts.mode_type not in (0, 1, 2):
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"akool.mode_type must be 1 (retelling) or 2 (dialogue), got {opts.mode_type}",
                field="akool.mode_type",
            )
        if opts.voice_speed and not 0.8 <= opts.voice_speed <= 1.2:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"akool.voice_speed must be between 0.8 and 1.2, got {opts.voice_speed}",
                field="akool.voice_speed",
            )
        if opts.mode_type:
            out["mode_type"] = opts.mode_type
        for key, value in (
            ("voice_id", opts.voice_id),
            ("voice_url", opts.voice_url),
            ("language", opts.language),
            ("background_url", opts.background_url),
            ("knowledge_id", opts.knowledge_id),
        ):
            if value:
                out[key] = value
        if opts.voice_speed:
            out["voice_params"] = {"speed": opts.voice_speed}
        return out

    @staticmethod
    def _set_params(fields: dict[str, Any]) -> dict[str, Any]:
        """``set-params`` data (akool.md §5): the session's voice, language, mode, background."""
        vparams: dict[str, Any] = {}
        if "voice_id" in fields:
            vparams["vid"] = fields["voice_id"]
        if "voice_url" in fields:
            vparams["vurl"] = fields["voice_url"]
        if "voice_params" in fields:
            vparams["speed"] = fields["voice_params"]["speed"]
        data: dict[str, Any] = {"mode": fields["mode_type"]}
        if vparams:
            data["vparams"] = vparams
        if "language" in fields:
            data["lang"] = fields["language"]
        if "background_url" in fields:
            data["bgurl"] = fields["background_url"]
        return data

    async def create_session(self, spec: SessionSpec) -> VendorSessionHandle:
        """``session/create`` with LiveKit BYO credentials (akool.md §4); ``duration`` always set.

        When the create answer is lost (VENDOR_UNAVAILABLE or VENDOR_TIMEOUT after its
        budget), Akool may have created and pre-charged the session (akool.md §4, §7): it is
        looked up by its room in ``session/list`` (status 1, then 2) and adopted.

        Vendor HTTP calls: at most 12 with an API key: ``session/create`` up to 4 times
        (one retry budget, akool.md §8 says what is repeated), then, only after a lost answer,
        ``session/list`` up to 4 times for each of the two statuses. Each of those three REST
        calls has its own budget; none runs inside another's. With the token flow, each REST
        call may add up to 2 getToken (the first token, one refresh on 1101, akool.md §1):
        at most 18.

        Raises:
            GatewayError: INVALID_ARGUMENT for options Akool would reject (``max_duration``
                over 1 h, ``voice_speed``, ``mode_type``).
            VendorError: the mapped Akool code (1008 → AVATAR_NOT_FOUND, ...).
        """
        if spec.max_duration_s > MAX_DURATION_S:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"akool sessions last at most {MAX_DURATION_S} s; "
                f"max_duration was {spec.max_duration_s:g} s",
                field="max_duration",
            )
        url, _, _ = self._livekit()
        fields = self._options(spec)
        duration = max(1, math.ceil(spec.max_duration_s))
        room = f"akool-{spec.session_id}"
        viewer = f"viewer-{spec.session_id}"
        ttl = duration + TOKEN_MARGIN_S
        avatar_token = self._token(
            AVATAR_IDENTITY,
            room,
            ttl,
            kind="agent",
            attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: GATEWAY_IDENTITY},
        )
        body: dict[str, Any] = {
            "avatar_id": spec.avatar_id,
            "duration": duration,
            **fields,
            "stream_type": "livekit",
            "credentials": {
                "livekit_url": url,
                "livekit_token": avatar_token,
                "livekit_room_name": room,
                "livekit_server_identity": AVATAR_IDENTITY,
                "livekit_client_identity": GATEWAY_IDENTITY,
                # Both spellings of "take audio from the data stream" (akool.md §6: HEAD and later
                # versions of Akool's LiveKit plugin).
                "audio_only_from_data_stream": True,
                "audio_input_source": "data_stream",
            },
        }
        scene_mode = (
            opts.scene_mode if (opts := spec.options_as(vendor_options_pb2.AkoolOptions)) else ""
        ) or self.scene_mode
        if scene_mode:
            body["scene_mode"] = scene_mode

        async def create() -> str:
            return (await self.api.create_session(body)).id

        # A lost answer (Akool pre-charges the session) is found by our room name, derived
        # from the session id, and adopted.
        vendor_id = await create_or_adopt(
            create,
            lambda: self._find_session_by_room(room),
            vendor=VENDOR,
            avatar_id=spec.avatar_id,
        )
        playback = pb.Playback(
            akool=pb.AkoolPlayback(
                livekit_url=url,
                room_name=room,
                viewer_token=self._token(viewer, room, ttl, publish=False),
                viewer_identity=viewer,
                avatar_identity=AVATAR_IDENTITY,
            )
        )
        log.info("akool_session_created", vendor_session_id=vendor_id, room=room)
        return VendorSessionHandle(
            vendor_session_id=vendor_id,
            playback=playback,
            data=AkoolSessionData(
                session_id=spec.session_id,
                room=room,
                avatar_identity=AVATAR_IDENTITY,
                gateway_identity=GATEWAY_IDENTITY,
                duration_s=duration,
                scene_mode=scene_mode or "",
                set_params=self._set_params(fields),
            ),
        )

    async def _detail(self, handle: VendorSessionHandle) -> Session | None:
        """session/detail, or ``None`` when Akool no longer knows the session.

        One REST call (one budget: at most 4 HTTP calls, 6 with the token flow).
        """
        try:
            return await self.api.session_detail(handle.vendor_session_id)
        except VendorError as exc:
            if (
                exc.reason == Reason.SESSION_NOT_FOUND
                or vendor_code_of(exc) == CODE_SESSION_NOT_FOUND
            ):
                return None
            raise

    async def session_status(self, handle: VendorSessionHandle) -> SessionStatus:
        """Ready when Akool reports the session processing and its avatar is in the room.

        Akool does not say which status means joinable (akool.md §4); the avatar's presence in our
        own LiveKit room is the fact that matters for driving, so it is checked too.

        Vendor HTTP calls: at most 4 ``session/detail`` (one retry budget), 6 with the token
        flow (2 getToken, akool.md §1); then, when Akool reports status 2, one
        ListParticipants on our own LiveKit server (not Akool; 5 s bound). The caller polls
        (``poll_until``); each poll is one such operation.
        """
        detail = await self._detail(handle)
        if detail is None:
            return SessionStatus(ReadyState.CLOSED, "akool does not know the session", "1216")
        status = detail.status
        if status == STATUS_PROCESSING:
            data = handle.data_as(AkoolSessionData)
            if await self._avatar_in_room(data.room, data.avatar_identity):
                return SessionStatus(ReadyState.READY)
            return SessionStatus(ReadyState.PENDING, "the avatar has not joined the room yet")
        if status == STATUS_COMPLETED:
            return SessionStatus(ReadyState.CLOSED, "session completed")
        if status == STATUS_FAILED:
            return SessionStatus(ReadyState.FAILED, "akool reports the session failed", "4")
        return SessionStatus(ReadyState.PENDING, f"akool session status {status}")

    async def close_session(self, handle: VendorSessionHandle) -> None:
        """Leave the room, ``session/close`` (idempotent), then delete the LiveKit room.

        Deleting the room disconnects viewers too, so a front end holding the viewer token
        cannot keep the room alive after the session is over.

        Vendor HTTP calls: at most 4 ``session/close`` (one retry budget; 1008, 1216 and 1219
        mean already closed, akool.md §8), 6 with the token flow (2 getToken, akool.md §1);
        then one DeleteRoom on our own LiveKit server (not Akool; 5 s bound), skipped when
        the close failed.
        """
        for channel in list(self._channels.pop(handle.vendor_session_id, ())):
            await channel.aclose()
        closed = await self.api.close_session(handle.vendor_session_id)
        log.info("akool_session_closed", vendor_session_id=handle.vendor_session_id, now=closed)
        room = handle.data_as(AkoolSessionData).room
        if room and self.settings.livekit_url:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._room_service().room.delete_room(lkapi.DeleteRoomRequest(room=room)), 5.0
                )

    async def open_channel(self, handle: VendorSessionHandle, session_id: str) -> DriveChannel:
        """Join the session's room as the gateway and wait for the avatar.

        Opened while CreateSession waits (``open_channel_at_create``), it reports the avatar
        in the room with its video published as readiness (:meth:`VendorAdapter.notify_status`).

        Vendor HTTP calls: at most 4 ``session/detail`` (one retry budget), 6 with the token
        flow (2 getToken, akool.md §1). Joining the room is LiveKit signalling on our own
        server (not Akool); the channel then talks to the avatar over the room (akool.md §5, §6).

        Raises:
            VendorError: VENDOR_SESSION_LOST when Akool already ended the session;
                VENDOR_TIMEOUT / VENDOR_UNAVAILABLE when the room cannot be used.
        """
        detail = await self._detail(handle)
        if detail is None or detail.status in (STATUS_COMPLETED, STATUS_FAILED):
            raise session_lost(f"akool session {handle.vendor_session_id} has ended")
        url, _, _ = self._livekit()
        data = handle.data_as(AkoolSessionData)
        room = data.room or f"akool-{session_id}"
        ttl = data.duration_s + TOKEN_MARGIN_S
        access = RoomAccess(
            livekit_url=url,
            token=self._token(data.gateway_identity, room, ttl),
            room_name=room,
            avatar_identity=data.avatar_identity,
            gateway_identity=data.gateway_identity,
        )

        def avatar_ready() -> None:
            # In our room and publishing its video (akool.md §6): ready to drive, say so at once.
            self.notify_status(handle.vendor_session_id, SessionStatus(ReadyState.READY))

        channel = AkoolChannel(access, set_params=data.set_params, on_avatar_ready=avatar_ready)
        await channel.connect()
        kept = {c for c in self._channels.get(handle.vendor_session_id, ()) if not c.closed}
        kept.add(channel)
        self._channels[handle.vendor_session_id] = kept
        return channel

    async def list_avatars(self, page_size: int, page_token: str) -> AvatarPage:
        """``avatar/list`` (akool.md §3); the page token is the next page number.

        Vendor HTTP calls: at most 4 ``avatar/list`` (one retry budget), 6 with the token flow
        (2 getToken, akool.md §1).
        """
        try:
            page = int(page_token) if page_token else 1
        except ValueError:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT, f"invalid page_token {page_token!r}", field="page_token"
            ) from None
        if page < 1:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT, f"invalid page_token {page_token!r}", field="page_token"
            )
        size = min(max(page_size or LIST_PAGE_SIZE, 1), LIST_PAGE_SIZE)
        data = await self.api.list_avatars(page, size)
        avatars = [
            AvatarInfo(
                avatar_id=item.avatar_id,
                display_name=item.name or item.avatar_id,
                preview_url=item.thumbnail_url or item.url or "",
                # "from": 2 official avatars, 3 the account's own (akool.md §3).
                public=item.from_ == 2,
            )
            for item in data.result
        ]
        more = bool(data.result) and page * size < data.count
        return AvatarPage(avatars, str(page + 1) if more else "")

    async def find_vendor_session(self, session_id: str) -> str | None:
        """The open session whose LiveKit room is the one derived from ``session_id``."""
        return await self._find_session_by_room(f"akool-{session_id}")

    async def _find_session_by_room(self, room: str) -> str | None:
        """The id of the open session whose LiveKit room is ``room``, if Akool lists one.

        Relies on session/list echoing the bring-your-own ``credentials.livekit_room_name``
        (akool.md §4 says the response carries credentials; the echo of BYO ones is inferred).
        Two REST calls in sequence (first page of status 1, then of status 2), each with its
        own budget: at most 8 HTTP calls, 12 with the token flow. A failed lookup is ``None``.
        """
        try:
            for status in (STATUS_QUEUEING, STATUS_PROCESSING):
                data = await self.api.list_sessions(1, LIST_PAGE_SIZE, status)
                for item in data.result:
                    creds = item.credentials
                    if creds is not None and creds.livekit_room_name == room:
                        if item.id is None:
                            return None
                        return item.id
        except VendorError:
            return None
        return None

    async def list_open_vendor_sessions(self) -> list[str]:
        """Ids of sessions Akool reports queueing or processing (``session/list``).

        Pages of 100 are read while Akool's ``count`` says more remain, at most
        :data:`MAX_LIST_PAGES` per status. Each page is one REST call with its own budget
        (pagination, not a retry loop). Vendor HTTP calls: at most 4 per page, so
        ``4 * (P1 + P2)`` where ``P1``/``P2`` are the pages of status 1 and 2
        (``ceil(count / 100)``, at least 1, at most 50): at most 400; with the token flow up to
        2 getToken per page more (akool.md §1), at most 600.
        """
        ids: list[str] = []
        for status in (STATUS_QUEUEING, STATUS_PROCESSING):
            for page in range(1, MAX_LIST_PAGES + 1):
                data = await self.api.list_sessions(page, LIST_PAGE_SIZE, status)
                ids.extend(r.id for r in data.result if r.id)
                if not data.result or page * LIST_PAGE_SIZE >= data.count:
                    break
            else:
                log.warning("akool_session_list_truncated", status=status, pages=MAX_LIST_PAGES)
        return ids

    async def aclose(self) -> None:
        """Leave every room and close the HTTP clients."""
        for channels in self._channels.values():
            for channel in channels:
                with contextlib.suppress(GatewayError):
                    await channel.aclose()
        self._channels.clear()
        await self.api.aclose()
        if self._livekit_api is not None:
            with contextlib.suppress(Exception):
                await self._livekit_api.aclose()
            self._livekit_api = None
