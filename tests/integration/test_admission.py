"""Admission control over real gRPC on loopback (gateway/admission.py, architecture.md §8).

Past a capacity bound new CreateSession and Drive calls are refused at once with
RESOURCE_EXHAUSTED GATEWAY_OVERLOADED (ErrorInfo + RetryInfo), readiness turns NOT_SERVING
(/healthz 503, gRPC health) and comes back when the overload ends, /livez stays 200, and a
stream already open delivers every byte. The signals are the real ones: open Drive streams,
and the event-loop lag, provoked by blocking the loop the in-process gateway runs on.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Gateway, audio_format, error_info, paced_requests, tone, until

pytestmark = pytest.mark.integration

ECHO = {"plugins": "tests.plugins.echo", "sandbox_vendors": "echo"}


def retry_delay_s(err: grpc.aio.AioRpcError) -> float:
    """The ``google.rpc.RetryInfo`` delay of a failed call (s); fails without one."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    raise AssertionError("no RetryInfo")


def block_event_loop(seconds: float) -> None:
    """Hold the event loop the in-process gateway runs on (as a burst of CPU work would)."""
    time.sleep(seconds)


async def grpc_health(gw: Gateway) -> int:
    reply = await health_pb2_grpc.HealthStub(gw.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def refused_create(gw: Gateway, **kw: str) -> tuple[dict[str, str], float, float]:
    """A CreateSession that must be refused as overloaded: (metadata, retry delay, seconds)."""
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gw.create(**kw)
    took = time.monotonic() - start
    code, reason, metadata = error_info(refused.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "GATEWAY_OVERLOADED")
    return metadata, retry_delay_s(refused.value), took


@pytest.mark.parametrize("gateway", [{"max_active_drives": 1}], indirect=True)
async def test_past_max_active_drives_new_calls_are_refused_and_the_open_stream_goes_on(
    gateway: Gateway,
) -> None:
    first = await gateway.create(request_id="admission-first")
    second = await gateway.create()
    pcm = tone(1.2)
    release = asyncio.Event()
    responses: list[pb.DriveResponse] = []

    async def drive_first() -> None:
        call = gateway.stub.Drive(paced_requests(first.name, pcm, hold=release), timeout=60)
        async for response in call:
            responses.append(response)

    task = asyncio.create_task(drive_first())
    async with httpx.AsyncClient(base_url=gateway.server.ops_url, timeout=10) as http:

        async def overloaded() -> bool:
            return (await http.get("/healthz")).status_code == 503

        await until("readiness 503 with one open Drive stream", overloaded)
        healthz = (await http.get("/healthz")).json()
        assert healthz == {"status": "overloaded", "signal": "active_drives", "value": "1"} | {
            "bound": "1"
        }
        assert (await http.get("/livez")).status_code == 200

        async def not_serving() -> bool:
            return await grpc_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING

        await until("gRPC health NOT_SERVING", not_serving)

        # A new Drive: refused before it reads or opens anything, with RetryInfo.
        start = time.monotonic()
        config = pb.DriveRequest(
            config=pb.DriveConfig(session=second.name, audio_format=audio_format())
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in gateway.stub.Drive(iter([config]), timeout=20):
                pass
        drive_took = time.monotonic() - start
        code, reason, metadata = error_info(refused.value)
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "GATEWAY_OVERLOADED")
        assert metadata == {"signal": "active_drives", "value": "1", "bound": "1"}
        assert retry_delay_s(refused.value) == 1.0
        # A new CreateSession: refused likewise, before any vendor call.
        tasks_before = len(gateway.emulator("zegocloud").open_tasks())
        metadata, delay, create_took = await refused_create(gateway)
        assert metadata == {"signal": "active_drives", "value": "1", "bound": "1"}
        assert delay == 1.0
        assert len(gateway.emulator("zegocloud").open_tasks()) == tasks_before
        # "At once": no vendor work, no waiting (loose: the machine may be busy).
        assert drive_took < 5 and create_took < 5
        # A retry of a CreateSession that made its session still gets it.
        again = await gateway.create(request_id="admission-first")
        assert again.name == first.name
        exported = (await http.get("/metrics")).text
        assert re.search(r"^avatar_gateway_overloaded 1\.0$", exported, re.M)
        for method in ("Drive", "CreateSession"):
            line = (
                f'avatar_gateway_admission_refused_total{{method="{method}",'
                f'signal="active_drives"}} '
            )
            assert line in exported

        # The stream admitted first is untouched: every byte reaches the vendor.
        release.set()
        await asyncio.wait_for(task, 60)
        ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
        assert [e.turn_id for e in ended] == ["1"] and not ended[0].interrupted
        (drive,) = gateway.emulator("zegocloud").drives_for_task(first.vendor_session_id)
        assert drive.sha256 == hashlib.sha256(pcm).hexdigest()

        # The stream ended: ready again, and new calls are admitted.
        async def ready() -> bool:
            return (await http.get("/healthz")).status_code == 200

        await until("readiness 200 after the stream ended", ready)

        async def serving() -> bool:
            return await grpc_health(gateway) == health_pb2.HealthCheckResponse.SERVING

        await until("gRPC health SERVING", serving)
        assert (await gateway.create()).state == pb.SESSION_STATE_READY
        assert re.search(
            r"^avatar_gateway_overloaded 0\.0$", (await http.get("/metrics")).text, re.M
        )


LAG = {"overload_event_loop_lag_ms": 50.0, "overload_hold_s": 3.0}


@pytest.mark.parametrize("gateway", [LAG], indirect=True)
async def test_event_loop_lag_overloads_the_replica_until_it_has_been_calm(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.server.ops_url, timeout=10) as http:

        async def overloaded() -> bool:
            # Its monitor wakes late (the real signal), two samples in a row.
            block_event_loop(0.3)
            await asyncio.sleep(0.01)
            return (await http.get("/healthz")).status_code == 503

        await until("readiness 503 from event-loop lag", overloaded)
        healthz = (await http.get("/healthz")).json()
        assert healthz["status"] == "overloaded" and healthz["signal"] == "event_loop_lag_ms"
        assert float(healthz["value"]) >= 50 and healthz["bound"] == "50"
        metadata, delay, _ = await refused_create(gateway)
        assert metadata["signal"] == "event_loop_lag_ms" and metadata["bound"] == "50"
        assert float(metadata["value"]) >= 50
        assert delay == 1.0
        assert (await http.get("/livez")).status_code == 200

        async def ready() -> bool:
            return (await http.get("/healthz")).status_code == 200

        # Back once the loop has been calm for the hold time (no test blocks it now).
        await until("readiness 200 after the hold", ready)

        async def serving() -> bool:
            return await grpc_health(gateway) == health_pb2.HealthCheckResponse.SERVING

        await until("gRPC health SERVING", serving)
        assert (await gateway.create()).state == pb.SESSION_STATE_READY


async def late_turn_warning(gateway: Gateway, block_loop: bool) -> pb.Warning:
    """One audio turn the echo vendor never ends; optionally block the loop meanwhile."""
    session = await gateway.create("echo", avatar_id="parrot")
    gateway.emulator("echo").hold_speech_end = True
    pcm = tone(0.3)

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(
            config=pb.DriveConfig(session=session.name, audio_format=audio_format())
        )
        for i in range(0, len(pcm), 3200):
            yield pb.DriveRequest(audio=pcm[i : i + 3200])
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        if block_loop:
            for _ in range(2):  # the gateway's own loop falls behind during the turn
                block_event_loop(0.3)
                await asyncio.sleep(0.01)

    responses = [r async for r in gateway.stub.Drive(requests(), timeout=30)]
    warnings = [r.warning for r in responses if r.HasField("warning")]
    assert [w.reason for w in warnings] == ["SPEECH_END_TIMEOUT"]
    assert warnings[0].turn_id == "1"
    return warnings[0]


@pytest.mark.parametrize("gateway", [ECHO], indirect=True)
async def test_a_late_end_of_speech_blames_the_vendor_when_the_gateway_was_calm(
    gateway: Gateway,
) -> None:
    warning = await late_turn_warning(gateway, block_loop=False)
    assert warning.message == "the vendor did not report the end of speech in time"
    assert dict(warning.metadata) == {"cause": "vendor"}


@pytest.mark.parametrize("gateway", [ECHO | LAG], indirect=True)
async def test_a_late_end_of_speech_says_the_gateway_was_overloaded(gateway: Gateway) -> None:
    warning = await late_turn_warning(gateway, block_loop=True)
    assert "this gateway replica was overloaded" in warning.message
    assert "event-loop lag" in warning.message and "not because of the vendor" in warning.message
    assert warning.metadata["cause"] == "gateway"
    assert warning.metadata["signal"] == "event_loop_lag_ms"
    assert float(warning.metadata["value"]) >= 25  # at least half the 50 ms bound


@pytest.mark.parametrize("gateway", [{"max_active_drives": 1}], indirect=True)
async def test_at_capacity_a_drive_replacing_its_sessions_own_stream_is_admitted(
    gateway: Gateway,
) -> None:
    """preempt on a session driven here adds no load: a reconnecting client gets its session."""
    session = await gateway.create()
    release, written = asyncio.Event(), asyncio.Event()

    async def old_requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(
            config=pb.DriveConfig(session=session.name, audio_format=audio_format())
        )
        yield pb.DriveRequest(audio=tone(0.4))
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        # Every write done: grpc-python reports a call the server ends while the client is
        # still writing as a local INTERNAL, not the server's status.
        written.set()
        await release.wait()

    old = gateway.stub.Drive(old_requests(), timeout=60)
    assert (await old.read()).HasField("started")
    await written.wait()
    assert gateway.server.manager is not None
    assert gateway.server.manager.admission.overload is not None
    config = pb.DriveConfig(session=session.name, audio_format=audio_format(), preempt=True)
    requests = [
        pb.DriveRequest(config=config),
        pb.DriveRequest(audio=tone(0.2)),
        pb.DriveRequest(end_turn=pb.EndTurn()),
    ]
    responses = [r async for r in gateway.stub.Drive(iter(requests), timeout=60)]
    assert responses[0].HasField("started")
    assert [r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")]
    with pytest.raises(grpc.aio.AioRpcError) as preempted:
        while await old.read() is not grpc.aio.EOF:
            pass
    assert error_info(preempted.value)[:2] == (grpc.StatusCode.ABORTED, "DRIVE_PREEMPTED")
    release.set()
