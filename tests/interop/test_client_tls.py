"""The Python client's channels (``avatar_gateway_client.connect`` / ``connect_sync``) against a
real grpcio server on loopback: TLS with the fixed test CA (``clients/testdata/tls``), mutual
TLS with a SPIFFE client certificate, the credential on unary and streaming calls, and the
caller's OpenTelemetry trace context (spans from the OpenTelemetry SDK) on every call.

The server is a small ``AvatarGateway`` (``ListVendors`` and ``Drive``) that records, per
call, the ``authorization`` and trace context metadata it received and the peer's TLS auth
context.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar_gateway_client import DriveStream, connect, connect_sync, drive_requests, linear16
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
TLS = ROOT / "clients/testdata/tls"
DRIVER = ROOT / "clients/python/interop/driver.py"
CA = TLS / "ca.pem"
OTHER_CA = TLS / "other-ca.pem"
CLIENT_CERT = TLS / "client.pem"
CLIENT_KEY = TLS / "client-key.pem"
SPIFFE_ID = b"spiffe://test.avatargateway.dev/tenant/acme"
SESSION = "sessions/tls-test"
API_KEY = "agk_live_0123456789abcdef"
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJl"  # shape only


TRACE_FIELDS = ("traceparent", "tracestate", "baggage")


@dataclass
class Call:
    method: str
    authorization: list[str]
    auth_context: dict[str, list[bytes]]
    trace: dict[str, list[str]] = field(default_factory=dict)
    """The values of each of TRACE_FIELDS the call carried."""

    @property
    def transport(self) -> bytes:
        return b"".join(self.auth_context.get("transport_security_type", []))

    @property
    def sans(self) -> list[bytes]:
        return self.auth_context.get("x509_subject_alternative_name", [])


class Recorder(pb_grpc.AvatarGatewayServicer):
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def record(self, method: str, context: grpc.aio.ServicerContext[object, object]) -> None:
        metadata = context.invocation_metadata() or ()
        authorization = [str(v) for k, v in metadata if k == "authorization"]
        auth = {k: list(v) for k, v in context.auth_context().items()}
        trace_fields = {name: [str(v) for k, v in metadata if k == name] for name in TRACE_FIELDS}
        self.calls.append(Call(method, authorization, auth, trace_fields))

    async def ListVendors(
        self, request: pb.ListVendorsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListVendorsResponse:
        self.record("ListVendors", context)
        return pb.ListVendorsResponse(vendors=[pb.Vendor(name="vendors/zegocloud")])

    async def Drive(
        self,
        request_iterator: AsyncIterator[pb.DriveRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.DriveResponse]:
        self.record("Drive", context)
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "config":
                yield pb.DriveResponse(started=pb.DriveStarted(session=request.config.session))
            elif kind == "end_turn":
                yield pb.DriveResponse(speech_ended=pb.SpeechEnded(turn_id="1"))


@dataclass
class Server:
    recorder: Recorder
    port: int
    host: str = "127.0.0.1"

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def calls(self) -> list[Call]:
        return self.recorder.calls


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts recording servers: TLS (``mtls``: client certificates signed by the test CA are
    required) or plaintext; all are stopped at the end of the test."""
    servers: list[grpc.aio.Server] = []

    async def start(*, tls: bool = True, mtls: bool = False, bind: str = "127.0.0.1:0") -> Server:
        server = grpc.aio.server()
        recorder = Recorder()  # type: ignore[abstract]  # the other methods: UNIMPLEMENTED
        pb_grpc.add_AvatarGatewayServicer_to_server(recorder, server)
        if tls:
            creds = grpc.ssl_server_credentials(
                [((TLS / "server-key.pem").read_bytes(), (TLS / "server.pem").read_bytes())],
                root_certificates=CA.read_bytes() if mtls else None,
                require_client_auth=mtls,
            )
            port = server.add_secure_port(bind, creds)
        else:
            port = server.add_insecure_port(bind)
        await server.start()
        servers.append(server)
        return Server(recorder, port)

    yield start
    for server in servers:
        await server.stop(None)


