"""Who is calling: API keys per tenant and JWT bearer tokens, checked by one gRPC interceptor.

The keys file (``AVATAR_GATEWAY_API_KEYS_FILE``, e.g. a mounted Kubernetes Secret) holds one
credential per line: an API key as its SHA-256, never the key itself, or the SPIFFE ID of a
client certificate (docs/security.md §2)::

    # tenant  sha256(key) in hex, or SPIFFE ID   [admin] [max_sessions=N] [creates_per_minute=N]
    acme      3b1f...e9a0                         max_sessions=20 creates_per_minute=60
    acme      spiffe://prod.example/ns/acme/sa/talker  max_sessions=20 creates_per_minute=60
    ops       9d04...77c2                         admin

A caller sends ``authorization: Bearer <key>`` (or a JWT: :class:`JwtVerifier`); without
one, under mutual TLS, the SPIFFE ID of its verified client certificate names it. The key's
SHA-256 is compared with every entry in constant time (``hmac.compare_digest``), so the time
taken does not tell how close a guess was. The file is read again when it changes (at most
once per ``RELOAD_CHECK_S``): deleting a line revokes its key without a restart; a file that
cannot be read or parsed keeps the keys last loaded, and says so in the log.

:class:`AuthInterceptor` checks every call except the health service (probes carry no
key), and hands the handler its :class:`Principal` through a context variable read with
:func:`current_principal`. A failure is UNAUTHENTICATED ``UNAUTHENTICATED`` with nothing
that would help a guesser (no "unknown key" against "revoked key").
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import structlog

from core.errors import GatewayError, Reason, to_rpc_status
from gateway.tls import peer_spiffe_id

log = structlog.get_logger("gateway.auth")

RELOAD_CHECK_S = 1.0
"""How often, at most, the keys file (and a JWKS file) is checked for changes (s)."""
JWKS_CACHE_S = 300
"""How long a JWKS fetched from a URL is used before it is fetched again (s)."""
JWKS_REFRESH_COOLDOWN_S = 30.0
"""Least time between two fetches forced by unknown ``kid``s (s): a key the issuer rotated
in is accepted at most this long after the last fetch."""
JWKS_FETCH_TIMEOUT_S = 5.0
"""Timeout of one JWKS fetch (s)."""
OPEN_SERVICES = ("/grpc.health.v1.Health/",)
"""Method prefixes answered without a key: health (Kubernetes probes carry none)."""
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LINE = re.compile(
    r"^(?P<tenant>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})\s+"
    r"(?:(?P<hash>[0-9a-fA-F]{64})|(?P<spiffe>spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*))"
    r"(?P<options>(?:\s+(?:admin|max_sessions=[1-9][0-9]{0,6}|creates_per_minute=[1-9][0-9]{0,6}))*)"
    r"\s*$"
)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller.

    Attributes:
        tenant: the tenant the key belongs to ("" when the server runs without keys).
        admin: may see and use every tenant's sessions.
        max_sessions: the tenant's live sessions at most, across replicas (``None``: no
            quota).
        creates_per_minute: the tenant's CreateSession calls per sliding minute at most,
            across replicas (``None``: no quota).
    """

    tenant: str
    admin: bool = False
    max_sessions: int | None = None
    creates_per_minute: int | None = None

    def may_use(self, tenant: str) -> bool:
        """Whether this caller may see or use a session of ``tenant``."""
        return self.admin or self.tenant == tenant


ANONYMOUS = Principal("", admin=True)
"""The caller when no keys are configured: one tenant, every session (sandbox, tests)."""

