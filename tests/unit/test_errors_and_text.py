import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from core.errors import DOMAIN, GatewayError, to_rpc_status
from core.text import SentenceBuffer, split_text

pytestmark = pytest.mark.unit


def test_status_carries_exactly_one_error_info() -> None:
    err = GatewayError(
        grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", "no such session", {"session": "sessions/x"}
    )
    st = to_rpc_status(err)
    assert st.code == grpc.StatusCode.NOT_FOUND and st.details == "no such session"
    ((key, raw),) = [(k, v) for k, v in st.trailing_metadata if k == "grpc-status-details-bin"]
    rich = status_pb2.Status.FromString(raw)
    assert len(rich.details) == 1
    info = error_details_pb2.ErrorInfo()
    rich.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "SESSION_NOT_FOUND",
        DOMAIN,
        {"session": "sessions/x"},
    )


def test_retry_info_added_when_retry_after_set() -> None:
    err = GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_RATE_LIMITED", "slow down", retry_after_s=1.5
    )
    rich = status_pb2.Status.FromString(
        dict(to_rpc_status(err).trailing_metadata)["grpc-status-details-bin"]
    )
    assert [d.type_url.rsplit("/", 1)[1] for d in rich.details] == [
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
    ]


def test_split_text_at_sentence_boundaries_within_limit() -> None:
    sentence = "This is a sentence of moderate length that ends here. "
    text = sentence * 60  # ~3300 characters
    parts = split_text(text, 1800)
    assert len(parts) == 2
    assert all(len(p) <= 1800 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts).split() == text.split()


def test_split_text_bytes_limit_and_long_words() -> None:
    text = "你好世界。" * 500
    parts = split_text(text, 4000, max_bytes=4000)
    assert all(len(p.encode()) <= 4000 for p in parts) and "".join(parts) == text.strip()
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_text("   ", 10) == []


def test_sentence_buffer_releases_whole_sentences() -> None:
    buf = SentenceBuffer(1800)
    assert buf.push("Hello the") == []
    assert buf.push("re. How are") == ["Hello there."]
    assert buf.push(" you? I am") == ["How are you?"]
    assert buf.flush() == ["I am"]
    assert buf.flush() == []
