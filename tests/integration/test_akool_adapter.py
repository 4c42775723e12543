"""The Akool adapter against the Akool emulator and a real LiveKit server on loopback.

Real sockets throughout: the adapter's httpx client talks to the emulator's REST server, and
the adapter's drive channel and the emulator's avatar are two livekit rtc participants in a
room of a real ``livekit-server`` (built by tools/build_livekit.sh when missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import vendor_options_pb2
from livekit import api as lkapi
from pydantic import SecretStr

from adapters.akool import AkoolAdapter
from adapters.akool.api import MAX_ATTEMPTS, MAX_TOKEN_FETCHES_PER_CALL
from adapters.akool.channel import MAX_MESSAGE_BYTES, AkoolChannel, escaped_len
from adapters.akool.settings import AkoolSettings
from core.contract import (
    DriveChannel,
    EventKind,
    ReadyState,
    SessionSpec,
    VendorEvent,
    VendorSessionHandle,
)
from core.errors import GatewayError, VendorError
from core.resilience import Backoff, poll_until
from core.text import split_exact
from emulators.akool import AkoolEmulator
from emulators.livekit_server import LiveKitServer
from tests.conftest import Gateway

# The first run on a fresh machine builds livekit-server (about 2 min) inside a fixture.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900 if not LiveKitServer.is_built() else 60),
]

API_KEY = "akool-key-" + "k" * 20
CLIENT_ID = "client-1"
AVATAR = "dvp_Tristan_cloth2_1080P"


@pytest.fixture
async def emu(livekit: LiveKitServer) -> AsyncIterator[AkoolEmulator]:
    emulator = AkoolEmulator.on_livekit(
        livekit,
        api_key=API_KEY,
        client_id=CLIENT_ID,
        client_secret=API_KEY,  # Akool: the API key is the legacy clientSecret (akool.md §1)
        time_scale=0.2,
    )
    await emulator.start()
    yield emulator
    assert emulator.open_sessions() == [], "a test leaked an Akool session"
    await emulator.stop()


def settings(emu: AkoolEmulator, livekit: LiveKitServer, **auth: Any) -> AkoolSettings:
    values: dict[str, Any] = {
        "api_url": emu.base_url,
        "livekit_url": livekit.url,
        "livekit_api_key": livekit.api_key,
        "livekit_api_secret": SecretStr(livekit.api_secret),
    }
    values.update(auth or {"api_key": SecretStr(API_KEY)})
    return AkoolSettings(**values)


@pytest.fixture
async def adapter(emu: AkoolEmulator, livekit: LiveKitServer) -> AsyncIterator[AkoolAdapter]:
    a = AkoolAdapter(settings(emu, livekit))
    a.api.backoff = Backoff(base_s=0.01, cap_s=0.05, max_attempts=4)
    yield a
    await a.aclose()


def spec(session_id: str = "", avatar: str = AVATAR, **kw: Any) -> SessionSpec:
    return SessionSpec(
        session_id=session_id or secrets.token_hex(6),
        avatar_id=avatar,
        max_duration_s=kw.pop("max_duration_s", 600),
        idle_timeout_s=300,
        **kw,
    )


async def start(adapter: AkoolAdapter, s: SessionSpec | None = None) -> VendorSessionHandle:
    """Create a session and wait until it is ready, as the gateway core does."""
    handle = await adapter.create_session(s or spec())
    status = await poll_until(
        lambda: adapter.session_status(handle),
        lambda st: st.state is not ReadyState.PENDING,
        deadline=time.monotonic() + 15,
        vendor="akool",
        first_delay_s=0.05,
    )
    assert status.state is ReadyState.READY, status
    return handle


class Events:
    """Collects a channel's events in the background."""

    def __init__(self, channel: DriveChannel) -> None:
        self.items: list[VendorEvent] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._pump(channel))

    async def _pump(self, channel: DriveChannel) -> None:
        async for event in channel.events():
            self.items.append(event)
            self.changed.set()

    def of(self, kind: EventKind, turn_id: str | None = None) -> list[VendorEvent]:
        return [
            e for e in self.items if e.kind is kind and (turn_id is None or e.turn_id == turn_id)
        ]

    async def wait(
        self, kind: EventKind, turn_id: str | None = None, within_s: float = 10
    ) -> VendorEvent:
        deadline = time.monotonic() + within_s
        while not self.of(kind, turn_id):
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} for turn {turn_id}; got {self.items}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass
        return self.of(kind, turn_id)[0]

    async def aclose(self) -> None:
        self.task.cancel()