if TYPE_CHECKING:
    MethodHandler = grpc.RpcMethodHandler[Any, Any]

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "avatar_gateway_principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The caller of the RPC being handled (:data:`ANONYMOUS` without keys)."""
    return _principal.get()


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key: what the keys file stores."""
    return hashlib.sha256(key.encode()).hexdigest()


def unauthenticated() -> GatewayError:
    """UNAUTHENTICATED ``UNAUTHENTICATED``: no valid credential (nothing more is said)."""
    return GatewayError(
        grpc.StatusCode.UNAUTHENTICATED,
        Reason.UNAUTHENTICATED,
        "a valid credential is required (authorization: Bearer <api key>)",
    )


class KeysFileError(ValueError):
    """The keys file cannot be read or has a line that is not ``tenant credential [options]``."""


class ApiKeys:
    """The tenants' API keys (as hashes) and SPIFFE IDs, from a file re-read when it changes.

    Args:
        path: the keys file (format in the module docstring).
        max_sessions: every tenant's live-session quota unless its line sets one.
        creates_per_minute: every tenant's CreateSession quota unless its line sets one.

    Raises:
        KeysFileError: at construction, when the file cannot be read or parsed (a
            misconfigured server must not start open or closed by accident).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_sessions: int | None = None,
        creates_per_minute: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._defaults = {"max_sessions": max_sessions, "creates_per_minute": creates_per_minute}
        self._entries: list[tuple[bytes, Principal]] = []
        self._spiffe: dict[str, Principal] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load()

    def __len__(self) -> int:
        return len(self._entries) + len(self._spiffe)

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)  # follows the symlinks a mounted Secret swaps on update
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        try:
            stamp = self._file_stamp()
            text = self.path.read_text()
        except OSError as exc:
            raise KeysFileError(f"{self.path} cannot be read: {exc.strerror}") from None
        entries: list[tuple[bytes, Principal]] = []
        spiffe: dict[str, Principal] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match is None:
                raise KeysFileError(
                    f"{self.path} line {number}: expected 'tenant <sha256 | spiffe://...> "
                    "[admin] [max_sessions=N] [creates_per_minute=N]'"
                )
            options = match["options"].split()
            quotas: dict[str, int | None] = dict(self._defaults)
            for option in options:
                name, _, value = option.partition("=")
                if value:
                    quotas[name] = int(value)
            principal = Principal(
                match["tenant"],
                admin="admin" in options,
                max_sessions=quotas["max_sessions"],
                creates_per_minute=quotas["creates_per_minute"],
            )
            if match["spiffe"]:
                if spiffe.get(match["spiffe"], principal) != principal:
                    raise KeysFileError(
                        f"{self.path} line {number}: {match['spiffe']} is already another "
                        "tenant's or has other options"
                    )
                spiffe[match["spiffe"]] = principal
            else:
                entries.append((bytes.fromhex(match["hash"]), principal))
        self._entries = entries
        self._spiffe = spiffe
        self._stamp = stamp

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        try:
            if self._file_stamp() == self._stamp:
                return
            self._load()
            log.info("api_keys_reloaded", keys=len(self._entries), spiffe_ids=len(self._spiffe))
        except (OSError, KeysFileError) as exc:
            log.error("api_keys_not_reloaded", error=str(exc), keys=len(self))

    def principal(self, key: str) -> Principal | None:
        """The tenant of ``key``, or ``None`` when it is not a current key."""
        self._maybe_reload()
        digest = hashlib.sha256(key.encode()).digest()
        found: Principal | None = None
        for stored, principal in self._entries:  # every entry: constant time in the key
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    def spiffe_principal(self, spiffe_id: str) -> Principal | None:
        """The tenant of a verified client certificate's SPIFFE ID, or ``None``.

        An exact match: a SPIFFE ID is a name, not a secret, and only a certificate signed
        by the configured client CA (gateway/tls.py) gets this far.
        """
        self._maybe_reload()
        return self._spiffe.get(spiffe_id)


class JwksError(ValueError):
    """The JWKS file cannot be read or holds no usable key, or the JWT settings are incomplete."""


