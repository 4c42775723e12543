"""Full Drive flow over real gRPC against the ZEGOCLOUD emulator's real HTTP/WSS sockets."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from tests.conftest import Gateway, audio_format, collect, kinds, paced_requests, tone

pytestmark = pytest.mark.integration


async def test_audio_turn_reaches_vendor_intact_and_events_come_back(gateway: Gateway) -> None:
    session = await gateway.create()
    assert session.state == pb.SESSION_STATE_READY
    assert session.playback.zegocloud.stream_id
    pcm = tone(1.0, 16000)
    responses = await collect(gateway.stub.Drive(paced_requests(session.name, pcm), timeout=30))
    assert kinds(responses)[0] == "started"
    assert responses[0].started.vendor_audio_format.sample_rate_hertz == 16000
    started = [r.speech_started for r in responses if r.HasField("speech_started")]
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert [s.turn_id for s in started] == ["1"] and [e.turn_id for e in ended] == ["1"]
    assert not ended[0].interrupted
    assert 0.9 <= ended[0].played_duration.ToMilliseconds() / 1000 <= 1.6
    emulator = gateway.emulator("zegocloud")
    drives = emulator.drives_for_task(session.vendor_session_id)
    assert len(drives) == 1
    assert drives[0].sample_rate == 16000
    assert drives[0].sha256 == hashlib.sha256(pcm).hexdigest()
    assert drives[0].stopped and not drives[0].violations


async def test_resamples_16k_into_24k_session_and_48k_stereo(gateway: Gateway) -> None:
    from avatar.gateway.v1 import vendor_options_pb2

    s = await gateway.create(zegocloud=vendor_options_pb2.ZegocloudOptions(sample_rate_hertz=24000))
    responses = await collect(
        gateway.stub.Drive(paced_requests(s.name, tone(1.0, 16000), realtime=False), timeout=30)
    )
    assert responses[0].started.vendor_audio_format.sample_rate_hertz == 24000
    s2 = await gateway.create()
    stereo = tone(1.0, 48000, channels=2)
    await collect(
        gateway.stub.Drive(
            paced_requests(s2.name, stereo, rate=48000, channels=2, realtime=False), timeout=30
        )
    )
    emulator = gateway.emulator("zegocloud")
    (d1,) = emulator.drives_for_task(s.vendor_session_id)
    (d2,) = emulator.drives_for_task(s2.vendor_session_id)
    assert d1.sample_rate == 24000 and abs(d1.duration_s - 1.0) < 0.01
    assert d2.sample_rate == 24000 and d2.channels == 1 and abs(d2.duration_s - 1.0) < 0.01


async def test_text_turn_split_at_1800_characters_is_one_turn(gateway: Gateway) -> None:
    s = await gateway.create()
    sentence = "The quick brown fox jumps over the lazy dog again. "
    text = sentence * 45  # ~2300 characters
    gateway.emulator("zegocloud").text_seconds_per_char = 0.0005

    async def gen():  # type: ignore[no-untyped-def]
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name))
        yield pb.DriveRequest(text=pb.TextInput(text=text, final=True))

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    assert kinds(responses) == ["started", "speech_started", "speech_ended"]
    drives = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert [d.kind for d in drives] == ["text", "text"]
    assert all(len(d.text) <= 1800 for d in drives)
    assert " ".join(d.text for d in drives).split() == text.split()


async def test_streamed_text_is_sent_sentence_by_sentence(gateway: Gateway) -> None:
    s = await gateway.create()
    deltas = ["Hel", "lo there. ", "How ", "are you", "? Fine", "."]

    async def gen():  # type: ignore[no-untyped-def]
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name))
        for d in deltas:
            yield pb.DriveRequest(text=pb.TextInput(text=d))
        yield pb.DriveRequest(text=pb.TextInput(final=True))

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    assert kinds(responses) == ["started", "speech_started", "speech_ended"]
    drives = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert [d.text for d in drives] == ["Hello there.", "How are you?", "Fine."]


async def test_interrupt_stops_the_avatar_and_is_acknowledged(gateway: Gateway) -> None:
    s = await gateway.create()
    pcm = tone(5.0)
    interrupted = asyncio.Event()

    async def gen():  # type: ignore[no-untyped-def]
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name, audio_format=audio_format()))
        for i in range(0, 16000 * 2, 1280):  # 1 s at real time, then barge in
            yield pb.DriveRequest(audio=pcm[i : i + 1280])
            await asyncio.sleep(0.04)
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await interrupted.wait()
        # A new turn right after the interrupt plays normally.
        for i in range(0, 16000, 1280):  # 0.5 s = 16000 bytes
            yield pb.DriveRequest(audio=pcm[i : min(i + 1280, 16000)])
        yield pb.DriveRequest(end_turn=pb.EndTurn())

    responses = []
    async for r in gateway.stub.Drive(gen(), timeout=30):
        responses.append(r)
        if r.HasField("interrupted"):
            interrupted.set()
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert ack.turn_id == "1" and ack.vendor_acknowledged and ack.latency.ToMilliseconds() < 2000
    ended = {
        r.speech_ended.turn_id: r.speech_ended for r in responses if r.HasField("speech_ended")
    }
    assert ended["1"].interrupted and ended["1"].played_duration.ToMilliseconds() < 2500
    assert not ended["2"].interrupted
    drives = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert drives[0].interrupted and abs(drives[1].duration_s - 0.5) < 0.01


async def test_client_faster_than_real_time_is_paced(gateway: Gateway) -> None:
    s = await gateway.create()
    pcm = tone(4.0)
    t0 = asyncio.get_running_loop().time()
    responses = await collect(
        gateway.stub.Drive(paced_requests(s.name, pcm, realtime=False), timeout=30)
    )
    elapsed = asyncio.get_running_loop().time() - t0
    # 4 s of audio pushed at once: the gateway releases at most 2 s ahead of real time.
    assert elapsed >= 2.0
    (drive,) = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert drive.sha256 == hashlib.sha256(pcm).hexdigest() and drive.underruns == 0
    assert kinds(responses)[-1] == "speech_ended"


async def test_back_to_back_turns_do_not_cut_each_other(gateway: Gateway) -> None:
    """A ZEGO WS drive interrupts the one playing (zegocloud.md §5); audio is pushed up to 2 s
    ahead, so
    turn 2 must wait for turn 1 to finish speaking instead of cutting its last 2 s."""
    s = await gateway.create()
    first, second = tone(1.5), tone(0.5, freq=330)

    async def gen():  # type: ignore[no-untyped-def]
        yield pb.DriveRequest(config=pb.DriveConfig(session=s.name, audio_format=audio_format()))
        yield pb.DriveRequest(audio=first)
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        yield pb.DriveRequest(audio=second)
        yield pb.DriveRequest(end_turn=pb.EndTurn())

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    ended = {
        r.speech_ended.turn_id: r.speech_ended for r in responses if r.HasField("speech_ended")
    }
    assert not ended["1"].interrupted and not ended["2"].interrupted
    assert ended["1"].played_duration.ToMilliseconds() >= 1450
    d1, d2 = gateway.emulator("zegocloud").drives_for_task(s.vendor_session_id)
    assert not d1.interrupted and d1.sha256 == hashlib.sha256(first).hexdigest()
    assert d2.sha256 == hashlib.sha256(second).hexdigest()


async def test_get_session_shows_the_open_drive_and_the_vendor_format(gateway: Gateway) -> None:
    session = await gateway.create()
    assert not session.HasField("vendor_audio_format") and not session.drive_active
    hold = asyncio.Event()
    call = gateway.stub.Drive(
        paced_requests(session.name, tone(0.2, 24000), rate=24000, hold=hold), timeout=30
    )
    first = await call.read()
    assert first.WhichOneof("response") == "started"
    during = await gateway.stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=5)
    assert during.drive_active
    # 24 kHz input: the smallest native ZEGO rate not below it is 24 kHz.
    assert during.vendor_audio_format.sample_rate_hertz == 24000
    assert during.vendor_audio_format.audio_channel_count == 1
    hold.set()
    while await call.read() is not grpc.aio.EOF:
        pass
    after = await gateway.stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=5)
    assert not after.drive_active
    assert after.vendor_audio_format.sample_rate_hertz == 24000
