"""ZEGOCLOUD drives prepared ahead (zegocloud.md §8.6), over real gRPC and the emulator's sockets.

While the task is idle the channel asks for the next audio turn's ``DriveByWsStream`` and opens
its socket; the turn then only sends ``Start``. Never more than one socket per task, never a
prepared drive pending while text is queued, and a prepared socket that broke is replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from adapters.zegocloud.channel import ZegoDriveChannel
from emulators.zegocloud import DRIVE_FAILED, ZegocloudEmulator
from tests.conftest import Gateway, collect, kinds, paced_requests, tone, until

pytestmark = pytest.mark.integration


def unstarted(emulator: ZegocloudEmulator, task_id: str) -> list[str]:
    """Ids of the task's drives asked for and neither started nor ended."""
    return [
        d.drive_id
        for d in emulator.drives_for_task(task_id, unstarted=True)
        if d.end_time is None and d.status != DRIVE_FAILED
    ]


async def test_each_audio_turn_starts_on_the_drive_prepared_while_idle(gateway: Gateway) -> None:
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    task = s.vendor_session_id
    # Once the session is ready: one drive asked for, its socket open, nothing started.
    await until("a prepared drive", lambda: len(unstarted(emulator, task)) == 1)
    await until("its socket", lambda: emulator.open_drive_sockets(task) == 1)
    (first,) = unstarted(emulator, task)
    assert emulator.drives_for_task(task) == []

    pcm = tone(1.0, 16000)
    responses = await collect(gateway.stub.Drive(paced_requests(s.name, pcm), timeout=30))
    assert kinds(responses)[0] == "started" and any(r.HasField("speech_ended") for r in responses)
    (drive,) = emulator.drives_for_task(task)
    assert drive.drive_id == first
    assert drive.sha256 == hashlib.sha256(pcm).hexdigest()
    assert drive.stopped and not drive.violations

    # The turn ended: the next one is prepared, on a new DriveId (the docs' one per drive).
    await until("the next prepared drive", lambda: len(unstarted(emulator, task)) == 1)
    (second,) = unstarted(emulator, task)
    assert second != first
    await until("its socket", lambda: emulator.open_drive_sockets(task) == 1)
    pcm2 = tone(0.5, 16000, freq=330)
    await collect(gateway.stub.Drive(paced_requests(s.name, pcm2), timeout=30))
    assert [d.drive_id for d in emulator.drives_for_task(task)] == [first, second]
    assert emulator.drives_for_task(task)[1].sha256 == hashlib.sha256(pcm2).hexdigest()
    # A turn's state is dropped once a later turn begins: nothing grows with the session.
    assert gateway.server.manager is not None
    channel = gateway.server.manager.runtimes[s.name.split("/")[1]].channel
    assert isinstance(channel, ZegoDriveChannel)
    assert list(channel._turns) == ["2"] and list(channel._drive_to_turn) == [second]

    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=10)
    await until("no socket left", lambda: emulator.open_drive_sockets(task) == 0)
    assert all(not d.violations for d in emulator.drives_for_task(task))
    assert emulator.tasks[task].max_parallel_sockets == 1


async def test_no_prepared_drive_is_pending_while_text_plays(gateway: Gateway) -> None:
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    task = s.vendor_session_id
    await until("a prepared drive", lambda: len(unstarted(emulator, task)) == 1)
    (prepared,) = unstarted(emulator, task)
    speaking = asyncio.Event()

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name))
        yield pb.DriveRequest(text=pb.TextInput(text="Hello there, how are you?", final=True))

    async def watch() -> list[pb.DriveResponse]:
        got = []
        async for r in gateway.stub.Drive(requests(), timeout=30):
            got.append(r)
            if r.HasField("speech_started"):
                speaking.set()
        return got

    call = asyncio.create_task(watch())
    await speaking.wait()
    # The prepared socket was closed when the text was sent: nothing but the text is pending.
    await until("the prepared drive closed", lambda: emulator.open_drive_sockets(task) == 0)
    assert (
        emulator.drives[prepared].status == DRIVE_FAILED
        and not emulator.drives[prepared].violations
    )
    assert [d.kind for d in emulator.drives_for_task(task)] == ["text"]
    responses = await call
    assert kinds(responses) == ["started", "speech_started", "speech_ended"]
    # Idle again: a new drive is prepared for the next audio turn.
    await until("a new prepared drive", lambda: len(unstarted(emulator, task)) == 1)
    assert unstarted(emulator, task) != [prepared]


async def test_a_prepared_socket_the_vendor_dropped_is_replaced(gateway: Gateway) -> None:
    emulator = gateway.emulator("zegocloud")
    s = await gateway.create()
    task = s.vendor_session_id
    await until("a prepared socket", lambda: emulator.open_drive_sockets(task) == 1)
    (dropped,) = unstarted(emulator, task)
    assert await emulator.drop_drive_sockets() == 1
    await until("the drop seen", lambda: emulator.open_drive_sockets(task) == 0)

    pcm = tone(1.0, 16000)
    responses = await collect(gateway.stub.Drive(paced_requests(s.name, pcm), timeout=30))
    assert not any(r.HasField("warning") for r in responses), responses
    assert any(r.HasField("speech_ended") for r in responses)
    (drive,) = emulator.drives_for_task(task)
    assert drive.drive_id != dropped
    assert drive.sha256 == hashlib.sha256(pcm).hexdigest() and not drive.violations
