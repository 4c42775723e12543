"""Tests of the ZEGOCLOUD Digital Human emulator (docs/vendors/zegocloud.md).

Everything runs over real loopback sockets: httpx against the REST server, a `websockets`
client (TLS verification off, as ZEGO instructs) against the WSS drive server, and a small
aiohttp server as the callback receiver. Durations are kept short with ``time_scale`` and a
small ``text_seconds_per_char`` so the file stays well under 25 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from emulators.zegocloud import ZegocloudEmulator, callback_signature, request_signature

APP_ID = 1234567
SECRET = "9193cc662a4c0ec135ec71fb57194b38"
CB_SECRET = "callback-secret"
DH = "zego_emma"
TIMBRE = "zego_timbre_en_female"


# --- helpers -----------------------------------------------------------------------------------


def independent_callback_signature(secret: str, timestamp: str, nonce: str) -> str:
    # Re-implemented here (not imported) so the receiver really checks the emulator's output.
    return hashlib.sha1("".join(sorted([secret, timestamp, nonce])).encode()).hexdigest()


class CallbackSink:
    """An aiohttp callback receiver that verifies signatures and records arrival times."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.fail_remaining = 0
        self.attempts = 0
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ConnectionResetError:  # the emulator was stopped mid-delivery
            return web.Response(status=499)
        self.attempts += 1
        if self.fail_remaining > 0:
            self.fail_remaining -= 1
            return web.Response(status=500, text="try again")
        expected = independent_callback_signature(self.secret, body["Timestamp"], body["Nonce"])
        if body["Signature"] != expected:
            self.bad_signatures += 1
        self.events.append((time.monotonic(), body))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cb", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/cb"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of(self, event_type: int, key: str, value: str) -> list[tuple[float, dict[str, Any]]]:
        """Events of ``event_type`` whose Detail (or body) ``key`` equals ``value``."""
        out = []
        for at, body in self.events:
            if body["EventType"] != event_type:
                continue
            if body.get(key) == value or body["Detail"].get(key) == value:
                out.append((at, body))
        return out

    def statuses(self, event_type: int, key: str, value: str) -> list[int]:
        return [b["Detail"]["Status"] for _, b in self.of(event_type, key, value)]


