"""The core issue's bad inputs on Tencent and Akool sessions (ZEGOCLOUD: test_bad_input.py).

Same contract on every vendor: a canonical status with ErrorInfo, the server keeps serving,
and audio accepted before a fatal error reaches the vendor intact.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2

from tests.conftest import Gateway, audio_format, drive_error, error_info, tone

AVATARS = {"tencent": "sandbox-project", "akool": "dvp_Tristan_cloth2_1080P"}
C = grpc.StatusCode

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize(
        "gateway",
        [{"sandbox_vendors": "tencent"}, {"sandbox_vendors": "akool"}],
        indirect=True,
        ids=["tencent", "akool"],
    ),
]


def vendor_of(gw: Gateway) -> str:
    return gw.server.settings.sandbox_vendors


async def create(gw: Gateway, **kw: Any) -> pb.Session:
    vendor = vendor_of(gw)
    return await gw.create(vendor, kw.pop("avatar_id", AVATARS[vendor]), **kw)


async def received_audio_sha(gw: Gateway, session: pb.Session) -> list[str]:
    """SHA-256 of the audio the vendor emulator received, per turn, in order."""
    vendor, emulator = vendor_of(gw), gw.emulator(vendor_of(gw))
    for _ in range(50):  # the last packets may still be in flight to the emulator
        if vendor == "tencent":
            shas = [d.sha256 for d in emulator.drives_of(session.vendor_session_id, "audio")]
        else:
            turns = emulator.sessions[session.vendor_session_id].audio_turns
            shas = [t.sha256 for t in turns if t.complete]
        if shas:
            return shas
        await asyncio.sleep(0.1)
    return []


def cfg(
    session: str, fmt: media_pb2.AudioFormat | None = None, preempt: bool = False
) -> pb.DriveRequest:
    config = pb.DriveConfig(session=session, preempt=preempt)
    if fmt is not None:
        config.audio_format.CopyFrom(fmt)
    return pb.DriveRequest(config=config)


async def serving(gw: Gateway) -> None:
    s = await create(gw)
    assert s.state == pb.SESSION_STATE_READY


async def test_config_rules_and_unknown_session(gateway: Gateway) -> None:
    code, reason, _, _ = await drive_error(gateway.stub, [pb.DriveRequest(audio=b"\0\0")])
    assert (code, reason) == (C.INVALID_ARGUMENT, "CONFIG_NOT_FIRST")
    s = await create(gateway)
    code, reason, _, _ = await drive_error(gateway.stub, [cfg(s.name, audio_format()), cfg(s.name)])
    assert (code, reason) == (C.INVALID_ARGUMENT, "CONFIG_ALREADY_SENT")
    code, reason, _, _ = await drive_error(gateway.stub, [cfg("sessions/unknown", audio_format())])
    assert (code, reason) == (C.NOT_FOUND, "SESSION_NOT_FOUND")
    await serving(gateway)


@pytest.mark.parametrize(
    "fmt",
    [
        audio_format(rate=7999),
        audio_format(rate=48001),
        audio_format(channels=0),
        audio_format(channels=3),
    ],
    ids=["7999Hz", "48001Hz", "0ch", "3ch"],
)
async def test_unsupported_audio_format(gateway: Gateway, fmt: media_pb2.AudioFormat) -> None:
    s = await create(gateway)
    code, reason, md, _ = await drive_error(gateway.stub, [cfg(s.name, fmt)])
    assert (code, reason, md["audioChannelCount"]) == (
        C.INVALID_ARGUMENT,
        "UNSUPPORTED_AUDIO_FORMAT",
        str(fmt.audio_channel_count),
    )
    await serving(gateway)


async def test_closed_session(gateway: Gateway) -> None:
    s = await create(gateway)
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20)
    assert closed.state == pb.SESSION_STATE_CLOSED
    code, reason, _, _ = await drive_error(gateway.stub, [cfg(s.name, audio_format())])
    assert (code, reason) == (C.FAILED_PRECONDITION, "SESSION_CLOSED")
    assert (
        await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=20) == closed
    )
    await serving(gateway)


async def test_chunk_too_large_keeps_accepted_audio_and_odd_bytes(gateway: Gateway) -> None:
    s = await create(gateway)
    pcm = tone(0.6)
    sizes = [1, 639, 641, 3, 1001, 2, 999]
    reqs, i, n = [cfg(s.name, audio_format())], 0, 0
    while i < len(pcm):  # odd-sized chunks: the odd byte is carried, never dropped
        reqs.append(pb.DriveRequest(audio=pcm[i : i + sizes[n % len(sizes)]]))
        i += sizes[n % len(sizes)]
        n += 1
    reqs.append(pb.DriveRequest(audio=b"\0" * 65538))
    code, reason, _, _ = await drive_error(gateway.stub, reqs)
    assert (code, reason) == (C.INVALID_ARGUMENT, "CHUNK_TOO_LARGE")
    assert await received_audio_sha(gateway, s) == [hashlib.sha256(pcm).hexdigest()]
    await serving(gateway)


async def test_second_drive_rejected_then_preempted(gateway: Gateway) -> None:
    s = await create(gateway)
    hold = asyncio.Event()

    async def first_gen():  # type: ignore[no-untyped-def]
        yield cfg(s.name, audio_format())
        await hold.wait()

    first = gateway.stub.Drive(first_gen(), timeout=30)
    assert (await first.read()).HasField("started")
    code, reason, _, _ = await drive_error(gateway.stub, [cfg(s.name, audio_format())])
    assert (code, reason) == (C.FAILED_PRECONDITION, "DRIVE_ALREADY_ACTIVE")

    async def second_gen():  # type: ignore[no-untyped-def]
        yield cfg(s.name, audio_format(), preempt=True)
        await asyncio.sleep(0.3)

    second = [r async for r in gateway.stub.Drive(second_gen(), timeout=30)]
    assert second[0].HasField("started")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while (await first.read()) is not grpc.aio.EOF:
            pass
    assert error_info(err.value)[:2] == (C.ABORTED, "DRIVE_PREEMPTED")
    hold.set()
    await serving(gateway)


async def test_unknown_avatar_and_text_limits(gateway: Gateway) -> None:
    vendor = vendor_of(gateway)
    if vendor == "tencent":
        gateway.emulator("tencent").known_projects = {AVATARS["tencent"]}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(gateway, avatar_id="no-such-avatar")
    code, reason, md = error_info(err.value)
    assert (code, reason, md["vendor"]) == (C.NOT_FOUND, "AVATAR_NOT_FOUND", vendor)
    s = await create(gateway)
    text = pb.DriveRequest(text=pb.TextInput(text="x" * 16385, final=True))
    code, reason, _, _ = await drive_error(gateway.stub, [cfg(s.name), text])
    assert (code, reason) == (C.INVALID_ARGUMENT, "TEXT_TOO_LONG")
    await serving(gateway)
