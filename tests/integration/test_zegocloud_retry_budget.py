"""One retry budget per ZEGOCLOUD operation, counted where the calls land: at the emulator.

Each public adapter operation states in its docstring the most vendor HTTP calls it can
make (idempotent Actions: 4, the ``ZegoApi`` backoff; creates and drives: 1). Here the
vendor fails every call of an Action with a retryable error, the operation runs through the
real gateway over gRPC, and the emulator's per-task (or per-Action) call counts must equal
that documented maximum: no second retry loop around the first (zegocloud.md §4, §10).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from adapters.zegocloud.adapter import ZegocloudAdapter
from adapters.zegocloud.api import MAX_ATTEMPTS
from adapters.zegocloud.channel import ZegoDriveChannel
from tests.conftest import Gateway, audio_format, error_info, tone

pytestmark = pytest.mark.integration

SYSTEM_BUSY = 400010002  # zegocloud.md §10: retryable
ALWAYS = 10_000
SETTLE_S = 0.5  # time for any call a stray second loop would still make


def documents(method: Callable[..., Any], bound: str) -> bool:
    """Whether ``method``'s docstring states ``bound`` (whitespace-insensitive)."""
    return bound in " ".join((method.__doc__ or "").split())


@pytest.mark.parametrize(
    "fault", [{"code": SYSTEM_BUSY}, {"http_status": 503}], ids=["busy", "http503"]
)
async def test_close_makes_at_most_four_stop_calls(gateway: Gateway, fault: dict[str, int]) -> None:
    """Stop fails retryably on every call: CloseSession still answers CLOSED (the vendor's
    backstops end the task), after exactly 4 StopDigitalHumanStreamTask calls for that task
    (before the gateway's own retry loop was removed it was up to 16)."""
    assert MAX_ATTEMPTS == 4
    assert documents(ZegocloudAdapter.close_session, "at most 4 StopDigitalHumanStreamTask")
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    stops_before = emulator.calls.get("StopDigitalHumanStreamTask", 0)
    emulator.faults.fail_next("StopDigitalHumanStreamTask", count=ALWAYS, **fault)
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)
    assert closed.state == pb.SESSION_STATE_CLOSED
    await asyncio.sleep(SETTLE_S)
    assert emulator.calls_for_task(s.vendor_session_id)["StopDigitalHumanStreamTask"] == 4
    assert emulator.calls["StopDigitalHumanStreamTask"] - stops_before == 4
    # A second CloseSession returns the closed session without calling the vendor again.
    again = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)
    assert again.state == pb.SESSION_STATE_CLOSED
    assert emulator.calls_for_task(s.vendor_session_id)["StopDigitalHumanStreamTask"] == 4
    emulator.faults.clear()


