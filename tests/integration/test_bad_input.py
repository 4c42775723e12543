"""Every bad input of the core issue: a canonical status + ErrorInfo, the server keeps serving,
and nothing already accepted is lost."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2

from emulators.zegocloud import ZegocloudEmulator
from gateway.server import GatewayServer
from tests.conftest import (
    Gateway,
    audio_format,
    drive_error,
    error_info,
    make_settings,
    still_serving,
    tone,
)

pytestmark = pytest.mark.integration
C = grpc.StatusCode


def cfg(
    session: str, fmt: media_pb2.AudioFormat | None = None, preempt: bool = False
) -> pb.DriveRequest:
    config = pb.DriveConfig(session=session, preempt=preempt)
    if fmt is not None:
        config.audio_format.CopyFrom(fmt)
    return pb.DriveRequest(config=config)


async def test_first_message_not_config(gateway: Gateway) -> None:
    code, reason, md, _ = await drive_error(gateway.stub, [pb.DriveRequest(audio=b"\0\0")])
    assert (code, reason, md) == (C.INVALID_ARGUMENT, "CONFIG_NOT_FIRST", {"received": "audio"})
    await still_serving(gateway)


async def test_second_config(gateway: Gateway) -> None:
    s = await gateway.create()
    code, reason, _, got = await drive_error(
        gateway.stub, [cfg(s.name, audio_format()), cfg(s.name, audio_format())]
    )
    assert (code, reason) == (C.INVALID_ARGUMENT, "CONFIG_ALREADY_SENT")
    assert got[0].HasField("started")
    await still_serving(gateway)


async def test_unknown_and_malformed_session(gateway: Gateway) -> None:
    code, reason, md, _ = await drive_error(gateway.stub, [cfg("sessions/nope", audio_format())])
    assert (code, reason, md) == (C.NOT_FOUND, "SESSION_NOT_FOUND", {"session": "sessions/nope"})
    code, reason, _, _ = await drive_error(gateway.stub, [cfg("nope", audio_format())])
    assert (code, reason) == (C.INVALID_ARGUMENT, "INVALID_SESSION_NAME")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.GetSession(pb.GetSessionRequest(name="sessions/nope"), timeout=5)
    assert error_info(err.value)[:2] == (C.NOT_FOUND, "SESSION_NOT_FOUND")
    await still_serving(gateway)


async def test_closed_session(gateway: Gateway) -> None:
    s = await gateway.create()
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=10)
    code, reason, md, _ = await drive_error(gateway.stub, [cfg(s.name, audio_format())])
    assert (code, reason) == (C.FAILED_PRECONDITION, "SESSION_CLOSED")
    assert md == {"session": s.name, "closeReason": "CLOSE_REASON_CLIENT"}
    await still_serving(gateway)


@pytest.mark.parametrize(
    "fmt",
    [
        audio_format(rate=7999),
        audio_format(rate=48001),
        audio_format(channels=0),
        audio_format(channels=3),
        media_pb2.AudioFormat(
            audio_encoding=media_pb2.AUDIO_ENCODING_UNSPECIFIED,
            sample_rate_hertz=16000,
            audio_channel_count=1,
        ),
    ],
)
async def test_unsupported_audio_format(gateway: Gateway, fmt: media_pb2.AudioFormat) -> None:
    s = await gateway.create()
    code, reason, md, _ = await drive_error(gateway.stub, [cfg(s.name, fmt)])
    assert (code, reason) == (C.INVALID_ARGUMENT, "UNSUPPORTED_AUDIO_FORMAT")
    assert md["sampleRateHertz"] == str(fmt.sample_rate_hertz)
    await still_serving(gateway)


async def test_chunk_too_large_keeps_what_was_accepted(gateway: Gateway) -> None:
    s = await gateway.create()
    pcm = tone(0.5)
    reqs = [cfg(s.name, audio_format())] + [
        pb.DriveRequest(audio=pcm[i : i + 1280]) for i in range(0, len(pcm), 1280)
    ]
    reqs.append(pb.DriveRequest(audio=b"\0" * 65538))
    code, reason, md, _ = await drive_error(gateway.stub, reqs)
    assert (code, reason) == (C.INVALID_ARGUMENT, "CHUNK_TOO_LARGE")
    assert md == {"chunkBytes": "65538", "maxChunkBytes": "65536"}
    # Nothing already accepted is lost: the half second before the bad chunk reached the vendor.
    drives = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert (
        len(drives) == 1
        and drives[0].sha256 == hashlib.sha256(pcm).hexdigest()
        and drives[0].stopped
    )
    await still_serving(gateway)


async def test_odd_chunks_are_carried_not_dropped(gateway: Gateway) -> None:
    s = await gateway.create()
    pcm = tone(0.6)
    sizes = [1, 639, 641, 3, 1001, 2, 999]
    chunks, i, n = [], 0, 0
    while i < len(pcm):
        chunks.append(pcm[i : i + sizes[n % len(sizes)]])
        i += sizes[n % len(sizes)]
        n += 1

    async def gen():  # type: ignore[no-untyped-def]
        yield cfg(s.name, audio_format())
        for c in chunks:
            yield pb.DriveRequest(audio=c)
        yield pb.DriveRequest(end_turn=pb.EndTurn())

    responses = [r async for r in gateway.stub.Drive(gen(), timeout=20)]
    assert any(r.HasField("speech_ended") for r in responses)
    (drive,) = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert drive.sha256 == hashlib.sha256(pcm).hexdigest() and not drive.violations


async def test_second_drive_rejected_and_preempt(gateway: Gateway) -> None:
    s = await gateway.create()
    hold = asyncio.Event()

    async def first_gen():  # type: ignore[no-untyped-def]
        yield cfg(s.name, audio_format())
        await hold.wait()

    first = gateway.stub.Drive(first_gen(), timeout=20)
    assert (await first.read()).HasField("started")
    code, reason, md, _ = await drive_error(gateway.stub, [cfg(s.name, audio_format())])
    assert gateway.server.manager is not None
    assert (code, reason, md) == (
        C.FAILED_PRECONDITION,
        "DRIVE_ALREADY_ACTIVE",
        {"session": s.name, "ownerReplica": gateway.server.manager.owner},
    )

    async def second_gen():  # type: ignore[no-untyped-def]
        yield cfg(s.name, audio_format(), preempt=True)
        await asyncio.sleep(0.5)

    second = [r async for r in gateway.stub.Drive(second_gen(), timeout=20)]
    assert second[0].HasField("started")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while True:
            r = await first.read()
            if r is grpc.aio.EOF:
                break
    assert error_info(err.value)[:2] == (C.ABORTED, "DRIVE_PREEMPTED")
    hold.set()
    await still_serving(gateway)


async def test_unknown_vendor_and_avatar(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.create(vendor="nope")
    assert error_info(err.value) == (C.INVALID_ARGUMENT, "UNKNOWN_VENDOR", {"vendor": "nope"})
    assert "zegocloud" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.create(avatar_id="no_such_avatar")
    code, reason, md = error_info(err.value)
    assert (code, reason, md["vendor"], md["vendorCode"]) == (
        C.NOT_FOUND,
        "AVATAR_NOT_FOUND",
        "zegocloud",
        "400000003",
    )
    # The caller got an error, not a session: no session is left behind (the proto's
    # CreateSession contract), in any state.
    listed = await gateway.stub.ListSessions(pb.ListSessionsRequest(), timeout=5)
    assert list(listed.sessions) == []
    await still_serving(gateway)


async def test_text_rules(gateway: Gateway) -> None:
    s = await gateway.create()
    reqs = [
        cfg(s.name),
        pb.DriveRequest(text=pb.TextInput(text="", final=False)),  # ignored
        pb.DriveRequest(text=pb.TextInput(text="x" * 16385, final=True)),
    ]
    code, reason, md, _ = await drive_error(gateway.stub, reqs)
    assert (code, reason, md) == (
        C.INVALID_ARGUMENT,
        "TEXT_TOO_LONG",
        {"textLength": "16385", "maxTextLength": "16384"},
    )
    code, reason, _, _ = await drive_error(
        gateway.stub, [cfg(s.name), pb.DriveRequest(audio=b"\0\0")]
    )
    assert (code, reason) == (C.INVALID_ARGUMENT, "UNSUPPORTED_AUDIO_FORMAT")
    await still_serving(gateway)


async def test_vendor_rejects_credentials_and_vendor_unreachable() -> None:
    emulator = ZegocloudEmulator(app_id=42, server_secret="right-secret")
    await emulator.start()
    try:
        for api_url, want in [
            (emulator.rest.base_url + "/", (C.INTERNAL, "VENDOR_AUTH_FAILED")),
            ("http://127.0.0.1:9/", (C.UNAVAILABLE, "VENDOR_UNAVAILABLE")),
        ]:
            settings = make_settings(
                sandbox=False,
                vendors={
                    "zegocloud": {"app_id": 42, "server_secret": "wrong-secret", "api_url": api_url}
                },
            )
            server = GatewayServer(settings)
            await server.start()
            try:
                gw = Gateway(server, grpc.aio.insecure_channel(server.grpc_target), None)  # type: ignore[arg-type]
                from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc

                gw.stub = pb_grpc.AvatarGatewayStub(gw.channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await gw.create()
                code, reason, md = error_info(err.value)
                assert (code, reason) == want
                if reason == "VENDOR_AUTH_FAILED":
                    assert md["setting"] == "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"
                    assert "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET" in (err.value.details() or "")
                    assert "wrong-secret" not in (err.value.details() or "")
                await gw.channel.close()
            finally:
                await server.stop(grace_s=0.5)
    finally:
        await emulator.stop()
