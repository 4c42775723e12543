"""``avatar.gateway.v1.AvatarGateway`` servicer: thin translation between gRPC and the core.

Every handler runs under :func:`_rpc_errors`, the single point where a
:class:`core.errors.GatewayError` becomes a status with an ErrorInfo, and where any other
exception becomes INTERNAL (logged with its traceback, never leaked to the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2
from opentelemetry import trace

from core import tracing
from core.errors import (
    GatewayError,
    Reason,
    internal_error,
    invalid_argument,
    registry_unavailable,
    server_draining,
    to_rpc_status,
    unknown_vendor,
)
from gateway import metrics
from gateway.auth import Principal, current_principal
from gateway.drive import DriveStream
from gateway.registry import SessionRecord
from gateway.sessions import SessionManager, SessionRuntime, parse_session_name, session_closed

log = structlog.get_logger("gateway.servicer")
audit_log = structlog.get_logger("gateway.audit")


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: GatewayError) -> NoReturn:
    status = to_rpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable")  # context.abort always raises


def _scope(principal: Principal | None = None) -> str | None:
    """The tenant whose sessions the caller may use (``None``: every tenant's, an admin)."""
    principal = principal or current_principal()
    return None if principal.admin else principal.tenant


def _audit(
    principal: Principal,
    action: str,
    session: str,
    error: BaseException | None,
    state: int = 0,
) -> None:
    """One ``audit`` log line per CreateSession and CloseSession (docs/security.md §4)."""
    if error is None:
        result = pb.SessionState.Name(state)  # type: ignore[arg-type]
    elif isinstance(error, GatewayError):
        result = error.reason
    else:
        result = type(error).__name__
    audit_log.info("audit", tenant=principal.tenant, action=action, session=session, result=result)


def refused(method: str) -> None:
    """Audit a call refused for its credential (``AuthInterceptor``'s ``on_refused``)."""
    audit_log.info(
        "audit", tenant="", action=method.rsplit("/", 1)[-1], result=Reason.UNAUTHENTICATED
    )
    metrics.RPC_ERRORS.labels(method.rsplit("/", 1)[-1], Reason.UNAUTHENTICATED).inc()


def _annotate_span(vendor: str, session_name: str) -> None:
    """Name the vendor and session on the RPC's server span (when tracing records it)."""
    trace.get_current_span().set_attributes(
        {tracing.VENDOR: vendor, tracing.SESSION_ID: session_name.removeprefix("sessions/")}
    )


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class AvatarGatewayServicer(pb_grpc.AvatarGatewayServicer):
    """Implements the API on a :class:`gateway.sessions.SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.draining = False
        self.drives: set[DriveStream] = set()

    async def _unary(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Any]
    ) -> Any:
        try:
            if self.draining:
                raise server_draining()
            return await call()
        except GatewayError as exc:
            log.info("rpc_failed", reason=exc.reason, code=exc.code.name, message=exc.message)
            metrics.RPC_ERRORS.labels(method, exc.reason).inc()
            await _abort(context, exc)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except self.manager.registry.unavailable_errors as exc:
            log.warning("rpc_registry_unavailable", error=type(exc).__name__)
            metrics.RPC_ERRORS.labels(method, Reason.REGISTRY_UNAVAILABLE).inc()
            await _abort(context, registry_unavailable())
        except Exception as exc:
            log.exception("rpc_internal_error")
            await _abort(context, internal_error(exc))

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Session:
        """See the proto."""
        principal = current_principal()

        async def call() -> pb.Session:
            try:
                session = await self.manager.create(request, _deadline(context), principal)
            except Exception as exc:
                _audit(principal, "CreateSession", "", exc)
                raise
            _audit(principal, "CreateSession", session.name, None, session.state)
            _annotate_span(request.vendor, session.name)
            return session

        result: pb.Session = await self._unary("CreateSession", context, call)
        return result

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Session:
        """See the proto."""

        async def call() -> pb.Session:
            return (await self.manager.get_record(request.name, _scope())).to_proto()

        result: pb.Session = await self._unary("GetSession", context, call)
        return result

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSessionsResponse:
        """See the proto."""
        result: pb.ListSessionsResponse = await self._unary(
            "ListSessions", context, lambda: self.manager.list_sessions(request, _scope())
        )
        return result

    async def CloseSession(
        self, request: pb.CloseSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Session:
        """See the proto."""
        principal = current_principal()

        async def call() -> pb.Session:
            try:
                session = await self.manager.close(
                    request.name, pb.CLOSE_REASON_CLIENT, _scope(principal)
                )
            except Exception as exc:
                _audit(principal, "CloseSession", request.name, exc)
                raise
            _audit(principal, "CloseSession", session.name, None, session.state)
            return session

        result: pb.Session = await self._unary("CloseSession", context, call)
        return result

    async def ListAvatars(
        self, request: pb.ListAvatarsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAvatarsResponse:
        """See the proto."""

        async def call() -> pb.ListAvatarsResponse:
            prefix, _, vendor = request.parent.partition("/")
            if prefix != "vendors" or not vendor:
                raise invalid_argument(
                    Reason.INVALID_ARGUMENT,
                    f"parent {request.parent!r} is not of the form vendors/{{vendor}}",
                    field="parent",
                )
            adapter = self.manager.adapters.get(vendor)
            if adapter is None:
                raise unknown_vendor(vendor, sorted(self.manager.adapters))
            if request.page_size < 0:
                raise invalid_argument(
                    Reason.INVALID_ARGUMENT, "page_size must be >= 0", field="page_size"
                )
            page = await adapter.list_avatars(request.page_size or 20, request.page_token)
            return pb.ListAvatarsResponse(
                avatars=[
                    pb.Avatar(
                        name=f"vendors/{vendor}/avatars/{a.avatar_id}",
                        avatar_id=a.avatar_id,
                        display_name=a.display_name,
                        preview_url=a.preview_url,
                        public=a.public,
                    )
                    for a in page.avatars
                ],
                next_page_token=page.next_page_token,
            )

        result: pb.ListAvatarsResponse = await self._unary("ListAvatars", context, call)
        return result

    async def ListVendors(
        self, request: pb.ListVendorsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListVendorsResponse:
        """See the proto."""

        async def call() -> pb.ListVendorsResponse:
            vendors = []
            for name, adapter in sorted(self.manager.adapters.items()):
                caps = adapter.capabilities
                vendors.append(
                    pb.Vendor(
                        name=f"vendors/{name}",
                        vendor=name,
                        display_name=caps.display_name,
                        sandbox=adapter.sandbox,
                        capabilities=pb.VendorCapabilities(
                            vendor_sample_rates_hertz=list(caps.sample_rates_hertz),
                            audio=caps.audio,
                            text=caps.text,
                            streaming_text=caps.streaming_text,
                            interrupt=caps.interrupt,
                            interrupt_ack=caps.interrupt_ack,
                            max_text_characters=caps.max_text_chars,
                            audio_frame_duration=_ms(caps.pacing.frame_ms),
                            max_push_ahead=_ms(caps.pacing.max_push_ahead_ms),
                            list_avatars=caps.list_avatars,
                        ),
                    )
                )
            return pb.ListVendorsResponse(vendors=vendors)

        result: pb.ListVendorsResponse = await self._unary("ListVendors", context, call)
        return result

    async def Drive(
        self,
        request_iterator: AsyncIterator[pb.DriveRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DriveResponse]:
        """See the proto: config first, then audio/text/end_turn/interrupt."""
        drive: DriveStream | None = None
        runtime: SessionRuntime | None = None
        admission = self.manager.admission
        admitted = False
        try:
            if self.draining:
                raise server_draining()
            first = await anext(request_iterator, None)
            if first is None:
                return  # the client half-closed at once: nothing to do
            kind = first.WhichOneof("request")
            if kind != "config":
                raise invalid_argument(
                    Reason.CONFIG_NOT_FIRST,
                    f"the first Drive request must be config, got {kind or 'an empty request'}",
                    received=kind or "none",
                )
            config = first.config
            session_id = parse_session_name(config.session)
            DriveStream.validate_config(config)
            # Past capacity a new stream is refused before it opens anything, unless it
            # replaces (preempt) the session's stream open here: that adds no load, and a
            # client reconnecting after a network fault must get its session back. Counted
            # from here (no await before), so concurrent calls cannot overshoot the bound.
            runtime_here = self.manager.runtimes.get(session_id)
            if not (config.preempt and runtime_here is not None and runtime_here.drive is not None):
                admission.check("Drive")
            admission.drive_started()
            admitted = True

            async def build(record: SessionRecord, runtime: SessionRuntime) -> DriveStream:
                structlog.contextvars.bind_contextvars(
                    session_id=record.session_id, vendor=record.vendor
                )
                _annotate_span(record.vendor, record.name)
                try:
                    channel = await runtime.get_channel()
                except GatewayError as exc:
                    if exc.session_gone:
                        await self.manager.on_session_lost(record.session_id, exc.message)
                        # The client asked to drive a session the vendor ended: say so plainly.
                        closed = await self.manager.get_record(config.session)
                        raise session_closed(closed) from None
                    raise
                lease = runtime.lease
                assert lease is not None  # open_drive holds it for us

                def on_activity() -> None:
                    runtime.last_activity = time.monotonic()

                return DriveStream(
                    record,
                    runtime.adapter.capabilities,
                    config,
                    channel=channel,
                    next_turn_id=lease.next_turn_id,
                    fence=lease,
                    on_activity=on_activity,
                    call_done=context.done,
                    preferred_rate_hertz=runtime.handle.data.sample_rate_hertz,
                    usage=runtime.usage,
                    strain=admission.strain_since,
                )

            record, runtime, drive = await self.manager.open_drive(
                config.session, config.preempt, build, _scope()
            )
            self.drives.add(drive)
            metrics.ACTIVE_DRIVES.labels(record.vendor).inc()
            log.info("drive_started", vendor_rate=drive.vendor_rate)
            yield drive.started_response()
            async for response in drive.run(request_iterator):
                yield response
            if drive.error is not None:
                if drive.error.session_gone:
                    await self.manager.on_session_lost(record.session_id, drive.error.message)
                raise drive.error
            log.info("drive_finished")
        except GatewayError as exc:
            log.info("drive_failed", reason=exc.reason, code=exc.code.name, message=exc.message)
            metrics.RPC_ERRORS.labels("Drive", exc.reason).inc()
            await _abort(context, exc)
        except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
            raise
        except self.manager.registry.unavailable_errors as exc:
            # At the start of the stream (lease, record): a live stream does not need Redis.
            log.warning("drive_registry_unavailable", error=type(exc).__name__)
            metrics.RPC_ERRORS.labels("Drive", Reason.REGISTRY_UNAVAILABLE).inc()
            await _abort(context, registry_unavailable())
        except Exception as exc:
            log.exception("drive_internal_error")
            await _abort(context, internal_error(exc))
        finally:
            try:
                if drive is not None and drive in self.drives:
                    self.drives.discard(drive)
                    metrics.ACTIVE_DRIVES.labels(drive.record.vendor).dec()
                if drive is not None:
                    if runtime is not None:
                        with contextlib.suppress(Exception):
                            await self.manager.detach_drive(runtime, drive)
                with contextlib.suppress(Exception):
                    structlog.contextvars.unbind_contextvars("session_id", "vendor")
            finally:
                # Even when cancelled during the detach: a stream never counted as open
                # after its end. Last, so its log line (overload cleared) is not the session's.
                if admitted:
                    admission.drive_ended()


def _ms(ms: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(ms))
    return d
