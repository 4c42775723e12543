"""Traces to a real backend: a gateway process exports over OTLP to a real Jaeger, and the
whole trace of a caller's calls is read back from Jaeger's query API.

The gateway runs as ``python -m gateway serve --sandbox`` configured only by the standard
``OTEL_*`` variables (the tracer provider is global to a process). The caller sends its own
W3C ``traceparent`` on every call; the test then checks, from what Jaeger stored:

* every span is in the caller's trace, and each RPC's server span is a child of the caller's
  span (the context was continued, not restarted);
* the vendor REST calls (httpx) are CLIENT spans under the RPC or the turn that made them,
  with the ZEGOCLOUD signature masked in their URL;
* the drive socket connect is a span under its turn, with no query string recorded;
* each Drive turn is a span under the Drive span, with ``first_vendor_byte``,
  ``speech_started``, ``interrupt_sent`` and ``interrupt_acknowledged`` events;
* the gateway's own log lines of those calls carry the trace id and the id of their span.

Jaeger is built from its Go module (``tools/build_jaeger.sh``, ``make jaeger``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.auth import hash_key
from gateway.logs import redact
from tests.conftest import audio_format, tone
from tests.jaeger import Jaeger, ensure_built

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/avatar.gateway.v1.AvatarGateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    """A real Jaeger on loopback for this module (built first if missing)."""
    ensure_built()
    server = Jaeger()
    server.start()
    yield server
    server.stop()


class GatewayProcess:
    """``python -m gateway serve --sandbox`` (ZEGOCLOUD) with JSON logs and the given env."""

    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.ops_port = free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_GATEWAY_", "OTEL_"))
        }
        self.env.update(
            AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{self.ops_port}",
            AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{free_port()}",
            AVATAR_GATEWAY_SANDBOX_VENDORS="zegocloud",
            AVATAR_GATEWAY_LOG_FORMAT="json",
            AVATAR_GATEWAY_LOG_LEVEL="info",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def spawn(self) -> asyncio.subprocess.Process:
        """``serve --sandbox`` with this environment, its stderr piped; not waited for."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--sandbox",
            cwd=ROOT,
            env=self.env,
            stderr=asyncio.subprocess.PIPE,
        )
        return self.proc

    async def __aenter__(self) -> GatewayProcess:
        await self.spawn()
        started = asyncio.Event()
        self._reader = asyncio.create_task(self._read(started))
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait([waiting, self._reader], timeout=90, return_when="FIRST_COMPLETED")
        if not started.is_set():
            waiting.cancel()
            # __aexit__ does not run when __aenter__ raises: nothing may be left running.
            await self.__aexit__()
            raise AssertionError(f"the gateway did not start: {self.lines}")
        return self

    async def _read(self, started: asyncio.Event) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            # Every line of the process is one JSON object: a plain-text line fails here.
            line = json.loads(raw)
            self.lines.append(line)
            if line.get("event") == "gateway_started":
                started.set()

    async def stop(self) -> int:
        """SIGTERM: the gateway drains, flushes its spans and exits; its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code

    async def __aexit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()


def tags(item: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in item.get("tags") or item.get("fields") or []}


def parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references") or [] if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def events(span: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The span's events by name (Jaeger stores an event as a log with an ``event`` field)."""
    return {tags(log)["event"]: tags(log) for log in span.get("logs") or []}


