"""The metrics of the README's table, read from /metrics on the ops listener after real calls.

Every test scrapes before and after real gRPC calls on loopback (and real emulator faults)
and checks the change in the series it expects: the metrics are process-wide, so other
gateways of the same test process may have counted before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from core.contract import PacingRule
from gateway.auth import hash_key
from tests.conftest import (
    Gateway,
    audio_format,
    collect,
    drive_error,
    kinds,
    make_settings,
    paced_requests,
    running_gateway,
    tone,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

C = grpc.StatusCode
SERVICE = "avatar.gateway.v1.AvatarGateway"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CALLS = "rpc_server_call_duration_seconds"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gw: Gateway) -> Samples:
    """Every sample of /metrics, by name and label set."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{gw.server.ops_url}/metrics")
    assert response.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def calls(samples: Samples, method: str, code: str) -> float:
    """Finished calls of ``method`` (short name, or ``_OTHER``) that ended with ``code``."""
    full = method if method == "_OTHER" else f"{SERVICE}/{method}"
    return value(
        samples,
        f"{CALLS}_count",
        rpc_system_name="grpc",
        rpc_method=full,
        rpc_response_status_code=code,
        error_type="" if code == "OK" else code,
    )


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def settle(gw: Gateway, check: Any, within_s: float = 5.0) -> Samples:
    """Scrape until ``check(samples)`` holds (a call's end is counted after its status)."""
    deadline = time.monotonic() + within_s
    while True:
        samples = await scrape(gw)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def config_then_wait(session: str) -> AsyncIterator[pb.DriveRequest]:
    """A Drive's config, then nothing until the server ends the call (it must)."""
    yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
    await asyncio.sleep(30)


# ---- gRPC calls -------------------------------------------------------------------------


async def test_each_unary_method_is_counted_with_its_status_code(gateway: Gateway) -> None:
    stub = gateway.stub
    before = await scrape(gateway)
    session = await gateway.create()
    await stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
    await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
    await stub.ListVendors(pb.ListVendorsRequest(), timeout=10)
    await stub.ListAvatars(pb.ListAvatarsRequest(parent="vendors/zegocloud"), timeout=10)
    await stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSession(pb.GetSessionRequest(name="sessions/nothing-here"), timeout=10)
    assert missing.value.code() == C.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListAvatars(pb.ListAvatarsRequest(parent="avatars"), timeout=10)
    assert bad.value.code() == C.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await gateway.channel.unary_unary(f"/{SERVICE}/NoSuchMethod")(b"", timeout=10)
    assert unknown.value.code() == C.UNIMPLEMENTED
    after = await scrape(gateway)

    for method in ("CreateSession", "ListSessions", "ListVendors", "CloseSession"):
        assert calls(after, method, "OK") - calls(before, method, "OK") == 1, method
    assert calls(after, "GetSession", "OK") - calls(before, "GetSession", "OK") == 1
    assert calls(after, "ListAvatars", "OK") - calls(before, "ListAvatars", "OK") == 1
    assert calls(after, "GetSession", "NOT_FOUND") - calls(before, "GetSession", "NOT_FOUND") == 1
    assert (
        calls(after, "ListAvatars", "INVALID_ARGUMENT")
        - calls(before, "ListAvatars", "INVALID_ARGUMENT")
        == 1
    )
    # A method the server does not serve is one bounded label, not the client's string.
    assert calls(after, "_OTHER", "UNIMPLEMENTED") - calls(before, "_OTHER", "UNIMPLEMENTED") == 1
    assert not any("NoSuchMethod" in dict(ls).get("rpc_method", "") for _, ls in after)
    # The durations are real: CreateSession waited for the vendor, the sum grew by as much.
    create = {"rpc_method": f"{SERVICE}/CreateSession", "rpc_response_status_code": "OK"}
    assert 0 < delta(before, after, f"{CALLS}_sum", **create) < 30
    # Errors by ErrorInfo reason are labelled with the method, no longer all "unary".
    assert (
        delta(
            before,
            after,
            "avatar_gateway_rpc_errors_total",
            method="GetSession",
            reason="SESSION_NOT_FOUND",
        )
        == 1
    )
    assert value(after, "avatar_gateway_rpc_errors_total", method="unary") == 0
    # Nothing is left in flight.
    for method in ("CreateSession", "GetSession", "ListAvatars"):
        active = {"rpc_method": f"{SERVICE}/{method}"}
        assert value(after, "avatar_gateway_rpc_server_active_calls", **active) == 0