async def eventually(predicate: Callable[[], Any], within: float = 3.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Api:
    """A signing REST client for one emulator."""

    def __init__(self, http: httpx.AsyncClient, emu: ZegocloudEmulator) -> None:
        self.http = http
        self.emu = emu

    def params(self, action: str, *, ts: int | None = None, **overrides: str) -> dict[str, str]:
        timestamp = str(int(time.time()) if ts is None else ts)
        nonce = secrets.token_hex(8)
        params = {
            "Action": action,
            "AppId": str(self.emu.app_id),
            "SignatureNonce": nonce,
            "Timestamp": timestamp,
            "Signature": request_signature(self.emu.app_id, nonce, SECRET, timestamp),
            "SignatureVersion": "2.0",
        }
        params.update(overrides)
        return params

    async def raw(self, action: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.post(
            self.emu.rest.base_url + "/", params=self.params(action, **kw), json=body or {}
        )

    async def __call__(self, action: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        response = await self.raw(action, body, **kw)
        assert response.status_code == 200
        payload: dict[str, Any] = response.json()
        assert set(payload) <= {"Code", "Message", "RequestId", "Data"}
        assert payload["RequestId"]
        if payload["Code"] != 0:
            assert "Data" not in payload
        return payload

    async def ok(self, action: str, body: Any = None) -> dict[str, Any]:
        payload = await self(action, body)
        assert payload["Code"] == 0, payload
        data: dict[str, Any] = payload.get("Data", {})
        return data

    async def create(self, stream_id: str | None = None, **extra: Any) -> str:
        body: dict[str, Any] = {
            "DigitalHumanConfig": {"DigitalHumanId": DH},
            "RTCConfig": {"RoomId": "room1", "StreamId": stream_id or secrets.token_hex(6)},
            "TTL": 600,
            "MaxIdleTime": 120,
        }
        body.update(extra)
        data = await self.ok("CreateDigitalHumanStreamTask", body)
        return str(data["TaskId"])

    async def ready_task(self, **extra: Any) -> str:
        task_id = await self.create(**extra)
        await eventually(lambda: self.emu.tasks[task_id].status == 3)
        return task_id

    async def text(self, task_id: str, text: str, mode: int = 0) -> str:
        data = await self.ok(
            "DriveByText",
            {
                "TaskId": task_id,
                "Text": text,
                "InterruptMode": mode,
                "TTSConfig": {"TimbreId": TIMBRE},
            },
        )
        return str(data["DriveId"])

    async def ws_drive(self, task_id: str) -> tuple[str, str]:
        data = await self.ok("DriveByWsStream", {"TaskId": task_id})
        return str(data["DriveId"]), str(data["WssAddress"])


def insecure_ssl() -> ssl.SSLContext:
    # ZEGO's docs tell clients to skip verification of the drive socket's certificate (1.8).
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def ws_connect(url: str) -> Any:
    return connect(url, ssl=insecure_ssl(), open_timeout=3)


def start_frame(drive_id: str, rate: int = 24000, channel: int = 1) -> str:
    return json.dumps(
        {
            "Action": "Start",
            "SequenceID": "seq-1",
            "Payload": {
                "DriveId": drive_id,
                "SampleRate": rate,
                "Channel": channel,
                "VoiceChannel": 0,
            },
        }
    )


def stop_frame(drive_id: str) -> str:
    return json.dumps({"Action": "Stop", "Payload": {"DriveId": drive_id}})


def pcm(seconds: float, rate: int = 24000, channels: int = 1) -> bytes:
    n = int(seconds * rate) * channels * 2
    return (bytes(range(256)) * (n // 256 + 1))[:n]


async def wait_closed(ws: ClientConnection) -> int | None:
    try:
        await asyncio.wait_for(ws.recv(), 3)
    except websockets.ConnectionClosed:
        pass
    return ws.close_code


# --- fixtures ----------------------------------------------------------------------------------

EmuFactory = Callable[..., Awaitable[tuple[ZegocloudEmulator, Api]]]


@pytest.fixture
async def sink() -> AsyncIterator[CallbackSink]:
    receiver = CallbackSink(CB_SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def make_emu(sink: CallbackSink) -> AsyncIterator[EmuFactory]:
    emulators: list[ZegocloudEmulator] = []
    http = httpx.AsyncClient(timeout=10)

    async def factory(**kw: Any) -> tuple[ZegocloudEmulator, Api]:
        options: dict[str, Any] = {
            "app_id": APP_ID,
            "server_secret": SECRET,
            "callback_url": sink.url,
            "callback_secret": CB_SECRET,
            "task_ready_delay_s": 0.05,
            "text_seconds_per_char": 0.01,
        }
        options.update(kw)
        emu = ZegocloudEmulator(**options)
        await emu.start()
        emulators.append(emu)
        return emu, Api(http, emu)

    yield factory
    for emu in emulators:
        await emu.stop()
    await http.aclose()
    assert sink.bad_signatures == 0


@pytest.fixture
async def emu_api(make_emu: EmuFactory) -> tuple[ZegocloudEmulator, Api]:
    return await make_emu()


# --- signatures (1.2, 1.6) ---------------------------------------------------------------------


def test_request_signature_docs_vector() -> None:
    sig = request_signature(12345, "4fd24687296dd9f3", SECRET, 1615186943)
    assert sig == "43e5cfcca828314675f91b001390566a"


def test_callback_signature_docs_vector() -> None:
    sig = callback_signature("secret", "1470820198", "123412")
    assert sig == "5bd59fd62953a8059fb7eaba95720f66d19e4517"
    assert sig == independent_callback_signature("secret", "1470820198", "123412")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"Action": ""}, 100000006),
        ({"Action": "NoSuchAction"}, 100000007),
        ({"Action": "DriveByAudio"}, 100000007),
        ({"AppId": "abc"}, 100000001),
        ({"AppId": "4294967296"}, 100000001),
        ({"AppId": "999"}, 100000010),
        ({"SignatureNonce": ""}, 100000008),
        ({"Timestamp": ""}, 100000002),
        ({"Timestamp": "12x"}, 100000003),
        ({"Signature": ""}, 100000009),
        ({"SignatureVersion": ""}, 100000013),
        ({"SignatureVersion": "1.0"}, 100000014),
        ({"Signature": "0" * 32}, 100000005),
        # Validation order: the first failing check wins.
        ({"Action": "", "AppId": "abc", "Signature": ""}, 100000006),
        ({"AppId": "abc", "SignatureNonce": ""}, 100000001),
        ({"SignatureNonce": "", "Timestamp": ""}, 100000008),
        ({"Timestamp": "", "Signature": ""}, 100000002),
        ({"Signature": "", "SignatureVersion": ""}, 100000009),
    ],
)
async def test_common_parameter_errors(
    emu_api: tuple[ZegocloudEmulator, Api], overrides: dict[str, str], code: int
) -> None:
    emu, api = emu_api
    action = overrides.get("Action", "QueryDigitalHumanStreamTasks")
    payload = await api(action, {}, **overrides)
    assert payload["Code"] == code
    assert emu.snapshot()["rejected"][str(code)] == 1


async def test_signature_expired_and_case(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    old = int(time.time()) - 601
    assert (await api("QueryDigitalHumanStreamTasks", {}, ts=old))["Code"] == 100000004
    future = int(time.time()) + 601
    assert (await api("QueryDigitalHumanStreamTasks", {}, ts=future))["Code"] == 100000004
    # Within the 10-minute window a correctly signed old timestamp is fine.
    assert (await api("QueryDigitalHumanStreamTasks", {}, ts=old + 30))["Code"] == 0
    # The signature is lowercase hex; an uppercase one is not the same signature.
    params = api.params("QueryDigitalHumanStreamTasks")
    params["Signature"] = params["Signature"].upper()
    r = await api.http.post(emu.rest.base_url + "/", params=params, json={})
    assert r.json()["Code"] == 100000005
    # A replayed signature is counted for audits.
    params = api.params("QueryDigitalHumanStreamTasks")
    for _ in range(2):
        await api.http.post(emu.rest.base_url + "/", params=params, json={})
    assert emu.snapshot()["reused_signatures"] == 1


async def test_body_must_be_json_object(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    params = api.params("QueryDigitalHumanStreamTasks")
    r = await api.http.post(emu.rest.base_url + "/", params=params, content=b"[1,2")
    assert r.json()["Code"] == 100000012


# --- QPS (1.1, 1.9) ----------------------------------------------------------------------------


async def test_qps_limit_per_action(make_emu: EmuFactory) -> None:
    emu, api = await make_emu(qps_per_action=3)
    codes = [(await api("GetTimbreList", {}))["Code"] for _ in range(4)]
    assert codes == [0, 0, 0, 400010009]
    # Another Action has its own budget.
    assert (await api("GetDigitalHumanList", {}))["Code"] == 0
    await asyncio.sleep(1.05)
    assert (await api("GetTimbreList", {}))["Code"] == 0
    snap = emu.snapshot()
    assert snap["calls"]["GetTimbreList"] == 5
    assert snap["rejected"]["400010009"] == 1


# --- catalogue (1.4) ---------------------------------------------------------------------------


async def test_catalogue_actions(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    _, api = emu_api
    every = await api.ok("GetDigitalHumanList", {})
    ids = {d["DigitalHumanId"] for d in every["DigitalHumans"]}
    assert {"zego_emma", "zego_ryan"} <= ids
    assert every["Total"] == len(ids)
    emma = next(d for d in every["DigitalHumans"] if d["DigitalHumanId"] == "zego_emma")
    assert set(emma) == {"DigitalHumanId", "Name", "AvatarUrl", "IsPublic", "Actions"}
    assert emma["IsPublic"] is True
    assert {"idle_action", "mute_action"} <= {a["Action"] for a in emma["Actions"]}

    public = await api.ok("GetDigitalHumanList", {"FetchMode": 2})
    assert all(d["IsPublic"] for d in public["DigitalHumans"])
    private = await api.ok("GetDigitalHumanList", {"FetchMode": 3})
    assert [d["DigitalHumanId"] for d in private["DigitalHumans"]] == ["zego_ryan"]
    page = await api.ok("GetDigitalHumanList", {"Offset": 1, "Limit": 1})
    assert len(page["DigitalHumans"]) == 1 and page["Total"] == every["Total"]
    for bad in ({"Limit": 0}, {"Limit": 21}, {"FetchMode": 4}, {"Offset": -1}, {"Limit": "5"}):
        assert (await api("GetDigitalHumanList", bad))["Code"] == 400000001

    info = await api.ok("GetDigitalHumanInfo", {"DigitalHumanId": "zego_ryan"})
    assert info["IsPublic"] is False
    assert (await api("GetDigitalHumanInfo", {"DigitalHumanId": "nobody"}))["Code"] == 400000003

    timbres = await api.ok("GetTimbreList", {})
    tids = {t["TimbreId"] for t in timbres["Timbres"]}
    assert {"zego_timbre_en_female", "zego_timbre_en_male"} <= tids
    assert (await api("GetTimbreList", {"DigitalHumanId": "nobody"}))["Code"] == 400000003


# --- tasks (1.4, 1.5, 1.6) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"RTCConfig": {"RoomId": "r", "StreamId": "s"}}, 400000003),
        ({"DigitalHumanConfig": {"DigitalHumanId": "nobody"}}, 400000003),
        ({"RTCConfig": {"StreamId": "s"}}, 400000001),
        ({"RTCConfig": {"RoomId": "r"}}, 400000001),
        ({"RTCConfig": {"RoomId": "r", "StreamId": "a b"}}, 400000001),
        ({"RTCConfig": {"RoomId": "r", "StreamId": "s" * 129}}, 400000001),
        ({"RTCConfig": {"RoomId": "é" * 65, "StreamId": "s"}}, 400000001),
        ({"TTL": 9}, 400000001),
        ({"TTL": 86401}, 400000001),
        ({"TTL": "60"}, 400000001),
        ({"MaxIdleTime": 29}, 400000001),
        ({"MaxIdleTime": 86401}, 400000001),
        ({"DigitalHumanConfig": {"DigitalHumanId": DH, "BackgroundColor": "red"}}, 400000001),
    ],
)
async def test_create_task_validation(
    emu_api: tuple[ZegocloudEmulator, Api], body: dict[str, Any], code: int
) -> None:
    emu, api = emu_api
    full: dict[str, Any] = {
        "DigitalHumanConfig": {"DigitalHumanId": DH},
        "RTCConfig": {"RoomId": "room", "StreamId": "stream"},
    }
    full.update(body)
    if "DigitalHumanConfig" not in body and code == 400000003:
        del full["DigitalHumanConfig"]
    assert (await api("CreateDigitalHumanStreamTask", full))["Code"] == code
    assert emu.tasks == {}


async def test_task_lifecycle_with_signed_callbacks(
    emu_api: tuple[ZegocloudEmulator, Api], sink: CallbackSink
) -> None:
    emu, api = emu_api
    task_id = await api.create(stream_id="stream_A-1", ExtraConfig={"OutputMode": 1})
    record = emu.tasks[task_id]
    assert (
        record.ttl_given
        and record.max_idle_given
        and (record.ttl, record.max_idle_time) == (600, 120)
    )
    status = await api.ok("GetDigitalHumanStreamTaskStatus", {"TaskId": task_id})
    assert status["Status"] == 1
    assert (status["RoomId"], status["StreamId"]) == ("room1", "stream_A-1")
    assert "FailReason" not in status
    await eventually(lambda: sink.statuses(3, "TaskId", task_id) == [1, 3])
    _, body = sink.of(3, "TaskId", task_id)[1]
    assert body["AppId"] == APP_ID
    assert isinstance(body["Timestamp"], str) and len(body["Timestamp"]) == 10
    assert body["Detail"] == {
        "Status": 3,
        "RoomId": "room1",
        "StreamId": "stream_A-1",
        "FailReason": "",
    }
    assert body["Signature"] == callback_signature(CB_SECRET, body["Timestamp"], body["Nonce"])
    assert (await api.ok("GetDigitalHumanStreamTaskStatus", {"TaskId": task_id}))["Status"] == 3
    listed = await api.ok("QueryDigitalHumanStreamTasks", {})
    assert [t["TaskId"] for t in listed["TaskList"]] == [task_id]
    assert emu.open_tasks() == [record]

    assert (await api("StopDigitalHumanStreamTask", {"TaskId": task_id}))["Code"] == 0
    assert (await api.ok("QueryDigitalHumanStreamTasks", {}))["TaskList"] == []
    await eventually(lambda: sink.statuses(3, "TaskId", task_id) == [1, 3, 4, 5])
    assert record.status == 5 and record.stop_reason == "api"
    assert emu.open_tasks() == []
    assert (await api.ok("GetDigitalHumanStreamTaskStatus", {"TaskId": task_id}))["Status"] == 4
    assert (await api("StopDigitalHumanStreamTask", {"TaskId": task_id}))["Code"] == 400000007
    assert (
        await api(
            "DriveByText", {"TaskId": task_id, "Text": "hi", "TTSConfig": {"TimbreId": TIMBRE}}
        )
    )["Code"] == 400000007


async def test_stop_and_status_of_unknown_task(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    _, api = emu_api
    for action in (
        "StopDigitalHumanStreamTask",
        "GetDigitalHumanStreamTaskStatus",
        "InterruptDriveTask",
    ):
        assert (await api(action, {"TaskId": "task_nope"}))["Code"] == 400000005
    assert (await api("StopDigitalHumanStreamTask", {}))["Code"] == 400000001


async def test_defaults_recorded_when_backstops_missing(
    emu_api: tuple[ZegocloudEmulator, Api],
) -> None:
    emu, api = emu_api
    data = await api.ok(
        "CreateDigitalHumanStreamTask",
        {
            "DigitalHumanConfig": {"DigitalHumanId": DH},
            "RTCConfig": {"RoomId": "r", "StreamId": "s"},
        },
    )
    record = emu.tasks[data["TaskId"]]
    assert (record.ttl_given, record.max_idle_given) == (False, False)
    assert (record.ttl, record.max_idle_time) == (86400, 900)


async def test_stream_id_unique_and_concurrency_limit(make_emu: EmuFactory) -> None:
    emu, api = await make_emu(concurrency_limit=2)
    first = await api.create(stream_id="dup")
    assert (
        await api(
            "CreateDigitalHumanStreamTask",
            {
                "DigitalHumanConfig": {"DigitalHumanId": DH},
                "RTCConfig": {"RoomId": "x", "StreamId": "dup"},
            },
        )
    )["Code"] == 400000015
    await api.create()
    body = {
        "DigitalHumanConfig": {"DigitalHumanId": DH},
        "RTCConfig": {"RoomId": "x", "StreamId": "third"},
    }
    assert (await api("CreateDigitalHumanStreamTask", body))["Code"] == 400000008
    await api.ok("StopDigitalHumanStreamTask", {"TaskId": first})
    await api.create(stream_id="dup")  # a stopped task frees its StreamId and its slot
    await eventually(lambda: emu.tasks[first].status == 5)
    assert len(emu.open_tasks()) == 2


async def test_task_init_failure(
    emu_api: tuple[ZegocloudEmulator, Api], sink: CallbackSink
) -> None:
    emu, api = emu_api
    emu.fail_next_task_init("no render node")
    task_id = await api.create()
    await eventually(lambda: emu.tasks[task_id].status == 2)
    status = await api.ok("GetDigitalHumanStreamTaskStatus", {"TaskId": task_id})
    assert status["Status"] == 2 and status["FailReason"] == "no render node"
    await eventually(lambda: sink.statuses(3, "TaskId", task_id) == [1, 2])
    assert emu.open_tasks() == []


async def test_ttl_and_idle_backstops(make_emu: EmuFactory, sink: CallbackSink) -> None:
    emu, api = await make_emu(time_scale=0.01, task_ready_delay_s=0.02)
    ttl_task = await api.create(TTL=10, MaxIdleTime=86400)  # 0.1 s scaled
    idle_task = await api.create(TTL=86400, MaxIdleTime=30)  # 0.3 s scaled
    busy_task = await api.ready_task(TTL=86400, MaxIdleTime=30)
    drive_id = await api.text(busy_task, "x" * 50)  # 0.5 s of speech outlasts the idle window
    await eventually(lambda: emu.tasks[ttl_task].status == 5, within=2)
    assert emu.tasks[ttl_task].stop_reason == "ttl"
    await eventually(lambda: emu.tasks[idle_task].status == 5, within=2)
    assert emu.tasks[idle_task].stop_reason == "idle"
    await eventually(lambda: emu.tasks[busy_task].status == 5, within=3)
    drive = emu.drives[drive_id]
    assert emu.tasks[busy_task].stop_reason == "idle"
    assert drive.status == 4 and not drive.interrupted  # the speech was not cut by the idle rule
    await eventually(lambda: sink.statuses(3, "TaskId", ttl_task) == [1, 3, 4, 5])
    assert emu.open_tasks() == []


# --- DriveByText (1.4) -------------------------------------------------------------------------


async def test_drive_by_text_validation(make_emu: EmuFactory) -> None:
    emu, api = await make_emu(task_ready_delay_s=0.3)
    task_id = await api.create()
    body: dict[str, Any] = {"TaskId": task_id, "Text": "hello", "TTSConfig": {"TimbreId": TIMBRE}}
    assert (await api("DriveByText", body))["Code"] == 400000006  # still initialising
    assert (await api("DriveByWsStream", {"TaskId": task_id}))["Code"] == 400000006
    await eventually(lambda: emu.tasks[task_id].status == 3)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"Text": "x" * 1801}, 400000001),
        ({"Text": ""}, 400000001),
        ({"InterruptMode": 2}, 400000001),
        ({"TTSConfig": {"TimbreId": "nope"}}, 400000004),
        ({"TTSConfig": {}}, 400000004),
        ({"TTSConfig": {"TimbreId": TIMBRE, "Volume": 0}}, 400000001),
        ({"TTSConfig": {"TimbreId": TIMBRE, "SpeechRate": 501}}, 400000001),
        ({"TaskId": "task_nope"}, 400000005),
    ]
    for change, code in cases:
        assert (await api("DriveByText", {**body, **change}))["Code"] == code, change
    assert emu.drives == {}
    long_text = "é" * 1800  # the limit counts characters, not bytes
    data = await api.ok("DriveByText", {**body, "Text": long_text})
    assert emu.drives[data["DriveId"]].text == long_text


async def test_drive_by_text_timing_and_queue(
    emu_api: tuple[ZegocloudEmulator, Api], sink: CallbackSink
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    first = await api.text(task_id, "x" * 20)  # 0.2 s
    second = await api.text(task_id, "y" * 10)  # 0.1 s, queued behind the first
    assert emu.drives[first].status == 2 and emu.drives[second].status == 1
    await eventually(lambda: emu.drives[second].status == 4, within=2)
    a, b = emu.drives[first], emu.drives[second]
    assert a.end_time is not None and a.start_time is not None
    assert b.end_time is not None and b.start_time is not None
    assert a.end_time - a.start_time == pytest.approx(0.2, abs=0.05)
    assert b.start_time >= a.end_time
    assert b.end_time - b.start_time == pytest.approx(0.1, abs=0.05)
    assert not a.interrupted and not b.interrupted
    assert emu.drives_for_task(task_id) == [a, b]
    await eventually(lambda: sink.statuses(4, "DriveId", second) == [1, 2, 4])
    # Per-task order: the first drive's end precedes the second's start.
    order = [
        (body["Detail"]["DriveId"], body["Detail"]["Status"])
        for _, body in sink.events
        if body["EventType"] == 4
    ]
    assert order.index((first, 4)) < order.index((second, 2))


async def test_interrupt_drive_task_and_interrupt_mode(
    emu_api: tuple[ZegocloudEmulator, Api],
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    long_one = await api.text(task_id, "x" * 300)  # 3 s
    queued = await api.text(task_id, "y" * 10)
    assert (await api("InterruptDriveTask", {"TaskId": task_id}))["Code"] == 0
    a, b = emu.drives[long_one], emu.drives[queued]
    assert a.status == 4 and a.interrupted
    assert b.status == 4 and b.interrupted and b.start_time is None
    # InterruptMode 1 cuts the current drive and drops the queue too.
    c = await api.text(task_id, "x" * 300)
    d = await api.text(task_id, "y" * 300)
    e = await api.text(task_id, "z" * 5, mode=1)
    assert emu.drives[c].interrupted and emu.drives[d].interrupted
    assert emu.drives[e].status == 2
    await eventually(lambda: emu.drives[e].status == 4)
    assert not emu.drives[e].interrupted


async def test_do_action(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    _, api = emu_api
    task_id = await api.ready_task()
    assert (await api("DoAction", {"TaskId": task_id, "Action": "wave_hand"}))["Code"] == 0
    assert (await api("DoAction", {"TaskId": task_id, "Action": "backflip"}))["Code"] == 400000001


# --- WSS drive (1.8) ---------------------------------------------------------------------------


async def test_ws_drive_one_second_24k(
    emu_api: tuple[ZegocloudEmulator, Api], sink: CallbackSink
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    assert address.startswith(f"wss://127.0.0.1:{emu.drive_server.port}/ws?Token=")
    audio = pcm(1.0)
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id))
        for i in range(0, len(audio), 4096):
            await ws.send(audio[i : i + 4096])
        await ws.send(stop_frame(drive_id))
        await eventually(lambda: emu.drives[drive_id].status == 4, within=3)
    drive = emu.drives[drive_id]
    assert drive.kind == "ws" and (drive.sample_rate, drive.channels) == (24000, 1)
    assert drive.bytes_received == 48000
    assert drive.duration_s == pytest.approx(1.0)
    assert drive.sha256 == hashlib.sha256(audio).hexdigest()
    assert drive.stopped and not drive.interrupted
    assert drive.violations == [] and drive.underruns == 0
    assert drive.end_time is not None and drive.first_audio_time is not None
    assert drive.end_time - drive.first_audio_time >= 1.0
    await eventually(lambda: sink.statuses(4, "DriveId", drive_id) == [1, 2, 4])
    (t2, e2), (t4, e4) = sink.of(4, "DriveId", drive_id)[1:]
    assert e4["EventTime"] - e2["EventTime"] >= 950
    assert t4 - t2 >= 0.9
    assert e4["TaskId"] == task_id
    snap = emu.snapshot()
    assert snap["drives"][drive_id]["sha256"] == drive.sha256
    assert emu.tasks[task_id].max_parallel_sockets == 1


@pytest.mark.parametrize(
    ("first", "violation"),
    [
        (b"\x00\x00" * 100, "binary frame before Start"),
        ("{not json", "not a JSON"),
        (
            json.dumps(
                {"Action": "Start", "Payload": {"DriveId": "drive_other", "SampleRate": 24000}}
            ),
            "DriveId",
        ),
        ("RATE", "SampleRate"),
        ("CHANNEL", "Channel"),
        ("STOP", "Stop before Start"),
    ],
)
async def test_ws_first_frame_must_be_valid_start(
    emu_api: tuple[ZegocloudEmulator, Api], first: str | bytes, violation: str
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    if first == "RATE":
        first = start_frame(drive_id, rate=44100)
    elif first == "CHANNEL":
        first = start_frame(drive_id, channel=3)
    elif first == "STOP":
        first = stop_frame(drive_id)
    async with ws_connect(address) as ws:
        await ws.send(first)
        assert await wait_closed(ws) == 1008
    drive = emu.drives[drive_id]
    assert any(violation in v for v in drive.violations), drive.violations
    assert drive.status == 3
    assert drive.bytes_received == 0


async def test_ws_unknown_and_used_token_rejected(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    _, address = await api.ws_drive(task_id)
    bogus = f"wss://127.0.0.1:{emu.drive_server.port}/ws?Token=bogus"
    for url in (bogus, bogus.split("?")[0]):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(url):
                pass
        assert info.value.response.status_code == 401
    async with ws_connect(address):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(address):  # one connection per Token
                pass
        assert info.value.response.status_code == 401


async def test_ws_frame_alignment_violations_keep_bytes(
    emu_api: tuple[ZegocloudEmulator, Api],
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    chunks = [b"\x01\x02\x03", b"\x04\x05", pcm(0.05, 16000, 2)]
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id, rate=16000, channel=2))
        for chunk in chunks:
            await ws.send(chunk)
        await ws.send(stop_frame(drive_id))
        await eventually(lambda: emu.drives[drive_id].status == 4)
    drive = emu.drives[drive_id]
    assert drive.bytes_received == sum(map(len, chunks))
    assert drive.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert any("odd length" in v for v in drive.violations)
    assert any("2-channel" in v for v in drive.violations)


async def test_ws_slow_sender_underruns(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id))
        await ws.send(pcm(0.1))
        await asyncio.sleep(0.25)  # slower than real time: playback runs dry
        await ws.send(pcm(0.1))
        await ws.send(stop_frame(drive_id))
        await eventually(lambda: emu.drives[drive_id].status == 4)
    drive = emu.drives[drive_id]
    assert drive.underruns == 1
    assert drive.duration_s == pytest.approx(0.2)
    assert drive.end_time is not None and drive.first_audio_time is not None
    assert drive.end_time - drive.first_audio_time >= 0.35  # paused while starved, then resumed


async def test_ws_second_cycle_on_same_socket(
    emu_api: tuple[ZegocloudEmulator, Api], sink: CallbackSink
) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    one, two = pcm(0.1), bytes(reversed(pcm(0.1)))
    async with ws_connect(address) as ws:
        for chunk in (one, two):
            await ws.send(start_frame(drive_id))
            await ws.send(chunk)
            await ws.send(stop_frame(drive_id))
            await eventually(lambda: emu.drives[drive_id].status == 4)
    drive = emu.drives[drive_id]
    assert drive.cycles == 2 and drive.violations == []
    assert drive.sha256 == hashlib.sha256(one + two).hexdigest()
    assert drive.duration_s == pytest.approx(0.2)
    await eventually(lambda: sink.statuses(4, "DriveId", drive_id) == [1, 2, 4, 2, 4])


async def test_ws_start_interrupts_text_and_close_without_stop(make_emu: EmuFactory) -> None:
    emu, api = await make_emu(time_scale=0.05)
    task_id = await api.ready_task()
    speaking = await api.text(task_id, "x" * 300)
    queued = await api.text(task_id, "y" * 10)
    drive_id, address = await api.ws_drive(task_id)
    assert emu.drives[speaking].status == 2  # the API call alone interrupts nothing
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id))
        await eventually(lambda: emu.drives[speaking].interrupted)
        assert emu.drives[queued].interrupted and emu.drives[queued].status == 4
        await ws.send(pcm(0.05))
    # Closed without Stop: the drive ends after the (scaled) 2 s grace, with a violation.
    await eventually(lambda: emu.drives[drive_id].status == 4, within=2)
    assert any("no Stop" in v for v in emu.drives[drive_id].violations)


async def test_drop_drive_sockets(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id))
        await ws.send(pcm(0.5))
        await eventually(lambda: emu.drives[drive_id].status == 2)
        assert await emu.drop_drive_sockets() == 1
        assert await wait_closed(ws) == 1011
    drive = emu.drives[drive_id]
    assert drive.status == 3 and drive.violations == []
    assert emu.snapshot()["faults_injected"] == 1
    assert await emu.drop_drive_sockets() == 0