@pytest.fixture
async def session(
    adapter: AkoolAdapter,
) -> AsyncIterator[tuple[VendorSessionHandle, AkoolChannel, Events]]:
    handle = await start(adapter)
    channel = await adapter.open_channel(handle, handle.data.model_dump()["session_id"])
    assert isinstance(channel, AkoolChannel)
    events = Events(channel)
    yield handle, channel, events
    await events.aclose()
    await channel.aclose()
    await adapter.close_session(handle)


def pcm_of(seconds: float) -> bytes:
    return secrets.token_bytes(int(seconds * 16000) * 2)


async def send_audio(channel: DriveChannel, turn_id: str, pcm: bytes) -> None:
    for i in range(0, len(pcm), 640):  # 20 ms frames, as the core sends them
        await channel.send_audio(turn_id, pcm[i : i + 640], 16000)


# --- sessions, auth, errors ------------------------------------------------------------------


async def test_create_ready_close_with_api_key(
    adapter: AkoolAdapter, emu: AkoolEmulator, livekit: LiveKitServer
) -> None:
    options = vendor_options_pb2.AkoolOptions(
        voice_id="v1", language="en", background_url="https://bg", voice_speed=1.1
    )
    handle = await start(adapter, spec("sess-1", options=options, max_duration_s=900.5))
    record = emu.sessions[handle.vendor_session_id]
    body = record.request
    assert body["duration"] == 901 and body["mode_type"] == 1
    assert body["stream_type"] == "livekit" and body["scene_mode"] == "meeting"
    assert body["voice_id"] == "v1" and body["voice_params"] == {"speed": 1.1}
    assert body["credentials"]["livekit_room_name"] == "akool-sess-1"
    assert body["credentials"]["audio_input_source"] == "data_stream"
    claims = record.token_claims
    assert claims["identity"] == "akool-avatar-agent" and claims["kind"] == "agent"
    assert claims["attributes"] == {"lk.publish_on_behalf": "avatar-gateway"}
    assert all(r["auth"] == "api_key" for r in emu.requests)

    playback = handle.playback.akool
    assert (playback.room_name, playback.avatar_identity) == ("akool-sess-1", "akool-avatar-agent")
    viewer = lkapi.TokenVerifier(livekit.api_key, livekit.api_secret).verify(playback.viewer_token)
    assert viewer.identity == playback.viewer_identity
    assert viewer.video is not None and viewer.video.room == "akool-sess-1"
    assert not viewer.video.can_publish and not viewer.video.can_publish_data
    assert viewer.video.can_subscribe
    stored = json.loads(json.dumps(handle.data.model_dump(mode="json")))  # the registry's form

    assert handle.vendor_session_id in await adapter.list_open_vendor_sessions()
    await adapter.close_session(handle)
    assert record.status == 3 and record.close_key == "id"
    await adapter.close_session(handle)  # idempotent: Akool now answers 1219
    # The core may close with a handle rebuilt from the registry (no runtime left).
    await adapter.close_session(adapter.vendor_session_handle(handle.vendor_session_id, stored))
    assert (await adapter.session_status(handle)).state is ReadyState.CLOSED
    assert await adapter.list_open_vendor_sessions() == []


