import grpc
import pytest

from adapters.zegocloud.api import CODE_TABLE, sign, verify_callback_signature
from core.errors import vendor_error

pytestmark = pytest.mark.unit


def test_signature_docs_vector() -> None:
    # zegocloud.md §2 worked example.
    assert sign(12345, "4fd24687296dd9f3", "9193cc662a4c0ec135ec71fb57194b38", 1615186943) == (
        "43e5cfcca828314675f91b001390566a"
    )


def test_callback_signature_docs_vector() -> None:
    # zegocloud.md §6: sorted [secret, timestamp, nonce] -> sha1.
    assert verify_callback_signature(
        "secret", "1470820198", "123412", "5bd59fd62953a8059fb7eaba95720f66d19e4517"
    )
    assert not verify_callback_signature(
        "other", "1470820198", "123412", "5bd59fd62953a8059fb7eaba95720f66d19e4517"
    )


@pytest.mark.parametrize(
    ("code", "status", "reason", "retryable"),
    [
        (400000008, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_QUOTA_EXCEEDED", False),
        (100000005, grpc.StatusCode.INTERNAL, "VENDOR_AUTH_FAILED", False),
        (100000004, grpc.StatusCode.INTERNAL, "VENDOR_AUTH_FAILED", False),
        (400000003, grpc.StatusCode.NOT_FOUND, "AVATAR_NOT_FOUND", False),
        (400010009, grpc.StatusCode.RESOURCE_EXHAUSTED, "VENDOR_RATE_LIMITED", True),
        (400010002, grpc.StatusCode.UNAVAILABLE, "VENDOR_UNAVAILABLE", True),
        (123, grpc.StatusCode.INTERNAL, "VENDOR_INTERNAL", False),
    ],
)
def test_code_mapping(code: int, status: grpc.StatusCode, reason: str, retryable: bool) -> None:
    err = vendor_error(
        "zegocloud",
        CODE_TABLE,
        code,
        "msg",
        credential_setting="AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET",
    )
    assert (err.code, err.reason, err.retryable) == (status, reason, retryable)
    assert err.metadata["vendor"] == "zegocloud" and err.metadata["vendorCode"] == str(code)
    if reason == "VENDOR_AUTH_FAILED":
        assert "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET" in err.message
        assert err.metadata["setting"] == "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"
