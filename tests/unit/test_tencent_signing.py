"""Tencent IVH signing, envelope ids, code table and wire models (tencent.md §2–8).

The packetisation of SEND_STREAMTEXT (``core.text.split_exact``, tested in
``test_errors_and_text.py``) is checked on the wire in
``tests/integration/test_tencent_adapter.py``.
"""

from __future__ import annotations

import re
import urllib.parse

import grpc
import httpx
import pytest
from pydantic import ValidationError

from adapters.tencent.api import (
    CODE_TABLE,
    CREATE_OVERRIDES,
    TencentApi,
    map_code,
    new_req_id,
    sign,
    signed_query,
    string_to_sign,
)
from adapters.tencent.models import (
    ChatTextMessage,
    CreateSessionAnswer,
    DownstreamFrame,
    DownstreamPayload,
    DriveFailedMessage,
    Envelope,
    ListSessionsAnswer,
    SpeakStatusMessage,
    StatSessionAnswer,
)
from core.errors import VendorError
from emulators.tencent import sign as emulator_sign

pytestmark = pytest.mark.unit

DOC_APPKEY = "e38267c0e86411ebb02aed82acb0ed99"
DOC_TOKEN = "f68f2d10ae9e4604b76fb05cf46bccec"
DOC_TIMESTAMP = 1646636485
DOC_SIGNATURE = "BfWuaC9kmaicCggXc693uK+sZQ8qe88O4HVQNTdwZuo="


def test_docs_worked_example() -> None:
    params = {"appkey": DOC_APPKEY, "timestamp": str(DOC_TIMESTAMP)}
    assert string_to_sign(params) == f"appkey={DOC_APPKEY}&timestamp={DOC_TIMESTAMP}"
    assert sign(params, DOC_TOKEN) == DOC_SIGNATURE
    # The emulator's independent implementation agrees.
    assert emulator_sign(params, DOC_TOKEN) == DOC_SIGNATURE


def test_signed_query_url_encodes_the_signature() -> None:
    query = signed_query(DOC_APPKEY, DOC_TOKEN, timestamp=DOC_TIMESTAMP)
    assert query == (
        f"appkey={DOC_APPKEY}&timestamp={DOC_TIMESTAMP}"
        "&signature=BfWuaC9kmaicCggXc693uK%2BsZQ8qe88O4HVQNTdwZuo%3D"
    )


def test_ws_signature_covers_requestid_in_sorted_order() -> None:
    query = signed_query(DOC_APPKEY, DOC_TOKEN, timestamp=DOC_TIMESTAMP, requestid="sess-1")
    parsed = dict(urllib.parse.parse_qsl(query))
    assert list(parsed) == ["appkey", "requestid", "timestamp", "signature"]
    expected = sign(
        {"appkey": DOC_APPKEY, "requestid": "sess-1", "timestamp": str(DOC_TIMESTAMP)}, DOC_TOKEN
    )
    assert parsed["signature"] == expected
    assert string_to_sign(parsed) == (
        f"appkey={DOC_APPKEY}&requestid=sess-1&timestamp={DOC_TIMESTAMP}"
    )


