"""Full gRPC flow against a sandboxed gateway whose Akool vendor is the Akool emulator.

The sandbox runs a real ``livekit-server`` on loopback (built by tools/build_livekit.sh when
missing); the gateway's Akool drive channel and the emulator's avatar meet in its rooms.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from livekit import api as lkapi

from emulators.akool import AkoolEmulator
from emulators.livekit_server import LiveKitServer
from tests.conftest import Gateway, audio_format, collect, error_info, kinds, paced_requests, tone

# The first run on a fresh machine builds livekit-server (about 2 min) inside a fixture.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900 if not LiveKitServer.is_built() else 60),
    pytest.mark.parametrize("gateway", [{"sandbox_vendors": "akool"}], indirect=True),
]

AVATAR = "dvp_Tristan_cloth2_1080P"


@pytest.fixture(scope="module", autouse=True)
def livekit_built() -> Iterator[None]:
    # The sandbox starts its own LiveKit server; it must be built first.
    LiveKitServer.ensure_built()
    yield


def akool(gateway: Gateway) -> AkoolEmulator:
    emulator = gateway.emulator("akool")
    assert isinstance(emulator, AkoolEmulator)
    return emulator


async def test_audio_turn_reaches_the_avatar_intact(gateway: Gateway) -> None:
    session = await gateway.create("akool", AVATAR)
    assert session.state == pb.SESSION_STATE_READY
    assert session.playback.akool.room_name and session.playback.akool.viewer_token
    pcm = tone(1.0)
    responses = await collect(
        gateway.stub.Drive(paced_requests(session.name, pcm, realtime=False), timeout=30)
    )
    assert kinds(responses)[0] == "started"
    assert responses[0].started.vendor_audio_format.sample_rate_hertz == 16000
    started = [r.speech_started.turn_id for r in responses if r.HasField("speech_started")]
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert started == ["1"] and [e.turn_id for e in ended] == ["1"]
    assert not ended[0].interrupted
    assert ended[0].played_duration.ToMilliseconds() == pytest.approx(1000, abs=25)
    record = akool(gateway).sessions[session.vendor_session_id]
    (turn,) = record.audio_turns
    assert turn.sha256 == hashlib.sha256(pcm).hexdigest() and turn.complete
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))
    assert closed.state == pb.SESSION_STATE_CLOSED
    assert akool(gateway).open_sessions() == []


async def test_text_turns_speak_with_transcripts(gateway: Gateway) -> None:
    session = await gateway.create("akool", AVATAR)
    deltas = ["Hi there. ", "Nice ", "to meet you."]

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session.name))
        for delta in deltas:
            yield pb.DriveRequest(text=pb.TextInput(text=delta))
        yield pb.DriveRequest(text=pb.TextInput(final=True))

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    got = kinds(responses)
    record = akool(gateway).sessions[session.vendor_session_id]
    # On failure, say what the gateway warned and what the avatar received and could not send.
    evidence = (
        [(r.warning.reason, r.warning.message) for r in responses if r.HasField("warning")],
        record.messages,
        record.send_failures,
    )
    assert got[:2] == ["started", "speech_started"] and got[-1] == "speech_ended", evidence
    assert "transcript" in got
    assert record.send_failures == []
    transcript = "".join(r.transcript.text for r in responses if r.HasField("transcript"))
    (turn,) = record.text_turns
    # One mid, the streamed pieces as idx 0.. and an empty fin part (akool.md §5).
    assert turn.parts == len(deltas) + 1 and turn.fin
    # Streamed deltas reach the vendor exactly as written, spaces included.
    assert turn.text == "".join(deltas)
    assert transcript == turn.text
    assert record.violations == []
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))


async def test_text_reaches_an_avatar_that_listens_late(gateway: Gateway) -> None:
    # The avatar is in the room but loses what it is sent for its first second (its data
    # path is not up yet). The channel must not send the turn into that void: it waits for
    # the set-params ack, sending set-params again, before it reports the channel open.
    emulator = akool(gateway)
    emulator.faults.stall_next("avatar:listen", 1.0)
    session = await gateway.create("akool", AVATAR)

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session.name))
        yield pb.DriveRequest(text=pb.TextInput(text="Are you there?", final=True))

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    record = emulator.sessions[session.vendor_session_id]
    evidence = (
        [(r.warning.reason, r.warning.message) for r in responses if r.HasField("warning")],
        record.unheard,
        record.messages,
    )
    assert record.unheard, "the fault did not apply: the test proves nothing"
    assert kinds(responses)[:2] == ["started", "speech_started"], evidence
    assert kinds(responses)[-1] == "speech_ended" and "warning" not in kinds(responses), evidence
    (turn,) = record.text_turns
    assert turn.text == "Are you there?" and turn.fin
    assert [c["cmd"] for c in record.commands] == ["set-params"]
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))


async def test_interrupt_is_acknowledged_by_the_avatar(gateway: Gateway) -> None:
    session = await gateway.create("akool", AVATAR)
    pcm = tone(3.0)
    speaking = asyncio.Event()
    interrupted = asyncio.Event()

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(
            config=pb.DriveConfig(session=session.name, audio_format=audio_format())
        )
        for i in range(0, len(pcm), 3200):
            yield pb.DriveRequest(audio=pcm[i : i + 3200])
        await speaking.wait()
        await asyncio.sleep(0.3)
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await interrupted.wait()

    responses = []
    async for r in gateway.stub.Drive(gen(), timeout=30):
        responses.append(r)
        if r.HasField("speech_started"):
            speaking.set()
        if r.HasField("interrupted"):
            interrupted.set()
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert ack.turn_id == "1" and ack.vendor_acknowledged
    ended = next(r.speech_ended for r in responses if r.HasField("speech_ended"))
    assert ended.interrupted and ended.played_duration.ToMilliseconds() < 2500
    (turn,) = akool(gateway).sessions[session.vendor_session_id].audio_turns
    assert turn.interrupted
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))


async def test_vendor_session_end_fails_the_drive(gateway: Gateway) -> None:
    session = await gateway.create("akool", AVATAR)
    started = asyncio.Event()

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session.name))
        await asyncio.sleep(30)  # keep the stream open: the server must end it

    call = gateway.stub.Drive(gen(), timeout=20)

    async def end_when_started() -> None:
        await started.wait()
        await akool(gateway).end_session(session.vendor_session_id, "expired")

    ender = asyncio.create_task(end_when_started())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for r in call:
            if r.HasField("started"):
                started.set()
    await ender
    code, reason, metadata = error_info(err.value)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "VENDOR_SESSION_LOST")
    assert metadata["vendor"] == "akool"


async def participants(emulator: AkoolEmulator, room: str) -> set[str]:
    """Identities in ``room`` now, by the LiveKit server's own RoomService."""
    async with lkapi.LiveKitAPI(
        emulator.livekit_url, emulator.livekit_api_key, emulator.livekit_api_secret
    ) as service:
        answer = await service.room.list_participants(lkapi.ListParticipantsRequest(room=room))
    return {p.identity for p in answer.participants}


