"""ZEGO payloads parsed at the boundary: models, ZegoApi's typed methods, the callback route.

REST answers come from an in-process httpx transport (no sockets); the callback route runs
on a loopback aiohttp server. Shapes follow zegocloud.md §3, §4 and §6.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError

from adapters.zegocloud.adapter import CALLBACK_PATH, ZegocloudAdapter
from adapters.zegocloud.api import MAX_ATTEMPTS, ZegoApi
from adapters.zegocloud.models import (
    DigitalHumanPage,
    DriveStatusCallback,
    OtherCallback,
    TaskListData,
    TaskStatusCallback,
    TaskStatusData,
    parse_callback,
)
from adapters.zegocloud.settings import ZegocloudSettings
from core.errors import Reason, VendorError
from gateway.callbacks import MAX_CALLBACK_BYTES, CallbackRouter
from gateway.registry import MemoryRegistry

pytestmark = pytest.mark.unit

Handler = Callable[[str, dict[str, Any]], Any]


class FakeVendor:
    """Answers each Action with what ``handler(action, body)`` returns, as the envelope."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        action = request.url.params["Action"]
        self.calls.append(action)
        answer = self.handler(action, json.loads(request.content or b"{}"))
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)


def ok(data: Any = None) -> dict[str, Any]:
    envelope: dict[str, Any] = {"Code": 0, "Message": "success", "RequestId": "r"}
    if data is not None:
        envelope["Data"] = data
    return envelope


@pytest.fixture
async def api_with() -> AsyncIterator[Callable[[Handler], tuple[ZegoApi, FakeVendor]]]:
    apis: list[ZegoApi] = []

    def make(handler: Handler) -> tuple[ZegoApi, FakeVendor]:
        vendor = FakeVendor(handler)
        api = ZegoApi(1234, "secret", "http://zego.invalid/", None)
        api.http = httpx.AsyncClient(transport=httpx.MockTransport(vendor))
        apis.append(api)
        return api, vendor

    yield make
    for api in apis:
        await api.aclose()


# ---- models ---------------------------------------------------------------------------------


def test_models_read_wire_names_and_ignore_new_fields() -> None:
    status = TaskStatusData.model_validate(
        {"Status": 2, "FailReason": "no node", "RoomId": "r", "CreateTime": 17, "New": 1}
    )
    assert (status.status, status.fail_reason, status.room_id, status.create_time_s) == (
        2,
        "no node",
        "r",
        17,
    )
    page = DigitalHumanPage.model_validate(
        {
            "Total": 3,
            "DigitalHumans": [
                {"DigitalHumanId": "zego_emma", "Name": "Emma", "IsPublic": True, "Actions": None}
            ],
        }
    )
    assert page.total == 3 and page.digital_humans[0].is_public
    assert page.digital_humans[0].actions == []


def test_null_lists_read_as_empty_and_numeric_ids_as_text() -> None:
    assert TaskListData.model_validate({"TaskList": None}).tasks == []
    assert TaskListData.model_validate({}).tasks == []
    listed = TaskListData.model_validate({"TaskList": [{"TaskId": 42, "StreamId": "s"}]})
    assert listed.tasks[0].task_id == "42"


def test_required_fields_are_required() -> None:
    with pytest.raises(ValidationError):
        TaskStatusData.model_validate({})
    with pytest.raises(ValidationError):
        TaskListData.model_validate({"TaskList": [{"StreamId": "s"}]})
    with pytest.raises(ValidationError):
        DigitalHumanPage.model_validate({"DigitalHumans": [{"Name": "no id"}]})


def test_callbacks_are_typed_by_event_type() -> None:
    drive = parse_callback(
        json.dumps(
            {
                "AppId": 1,
                "EventType": 4,
                "Nonce": "n",
                "Timestamp": "1700000000",
                "Signature": "s",
                "EventTime": 1700000000123,
                "TaskId": "t",
                "Detail": {"DriveId": "d", "Status": 2, "Extra": True},
            }
        )
    )
    assert isinstance(drive, DriveStatusCallback)
    assert (drive.detail.drive_id, drive.detail.status, drive.event_time_ms) == (
        "d",
        2,
        1700000000123,
    )
    task = parse_callback(b'{"EventType": 3, "TaskId": "t", "Detail": {"Status": 5}}')
    assert isinstance(task, TaskStatusCallback) and task.detail.status == 5
    other = parse_callback(b'{"EventType": 9, "Detail": {"Anything": [1]}}')
    assert isinstance(other, OtherCallback) and other.event_type == 9
    for bad in (b"[]", b"not json", b'{"EventType": 4}', b'{"EventType": 4, "Detail": {}}'):
        with pytest.raises(ValidationError):
            parse_callback(bad)


# ---- ZegoApi: parse once, malformed is VENDOR_UNAVAILABLE -----------------------------------