async def test_stop_task_closes_drive_socket(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id, address = await api.ws_drive(task_id)
    async with ws_connect(address) as ws:
        await ws.send(start_frame(drive_id))
        await ws.send(pcm(0.5))
        await api.ok("StopDigitalHumanStreamTask", {"TaskId": task_id})
        assert await wait_closed(ws) == 1000
    drive = emu.drives[drive_id]
    assert drive.status == 4 and drive.interrupted and drive.violations == []


# --- faults, callbacks retry, snapshot ---------------------------------------------------------


async def test_fault_injection(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    emu.faults.fail_next("GetDigitalHumanList", 400010002)
    assert (await api("GetDigitalHumanList", {}))["Code"] == 400010002
    assert (await api("GetDigitalHumanList", {}))["Code"] == 0
    emu.faults.fail_next("GetTimbreList", http_status=503)
    assert (await api.raw("GetTimbreList", {})).status_code == 503
    emu.faults.stall_next("QueryDigitalHumanStreamTasks", 0.3)
    started = time.monotonic()
    assert (await api("QueryDigitalHumanStreamTasks", {}))["Code"] == 0
    assert time.monotonic() - started >= 0.3
    snap = emu.snapshot()
    assert snap["faults_injected"] == 3
    assert snap["rejected"] == {"400010002": 1, "http_503": 1}


async def test_calls_counted_per_task_whatever_the_answer(
    emu_api: tuple[ZegocloudEmulator, Api],
) -> None:
    """``calls_for_task`` counts every call naming a TaskId: faulted, rejected and ok ones."""
    emu, api = emu_api
    task_id = await api.ready_task()
    other = await api.ready_task()
    emu.faults.fail_next("StopDigitalHumanStreamTask", 400010002)
    assert (await api("StopDigitalHumanStreamTask", {"TaskId": task_id}))["Code"] == 400010002
    emu.faults.fail_next("StopDigitalHumanStreamTask", http_status=503)
    assert (await api.raw("StopDigitalHumanStreamTask", {"TaskId": task_id})).status_code == 503
    bad_signature = await api.raw("StopDigitalHumanStreamTask", {"TaskId": task_id}, Signature="0")
    assert bad_signature.json()["Code"] == 100000005
    assert (await api("StopDigitalHumanStreamTask", {"TaskId": task_id}))["Code"] == 0
    assert (await api("StopDigitalHumanStreamTask", {"TaskId": task_id}))["Code"] == 400000007
    await api.ok("GetDigitalHumanStreamTaskStatus", {"TaskId": task_id})
    assert emu.calls_for_task(task_id) == {
        "StopDigitalHumanStreamTask": 5,
        "GetDigitalHumanStreamTaskStatus": 1,
    }
    assert emu.calls_for_task(other) == {}
    assert emu.snapshot()["task_calls"][task_id]["StopDigitalHumanStreamTask"] == 5
    assert emu.calls_for_task("task_unknown") == {}


# time_scale shrinks TTL and MaxIdleTime too (120 s of idle is 0.12 s at 0.001): a task that
# ended on its own would add status 4 and 5 events and the exact lists below would never match
# on a slow machine. The longest documented values keep the task alive through the test.
NO_BACKSTOPS = {"TTL": 86400, "MaxIdleTime": 86400}


async def test_callback_retries_keep_order(make_emu: EmuFactory, sink: CallbackSink) -> None:
    emu, api = await make_emu(time_scale=0.01)
    sink.fail_remaining = 2  # the first event needs two retries (0.02 s, 0.04 s scaled)
    task_id = await api.create(**NO_BACKSTOPS)
    await eventually(lambda: sink.statuses(3, "TaskId", task_id) == [1, 3])
    assert sink.attempts == 4
    # The sink records an event before it answers; the emulator counts it once answered.
    await eventually(lambda: emu.callback_stats["delivered"] == 2)
    assert emu.callback_stats["failed"] == 0


async def test_callback_gives_up_after_five_retries(
    make_emu: EmuFactory, sink: CallbackSink
) -> None:
    emu, api = await make_emu(time_scale=0.001)
    sink.fail_remaining = 6
    task_id = await api.create(**NO_BACKSTOPS)
    await eventually(lambda: sink.statuses(3, "TaskId", task_id) == [3])
    assert emu.callback_stats["failed"] == 1
    assert emu.callback_stats["attempts"] == 7


async def test_state_endpoint(emu_api: tuple[ZegocloudEmulator, Api]) -> None:
    emu, api = emu_api
    task_id = await api.ready_task()
    drive_id = await api.text(task_id, "hello")
    r = await api.http.get(emu.rest.base_url + "/_emulator/state")
    state = r.json()
    assert state["tasks"][task_id]["status"] == 3
    assert state["drives"][drive_id]["text"] == "hello"
    assert "sha256" in state["drives"][drive_id]
    assert state["calls"]["CreateDigitalHumanStreamTask"] == 1
