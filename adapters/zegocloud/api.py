"""ZEGOCLOUD Digital Human REST client: signing, the envelope, the code table.

zegocloud.md §1–3, §10. Every call is ``POST {api_url}?Action=<name>&<common
params>`` with a JSON body; the answer is ``{Code, Message, RequestId, Data}`` with Code 0 on
success. Each request carries a fresh MD5 signature (zegocloud.md §2).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc
import httpx
from pydantic import ValidationError

from adapters.zegocloud.models import (
    CreateTaskData,
    DigitalHumanPage,
    DriveData,
    NoData,
    TaskListData,
    TaskStatusData,
    WsDriveData,
)
from core.errors import (
    Reason,
    VendorCodeRule,
    VendorError,
    vendor_error,
    vendor_timeout,
    vendor_unavailable,
)
from core.resilience import Backoff, RateLimiter, retry_call
from core.telemetry import vendor_http_client

VENDOR = "zegocloud"
SECRET_SETTING = "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET"

T = TypeVar("T")

RETRY_BACKOFF = Backoff(base_s=0.1, cap_s=2.0, max_attempts=4)
"""Backoff of idempotent calls: waits ≤ 0.1, 0.2, 0.4 s (full jitter) between attempts."""
MAX_ATTEMPTS = RETRY_BACKOFF.max_attempts
"""Most HTTP calls one idempotent Action makes (first attempt included): 4."""

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
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged Signature).
    return secrets.compare_digest(expected.encode(), signature.encode())


def _action(request: httpx.Request) -> str:
    """The endpoint a request calls, for metrics: its ``Action`` (zegocloud.md §3)."""
    return str(request.url.params.get("Action", ""))


class ZegoApi:
    """Signed ZEGO REST calls with the per-Action rate limit and retries of idempotent calls.

    The typed methods return :mod:`adapters.zegocloud.models` parsed from ``Data``; an answer
    that does not parse is VENDOR_UNAVAILABLE, as a malformed envelope is. This class is the
    only retry layer of the package (idempotent Actions: at most :data:`MAX_ATTEMPTS` HTTP
    calls, bounded by the enclosing ``core.resilience.deadline_scope``).

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
        self.http = vendor_http_client(VENDOR, _action, timeout=timeout_s)

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

    async def _call_once(
        self, action: str, body: dict[str, Any], parse: Callable[[dict[str, Any]], T]
    ) -> T:
        """One signed HTTP call of ``action``; its ``Data`` parsed with ``parse``."""
        limited = (
            self.rate_limiter.slot(action)
            if self.rate_limiter is not None
            else contextlib.nullcontext()
        )
        try:
            async with limited:
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
        # A missing Data reads as {} (zegocloud.md §3); so does one that is not an object, for
        # Actions that return nothing. A model with required fields then finds them missing.
        data = envelope.get("Data") or {}
        if not isinstance(data, dict):
            data = {}
        try:
            return parse(data)
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) or "Data" for e in exc.errors()})
            raise vendor_unavailable(
                VENDOR, f"{action}: malformed response ({', '.join(fields)})"
            ) from None

    async def _call(
        self,
        action: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], T],
        *,
        idempotent: bool,
    ) -> T:
        """The one retry layer of the package: ``MAX_ATTEMPTS`` HTTP calls for idempotent ones."""
        if not idempotent:
            return await self._call_once(action, body, parse)
        return await retry_call(
            lambda: self._call_once(action, body, parse),
            backoff=RETRY_BACKOFF,
            operation=action,
        )

    async def call(
        self, action: str, body: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Call ``action`` with ``body``; return ``Data`` unparsed (``{}`` when absent).

        For tools that speak the raw API (the benchmark's direct path). The adapter uses the
        typed methods below, which parse ``Data`` into :mod:`adapters.zegocloud.models`.
        Idempotent calls make at most :data:`MAX_ATTEMPTS` HTTP calls; others exactly one.

        Raises:
            VendorError: the mapped vendor error, VENDOR_UNAVAILABLE or VENDOR_TIMEOUT.
        """
        return await self._call(action, body, dict, idempotent=idempotent)

    # ---- typed Actions (zegocloud.md §4) -------------------------------------------------
    # Each docstring states its most HTTP calls. Idempotent Actions (status, list, stop,
    # interrupt) are retried here and nowhere else in the package; creates and drives are
    # not retried, since a lost answer could mean a duplicate (a billed task, a spoken turn).

    async def create_stream_task(
        self,
        *,
        digital_human_id: str,
        room_id: str,
        stream_id: str,
        ttl_s: int,
        max_idle_time_s: int,
        background_color: str = "",
    ) -> CreateTaskData:
        """CreateDigitalHumanStreamTask (zegocloud.md §4): exactly 1 HTTP call, not retried.

        Args:
            digital_human_id: ``DigitalHumanId``.
            room_id: RTC ``RoomId`` (≤ 128 bytes).
            stream_id: RTC ``StreamId`` (≤ 128 bytes, ``[0-9A-Za-z_-]``, unique per AppID).
            ttl_s: ``TTL``, seconds, [10, 86400].
            max_idle_time_s: ``MaxIdleTime``, seconds, [30, 86400].
            background_color: ``BackgroundColor`` ``#RRGGBB``; left out when empty.

        Raises:
            VendorError: as :meth:`call`; a malformed answer is VENDOR_UNAVAILABLE.
        """
        human: dict[str, Any] = {"DigitalHumanId": digital_human_id}
        if background_color:
            human["BackgroundColor"] = background_color
        body = {
            "DigitalHumanConfig": human,
            "RTCConfig": {"RoomId": room_id, "StreamId": stream_id},
            "TTL": ttl_s,
            "MaxIdleTime": max_idle_time_s,
        }
        return await self._call(
            "CreateDigitalHumanStreamTask", body, CreateTaskData.model_validate, idempotent=False
        )

    async def get_stream_task_status(self, task_id: str) -> TaskStatusData:
        """GetDigitalHumanStreamTaskStatus (zegocloud.md §4, §5): at most 4 HTTP calls."""
        return await self._call(
            "GetDigitalHumanStreamTaskStatus",
            {"TaskId": task_id},
            TaskStatusData.model_validate,
            idempotent=True,
        )

    async def query_stream_tasks(self) -> TaskListData:
        """QueryDigitalHumanStreamTasks (zegocloud.md §4): at most 4 HTTP calls."""
        return await self._call(
            "QueryDigitalHumanStreamTasks", {}, TaskListData.model_validate, idempotent=True
        )

    async def stop_stream_task(self, task_id: str) -> None:
        """StopDigitalHumanStreamTask (zegocloud.md §4, §5): at most 4 HTTP calls.

        Raises:
            VendorError: as :meth:`call`; :func:`is_already_closed` tells "already gone".
        """
        await self._call(
            "StopDigitalHumanStreamTask",
            {"TaskId": task_id},
            NoData.model_validate,
            idempotent=True,
        )

    async def interrupt_drive_task(self, task_id: str) -> None:
        """InterruptDriveTask (zegocloud.md §4): at most 4 HTTP calls.

        Stops the drive playing and discards every queued drive of the task.
        """
        await self._call(
            "InterruptDriveTask", {"TaskId": task_id}, NoData.model_validate, idempotent=True
        )

    async def drive_by_ws_stream(self, task_id: str) -> WsDriveData:
        """DriveByWsStream (zegocloud.md §4, §8.1): exactly 1 HTTP call, not retried."""
        return await self._call(
            "DriveByWsStream", {"TaskId": task_id}, WsDriveData.model_validate, idempotent=False
        )

    async def drive_by_text(
        self,
        task_id: str,
        text: str,
        tts_config: Mapping[str, str | int | float],
        *,
        interrupt_mode: int = 0,
    ) -> DriveData:
        """DriveByText (zegocloud.md §4): exactly 1 HTTP call, not retried.

        Args:
            task_id: ``TaskId``.
            text: ``Text``, 1..1800 characters.
            tts_config: ``TTSConfig`` (``TimbreId`` required; ``SpeechRate``, ``PitchRate``
                in [-500, 500]; ``Volume`` in [1, 100]).
            interrupt_mode: ``InterruptMode``: 0 queue behind the current drive, 1 interrupt.
        """
        body = {
            "TaskId": task_id,
            "Text": text,
            "InterruptMode": interrupt_mode,
            "TTSConfig": dict(tts_config),
        }
        return await self._call("DriveByText", body, DriveData.model_validate, idempotent=False)

    async def get_digital_human_list(
        self, *, offset: int, limit: int, fetch_mode: int = 1
    ) -> DigitalHumanPage:
        """GetDigitalHumanList (zegocloud.md §4): at most 4 HTTP calls.

        Args:
            offset: ``Offset``, [0, 1000000].
            limit: ``Limit``, [1, 20].
            fetch_mode: ``FetchMode``: 1 all, 2 public, 3 private.
        """
        return await self._call(
            "GetDigitalHumanList",
            {"FetchMode": fetch_mode, "Offset": offset, "Limit": limit},
            DigitalHumanPage.model_validate,
            idempotent=True,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


def is_already_closed(exc: VendorError) -> bool:
    """Whether a Stop failure means the task is already gone."""
    return exc.vendor_code.isdigit() and int(exc.vendor_code) in ALREADY_CLOSED_CODES
