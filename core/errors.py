"""The one place where gateway and vendor errors become gRPC statuses.

Every failure the gateway reports is a :class:`GatewayError`: a canonical gRPC code, an
``ErrorInfo`` reason (UPPER_SNAKE, AIP-193), a developer-facing message and lowerCamelCase
metadata. Servicers never build statuses by hand; they raise ``GatewayError`` and
:func:`to_rpc_status` turns it into a ``grpc.Status`` with exactly one ``google.rpc.ErrorInfo``
in its details. The reasons and their metadata keys are listed in the proto's service
comment, which is the contract; the constructors below keep the metadata keys consistent.

Vendor adapters raise :class:`VendorError` (a ``GatewayError``) built from their vendor's code
table through :func:`vendor_error`, so the vendor facts stay in the vendor package and the
mapping to gRPC stays here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core.telemetry import telemetry

DOMAIN = "avatargateway.dev"
"""``ErrorInfo.domain`` of every error this service emits."""

_CODE_TO_PB: dict[grpc.StatusCode, int] = {sc: sc.value[0] for sc in grpc.StatusCode}


class Reason(enum.StrEnum):
    """``ErrorInfo`` reasons of statuses: exactly the proto's error table.

    ``tests/unit/test_error_reasons_documented.py`` checks this enum against the table both
    ways, and every reason the code passes to an error constructor against its code there.
    """

    CONFIG_NOT_FIRST = "CONFIG_NOT_FIRST"
    CONFIG_ALREADY_SENT = "CONFIG_ALREADY_SENT"
    INVALID_SESSION_NAME = "INVALID_SESSION_NAME"
    UNSUPPORTED_AUDIO_FORMAT = "UNSUPPORTED_AUDIO_FORMAT"
    CHUNK_TOO_LARGE = "CHUNK_TOO_LARGE"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNKNOWN_VENDOR = "UNKNOWN_VENDOR"
    AVATAR_NOT_FOUND = "AVATAR_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_CLOSED = "SESSION_CLOSED"
    SESSION_NOT_READY = "SESSION_NOT_READY"
    DRIVE_ALREADY_ACTIVE = "DRIVE_ALREADY_ACTIVE"
    DRIVE_PREEMPTED = "DRIVE_PREEMPTED"
    DRIVE_TAKEN_OVER = "DRIVE_TAKEN_OVER"
    AUDIO_NOT_SUPPORTED = "AUDIO_NOT_SUPPORTED"
    TEXT_NOT_SUPPORTED = "TEXT_NOT_SUPPORTED"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    VENDOR_AUTH_FAILED = "VENDOR_AUTH_FAILED"
    VENDOR_RATE_LIMITED = "VENDOR_RATE_LIMITED"
    VENDOR_QUOTA_EXCEEDED = "VENDOR_QUOTA_EXCEEDED"
    VENDOR_UNAVAILABLE = "VENDOR_UNAVAILABLE"
    VENDOR_TIMEOUT = "VENDOR_TIMEOUT"
    VENDOR_SESSION_LOST = "VENDOR_SESSION_LOST"
    VENDOR_SESSION_NOT_FOUND = "VENDOR_SESSION_NOT_FOUND"
    VENDOR_SESSION_FAILED = "VENDOR_SESSION_FAILED"
    VENDOR_REJECTED = "VENDOR_REJECTED"
    VENDOR_INVALID_ARGUMENT = "VENDOR_INVALID_ARGUMENT"
    VENDOR_INTERNAL = "VENDOR_INTERNAL"
    SERVER_DRAINING = "SERVER_DRAINING"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TENANT_QUOTA_EXCEEDED = "TENANT_QUOTA_EXCEEDED"
    SESSION_LIMIT_REACHED = "SESSION_LIMIT_REACHED"
    GATEWAY_OVERLOADED = "GATEWAY_OVERLOADED"
    INTERNAL = "INTERNAL"


class EventReason(enum.StrEnum):
    """Reasons of ``warning`` and ``turn_failed`` responses: events, not statuses.

    A vendor event may also carry a :class:`Reason` (e.g. ``VENDOR_SESSION_LOST``).
    """

    SPEECH_END_TIMEOUT = "SPEECH_END_TIMEOUT"
    VENDOR_AUTO_FINALIZED = "VENDOR_AUTO_FINALIZED"
    VENDOR_CHANNEL_ERROR = "VENDOR_CHANNEL_ERROR"
    VENDOR_CLEAR_BUFFER_FAILED = "VENDOR_CLEAR_BUFFER_FAILED"
    VENDOR_COMMAND_FAILED = "VENDOR_COMMAND_FAILED"
    VENDOR_COMMAND_UNACKNOWLEDGED = "VENDOR_COMMAND_UNACKNOWLEDGED"
    VENDOR_DRIVE_ERROR = "VENDOR_DRIVE_ERROR"
    VENDOR_DRIVE_FAILED = "VENDOR_DRIVE_FAILED"
    VENDOR_INTERRUPT_FAILED = "VENDOR_INTERRUPT_FAILED"
    VENDOR_RECONNECTED = "VENDOR_RECONNECTED"
    VENDOR_SWITCH_TIMEOUT = "VENDOR_SWITCH_TIMEOUT"


SESSION_GONE = frozenset({Reason.VENDOR_SESSION_LOST, Reason.VENDOR_SESSION_NOT_FOUND})
"""Reasons that mean the vendor session no longer exists: the gateway closes it."""


class GatewayError(Exception):
    """A failure with a canonical gRPC code and a ``google.rpc.ErrorInfo``.

    Args:
        code: canonical gRPC status code.
        reason: ErrorInfo reason, UPPER_SNAKE_CASE, at most 63 characters.
        message: developer-facing English message; every dynamic value in it is also in
            ``metadata``.
        metadata: ErrorInfo metadata, lowerCamelCase keys.
        retry_after_s: when set, a ``google.rpc.RetryInfo`` detail is added (seconds).
        quota_violation: ``(subject, description)``: a ``google.rpc.QuotaFailure`` detail
            with that one violation is added.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: Reason,
        message: str,
        metadata: dict[str, str] | None = None,
        *,
        retry_after_s: float | None = None,
        quota_violation: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s
        self.quota_violation = quota_violation

    @property
    def session_gone(self) -> bool:
        """Whether the error means the vendor session no longer exists (see ``SESSION_GONE``)."""
        return self.reason in SESSION_GONE

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.reason}, {self.message!r})"