async def unary_and_stream(channel: grpc.aio.Channel) -> None:
    """One ``ListVendors`` and one ``Drive`` (through :class:`DriveStream`) on ``channel``."""
    stub = pb_grpc.AvatarGatewayStub(channel)
    listed = await stub.ListVendors(pb.ListVendorsRequest(), timeout=5)
    assert [v.name for v in listed.vendors] == ["vendors/zegocloud"]
    drive = await DriveStream.open(stub, SESSION, linear16(16000), deadline_s=5)
    assert drive.started is not None and drive.started.session == SESSION
    await drive.send_audio(bytes(640))
    await drive.end_turn()
    await drive.done_writing()
    events = [event.WhichOneof("response") async for event in drive]
    assert events == ["speech_ended"]
    assert await drive.code() == grpc.StatusCode.OK


def unary_and_stream_sync(channel: grpc.Channel) -> None:
    """The same calls with the synchronous stub (run in a thread: the server is on this loop)."""
    stub = pb_grpc.AvatarGatewayStub(channel)
    listed = stub.ListVendors(pb.ListVendorsRequest(), timeout=5)
    assert [v.name for v in listed.vendors] == ["vendors/zegocloud"]
    requests = drive_requests(
        SESSION, linear16(16000), [bytes(640), pb.DriveRequest(end_turn=pb.EndTurn())]
    )
    events = [r.WhichOneof("response") for r in stub.Drive(requests, timeout=5)]
    assert events == ["started", "speech_ended"]


async def in_thread_sync(open_channel: Callable[[], grpc.Channel]) -> None:
    def run() -> None:
        with open_channel() as channel:
            unary_and_stream_sync(channel)

    await asyncio.to_thread(run)