class JwtVerifier:
    """JWT bearer tokens, verified against a JWKS (PyJWT; docs/security.md §2.1).

    A token is accepted when its signature verifies with the JWKS key its header names
    (``kid``), with an allowed algorithm (``algorithms``: asymmetric only, never ``none``),
    and its ``exp``, ``iss`` and ``aud`` are present and right (``nbf``, ``iat`` too when
    present), within ``leeway_s`` of clock skew. The tenant is the ``tenant_claim`` claim; the
    caller is an admin when the ``roles_claim`` claim (a string or a list) holds ``admin``.

    Args:
        jwks: a file (re-read when it changes, like the keys file) or an ``http(s)://`` URL
            (fetched by PyJWT's ``PyJWKClient``, cached ``JWKS_CACHE_S``, fetched again for
            an unknown ``kid`` at most once per ``JWKS_REFRESH_COOLDOWN_S``: an issuer's key
            rotation needs no restart).
        issuer: the required ``iss``.
        audience: the required ``aud``.
        tenant_claim: the claim naming the tenant.
        roles_claim: the claim listing roles.
        leeway_s: clock skew allowed (s).
        max_sessions: every tenant's live-session quota.
        creates_per_minute: every tenant's CreateSession quota.

    Raises:
        JwksError: at construction, a JWKS file that cannot be read or holds no key.
    """

    ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")

    def __init__(
        self,
        jwks: str,
        *,
        issuer: str,
        audience: str,
        tenant_claim: str = "tenant",
        roles_claim: str = "roles",
        leeway_s: float = 30.0,
        max_sessions: int | None = None,
        creates_per_minute: int | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s
        self._quotas = {"max_sessions": max_sessions, "creates_per_minute": creates_per_minute}
        self._client: jwt.PyJWKClient | None = None
        self._path: Path | None = None
        self._keys: dict[str, Any] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        if jwks.startswith(("https://", "http://")):
            # The JWK set is cached (not each key forever: a key the issuer withdraws stops
            # working within JWKS_CACHE_S); an unknown kid refreshes it, at most once per
            # cooldown, so a flood of made-up kids cannot hammer the issuer.
            self._client = jwt.PyJWKClient(
                jwks,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=JWKS_CACHE_S,
                cooldown_duration=JWKS_REFRESH_COOLDOWN_S,
                timeout=JWKS_FETCH_TIMEOUT_S,
            )
        else:
            self._path = Path(jwks)
            self._load_file()

    def _load_file(self) -> None:
        assert self._path is not None
        try:
            st = os.stat(self._path)
            keys = jwt.PyJWKSet.from_json(self._path.read_text())
        except (OSError, jwt.PyJWTError, ValueError) as exc:
            raise JwksError(f"JWKS {self._path} cannot be used: {exc}") from None
        self._keys = {k.key_id: k for k in keys.keys if k.key_id}
        if not self._keys:
            raise JwksError(f"JWKS {self._path} has no key with a kid")
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    def _file_key(self, kid: str) -> Any:
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_S:
            self._checked = now
            assert self._path is not None
            try:
                st = os.stat(self._path)
                if (st.st_ino, st.st_mtime_ns, st.st_size) != self._stamp:
                    self._load_file()
                    log.info("jwks_reloaded", keys=len(self._keys))
            except (OSError, JwksError) as exc:
                log.error("jwks_not_reloaded", error=str(exc), keys=len(self._keys))
        key = self._keys.get(kid)
        return key.key if key is not None else None

    async def principal(self, token: str) -> Principal | None:
        """The caller a valid token names, or ``None`` (any failure; logged without detail)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str):
                return None
            if self._client is not None:
                # A fetch (for a key not cached yet) is blocking I/O: off the event loop.
                signing = await asyncio.to_thread(self._client.get_signing_key, kid)
                key = signing.key
            else:
                key = self._file_key(kid)
                if key is None:
                    return None
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            log.debug("jwt_refused", error=type(exc).__name__)
            return None
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
            log.debug("jwt_refused", error="tenant claim missing or malformed")
            return None
        roles = claims.get(self.roles_claim, [])
        roles = [roles] if isinstance(roles, str) else roles
        return Principal(
            tenant,
            admin=isinstance(roles, list) and "admin" in roles,
            max_sessions=self._quotas["max_sessions"],
            creates_per_minute=self._quotas["creates_per_minute"],
        )


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates every call but health; the handler runs with its :class:`Principal`.

    A bearer credential shaped like a JWT (three dot-separated parts) goes to ``jwt``; any
    other to ``keys``. A call without one is named by its verified client certificate's
    SPIFFE ID (mutual TLS; ``keys`` maps it to a tenant). A bearer credential that fails is
    refused even when a certificate would name the caller: a caller that sent a wrong
    credential is told so rather than served as someone else.

    Args:
        keys: the API keys and SPIFFE IDs (``None``: none accepted).
        jwt_verifier: the JWT verifier (``None``: no JWT accepted).
        on_refused: called with the method name of each refused call (audit, metrics).
    """

    def __init__(
        self,
        keys: ApiKeys | None,
        jwt_verifier: JwtVerifier | None,
        on_refused: Callable[[str], None],
    ) -> None:
        self.keys = keys
        self.jwt = jwt_verifier
        self._on_refused = on_refused

    async def authenticate(
        self, token: str | None, auth_context: Mapping[str, Iterable[bytes]] | None = None
    ) -> Principal | None:
        """The caller a bearer credential, else a client certificate, names; or ``None``.

        Args:
            token: the bearer credential (``None``: the call carried none).
            auth_context: the call's ``context.auth_context()`` (TLS peer properties).
        """
        if token is None:
            spiffe_id = peer_spiffe_id(auth_context or {})
            if spiffe_id is None or self.keys is None:
                return None
            return self.keys.spiffe_principal(spiffe_id)
        if token.count(".") == 2:
            return await self.jwt.principal(token) if self.jwt is not None else None
        return self.keys.principal(token) if self.keys is not None else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler:
        """Pass the call on to a handler that authenticates it first (with its context)."""
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        token = _bearer(handler_call_details.invocation_metadata)

        async def principal(context: grpc.aio.ServicerContext[Any, Any]) -> Principal | None:
            found = await self.authenticate(token, context.auth_context())
            if found is None:
                self._on_refused(method)
            return found

        return _authenticating(handler, principal)


def _authenticating(
    handler: MethodHandler,
    principal_of: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[Principal | None]],
) -> MethodHandler:
    """``handler`` run with the call's principal as :func:`current_principal`.

    A call without one ends with UNAUTHENTICATED before the handler sees it.
    """
    status = to_rpc_status(unauthenticated())

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal = await principal_of(context)
        if principal is None:
            await context.abort(status.code, status.details, status.trailing_metadata)
        token = _principal.set(principal)
        try:
            behaviour: Any = handler.unary_unary or handler.stream_unary
            return await behaviour(request, context)
        finally:
            _principal.reset(token)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal = await principal_of(context)
        if principal is None:
            await context.abort(status.code, status.details, status.trailing_metadata)
        token = _principal.set(principal)
        try:
            behaviour: Any = handler.unary_stream or handler.stream_stream
            stream: AsyncIterator[Any] = behaviour(request, context)
            async for response in stream:
                yield response
        finally:
            _principal.reset(token)

    return same_shape(handler, unary, streaming)


def same_shape(
    handler: MethodHandler,
    unary: Callable[..., Any],
    streaming: Callable[..., Any],
) -> MethodHandler:
    """A handler of ``handler``'s kind and (de)serializers, behaving as ``unary`` or ``streaming``.

    ``unary`` serves unary-unary and stream-unary methods, ``streaming`` the response-streaming
    ones: how a server interceptor wraps a method whatever its kind.
    """
    args = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **args)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **args)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, **args)
    return grpc.stream_stream_rpc_method_handler(streaming, **args)
