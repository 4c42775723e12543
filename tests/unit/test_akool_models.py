"""The Akool payload models (adapters/akool/models.py): what is accepted, what is ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.akool.models import (
    AvatarPage,
    ChatMessage,
    CommandAck,
    CreatedSession,
    Envelope,
    EventMessage,
    PlaybackFinished,
    Session,
    SessionPage,
    TokenAnswer,
    parse_stream_message,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "raw",
    [{"code": "1000"}, {"code": 1000.0}, {"code": True}, {"code": 1000, "msg": None}, {}, []],
)
def test_envelope_is_as_strict_as_akools_demo(raw: Any) -> None:
    """akool.md §2: ``code`` a number (an integer here) and ``msg`` a string when present."""
    with pytest.raises(ValidationError):
        Envelope.model_validate_json(json.dumps(raw))


def test_envelope_and_token_answer() -> None:
    envelope = Envelope.model_validate_json(b'{"code": 1000, "token": "ey1", "extra": 1}')
    assert (envelope.code, envelope.msg, envelope.data, envelope.token) == (1000, "", None, "ey1")
    assert TokenAnswer.model_validate({"token": envelope.token}).token == "ey1"
    for bad in ("", None, 5):
        with pytest.raises(ValidationError):
            TokenAnswer.model_validate({"token": bad})


def test_read_answers_are_lenient() -> None:
    page = AvatarPage.model_validate(
        {
            "count": "3",
            "result": [
                {"avatar_id": "a", "name": "A", "thumbnailUrl": "t", "from": 2, "gender": "f"},
                "not an object",
                {"avatar_id": ["not", "a", "string"]},
                {"avatar_id": 7, "from": "2"},
            ],
        }
    )
    assert page.count == 3
    assert [(a.avatar_id, a.name, a.thumbnail_url, a.from_) for a in page.result] == [
        ("a", "A", "t", 2),
        ("7", None, None, "2"),
    ]
    assert AvatarPage.model_validate({"count": "many", "result": None}).count == 0
    sessions = SessionPage.model_validate(
        {
            "count": None,
            "result": [
                {"_id": "s1", "status": 2, "credentials": {"livekit_room_name": "akool-x"}},
                {"_id": "s2", "credentials": "none"},
            ],
        }
    )
    assert sessions.count == 0
    assert [(s.id, s.status) for s in sessions.result] == [("s1", 2), ("s2", None)]
    assert sessions.result[0].credentials is not None
    assert sessions.result[0].credentials.livekit_room_name == "akool-x"
    assert sessions.result[1].credentials is None
    assert Session.model_validate({"status": "7"}).status == "7"  # kept as sent: not ready


def test_create_answer_needs_a_string_id() -> None:
    assert CreatedSession.model_validate({"_id": "abc", "status": 1}).id == "abc"
    bad: Any
    for bad in ({}, {"_id": 5}, {"_id": None}, None, []):
        with pytest.raises(ValidationError):
            CreatedSession.model_validate(bad)


def test_stream_messages_are_parsed_once_by_type() -> None:
    chat = parse_stream_message(
        b'{"v":2,"type":"chat","mid":"m1","idx":1,"fin":false,"pld":{"from":"bot","text":"hi"}}'
    )
    assert isinstance(chat, ChatMessage)
    assert (chat.mid, chat.idx, chat.fin, chat.pld.from_, chat.pld.text) == (
        "m1",
        1,
        False,
        "bot",
        "hi",
    )
    no_fin = parse_stream_message(b'{"v":2,"type":"chat","pld":{"text":"x"}}')
    assert isinstance(no_fin, ChatMessage) and no_fin.fin
    ack = parse_stream_message(
        b'{"v":2,"type":"command","mid":"c1","pld":{"cmd":"interrupt","code":1003,"msg":"bad"}}'
    )
    assert isinstance(ack, CommandAck)
    assert (ack.mid, ack.pld.cmd, ack.pld.code, ack.pld.msg) == ("c1", "interrupt", 1003, "bad")
    event = parse_stream_message('{"v":2,"type":"event","pld":{"event":"audio_end"}}')
    assert isinstance(event, EventMessage) and event.pld.event == "audio_end"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'{"v":1,"type":"event","pld":{"event":"audio_start"}}',
        b'{"v":2,"type":"hello","pld":{}}',
        b'{"v":2,"type":"event","pld":"audio_start"}',
        b'{"v":2,"type":"chat","pld":{"text":5}}',
        b'{"v":2,"type":"chat"}',
    ],
)
def test_stream_messages_the_gateway_ignores(data: bytes) -> None:
    """akool.md §5.4: anything but a v2 chat, command or event is ignored, as the demo does."""
    assert parse_stream_message(data) is None


def test_playback_finished() -> None:
    assert PlaybackFinished.parse("") == PlaybackFinished(playback_position=0.0, interrupted=False)
    report = PlaybackFinished.parse('{"playback_position": 1.25, "interrupted": true}')
    assert report == PlaybackFinished(playback_position=1.25, interrupted=True)
    for bad in ("[]", "nope", '{"playback_position": "soon"}'):
        assert PlaybackFinished.parse(bad) is None
