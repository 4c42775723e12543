"""The caller's OpenTelemetry trace context on every call, so the gateway's spans join its trace.

:func:`~avatar_gateway_client.connect` and :func:`~avatar_gateway_client.connect_sync` add these
client interceptors to their channels (unless ``propagate_trace_context=False``). Each call,
unary or streaming, carries the trace context of OpenTelemetry's current context when the call
is made:

* the W3C Trace Context of its span, ``traceparent`` (and ``tracestate`` when it is not empty),
  the format the gateway reads, whatever the application configured;
* then the fields of the global propagator (``opentelemetry.propagate``: ``OTEL_PROPAGATORS``,
  by default W3C trace context and baggage, or ``set_global_textmap``), whose values win where
  both write the same field.

Metadata of these names that the caller passed is replaced. Without a valid span in the
current context, no ``traceparent`` is sent. Only ``opentelemetry-api`` is needed; the spans
come from the application's OpenTelemetry SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()

Metadatum = tuple[str, str | bytes]


def trace_context_metadata() -> dict[str, str]:
    """The trace context fields of the current OpenTelemetry context (see the module doc)."""
    ctx = otel_context.get_current()
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=ctx)
    propagate.inject(carrier, context=ctx)
    return {key.lower(): value for key, value in carrier.items()}


def _merged(metadata: Iterable[Metadatum] | None, fields: dict[str, str]) -> list[Metadatum]:
    """``metadata`` without the keys of ``fields``, then ``fields``."""
    kept = [(key, value) for key, value in metadata or () if key.lower() not in fields]
    return [*kept, *fields.items()]


# -- grpc.aio --------------------------------------------------------------------------------------


def _aio_details(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    fields = trace_context_metadata()
    if not fields:
        return details
    metadata = grpc.aio.Metadata(*_merged(details.metadata, fields))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_aio_details(client_call_details), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_aio_details(client_call_details), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: AsyncIterable[Any] | Iterable[Any] | None,
    ) -> Any:
        return await continuation(_aio_details(client_call_details), request_iterator)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: AsyncIterable[Any] | Iterable[Any] | None,
    ) -> Any:
        return await continuation(_aio_details(client_call_details), request_iterator)


def aio_trace_context_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The ``grpc.aio`` client interceptors of :func:`~avatar_gateway_client.connect`, one for
    each kind of call (a grpc.aio channel files an interceptor under one kind only). grpc.aio
    runs them in a task made when the call is made, so they see the caller's context
    (``contextvars``)."""
    kinds = (_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream())
    return [cast(grpc.aio.ClientInterceptor, i) for i in kinds]  # grpc-stubs: a partial stub


# -- synchronous grpc ------------------------------------------------------------------------------


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[Metadatum] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


def _sync_details(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
    fields = trace_context_metadata()
    if not fields:
        return details
    return _CallDetails(  # type: ignore[return-value]  # a ClientCallDetails by its attributes
        details.method,
        details.timeout,
        _merged(details.metadata, fields),
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class TraceContextInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """The synchronous client interceptor of :func:`~avatar_gateway_client.connect_sync`
    (``grpc.intercept_channel``), for every kind of call; it runs in the calling thread."""

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(_sync_details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(_sync_details(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(_sync_details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(_sync_details(client_call_details), request_iterator)