async def poll_trace(
    jaeger: Jaeger, trace_id: str, complete: Any, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Poll Jaeger's query API until ``complete(trace)`` holds; fail with what it has."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(jaeger.trace, trace_id)
        if found is not None and complete(found):
            return found
        await asyncio.sleep(0.25)
    names = sorted(s["operationName"] for s in (found or {}).get("spans", []))
    raise AssertionError(
        f"trace {trace_id} incomplete after {timeout_s:g} s: {names}\n{jaeger.log_tail()}"
    )


async def drive_prepared(gw: GatewayProcess, task_id: str, timeout_s: float = 30.0) -> None:
    """Wait until the ZEGOCLOUD emulator has a drive of ``task_id`` asked for and unstarted
    (zegocloud.md §8.6), read from its ``/_emulator/state`` (found through ``/sandbox``)."""
    async with httpx.AsyncClient(timeout=5) as http:
        admin = (await http.get(f"http://127.0.0.1:{gw.ops_port}/sandbox")).json()["zegocloud"]
        deadline = time.monotonic() + timeout_s
        while True:
            state = (await http.get(f"{admin}/_emulator/state")).json()
            if any(d["task_id"] == task_id for d in state["unstarted_drives"].values()):
                return
            assert time.monotonic() < deadline, "no drive was prepared"
            await asyncio.sleep(0.05)


async def drive_with_interrupt(
    stub: pb_grpc.AvatarGatewayStub, session: str, metadata: tuple[tuple[str, str], ...]
) -> list[pb.DriveResponse]:
    """Turn 1: 1 s of audio at real time, then an interrupt; after its ack, turn 2 (0.5 s)."""
    pcm = tone(2.0)
    interrupted = asyncio.Event()

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
        for i in range(0, 32000, 1280):
            yield pb.DriveRequest(audio=pcm[i : i + 1280])
            await asyncio.sleep(0.04)
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await interrupted.wait()
        for i in range(0, 16000, 1280):
            yield pb.DriveRequest(audio=pcm[i : min(i + 1280, 16000)])
        yield pb.DriveRequest(end_turn=pb.EndTurn())

    responses = []
    async for r in stub.Drive(requests(), metadata=metadata, timeout=60):
        responses.append(r)
        if r.HasField("interrupted"):
            interrupted.set()
    return responses


async def test_a_callers_session_and_drive_are_one_trace_in_jaeger(jaeger: Jaeger) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    metadata = (("traceparent", f"00-{trace_id}-{caller_span}-01"),)
    # A batch delay far beyond the test: the spans reach Jaeger through the shutdown flush.
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    async with GatewayProcess(**env) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            session = await stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
                metadata=metadata,
                timeout=60,
            )
            # Turn 1 starts once the task idled long enough for its drive to be prepared.
            await drive_prepared(gw, session.vendor_session_id)
            responses = await drive_with_interrupt(stub, session.name, metadata)
            await stub.CloseSession(
                pb.CloseSessionRequest(name=session.name), metadata=metadata, timeout=30
            )
        assert await gw.stop() == 0
    ack = next(r.interrupted for r in responses if r.HasField("interrupted"))
    assert ack.turn_id == "1" and ack.vendor_acknowledged
    ended = {r.speech_ended.turn_id for r in responses if r.HasField("speech_ended")}
    assert ended == {"1", "2"}

    def complete(found: dict[str, Any]) -> bool:
        names = [s["operationName"] for s in found["spans"]]
        return (
            all(f"{SERVICE}/{m}" in names for m in ("CreateSession", "Drive", "CloseSession"))
            and names.count("drive turn") == 2
        )

    found = await poll_trace(jaeger, trace_id, complete)
    spans = found["spans"]
    assert {s["traceID"] for s in spans} == {trace_id}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["operationName"], []).append(s)
    (process,) = {found["processes"][s["processID"]]["serviceName"] for s in spans}
    assert process == "avatar-gateway"

    # One SERVER span per RPC, each continuing the caller's span.
    servers = {}
    for method in ("CreateSession", "Drive", "CloseSession"):
        (span,) = by_name[f"{SERVICE}/{method}"]
        assert tags(span)["span.kind"] == "server"
        assert tags(span)["rpc.method"] == method
        assert parent(span) == caller_span, span["references"]
        servers[method] = span
    assert tags(servers["CreateSession"])["avatar_gateway.session.id"] == session.name.split("/")[1]
    assert tags(servers["Drive"])["avatar_gateway.vendor"] == "zegocloud"

    # The Drive's turns: children of the Drive span, with their events.
    turns = {tags(s)["avatar_gateway.turn.id"]: s for s in by_name["drive turn"]}
    assert set(turns) == {"1", "2"}
    for turn in turns.values():
        assert parent(turn) == servers["Drive"]["spanID"]
    first = events(turns["1"])
    for name in ("first_vendor_byte", "speech_started", "interrupt_sent", "interrupt_acknowledged"):
        assert name in first, sorted(first)
    assert first["interrupt_acknowledged"]["avatar_gateway.acknowledged_by"] == "vendor"
    assert tags(turns["1"])["avatar_gateway.turn.outcome"] == "interrupted"
    second = events(turns["2"])
    assert "first_vendor_byte" in second and "speech_started" in second
    assert "interrupt_sent" not in second
    assert tags(turns["2"])["avatar_gateway.turn.outcome"] == "spoken"
    assert tags(turns["2"])["avatar_gateway.turn.audio_bytes"] == 16000

    # Vendor REST calls: CLIENT spans under what made them, signatures masked.
    def rest_calls(under: dict[str, Any], among: list[dict[str, Any]] | None = None) -> list[str]:
        calls = []
        for s in spans if among is None else among:
            t = tags(s)
            if (
                parent(s) == under["spanID"]
                and t.get("span.kind") == "client"
                and "POST" in s["operationName"]
            ):
                url = t.get("url.full") or t.get("http.url") or ""
                calls.append(url.split("Action=")[1].split("&")[0])
        return calls

    assert "CreateDigitalHumanStreamTask" in rest_calls(servers["CreateSession"])
    assert "InterruptDriveTask" in rest_calls(turns["1"])
    assert "StopDigitalHumanStreamTask" in rest_calls(servers["CloseSession"])
    # Turn 1's drive was prepared while the session was idle (zegocloud.md §8.6), in a trace
    # of its own: not under the turn, nor under the RPC that happened to be running. Turn 2
    # followed the interrupt at once, so it may have asked for its own: then under the turn,
    # with its socket's connect span.
    assert "DriveByWsStream" not in rest_calls(turns["1"])
    assert "DriveByWsStream" not in rest_calls(servers["CreateSession"])
    for turn in turns.values():
        connects = [s for s in by_name.get("websocket connect", []) if parent(s) == turn["spanID"]]
        assert len(connects) == rest_calls(turn).count("DriveByWsStream")

    prepared = await asyncio.to_thread(jaeger.find_traces, "avatar-gateway", "prepare drive")
    assert prepared, jaeger.operations("avatar-gateway")
    connected = 0
    for other in prepared:
        (root,) = [s for s in other["spans"] if s["operationName"] == "prepare drive"]
        assert not root["references"] and other["traceID"] != trace_id
        assert tags(root)["avatar_gateway.vendor"] == "zegocloud"
        assert rest_calls(root, other["spans"]) == ["DriveByWsStream"]
        # The last one may have been cut short by the close (no socket opened).
        for connect in [s for s in other["spans"] if s["operationName"] == "websocket connect"]:
            assert parent(connect) == root["spanID"]
            t = tags(connect)
            assert t["span.kind"] == "client" and t["avatar_gateway.vendor"] == "zegocloud"
            assert t["server.address"] == "127.0.0.1" and t["url.scheme"] in ("ws", "wss")
            connected += 1
    assert connected >= 1  # turn 1's

    # Nothing secret in any attribute: every string is as the log redaction leaves it.
    for s in spans:
        for key, value in tags(s).items():
            if isinstance(value, str):
                assert redact(value) == value, (s["operationName"], key, value)

    # Log lines written inside the calls carry the trace and the span they were written in.
    drive_lines = [line for line in gw.lines if line.get("event") == "drive_started"]
    assert drive_lines, gw.lines
    assert drive_lines[0]["trace_id"] == trace_id
    assert drive_lines[0]["span_id"] == servers["Drive"]["spanID"]
    audit = [line for line in gw.lines if line.get("event") == "audit"]
    assert {line["trace_id"] for line in audit} == {trace_id}, audit
    assert all(line["span_id"] == servers[line["action"]]["spanID"] for line in audit), audit
    # ...and a line outside any call carries none.
    (started,) = [line for line in gw.lines if line.get("event") == "gateway_started"]
    assert "trace_id" not in started


