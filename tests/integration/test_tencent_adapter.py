"""The Tencent IVH adapter against the Tencent emulator over real HTTP and WebSocket sockets.

The emulator enforces the vendor rules (signature, pacing, text spacing, mode switches,
one channel per session, idle limits) and records what it received, so these tests check
the adapter's behaviour on the wire, not against mocks. A small token-bucket loop stands in
for the gateway's pacer (``core.audio.Pacer`` with the adapter's declared rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import vendor_options_pb2
from google.protobuf import duration_pb2
from pydantic import SecretStr

from adapters.tencent import TencentAdapter
from adapters.tencent.adapter import REST_ATTEMPTS
from adapters.tencent.channel import CONNECT_ATTEMPTS, TencentChannel
from adapters.tencent.settings import TencentSettings
from core.audio import Pacer
from core.contract import (
    EventKind,
    PacingRule,
    ReadyState,
    SessionSpec,
    VendorEvent,
    VendorSessionHandle,
)
from core.errors import GatewayError, VendorError
from core.resilience import Backoff, keepalive_loop, poll_until
from emulators.tencent import TencentEmulator

pytestmark = pytest.mark.integration

APPKEY = "0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
FRAME = 5120


# ---- helpers ------------------------------------------------------------------------------


def make_adapter(emulator: TencentEmulator, **settings: Any) -> TencentAdapter:
    adapter = TencentAdapter(
        TencentSettings(
            appkey=APPKEY,
            access_token=SecretStr(TOKEN),
            api_url=emulator.base_url,
            project_id="project-1",
            **settings,
        ),
        sandbox=True,
    )
    adapter.backoff = Backoff(base_s=0.01, cap_s=0.05, max_attempts=4)
    adapter.channel_backoff = Backoff(base_s=0.02, cap_s=0.1, max_attempts=6)
    return adapter


@pytest.fixture
async def emulator() -> AsyncIterator[TencentEmulator]:
    emu = TencentEmulator(appkey=APPKEY, access_token=TOKEN, session_ready_delay_s=0.05)
    emu.text_seconds_per_char = 0.01
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def adapter(emulator: TencentEmulator) -> AsyncIterator[TencentAdapter]:
    ad = make_adapter(emulator)
    yield ad
    await ad.aclose()


async def ready_session(
    adapter: TencentAdapter, session_id: str = "s1", options: Any = None, avatar: str = ""
) -> VendorSessionHandle:
    handle = await adapter.create_session(SessionSpec(session_id, avatar, 600, 300, options))
    status = await poll_until(
        lambda: adapter.session_status(handle),
        lambda s: s.state is not ReadyState.PENDING,
        deadline=time.monotonic() + 5,
        vendor="tencent",
        first_delay_s=0.02,
    )
    assert status.state is ReadyState.READY
    await adapter.start_session(handle)
    return handle


class Events:
    """Collects a channel's events in the background; waits for one by predicate."""

    def __init__(self, channel: TencentChannel) -> None:
        self.items: list[VendorEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(channel))

    async def _run(self, channel: TencentChannel) -> None:
        async for event in channel.events():
            self.items.append(event)
            self._changed.set()

    def of(self, kind: EventKind, turn_id: str | None = None) -> list[VendorEvent]:
        return [e for e in self.items if e.kind is kind and turn_id in (None, e.turn_id)]

    async def wait(
        self,
        kind: EventKind,
        turn_id: str | None = None,
        *,
        reason: str | None = None,
        within: float = 5.0,
    ) -> VendorEvent:
        deadline = time.monotonic() + within
        while True:
            for event in self.of(kind, turn_id):
                if reason is None or event.reason == reason:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(e.kind.value, e.turn_id, e.reason) for e in self.items]
                raise AssertionError(f"no {kind.value} {turn_id} {reason}; saw {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def open_channel(
    adapter: TencentAdapter, handle: VendorSessionHandle, session_id: str = "s1"
) -> tuple[TencentChannel, Events]:
    channel = await adapter.open_channel(handle, session_id)
    assert isinstance(channel, TencentChannel)
    return channel, Events(channel)


