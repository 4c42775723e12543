"""Tests of the Akool Streaming Avatar emulator (docs/vendors/akool.md).

Everything runs over real sockets: httpx against the REST server, and a raw LiveKit
participant (the livekit rtc SDK) in a real ``livekit-server`` on loopback, playing the part
of the gateway in the session's room. The LiveKit server is built by tools/build_livekit.sh
when it is missing (a few minutes on a fresh machine; the per-test timeout allows for it).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from livekit import api as lkapi
from livekit import rtc

from core.resilience import send_until_acknowledged
from emulators.akool import AkoolEmulator
from emulators.livekit_server import LiveKitServer

# The first run on a fresh machine builds livekit-server (about 2 min) inside a fixture.
pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(900 if not LiveKitServer.is_built() else 60),
]

API_KEY = "emu-api-key-" + "x" * 20
CLIENT_ID = "emu-client"
CLIENT_SECRET = "emu-client-secret"
AVATAR = "dvp_Tristan_cloth2_1080P"
BASE = "/api/open/v4/liveAvatar"


@pytest.fixture
async def emu(livekit: LiveKitServer) -> AsyncIterator[AkoolEmulator]:
    emulator = AkoolEmulator.on_livekit(
        livekit,
        api_key=API_KEY,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        time_scale=0.2,
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(emu: AkoolEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url, headers={"x-api-key": API_KEY}) as client:
        yield client


def token(server: LiveKitServer, identity: str, room: str, **claims: Any) -> str:
    grants = lkapi.VideoGrants(room_join=True, room=room)
    tok = (
        lkapi.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(minutes=10))
    )
    if claims.get("kind"):
        tok = tok.with_kind(claims["kind"])
    return tok.to_jwt()


async def create(
    http: httpx.AsyncClient, livekit: LiveKitServer, room: str, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "avatar_id": AVATAR,
        "duration": 600,
        "mode_type": 1,
        "stream_type": "livekit",
        "credentials": {
            "livekit_url": livekit.url,
            "livekit_token": token(livekit, "akool-avatar-agent", room, kind="agent"),
            "livekit_room_name": room,
            "livekit_server_identity": "akool-avatar-agent",
            "livekit_client_identity": "gw",
        },
    }
    body.update(overrides)
    answer = (await http.post(f"{BASE}/session/create", json=body)).json()
    assert answer["code"] == 1000, answer
    return dict(answer["data"])


class Peer:
    """A raw participant standing in for the gateway: collects messages and playback RPCs."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.messages: list[dict[str, Any]] = []
        self.rpcs: list[tuple[str, str, float]] = []
        self.changed = asyncio.Event()

    async def join(self, server: LiveKitServer, room: str, identity: str = "gw") -> None:
        def on_data(packet: rtc.DataPacket) -> None:
            self.messages.append(json.loads(packet.data))
            self.changed.set()

        self.room.on("data_received", on_data)
        await self.room.connect(server.url, token(server, identity, room))
        for method in ("lk.playback_started", "lk.playback_finished"):
            self.room.local_participant.register_rpc_method(method, self._rpc(method))

    def _rpc(self, method: str) -> Any:
        def handler(data: rtc.RpcInvocationData) -> str:
            self.rpcs.append((method, data.payload, time.monotonic()))
            self.changed.set()
            return "ok"

        return handler

    async def send(self, message: dict[str, Any] | bytes) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self.room.local_participant.publish_data(
            payload, reliable=True, destination_identities=["akool-avatar-agent"]
        )

    async def wait_for(self, predicate: Any, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while not predicate():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; messages={self.messages} rpcs={self.rpcs}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    def events(self) -> list[str]:
        return [m["pld"]["event"] for m in self.messages if m.get("type") == "event"]

    def acks(self) -> dict[str, int]:
        return {m["mid"]: m["pld"]["code"] for m in self.messages if m.get("type") == "command"}


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    yield p
    await p.room.disconnect()


async def ready(emu: AkoolEmulator, session_id: str) -> None:
    await emu.wait_until(lambda: emu.sessions[session_id].status == 2, 15.0)


# --- REST ------------------------------------------------------------------------------------


async def test_api_key_and_token_auth(emu: AkoolEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url) as c:
        url = f"{BASE}/avatar/list"
        assert (await c.get(url)).json()["code"] == 1102
        assert (await c.get(url, headers={"x-api-key": "wrong"})).json()["code"] == 1101
        assert (await c.get(url, headers={"x-api-key": API_KEY})).json()["code"] == 1000

        bad = await c.post(
            "/api/open/v3/getToken", json={"clientId": CLIENT_ID, "clientSecret": "no"}
        )
        assert bad.json()["code"] == 1101
        assert (await c.post("/api/open/v3/getToken", json={})).json()["code"] == 1102
        got = (
            await c.post(
                "/api/open/v3/getToken", json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
            )
        ).json()
        assert got["code"] == 1000 and "data" not in got  # the token is top-level (akool.md §1)
        bearer = {"Authorization": f"Bearer {got['token']}"}
        assert (await c.get(url, headers=bearer)).json()["code"] == 1000
        # Authorization wins over x-api-key when both are sent.
        both = {"Authorization": "Bearer nope", "x-api-key": API_KEY}
        assert (await c.get(url, headers=both)).json()["code"] == 1101
        emu.expire_tokens()
        assert (await c.get(url, headers=bearer)).json()["code"] == 1101
    assert [r["auth"] for r in emu.requests][:3] == ["none", "api_key", "api_key"]


async def test_avatar_list_paging_and_detail(http: httpx.AsyncClient) -> None:
    first = (await http.get(f"{BASE}/avatar/list", params={"page": 1, "size": 2})).json()
    assert first["code"] == 1000 and first["data"]["count"] == 3
    assert len(first["data"]["result"]) == 2
    second = (await http.get(f"{BASE}/avatar/list", params={"page": 2, "size": 2})).json()
    assert [a["avatar_id"] for a in second["data"]["result"]] == ["dvp_Dave_casual_1080P"]
    too_big = (await http.get(f"{BASE}/avatar/list", params={"size": 101})).json()
    assert too_big["code"] == 1003
    detail = (await http.get(f"{BASE}/avatar/detail", params={"avatar_id": AVATAR})).json()
    assert detail["data"]["status"] == 3
    missing = (await http.get(f"{BASE}/avatar/detail", params={"avatar_id": "nope"})).json()
    assert missing["code"] == 1008


async def test_create_validation_codes(http: httpx.AsyncClient, livekit: LiveKitServer) -> None:
    url = f"{BASE}/session/create"
    cases: list[tuple[dict[str, Any], int]] = [
        ({"avatar_id": AVATAR, "duration": 3601, "stream_type": "livekit"}, 1003),
        ({"avatar_id": AVATAR, "duration": 0, "stream_type": "livekit"}, 1003),
        ({"avatar_id": AVATAR, "mode_type": 3, "stream_type": "livekit"}, 1003),
        ({"avatar_id": AVATAR, "stream_type": "agora"}, 1003),
        ({"avatar_id": "nobody", "stream_type": "livekit"}, 1008),
        ({"stream_type": "livekit"}, 1003),
        ({"avatar_id": AVATAR, "stream_type": "livekit", "voice_params": {"speed": 2}}, 1003),
    ]
    for body, code in cases:
        assert (await http.post(url, json=body)).json()["code"] == code, body
    assert (await http.get(f"{BASE}/session/detail", params={"id": "x" * 24})).json()[
        "code"
    ] == 1216
    assert (await http.post(f"{BASE}/session/close", json={"id": "x" * 24})).json()["code"] == 1216


async def test_session_lifecycle_close_keys_and_list(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer
) -> None:
    a = await create(http, livekit, "room-life-a")
    b = await create(http, livekit, "room-life-b")
    assert a["status"] == 1 and len(a["_id"]) == 24
    await ready(emu, a["_id"])
    await ready(emu, b["_id"])
    assert sorted(emu.open_sessions()) == sorted([a["_id"], b["_id"]])
    listed = (await http.get(f"{BASE}/session/list", params={"status": 2})).json()["data"]
    assert listed["count"] == 2
    claims = emu.sessions[a["_id"]].token_claims
    assert claims["identity"] == "akool-avatar-agent" and claims["kind"] == "agent"
    assert "livekit_token" not in emu.sessions[a["_id"]].request["credentials"]
    # The docs' {"id"} and the LiveKit plugin's {"session_id"} both close (akool.md §3).
    assert (await http.post(f"{BASE}/session/close", json={"id": a["_id"]})).json()["code"] == 1000
    closed = (await http.post(f"{BASE}/session/close", json={"session_id": b["_id"]})).json()
    assert closed["code"] == 1000
    assert emu.sessions[b["_id"]].close_key == "session_id"
    again = (await http.post(f"{BASE}/session/close", json={"id": a["_id"]})).json()
    assert again["code"] == 1219
    detail = (await http.get(f"{BASE}/session/detail", params={"id": a["_id"]})).json()
    assert detail["data"]["status"] == 3
    assert emu.open_sessions() == []
    state = (await http.get("/_emulator/state")).json()
    assert state["sessions"][a["_id"]]["end_reason"] == "closed"


async def test_duration_is_enforced_and_avatar_leaves(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    emu.time_scale = 0.01  # 100 s → 1 s
    data = await create(http, livekit, "room-expire", duration=100)
    await ready(emu, data["_id"])
    left = asyncio.Event()
    peer.room.on(
        "participant_disconnected",
        lambda p: left.set() if p.identity == "akool-avatar-agent" else None,
    )
    await peer.join(livekit, "room-expire")
    # On a slow machine the 1 s session may end before this peer is in the room: then the
    # avatar is simply absent from the participants the join reported.
    if all(p.identity != "akool-avatar-agent" for p in peer.room.remote_participants.values()):
        left.set()
    await asyncio.wait_for(left.wait(), 10)
    record = emu.sessions[data["_id"]]
    assert record.status == 3 and record.end_reason == "expired"
    assert 0.5 < record.ended_at - record.created_at < 5  # type: ignore[operator]
    assert emu.open_sessions() == []


async def test_bad_livekit_token_fails_the_session(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer
) -> None:
    forged = lkapi.AccessToken(livekit.api_key, "not-the-secret-" + "y" * 20)
    forged = forged.with_identity("akool-avatar-agent").with_grants(
        lkapi.VideoGrants(room_join=True, room="r")
    )
    data = await create(
        http,
        livekit,
        "r",
        credentials={"livekit_url": livekit.url, "livekit_token": forged.to_jwt()},
    )
    await emu.wait_until(lambda: emu.sessions[data["_id"]].status == 4)
    assert "invalid LiveKit token" in emu.sessions[data["_id"]].join_error


async def test_emulator_mints_credentials_without_byo(
    emu: AkoolEmulator, http: httpx.AsyncClient
) -> None:
    body = {"avatar_id": AVATAR, "duration": 60, "stream_type": "livekit"}
    data = (await http.post(f"{BASE}/session/create", json=body)).json()["data"]
    creds = data["credentials"]
    await ready(emu, data["_id"])
    client = rtc.Room()
    await client.connect(creds["livekit_url"], creds["livekit_token"])
    try:
        assert creds["livekit_server_identity"] in client.remote_participants
    finally:
        await client.disconnect()


async def test_fault_injection(emu: AkoolEmulator, http: httpx.AsyncClient) -> None:
    emu.faults.fail_next("avatar/list", 1005, count=2)
    assert (await http.get(f"{BASE}/avatar/list")).json()["code"] == 1005
    assert (await http.get(f"{BASE}/avatar/list")).json()["code"] == 1005
    assert (await http.get(f"{BASE}/avatar/list")).json()["code"] == 1000
    emu.faults.fail_next("session/list", http_status=503)
    assert (await http.get(f"{BASE}/session/list")).status_code == 503
    emu.faults.stall_next("avatar/list", 0.3)
    started = time.monotonic()
    await http.get(f"{BASE}/avatar/list")
    assert time.monotonic() - started >= 0.3
    assert emu.faults.injected == 4


# --- the avatar in the room ------------------------------------------------------------------


async def test_chat_is_spoken_with_events_echo_and_acks(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    data = await create(http, livekit, "room-chat")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-chat")
    for idx, (text, fin) in enumerate([("Hello ", False), ("there.", False), ("", True)]):
        await peer.send(
            {"v": 2, "type": "chat", "mid": "m1", "idx": idx, "fin": fin, "pld": {"text": text}}
        )
    await peer.wait_for(lambda: peer.events() == ["audio_start", "audio_end"])
    bot = [m["pld"]["text"] for m in peer.messages if m.get("type") == "chat"]
    assert "".join(bot) == "Hello there."
    record = emu.sessions[data["_id"]]
    turn = record.text_turns[0]
    assert (turn.text, turn.parts, turn.fin, turn.interrupted) == ("Hello there.", 3, True, False)
    # 11 spoken characters ("Hello" + "there.") at 15/s, × time_scale 0.2.
    assert 11 / 15 * 0.2 - 0.01 <= turn.spoken_s < 11 / 15 * 0.2 + 0.25

    await peer.send(
        {
            "v": 2,
            "type": "command",
            "mid": "c1",
            "pld": {"cmd": "set-params", "data": {"mode": 1, "vparams": {"speed": 1.1}}},
        }
    )
    await peer.send(
        {
            "v": 2,
            "type": "command",
            "mid": "c2",
            "pld": {"cmd": "set-action", "data": {"action": "dance"}},
        }
    )
    await peer.send(
        {
            "v": 2,
            "type": "command",
            "mid": "c3",
            "pld": {"cmd": "set-params", "data": {"vparams": {"speed": 3}}},
        }
    )
    await peer.send(
        {
            "v": 2,
            "type": "command",
            "mid": "c4",
            "pld": {"cmd": "set-action", "data": {"action": "nod", "expression": "happiness"}},
        }
    )
    await peer.wait_for(lambda: len(peer.acks()) == 4)
    assert peer.acks() == {"c1": 1000, "c2": 1003, "c3": 1003, "c4": 1000}
    assert record.params == {"mode": 1, "vparams": {"speed": 1.1}}
    await emu.say_as_user(data["_id"], "hi avatar")
    await peer.wait_for(lambda: any(m.get("pld", {}).get("from") == "user" for m in peer.messages))
    assert record.violations == []


async def test_interrupt_stops_speech_and_acks(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    data = await create(http, livekit, "room-int")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-int")
    long_text = "This sentence takes a while to say. " * 8
    await peer.send(
        {"v": 2, "type": "chat", "mid": "m1", "idx": 0, "fin": True, "pld": {"text": long_text}}
    )
    await peer.send(
        {"v": 2, "type": "chat", "mid": "m2", "idx": 0, "fin": True, "pld": {"text": "queued"}}
    )
    await peer.wait_for(lambda: "audio_start" in peer.events())
    started = time.monotonic()
    await peer.send({"v": 2, "type": "command", "mid": "i1", "pld": {"cmd": "interrupt"}})
    await peer.wait_for(lambda: peer.acks().get("i1") == 1000 and "audio_end" in peer.events())
    assert time.monotonic() - started < 1.0  # the full text would take ~3.8 s here
    turns = emu.sessions[data["_id"]].text_turns
    assert turns[0].interrupted and turns[1].interrupted and not turns[1].started
    await asyncio.sleep(0.3)
    assert peer.events() == ["audio_start", "audio_end"]  # the queued turn was dropped


async def test_a_late_listener_loses_what_it_is_sent_first(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    # avatar:listen: for 0.5 s from the first message, the avatar (in the room) hears nothing.
    emu.faults.stall_next("avatar:listen", 0.5)
    data = await create(http, livekit, "room-deaf")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-deaf")
    acked = asyncio.Event()
    mids: list[str] = []

    async def send_params() -> None:
        mids.append(f"p{len(mids)}")
        command = {"cmd": "set-params", "data": {"mode": 1}}
        await peer.send({"v": 2, "type": "command", "mid": mids[-1], "pld": command})

    async def watch() -> None:
        await peer.wait_for(lambda: bool(peer.acks()))
        acked.set()

    watcher = asyncio.create_task(watch())
    assert await send_until_acknowledged(send_params, acked, attempts=10, wait_s=0.3)
    await watcher
    record = emu.sessions[data["_id"]]
    assert len(mids) >= 2 and "p0" not in peer.acks()  # the first was lost, a later one acked
    assert 1 <= len(record.unheard) < len(mids) and emu.faults.injected == 1
    assert "p0" not in {c["mid"] for c in record.commands}  # lost, not refused


async def test_message_size_and_rate_limits_are_enforced(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    data = await create(http, livekit, "room-limits")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-limits")
    record = emu.sessions[data["_id"]]
    big = {"v": 2, "type": "chat", "mid": "big", "idx": 0, "fin": True, "pld": {"text": "a" * 1100}}
    await peer.send(big)
    await emu.wait_until(lambda: any(v["kind"] == "message_too_large" for v in record.violations))
    assert record.text_turns == []  # dropped, never spoken
    # Eight 900 B messages at once: 7200 B within a few ms, far over 6000 B/s.
    for i in range(8):
        text = "b" * 830
        await peer.send(
            {"v": 2, "type": "chat", "mid": "burst", "idx": i, "fin": i == 7, "pld": {"text": text}}
        )
    await emu.wait_until(lambda: any(v["kind"] == "rate" for v in record.violations))
    await peer.send(b"not json")
    await emu.wait_until(lambda: any(v["kind"] == "invalid_json" for v in record.violations))


async def test_audio_stream_is_played_in_real_time_with_rpcs(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    data = await create(http, livekit, "room-audio")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-audio")
    pcm = secrets.token_bytes(16000)  # 0.5 s at 16 kHz mono s16le
    local = peer.room.local_participant
    writer = await local.stream_bytes(
        "AUDIO_1",
        topic="lk.audio_stream",
        destination_identities=["akool-avatar-agent"],
        attributes={"sample_rate": "16000", "num_channels": "1"},
    )
    sent = time.monotonic()
    for i in range(0, len(pcm), 640):
        await writer.write(pcm[i : i + 640])
    await writer.aclose()
    await peer.wait_for(lambda: len(peer.rpcs) == 2)
    (m1, _, t1), (m2, payload, t2) = peer.rpcs
    assert (m1, m2) == ("lk.playback_started", "lk.playback_finished")
    assert json.loads(payload) == {
        "playback_position": pytest.approx(0.5, abs=0.01),
        "interrupted": False,
    }
    assert t2 - sent >= 0.45  # real time, not faster
    turn = emu.sessions[data["_id"]].audio_turns[0]
    assert turn.sha256 == hashlib.sha256(pcm).hexdigest()
    assert (turn.bytes_received, turn.duration_s, turn.complete) == (16000, 0.5, True)

    # A second turn cleared mid-way: playback_finished(interrupted) with a partial position.
    peer.rpcs.clear()
    writer = await local.stream_bytes(
        "AUDIO_2",
        topic="lk.audio_stream",
        destination_identities=["akool-avatar-agent"],
        attributes={"sample_rate": "16000", "num_channels": "1"},
    )
    await writer.write(secrets.token_bytes(64000))  # 2 s
    await peer.wait_for(lambda: len(peer.rpcs) == 1)
    await asyncio.sleep(0.3)
    answer = await local.perform_rpc(
        destination_identity="akool-avatar-agent", method="lk.clear_buffer", payload=""
    )
    assert answer == "ok"
    await peer.wait_for(lambda: len(peer.rpcs) == 2)
    finished = json.loads(peer.rpcs[1][1])
    assert finished["interrupted"] is True and 0.2 < finished["playback_position"] < 1.0
    await writer.aclose()
    assert emu.sessions[data["_id"]].audio_turns[1].interrupted


async def test_audio_in_the_wrong_format_is_a_violation(
    emu: AkoolEmulator, http: httpx.AsyncClient, livekit: LiveKitServer, peer: Peer
) -> None:
    data = await create(http, livekit, "room-format")
    await ready(emu, data["_id"])
    await peer.join(livekit, "room-format")
    writer = await peer.room.local_participant.stream_bytes(
        "AUDIO_X",
        topic="lk.audio_stream",
        destination_identities=["akool-avatar-agent"],
        attributes={"sample_rate": "24000", "num_channels": "1"},
    )
    await writer.write(b"\x00" * 4800)
    await writer.aclose()
    record = emu.sessions[data["_id"]]
    await emu.wait_until(lambda: any(v["kind"] == "audio_format" for v in record.violations))