async def test_calls_refused_for_their_credential_are_counted_unauthenticated(
    tmp_path: Path,
) -> None:
    key = "agk_metrics_0123456789abcdef"
    keys = tmp_path / "keys"
    keys.write_text(f"acme {hash_key(key)}\n")
    async with running_gateway(make_settings(api_keys_file=str(keys))) as gw:
        before = await scrape(gw)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.stub.ListVendors(pb.ListVendorsRequest(), timeout=10)
        assert refused.value.code() == C.UNAUTHENTICATED
        wrong = (("authorization", "Bearer agk_wrong_0123456789abcdef"),)
        with pytest.raises(grpc.aio.AioRpcError) as drive_refused:
            await collect(gw.stub.Drive(config_then_wait("sessions/x"), metadata=wrong, timeout=10))
        assert drive_refused.value.code() == C.UNAUTHENTICATED
        ok = (("authorization", f"Bearer {key}"),)
        await gw.stub.ListVendors(pb.ListVendorsRequest(), metadata=ok, timeout=10)
        after = await settle(
            gw,
            lambda s: (
                calls(s, "Drive", "UNAUTHENTICATED") > calls(before, "Drive", "UNAUTHENTICATED")
            ),
        )
    code = "UNAUTHENTICATED"
    assert calls(after, "ListVendors", code) - calls(before, "ListVendors", code) == 1
    assert calls(after, "Drive", code) - calls(before, "Drive", code) == 1
    assert calls(after, "ListVendors", "OK") - calls(before, "ListVendors", "OK") == 1
    refusals = delta(
        before, after, "avatar_gateway_rpc_errors_total", method="ListVendors", reason=code
    )
    assert refusals == 1


async def test_a_drive_stream_is_counted_once_at_its_end_with_its_status(gateway: Gateway) -> None:
    session = await gateway.create()
    before = await scrape(gateway)
    hold = asyncio.Event()
    call = gateway.stub.Drive(
        paced_requests(session.name, tone(1.0), realtime=False, hold=hold), timeout=30
    )
    started = time.monotonic()
    responses = []
    async for response in call:
        responses.append(response)
        if response.HasField("speech_ended"):
            break
    # Open: one call in flight, none counted yet; the drive gauge says the same.
    during = await scrape(gateway)
    drive = {"rpc_method": f"{SERVICE}/Drive"}
    assert value(during, "avatar_gateway_rpc_server_active_calls", **drive) == 1
    assert calls(during, "Drive", "OK") == calls(before, "Drive", "OK")
    assert value(during, "avatar_gateway_active_drives", vendor="zegocloud") == 1
    hold.set()
    responses += [r async for r in call]
    assert await call.code() == C.OK
    lasted = time.monotonic() - started
    after = await settle(gateway, lambda s: calls(s, "Drive", "OK") > calls(before, "Drive", "OK"))
    assert calls(after, "Drive", "OK") - calls(before, "Drive", "OK") == 1
    ok = {**drive, "rpc_response_status_code": "OK"}
    assert lasted * 0.5 < delta(before, after, f"{CALLS}_sum", **ok) <= lasted + 1
    assert value(after, "avatar_gateway_rpc_server_active_calls", **drive) == 0
    assert value(after, "avatar_gateway_active_drives", vendor="zegocloud") == 0
    assert "speech_ended" in kinds(responses)

    # A Drive that fails ends with its status: NOT_FOUND for a session that does not exist.
    config = pb.DriveConfig(session="sessions/nothing-here", audio_format=audio_format())
    code, *_ = await drive_error(gateway.stub, [pb.DriveRequest(config=config)])
    assert code == C.NOT_FOUND
    # A Drive the client cancels is CANCELLED.
    cancelled = gateway.stub.Drive(
        paced_requests(session.name, tone(0.2), realtime=False, hold=asyncio.Event()), timeout=30
    )
    async for response in cancelled:
        if response.HasField("started"):
            break
    cancelled.cancel()
    final = await settle(
        gateway, lambda s: calls(s, "Drive", "CANCELLED") > calls(before, "Drive", "CANCELLED")
    )
    assert calls(final, "Drive", "NOT_FOUND") - calls(before, "Drive", "NOT_FOUND") == 1
    assert calls(final, "Drive", "CANCELLED") - calls(before, "Drive", "CANCELLED") == 1
    assert calls(final, "Drive", "OK") - calls(before, "Drive", "OK") == 1