async def gateway_joined(emulator: AkoolEmulator, room: str) -> None:
    """Wait (bounded) until the gateway is a participant of ``room``."""
    deadline = asyncio.get_running_loop().time() + 15
    while "avatar-gateway" not in await participants(emulator, room):
        assert asyncio.get_running_loop().time() < deadline, "the gateway never joined"
        await asyncio.sleep(0.05)


async def test_the_gateway_joins_the_room_when_the_session_is_ready(gateway: Gateway) -> None:
    """Capabilities.open_channel_at_ready: the first turn does not wait for the room join."""
    session = await gateway.create("akool", AVATAR)
    room = session.playback.akool.room_name
    await gateway_joined(akool(gateway), room)
    pcm = tone(0.5)
    responses = await collect(
        gateway.stub.Drive(paced_requests(session.name, pcm, realtime=False), timeout=30)
    )
    assert [r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")] == ["1"]
    (turn,) = akool(gateway).sessions[session.vendor_session_id].audio_turns
    assert turn.sha256 == hashlib.sha256(pcm).hexdigest() and turn.complete
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))
    assert "avatar-gateway" not in await participants(akool(gateway), room)


async def test_a_drive_on_a_session_the_vendor_ended_is_told_so(
    gateway: Gateway,
) -> None:
    """The channel opened early sees the avatar leave; a later Drive's channel open finds
    the session ended at Akool, the gateway closes it (CLOSE_REASON_VENDOR), and the Drive
    is told why."""
    session = await gateway.create("akool", AVATAR)
    room = session.playback.akool.room_name
    await gateway_joined(akool(gateway), room)
    await akool(gateway).end_session(session.vendor_session_id, "expired")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(
            gateway.stub.Drive(paced_requests(session.name, tone(0.5), realtime=False), timeout=30)
        )
    code, reason, metadata = error_info(err.value)
    # Which one depends on whether the gateway closed the session before the Drive asked.
    if reason == "SESSION_CLOSED":
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert metadata["closeReason"] == "CLOSE_REASON_VENDOR"
    else:
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "VENDOR_SESSION_LOST")
        assert metadata["vendor"] == "akool"

    async def closed() -> bool:
        got = await gateway.stub.GetSession(pb.GetSessionRequest(name=session.name))
        return got.state == pb.SESSION_STATE_CLOSED and got.close_reason == pb.CLOSE_REASON_VENDOR

    deadline = asyncio.get_running_loop().time() + 15
    while not await closed():
        assert asyncio.get_running_loop().time() < deadline, "the session was never closed"
        await asyncio.sleep(0.05)
    assert akool(gateway).open_sessions() == []


