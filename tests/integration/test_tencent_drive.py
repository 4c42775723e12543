"""Full CreateSession / Drive / CloseSession over real gRPC against the Tencent emulator.

The gateway's own pacer, resampler and text path drive the Tencent adapter; the emulator
checks the vendor rules (pacing window, text spacing, switching) on what arrives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from adapters.tencent.adapter import REST_ATTEMPTS
from tests.conftest import Gateway, audio_format, collect, kinds, paced_requests, tone

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("gateway", [{"sandbox_vendors": "tencent"}], indirect=True),
]


def no_violations(emulator: Any, vendor_session_id: str) -> None:
    found = emulator.violations(vendor_session_id)
    assert found == {k: [] for k in found}, found


async def test_audio_turn_is_paced_and_reaches_tencent_intact(gateway: Gateway) -> None:
    session = await gateway.create("tencent", "sandbox-project")
    assert session.state == pb.SESSION_STATE_READY
    assert session.playback.tencent.protocol == "webrtc"
    assert session.playback.tencent.play_stream_addr.startswith("webrtc://")
    pcm = tone(1.0, 16000)
    responses = await collect(
        gateway.stub.Drive(paced_requests(session.name, pcm, realtime=False), timeout=30)
    )
    assert kinds(responses)[0] == "started"
    assert responses[0].started.vendor_audio_format.sample_rate_hertz == 16000
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert [e.turn_id for e in ended] == ["1"] and not ended[0].interrupted
    assert 0.8 <= ended[0].played_duration.ToMilliseconds() / 1000 <= 1.5
    emulator = gateway.emulator("tencent")
    (drive,) = emulator.drives_of(session.vendor_session_id, "audio")
    assert drive.sha256 == hashlib.sha256(pcm).hexdigest()
    assert drive.final_type == 1
    no_violations(emulator, session.vendor_session_id)


async def test_streamed_text_then_audio_follow_the_switching_rules(gateway: Gateway) -> None:
    session = await gateway.create("tencent", "sandbox-project")
    emulator = gateway.emulator("tencent")
    emulator.text_seconds_per_char = 0.005
    pcm = tone(0.5, 16000)

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(
            config=pb.DriveConfig(session=session.name, audio_format=audio_format())
        )
        for delta in ("Hello ", "there, ", "how are you?"):
            yield pb.DriveRequest(text=pb.TextInput(text=delta))
        yield pb.DriveRequest(text=pb.TextInput(text="", final=True))
        async for request in paced_requests(session.name, pcm, realtime=False):
            if not request.HasField("config"):
                yield request

    responses = await collect(gateway.stub.Drive(requests(), timeout=30))
    ended = [r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")]
    assert ended == ["1", "2"]
    kinds_sent = [d.kind for d in emulator.drives_of(session.vendor_session_id)]
    assert kinds_sent == ["stream", "audio"]
    (stream,) = emulator.drives_of(session.vendor_session_id, "stream")
    # Streamed deltas reach the vendor exactly as written, spaces included.
    assert stream.stream_text == "Hello there, how are you?" and stream.final
    no_violations(emulator, session.vendor_session_id)


async def test_interrupt_and_close_leave_nothing_open(gateway: Gateway) -> None:
    session = await gateway.create("tencent", "sandbox-project")
    pcm = tone(1.0, 16000)

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        # 1 s of audio in real time, then barge in while the avatar speaks it.
        async for request in paced_requests(session.name, pcm):
            if request.HasField("end_turn"):
                break
            yield request
        yield pb.DriveRequest(interrupt=pb.Interrupt())

    responses = await collect(gateway.stub.Drive(requests(), timeout=30))
    interrupted = [r.interrupted for r in responses if r.HasField("interrupted")]
    assert len(interrupted) == 1 and interrupted[0].turn_id == "1"
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert [(e.turn_id, e.interrupted) for e in ended] == [("1", True)]
    emulator = gateway.emulator("tencent")
    (drive,) = emulator.drives_of(session.vendor_session_id, "audio")
    assert drive.interrupted
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=10)
    assert closed.state == pb.SESSION_STATE_CLOSED
    assert emulator.open_sessions() == []


async def test_barge_in_is_not_held_up_by_a_send_waiting_for_the_previous_turn(
    gateway: Gateway,
) -> None:
    """Turn 2's first packet waits for turn 1's AudioOver (turn order: the gateway's
    sequential_turns); an interrupt sent meanwhile must still stop the avatar at once, not
    after turn 1 has played out."""
    import asyncio
    import time

    session = await gateway.create("tencent", "sandbox-project")
    long_turn, next_turn = tone(4.0, 16000), tone(1.0, 16000, freq=330)
    acked = asyncio.Event()
    sent_interrupt_at = 0.0

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        nonlocal sent_interrupt_at
        config = pb.DriveConfig(session=session.name, audio_format=audio_format())
        yield pb.DriveRequest(config=config)
        for i in range(0, len(long_turn), 6400):
            yield pb.DriveRequest(audio=long_turn[i : i + 6400])
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        for i in range(0, len(next_turn), 6400):
            yield pb.DriveRequest(audio=next_turn[i : i + 6400])
        await asyncio.sleep(1.0)  # turn 1 is playing; turn 2's first send is waiting
        sent_interrupt_at = time.monotonic()
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await acked.wait()

    responses = []
    async for r in gateway.stub.Drive(requests(), timeout=30):
        responses.append(r)
        if r.HasField("interrupted"):
            ack_after = time.monotonic() - sent_interrupt_at
            acked.set()
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert ack.turn_id == "2"
    assert ack_after < 2.0, f"interrupt acknowledged only after {ack_after:.2f} s"
    ended = {r.speech_ended.turn_id: r.speech_ended for r in responses if r.speech_ended.turn_id}
    # Turn 1 was cut short well before its 4 s, not played out behind the blocked send.
    assert ended["1"].played_duration.ToMilliseconds() < 3500


async def test_audio_on_a_text_only_session_is_refused(gateway: Gateway) -> None:
    """DriverType 1 sessions take text only (tencent.md §5): audio ends the Drive with
    FAILED_PRECONDITION AUDIO_NOT_SUPPORTED, and the server keeps serving."""
    from avatar.gateway.v1 import vendor_options_pb2

    from tests.conftest import drive_error

    session = await gateway.create(
        "tencent", "sandbox-project", tencent=vendor_options_pb2.TencentOptions(driver_type=1)
    )
    config = pb.DriveConfig(session=session.name, audio_format=audio_format())
    code, reason, md, _ = await drive_error(
        gateway.stub, [pb.DriveRequest(config=config), pb.DriveRequest(audio=tone(0.2))]
    )
    assert (code.name, reason, md["vendor"]) == (
        "FAILED_PRECONDITION",
        "AUDIO_NOT_SUPPORTED",
        "tencent",
    )
    again = await gateway.create("tencent", "sandbox-project")
    assert again.state == pb.SESSION_STATE_READY


def text_request(text: str, final: bool = True) -> pb.DriveRequest:
    return pb.DriveRequest(text=pb.TextInput(text=text, final=final))


async def test_whole_texts_are_spaced_by_the_channel_and_streamed_turns_are_not(
    gateway: Gateway,
) -> None:
    """The gateway sends text turns back to back (it holds a turn only until the earlier one
    ended); the channel alone spaces SEND_TEXT by more than 1 s (tencent.md §5.3). Streamed
    turns (SEND_STREAMTEXT) are not held by that rule."""
    session = await gateway.create("tencent", "sandbox-project")
    emulator = gateway.emulator("tencent")
    emulator.text_seconds_per_char = 0.002  # each turn plays in well under 0.2 s
    requests = [
        pb.DriveRequest(config=pb.DriveConfig(session=session.name)),
        text_request("first whole text"),
        text_request("second whole text"),
        text_request("a streamed ", final=False),
        text_request("reply", final=True),
        text_request("another ", final=False),
        text_request("stream", final=True),
    ]

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        for request in requests:
            yield request

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    ended = [r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")]
    assert ended == ["1", "2", "3", "4"]
    sid = session.vendor_session_id
    assert [d.kind for d in emulator.drives_of(sid)] == ["text", "text", "stream", "stream"]
    commands = [c for c in emulator.commands if c.session_id == sid]
    texts = [c.at for c in commands if c.command == "SEND_TEXT"]
    assert len(texts) == 2 and texts[1] - texts[0] > 1.0
    firsts: dict[str, float] = {}
    for c in commands:
        if c.command == "SEND_STREAMTEXT":
            firsts.setdefault(c.req_id, c.at)
    stream_starts = sorted(firsts.values())
    # Each streamed turn goes as soon as the turn before it ended, not 1.1 s after a SEND_TEXT.
    assert stream_starts[0] - texts[1] < 0.9, stream_starts[0] - texts[1]
    assert stream_starts[1] - stream_starts[0] < 0.9, stream_starts[1] - stream_starts[0]
    no_violations(emulator, sid)


async def test_a_slow_text_is_not_cut_by_the_next_turn(gateway: Gateway) -> None:
    """A new SEND_TEXT cuts the text playing (tencent.md §5.6). Turn order is the gateway's
    alone (the channel does not wait for text after text across turns): it holds turn 2 until
    turn 1's TextOver, bounded by Tencent's declared slow-speech rate (0.3 s per character).
    Here turn 1 plays ~4.8 s (24 characters at 0.2 s) and speech_end_timeout_s is cut to
    0.3 s, so only that rate keeps the gateway waiting long enough."""
    adapter = gateway.server.adapters["tencent"]
    assert adapter.capabilities.speech_seconds_per_char >= 0.25
    adapter.capabilities = dataclasses.replace(adapter.capabilities, speech_end_timeout_s=0.3)
    session = await gateway.create("tencent", "sandbox-project")
    emulator = gateway.emulator("tencent")
    emulator.text_seconds_per_char = 0.2
    slow = "slow speech, slow speech"  # 24 characters: ~4.8 s at 0.2 s each
    requests = [
        pb.DriveRequest(config=pb.DriveConfig(session=session.name)),
        text_request(slow),
        text_request("next turn"),
    ]

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        for request in requests:
            yield request

    responses = await collect(gateway.stub.Drive(gen(), timeout=30))
    ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
    assert [(e.turn_id, e.interrupted) for e in ended][:1] == [("1", False)]
    first, second = emulator.drives_of(session.vendor_session_id, "text")
    assert not first.interrupted and first.statuses[-1] == "TextOver"
    assert first.ended_at is not None and first.ended_at <= second.created_at
    no_violations(emulator, session.vendor_session_id)


async def test_close_session_makes_at_most_the_documented_vendor_calls(gateway: Gateway) -> None:
    """One retry budget per vendor operation: TencentAdapter.close_session documents at most
    REST_ATTEMPTS (5) closesession calls, and CloseSession over gRPC adds no second loop
    around it. The vendor fails every call with a retryable code (-101000 internal error,
    tencent.md §8); the gateway still closes its record."""
    assert REST_ATTEMPTS == 5
    session = await gateway.create("tencent", "sandbox-project")
    emulator = gateway.emulator("tencent")
    emulator.faults.fail_next("closesession", -101000, count=1_000)
    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
    assert closed.state == pb.SESSION_STATE_CLOSED
    calls = [c for c in emulator.rest_calls if c["op"] == "closesession"]
    assert [c["code"] for c in calls] == [-101000] * REST_ATTEMPTS
    again = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
    assert again.state == pb.SESSION_STATE_CLOSED
    assert len([c for c in emulator.rest_calls if c["op"] == "closesession"]) == REST_ATTEMPTS
    emulator.faults.clear()


async def test_create_session_answers_soon_after_the_vendor_is_ready(gateway: Gateway) -> None:
    """CreateSession polls statsession every 40 ms early on (ready_poll_interval_s), so it
    answers within one poll of the vendor being ready. Ready at 2.2 s, the former schedule
    (0.1 s growing 1.5x per poll) polled at ~2.1 s and then ~3.2 s: about 1 s late."""
    emulator = gateway.emulator("tencent")
    emulator.session_ready_delay_s = 2.2
    session = await gateway.create("tencent", "sandbox-project")
    answered = time.monotonic()  # the emulator's clock (emulators/tencent.py _now)
    assert session.state == pb.SESSION_STATE_READY
    late = answered - emulator.sessions[session.vendor_session_id].ready_at
    assert 0 <= late < 0.5, late