class VendorError(GatewayError):
    """A vendor call failed.

    Args:
        vendor: vendor id (``zegocloud``, ``tencent``, ``akool``).
        vendor_code: the vendor's own code as a string ("" when there was none, e.g. a
            connection error).
        retryable: whether repeating the same call may succeed (rate limits, busy, 5xx,
            timeouts). Shared retry code only repeats retryable, idempotent calls.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: Reason,
        message: str,
        *,
        vendor: str,
        vendor_code: str = "",
        retryable: bool = False,
        metadata: dict[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        md = {"vendor": vendor}
        if vendor_code:
            md["vendorCode"] = vendor_code
        md.update(metadata or {})
        super().__init__(code, reason, message, md, retry_after_s=retry_after_s)
        self.vendor = vendor
        self.vendor_code = vendor_code
        self.retryable = retryable


@dataclass(frozen=True)
class VendorCodeRule:
    """How one vendor business code maps to a gRPC failure.

    Attributes:
        code: gRPC status code.
        reason: ErrorInfo reason.
        retryable: whether the shared retry helper may repeat the call.
        meaning: the vendor's documented meaning, used in the message.
    """

    code: grpc.StatusCode
    reason: Reason
    retryable: bool
    meaning: str


def vendor_error(
    vendor: str,
    table: dict[int, VendorCodeRule],
    vendor_code: int,
    vendor_message: str,
    *,
    credential_setting: str = "",
) -> VendorError:
    """Build the :class:`VendorError` for a vendor business code from the vendor's table.

    Codes missing from the table become INTERNAL ``VENDOR_INTERNAL`` (not retryable).
    ``VENDOR_AUTH_FAILED`` messages name ``credential_setting``, the configuration variable
    an operator must fix (the caller cannot fix it). Each one is reported to
    ``core.telemetry`` (the vendor answered with an error), by reason.
    """
    rule = table.get(vendor_code) or VendorCodeRule(
        grpc.StatusCode.INTERNAL, Reason.VENDOR_INTERNAL, False, "undocumented vendor error"
    )
    telemetry().vendor_error(vendor, rule.reason)
    message = f"{vendor} returned code {vendor_code} ({rule.meaning})"
    if vendor_message:
        message += f": {vendor_message}"
    metadata: dict[str, str] = {}
    if rule.reason == Reason.VENDOR_AUTH_FAILED:
        message += f"; check the gateway setting {credential_setting}"
        metadata["setting"] = credential_setting
    return VendorError(
        rule.code,
        rule.reason,
        message,
        vendor=vendor,
        vendor_code=str(vendor_code),
        retryable=rule.retryable,
        metadata=metadata,
    )


def vendor_unavailable(vendor: str, detail: str) -> VendorError:
    """UNAVAILABLE ``VENDOR_UNAVAILABLE``: the vendor could not be reached (retryable)."""
    return VendorError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.VENDOR_UNAVAILABLE,
        f"{vendor} is unreachable: {detail}",
        vendor=vendor,
        retryable=True,
    )


def vendor_timeout(vendor: str, detail: str) -> VendorError:
    """UNAVAILABLE ``VENDOR_TIMEOUT``: the vendor did not answer in time (retryable)."""
    return VendorError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.VENDOR_TIMEOUT,
        f"{vendor} did not answer in time: {detail}",
        vendor=vendor,
        retryable=True,
    )


def invalid_argument(reason: Reason, message: str, **metadata: str) -> GatewayError:
    """INVALID_ARGUMENT with ``reason`` (e.g. ``CONFIG_NOT_FIRST``)."""
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, metadata)


def failed_precondition(reason: Reason, message: str, **metadata: str) -> GatewayError:
    """FAILED_PRECONDITION with ``reason`` (e.g. ``SESSION_CLOSED``)."""
    return GatewayError(grpc.StatusCode.FAILED_PRECONDITION, reason, message, metadata)


def session_not_found(session: str) -> GatewayError:
    """NOT_FOUND ``SESSION_NOT_FOUND`` for session name ``session``."""
    return GatewayError(
        grpc.StatusCode.NOT_FOUND,
        Reason.SESSION_NOT_FOUND,
        f"session {session} does not exist",
        {"session": session},
    )


def unknown_vendor(vendor: str, known: list[str]) -> GatewayError:
    """INVALID_ARGUMENT ``UNKNOWN_VENDOR``; the message lists the configured vendors."""
    return invalid_argument(
        Reason.UNKNOWN_VENDOR,
        f"unknown vendor {vendor!r}; configured vendors: {', '.join(known)}",
        vendor=vendor,
    )


def server_draining() -> GatewayError:
    """UNAVAILABLE ``SERVER_DRAINING``: the server is shutting down; retry on another replica."""
    return GatewayError(
        grpc.StatusCode.UNAVAILABLE, Reason.SERVER_DRAINING, "the server is shutting down; retry"
    )


def tenant_quota_exceeded(
    tenant: str, quota: str, limit: float, retry_after_s: float
) -> GatewayError:
    """RESOURCE_EXHAUSTED ``TENANT_QUOTA_EXCEEDED``, with ``QuotaFailure`` and ``RetryInfo``.

    Args:
        tenant: the caller's tenant.
        quota: ``sessions`` (live sessions at once) or ``create_rate`` (CreateSession per
            minute).
        limit: the tenant's limit for that quota.
        retry_after_s: when a retry may succeed (s).
    """
    shown = f"{limit:g}"
    what = "live sessions" if quota == "sessions" else "CreateSession calls per minute"
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Reason.TENANT_QUOTA_EXCEEDED,
        f"tenant {tenant} is at its quota of {shown} {what}; retry later",
        {"tenant": tenant, "quota": quota, "limit": shown},
        retry_after_s=retry_after_s,
        quota_violation=(f"tenant:{tenant}", f"{quota} quota of {shown} {what} reached"),
    )


def registry_unavailable() -> GatewayError:
    """UNAVAILABLE ``REGISTRY_UNAVAILABLE``, with a ``RetryInfo`` of 1 s.

    The session registry (Redis) cannot be reached, so nothing was done: no vendor call, no
    record written. Live Drive streams are not affected (architecture.md §4.3).
    """
    return GatewayError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.REGISTRY_UNAVAILABLE,
        "the session registry cannot be reached; nothing was done, retry",
        retry_after_s=1.0,
    )


def session_limit_reached(scope: str, limit: int, retry_after_s: float) -> GatewayError:
    """RESOURCE_EXHAUSTED ``SESSION_LIMIT_REACHED``, with a ``RetryInfo``.

    Args:
        scope: ``replica`` (this server holds its most; another replica may have room) or
            ``cluster`` (every replica together).
        limit: the limit reached (live sessions).
        retry_after_s: when a retry may succeed (s).
    """
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Reason.SESSION_LIMIT_REACHED,
        f"the {scope} already holds its maximum of {limit} live sessions; retry later",
        {"scope": scope, "limit": str(limit)},
        retry_after_s=retry_after_s,
    )


def internal_error(exc: BaseException) -> GatewayError:
    """INTERNAL ``INTERNAL``: a bug; the message names the exception type only."""
    return GatewayError(
        grpc.StatusCode.INTERNAL,
        Reason.INTERNAL,
        f"internal error ({type(exc).__name__}); see the gateway logs",
        {"exception": type(exc).__name__},
    )


def to_rpc_status(error: GatewayError) -> grpc.Status:
    """Return the ``grpc.Status`` for ``error``: code, message and one ErrorInfo detail.

    A ``RetryInfo`` detail is added when ``error.retry_after_s`` is set, a ``QuotaFailure``
    when ``error.quota_violation`` is.
    """
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if error.quota_violation is not None:
        subject, description = error.quota_violation
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=subject, description=description
        )
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[violation])))
    status = status_pb2.Status(
        code=_CODE_TO_PB.get(error.code, code_pb2.UNKNOWN), message=error.message, details=details
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