async def test_create_session_answers_when_the_avatar_joins(gateway: Gateway) -> None:
    """The gateway's channel, opened while CreateSession waits (open_channel_at_create), sees
    the avatar join our room and ends the wait at once. Ready at ~2.1 s, the status poll alone
    (0.1 s growing 1.5x per poll) would look at ~2.1 s and then ~3.2 s: about 1 s late."""
    emulator = akool(gateway)
    emulator.queueing_s = 2.0
    try:
        session = await gateway.create("akool", AVATAR)
    finally:
        emulator.queueing_s = 0.0
    answered = time.monotonic()
    assert session.state == pb.SESSION_STATE_READY
    ready = emulator.sessions[session.vendor_session_id].processing_since
    assert ready is not None
    # The avatar is in the room a moment before the status turns 2 (emulators/akool.py).
    assert -0.2 < answered - ready < 0.5, answered - ready
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))


async def test_an_interrupt_goes_ahead_of_text_waiting_for_the_byte_rate(gateway: Gateway) -> None:
    """A long text leaves in ~950 B parts at 5760 B/s (akool.md §5); an interrupt does not
    wait behind them, and the parts it overtook are never sent (the avatar must not start
    them again)."""
    session = await gateway.create("akool", AVATAR)
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 60  # ~3.4 KB
    spoken = asyncio.Event()

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session.name))
        yield pb.DriveRequest(text=pb.TextInput(text=text, final=True))
        await spoken.wait()
        yield pb.DriveRequest(interrupt=pb.Interrupt())

    responses = []
    async for r in gateway.stub.Drive(gen(), timeout=30):
        responses.append(r)
        if r.HasField("speech_started"):
            spoken.set()
    assert any(r.HasField("interrupted") for r in responses), kinds(responses)
    record = akool(gateway).sessions[session.vendor_session_id]
    kinds_sent = [
        (m["message"].get("type"), (m["message"].get("pld") or {}).get("cmd"))
        for m in record.messages
    ]
    at = kinds_sent.index(("command", "interrupt"))
    # Parts of the text were still waiting for their share of the rate: none left after it.
    assert ("chat", None) not in kinds_sent[at:], kinds_sent
    (turn,) = record.text_turns
    assert not turn.fin and turn.text != text and turn.interrupted
    assert record.violations == []
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name))


async def test_list_avatars_and_vendor_capabilities(gateway: Gateway) -> None:
    page = await gateway.stub.ListAvatars(
        pb.ListAvatarsRequest(parent="vendors/akool", page_size=2), timeout=10
    )
    assert [a.avatar_id for a in page.avatars] == [AVATAR, "dvp_Alinna_realisticbg_20241224"]
    assert page.next_page_token == "2"
    vendors = await gateway.stub.ListVendors(pb.ListVendorsRequest(), timeout=10)
    assert "akool" in str(vendors)