async def test_typed_methods_return_models(api_with: Any) -> None:
    answers = {
        "CreateDigitalHumanStreamTask": ok({"TaskId": "task_1"}),
        "GetDigitalHumanStreamTaskStatus": ok({"Status": 3, "RoomId": "r", "StreamId": "s"}),
        "QueryDigitalHumanStreamTasks": ok({"TaskList": [{"TaskId": "task_1", "StreamId": "s"}]}),
        "StopDigitalHumanStreamTask": ok(),
        "InterruptDriveTask": ok(),
        "DriveByWsStream": ok({"DriveId": "d1", "WssAddress": "wss://127.0.0.1:1/ws?Token=x"}),
        "DriveByText": ok({"DriveId": "d2"}),
        "GetDigitalHumanList": ok({"Total": 0, "DigitalHumans": None}),
    }
    api, vendor = api_with(lambda action, body: answers[action])
    created = await api.create_stream_task(
        digital_human_id="zego_emma", room_id="r", stream_id="s", ttl_s=60, max_idle_time_s=90
    )
    assert created.task_id == "task_1"
    assert (await api.get_stream_task_status("task_1")).status == 3
    assert [t.task_id for t in (await api.query_stream_tasks()).tasks] == ["task_1"]
    assert await api.stop_stream_task("task_1") is None
    assert await api.interrupt_drive_task("task_1") is None
    ws = await api.drive_by_ws_stream("task_1")
    assert (ws.drive_id, ws.wss_address) == ("d1", "wss://127.0.0.1:1/ws?Token=x")
    assert (await api.drive_by_text("task_1", "Hi.", {"TimbreId": "t"})).drive_id == "d2"
    assert (await api.get_digital_human_list(offset=0, limit=20)).digital_humans == []
    assert len(vendor.calls) == len(answers)  # one HTTP call each when all goes well


async def test_request_bodies_keep_the_wire_shape(api_with: Any) -> None:
    seen: dict[str, Any] = {}

    def handler(action: str, body: dict[str, Any]) -> Any:
        seen[action] = body
        return ok({"TaskId": "t", "DriveId": "d"})

    api, _ = api_with(handler)
    await api.create_stream_task(
        digital_human_id="h",
        room_id="r",
        stream_id="s",
        ttl_s=70,
        max_idle_time_s=90,
        background_color="#ffffff",
    )
    await api.drive_by_text("t", "Hello.", {"TimbreId": "x", "Volume": 50})
    assert seen["CreateDigitalHumanStreamTask"] == {
        "DigitalHumanConfig": {"DigitalHumanId": "h", "BackgroundColor": "#ffffff"},
        "RTCConfig": {"RoomId": "r", "StreamId": "s"},
        "TTL": 70,
        "MaxIdleTime": 90,
    }
    assert seen["DriveByText"] == {
        "TaskId": "t",
        "Text": "Hello.",
        "InterruptMode": 0,
        "TTSConfig": {"TimbreId": "x", "Volume": 50},
    }


async def test_malformed_data_is_vendor_unavailable_and_not_retried_when_not_idempotent(
    api_with: Any,
) -> None:
    api, vendor = api_with(lambda action, body: ok({"NoTaskId": 1}))
    with pytest.raises(VendorError) as err:
        await api.create_stream_task(
            digital_human_id="h", room_id="r", stream_id="s", ttl_s=60, max_idle_time_s=90
        )
    assert err.value.reason == Reason.VENDOR_UNAVAILABLE and err.value.retryable
    assert "TaskId" in err.value.message
    assert vendor.calls == ["CreateDigitalHumanStreamTask"]


async def test_malformed_data_of_idempotent_calls_uses_the_one_retry_budget(
    api_with: Any,
) -> None:
    api, vendor = api_with(lambda action, body: ok({"Status": "streaming"}))
    with pytest.raises(VendorError) as err:
        await api.get_stream_task_status("t")
    assert err.value.reason == Reason.VENDOR_UNAVAILABLE
    assert vendor.calls == ["GetDigitalHumanStreamTaskStatus"] * MAX_ATTEMPTS


async def test_missing_or_odd_data_is_empty_for_actions_that_return_nothing(api_with: Any) -> None:
    answers = iter([ok(), ok([]), {"Code": 0, "Data": None}])
    api, vendor = api_with(lambda action, body: next(answers))
    for _ in range(3):
        await api.stop_stream_task("t")
    assert len(vendor.calls) == 3


async def test_business_error_keeps_its_mapping(api_with: Any) -> None:
    api, vendor = api_with(lambda action, body: {"Code": 400000005, "Message": "task not found"})
    with pytest.raises(VendorError) as err:
        await api.stop_stream_task("t")
    assert err.value.vendor_code == "400000005" and not err.value.retryable
    assert vendor.calls == ["StopDigitalHumanStreamTask"]