async def test_create_makes_one_create_call_and_at_most_four_queries(gateway: Gateway) -> None:
    """CreateDigitalHumanStreamTask is never retried (a lost answer may be a billed task);
    its failure is followed by at most 4 QueryDigitalHumanStreamTasks looking for the task."""
    assert documents(ZegocloudAdapter.create_session, "at most 1 CreateDigitalHumanStreamTask")
    assert documents(ZegocloudAdapter.create_session, "at most 4 QueryDigitalHumanStreamTasks")
    emulator = gateway.emulator("zegocloud")
    before = dict(emulator.calls)
    emulator.faults.fail_next("CreateDigitalHumanStreamTask", http_status=503, count=ALWAYS)
    emulator.faults.fail_next("QueryDigitalHumanStreamTasks", SYSTEM_BUSY, count=ALWAYS)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.create()
    assert error_info(err.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE")
    await asyncio.sleep(SETTLE_S)
    made = {k: v - before.get(k, 0) for k, v in emulator.calls.items() if v != before.get(k, 0)}
    assert made == {"CreateDigitalHumanStreamTask": 1, "QueryDigitalHumanStreamTasks": 4}
    assert not emulator.tasks
    emulator.faults.clear()


async def test_list_avatars_makes_at_most_four_calls(gateway: Gateway) -> None:
    assert documents(ZegocloudAdapter.list_avatars, "at most 4 GetDigitalHumanList")
    emulator = gateway.emulator("zegocloud")
    before = emulator.calls.get("GetDigitalHumanList", 0)
    emulator.faults.fail_next("GetDigitalHumanList", SYSTEM_BUSY, count=ALWAYS)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.ListAvatars(
            pb.ListAvatarsRequest(parent="vendors/zegocloud"), timeout=20
        )
    assert error_info(err.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE")
    await asyncio.sleep(SETTLE_S)
    assert emulator.calls["GetDigitalHumanList"] - before == 4
    emulator.faults.clear()


async def test_interrupt_makes_at_most_four_interrupt_calls(gateway: Gateway) -> None:
    """InterruptDriveTask fails on every call while one turn plays: the gateway warns and
    acknowledges itself, after exactly 4 InterruptDriveTask calls for the task."""
    assert documents(ZegoDriveChannel.interrupt, "at most 4 InterruptDriveTask")
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    emulator.faults.fail_next("InterruptDriveTask", SYSTEM_BUSY, count=ALWAYS)
    pcm = tone(1.0)
    speaking, interrupted = asyncio.Event(), asyncio.Event()

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name, audio_format=audio_format()))
        for i in range(0, len(pcm), 3200):
            yield pb.DriveRequest(audio=pcm[i : i + 3200])
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        await speaking.wait()
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await interrupted.wait()

    responses = []
    async for r in gateway.stub.Drive(requests(), timeout=30):
        responses.append(r)
        if r.HasField("speech_started"):
            speaking.set()
        if r.HasField("interrupted"):
            interrupted.set()
        if r.HasField("speech_ended"):
            break
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert not ack.vendor_acknowledged  # every vendor call failed: the gateway's own ack
    assert any(r.HasField("warning") for r in responses)
    await asyncio.sleep(SETTLE_S)
    assert emulator.calls_for_task(s.vendor_session_id)["InterruptDriveTask"] == 4
    # The turn's drive, and at most the next turn's, prepared once the task was idle again
    # (zegocloud.md §8.6): never a retried one.
    assert emulator.calls_for_task(s.vendor_session_id)["DriveByWsStream"] <= 2
    assert len(emulator.drives_for_task(s.vendor_session_id)) == 1
    emulator.faults.clear()


async def test_one_interrupt_call_stops_every_turn_the_vendor_holds(gateway: Gateway) -> None:
    """A barge-in while turn 1 plays and turn 2 is open: the gateway interrupts both turns,
    and InterruptDriveTask stops the whole task (zegocloud.md §4), so the vendor gets one
    call, not one per turn."""
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    pcm = tone(2.0)
    speaking, interrupted = asyncio.Event(), asyncio.Event()

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name, audio_format=audio_format()))
        for i in range(0, len(pcm), 3200):
            yield pb.DriveRequest(audio=pcm[i : i + 3200])
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        yield pb.DriveRequest(audio=pcm[:3200])  # turn 2 opens (held behind turn 1)
        await speaking.wait()
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await interrupted.wait()

    responses = []
    async for r in gateway.stub.Drive(requests(), timeout=30):
        responses.append(r)
        if r.HasField("speech_started"):
            speaking.set()
        if r.HasField("interrupted"):
            interrupted.set()
        if interrupted.is_set() and any(x.HasField("speech_ended") for x in responses):
            break
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert ack.turn_id == "2" and ack.vendor_acknowledged
    ended = next(r.speech_ended for r in responses if r.HasField("speech_ended"))
    assert (ended.turn_id, ended.interrupted) == ("1", True)
    assert emulator.calls_for_task(s.vendor_session_id)["InterruptDriveTask"] == 1
