"""What shared code reports through core.telemetry: vendor HTTP requests (bounded endpoints,
outcomes of failures), vendor error codes, reconnects and keepalive failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import httpx
import pytest

from core import telemetry as core_telemetry
from core.contract import DriveChannel
from core.errors import Reason, VendorCodeRule, VendorError, vendor_error
from core.resilience import Backoff, keepalive_loop, reconnect
from core.telemetry import MAX_ENDPOINTS, OTHER, Telemetry, vendor_http_client

pytestmark = pytest.mark.unit


class Recorder(Telemetry):
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, float]] = []
        self.errors: list[tuple[str, str]] = []
        self.reconnects: list[tuple[str, str]] = []
        self.keepalives: list[tuple[str, str]] = []

    def vendor_request(self, vendor: str, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.append((vendor, endpoint, outcome, seconds))

    def vendor_error(self, vendor: str, reason: str) -> None:
        self.errors.append((vendor, reason))

    def reconnect(self, vendor: str, outcome: str) -> None:
        self.reconnects.append((vendor, outcome))

    def keepalive_failed(self, vendor: str, reason: str) -> None:
        self.keepalives.append((vendor, reason))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    before = core_telemetry.telemetry()
    recorder = Recorder()
    core_telemetry.install(recorder)
    try:
        yield recorder
    finally:
        core_telemetry.install(before)


def _path(request: httpx.Request) -> str:
    return request.url.path.strip("/")


async def test_each_request_is_reported_with_its_endpoint_and_status(recorder: Recorder) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if request.url.path == "/down" else 200, json={})

    async with vendor_http_client("v", _path, transport=httpx.MockTransport(answer)) as http:
        await http.post("http://vendor/create", json={})
        await http.get("http://vendor/down")
        await http.request("GET", "http://vendor/create?id=123")
    assert [r[:3] for r in recorder.requests] == [
        ("v", "create", "200"),
        ("v", "down", "503"),
        ("v", "create", "200"),
    ]
    assert all(0 <= r[3] < 5 for r in recorder.requests)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "connect_error"),
        (httpx.RemoteProtocolError("reset"), "transport_error"),
    ],
)
async def test_a_request_without_an_answer_is_reported_by_its_failure(
    recorder: Recorder, error: Exception, outcome: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with vendor_http_client("v", _path, transport=httpx.MockTransport(fail)) as http:
        with pytest.raises(type(error)):
            await http.get("http://vendor/op")
    assert [r[:3] for r in recorder.requests] == [("v", "op", outcome)]


async def test_a_cancelled_request_is_reported_cancelled(recorder: Recorder) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    async with vendor_http_client("v", _path, transport=httpx.MockTransport(hang)) as http:
        task = asyncio.create_task(http.get("http://vendor/op"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [r[:3] for r in recorder.requests] == [("v", "op", "cancelled")]


async def test_endpoint_labels_are_bounded(recorder: Recorder) -> None:
    """An endpoint function that leaks ids cannot grow the labels without bound."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    def broken(request: httpx.Request) -> str:
        if request.url.path == "/raise":
            raise ValueError("no endpoint")
        return request.url.path

    async with vendor_http_client("v", broken, transport=httpx.MockTransport(answer)) as http:
        for n in range(MAX_ENDPOINTS + 10):
            await http.get(f"http://vendor/item-{n}")
        await http.get("http://vendor/item-0")
        await http.get("http://vendor/raise")
        await http.get("http://vendor/")
    labels = [r[1] for r in recorder.requests]
    assert len(set(labels) - {OTHER}) == MAX_ENDPOINTS
    # Known ones keep their label; new ones past the bound, a failing function: _OTHER.
    assert labels[MAX_ENDPOINTS:] == [OTHER] * 10 + ["/item-0", OTHER, OTHER]


async def test_vendor_error_codes_are_reported_by_reason(recorder: Recorder) -> None:
    table = {7: VendorCodeRule(grpc.StatusCode.NOT_FOUND, Reason.AVATAR_NOT_FOUND, False, "x")}
    vendor_error("v", table, 7, "no such avatar")
    vendor_error("v", table, 99, "undocumented")
    assert recorder.errors == [("v", Reason.AVATAR_NOT_FOUND), ("v", Reason.VENDOR_INTERNAL)]


async def test_a_reconnect_is_reported_once_whether_it_succeeds_or_fails(
    recorder: Recorder,
) -> None:
    attempts = iter([OSError("refused"), "socket"])

    async def connect() -> str:
        step = next(attempts)
        if isinstance(step, Exception):
            raise step
        return step

    fast = Backoff(base_s=0.001, cap_s=0.001, max_attempts=3)
    assert await reconnect(connect, vendor="v", still_wanted=lambda: True, backoff=fast) == "socket"
    assert recorder.reconnects == [("v", "succeeded")]

    async def refused() -> str:
        raise OSError("refused")

    with pytest.raises(VendorError):
        await reconnect(refused, vendor="v", still_wanted=lambda: True, backoff=fast)
    assert recorder.reconnects == [("v", "succeeded"), ("v", "failed")]


class _Channel(DriveChannel):
    def __init__(self) -> None:
        super().__init__()
        self.beats = 0

    async def keepalive(self) -> None:
        self.beats += 1
        if self.beats == 1:
            raise VendorError(
                grpc.StatusCode.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, "down", vendor="v"
            )
        self.closed = True

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None: ...
    async def end_audio(self, turn_id: str) -> None: ...
    async def send_text(self, turn_id: str, text: str, final: bool) -> None: ...
    async def interrupt(self, turn_id: str) -> None: ...
    async def aclose(self) -> None: ...


async def test_a_failed_keepalive_is_reported(recorder: Recorder) -> None:
    channel = _Channel()
    await asyncio.wait_for(keepalive_loop(channel, 0.01, "v"), 5)
    assert channel.beats == 2
    assert recorder.keepalives == [("v", Reason.VENDOR_UNAVAILABLE)]