async def test_health_checks_are_counted_under_the_health_service(gateway: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    before = await scrape(gateway)
    health = health_pb2_grpc.HealthStub(gateway.channel)
    await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    # Watch writes with context.write instead of yielding: measured to its end all the same.
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watching = await scrape(gateway)
    method = {"rpc_method": "grpc.health.v1.Health/Watch"}
    assert value(watching, "avatar_gateway_rpc_server_active_calls", **method) == 1
    watch.cancel()
    after = await settle(
        gateway,
        lambda s: value(s, "avatar_gateway_rpc_server_active_calls", **method) == 0,
    )
    check = {"rpc_method": "grpc.health.v1.Health/Check", "rpc_response_status_code": "OK"}
    assert delta(before, after, f"{CALLS}_count", **check) == 1
    ended = {**method, "rpc_response_status_code": "CANCELLED"}
    assert delta(before, after, f"{CALLS}_count", **ended) == 1


# ---- sessions, drives, backlog, pacing --------------------------------------------------


async def test_session_gauges_follow_the_sessions_this_replica_owns(gateway: Gateway) -> None:
    base = await scrape(gateway)
    assert value(base, "avatar_gateway_active_sessions", vendor="zegocloud") == 0
    session = await gateway.create(idle_timeout={"seconds": 60})
    await asyncio.sleep(0.3)
    opened = await scrape(gateway)
    assert value(opened, "avatar_gateway_active_sessions", vendor="zegocloud") == 1
    undriven = value(opened, "avatar_gateway_session_undriven_max_seconds", vendor="zegocloud")
    assert 0.2 < undriven < 30
    assert value(opened, "avatar_gateway_session_overdue_max_seconds", vendor="zegocloud") == 0
    # A session past its idle timeout that the reaper has not closed (it is held back here)
    # shows how overdue it is: what the leak alert watches.
    manager = gateway.server.manager
    assert manager is not None
    manager._reaper_stopped = True
    assert manager._reaper is not None
    manager._reaper.cancel()
    runtime = manager.runtimes[session.name.split("/")[1]]
    runtime.last_activity -= 65
    overdue = await scrape(gateway)
    late = value(overdue, "avatar_gateway_session_overdue_max_seconds", vendor="zegocloud")
    assert 4 < late < 30
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=10)
    closed = await scrape(gateway)
    assert value(closed, "avatar_gateway_active_sessions", vendor="zegocloud") == 0
    assert value(closed, "avatar_gateway_session_overdue_max_seconds", vendor="zegocloud") == 0


