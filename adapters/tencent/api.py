"""Tencent Cloud IVH REST client: signing, the ``{Header, Payload}`` envelope and the code table.

Vendor facts (docs/vendors/tencent.md):

* every HTTP and WS call carries ``appkey``, ``timestamp`` (Unix s, within 5 min of the
  server clock) and ``signature`` in the query; the WS command channel adds
  ``requestid=<SessionId>`` (tencent.md §2);
* the signature is ``base64(HMAC-SHA256(key=accesstoken, msg=k1=v1&k2=v2...))`` over the query
  parameters sorted by key with raw (not URL-encoded) values; the base64 value itself must be
  URL-encoded in the URL, otherwise a ``+`` in it turns into a space (tencent.md §2);
* requests are ``{"Header": {}, "Payload": {...}}``; answers carry ``Header.Code`` (0 = ok)
  and the business fields in ``Payload`` (tencent.md §3); ``ReqId`` is a 32-character hex UUID,
  fresh per request (tencent.md §3);
* the business codes are listed in tencent.md §8 and mapped below with
  :class:`core.errors.VendorCodeRule`.

Answers are parsed here, once, into the models of :mod:`adapters.tencent.models`; callers
never read the vendor's dicts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc
import httpx
from pydantic import ValidationError

from adapters.tencent.models import Answer, Envelope, Header
from core.errors import (
    Reason,
    VendorCodeRule,
    VendorError,
    vendor_error,
    vendor_timeout,
    vendor_unavailable,
)
from core.telemetry import vendor_http_client

AnswerT = TypeVar("AnswerT", bound=Answer)

VENDOR = "tencent"
"""Vendor id (``CreateSession.vendor``)."""

ACCESS_TOKEN_SETTING = "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN"
"""The setting an operator fixes when the vendor rejects our credentials."""

SESSION_PATH = "/v2/ivh/sessionmanager/sessionmanagerservice/"
"""Base path of the session-management endpoints (tencent.md §4)."""

COMMAND_CHANNEL_PATH = "/v2/ws/ivh/interactdriver/interactdriverservice/commandchannel"
"""Path of the WebSocket command channel (tencent.md §5)."""

# --- Business codes (tencent.md §8) ---------------------------------------------------------------
CODE_OK = 0
CODE_INTERNAL = -101000
CODE_NO_COMPUTE = -101001
CODE_IMAGE_DOWNLOAD = -101002
CODE_STREAM_PARAMS = -111001
CODE_CONNECTION_DROPPED = -111002
CODE_MODEL_LOAD = -111003
CODE_STREAM_CREATE_TIMEOUT = -111004
CODE_DRIVE_ERROR = -111005
CODE_SYSTEM_ERROR = 100000
CODE_SYSTEM_ERROR_NEG = -100000
CODE_BAD_PARAMS = 100001
CODE_UNAUTHORIZED = 100005
CODE_CONCURRENCY_LIMIT = 100008
CODE_TOO_FREQUENT = 100012
CODE_QUOTA = 100014
CODE_AVATAR_EXPIRED = 100015
CODE_SESSION_CLOSED = 110013
CODE_SESSION_NOT_READY = 110014
CODE_WRONG_TIME = 110015
CODE_SESSION_NOT_STARTED = 110016
CODE_SESSION_NOT_FOUND = 110018
CODE_TRTC_ARREARS = 110021
CODE_SESSION_REPLACED = 110022

SESSION_GONE_CODES = frozenset({CODE_SESSION_CLOSED, CODE_SESSION_NOT_FOUND, CODE_SESSION_REPLACED})
"""Codes after which the vendor session is gone for good (closesession treats 110013/110018
as success; a reconnect stops on any of them)."""

_SC = grpc.StatusCode

CODE_TABLE: dict[int, VendorCodeRule] = {
    # Vendor-side failures: 5xx-like, retryable with backoff (architecture.md §6).
    CODE_INTERNAL: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "internal error"
    ),
    CODE_SYSTEM_ERROR: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "internal system error"
    ),
    CODE_SYSTEM_ERROR_NEG: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, True, "internal system error"
    ),
    CODE_NO_COMPUTE: VendorCodeRule(
        _SC.RESOURCE_EXHAUSTED, Reason.VENDOR_QUOTA_EXCEEDED, False, "insufficient compute"
    ),
    CODE_IMAGE_DOWNLOAD: VendorCodeRule(
        _SC.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, False, "image download failed"
    ),
    CODE_STREAM_PARAMS: VendorCodeRule(
        _SC.INTERNAL, Reason.VENDOR_INTERNAL, False, "update stream params failed"
    ),
    CODE_CONNECTION_DROPPED: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_SESSION_LOST, False, "connection dropped abnormally"
    ),
    CODE_MODEL_LOAD: VendorCodeRule(
        _SC.INTERNAL, Reason.VENDOR_INTERNAL, False, "model load error"
    ),
    CODE_STREAM_CREATE_TIMEOUT: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_TIMEOUT, True, "internal stream-creation timeout"
    ),
    CODE_DRIVE_ERROR: VendorCodeRule(
        _SC.INTERNAL, Reason.VENDOR_INTERNAL, False, "error while driving with text/audio"
    ),
    CODE_BAD_PARAMS: VendorCodeRule(
        _SC.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, False, "bad request parameters"
    ),
    # Our own credentials: the caller cannot fix it, so INTERNAL (architecture.md §6).
    CODE_UNAUTHORIZED: VendorCodeRule(
        _SC.INTERNAL, Reason.VENDOR_AUTH_FAILED, False, "unauthorized"
    ),
    CODE_CONCURRENCY_LIMIT: VendorCodeRule(
        _SC.RESOURCE_EXHAUSTED, Reason.VENDOR_QUOTA_EXCEEDED, False, "over the concurrency limit"
    ),
    # The only rate limit Tencent documents; retry_call backs off and repeats it.
    CODE_TOO_FREQUENT: VendorCodeRule(
        _SC.RESOURCE_EXHAUSTED, Reason.VENDOR_RATE_LIMITED, True, "requests too frequent"
    ),
    CODE_QUOTA: VendorCodeRule(
        _SC.RESOURCE_EXHAUSTED,
        Reason.VENDOR_QUOTA_EXCEEDED,
        False,
        "concurrency quota insufficient or expired",
    ),
    CODE_AVATAR_EXPIRED: VendorCodeRule(
        _SC.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "avatar expired"
    ),
    CODE_SESSION_CLOSED: VendorCodeRule(
        _SC.UNAVAILABLE, Reason.VENDOR_SESSION_LOST, False, "session closed"
    ),
    # Not ready yet: a short retry (startsession racing statsession) can succeed.
    CODE_SESSION_NOT_READY: VendorCodeRule(
        _SC.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, True, "session not ready"
    ),
    CODE_WRONG_TIME: VendorCodeRule(
        _SC.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "command sent at the wrong time"
    ),
    CODE_SESSION_NOT_STARTED: VendorCodeRule(
        _SC.FAILED_PRECONDITION, Reason.VENDOR_REJECTED, False, "session not started"
    ),
    # The issue asks for NOT_FOUND here: the vendor session does not exist (any more). Its
    # own reason keeps the proto's rule of one status code per reason.
    CODE_SESSION_NOT_FOUND: VendorCodeRule(
        _SC.NOT_FOUND, Reason.VENDOR_SESSION_NOT_FOUND, False, "session does not exist"
    ),
    CODE_TRTC_ARREARS: VendorCodeRule(
        _SC.RESOURCE_EXHAUSTED, Reason.VENDOR_QUOTA_EXCEEDED, False, "TRTC in arrears"
    ),
    CODE_SESSION_REPLACED: VendorCodeRule(
        _SC.UNAVAILABLE,
        Reason.VENDOR_SESSION_LOST,
        False,
        "closed because another session was created with the same UserId",
    ),
}
"""tencent.md §8 codes → gRPC code, ErrorInfo reason, retryability. Codes not listed become
INTERNAL ``VENDOR_INTERNAL`` (``core.errors.vendor_error``)."""

CREATE_OVERRIDES: dict[int, VendorCodeRule] = {
    # On createsession the "missing" thing is the project / asset, not a session (inferred:
    # the vendor documents no dedicated "project not found" code).
    CODE_SESSION_NOT_FOUND: VendorCodeRule(
        _SC.NOT_FOUND, Reason.AVATAR_NOT_FOUND, False, "avatar project or asset not found"
    ),
}
"""Code-table overrides for ``createsession`` / ``createsessionbyasset``."""


def new_req_id() -> str:
    """Return a fresh ``ReqId``: a UUID4 as 32 lowercase hex digits, no hyphens (tencent.md §3)."""
    return uuid.uuid4().hex


def string_to_sign(params: Mapping[str, str]) -> str:
    """The string Tencent signs (tencent.md §2): ``k=v`` sorted by key, ``&``-joined, raw values.

    ``signature`` itself is excluded; body parameters never take part.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def sign(params: Mapping[str, str], access_token: str) -> str:
    """Return ``base64(HMAC-SHA256(access_token, string_to_sign(params)))`` (tencent.md §2).

    The result is standard base64 with padding and is *not* URL-encoded; use
    :func:`signed_query` to build a URL.
    """
    digest = hmac.new(
        access_token.encode("utf-8"), string_to_sign(params).encode("utf-8"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_query(
    appkey: str,
    access_token: str,
    *,
    timestamp: int | None = None,
    requestid: str | None = None,
) -> str:
    """Return the signed query ``appkey=..[&requestid=..]&timestamp=..&signature=..``.

    See tencent.md §2.

    Args:
        appkey: the project's appkey.
        access_token: the project's access token (HMAC key).
        timestamp: Unix time in seconds; default now. The vendor rejects values more than
            5 minutes from its clock, so a query must be built per request.
        requestid: ``SessionId`` for the WS command channel (tencent.md §5); omitted for HTTP calls.
    """
    when = int(time.time()) if timestamp is None else timestamp
    params = {"appkey": appkey, "timestamp": str(when)}
    if requestid is not None:
        params["requestid"] = requestid
    signature = sign(params, access_token)
    query = "&".join(f"{k}={urllib.parse.quote(params[k], safe='')}" for k in sorted(params))
    # The URL-encoding of the base64 value is what the docs warn about (+, / and =).
    return f"{query}&signature={urllib.parse.quote(signature, safe='')}"


def map_code(
    code: int,
    message: str,
    *,
    overrides: Mapping[int, VendorCodeRule] | None = None,
    session: str = "",
    avatar_id: str = "",
) -> VendorError:
    """Build the :class:`VendorError` for a non-zero ``Header.Code`` / ``ErrorCode``.

    See tencent.md §8.

    Adds the metadata the API contract promises for the reason: ``session`` for
    ``VENDOR_SESSION_LOST`` / ``VENDOR_SESSION_NOT_FOUND`` and ``avatarId`` for
    ``AVATAR_NOT_FOUND``.
    """
    table = dict(CODE_TABLE)
    if overrides:
        table.update(overrides)
    error = vendor_error(VENDOR, table, code, message, credential_setting=ACCESS_TOKEN_SETTING)
    if error.session_gone and session:
        error.metadata["session"] = session
    if error.reason == Reason.AVATAR_NOT_FOUND:
        error.metadata["avatarId"] = avatar_id
    return error


def missing_credentials() -> VendorError:
    """INTERNAL ``VENDOR_AUTH_FAILED``: appkey or access token is not configured."""
    return VendorError(
        grpc.StatusCode.INTERNAL,
        Reason.VENDOR_AUTH_FAILED,
        f"tencent credentials are not configured; check the gateway setting {ACCESS_TOKEN_SETTING}"
        " and AVATAR_GATEWAY_TENCENT__APPKEY",
        vendor=VENDOR,
        metadata={"setting": ACCESS_TOKEN_SETTING},
    )


def _operation(request: httpx.Request) -> str:
    """The endpoint a request calls, for metrics: the operation, the path's last segment."""
    return request.url.path.rsplit("/", 1)[-1]


class TencentApi:
    """Signed calls to the IVH session-management API over one ``httpx.AsyncClient``.

    Args:
        appkey: project appkey (``None`` when unconfigured: every call then fails with
            ``VENDOR_AUTH_FAILED``).
        access_token: project access token.
        api_url: ``https://gw.tvs.qq.com`` or the emulator's ``http://127.0.0.1:<port>``.
        timeout_s: per-request timeout (s); a slower answer becomes ``VENDOR_TIMEOUT``.
    """

    def __init__(
        self,
        *,
        appkey: str | None,
        access_token: str | None,
        api_url: str,
        timeout_s: float = 10.0,
    ) -> None:
        self.appkey = appkey
        self._access_token = access_token
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = vendor_http_client(
            VENDOR,
            _operation,
            timeout=timeout_s,
            headers={"Content-Type": "application/json;charset=utf-8"},
        )

    def _credentials(self) -> tuple[str, str]:
        if not self.appkey or not self._access_token:
            raise missing_credentials()
        return self.appkey, self._access_token

    @property
    def ws_base_url(self) -> str:
        """``wss://host`` for an ``https`` API URL, ``ws://host`` for ``http`` (tencent.md §1)."""
        if self.api_url.startswith("https://"):
            return "wss://" + self.api_url[len("https://") :]
        if self.api_url.startswith("http://"):
            return "ws://" + self.api_url[len("http://") :]
        return self.api_url

    def command_channel_url(self, session_id: str) -> str:
        """A freshly signed command-channel URL for ``session_id`` (tencent.md §5).

        Build one per connection attempt: the timestamp in it expires after 5 minutes.
        """
        appkey, token = self._credentials()
        query = signed_query(appkey, token, requestid=session_id)
        return f"{self.ws_base_url}{COMMAND_CHANNEL_PATH}?{query}"

    async def call(
        self,
        operation: str,
        payload: Mapping[str, Any],
        answer: type[AnswerT],
        *,
        overrides: Mapping[int, VendorCodeRule] | None = None,
        session: str = "",
        avatar_id: str = "",
    ) -> AnswerT:
        """POST one session-management ``operation`` once (the path's last segment, tencent.md §4).

        Exactly one HTTP request, never repeated here: the one retry loop of an operation is
        the caller's :func:`core.resilience.retry_call`. A fresh ``ReqId``, timestamp and
        signature are made per call, so the caller may repeat it.

        Args:
            operation: ``createsession``, ``statsession``... (tencent.md §4).
            payload: the business fields; ``ReqId`` is added.
            answer: the model of the operation's ``Payload`` (:mod:`adapters.tencent.models`).
            overrides: code-table overrides for this operation (tencent.md §8).
            session: the gateway session, for error metadata.
            avatar_id: the project or asset, for ``AVATAR_NOT_FOUND`` metadata.

        Returns:
            The answer's ``Payload`` parsed into ``answer``.

        Raises:
            VendorError: from the code table for a non-zero ``Header.Code`` (a non-numeric
                code counts as 100000, a vendor failure); ``VENDOR_TIMEOUT`` /
                ``VENDOR_UNAVAILABLE`` for transport failures, a body that is not the
                envelope, or a ``Payload`` that does not fit ``answer``.
        """
        appkey, token = self._credentials()
        url = f"{self.api_url}{SESSION_PATH}{operation}?{signed_query(appkey, token)}"
        body = {"Header": {}, "Payload": {"ReqId": new_req_id(), **payload}}
        try:
            response = await self._client.post(
                url, content=json.dumps(body).encode("utf-8"), timeout=self.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise vendor_timeout(VENDOR, f"{operation}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise vendor_unavailable(VENDOR, f"{operation}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429:
            raise map_code(CODE_TOO_FREQUENT, f"HTTP 429 on {operation}")
        if response.status_code >= 500:
            raise vendor_unavailable(VENDOR, f"{operation}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            if 400 <= response.status_code < 500:
                # Not the vendor's envelope: a wrong URL or a proxy; repeating will not help.
                raise VendorError(
                    grpc.StatusCode.INTERNAL,
                    Reason.VENDOR_INTERNAL,
                    f"{VENDOR} answered {operation} with HTTP {response.status_code}",
                    vendor=VENDOR,
                ) from exc
            raise vendor_unavailable(
                VENDOR, f"{operation}: HTTP {response.status_code} with a non-JSON body"
            ) from exc
        if not isinstance(data, dict):
            raise vendor_unavailable(VENDOR, f"{operation}: unexpected answer shape")
        envelope = Envelope.model_validate(data)
        header = envelope.header or Header()
        code = CODE_SYSTEM_ERROR if header.code is None else header.code
        if code != CODE_OK:
            raise map_code(
                code, header.message, overrides=overrides, session=session, avatar_id=avatar_id
            )
        if response.status_code != 200:
            raise vendor_unavailable(VENDOR, f"{operation}: HTTP {response.status_code}")
        try:
            return answer.model_validate(envelope.payload)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
            raise vendor_unavailable(VENDOR, f"{operation}: malformed answer ({fields})") from exc

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
