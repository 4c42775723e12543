"""The Tencent IVH emulator on its own, driven by raw HTTP and WebSocket clients.

Checks that the emulator enforces and records the rules of docs/vendors/tencent.md whatever the
client does, so that the adapter tests against it mean something.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters.tencent.api import sign, signed_query
from emulators.tencent import COMMAND_CHANNEL_PATH, SESSION_PREFIX, TencentEmulator

pytestmark = pytest.mark.unit

APPKEY = "a" * 32
TOKEN = "b" * 32


# One HTTP client per emulator: building a client loads an SSL context (~0.1 s), which
# would race the emulator's short readiness delays.
_clients: dict[int, httpx.AsyncClient] = {}


@contextlib.asynccontextmanager
async def running(emu: TencentEmulator) -> AsyncIterator[TencentEmulator]:
    await emu.start()
    _clients[id(emu)] = httpx.AsyncClient(trust_env=False)
    try:
        yield emu
    finally:
        await _clients.pop(id(emu)).aclose()
        await emu.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[TencentEmulator]:
    emu = TencentEmulator(appkey=APPKEY, access_token=TOKEN, session_ready_delay_s=0.05)
    emu.text_seconds_per_char = 0.005
    async with running(emu):
        yield emu


async def rest(
    emu: TencentEmulator, op: str, payload: dict[str, Any], *, query: str | None = None
) -> dict[str, Any]:
    body = {"Header": {}, "Payload": {"ReqId": uuid.uuid4().hex, **payload}}
    url = f"{emu.base_url}{SESSION_PREFIX}{op}?{query or signed_query(APPKEY, TOKEN)}"
    response = await _clients[id(emu)].post(url, json=body)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def code_of(answer: dict[str, Any]) -> int:
    return int(answer["Header"]["Code"])


async def new_session(emu: TencentEmulator, **extra: Any) -> str:
    payload = {"VirtualmanProjectId": "p", "UserId": uuid.uuid4().hex, "Protocol": "webrtc"}
    payload["DriverType"] = 3
    answer = await rest(emu, "createsession", {**payload, **extra})
    assert code_of(answer) == 0, answer
    sid = str(answer["Payload"]["SessionId"])
    await asyncio.sleep(emu.session_ready_delay_s + 0.02)
    assert code_of(await rest(emu, "startsession", {"SessionId": sid})) == 0
    return sid


def ws_url(emu: TencentEmulator, sid: str, token: str = TOKEN) -> str:
    return f"{emu.ws_base_url}{COMMAND_CHANNEL_PATH}?{signed_query(APPKEY, token, requestid=sid)}"


def frame(sid: str, command: str, req_id: str, data: dict[str, Any]) -> str:
    payload = {"ReqId": req_id, "SessionId": sid, "Command": command, "Data": data}
    return json.dumps({"Header": {}, "Payload": payload})


async def receive_until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], within: float = 3.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        payload: dict[str, Any] = json.loads(raw)["Payload"]
        if predicate(payload):
            return payload


def status_is(req_id: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("ReqId") == req_id and p.get("SpeakStatus") == status


def error_for(req_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("Type") == 9 and p.get("ReqId") == req_id


def audio(sid: str, req_id: str, seq: int, pcm: bytes, final: bool = False) -> str:
    data = {"Audio": base64.b64encode(pcm).decode(), "Seq": seq, "IsFinal": final}
    return frame(sid, "SEND_AUDIO", req_id, data)


# ---- REST ---------------------------------------------------------------------------------


async def test_signature_timestamp_and_envelope_are_enforced(emulator: TencentEmulator) -> None:
    payload = {"VirtualmanProjectId": "p", "UserId": "u", "Protocol": "webrtc"}
    assert code_of(await rest(emulator, "createsession", payload)) == 0
    wrong = signed_query(APPKEY, "wrong-token")
    assert code_of(await rest(emulator, "createsession", payload, query=wrong)) == 100005
    stale = signed_query(APPKEY, TOKEN, timestamp=int(time.time()) - 400)
    answer = await rest(emulator, "createsession", payload, query=stale)
    assert (code_of(answer), answer["Header"]["Message"]) == (100005, "timestamp expired")
    # The docs' pitfall: a signature containing '+' that is not URL-encoded fails.
    ts = int(time.time())
    while "+" not in sign({"appkey": APPKEY, "timestamp": str(ts)}, TOKEN):
        ts -= 1
    raw = sign({"appkey": APPKEY, "timestamp": str(ts)}, TOKEN)
    unencoded = f"appkey={APPKEY}&timestamp={ts}&signature={raw}"
    assert code_of(await rest(emulator, "createsession", payload, query=unencoded)) == 100005
    encoded = f"appkey={APPKEY}&timestamp={ts}&signature={urllib.parse.quote(raw, safe='')}"
    assert code_of(await rest(emulator, "statsession", {"SessionId": "x"}, query=encoded)) == 110018
    client = _clients[id(emulator)]
    url = f"{emulator.base_url}{SESSION_PREFIX}createsession?{signed_query(APPKEY, TOKEN)}"
    no_header = await client.post(url, json={"Payload": {"ReqId": uuid.uuid4().hex}})
    bad_req_id = await client.post(url, json={"Header": {}, "Payload": {"ReqId": "1-2"}})
    assert code_of(no_header.json()) == 100001
    assert code_of(bad_req_id.json()) == 100001


async def test_session_lifecycle_and_userid_replacement(emulator: TencentEmulator) -> None:
    payload = {"VirtualmanProjectId": "p", "UserId": "same", "Protocol": "rtmp", "DriverType": 3}
    first = await rest(emulator, "createsession", payload)
    sid = first["Payload"]["SessionId"]
    assert first["Payload"]["SessionStatus"] == 3
    assert first["Payload"]["PlayStreamAddr"].startswith("rtmp://")
    assert code_of(await rest(emulator, "startsession", {"SessionId": sid})) == 110014
    await asyncio.sleep(0.07)
    stat = await rest(emulator, "statsession", {"SessionId": sid})
    assert stat["Payload"]["SessionStatus"] == 1 and not stat["Payload"]["IsSessionStarted"]
    second = await rest(emulator, "createsession", payload)
    old = await rest(emulator, "statsession", {"SessionId": sid})
    assert old["Payload"]["SessionStatus"] == 2 and old["Payload"]["ErrorCode"] == 110022
    listed = await rest(emulator, "listsessionofprojectid", {"VirtualmanProjectId": "p"})
    assert [s["SessionId"] for s in listed["Payload"]["Sessions"]] == [
        second["Payload"]["SessionId"]
    ]
    assert emulator.open_sessions() == [second["Payload"]["SessionId"]]
    close = await rest(emulator, "closesession", {"SessionId": second["Payload"]["SessionId"]})
    assert code_of(close) == 0
    again = await rest(emulator, "closesession", {"SessionId": second["Payload"]["SessionId"]})
    assert code_of(again) == 110013
    assert emulator.open_sessions() == []
    bad = {**payload, "StreamMaxInterval": 9000}
    assert code_of(await rest(emulator, "createsession", bad)) == 100001


async def test_rest_faults(emulator: TencentEmulator) -> None:
    emulator.faults.fail_next("statsession", 100012)
    assert code_of(await rest(emulator, "statsession", {"SessionId": "x"})) == 100012
    emulator.faults.stall_next("statsession", 0.2)
    started = time.monotonic()
    await rest(emulator, "statsession", {"SessionId": "x"})
    assert time.monotonic() - started >= 0.2
    emulator.faults.fail_next("statsession", http_status=502)
    url = f"{emulator.base_url}{SESSION_PREFIX}statsession?{signed_query(APPKEY, TOKEN)}"
    response = await _clients[id(emulator)].post(url, json={"Header": {}, "Payload": {}})
    assert response.status_code == 502


# ---- command channel ----------------------------------------------------------------------


async def test_channel_refusals_and_one_channel_rule(emulator: TencentEmulator) -> None:
    answer = await rest(
        emulator,
        "createsession",
        {"VirtualmanProjectId": "p", "UserId": "u", "Protocol": "webrtc", "DriverType": 3},
    )
    sid = answer["Payload"]["SessionId"]
    refusals: list[tuple[int, int]] = []

    async def refused(url: str) -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url, proxy=None):
                pass
        response = caught.value.response
        refusals.append((response.status_code, json.loads(response.body)["Header"]["Code"]))

    await refused(ws_url(emulator, "no-such-session"))
    await refused(ws_url(emulator, sid, token="wrong"))
    await asyncio.sleep(0.07)
    await refused(ws_url(emulator, sid))  # ready but not started
    await rest(emulator, "startsession", {"SessionId": sid})
    async with connect(ws_url(emulator, sid), proxy=None):
        await refused(ws_url(emulator, sid))  # one channel per session
    async with connect(ws_url(emulator, sid), proxy=None) as ws:  # slot free again
        await ws.send(frame(sid, "SEND_HEARTBEAT", uuid.uuid4().hex, {"Text": "PING"}))
        await asyncio.sleep(0.05)
    emulator.faults.fail_next("commandchannel", 100012)
    await refused(ws_url(emulator, sid))
    assert refusals == [(404, 110018), (403, 100005), (409, 110016), (409, 110015), (403, 100012)]
    session = emulator.sessions[sid]
    assert (session.channel_connects, session.heartbeats) == (2, 1)


async def test_text_spacing_statuses_and_repush_on_reconnect(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        await ws.send(frame(sid, "SEND_TEXT", first, {"Text": "hello there"}))
        await receive_until(ws, status_is(first, "TextOver"))  # after ~0.25 s
        await ws.send(frame(sid, "SEND_TEXT", second, {"Text": "too soon"}))
        error = await receive_until(ws, error_for(second))
        assert error["ErrorCode"] == 100012
    record = emulator.records[first]
    assert record.statuses == ["WaitingTextStart", "TextStart", "WaitingTextOver", "TextOver"]
    assert record.played_s is not None and record.played_s >= 0.2
    violations = emulator.sessions[sid].text_spacing_violations
    assert len(violations) == 1 and violations[0]["reqId"] == second
    assert 0.2 < violations[0]["intervalS"] < 1.0
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        repushed = json.loads(await asyncio.wait_for(ws.recv(), 1))["Payload"]
        assert (repushed["ReqId"], repushed["SpeakStatus"]) == (first, "TextOver")
        # A re-sent SEND_TEXT (same ReqId) is recognised and ignored, spacing or not.
        await ws.send(frame(sid, "SEND_TEXT", first, {"Text": "hello there"}))
        await asyncio.sleep(0.1)
    assert emulator.records[first].duplicates == 1
    assert len(emulator.sessions[sid].text_spacing_violations) == 1


async def test_audio_dedupe_ordering_sizes_and_sha(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    req = uuid.uuid4().hex
    p1, p2, p3 = b"\x01\x00" * 2560, b"\x02\x00" * 1000, b"\x03\x00" * 2560
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        for seq, pcm in ((1, p1), (3, p3), (2, p2), (2, p2), (3, p1)):
            await ws.send(audio(sid, req, seq, pcm))
        await ws.send(audio(sid, req, 4, b"", final=True))
        over = await receive_until(ws, status_is(req, "AudioOver"))
    assert over["FinalType"] == 1
    record = emulator.audio_for(req)
    assert record is not None
    assert record.sha256 == hashlib.sha256(p1 + p2 + p3).hexdigest()
    assert record.duration_s == pytest.approx((len(p1) + len(p2) + len(p3)) / 32000)
    assert (record.duplicates, record.conflicts, record.out_of_order) == (2, [3], 2)
    assert record.missing_seqs == []
    # Packet 2 is short but not the last one (tencent.md §5: only the last may be shorter).
    assert record.size_violations == [{"seq": 2, "bytes": 2000, "rule": "short"}]
    assert record.statuses == ["WaitingAudioStart", "AudioStart", "AudioOver"]
    assert record.played_s == pytest.approx(record.duration_s, abs=0.1)


async def test_too_fast_audio_is_recorded_and_throttled(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    req = uuid.uuid4().hex
    packet = b"\0" * 5120
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        started = time.monotonic()
        for seq in range(1, 16):
            await ws.send(audio(sid, req, seq, packet))
        await ws.send(audio(sid, req, 16, b"", final=True))
        # An invalid command after the audio: its error comes once the frames before it
        # were processed, throttling included.
        probe = uuid.uuid4().hex
        await ws.send(frame(sid, "NO_SUCH_COMMAND", probe, {}))
        await receive_until(ws, error_for(probe))
        processed = time.monotonic() - started
    record = emulator.audio_for(req)
    assert record is not None and record.final
    # 9 packets beyond the burst of 6, each 120 ms apart at best: about 1.08 s.
    assert len(record.pacing_violations) == 9
    assert processed > 0.9
    throttled = [c for c in emulator.commands if c.outcome.startswith("throttled")]
    assert len(throttled) == 9


async def test_auto_final_and_late_packets(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    req = uuid.uuid4().hex
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        await ws.send(audio(sid, req, 1, b"\0" * 5120))
        started = time.monotonic()
        over = await receive_until(ws, status_is(req, "AudioOver"), within=4)
        assert over["FinalType"] == 2
        assert 1.9 < time.monotonic() - started < 3.0
        await ws.send(audio(sid, req, 2, b"\0" * 5120))
        error = await receive_until(ws, error_for(req))
        assert error["ErrorCode"] == 110015
    record = emulator.audio_for(req)
    assert record is not None and record.auto_finalized and record.late_packets == 1


async def test_switch_rules_interrupts_and_driver_type(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    text, sound, stream = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        await ws.send(frame(sid, "SEND_TEXT", text, {"Text": "x" * 200}))
        await receive_until(ws, status_is(text, "TextStart"))
        await ws.send(audio(sid, sound, 1, b"\0" * 5120))  # audio while text plays
        assert (await receive_until(ws, error_for(sound)))["ErrorCode"] == 110015
        await ws.send(frame(sid, "SEND_STREAMTEXT", stream, {"Text": "hi", "Seq": 1}))
        await receive_until(ws, status_is(text, "TextOver"))  # new text replaces old text
        await ws.send(frame(sid, "SEND_STREAMTEXT", stream, {"Text": "", "Interrupt": True}))
        await asyncio.sleep(0.1)
        assert not emulator.records[stream].interrupted  # no Seq: ineffective (tencent.md §5)
        interrupt = {"Text": "", "Interrupt": True, "Seq": 2}
        await ws.send(frame(sid, "SEND_STREAMTEXT", stream, interrupt))
        await receive_until(ws, status_is(stream, "TextOver"))
    session = emulator.sessions[sid]
    assert [v["reqId"] for v in session.switch_violations] == [sound]
    assert [v["reqId"] for v in session.ineffective_interrupts] == [stream]
    assert emulator.records[text].interrupted and emulator.records[stream].interrupted
    text_only = await new_session(emulator, DriverType=1)
    req = uuid.uuid4().hex
    async with connect(ws_url(emulator, text_only), proxy=None) as ws:
        await ws.send(audio(text_only, req, 1, b"\0" * 5120))
        assert (await receive_until(ws, error_for(req)))["ErrorCode"] == 110015
        emulator.faults.fail_next("SEND_HEARTBEAT", 100012)
        beat = uuid.uuid4().hex
        await ws.send(frame(text_only, "SEND_HEARTBEAT", beat, {"Text": "PING"}))
        assert (await receive_until(ws, error_for(beat)))["ErrorCode"] == 100012


async def test_idle_limits_are_scaled() -> None:
    # 3 min → 0.36 s without traffic drops the WS; 10 min → 1.2 s closes the session.
    emulator = TencentEmulator(
        appkey=APPKEY, access_token=TOKEN, session_ready_delay_s=0.0, time_scale=0.002
    )
    async with running(emulator):
        sid = await new_session(emulator)
        async with connect(ws_url(emulator, sid), proxy=None) as ws:
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
            assert 0.3 < time.monotonic() - started < 0.6
        assert emulator.sessions[sid].idle_drops == 1
        assert emulator.open_sessions() == [sid]
        await asyncio.sleep(1.0)
        assert emulator.open_sessions() == []
        stat = await rest(emulator, "statsession", {"SessionId": sid})
        assert stat["Payload"]["SessionStatus"] == 2


async def test_drop_channels_and_state_endpoint(emulator: TencentEmulator) -> None:
    sid = await new_session(emulator)
    async with connect(ws_url(emulator, sid), proxy=None) as ws:
        assert await emulator.drop_channels() == 1
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 1)
    assert await emulator.drop_channels() == 0
    state = (await _clients[id(emulator)].get(f"{emulator.base_url}/_emulator/state")).json()
    assert state["vendor"] == "tencent"
    assert state["openSessions"] == [sid]
    assert state["sessions"][0]["channelConnects"] == 1
    assert set(state["violations"]) == {
        "textSpacing",
        "switch",
        "ineffectiveInterrupt",
        "pacing",
        "size",
        "underrun",
    }
