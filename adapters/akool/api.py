"""Akool Streaming Avatar REST client: authentication, the envelope, the code table.

akool.md §1–3 and §8. Every answer is ``{"code", "msg", "data"}`` with
``code == 1000`` on success (getToken puts ``token`` at the top level instead of ``data``).
Two ways to authenticate (akool.md §1):

* ``x-api-key: <API key>`` (recommended; the key is the console's "API Key", which is the same
  value as the legacy clientSecret);
* the legacy flow: ``POST /api/open/v3/getToken {clientId, clientSecret}`` returns a bearer
  token valid for more than a year. It is cached and fetched again once when a call answers
  1101 (illegal or expired token), so a revoked token heals without a restart (the Akool
  LiveKit plugin caches it forever: architecture.md §5).

Only one of the two headers is ever sent: with both, Akool lets ``Authorization`` win.

Answers are parsed into :mod:`adapters.akool.models` here, at the boundary: the envelope first
(its ``code`` decides), then the endpoint's ``data``.

**One retry budget per call.** :meth:`AkoolApi.call` is the only retry loop (``retry_call`` with
:data:`DEFAULT_BACKOFF`, 4 attempts); each attempt makes at most one HTTP request to the
endpoint, preceded, with the token flow, by at most one getToken. The 1101 refresh is one of
those attempts, not a loop of its own, and happens once per call. So one call makes at most
:data:`MAX_ATTEMPTS` requests to its endpoint, and with the token flow at most
:data:`MAX_TOKEN_FETCHES_PER_CALL` getToken requests more (the first token, one refresh):
4 HTTP requests with an API key, 6 with the token flow.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
from pydantic import ValidationError

from adapters.akool.models import (
    AvatarPage,
    CreatedSession,
    Envelope,
    Session,
    SessionPage,
    TokenAnswer,
)
from adapters.akool.settings import AkoolSettings
from core.errors import (
    Reason,
    VendorCodeRule,
    VendorError,
    vendor_error,
    vendor_timeout,
    vendor_unavailable,
)
from core.resilience import Backoff, retry_call
from core.telemetry import vendor_http_client

VENDOR = "akool"
API_KEY_SETTING = "AVATAR_GATEWAY_AKOOL__API_KEY"
CLIENT_SECRET_SETTING = "AVATAR_GATEWAY_AKOOL__CLIENT_SECRET"

CODE_OK = 1000
CODE_TOKEN_INVALID = 1101
CODE_NOT_FOUND = 1008
CODE_SESSION_NOT_FOUND = 1216
CODE_SESSION_CLOSED = 1219

# Paths (akool.md §3), relative to the configured base URL.
PATH_GET_TOKEN = "/api/open/v3/getToken"
PATH_AVATAR_LIST = "/api/open/v4/liveAvatar/avatar/list"
PATH_SESSION_CREATE = "/api/open/v4/liveAvatar/session/create"
PATH_SESSION_DETAIL = "/api/open/v4/liveAvatar/session/detail"
PATH_SESSION_CLOSE = "/api/open/v4/liveAvatar/session/close"
PATH_SESSION_LIST = "/api/open/v4/liveAvatar/session/list"

_C = grpc.StatusCode


def _rule(
    code: grpc.StatusCode, reason: Reason, meaning: str, retryable: bool = False
) -> VendorCodeRule:
    return VendorCodeRule(code, reason, retryable, meaning)


_REJECTED = Reason.VENDOR_REJECTED
_QUOTA = Reason.VENDOR_QUOTA_EXCEEDED
_AUTH = Reason.VENDOR_AUTH_FAILED

CODE_TABLE: dict[int, VendorCodeRule] = {
    # akool.md §8 ai-tools-suite/error-code.mdx. A rejected call did nothing on Akool's side, so the
    # retryable ones (1005) may be repeated even for session/create.
    1003: _rule(_C.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, "parameter error"),
    1004: _rule(_C.FAILED_PRECONDITION, _REJECTED, "needs verification"),
    1005: _rule(_C.RESOURCE_EXHAUSTED, Reason.VENDOR_RATE_LIMITED, "too frequent", retryable=True),
    1006: _rule(_C.RESOURCE_EXHAUSTED, _QUOTA, "insufficient quota"),
    1008: _rule(_C.NOT_FOUND, Reason.AVATAR_NOT_FOUND, "content does not exist"),
    1009: _rule(_C.FAILED_PRECONDITION, _REJECTED, "permission denied"),
    1010: _rule(_C.FAILED_PRECONDITION, _REJECTED, "cannot operate"),
    1011: _rule(_C.FAILED_PRECONDITION, _REJECTED, "already operated"),
    1014: _rule(_C.FAILED_PRECONDITION, _REJECTED, "resource missing"),
    # Our own credentials are wrong or the account is blocked: an operator must act.
    1101: _rule(_C.INTERNAL, _AUTH, "illegal or expired token"),
    1102: _rule(_C.INTERNAL, _AUTH, "token empty"),
    1103: _rule(_C.RESOURCE_EXHAUSTED, _QUOTA, "unpaid"),
    1104: _rule(_C.RESOURCE_EXHAUSTED, _QUOTA, "insufficient credits"),
    1105: _rule(_C.FAILED_PRECONDITION, _REJECTED, "avatar processing error"),
    1200: _rule(_C.INTERNAL, _AUTH, "account blocked"),
    1213: _rule(_C.FAILED_PRECONDITION, _REJECTED, "subscription required"),
    1214: _rule(_C.FAILED_PRECONDITION, _REJECTED, "liveAvatar in processing"),
    # Busy is transient but session/create is not repeated blindly: the caller decides.
    1215: _rule(_C.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, "liveAvatar busy"),
    1216: _rule(_C.NOT_FOUND, Reason.SESSION_NOT_FOUND, "liveAvatar session does not exist"),
    1217: _rule(_C.INTERNAL, Reason.VENDOR_INTERNAL, "liveAvatar callback error"),
    1218: _rule(_C.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, "liveAvatar processing error"),
    1219: _rule(_C.FAILED_PRECONDITION, _REJECTED, "liveAvatar closed"),
    1220: _rule(_C.FAILED_PRECONDITION, _REJECTED, "upload avatar error"),
    1221: _rule(_C.FAILED_PRECONDITION, _REJECTED, "not subscribed"),
    1222: _rule(_C.FAILED_PRECONDITION, _REJECTED, "resource already exists"),
    1223: _rule(_C.RESOURCE_EXHAUSTED, _QUOTA, "liveAvatar upload exceeded"),
}
"""Akool business codes (akool.md §8) → gRPC. Undocumented codes (e.g. 1201–1212) →
VENDOR_INTERNAL."""

SESSION_CODE_TABLE: dict[int, VendorCodeRule] = {
    **CODE_TABLE,
    # On session/detail and session/close the missing "content" is the session itself.
    1008: _rule(_C.NOT_FOUND, Reason.SESSION_NOT_FOUND, "content does not exist"),
}
"""The code table for calls about one session (detail, close)."""

ALREADY_CLOSED_CODES = frozenset({CODE_NOT_FOUND, CODE_SESSION_NOT_FOUND, CODE_SESSION_CLOSED})
"""session/close answers that mean the session is already gone (close is idempotent)."""

DEFAULT_BACKOFF = Backoff(base_s=0.2, cap_s=2.0, max_attempts=4)
MAX_ATTEMPTS = DEFAULT_BACKOFF.max_attempts
"""Most HTTP requests one :meth:`AkoolApi.call` makes to its endpoint (default backoff)."""
MAX_TOKEN_FETCHES_PER_CALL = 2
"""Most getToken requests one call adds with the token flow: the first token, one refresh."""


def vendor_code_of(exc: VendorError) -> int | None:
    """The Akool business code of ``exc`` (``None`` for transport errors)."""
    return int(exc.vendor_code) if exc.vendor_code.isdigit() else None


def _endpoint(request: httpx.Request) -> str:
    """The endpoint a request calls, for metrics: its path (``PATH_*``, no ids in them)."""
    return request.url.path


class AkoolApi:
    """Authenticated Akool REST calls with the envelope, code table and retries.

    Args:
        settings: API key, or client id + secret, and ``api_url``.
        timeout_s: per-request timeout (s).
        backoff: retries of retryable failures (1005 too frequent, unreachable, ...).
    """

    def __init__(
        self,
        settings: AkoolSettings,
        *,
        timeout_s: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.base_url = settings.api_url.rstrip("/")
        self._api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self._client_id = settings.client_id
        self._client_secret = (
            settings.client_secret.get_secret_value() if settings.client_secret else None
        )
        self.backoff = backoff
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0
        """How many times a bearer token was fetched (tests and debugging)."""
        self.http = vendor_http_client(VENDOR, _endpoint, timeout=timeout_s)

    @property
    def credential_setting(self) -> str:
        """The setting an operator fixes when Akool rejects our credentials."""
        return API_KEY_SETTING if self._api_key or not self._client_id else CLIENT_SECRET_SETTING

    def _missing_credentials(self) -> VendorError:
        return VendorError(
            _C.INTERNAL,
            _AUTH,
            f"no Akool credentials are configured; set the gateway setting {API_KEY_SETTING}",
            vendor=VENDOR,
            metadata={"setting": API_KEY_SETTING},
        )

    async def token(self, *, stale: str | None = None) -> str:
        """The cached bearer token; fetched when there is none or it equals ``stale``.

        Concurrent callers that all saw the same stale token fetch one new token, not one
        each (the lock plus the ``stale`` comparison).
        """
        async with self._token_lock:
            if self._token is None or self._token == stale:
                self._token = await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> str:
        if not (self._client_id and self._client_secret):
            raise self._missing_credentials()
        self.token_fetches += 1
        envelope = await self._send(
            "POST",
            PATH_GET_TOKEN,
            headers={},
            params=None,
            body={"clientId": self._client_id, "clientSecret": self._client_secret},
            idempotent=True,
        )
        self._check(envelope, CODE_TABLE)
        try:
            return TokenAnswer.model_validate({"token": envelope.token}).token
        except ValidationError:
            raise vendor_unavailable(VENDOR, "getToken answered without a token") from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        idempotent: bool,
    ) -> Envelope:
        """One HTTP exchange; returns the parsed envelope (code not yet checked)."""
        url = self.base_url + path
        try:
            response = await self.http.request(
                method, url, params=params, json=body, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached Akool: repeating is safe for every call.
            raise vendor_unavailable(VENDOR, f"{path}: {type(exc).__name__}") from None
        except httpx.TimeoutException as exc:
            error = vendor_timeout(VENDOR, f"{path}: {type(exc).__name__}")
            # The request may have been processed (a session created): only repeat reads.
            error.retryable = idempotent
            raise error from None
        except httpx.HTTPError as exc:
            error = vendor_unavailable(VENDOR, f"{path}: {type(exc).__name__}")
            error.retryable = idempotent
            raise error from None
        # The demo accepts an answer only when code is a number and msg a string (akool.md §2).
        try:
            return Envelope.model_validate_json(response.content)
        except ValidationError:  # not JSON, not an object, or no envelope
            raise self._http_error(path, response.status_code, idempotent) from None

    def _http_error(self, path: str, status: int, idempotent: bool) -> VendorError:
        """An answer without the envelope: judge by the HTTP status (undocumented, akool.md §2)."""
        detail = f"{path}: HTTP {status} without the {{code,msg,data}} envelope"
        if status in (401, 403):
            setting = self.credential_setting
            return VendorError(
                _C.INTERNAL,
                _AUTH,
                f"{VENDOR} rejected the gateway's credentials ({detail}); "
                f"check the gateway setting {setting}",
                vendor=VENDOR,
                metadata={"setting": setting},
            )
        if status == 429:
            return VendorError(
                _C.RESOURCE_EXHAUSTED,
                Reason.VENDOR_RATE_LIMITED,
                f"{VENDOR} is rate limiting the gateway ({detail})",
                vendor=VENDOR,
                retryable=True,
            )
        error = vendor_unavailable(VENDOR, detail)
        error.retryable = idempotent and status >= 500
        return error

    def _error(self, envelope: Envelope, table: dict[int, VendorCodeRule]) -> VendorError:
        return vendor_error(
            VENDOR, table, envelope.code, envelope.msg, credential_setting=self.credential_setting
        )

    def _check(self, envelope: Envelope, table: dict[int, VendorCodeRule]) -> None:
        if envelope.code != CODE_OK:
            raise self._error(envelope, table)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        table: dict[int, VendorCodeRule] = CODE_TABLE,
    ) -> Any:
        """Call ``path`` and return the envelope's ``data`` (may be ``None``, not yet validated).

        Retryable failures are repeated with :attr:`backoff` (``retry_call``), the call's one
        retry budget. A call that is not ``idempotent`` is repeated only when Akool certainly
        did not act on it: a business-code rejection or a connection that never opened.

        With the token flow, a 1101 on the cached token (akool.md §1) marks it stale and
        spends one attempt: the next attempt fetches one fresh token first. That happens
        once per call; a second 1101 is a real credential problem (VENDOR_AUTH_FAILED).

        HTTP requests: at most ``backoff.max_attempts`` (4 by default) to ``path``, and with
        the token flow at most 2 getToken more (module docstring).

        Raises:
            VendorError: the mapped business code, VENDOR_UNAVAILABLE or VENDOR_TIMEOUT.
        """
        stale: str | None = None  # the token that got this call's one 1101

        async def attempt() -> Any:
            nonlocal stale
            if self._api_key:
                headers: dict[str, str] = {"x-api-key": self._api_key}
                token = None
            else:
                token = await self.token(stale=stale)
                headers = {"Authorization": f"Bearer {token}"}
            envelope = await self._send(
                method, path, headers=headers, params=params, body=body, idempotent=idempotent
            )
            if envelope.code == CODE_TOKEN_INVALID and token is not None and stale is None:
                # akool.md §1: the cached token was revoked or expired. Akool did nothing, so
                # the call is repeated (even a create) within this budget, with a fresh token.
                stale = token
                error = self._error(envelope, table)
                error.retryable = True
                raise error
            self._check(envelope, table)
            return envelope.data

        return await retry_call(attempt, backoff=self.backoff, operation=path)

    async def list_avatars(self, page: int, size: int) -> AvatarPage:
        """``GET avatar/list`` (akool.md §3): ``{count, result[Avatar]}``; ``size`` ≤ 100.

        One :meth:`call`. ``data`` that is not an object reads as an empty page.
        """
        data = await self.call(
            "GET", PATH_AVATAR_LIST, params={"page": page, "size": size, "platform": "open"}
        )
        return AvatarPage.model_validate(data if isinstance(data, dict) else {})

    async def create_session(self, body: dict[str, Any]) -> CreatedSession:
        """``POST session/create`` (akool.md §4); returns ``data`` (``_id``, ``status``, ...).

        One :meth:`call`, not idempotent: repeated only when Akool certainly did not act.

        Raises:
            VendorError: VENDOR_UNAVAILABLE (not retried) when the answer has no string
                ``data._id``: Akool may have created the session, so the caller looks for it.
        """
        data = await self.call("POST", PATH_SESSION_CREATE, body=body, idempotent=False)
        try:
            return CreatedSession.model_validate(data)
        except ValidationError:
            raise vendor_unavailable(VENDOR, "session/create answered without data._id") from None

    async def session_detail(self, session_id: str) -> Session:
        """``GET session/detail?id=`` (akool.md §3); same shape as create.

        One :meth:`call`. ``data`` that is not an object reads as a session with no fields.
        """
        data = await self.call(
            "GET", PATH_SESSION_DETAIL, params={"id": session_id}, table=SESSION_CODE_TABLE
        )
        return Session.model_validate(data if isinstance(data, dict) else {})

    async def close_session(self, session_id: str) -> bool:
        """``POST session/close {"id": ...}`` (akool.md §3, the documented key); one :meth:`call`.

        Returns:
            ``True`` if this call closed it, ``False`` if it was already closed or unknown.
        """
        try:
            await self.call(
                "POST", PATH_SESSION_CLOSE, body={"id": session_id}, table=SESSION_CODE_TABLE
            )
        except VendorError as exc:
            if vendor_code_of(exc) in ALREADY_CLOSED_CODES:
                return False
            raise
        return True

    async def list_sessions(self, page: int, size: int, status: int) -> SessionPage:
        """``GET session/list?page&size&status`` (akool.md §3): ``{count, result[Session]}``.

        One :meth:`call`. ``data`` that is not an object reads as an empty page.
        """
        data = await self.call(
            "GET", PATH_SESSION_LIST, params={"page": page, "size": size, "status": status}
        )
        return SessionPage.model_validate(data if isinstance(data, dict) else {})

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