# ---- the callback route: signature first, then the typed body --------------------------------

CALLBACK_SECRET = "cb-secret"


class RecordingChannel:
    def __init__(self) -> None:
        self.drive_status: list[tuple[str, int, int]] = []
        self.stopped: list[str] = []

    def on_drive_status(self, drive_id: str, status: int, event_ms: int) -> None:
        self.drive_status.append((drive_id, status, event_ms))

    def on_task_stopped(self, detail: str) -> None:
        self.stopped.append(detail)

    async def aclose(self) -> None:
        pass


def signed(
    body: dict[str, Any], secret: str = CALLBACK_SECRET, ts: str = "", nonce: str = ""
) -> dict[str, Any]:
    """``body`` signed as ZEGO signs it, now (fresh) with a new nonce unless given."""
    ts = ts or str(int(time.time()))
    nonce = nonce or secrets.token_hex(8)
    joined = "".join(sorted([secret, ts, nonce]))
    signature = hashlib.sha1(joined.encode()).hexdigest()
    return {**body, "Timestamp": ts, "Nonce": nonce, "Signature": signature}


@pytest.fixture
async def callback_client() -> AsyncIterator[tuple[TestClient[Any, Any], RecordingChannel]]:
    settings = ZegocloudSettings(
        app_id=1234,
        server_secret=SecretStr("secret"),
        callback_secret=SecretStr(CALLBACK_SECRET),
    )
    adapter = ZegocloudAdapter(settings)
    channel = RecordingChannel()
    adapter._channels["task_1"] = channel  # type: ignore[assignment]
    router = CallbackRouter(
        MemoryRegistry(), "replica-1", [("zegocloud", r) for r in adapter.callback_routes()]
    )
    app = web.Application()
    app.router.add_route("*", "/callbacks/{vendor}", router.handle)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, channel
    finally:
        await client.close()
        await adapter.aclose()


async def test_callback_route(callback_client: Any) -> None:
    client, channel = callback_client
    drive = {"EventType": 4, "TaskId": "task_1", "EventTime": 5, "Detail": {"DriveId": "d"}}
    # Forged (no or wrong signature): 401 before any field is looked at.
    assert (await client.post(CALLBACK_PATH, json={"EventType": 4})).status == 401
    assert (await client.post(CALLBACK_PATH, json=signed(drive, "other"))).status == 401
    assert (await client.post(CALLBACK_PATH, json={**drive, "Signature": "é"})).status == 401
    # Not JSON, or not an object: 400.
    assert (await client.post(CALLBACK_PATH, data=b"{nope")).status == 400
    assert (await client.post(CALLBACK_PATH, json=[1])).status == 400
    # Signed but malformed (Detail.Status missing): 400, so ZEGO retries (zegocloud.md §6).
    assert (await client.post(CALLBACK_PATH, json=signed(drive))).status == 400
    drive["Detail"] = {"DriveId": "d", "Status": 2}
    once = signed(drive)
    assert (await client.post(CALLBACK_PATH, json=once)).status == 200
    assert channel.drive_status == [("d", 2, 5)]
    # The same body again (a vendor retry): acknowledged, applied once.
    assert (await client.post(CALLBACK_PATH, json=once)).status == 200
    assert channel.drive_status == [("d", 2, 5)]
    # Its signature (which does not cover the body, zegocloud.md §6) on another body: a
    # replay, refused. A signature older than the freshness window: refused.
    replayed = {**once, "Detail": {"DriveId": "d", "Status": 4}}
    assert (await client.post(CALLBACK_PATH, json=replayed)).status == 401
    stale = signed({**drive, "EventTime": 6}, ts=str(int(time.time()) - 3600))
    assert (await client.post(CALLBACK_PATH, json=stale)).status == 401
    assert channel.drive_status == [("d", 2, 5)]
    # Larger than any callback: refused unread.
    huge = b'{"x": "' + b"a" * MAX_CALLBACK_BYTES + b'"}'
    assert (await client.post(CALLBACK_PATH, data=huge)).status == 413
    stopped = {"EventType": 3, "TaskId": "task_1", "Detail": {"Status": 5, "FailReason": ""}}
    assert (await client.post(CALLBACK_PATH, json=signed(stopped))).status == 200
    assert channel.stopped == ["the vendor stopped the task"]
    # Unknown event types and unknown tasks are acknowledged and ignored.
    other = {"EventType": 7, "TaskId": "task_1", "Detail": {"X": 1}}
    assert (await client.post(CALLBACK_PATH, json=signed(other))).status == 200
    unknown_task = {**drive, "TaskId": "task_2"}
    assert (await client.post(CALLBACK_PATH, json=signed(unknown_task))).status == 200
    assert channel.drive_status == [("d", 2, 5)] and channel.stopped == [
        "the vendor stopped the task"
    ]