async def test_otlp_over_grpc_with_authentication_refused_and_untraced_calls(
    jaeger: Jaeger, tmp_path: Path
) -> None:
    """OTLP/gRPC export; the tracing interceptor runs before authentication (a refused call
    has its span, in the caller's trace); a call without ``traceparent`` starts a trace."""
    key = secrets.token_urlsafe(24)
    keys = tmp_path / "keys"
    keys.write_text(f"acme {hash_key(key)}\n")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "AVATAR_GATEWAY_API_KEYS_FILE": str(keys),
    }
    refused_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with GatewayProcess(**env) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListVendors(
                    pb.ListVendorsRequest(),
                    metadata=(("traceparent", f"00-{refused_trace}-{caller_span}-01"),),
                    timeout=30,
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetSession(
                    pb.GetSessionRequest(name="sessions/nope"),
                    metadata=(("authorization", f"Bearer {key}"),),
                    timeout=30,
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert await gw.stop() == 0

    # The refused call: a server span in the caller's trace, with its status code.
    def has(method: str) -> Any:
        return lambda t: any(s["operationName"] == f"{SERVICE}/{method}" for s in t["spans"])

    found = await poll_trace(jaeger, refused_trace, has("ListVendors"))
    (span,) = found["spans"]
    assert parent(span) == caller_span
    assert tags(span)["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert found["processes"][span["processID"]]["serviceName"] == "gateway-under-test"
    (audit,) = [line for line in gw.lines if line.get("event") == "audit"]
    assert audit["result"] == "UNAUTHENTICATED" and audit["trace_id"] == refused_trace

    # The authenticated call without traceparent: a root span of a trace of its own, named on
    # the line the call logged.
    (failed,) = [line for line in gw.lines if line.get("event") == "rpc_failed"]
    assert failed["trace_id"] != refused_trace
    found = await poll_trace(jaeger, failed["trace_id"], has("GetSession"))
    (span,) = found["spans"]
    assert parent(span) is None and span["spanID"] == failed["span_id"]
    assert tags(span)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # Health checks are not traced (probes would flood the backend).
    operations = await asyncio.to_thread(jaeger.operations, "gateway-under-test")
    assert f"{SERVICE}/GetSession" in operations
    assert not [op for op in operations if "grpc.health" in op], operations


async def test_an_unknown_otel_exporter_stops_the_gateway_with_one_line() -> None:
    gw = GatewayProcess(OTEL_TRACES_EXPORTER="zipkin")
    proc = await gw.spawn()
    assert proc.stderr is not None
    try:
        out = await asyncio.wait_for(proc.stderr.read(), 60)
        assert await asyncio.wait_for(proc.wait(), 30) == 2
    finally:
        await gw.__aexit__()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines[-1]["event"] == "gateway_not_started", lines
    assert "OTEL_TRACES_EXPORTER" in lines[-1]["reason"], lines