async def test_backlog_and_pacing_lateness_are_observed_during_a_drive(gateway: Gateway) -> None:
    """ZEGO pushes at most 2 s ahead (zegocloud.md §8): 4 s of audio sent at once queues up
    behind the pacer, so the stream's backlog is seen, and paced frames are timed."""
    session = await gateway.create()
    before = await scrape(gateway)
    backlog_seen: list[float] = []

    async def watch() -> None:
        while True:
            samples = await scrape(gateway)
            backlog_seen.append(
                value(samples, "avatar_gateway_drive_backlog_max_seconds", vendor="zegocloud")
            )
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        responses = await collect(
            gateway.stub.Drive(
                paced_requests(session.name, tone(4.0), realtime=False, chunk_ms=100), timeout=30
            )
        )
    finally:
        watcher.cancel()
    assert "speech_ended" in kinds(responses)
    after = await scrape(gateway)
    frames = 4000 // 20
    sampled = delta(before, after, "avatar_gateway_drive_backlog_seconds_count", vendor="zegocloud")
    assert sampled == frames
    assert max(backlog_seen) > 0.1, backlog_seen
    assert backlog_seen[-1] == 0 or value(after, "avatar_gateway_drive_backlog_max_seconds") == 0
    # Once the 2 s burst is used, frames wait for their slot (how many depends on how fast
    # the sends themselves go: the bucket refills meanwhile); each wait's wake is measured.
    paced = delta(before, after, "avatar_gateway_pacing_lateness_seconds_count", vendor="zegocloud")
    assert 0 < paced <= frames - 100
    late = delta(before, after, "avatar_gateway_pacing_lateness_seconds_sum", vendor="zegocloud")
    assert 0 <= late / paced < 0.05  # an idle loop wakes its timers within milliseconds
    # The audio sent is counted as before.
    sent = delta(before, after, "avatar_gateway_audio_sent_seconds_total", vendor="zegocloud")
    assert sent == pytest.approx(4.0, abs=0.05)
    assert PacingRule(20, 100, 20).max_push_ahead_ms == 2000  # what the numbers above assume


# ---- vendors ----------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud"}], indirect=True)
async def test_vendor_requests_are_counted_per_endpoint_and_outcome(gateway: Gateway) -> None:
    emulator = gateway.emulator("zegocloud")
    hist = "avatar_gateway_vendor_request_duration_seconds"
    before = await scrape(gateway)
    session = await gateway.create()
    after_create = await scrape(gateway)
    create = {"vendor": "zegocloud", "endpoint": "CreateDigitalHumanStreamTask", "outcome": "200"}
    assert delta(before, after_create, f"{hist}_count", **create) == 1
    assert 0 < delta(before, after_create, f"{hist}_sum", **create) < 10
    status = {"vendor": "zegocloud", "endpoint": "GetDigitalHumanStreamTaskStatus"}
    assert delta(before, after_create, f"{hist}_count", **status, outcome="200") >= 1
    # Vendor failures: a 503 (retried) on close, then a business error code on a create.
    emulator.faults.fail_next("StopDigitalHumanStreamTask", http_status=503)
    await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=20)
    emulator.faults.fail_next("CreateDigitalHumanStreamTask", 400000008)
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.create()
    after = await scrape(gateway)
    stop = {"vendor": "zegocloud", "endpoint": "StopDigitalHumanStreamTask"}
    assert delta(after_create, after, f"{hist}_count", **stop, outcome="503") == 1
    assert delta(after_create, after, f"{hist}_count", **stop, outcome="200") == 1
    quota = {"vendor": "zegocloud", "reason": "VENDOR_QUOTA_EXCEEDED"}
    assert delta(after_create, after, "avatar_gateway_vendor_errors_total", **quota) == 1
    # Endpoints are operation names: no request carries an id into a label.
    endpoints = {dict(ls).get("endpoint", "") for (n, ls) in after if n == f"{hist}_count"}
    assert session.vendor_session_id not in endpoints
    assert all(len(e) < 80 for e in endpoints)


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "tencent"}], indirect=True)
async def test_a_dropped_vendor_channel_counts_one_reconnect(gateway: Gateway) -> None:
    session = await gateway.create("tencent", "sandbox-project")
    emulator = gateway.emulator("tencent")
    before = await scrape(gateway)
    started = asyncio.Event()

    async def dropper() -> int:
        await started.wait()
        await asyncio.sleep(0.5)
        dropped: int = await emulator.drop_channels(session.vendor_session_id)
        return dropped

    task = asyncio.create_task(dropper())
    responses = []
    async for response in gateway.stub.Drive(
        paced_requests(session.name, tone(2.0), realtime=False), timeout=30
    ):
        responses.append(response)
        if response.HasField("started"):
            started.set()
    assert await task == 1
    assert "VENDOR_RECONNECTED" in [r.warning.reason for r in responses if r.HasField("warning")]
    after = await scrape(gateway)
    reconnected = {"vendor": "tencent", "outcome": "succeeded"}
    assert delta(before, after, "avatar_gateway_vendor_reconnects_total", **reconnected) == 1
    failed = {"vendor": "tencent", "outcome": "failed"}
    assert delta(before, after, "avatar_gateway_vendor_reconnects_total", **failed) == 0
    assert "speech_ended" in kinds(responses)


