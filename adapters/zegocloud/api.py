"""ZEGOCLOUD Digital Human REST client: signing, the envelope, the code table.

zegocloud.md §1–3, §10. Every call is ``POST {api_url}?Action=<name>&<common
params>`` with a JSON body; the answer is ``{Code, Message, RequestId, Data}`` with Code 0 on
success. Each request carries a fresh MD5 signature (zegocloud.md §2).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import grpc
import httpx

from core.errors import (
    Reason,
    VendorCodeRule,
    VendorError,
    vendor_error,
    vendor_timeout,
    vendor_unavailable,
)
from core.resilience import Backoff, RateLimiter, retry_call

VENDOR = "zegocloud"
SECRET_SETTING = "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"

_C = grpc.StatusCode
CODE_TABLE: dict[int, VendorCodeRule] = {
    # zegocloud.md §2 gateway and signature codes: our configuration is wrong; the caller cannot fix
    # it.
    100000001: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "bad AppId format"),
    100000004: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "signature expired"),
    100000005: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "invalid signature"),
    100000010: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "unknown AppId"),
    100000011: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "no app config"),
    100000015: VendorCodeRule(
        _C.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "gateway internal error"
    ),
    100000017: VendorCodeRule(
        _C.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "service not enabled"
    ),
    # zegocloud.md §10 business codes.
    400000001: VendorCodeRule(
        _C.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, False, "invalid params"
    ),
    400000002: VendorCodeRule(
        _C.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "API not enabled"
    ),
    400000003: VendorCodeRule(
        _C.NOT_FOUND, Reason.AVATAR_NOT_FOUND, False, "digital human not found"
    ),
    400000004: VendorCodeRule(
        _C.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, False, "timbre not found"
    ),
    400000005: VendorCodeRule(_C.UNAVAILABLE, Reason.VENDOR_SESSION_LOST, False, "task not found"),
    400000006: VendorCodeRule(
        _C.FAILED_PRECONDITION, Reason.SESSION_NOT_READY, False, "stream not started"
    ),
    400000007: VendorCodeRule(
        _C.UNAVAILABLE, Reason.VENDOR_SESSION_LOST, False, "stream already stopped"
    ),
    400000008: VendorCodeRule(
        _C.RESOURCE_EXHAUSTED, Reason.VENDOR_QUOTA_EXCEEDED, False, "concurrency limit"
    ),
    400000009: VendorCodeRule(
        _C.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, False, "timbre not supported by avatar"
    ),
    400000010: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_INTERNAL, False, "internal config error"),
    400000015: VendorCodeRule(
        _C.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "StreamId exists"
    ),
    400000016: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_INTERNAL, False, "model version error"),
    400010000: VendorCodeRule(_C.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "system error"),
    400010001: VendorCodeRule(_C.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "no API permission"),
    400010002: VendorCodeRule(_C.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "system busy"),
    400010007: VendorCodeRule(
        _C.RESOURCE_EXHAUSTED, Reason.VENDOR_QUOTA_EXCEEDED, False, "insufficient resources"
    ),
    400010009: VendorCodeRule(
        _C.RESOURCE_EXHAUSTED, Reason.VENDOR_RATE_LIMITED, True, "rate limited"
    ),
}

ALREADY_CLOSED_CODES = frozenset({400000005, 400000007})
"""StopDigitalHumanStreamTask answers that mean the task is already gone (close is idempotent)."""


def sign(app_id: int, nonce: str, server_secret: str, timestamp: int) -> str:
    """ZEGO request signature (zegocloud.md §2): ``md5_hex(str(AppId) + nonce + secret + str(ts))``.

    Args:
        app_id: AppID.
        nonce: SignatureNonce (16 hex characters recommended).
        server_secret: ServerSecret.
        timestamp: Unix seconds.
    """
    raw = f"{app_id}{nonce}{server_secret}{timestamp}"
    return hashlib.md5(raw.encode(), usedforsecurity=False).hexdigest()


def verify_callback_signature(
    callback_secret: str, timestamp: str, nonce: str, signature: str
) -> bool:
    """Check a ZEGO callback (zegocloud.md §6): sha1 hex of sorted, joined [secret, ts, nonce]."""
    joined = "".join(sorted([callback_secret, timestamp, nonce]))
    expected = hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()
    return secrets.compare_digest(expected, signature)


class ZegoApi:
    """Signed ZEGO REST calls with the per-Action rate limit and retries of idempotent calls.

    Args:
        app_id: AppID.
        server_secret: ServerSecret.
        api_url: base URL (``https://aigc-digitalhuman-api.zegotech.cn/``).
        rate_limiter: per-Action limiter (10 QPS, zegocloud.md §1).
        timeout_s: per-request timeout (s).
    """

    def __init__(
        self,
        app_id: int,
        server_secret: str,
        api_url: str,
        rate_limiter: RateLimiter | None,
        timeout_s: float = 10.0,
    ) -> None:
        self.app_id = app_id
        self._secret = server_secret
        self.api_url = api_url
        self.rate_limiter = rate_limiter
        self.http = httpx.AsyncClient(timeout=timeout_s)

    def _query(self, action: str) -> dict[str, str]:
        nonce = secrets.token_hex(8)
        ts = int(time.time())
        return {
            "Action": action,
            "AppId": str(self.app_id),
            "SignatureNonce": nonce,
            "Timestamp": str(ts),
            "Signature": sign(self.app_id, nonce, self._secret, ts),
            "SignatureVersion": "2.0",
        }

    async def _call_once(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(action)
        try:
            response = await self.http.post(self.api_url, params=self._query(action), json=body)
        except httpx.TimeoutException as exc:
            raise vendor_timeout(VENDOR, f"{action}: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise vendor_unavailable(VENDOR, f"{action}: {type(exc).__name__}") from None
        if response.status_code != 200:
            # The vendor's own Go example treats any non-200 as a transport failure
            # (zegocloud.md §3).
            raise vendor_unavailable(VENDOR, f"{action}: HTTP {response.status_code}")
        try:
            envelope = response.json()
            code = int(envelope["Code"])
        except (ValueError, KeyError, TypeError):
            raise vendor_unavailable(VENDOR, f"{action}: malformed response") from None
        if code != 0:
            raise vendor_error(
                VENDOR,
                CODE_TABLE,
                code,
                str(envelope.get("Message", "")),
                credential_setting=SECRET_SETTING,
            )
        data = envelope.get("Data") or {}
        return data if isinstance(data, dict) else {}

    async def call(
        self, action: str, body: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Call ``action`` with ``body``; return ``Data`` (``{}`` when absent).

        Idempotent calls (status, list, stop, interrupt) are retried on retryable errors;
        creates and drives are not, since a lost answer could mean a duplicate.

        Raises:
            VendorError: the mapped vendor error, VENDOR_UNAVAILABLE or VENDOR_TIMEOUT.
        """
        if not idempotent:
            return await self._call_once(action, body)
        return await retry_call(
            lambda: self._call_once(action, body),
            backoff=Backoff(base_s=0.1, cap_s=2.0, max_attempts=4),
            operation=action,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


def is_already_closed(exc: VendorError) -> bool:
    """Whether a Stop failure means the task is already gone."""
    return exc.vendor_code.isdigit() and int(exc.vendor_code) in ALREADY_CLOSED_CODES
