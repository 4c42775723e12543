"""Tencent IVH signing, envelope ids, code table and text splitting (tencent.md §2–8)."""

from __future__ import annotations

import re
import urllib.parse

import grpc
import pytest

from adapters.tencent.api import (
    CODE_TABLE,
    CREATE_OVERRIDES,
    map_code,
    new_req_id,
    sign,
    signed_query,
    string_to_sign,
)
from adapters.tencent.channel import split_utf8
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


def test_split_utf8_keeps_every_character_and_limit() -> None:
    text = ("hello world " * 200) + "你好世界" * 300
    pieces = split_utf8(text, 1000)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 1000 for p in pieces)
    assert len(pieces) > 3
    assert split_utf8("short", 1000) == ["short"]
    assert split_utf8("", 1000) == []