async def test_legacy_token_flow_refreshes_on_1101(
    emu: AkoolEmulator, livekit: LiveKitServer
) -> None:
    adapter = AkoolAdapter(
        settings(emu, livekit, client_id=CLIENT_ID, client_secret=SecretStr(API_KEY))
    )
    try:
        page = await adapter.list_avatars(0, "")
        assert len(page.avatars) == 3 and adapter.api.token_fetches == 1
        await adapter.list_avatars(0, "")
        assert adapter.api.token_fetches == 1  # cached
        emu.expire_tokens()
        handle = await start(adapter)
        assert adapter.api.token_fetches == 2  # 1101 → one fresh token → the call succeeds
        await adapter.close_session(handle)
        auths = {r["auth"] for r in emu.requests if r["op"] != "getToken"}
        assert auths == {"bearer"}
        assert [r["code"] for r in emu.requests].count(1101) == 1
    finally:
        await adapter.aclose()


async def test_token_refresh_is_one_attempt_of_the_call_budget(
    emu: AkoolEmulator, livekit: LiveKitServer
) -> None:
    """The 1101 refresh spends one attempt of the call's one budget (akool.md §1): the most a
    call makes is 4 to its endpoint plus 2 getToken (the first token, one refresh)."""
    adapter = AkoolAdapter(
        settings(emu, livekit, client_id=CLIENT_ID, client_secret=SecretStr(API_KEY))
    )
    adapter.api.backoff = Backoff(base_s=0.01, cap_s=0.05, max_attempts=4)
    try:
        emu.faults.fail_next("avatar/list", 1101)
        emu.faults.fail_next("avatar/list", http_status=503, count=10)
        with pytest.raises(VendorError) as err:
            await adapter.list_avatars(10, "")
        assert err.value.reason == "VENDOR_UNAVAILABLE"
        assert emu.calls == {"getToken": MAX_TOKEN_FETCHES_PER_CALL, "avatar/list": MAX_ATTEMPTS}
        assert (MAX_ATTEMPTS, MAX_TOKEN_FETCHES_PER_CALL) == (4, 2)  # as the docstrings state
        emu.faults.clear()
        # A second 1101 in one call is a real credential error: no second refresh.
        emu.faults.fail_next("avatar/list", 1101, count=2)
        with pytest.raises(VendorError) as err:
            await adapter.list_avatars(10, "")
        assert (err.value.reason, err.value.vendor_code) == ("VENDOR_AUTH_FAILED", "1101")
        assert emu.calls == {"getToken": 3, "avatar/list": 6}
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "akool"}], indirect=True)
@pytest.mark.parametrize("fault", [{"http_status": 503}, {"code": 1005}], ids=["503", "1005"])
async def test_close_session_spends_exactly_one_retry_budget(
    livekit: LiveKitServer, gateway: Gateway, fault: dict[str, int]
) -> None:
    """CloseSession over gRPC while every session/close fails retryably: the emulator gets
    exactly the documented maximum (``AkoolAdapter.close_session``: 4), no loop around it."""
    emulator = gateway.emulator("akool")
    assert isinstance(emulator, AkoolEmulator)
    session = await gateway.create("akool", AVATAR)
    assert session.state == pb.SESSION_STATE_READY
    emulator.faults.fail_next("session/close", count=100, **fault)
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=20)
    assert closed.state == pb.SESSION_STATE_CLOSED  # the gateway logs the failed vendor close
    assert emulator.calls["session/close"] == MAX_ATTEMPTS == 4
    await asyncio.sleep(0.5)  # the reaper (every 0.2 s) must not close it again
    assert emulator.calls["session/close"] == 4
    emulator.faults.clear()