# ---- event loop, drain ------------------------------------------------------------------


async def test_event_loop_lag_is_sampled_and_shows_a_blocked_loop(gateway: Gateway) -> None:
    lag = "avatar_gateway_event_loop_lag_seconds"
    before = await scrape(gateway)
    await asyncio.sleep(1.0)
    idle = await scrape(gateway)
    samples = delta(before, idle, f"{lag}_count")
    assert 2 <= samples <= 6  # one every 0.25 s
    assert 0 <= delta(before, idle, f"{lag}_sum") / samples < 0.05
    # Block the loop as a slow callback would: the next wake is late by about as much.
    # Blocked 0.6 s, the monitor's next wake (due within 0.25 s) is over 0.35 s late.
    time.sleep(0.6)  # noqa: ASYNC251 - the point: a callback that blocks the loop
    await asyncio.sleep(0.6)
    blocked = await scrape(gateway)
    slow = delta(idle, blocked, f"{lag}_count") - delta(idle, blocked, f"{lag}_bucket", le="0.25")
    assert slow >= 1
    assert delta(idle, blocked, f"{lag}_sum") >= 0.35


async def test_draining_seconds_and_grace_are_exported_during_a_drain() -> None:
    settings = make_settings(shutdown_grace_s=7.0)
    async with running_gateway(settings) as gw:
        serving = await scrape(gw)
        assert value(serving, "avatar_gateway_shutdown_grace_seconds") == 7.0
        assert value(serving, "avatar_gateway_draining_seconds") == 0
        session = await gw.create()
        started = asyncio.Event()
        hold = asyncio.Event()

        async def drive() -> None:
            async for response in gw.stub.Drive(
                paced_requests(session.name, tone(0.2), hold=hold), timeout=30
            ):
                if response.HasField("started"):
                    started.set()
                if response.HasField("go_away"):
                    await asyncio.sleep(0.4)
                    hold.set()

        task = asyncio.create_task(drive())
        await asyncio.wait_for(started.wait(), 20)
        stopping = asyncio.create_task(gw.server.stop(grace_s=5))
        await asyncio.sleep(0.3)
        draining = await scrape(gw)
        assert 0.2 < value(draining, "avatar_gateway_draining_seconds") < 5
        hold.set()
        await task
        await stopping


async def test_every_metric_family_of_the_readme_is_exported(gateway: Gateway) -> None:
    """The README's metrics table and /metrics name the same families."""
    section = README.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert len(documented) > 20
    session = await gateway.create()
    await collect(
        gateway.stub.Drive(paced_requests(session.name, tone(0.3), realtime=False), timeout=20)
    )
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{gateway.server.ops_url}/metrics")).text
    exported = {
        family.name
        for family in text_string_to_metric_families(text)
        if not family.name.startswith(("python_", "process_"))
    }
    # The parser reads each counter's and histogram's _created series as a family of its own.
    exported = {n for n in exported if not (n.endswith("_created") and n[:-8] in exported)}
    # Counters are exported without _total in the family name by the parser.
    documented_families = {re.sub(r"_total$", "", name) for name in documented}
    assert documented_families == exported, (
        f"undocumented: {sorted(exported - documented_families)}; "
        f"not exported: {sorted(documented_families - exported)}"
    )