def pcm_of(seconds: float, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(int(seconds * 32000) // 2 * 2)


async def paced_send(
    channel: TencentChannel,
    turn_id: str,
    pcm: bytes,
    *,
    on_frame: Callable[[int], Any] | None = None,
    end: bool = True,
) -> None:
    """Send ``pcm`` as the gateway does: 160 ms packets released by the gateway's own pacer
    with the rule the adapter declares."""
    pacer = Pacer(TencentAdapter.capabilities.pacing)
    for index, start in enumerate(range(0, len(pcm), FRAME)):
        wait = pacer.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        await channel.send_audio(turn_id, pcm[start : start + FRAME], 16000)
        if on_frame is not None:
            result = on_frame(index)
            if asyncio.iscoroutine(result):
                await result
    if end:
        await channel.end_audio(turn_id)


def session_of(emulator: TencentEmulator, handle: VendorSessionHandle) -> Any:
    return emulator.sessions[handle.vendor_session_id]


def no_violations(emulator: TencentEmulator, handle: VendorSessionHandle) -> None:
    found = emulator.violations(handle.vendor_session_id)
    assert found == {k: [] for k in found}, found


# ---- sessions -----------------------------------------------------------------------------


async def test_session_lifecycle(emulator: TencentEmulator, adapter: TencentAdapter) -> None:
    handle = await adapter.create_session(SessionSpec("abc", "", 600, 300))
    session = session_of(emulator, handle)
    assert session.request["VirtualmanProjectId"] == "project-1"  # the configured default
    assert session.request["Protocol"] == "webrtc"
    assert session.request["DriverType"] == 3
    assert session.request["UserId"] == "avgw-abc"
    assert "StreamMaxInterval" not in session.request
    assert handle.playback.tencent.protocol == "webrtc"
    assert handle.playback.tencent.play_stream_addr.startswith("webrtc://")
    first = await adapter.session_status(handle)
    assert first.state is ReadyState.PENDING
    await asyncio.sleep(0.08)
    assert (await adapter.session_status(handle)).state is ReadyState.READY
    await adapter.start_session(handle)
    assert session.started
    assert await adapter.list_open_vendor_sessions() == [handle.vendor_session_id]
    await adapter.close_session(handle)
    assert (await adapter.session_status(handle)).state is ReadyState.CLOSED
    await adapter.close_session(handle)  # 110013: already closed counts as closed
    await adapter.close_session(VendorSessionHandle("no-such-session"))  # 110018
    assert emulator.open_sessions() == []


async def test_create_by_asset_with_trtc_options(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    options = vendor_options_pb2.TencentOptions(
        protocol="TRTC",
        driver_type=1,
        user_id="viewer-avatar",
        stream_max_interval=duration_pb2.Duration(seconds=3),
        asset_virtualman_key="asset-key",
        trtc_use_external_app=True,
        trtc_app_id=1400123456,
        trtc_room_id=42,
        trtc_user_sig="sig",
        trtc_private_map_key="pmk",
        background_urls=["https://example.com/bg.png"],
        alpha_channel_enable=True,
    )
    handle = await adapter.create_session(SessionSpec("s2", "ignored", 600, 300, options))
    request = session_of(emulator, handle).request
    assert request["AssetVirtualmanKey"] == "asset-key"
    assert "VirtualmanProjectId" not in request
    assert request["Protocol"] == "trtc"
    assert request["DriverType"] == 1
    assert request["UserId"] == "viewer-avatar"
    assert request["StreamMaxInterval"] == 3000
    assert request["ProtocolOption"] == {
        "TrtcUseExternalApp": True,
        "TrtcAppId": 1400123456,
        "TrtcRoomId": 42,
        "TrtcUserSig": "sig",
        "TrtcPrivateMapKey": "pmk",
    }
    assert request["Backgrounds"] == [{"Url": "https://example.com/bg.png"}]
    assert request["ExtraInfo"] == {"AlphaChannelEnable": True}
    assert handle.playback.tencent.protocol == "trtc"
    assert handle.playback.tencent.play_stream_addr.startswith("trtc://42?")
    assert handle.data.model_dump()["stream_max_interval_ms"] == 3000


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (vendor_options_pb2.TencentOptions(protocol="hls"), "vendor_options.tencent.protocol"),
        (vendor_options_pb2.TencentOptions(driver_type=2), "vendor_options.tencent.driver_type"),
        (
            vendor_options_pb2.TencentOptions(stream_max_interval=duration_pb2.Duration(seconds=9)),
            "vendor_options.tencent.stream_max_interval",
        ),
        (
            vendor_options_pb2.TencentOptions(background_urls=["u"]),
            "vendor_options.tencent.background_urls",
        ),
        (
            vendor_options_pb2.TencentOptions(asset_virtualman_key="k", background_urls=["u"] * 6),
            "vendor_options.tencent.background_urls",
        ),
    ],
)
async def test_create_rejects_bad_options(
    emulator: TencentEmulator, adapter: TencentAdapter, options: Any, field: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        await adapter.create_session(SessionSpec("s3", "", 600, 300, options))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.metadata["field"] == field
    assert emulator.sessions == {}


# ---- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        (100005, grpc.StatusCode.INTERNAL, "VENDOR_AUTH_FAILED"),
        (100008, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED"),
        (100014, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED"),
        (100001, grpc.StatusCode.INVALID_ARGUMENT, "VENDOR_INVALID_ARGUMENT"),
        (-101001, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED"),
    ],
)
async def test_injected_codes_map_to_grpc(
    emulator: TencentEmulator,
    adapter: TencentAdapter,
    code: int,
    status: grpc.StatusCode,
    reason: str,
) -> None:
    emulator.faults.fail_next("createsession", code)
    with pytest.raises(VendorError) as caught:
        await adapter.create_session(SessionSpec("s4", "", 600, 300))
    error = caught.value
    assert (error.code, error.reason, error.vendor_code) == (status, reason, str(code))
    if reason == "VENDOR_AUTH_FAILED":
        assert error.metadata["setting"] == "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN"


async def test_rate_limit_is_retried_with_backoff(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    emulator.faults.fail_next("createsession", 100012, count=2)
    handle = await adapter.create_session(SessionSpec("s5", "", 600, 300))
    assert handle.vendor_session_id in emulator.sessions
    assert [c["code"] for c in emulator.rest_calls] == [100012, 100012, 0]
    # Persistent rate limiting: RESOURCE_EXHAUSTED once the attempts are used up.
    emulator.faults.fail_next("statsession", 100012, count=10)
    emulator.faults.fail_next("startsession", 100012, count=10)
    with pytest.raises(VendorError) as caught:
        await adapter.start_session(handle)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "VENDOR_RATE_LIMITED"
    calls = [c for c in emulator.rest_calls if c["op"] == "startsession"]
    assert len(calls) == adapter.backoff.max_attempts


async def test_transport_errors_and_unknown_project(emulator: TencentEmulator) -> None:
    adapter = make_adapter(emulator)
    adapter.api.timeout_s = 0.2
    try:
        emulator.faults.stall_next("statsession", 1.0)
        with pytest.raises(VendorError) as caught:
            await adapter.session_status(VendorSessionHandle("x"))
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "VENDOR_TIMEOUT",
        )
        emulator.faults.fail_next("statsession", http_status=503)
        with pytest.raises(VendorError) as caught:
            await adapter.session_status(VendorSessionHandle("x"))
        assert caught.value.reason == "VENDOR_UNAVAILABLE"
        assert caught.value.retryable
        emulator.faults.fail_next("statsession", http_status=404)
        with pytest.raises(VendorError) as caught:
            await adapter.session_status(VendorSessionHandle("x"))
        assert (caught.value.reason, caught.value.retryable) == ("VENDOR_INTERNAL", False)
        with pytest.raises(VendorError) as caught:
            await adapter.session_status(VendorSessionHandle("x"))
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "VENDOR_SESSION_NOT_FOUND",
        )
        emulator.known_projects = {"project-1"}
        with pytest.raises(VendorError) as caught:
            await adapter.create_session(SessionSpec("s6", "nope", 600, 300))
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "AVATAR_NOT_FOUND",
        )
        assert caught.value.metadata["avatarId"] == "nope"
    finally:
        await adapter.aclose()
    # Nothing listens any more: connection refused is VENDOR_UNAVAILABLE.
    dead = make_adapter(emulator)
    dead.api.api_url = "http://127.0.0.1:9"
    try:
        with pytest.raises(VendorError) as caught:
            await dead.session_status(VendorSessionHandle("x"))
        assert caught.value.reason == "VENDOR_UNAVAILABLE"
    finally:
        await dead.aclose()


async def test_wrong_credentials_fail_signature_check(emulator: TencentEmulator) -> None:
    adapter = TencentAdapter(
        TencentSettings(appkey=APPKEY, access_token=SecretStr("wrong"), api_url=emulator.base_url)
    )
    try:
        with pytest.raises(VendorError) as caught:
            await adapter.create_session(SessionSpec("s7", "p", 600, 300))
        assert caught.value.reason == "VENDOR_AUTH_FAILED"
    finally:
        await adapter.aclose()


async def test_failed_session_reports_failed(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    emulator.fail_sessions = 1
    handle = await adapter.create_session(SessionSpec("s8", "", 600, 300))
    await asyncio.sleep(0.08)
    status = await adapter.session_status(handle)
    assert status.state is ReadyState.FAILED
    assert status.vendor_code == "-111004"


async def test_each_operation_makes_at_most_its_documented_vendor_calls(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    """One retry budget per operation, counted at the emulator: what each docstring states.

    create / start / close / list: ``REST_ATTEMPTS`` calls; statsession: 1 (the caller
    polls); open_channel: ``CONNECT_ATTEMPTS`` handshakes. The vendor fails every call with a
    retryable error (-101000 internal error; HTTP 503 on the channel, tencent.md §8).
    """
    assert TencentAdapter(TencentSettings()).backoff.max_attempts == REST_ATTEMPTS == 5
    assert CONNECT_ATTEMPTS == 3
    adapter.backoff = Backoff(base_s=0.001, cap_s=0.005, max_attempts=REST_ATTEMPTS)
    handle = await ready_session(adapter)

    def calls(op: str) -> int:
        return len([c for c in emulator.rest_calls if c["op"] == op])

    operations: list[tuple[str, Callable[[], Any], int]] = [
        (
            "createsession",
            lambda: adapter.create_session(SessionSpec("s-budget", "", 600, 300)),
            REST_ATTEMPTS,
        ),
        ("statsession", lambda: adapter.session_status(handle), 1),
        ("startsession", lambda: adapter.start_session(handle), REST_ATTEMPTS),
        ("closesession", lambda: adapter.close_session(handle), REST_ATTEMPTS),
        ("listsessionofuin", adapter.list_open_vendor_sessions, REST_ATTEMPTS),
    ]
    for op, operation, most in operations:
        before = calls(op)
        emulator.faults.fail_next(op, -101000, count=100)
        with pytest.raises(VendorError) as caught:
            await operation()
        assert caught.value.retryable, op
        assert calls(op) - before == most, op
        emulator.faults.clear()
    injected = emulator.faults.injected
    emulator.faults.fail_next("commandchannel", http_status=503, count=100)
    with pytest.raises(VendorError):
        await adapter.open_channel(handle, "s1")
    assert emulator.faults.injected - injected == CONNECT_ATTEMPTS
    emulator.faults.clear()
    await adapter.close_session(handle)


def test_capabilities_follow_settings() -> None:
    adapter = TencentAdapter(TencentSettings(heartbeat_interval_s=30.0))
    caps = adapter.capabilities
    assert caps.keepalive_interval_s == 30.0
    assert TencentAdapter.capabilities.keepalive_interval_s == 45.0
    assert caps.vendor == "tencent"
    assert caps.sample_rates_hertz == (16000,)
    assert caps.pacing == PacingRule(160, 6, 128)
    assert caps.streaming_text and caps.interrupt and caps.interrupt_ack
    assert (caps.max_text_chars, caps.max_text_bytes) == (4000, 4000)


# ---- channel rules ------------------------------------------------------------------------


async def test_channel_needs_startsession(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await adapter.create_session(SessionSpec("s9", "", 600, 300))
    await asyncio.sleep(0.08)
    with pytest.raises(VendorError) as caught:
        await adapter.open_channel(handle, "s9")
    assert caught.value.vendor_code == "110016"
    assert session_of(emulator, handle).refused_connects[0]["code"] == 110016


async def test_one_channel_per_session(emulator: TencentEmulator, adapter: TencentAdapter) -> None:
    handle = await ready_session(adapter)
    first, events = await open_channel(adapter, handle)
    with pytest.raises(VendorError) as caught:
        await adapter.open_channel(handle, "s1")
    assert caught.value.vendor_code == "110015"
    await first.aclose()
    await events.aclose()
    for _ in range(2):  # sequential open/close cycles reuse the single slot
        channel, events = await open_channel(adapter, handle)
        await channel.keepalive()
        await channel.aclose()
        await events.aclose()
    session = session_of(emulator, handle)
    assert session.channel_connects == 3
    # Refused three times: a refusal is retried briefly in case the old channel is closing.
    assert [r["code"] for r in session.refused_connects] == [110015] * 3
    assert session.heartbeats == 2


async def test_audio_on_text_only_session(adapter: TencentAdapter) -> None:
    options = vendor_options_pb2.TencentOptions(driver_type=1)
    handle = await ready_session(adapter, options=options)
    channel, events = await open_channel(adapter, handle)
    try:
        with pytest.raises(GatewayError) as caught:
            await channel.send_audio("1", b"\0" * FRAME, 16000)
        error = caught.value
        assert (error.code, error.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "AUDIO_NOT_SUPPORTED",
        )
        assert error.metadata == {"vendor": "tencent", "session": "sessions/s1"}
    finally:
        await channel.aclose()
        await events.aclose()


# ---- audio --------------------------------------------------------------------------------


async def test_paced_10s_utterance_has_no_pacing_violation(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    pcm = pcm_of(10.0)
    try:
        started = time.monotonic()
        await paced_send(channel, "1", pcm)
        sending = time.monotonic() - started
        ended = await events.wait(EventKind.SPEECH_ENDED, "1", within=8)
        record = emulator.drives_of(handle.vendor_session_id, "audio")[0]
        assert record.pacing_violations == []
        assert record.underruns == []
        assert record.size_violations == []
        assert record.duration_s == pytest.approx(10.0)
        assert record.sha256 == hashlib.sha256(pcm).hexdigest()
        assert record.final_type == 1 and record.missing_seqs == []
        # The 8-packet window ratio is informational: it is measured on arrival times, which
        # scheduling jitter moves; the policer above (with its jitter tolerance) is the rule.
        assert record.min_window_ratio is not None and record.min_window_ratio > 0.5
        # 63 packets: 6 at once, then one per 128 ms (a loaded machine is slower, never
        # faster); playback takes the real 10 s.
        assert 6.5 < sending < 8.5
        assert ended.played_s == pytest.approx(10.0, abs=0.4)
        assert len(events.of(EventKind.SPEECH_STARTED, "1")) == 1
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_reconnect_mid_utterance_loses_and_duplicates_nothing(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    pcm = pcm_of(3.0, seed=11)

    async def drop(index: int) -> None:
        if index in (8, 16):
            assert await emulator.drop_channels() == 1

    try:
        await paced_send(channel, "1", pcm, on_frame=drop)
        ended = await events.wait(EventKind.SPEECH_ENDED, "1", within=6)
        record = emulator.drives_of(handle.vendor_session_id, "audio")[0]
        assert record.sha256 == hashlib.sha256(pcm).hexdigest()
        assert record.duration_s == pytest.approx(3.0, abs=1 / 32000)
        assert record.missing_seqs == [] and record.conflicts == []
        assert len(record.connections) == 3
        assert record.final_type == 1  # resumed within StreamMaxInterval: no auto-final
        assert len(events.of(EventKind.WARNING)) == 2
        assert {e.reason for e in events.of(EventKind.WARNING)} == {"VENDOR_RECONNECTED"}
        # The vendor re-pushed statuses on each reconnect: still one start and one end.
        assert len(events.of(EventKind.SPEECH_STARTED)) == 1
        assert len(events.of(EventKind.SPEECH_ENDED)) == 1
        assert ended.played_s == pytest.approx(3.0, abs=0.4)
        assert session_of(emulator, handle).channel_connects == 3
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_pause_longer_than_stream_max_interval_continues_under_new_reqid(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await paced_send(channel, "1", pcm_of(0.64), end=False)
        warning = await events.wait(
            EventKind.WARNING, "1", reason="VENDOR_AUTO_FINALIZED", within=4
        )
        assert warning.metadata["reqId"]
        await paced_send(channel, "1", pcm_of(0.32, seed=3))
        ended = await events.wait(EventKind.SPEECH_ENDED, "1", within=4)
        drives = emulator.drives_of(handle.vendor_session_id, "audio")
        assert [d.final_type for d in drives] == [2, 1]
        assert [round(d.duration_s, 2) for d in drives] == [0.64, 0.32]
        assert len(events.of(EventKind.SPEECH_ENDED)) == 1
        assert ended.played_s is not None and ended.played_s > 2.0
        assert drives[1].late_packets == 0
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


# ---- keepalive ----------------------------------------------------------------------------


async def test_heartbeat_keeps_idle_session_alive() -> None:
    # 3 min WS idle → 0.54 s, 10 min session idle → 1.8 s.
    emulator = TencentEmulator(
        appkey=APPKEY, access_token=TOKEN, session_ready_delay_s=0.0, time_scale=0.003
    )
    await emulator.start()
    adapter = make_adapter(emulator, heartbeat_interval_s=0.15)
    assert adapter.capabilities.keepalive_interval_s == 0.15
    try:
        handle = await ready_session(adapter)
        channel, events = await open_channel(adapter, handle)
        session = session_of(emulator, handle)
        keepalive = asyncio.create_task(
            keepalive_loop(channel, adapter.capabilities.keepalive_interval_s or 0)
        )
        await asyncio.sleep(2.2)  # past both scaled limits
        assert session.idle_drops == 0
        assert session.channel_connects == 1
        assert session.heartbeats >= 8
        assert emulator.open_sessions() == [handle.vendor_session_id]
        keepalive.cancel()
        # Without heartbeats the WS is dropped (the channel reconnects), then the session
        # is closed and the channel reports it lost.
        await events.wait(EventKind.WARNING, reason="VENDOR_RECONNECTED", within=2)
        assert session.idle_drops >= 1
        lost = await events.wait(EventKind.SESSION_LOST, within=4)
        assert lost.reason == "VENDOR_SESSION_LOST"
        assert channel.closed
        assert emulator.open_sessions() == []
        with pytest.raises(VendorError) as caught:
            await channel.send_audio("1", b"\0" * FRAME, 16000)
        assert caught.value.reason == "VENDOR_SESSION_LOST"
        await channel.aclose()
        await events.aclose()
    finally:
        await adapter.aclose()
        await emulator.stop()


# ---- text ---------------------------------------------------------------------------------


async def test_streamed_text_seq_isfinal_and_packet_limit(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    emulator.text_seconds_per_char = 0.0005
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    big = "word " * 500  # 2500 bytes: three packets
    try:
        await channel.send_text("1", "Hello, ", False)
        await channel.send_text("1", big, False)
        await channel.send_text("1", "", True)
        await events.wait(EventKind.SPEECH_ENDED, "1", within=8)
        (record,) = emulator.drives_of(handle.vendor_session_id)
        assert record.kind == "stream"
        assert record.stream_text == "Hello, " + big
        assert sorted(record.pieces) == list(range(1, 6))
        assert record.final and record.final_seq == 5 and record.pieces[5] == ""
        assert all(len(p.encode()) <= 1000 for p in record.pieces.values())
        commands = [c for c in emulator.commands if c.command == "SEND_STREAMTEXT"]
        assert [c.seq for c in commands] == [1, 2, 3, 4, 5]
        assert [c.is_final for c in commands] == [False] * 4 + [True]
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_stream_is_closed_with_isfinal_when_the_turn_ends_early(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await channel.send_text("1", "cut short", False)
        await channel.end_audio("1")  # the gateway ends the turn without final text
        await channel.send_text("2", "next turn", False)
        await channel.aclose()  # the channel closes with turn 2 still open
        await asyncio.sleep(0.1)
        streams = emulator.drives_of(handle.vendor_session_id, "stream")
        assert len(streams) == 2
        assert all(s.final and s.pieces[s.final_seq or 0] == "" for s in streams)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_text_sends_are_spaced_and_turns_play_in_order(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        for turn in ("1", "2", "3"):  # no gateway spacing here: the channel still spaces
            await channel.send_text(turn, f"sentence number {turn}", True)
        await events.wait(EventKind.SPEECH_ENDED, "3", within=6)
        texts = emulator.drives_of(handle.vendor_session_id, "text")
        assert [t.text for t in texts] == [f"sentence number {n}" for n in "123"]
        assert all(t.statuses[-1] == "TextOver" and not t.interrupted for t in texts)
        sent = [c.at for c in emulator.commands if c.command == "SEND_TEXT"]
        assert all(b - a > 1.0 for a, b in zip(sent, sent[1:], strict=False))
        ends = [events.of(EventKind.SPEECH_ENDED, t)[0] for t in "123"]
        starts = [events.of(EventKind.SPEECH_STARTED, t)[0] for t in "123"]
        assert ends[0].monotonic_time <= starts[1].monotonic_time
        assert ends[1].monotonic_time <= starts[2].monotonic_time
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_switching_text_to_audio_and_back(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await channel.send_text("1", "a sentence that takes a while to speak " * 2, True)
        pcm = pcm_of(0.8)
        await paced_send(channel, "2", pcm)  # waits for TextOver before the first packet
        await channel.send_text("3", "and text again", True)  # waits for AudioOver
        await events.wait(EventKind.SPEECH_ENDED, "3", within=6)
        kinds = [d.kind for d in emulator.drives_of(handle.vendor_session_id)]
        assert kinds == ["text", "audio", "text"]
        order = [
            (e.kind, e.turn_id)
            for e in events.items
            if e.kind in (EventKind.SPEECH_STARTED, EventKind.SPEECH_ENDED)
        ]
        assert order == [
            (EventKind.SPEECH_STARTED, "1"),
            (EventKind.SPEECH_ENDED, "1"),
            (EventKind.SPEECH_STARTED, "2"),
            (EventKind.SPEECH_ENDED, "2"),
            (EventKind.SPEECH_STARTED, "3"),
            (EventKind.SPEECH_ENDED, "3"),
        ]
        audio = emulator.drives_of(handle.vendor_session_id, "audio")[0]
        assert audio.sha256 == hashlib.sha256(pcm).hexdigest()
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_audio_after_another_turns_audio_is_not_held_by_the_channel(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    """Audio → audio across turns is plain turn order, the gateway's (sequential_turns): the
    channel closes the earlier drive with IsFinal but does not wait for its AudioOver; the
    vendor queues the new drive behind it (tencent.md §5.6), so turns still play in order."""
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    first, second = pcm_of(1.0, seed=1), pcm_of(0.5, seed=2)
    try:
        await paced_send(channel, "1", first)
        t0 = time.monotonic()
        await channel.send_audio("2", second[:FRAME], 16000)
        assert time.monotonic() - t0 < 0.3  # turn 1 still plays for ~1 s
        await paced_send(channel, "2", second[FRAME:])
        await events.wait(EventKind.SPEECH_ENDED, "2", within=5)
        drives = emulator.drives_of(handle.vendor_session_id, "audio")
        assert [d.sha256 for d in drives] == [
            hashlib.sha256(first).hexdigest(),
            hashlib.sha256(second).hexdigest(),
        ]
        assert not any(d.interrupted for d in drives)
        ended_1 = events.of(EventKind.SPEECH_ENDED, "1")[0]
        started_2 = events.of(EventKind.SPEECH_STARTED, "2")[0]
        assert ended_1.monotonic_time <= started_2.monotonic_time
        assert not events.of(EventKind.WARNING)
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


# ---- interrupt ----------------------------------------------------------------------------


async def test_interrupt_audio(emulator: TencentEmulator, adapter: TencentAdapter) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await paced_send(channel, "1", pcm_of(1.0), end=False)
        await events.wait(EventKind.SPEECH_STARTED, "1")
        await channel.interrupt("1")
        ack = await events.wait(EventKind.INTERRUPTED, "1", within=2)
        assert not ack.metadata
        ended = await events.wait(EventKind.SPEECH_ENDED, "1")
        assert ended.interrupted
        await channel.send_audio("1", b"\0" * FRAME, 16000)  # late audio: dropped
        (record,) = emulator.drives_of(handle.vendor_session_id, "audio")
        assert record.interrupted and record.statuses[-1] == "AudioOver"
        assert record.late_packets <= 1  # at most the closing IsFinal
        interrupts = [c for c in emulator.commands if c.interrupt]
        assert [(c.command, c.req_id) for c in interrupts] == [("SEND_AUDIO", record.req_id)]
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_interrupt_text_waits_for_textstart_and_spacing(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    emulator.text_start_delay_s = 0.3
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await channel.send_text("1", "a long sentence " * 20, True)
        await channel.interrupt("1")  # before TextStart and within 1 s of the text
        await events.wait(EventKind.INTERRUPTED, "1", within=3)
        ended = await events.wait(EventKind.SPEECH_ENDED, "1")
        assert ended.interrupted
        text, control = emulator.drives_of(handle.vendor_session_id)
        assert text.interrupted and control.kind == "interrupt"
        no_violations(emulator, handle)  # no ineffective interrupt, no spacing violation
    finally:
        await channel.aclose()
        await events.aclose()


async def test_interrupt_streamed_text_and_idle(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await channel.send_text("1", "streaming a long answer " * 10, False)
        await events.wait(EventKind.SPEECH_STARTED, "1")
        await channel.interrupt("1")
        await events.wait(EventKind.INTERRUPTED, "1", within=2)
        assert (await events.wait(EventKind.SPEECH_ENDED, "1")).interrupted
        await channel.send_text("1", "late piece", False)  # dropped
        (stream,) = emulator.drives_of(handle.vendor_session_id, "stream")
        assert stream.interrupted
        command = [c for c in emulator.commands if c.interrupt][0]
        assert (command.command, command.seq) == ("SEND_STREAMTEXT", 2)
        # Nothing playing: acknowledged at once, no vendor command.
        await channel.interrupt("2")
        idle = await events.wait(EventKind.INTERRUPTED, "2", within=0.5)
        assert idle.metadata == {"vendorIdle": "true"}
        assert len([c for c in emulator.commands if c.interrupt]) == 1
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_concurrent_interrupt_wakes_a_send_waiting_for_the_switch(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await channel.send_text("1", "a sentence long enough to be playing " * 4, True)
        # Turn 2's audio waits for turn 1's TextOver (tencent.md §5 text → audio) ...
        blocked = asyncio.create_task(channel.send_audio("2", b"\0" * FRAME, 16000))
        await events.wait(EventKind.SPEECH_STARTED, "1")
        assert not blocked.done()
        # ... until an interrupt arrives from another task: nothing of turn 2 is sent.
        await channel.interrupt("2")
        await asyncio.wait_for(blocked, 1.0)
        await events.wait(EventKind.INTERRUPTED, "2", within=3)
        assert (await events.wait(EventKind.SPEECH_ENDED, "1")).interrupted
        assert emulator.drives_of(handle.vendor_session_id, "audio") == []
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


async def test_interrupting_the_playing_turn_lets_the_waiting_turn_go(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await paced_send(channel, "1", pcm_of(2.0))  # plays until ~2 s after the start
        waiting = asyncio.create_task(channel.send_text("2", "after the audio", True))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # audio → text waits for AudioOver
        await channel.interrupt("1")
        await asyncio.wait_for(waiting, 2.0)
        await events.wait(EventKind.SPEECH_ENDED, "2", within=3)
        assert (await events.wait(EventKind.SPEECH_ENDED, "1")).interrupted
        assert not events.of(EventKind.WARNING)
        assert [d.kind for d in emulator.drives_of(handle.vendor_session_id)] == ["audio", "text"]
        no_violations(emulator, handle)
    finally:
        await channel.aclose()
        await events.aclose()


# ---- downstream events --------------------------------------------------------------------


async def test_events_are_mapped_to_turns(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    sid = handle.vendor_session_id
    try:
        await channel.send_text("7", "hello", True)
        await events.wait(EventKind.SPEECH_ENDED, "7")
        (text,) = emulator.drives_of(sid, "text")
        await emulator.push_downstream(
            sid, {"Type": 4, "SessionId": sid, "ReqId": text.req_id, "Text": "hi!", "Final": False}
        )
        transcript = await events.wait(EventKind.TRANSCRIPT, "7")
        assert (transcript.text, transcript.role, transcript.final) == ("hi!", "avatar", False)
        # A drive the vendor fails before it starts: TURN_FAILED for the turn.
        emulator.faults.fail_next("SEND_TEXT", 110015)
        await channel.send_text("8", "rejected", True)
        failed = await events.wait(EventKind.TURN_FAILED, "8")
        assert failed.reason == "VENDOR_DRIVE_FAILED"
        assert failed.metadata["vendorCode"] == "110015"
        # SpeakStatus Error after the start: TURN_FAILED, once.
        await channel.send_text("9", "will break", False)
        await events.wait(EventKind.SPEECH_STARTED, "9")
        nine = emulator.drives_of(sid, "stream")[-1]
        error = {"Type": 3, "SessionId": sid, "ReqId": nine.req_id, "SpeakStatus": "Error"}
        await emulator.push_downstream(sid, {**error, "ErrorCode": -111005})
        await emulator.push_downstream(sid, {**error, "ErrorCode": -111005})
        await events.wait(EventKind.TURN_FAILED, "9")
        await asyncio.sleep(0.1)
        assert len(events.of(EventKind.TURN_FAILED, "9")) == 1
        # A Type 9 about no known drive is a warning, not a failure.
        await emulator.push_downstream(
            sid, {"Type": 9, "SessionId": sid, "ReqId": "f" * 32, "ErrorCode": 100001}
        )
        warning = await events.wait(EventKind.WARNING, reason="VENDOR_DRIVE_ERROR")
        assert warning.turn_id == ""
        # Statuses for ReqIds this channel never sent are ignored.
        await emulator.push_downstream(
            sid, {"Type": 3, "SessionId": sid, "ReqId": "e" * 32, "SpeakStatus": "TextStart"}
        )
        await asyncio.sleep(0.1)
        assert {e.turn_id for e in events.of(EventKind.SPEECH_STARTED)} == {"7", "9"}
    finally:
        await channel.aclose()
        await events.aclose()


async def test_vendor_closing_the_session_loses_the_channel(
    emulator: TencentEmulator, adapter: TencentAdapter
) -> None:
    handle = await ready_session(adapter)
    channel, events = await open_channel(adapter, handle)
    try:
        await adapter.close_session(handle)
        lost = await events.wait(EventKind.SESSION_LOST, within=3)
        assert lost.reason == "VENDOR_SESSION_LOST"
        assert lost.metadata["session"] == "sessions/s1"
        assert channel.closed
    finally:
        await channel.aclose()
        await events.aclose()
