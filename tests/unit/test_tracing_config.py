"""Tracing is configured by the standard ``OTEL_*`` variables only, and off unless they ask.

The provider is built here without being installed (installing is once per process); the
real export to a real backend is tests/integration/test_tracing.py.
"""

from __future__ import annotations

import os

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from core import tracing as core_tracing
from gateway import tracing

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def test_off_without_an_exporter_or_endpoint() -> None:
    assert tracing.exporter_names() == []
    assert tracing.build_tracer_provider() is None
    # Nothing installed in this process: no interceptor for the server.
    assert tracing.server_interceptors() == []


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
        {"OTEL_TRACES_EXPORTER": "otlp"},
    ],
)
def test_an_endpoint_or_the_otlp_exporter_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert tracing.exporter_names() == ["otlp"]
    provider = tracing.build_tracer_provider()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "avatar-gateway"
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_disabled_or_none_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert tracing.exporter_names() == []
    assert tracing.build_tracer_provider() is None


def test_service_name_and_resource_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-eu-1")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    provider = tracing.build_tracer_provider()
    assert provider is not None
    try:
        attributes = provider.resource.attributes
        assert attributes["service.name"] == "gw-eu-1"
        assert attributes["deployment.environment.name"] == "staging"
    finally:
        provider.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    provider = tracing.build_tracer_provider()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "from-attributes"
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, HttpExporter),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, HttpExporter),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GrpcExporter),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            HttpExporter,
        ),
    ],
)
def test_the_otlp_protocol_picks_the_exporter(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: type
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    exporter = tracing._exporter("otlp")
    try:
        assert isinstance(exporter, kind)
    finally:
        exporter.shutdown()
    assert isinstance(tracing._exporter("console"), ConsoleSpanExporter)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp,jaeger"}, "OTEL_TRACES_EXPORTER: jaeger"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "'http/json'",
        ),
    ],
)
def test_an_exporter_or_protocol_not_shipped_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(tracing.TracingConfigError, match=named):
        tracing.exporter_names()


def test_vendor_rest_urls_lose_their_signatures() -> None:
    masked = tracing._masked_url(
        "https://gw.tvs.qq.com/v2/ivh/x?appkey=k&requestid=r&timestamp=1&signature=SIG%2B%3D"
    )
    assert "SIG" not in masked and "signature=***" in masked
    raw = (b"https", b"gw.tvs.qq.com", 443, b"/v2/ivh/x?signature=SIG")
    assert tracing._masked_url(raw) == "https://gw.tvs.qq.com:443/v2/ivh/x"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The shared tracer replaced by one of a local provider (none installed globally)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(core_tracing, "tracer", provider.get_tracer("test"))
    return exporter


def test_a_vendor_socket_connect_span_keeps_no_query(recorded: InMemorySpanExporter) -> None:
    with core_tracing.vendor_connect_span(
        "tencent", "wss://gw.tvs.qq.com:8443/v2/ws?appkey=a&signature=SIG", "websocket"
    ):
        pass
    (span,) = recorded.get_finished_spans()
    assert span.name == "websocket connect" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "avatar_gateway.vendor": "tencent",
        "avatar_gateway.transport": "websocket",
        "url.scheme": "wss",
        "server.address": "gw.tvs.qq.com",
        "server.port": 8443,
    }


def test_a_failed_connect_records_the_error_type_not_its_message(
    recorded: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ValueError),
        core_tracing.vendor_connect_span("zegocloud", "wss://1.2.3.4/ws", "websocket"),
    ):
        raise ValueError("invalid URI wss://1.2.3.4/ws?Token=SECRET")
    (span,) = recorded.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ValueError"
    assert "SECRET" not in repr(span.to_json())
