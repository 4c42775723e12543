"""Full Drive flow over real gRPC against the ZEGOCLOUD emulator's real HTTP/WSS sockets."""

from __future__ import annotations

import hashlib

import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from tests.conftest import Gateway, collect, kinds, paced_requests, tone

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