async def test_auth_failures_name_the_setting(emu: AkoolEmulator, livekit: LiveKitServer) -> None:
    wrong_key = AkoolAdapter(settings(emu, livekit, api_key=SecretStr("wrong")))
    wrong_secret = AkoolAdapter(
        settings(emu, livekit, client_id=CLIENT_ID, client_secret=SecretStr("wrong"))
    )
    try:
        with pytest.raises(VendorError) as err:
            await wrong_key.list_avatars(10, "")
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.INTERNAL,
            "VENDOR_AUTH_FAILED",
        )
        assert err.value.metadata["setting"] == "AVATAR_GATEWAY_AKOOL__API_KEY"
        assert err.value.metadata["vendorCode"] == "1101"
        with pytest.raises(VendorError) as err:
            await wrong_secret.list_avatars(10, "")
        assert err.value.reason == "VENDOR_AUTH_FAILED"
        assert err.value.metadata["setting"] == "AVATAR_GATEWAY_AKOOL__CLIENT_SECRET"
    finally:
        await wrong_key.aclose()
        await wrong_secret.aclose()


@pytest.mark.parametrize(
    ("code", "grpc_code", "reason"),
    [
        (1006, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED"),
        (1104, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED"),
        (1102, grpc.StatusCode.INTERNAL, "VENDOR_AUTH_FAILED"),
        (1215, grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE"),
        (1008, grpc.StatusCode.NOT_FOUND, "AVATAR_NOT_FOUND"),
        (1003, grpc.StatusCode.INVALID_ARGUMENT, "VENDOR_INVALID_ARGUMENT"),
        (1207, grpc.StatusCode.INTERNAL, "VENDOR_INTERNAL"),
    ],
)
async def test_create_error_mapping(
    adapter: AkoolAdapter, emu: AkoolEmulator, code: int, grpc_code: grpc.StatusCode, reason: str
) -> None:
    emu.faults.fail_next("session/create", code)
    with pytest.raises(VendorError) as err:
        await adapter.create_session(spec(avatar="any"))
    assert (err.value.code, err.value.reason, err.value.vendor_code) == (
        grpc_code,
        reason,
        str(code),
    )
    if reason == "AVATAR_NOT_FOUND":
        assert err.value.metadata["avatarId"] == "any"
    if reason == "VENDOR_AUTH_FAILED":
        assert err.value.metadata["setting"] == "AVATAR_GATEWAY_AKOOL__API_KEY"


async def test_too_frequent_is_retried_then_rate_limited(
    adapter: AkoolAdapter, emu: AkoolEmulator
) -> None:
    emu.faults.fail_next("session/create", 1005, count=2)
    handle = await adapter.create_session(spec())  # two 1005, then success
    await adapter.close_session(handle)
    emu.faults.fail_next("avatar/list", 1005, count=4)
    with pytest.raises(VendorError) as err:
        await adapter.list_avatars(10, "")
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "VENDOR_RATE_LIMITED",
    )
    assert [r["op"] for r in emu.requests].count("avatar/list") == 4


async def test_unknown_avatar_and_http_errors(adapter: AkoolAdapter, emu: AkoolEmulator) -> None:
    with pytest.raises(VendorError) as err:
        await adapter.create_session(spec(avatar="nobody"))
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.NOT_FOUND, "AVATAR_NOT_FOUND")
    assert err.value.metadata == {"vendor": "akool", "vendorCode": "1008", "avatarId": "nobody"}
    emu.faults.fail_next("session/create", http_status=503)
    with pytest.raises(VendorError) as err:
        await adapter.create_session(spec())
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE")
    # A create is not repeated after a 5xx (Akool may have created the session).
    assert [r["op"] for r in emu.requests].count("session/create") == 2
    emu.faults.fail_next("avatar/list", http_status=502)
    assert len((await adapter.list_avatars(2, "")).avatars) == 2  # reads are repeated


async def test_invalid_options_are_rejected_before_akool(
    adapter: AkoolAdapter, emu: AkoolEmulator
) -> None:
    bad = [
        spec(max_duration_s=3601),
        spec(options=vendor_options_pb2.AkoolOptions(voice_speed=1.5)),
        spec(options=vendor_options_pb2.AkoolOptions(mode_type=7)),
    ]
    for s in bad:
        with pytest.raises(GatewayError) as err:
            await adapter.create_session(s)
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        )
    assert not any(r["op"] == "session/create" for r in emu.requests)