def test_req_id_is_32_hex_and_fresh() -> None:
    ids = {new_req_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize(
    ("code", "status", "reason", "retryable"),
    [
        (100005, grpc.StatusCode.INTERNAL, "VENDOR_AUTH_FAILED", False),
        (100008, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED", False),
        (100014, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED", False),
        (100012, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_RATE_LIMITED", True),
        (110018, grpc.StatusCode.NOT_FOUND, "VENDOR_SESSION_NOT_FOUND", False),
        (100001, grpc.StatusCode.INVALID_ARGUMENT, "VENDOR_INVALID_ARGUMENT", False),
        (-101000, grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE", True),
        (110016, grpc.StatusCode.FAILED_PRECONDITION, "VENDOR_REJECTED", False),
        (123456, grpc.StatusCode.INTERNAL, "VENDOR_INTERNAL", False),
    ],
)
def test_code_table(code: int, status: grpc.StatusCode, reason: str, retryable: bool) -> None:
    error = map_code(code, "vendor says no", session="sessions/abc")
    assert (error.code, error.reason, error.retryable) == (status, reason, retryable)
    assert error.metadata["vendor"] == "tencent"
    assert error.metadata["vendorCode"] == str(code)
    assert "vendor says no" in error.message


def test_auth_failure_names_the_setting() -> None:
    error = map_code(100005, "")
    assert error.metadata["setting"] == "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN"
    assert "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN" in error.message


def test_session_lost_and_avatar_not_found_metadata() -> None:
    lost = map_code(110013, "", session="sessions/abc")
    assert lost.metadata["session"] == "sessions/abc"
    missing = map_code(110018, "", overrides=CREATE_OVERRIDES, avatar_id="proj-1")
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "AVATAR_NOT_FOUND")
    assert missing.metadata["avatarId"] == "proj-1"


def test_every_documented_code_is_mapped() -> None:
    documented = {
        -101000, -101001, -101002, -111001, -111002, -111003, -111004, -111005,
        100001, 100005, 100008, 100012, 100014, 100015,
        110013, 110014, 110015, 110016, 110018, 110021, 110022,
    }  # fmt: skip
    assert documented <= set(CODE_TABLE)


def test_answers_parse_by_wire_name_into_snake_case() -> None:
    created = CreateSessionAnswer.model_validate(
        {"ReqId": "r", "SessionId": "s-1", "SessionStatus": 3, "PlayStreamAddr": "rtmp://x"}
    )
    assert (created.session_id, created.session_status, created.play_stream_addr) == (
        "s-1",
        3,
        "rtmp://x",
    )
    stat = StatSessionAnswer.model_validate(
        {"SessionStatus": "4", "ErrorCode": -111003, "ErrorMessage": "model", "Extra": 1}
    )
    assert (stat.session_status, stat.error_code, stat.error_message) == (4, -111003, "model")
    # Missing or null fields take their defaults, as the dict code did.
    empty = CreateSessionAnswer.model_validate({"SessionId": None})
    assert (empty.session_id, empty.session_status, empty.play_stream_addr) == ("", 0, "")
    listed = ListSessionsAnswer.model_validate(
        {"Sessions": [{"SessionId": "a", "UserId": "avgw-1", "SessionStatus": 1}, "junk"]}
    )
    assert [(e.session_id, e.user_id, e.session_status) for e in listed.sessions] == [
        ("a", "avgw-1", 1)
    ]
    assert ListSessionsAnswer.model_validate({"Sessions": None}).sessions == []
    with pytest.raises(ValidationError):
        StatSessionAnswer.model_validate({"SessionStatus": "ready"})


def test_envelope_tolerates_missing_parts_and_marks_a_non_numeric_code() -> None:
    assert Envelope.model_validate({"Payload": []}).header is None
    assert Envelope.model_validate({"Payload": []}).payload == {}
    codes = [Envelope.model_validate({"Header": {"Code": c}}).header for c in ("oops", "110018")]
    assert [h.code if h else "no header" for h in codes] == [None, 110018]


def test_downstream_frames_parse_once_into_their_type() -> None:
    status = DownstreamFrame.parse(
        {
            "Header": {"RequestID": "h"},
            "Payload": {"Type": 3, "ReqId": "r", "SpeakStatus": "AudioOver", "FinalType": 2},
        }
    )
    assert isinstance(status.message, SpeakStatusMessage)
    assert (status.req_id, status.message.speak_status, status.message.final_type) == (
        "r",
        "AudioOver",
        2,
    )
    text = DownstreamFrame.parse({"Payload": {"Type": "4", "Text": "t", "TextDisplay": "d"}})
    assert isinstance(text.message, ChatTextMessage)
    assert (text.message.text_display, text.message.final) == ("d", None)
    failed = DownstreamFrame.parse(
        {"Header": {"RequestID": "h"}, "Payload": {"Type": 9, "ErrorCode": 110015, "ErrorMsg": "m"}}
    )
    assert isinstance(failed.message, DriveFailedMessage)
    assert (failed.req_id, failed.message.error_code, failed.message.error_text) == (
        "h",
        110015,
        "m",
    )
    # Odd frames never fail: unknown types and bad numbers read as 0.
    odd = DownstreamFrame.parse({"Header": "x", "Payload": {"Type": "x", "FinalType": {}}})
    assert type(odd.message) is DownstreamPayload and odd.message.type == 0
    bad = DownstreamFrame.parse({"Payload": {"Type": 3, "FinalType": "later"}})
    assert isinstance(bad.message, SpeakStatusMessage) and bad.message.final_type == 0


@pytest.mark.parametrize(
    ("body", "reason", "vendor_code", "message"),
    [
        # A Payload field of the wrong type: a malformed answer, retryable like a bad shape.
        (
            {"Header": {"Code": 0}, "Payload": {"SessionStatus": "ready"}},
            "VENDOR_UNAVAILABLE",
            "",
            "malformed answer (SessionStatus)",
        ),
        ([1, 2], "VENDOR_UNAVAILABLE", "", "unexpected answer shape"),
        # A code that is not a number is still a failure (100000, internal system error).
        ({"Header": {"Code": "x"}, "Payload": {}}, "VENDOR_UNAVAILABLE", "100000", ""),
        ({"Header": {"Code": 110018}, "Payload": 5}, "VENDOR_SESSION_NOT_FOUND", "110018", ""),
    ],
)
async def test_malformed_answers_keep_their_error_mapping(
    body: object, reason: str, vendor_code: str, message: str
) -> None:
    api = TencentApi(appkey="k", access_token="t", api_url="http://vendor.invalid")
    api._client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json=body))
    )
    try:
        with pytest.raises(VendorError) as caught:
            await api.call("statsession", {"SessionId": "s"}, StatSessionAnswer)
        assert (caught.value.reason, caught.value.vendor_code) == (reason, vendor_code)
        assert message in caught.value.message
    finally:
        await api.aclose()


async def test_answers_without_optional_parts_still_parse() -> None:
    bodies = iter(
        [
            {"Header": {}, "Payload": {"SessionStatus": "1"}},  # no Code: success, as before
            {"Payload": {"SessionStatus": 3, "PlayStreamAddr": None}},
        ]
    )
    api = TencentApi(appkey="k", access_token="t", api_url="http://vendor.invalid")
    api._client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json=next(bodies)))
    )
    try:
        first = await api.call("statsession", {"SessionId": "s"}, StatSessionAnswer)
        second = await api.call("statsession", {"SessionId": "s"}, StatSessionAnswer)
        assert (first.session_status, second.session_status) == (1, 3)
        assert second.play_stream_addr == ""
    finally:
        await api.aclose()