async def expect_unavailable(channel: grpc.aio.Channel) -> str:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await pb_grpc.AvatarGatewayStub(channel).ListVendors(pb.ListVendorsRequest(), timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
    return failed.value.debug_error_string() or ""


# -- TLS with the test CA, and the credential on every call ------------------------------------


async def test_tls_with_a_custom_ca_sends_the_credential_on_unary_and_streaming_calls(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with connect(server.target, ca=str(CA), credential=API_KEY) as channel:
        await unary_and_stream(channel)
    # PEM bytes, a JWT, and the server name given explicitly (as when dialing an IP address).
    async with connect(
        server.target, ca=CA.read_bytes(), server_name="localhost", credential=JWT
    ) as channel:
        await unary_and_stream(channel)
    assert [(c.method, c.authorization, c.transport) for c in server.calls] == [
        ("ListVendors", [f"Bearer {API_KEY}"], b"ssl"),
        ("Drive", [f"Bearer {API_KEY}"], b"ssl"),
        ("ListVendors", [f"Bearer {JWT}"], b"ssl"),
        ("Drive", [f"Bearer {JWT}"], b"ssl"),
    ]


async def test_sync_channel_tls_with_a_custom_ca_sends_the_credential(
    start_server: StartServer,
) -> None:
    server = await start_server()
    await in_thread_sync(lambda: connect_sync(server.target, ca=CA, credential=API_KEY))
    await in_thread_sync(
        lambda: connect_sync(server.target, ca=CA.read_bytes(), server_name="localhost")
    )
    assert [(c.method, c.authorization, c.transport) for c in server.calls] == [
        ("ListVendors", [f"Bearer {API_KEY}"], b"ssl"),
        ("Drive", [f"Bearer {API_KEY}"], b"ssl"),
        ("ListVendors", [], b"ssl"),
        ("Drive", [], b"ssl"),
    ]


async def test_untrusted_or_misnamed_server_certificates_fail_unavailable(
    start_server: StartServer,
) -> None:
    server = await start_server()
    await expect_unavailable(connect(server.target, ca=OTHER_CA, credential=API_KEY))
    # The default trusts the system roots only, which do not include the test CA.
    await expect_unavailable(connect(server.target, credential=API_KEY))
    # The name checked is server_name, not the target's host.
    await expect_unavailable(connect(server.target, ca=CA, server_name="other.example"))

    def sync_other_ca() -> grpc.StatusCode:
        with connect_sync(server.target, ca=OTHER_CA, credential=API_KEY) as channel:
            with pytest.raises(grpc.RpcError) as failed:
                pb_grpc.AvatarGatewayStub(channel).ListVendors(pb.ListVendorsRequest(), timeout=5)
        code: grpc.StatusCode = failed.value.code()
        return code

    assert await asyncio.to_thread(sync_other_ca) == grpc.StatusCode.UNAVAILABLE
    assert server.calls == []


async def test_tls_is_the_default(start_server: StartServer) -> None:
    """Without ``plaintext=True`` the channel speaks TLS: a plaintext server never sees a call
    (nor the credential)."""
    server = await start_server(tls=False)
    await expect_unavailable(connect(server.target, ca=CA, credential=API_KEY))
    assert server.calls == []


# -- mutual TLS ----------------------------------------------------------------------------------


async def test_mutual_tls_presents_the_client_certificate_and_its_spiffe_id(
    start_server: StartServer,
) -> None:
    server = await start_server(mtls=True)
    async with connect(
        server.target,
        ca=CA,
        client_cert=CLIENT_CERT,
        client_key=str(CLIENT_KEY),
        credential=API_KEY,
    ) as channel:
        await unary_and_stream(channel)
    cert, key = CLIENT_CERT.read_bytes(), CLIENT_KEY.read_bytes()
    await in_thread_sync(
        lambda: connect_sync(server.target, ca=CA, client_cert=cert, client_key=key)
    )
    assert [(c.method, c.sans, c.authorization) for c in server.calls] == [
        ("ListVendors", [SPIFFE_ID], [f"Bearer {API_KEY}"]),
        ("Drive", [SPIFFE_ID], [f"Bearer {API_KEY}"]),
        ("ListVendors", [SPIFFE_ID], []),
        ("Drive", [SPIFFE_ID], []),
    ]
    assert server.calls[0].auth_context["peer_spiffe_id"] == [SPIFFE_ID]


async def test_mutual_tls_without_a_client_certificate_fails_unavailable(
    start_server: StartServer,
) -> None:
    server = await start_server(mtls=True)
    await expect_unavailable(connect(server.target, ca=CA, credential=API_KEY))
    assert server.calls == []


# -- plaintext -----------------------------------------------------------------------------------


async def test_plaintext_must_be_explicit_and_refuses_a_credential(
    start_server: StartServer,
) -> None:
    server = await start_server(tls=False)
    for open_channel in (connect, connect_sync):
        with pytest.raises(ValueError, match="clear text"):
            open_channel(server.target, plaintext=True, credential=API_KEY)
    async with connect(server.target, plaintext=True) as channel:
        await unary_and_stream(channel)
    await in_thread_sync(lambda: connect_sync(server.target, plaintext=True))
    assert [(c.method, c.authorization, c.transport) for c in server.calls] == [
        ("ListVendors", [], b"insecure"),
        ("Drive", [], b"insecure"),
        ("ListVendors", [], b"insecure"),
        ("Drive", [], b"insecure"),
    ]


async def test_plaintext_credential_when_allowed_arrives_on_every_call(
    start_server: StartServer,
) -> None:
    server = await start_server(tls=False)
    allowed: dict[str, Any] = {
        "plaintext": True,
        "allow_plaintext_credential": True,
        "credential": API_KEY,
    }
    async with connect(server.target, **allowed) as channel:
        await unary_and_stream(channel)
    await in_thread_sync(lambda: connect_sync(f"localhost:{server.port}", **allowed))
    assert [(c.method, c.authorization) for c in server.calls] == [
        ("ListVendors", [f"Bearer {API_KEY}"]),
        ("Drive", [f"Bearer {API_KEY}"]),
        ("ListVendors", [f"Bearer {API_KEY}"]),
        ("Drive", [f"Bearer {API_KEY}"]),
    ]


async def test_an_allowed_plaintext_credential_over_a_unix_socket(
    start_server: StartServer, tmp_path: Path
) -> None:
    target = f"unix:{tmp_path / 'gateway.sock'}"
    server = await start_server(tls=False, bind=target)
    async with connect(
        target, plaintext=True, allow_plaintext_credential=True, credential=JWT
    ) as channel:
        await unary_and_stream(channel)
    assert [(c.method, c.authorization) for c in server.calls] == [
        ("ListVendors", [f"Bearer {JWT}"]),
        ("Drive", [f"Bearer {JWT}"]),
    ]


def _non_loopback_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address: str = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_an_allowed_plaintext_credential_never_leaves_the_host(
    start_server: StartServer,
) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    server = await start_server(tls=False, bind="0.0.0.0:0")
    error = await expect_unavailable(
        connect(
            f"{address}:{server.port}",
            plaintext=True,
            allow_plaintext_credential=True,
            credential=API_KEY,
        )
    )
    assert "loopback" in error
    assert server.calls == []
    # Without a credential, plaintext reaches any address (a sandbox on another host).
    async with connect(f"{address}:{server.port}", plaintext=True) as channel:
        await pb_grpc.AvatarGatewayStub(channel).ListVendors(pb.ListVendorsRequest(), timeout=5)
    assert [c.authorization for c in server.calls] == [[]]


# -- argument errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_cert": CLIENT_CERT}, "go together"),
        ({"client_key": CLIENT_KEY}, "go together"),
        ({"plaintext": True, "ca": CA}, "conflicts with the TLS option"),
        ({"plaintext": True, "server_name": "localhost"}, "conflicts with the TLS option"),
        ({"credential": ""}, "non-empty"),
        ({"credential": f"Bearer {API_KEY}"}, "no 'Bearer ' prefix"),
        ({"credential": f"{API_KEY}\n"}, "no spaces or newlines"),
        ({"ca": CA.read_text()}, "must be bytes"),
        ({"ca": b"not a certificate"}, "not PEM"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect("127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match=message):
        connect_sync("127.0.0.1:1", **kwargs)


def test_an_unreadable_pem_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        connect_sync("127.0.0.1:1", ca=tmp_path / "missing.pem")


# -- the interop driver's tls and credential fields ----------------------------------------------


async def run_driver(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs the Python interop driver on ``payload`` (a Drive on a session the recording server
    accepts as is) and returns its output lines."""
    steps = [
        {"op": "drive", "session": SESSION},
        {"op": "end_turn"},
        {"op": "half_close"},
        {"op": "wait_status", "timeout_ms": 5000},
    ]
    body = {"vendor": "zegocloud", "avatar_id": "zego_emma", "steps": steps, **payload}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DRIVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(body).encode()), 30)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def drive_outcome(lines: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (line["type"], line.get("event") or line.get("op") or line.get("code"))
        for line in lines
        if line["type"] in ("event", "status", "done")
    ]


async def test_the_interop_driver_uses_tls_and_the_credential(start_server: StartServer) -> None:
    server = await start_server(mtls=True)
    lines = await run_driver(
        {
            "target": server.target,
            "tls": {
                "ca_file": str(CA),
                "server_name": "localhost",
                "cert_file": str(CLIENT_CERT),
                "key_file": str(CLIENT_KEY),
            },
            "credential": JWT,
        }
    )
    assert drive_outcome(lines) == [
        ("event", "started"),
        ("event", "speech_ended"),
        ("status", "drive"),
        ("done", None),
    ]
    assert [line["code"] for line in lines if line["type"] == "status"] == [0]
    assert [(c.method, c.authorization, c.sans) for c in server.calls] == [
        ("Drive", [f"Bearer {JWT}"], [SPIFFE_ID]),
    ]


async def test_the_interop_driver_without_tls_is_plaintext(start_server: StartServer) -> None:
    server = await start_server(tls=False)
    await run_driver({"target": server.target})
    await run_driver({"target": server.target, "credential": API_KEY})
    assert [(c.method, c.authorization, c.transport) for c in server.calls] == [
        ("Drive", [], b"insecure"),
        ("Drive", [f"Bearer {API_KEY}"], b"insecure"),
    ]


# -- the caller's trace context ------------------------------------------------------------------

W3C_AND_BAGGAGE = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
REMOTE_PARENT = trace.SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    trace_state=trace.TraceState([("vendor1", "opaque-1")]),
)


@dataclass
class Tracing:
    """The OpenTelemetry SDK as a caller's service has it: a tracer whose spans are recorded."""

    tracer: trace.Tracer
    exporter: InMemorySpanExporter

    def traceparent(self, span: trace.Span) -> str:
        """The W3C traceparent of ``span``, after checking the SDK recorded it."""
        ctx = span.get_span_context()
        assert ctx.is_valid and ctx.trace_flags.sampled, ctx
        finished: tuple[ReadableSpan, ...] = self.exporter.get_finished_spans()
        assert ctx in [s.get_span_context() for s in finished], f"{ctx} was not recorded"
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """An SDK tracer provider (not global) and, after the test, the global propagator back."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = propagate.get_global_textmap()
    yield Tracing(provider.get_tracer("client-tracing-test"), exporter)
    propagate.set_global_textmap(saved)
    provider.shutdown()


def trace_fields(server: Server) -> list[tuple[str, list[str], list[str], list[str]]]:
    return [
        (c.method, c.trace["traceparent"], c.trace["tracestate"], c.trace["baggage"])
        for c in server.calls
    ]


async def test_the_callers_trace_context_goes_with_unary_and_streaming_calls(
    start_server: StartServer, tracing: Tracing
) -> None:
    propagate.set_global_textmap(W3C_AND_BAGGAGE)
    server = await start_server()
    # The caller's span continues a remote parent that set a tracestate entry, with baggage.
    parent = baggage.set_baggage(
        "tenant", "acme", trace.set_span_in_context(trace.NonRecordingSpan(REMOTE_PARENT))
    )
    token = otel_context.attach(parent)
    try:
        with tracing.tracer.start_as_current_span("caller") as span:
            async with connect(server.target, ca=CA, credential=API_KEY) as channel:
                await unary_and_stream(channel)
                # A traceparent the caller passed is replaced, not sent twice.
                stale = (("traceparent", f"00-{'1' * 32}-{'2' * 16}-01"),)
                stub = pb_grpc.AvatarGatewayStub(channel)
                await stub.ListVendors(pb.ListVendorsRequest(), timeout=5, metadata=stale)
            await in_thread_sync(lambda: connect_sync(server.target, ca=CA, credential=API_KEY))
    finally:
        otel_context.detach(token)
    ctx = span.get_span_context()
    assert ctx.trace_id == REMOTE_PARENT.trace_id and ctx.span_id != REMOTE_PARENT.span_id
    finished = tracing.exporter.get_finished_spans()
    assert [s.parent.span_id if s.parent else None for s in finished] == [REMOTE_PARENT.span_id]
    expected = [tracing.traceparent(span)]
    assert expected == [f"00-4bf92f3577b34da6a3ce929d0e0e4736-{ctx.span_id:016x}-01"]
    assert trace_fields(server) == [
        (method, expected, ["vendor1=opaque-1"], ["tenant=acme"])
        for method in ("ListVendors", "Drive", "ListVendors", "ListVendors", "Drive")
    ]


async def test_the_w3c_trace_context_goes_even_without_a_global_propagator(
    start_server: StartServer, tracing: Tracing
) -> None:
    propagate.set_global_textmap(CompositePropagator([]))  # as with OTEL_PROPAGATORS=none
    server = await start_server(tls=False)
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracing.tracer.start_as_current_span("caller") as span:
            async with connect(server.target, plaintext=True) as channel:
                await unary_and_stream(channel)
            await in_thread_sync(lambda: connect_sync(server.target, plaintext=True))
    finally:
        otel_context.detach(token)
    expected = [tracing.traceparent(span)]
    assert trace_fields(server) == [
        (method, expected, [], []) for method in ("ListVendors", "Drive", "ListVendors", "Drive")
    ]


async def test_without_a_span_or_with_propagation_off_no_trace_context_is_sent(
    start_server: StartServer, tracing: Tracing
) -> None:
    propagate.set_global_textmap(W3C_AND_BAGGAGE)
    server = await start_server(tls=False)
    async with connect(server.target, plaintext=True) as channel:
        await unary_and_stream(channel)
    await in_thread_sync(lambda: connect_sync(server.target, plaintext=True))
    with tracing.tracer.start_as_current_span("caller") as span:
        async with connect(server.target, plaintext=True, propagate_trace_context=False) as channel:
            await unary_and_stream(channel)
        await in_thread_sync(
            lambda: connect_sync(server.target, plaintext=True, propagate_trace_context=False)
        )
    tracing.traceparent(span)  # a valid span, not sent
    assert trace_fields(server) == [(method, [], [], []) for method in ["ListVendors", "Drive"] * 4]