async def test_list_avatars_pages(adapter: AkoolAdapter) -> None:
    first = await adapter.list_avatars(2, "")
    assert [a.avatar_id for a in first.avatars] == [
        "dvp_Tristan_cloth2_1080P",
        "dvp_Alinna_realisticbg_20241224",
    ]
    assert first.next_page_token == "2" and first.avatars[0].public
    second = await adapter.list_avatars(2, first.next_page_token)
    assert [a.avatar_id for a in second.avatars] == ["dvp_Dave_casual_1080P"]
    assert second.next_page_token == ""
    with pytest.raises(GatewayError):
        await adapter.list_avatars(2, "abc")


# --- drive -----------------------------------------------------------------------------------


async def test_long_text_is_split_paced_and_spoken(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    record = emu.sessions[handle.vendor_session_id]
    text = ('Quotes "and" back\\slashes, ünïcödé — 日本語のテキスト. ' * 60).strip()
    started = time.monotonic()
    await channel.send_text("1", text, True)
    elapsed = time.monotonic() - started
    await emu.wait_until(lambda: bool(record.text_turns) and record.text_turns[0].fin)
    chats = [m for m in record.messages if m["message"]["type"] == "chat"]
    assert len(chats) >= 4
    assert max(m["bytes"] for m in chats) <= MAX_MESSAGE_BYTES
    mids = {m["message"]["mid"] for m in chats}
    assert len(mids) == 1
    assert [m["message"]["idx"] for m in chats] == list(range(len(chats)))
    assert [m["message"]["fin"] for m in chats] == [False] * (len(chats) - 1) + [True]
    # Paced to the byte rate: every message but the last waited its share (akool.md §5).
    total = sum(m["bytes"] for m in chats[:-1])
    assert elapsed >= total / 6000 - 0.05
    assert record.text_turns[0].text == text  # nothing lost or added between parts
    started_ev = await events.wait(EventKind.SPEECH_STARTED, "1")
    assert started_ev.turn_id == "1"
    transcripts = events.of(EventKind.TRANSCRIPT, "1")
    assert transcripts and transcripts[0].role == "avatar"
    await channel.interrupt("1")  # do not wait for a minute of speech
    await events.wait(EventKind.INTERRUPTED, "1")
    assert record.violations == []


async def test_streamed_text_maps_onto_idx_and_fin(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    record = emu.sessions[handle.vendor_session_id]
    for delta in ["Hel", "lo ", "world, ", "how are you?"]:
        await channel.send_text("1", delta, False)
    await channel.send_text("1", "", True)
    ended = await events.wait(EventKind.SPEECH_ENDED, "1")
    assert not ended.interrupted and ended.played_s is not None and ended.played_s > 0.2
    turn = record.text_turns[0]
    assert (turn.text, turn.parts, turn.fin) == ("Hello world, how are you?", 5, True)
    spoken = "".join(e.text for e in events.of(EventKind.TRANSCRIPT, "1"))
    assert spoken == "Hello world, how are you?"
    assert events.of(EventKind.TRANSCRIPT, "1")[-1].final
    # set-params went out right after joining, from the session's options.
    assert record.commands[0]["cmd"] == "set-params" and record.params == {"mode": 1}
    # A second turn gets a new mid and its own events.
    await channel.send_text("2", "Second.", True)
    await events.wait(EventKind.SPEECH_ENDED, "2")
    assert len({t.mid for t in record.text_turns}) == 2


async def test_interrupt_is_acknowledged(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    await channel.send_text(
        "1", "A long sentence that keeps the avatar busy for a while. " * 4, True
    )
    await events.wait(EventKind.SPEECH_STARTED, "1")
    sent = time.monotonic()
    await channel.interrupt("1")
    ack = await events.wait(EventKind.INTERRUPTED, "1")
    assert ack.monotonic_time - sent < 1.0
    ended = await events.wait(EventKind.SPEECH_ENDED, "1")
    assert ended.interrupted
    record = emu.sessions[handle.vendor_session_id]
    assert [c["code"] for c in record.commands if c["cmd"] == "interrupt"] == [1000]


async def test_failed_command_ack_is_a_warning(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    emu.faults.fail_next("command:interrupt", 1003)
    await channel.send_text("1", "Some words to say now.", True)
    await events.wait(EventKind.SPEECH_STARTED, "1")
    await channel.interrupt("1")
    warning = await events.wait(EventKind.WARNING, "1")
    assert warning.reason == "VENDOR_COMMAND_FAILED"
    assert warning.metadata == {"command": "interrupt", "vendorCode": "1003"}
    assert not events.of(EventKind.INTERRUPTED)
    commands = emu.sessions[handle.vendor_session_id].commands
    await channel.set_action("nod", "happiness")
    await emu.wait_until(lambda: any(c["cmd"] == "set-action" for c in commands))
    assert [c["code"] for c in commands if c["cmd"] == "set-action"] == [1000]


async def test_unacknowledged_set_params_is_bounded_and_warns_the_first_turn(
    adapter: AkoolAdapter, emu: AkoolEmulator
) -> None:
    # The avatar answers set-params only after 6 s, both times: the channel opens after its
    # two bounded waits (2 x 2 s), and the first turn, not the second, gets the warning.
    emu.faults.stall_next("command:set-params", 6.0, count=2)
    handle = await start(adapter)
    began = time.monotonic()
    channel = await adapter.open_channel(handle, handle.data.model_dump()["session_id"])
    opened_s = time.monotonic() - began
    events = Events(channel)
    try:
        assert isinstance(channel, AkoolChannel)
        record = emu.sessions[handle.vendor_session_id]
        # It waited both bounded waits, and not for the late acks (none has been sent yet).
        assert opened_s >= 4.0 and record.commands == []
        sent = [m for m in record.messages if m["message"].get("type") == "command"]
        assert [m["message"]["pld"]["cmd"] for m in sent] == ["set-params", "set-params"]
        await channel.send_text("1", "Still heard.", True)
        warning = await events.wait(EventKind.WARNING, "1")
        assert warning.reason == "VENDOR_COMMAND_UNACKNOWLEDGED"
        assert warning.metadata == {"command": "set-params"}
        await events.wait(EventKind.SPEECH_ENDED, "1")
        await channel.send_text("2", "Again.", True)
        await events.wait(EventKind.SPEECH_ENDED, "2")
        assert len(events.of(EventKind.WARNING)) == 1
    finally:
        await events.aclose()
        await channel.aclose()
        await adapter.close_session(handle)


async def test_audio_turn_is_received_complete(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    pcm = pcm_of(0.8)
    await send_audio(channel, "1", pcm)
    await channel.end_audio("1")
    started = await events.wait(EventKind.SPEECH_STARTED, "1")
    ended = await events.wait(EventKind.SPEECH_ENDED, "1")
    assert not ended.interrupted
    assert ended.played_s == pytest.approx(0.8, abs=0.01)
    assert ended.monotonic_time - started.monotonic_time >= 0.7  # played in real time
    turn = emu.sessions[handle.vendor_session_id].audio_turns[0]
    assert turn.sha256 == hashlib.sha256(pcm).hexdigest()
    assert (turn.sample_rate, turn.num_channels, turn.complete) == (16000, 1, True)
    assert turn.sender == "avatar-gateway"


async def test_audio_interrupt_clears_the_avatar_buffer(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, channel, events = session
    await send_audio(channel, "1", pcm_of(2.0))  # pushed ahead of real time
    await events.wait(EventKind.SPEECH_STARTED, "1")
    await asyncio.sleep(0.3)
    await channel.interrupt("1")
    await events.wait(EventKind.INTERRUPTED, "1")
    ended = await events.wait(EventKind.SPEECH_ENDED, "1")
    # Cut short (2 s were pushed), after the 0.3 s the test waited; how much more played
    # depends on how fast the clear reached the avatar, which a busy machine stretches, so
    # the played time is checked against what the avatar itself recorded, not a wall bound.
    assert ended.interrupted and ended.played_s is not None and 0.2 < ended.played_s < 2.0
    first = emu.sessions[handle.vendor_session_id].audio_turns[0]
    assert ended.played_s == pytest.approx(first.played_s, abs=0.01)
    # The next turn plays normally after the interrupted one.
    await send_audio(channel, "2", pcm_of(0.3))
    await channel.end_audio("2")
    second = await events.wait(EventKind.SPEECH_ENDED, "2")
    assert not second.interrupted and second.played_s == pytest.approx(0.3, abs=0.01)
    turns = emu.sessions[handle.vendor_session_id].audio_turns
    assert [t.interrupted for t in turns] == [True, False]


async def test_user_transcripts_are_mapped(
    session: tuple[VendorSessionHandle, AkoolChannel, Events], emu: AkoolEmulator
) -> None:
    handle, _, events = session
    await emu.say_as_user(handle.vendor_session_id, "what is the weather")
    transcript = await events.wait(EventKind.TRANSCRIPT)
    assert (transcript.role, transcript.text, transcript.turn_id) == (
        "user",
        "what is the weather",
        "",
    )


async def test_duration_expiry_surfaces_as_session_lost(
    adapter: AkoolAdapter, emu: AkoolEmulator
) -> None:
    emu.time_scale = 0.01  # 150 s of duration → 1.5 s
    handle = await start(adapter, spec(max_duration_s=150))
    channel = await adapter.open_channel(handle, handle.data.model_dump()["session_id"])
    events = Events(channel)
    try:
        lost = await events.wait(EventKind.SESSION_LOST, within_s=10)
        assert lost.reason == "VENDOR_SESSION_LOST"
        assert channel.closed
        with pytest.raises(VendorError) as err:
            await channel.send_text("1", "too late", True)
        assert err.value.reason == "VENDOR_SESSION_LOST"
        assert (await adapter.session_status(handle)).state is ReadyState.CLOSED
        with pytest.raises(VendorError) as err:
            await adapter.open_channel(handle, handle.data.model_dump()["session_id"])
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "VENDOR_SESSION_LOST",
        )
        assert emu.sessions[handle.vendor_session_id].end_reason == "expired"
    finally:
        await events.aclose()
        await channel.aclose()
        await adapter.close_session(handle)  # already over: still succeeds


async def test_missing_livekit_settings_are_reported(emu: AkoolEmulator) -> None:
    adapter = AkoolAdapter(AkoolSettings(api_key=SecretStr(API_KEY), api_url=emu.base_url))
    try:
        with pytest.raises(VendorError) as err:
            await adapter.create_session(spec())
        assert err.value.reason == "VENDOR_AUTH_FAILED"
        assert err.value.metadata["setting"] == "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL"
    finally:
        await adapter.aclose()


def test_split_exact_keeps_every_character_within_the_budget() -> None:
    import random

    rng = random.Random(7)
    alphabet = 'ab cd\n"\\é日\t😀,.'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        budget = rng.randint(8, 120)
        pieces = split_exact(text, budget, escaped_len)
        assert "".join(pieces) == text
        assert all(0 < escaped_len(p) <= budget for p in pieces)
    # Cuts prefer whitespace: words stay whole when they fit.
    assert split_exact("alpha beta gamma", 11, escaped_len) == ["alpha beta ", "gamma"]
