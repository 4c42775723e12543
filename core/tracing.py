"""Tracing primitives every layer shares: the tracer and the span of a vendor socket connect.

Only the OpenTelemetry API is used here. Until the server installs an SDK tracer provider
(``gateway/tracing.py``, when the standard ``OTEL_*`` variables ask for an exporter) every
span is the API's non-recording span: nothing is recorded, nothing is exported, and a span
costs a few attribute-free object creations (docs/architecture.md §7).

Attribute names follow the OpenTelemetry semantic conventions where one exists
(``server.address``, ``server.port``, ``url.scheme``); the gateway's own live under
``avatar_gateway.`` (:data:`VENDOR`, :data:`SESSION_ID`, ...).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace

__all__ = [
    "SESSION_ID",
    "TRANSPORT",
    "TURN_ID",
    "VENDOR",
    "tracer",
    "vendor_connect_span",
    "within",
]

tracer = trace.get_tracer("avatar_gateway")
"""The gateway's tracer (a proxy: it records once the server installed an SDK provider)."""

VENDOR = "avatar_gateway.vendor"
"""Span attribute: the vendor id (``zegocloud``, ``tencent``, ``akool``)."""
SESSION_ID = "avatar_gateway.session.id"
"""Span attribute: the gateway session id (the ``sessions/{id}`` name's last part)."""
TURN_ID = "avatar_gateway.turn.id"
"""Span attribute: the turn id ("1", "2", ...) within its session."""
TRANSPORT = "avatar_gateway.transport"
"""Span attribute: the socket kind of a vendor connect (``websocket``, ``livekit``)."""


@contextmanager
def vendor_connect_span(vendor: str, url: str, transport: str) -> Iterator[trace.Span]:
    """A CLIENT span ``<transport> connect`` around one vendor socket connect, made current.

    Only the scheme, host and port of ``url`` are recorded: vendor socket URLs carry
    signatures and tokens in their query (tencent.md §2, §5), which must never reach a trace.
    An exception leaving the block sets the span's status to ERROR and ``error.type`` to its
    type, and is not recorded itself: a socket error's message may quote the signed URL.

    Args:
        vendor: the vendor id.
        url: the socket URL (``wss://host:port/path?query``).
        transport: ``websocket`` or ``livekit``.

    Yields:
        The span (non-recording when tracing is off).
    """
    attributes: dict[str, str | int] = {VENDOR: vendor, TRANSPORT: transport}
    try:
        parts = urllib.parse.urlsplit(url)
        attributes["url.scheme"] = parts.scheme
        attributes["server.address"] = parts.hostname or ""
        if parts.port is not None:
            attributes["server.port"] = parts.port
    except ValueError:  # an unparsable URL: the connect itself will say what is wrong
        pass
    with tracer.start_as_current_span(
        f"{transport} connect",
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(trace.StatusCode.ERROR, type(exc).__qualname__)
            raise


def within(span: trace.Span) -> AbstractContextManager[Any]:
    """``span`` made current for the block (not ended at its exit); nothing when not recording.

    For work done on behalf of a span that outlives one block, such as a Drive turn whose
    vendor calls are made by the stream's sender task: spans the calls open (a vendor REST
    call, a socket connect) become the turn's children.
    """
    if not span.is_recording():
        return nullcontext()
    return trace.use_span(
        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )
