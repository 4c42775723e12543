"""OpenTelemetry tracing of the gateway process, configured by the standard ``OTEL_*`` variables.

Off unless configured: without ``OTEL_TRACES_EXPORTER`` (other than ``none``) or an OTLP
endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), or with
``OTEL_SDK_DISABLED=true``, no SDK is installed, no interceptor is added and nothing is
instrumented: the API's no-op tracer is all that runs (docs/architecture.md §7).

When configured, :func:`start_tracing` installs, once per process:

* an SDK :class:`TracerProvider` (resource from ``OTEL_SERVICE_NAME`` and
  ``OTEL_RESOURCE_ATTRIBUTES``, service name ``avatar-gateway`` by default; sampler from
  ``OTEL_TRACES_SAMPLER``/``_ARG``; batch export tuned by ``OTEL_BSP_*``) exporting to
  every exporter ``OTEL_TRACES_EXPORTER`` names (default ``otlp``): OTLP over
  ``http/protobuf`` (the specification's default) or ``grpc`` by
  ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``/``OTEL_EXPORTER_OTLP_PROTOCOL``, endpoint, headers,
  timeout, compression and certificates from the exporters' own ``OTEL_EXPORTER_OTLP_*``
  variables; ``console`` writes spans to stdout;
* the httpx instrumentation: a CLIENT span around every vendor REST call, with signatures and
  tokens in its URL masked (:func:`gateway.logs.redact`);
* :func:`server_interceptors`: the OpenTelemetry gRPC aio server interceptor, a SERVER span
  per RPC continuing the caller's W3C ``traceparent`` (``OTEL_PROPAGATORS``, default
  ``tracecontext,baggage``); health checks are not traced (probes would flood the backend).

The server flushes the spans at shutdown (:func:`flush`).
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from importlib import metadata
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from gateway.logs import redact

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "TracingConfigError",
    "build_tracer_provider",
    "exporter_names",
    "flush",
    "server_interceptors",
    "start_tracing",
]

DEFAULT_SERVICE_NAME = "avatar-gateway"
"""``service.name`` of the gateway's spans unless ``OTEL_SERVICE_NAME`` (or
``OTEL_RESOURCE_ATTRIBUTES``) names another."""

_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("http/protobuf", "grpc")

_provider: TracerProvider | None = None


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable asks for an exporter or protocol this gateway does not ship."""


def exporter_names() -> list[str]:
    """The span exporters the environment asks for; ``[]`` when tracing is off.

    Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or,
    when it is unset, when an OTLP endpoint is set (then the exporter is ``otlp``).
    ``OTEL_SDK_DISABLED=true`` turns it off whatever else is set.

    Raises:
        TracingConfigError: an unknown exporter, or an OTLP protocol other than
            ``http/protobuf`` and ``grpc``.
    """
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in named if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} not supported "
            f"(supported: {', '.join(_EXPORTERS)})"
        )
    names = [n for n in names if n != "none"]
    if "otlp" in names:
        _otlp_protocol()
    return names


def _otlp_protocol() -> str:
    env = os.environ
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in _PROTOCOLS:
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} not supported (supported: {', '.join(_PROTOCOLS)})"
        )
    return protocol


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only when asked for: each pulls in its transport.
    if _otlp_protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def _resource() -> Resource:
    """The environment's resource, with our service name unless the environment names one."""
    resource = Resource.create()
    defaults: dict[str, str] = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if SERVICE_VERSION not in resource.attributes:
        try:
            defaults[SERVICE_VERSION] = metadata.version("avatar-gateway")
        except metadata.PackageNotFoundError:
            pass
    return resource.merge(Resource(defaults)) if defaults else resource


def build_tracer_provider() -> TracerProvider | None:
    """A tracer provider as the ``OTEL_*`` variables describe it; ``None`` when tracing is off.

    Not installed: :func:`start_tracing` does that.

    Raises:
        TracingConfigError: as :func:`exporter_names`.
    """
    names = exporter_names()
    if not names:
        return None
    # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    provider = TracerProvider(resource=_resource())
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def start_tracing() -> TracerProvider | None:
    """Install tracing for this process if the environment asks for it (idempotent).

    Returns:
        The installed provider, or ``None`` when tracing is off.

    Raises:
        TracingConfigError: as :func:`exporter_names`.
    """
    global _provider
    if _provider is not None:
        return _provider
    provider = build_tracer_provider()
    if provider is None:
        return None
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider,
        request_hook=_redact_url,
        async_request_hook=_async_redact_url,
    )
    _provider = provider
    return provider


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The gRPC server interceptors of tracing, outermost first; ``[]`` when it is off.

    Put them before the authentication interceptor, so a refused call has its span too.
    """
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    interceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=filters.negate(filters.health_check())
    )
    return [interceptor]


async def flush(timeout_s: float = 5.0) -> None:
    """Export the spans still buffered (bounded by ``timeout_s``), e.g. before the process ends.

    Does nothing when tracing is off. Runs the blocking export in a worker thread.
    """
    provider = _provider
    if provider is not None:
        await asyncio.to_thread(provider.force_flush, int(timeout_s * 1000))


def _masked_url(url: Any) -> str:
    """``url`` (an httpx URL, a string or a raw ``(scheme, host, port, target)``) masked."""
    if isinstance(url, tuple):
        scheme, host, port, target = url
        path = urllib.parse.urlsplit(target.decode("ascii", "replace")).path
        netloc = host.decode("ascii", "replace") + (f":{port}" if port else "")
        return f"{scheme.decode('ascii', 'replace')}://{netloc}{path}"
    return redact(str(url))


def _redact_url(span: trace.Span, request: Any) -> None:
    """The httpx request hook: the span's URL attributes with secret query values masked.

    The instrumentation masks only a fixed list of parameter names (``Signature``, ...);
    Tencent signs with ``signature`` (tencent.md §2), which it would keep.
    """
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    masked = _masked_url(request.url if hasattr(request, "url") else request[1])
    for key in ("url.full", "http.url"):
        if key in attributes:
            span.set_attribute(key, masked)


async def _async_redact_url(span: trace.Span, request: Any) -> None:
    _redact_url(span, request)
