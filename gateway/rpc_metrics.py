"""Every gRPC call counted and timed by one server interceptor, not by code in each handler.

It follows the OpenTelemetry RPC semantic conventions (``rpc.server.call.duration``, unit
s) in Prometheus naming: ``rpc_server_call_duration_seconds`` with ``rpc_system_name``
(``grpc``), ``rpc_method`` (fully qualified, ``avatar.gateway.v1.AvatarGateway/Drive``;
``_OTHER`` for a method the server does not serve), ``rpc_response_status_code`` (the
canonical code name, ``OK``, ``UNAUTHENTICATED``...) and ``error_type`` (the same name when
the call failed, empty otherwise). Method names come only from the handlers the server
registered, so the labels stay bounded whatever a client sends.

It must be the first interceptor of the server: gRPC runs them in order, each wrapping the
handler the next returns, so the first one sees every call to its end, including those the
authentication interceptor refuses (UNAUTHENTICATED) before any handler runs. A streaming
call (Drive) is measured from its start until its last message and status.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from gateway import metrics
from gateway.auth import same_shape

if TYPE_CHECKING:
    MethodHandler = grpc.RpcMethodHandler[Any, Any]

SYSTEM = "grpc"
OTHER_METHOD = "_OTHER"
"""The ``rpc_method`` of a call to a method the server does not serve (semconv)."""
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _status(context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode) -> str:
    """The name of the status the call ends with (set by ``abort`` or ``set_code``)."""
    code: Any = context.code()
    if isinstance(code, int):
        code = _BY_VALUE.get(code)
    if not isinstance(code, grpc.StatusCode):
        code = default
    return str(code.name)


def _cancelled(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """A call whose task was cancelled: its deadline passed, or the client went away."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED.name
    return grpc.StatusCode.CANCELLED.name


def record(method: str, status: str, seconds: float) -> None:
    """Count one finished call of ``method`` with ``status`` that took ``seconds``."""
    metrics.RPC_SERVER_CALL_DURATION.labels(
        SYSTEM, method, status, "" if status == "OK" else status
    ).observe(seconds)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Measures every call: ``rpc_server_call_duration_seconds`` and active calls."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler:
        """The handler the next interceptors return, wrapped to measure its calls."""
        handler = await continuation(handler_call_details)
        if handler is None:
            # gRPC answers UNIMPLEMENTED itself; the method name is the client's, not ours.
            record(OTHER_METHOD, grpc.StatusCode.UNIMPLEMENTED.name, 0.0)
            return handler
        return _measured(handler, handler_call_details.method.lstrip("/"))


def _measured(handler: MethodHandler, method: str) -> MethodHandler:
    """``handler`` with each call timed and counted under ``method``."""
    active = metrics.RPC_ACTIVE_CALLS.labels(method)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        start = time.perf_counter()
        active.inc()
        status = "UNKNOWN"
        try:
            behaviour: Any = handler.unary_unary or handler.stream_unary
            result = await behaviour(request, context)
            status = _status(context, grpc.StatusCode.OK)
            return result
        except grpc.aio.AbortError:
            status = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError:
            status = _cancelled(context)
            raise
        finally:
            active.dec()
            record(method, status, time.perf_counter() - start)

    async def streaming(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        start = time.perf_counter()
        active.inc()
        status = "UNKNOWN"
        try:
            behaviour: Any = handler.unary_stream or handler.stream_stream
            responses = behaviour(request, context)
            if inspect.isawaitable(responses):
                await responses  # a handler that writes with context.write (health Watch)
            else:
                async for response in responses:
                    yield response
            status = _status(context, grpc.StatusCode.OK)
        except grpc.aio.AbortError:
            status = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = _cancelled(context)
            raise
        finally:
            active.dec()
            record(method, status, time.perf_counter() - start)

    return same_shape(handler, unary, streaming)
