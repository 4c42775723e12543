"""The two HTTP listeners (docs/security.md §6): the internal ops listener (/metrics,
/healthz readiness, /livez liveness, /sandbox in sandbox mode) and the public callbacks
listener (vendor callbacks only); /healthz turns 503 the moment a drain starts."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import Gateway, kinds, paced_requests, tone

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_each_listener_serves_only_its_own_paths(gateway: Gateway) -> None:
    ops, public = gateway.server.ops_url, gateway.server.callbacks_url
    assert ops != public
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/metrics", "/healthz", "/livez", "/sandbox"):
            assert (await http.get(f"{ops}{path}")).status_code == 200, path
            assert (await http.get(f"{public}{path}")).status_code == 404, path
        # Callbacks only on the public listener (unsigned: refused by the vendor's check).
        assert (await http.post(f"{public}/callbacks/zegocloud", json={})).status_code == 401
        assert (await http.post(f"{ops}/callbacks/zegocloud", json={})).status_code == 404
        assert (await http.post(f"{public}/callbacks/nobody", json={})).status_code == 404
        metrics = (await http.get(f"{ops}/metrics")).text
        assert 'avatar_gateway_vendor_callbacks_total{outcome="rejected",vendor="zegocloud"}' in (
            metrics
        )


async def test_healthz_is_503_while_draining_and_livez_stays_200(gateway: Gateway) -> None:
    """Readiness drops at the first moment of a drain, while a Drive stream finishes its
    turn; liveness stays up so the kubelet does not kill a pod that is draining on purpose."""
    ops = gateway.server.ops_url
    session = await gateway.create()
    started = asyncio.Event()

    async def drive() -> list[str]:
        responses = []
        async for response in gateway.stub.Drive(
            paced_requests(session.name, tone(1.5)), timeout=30
        ):
            responses.append(response)
            started.set()
        return kinds(responses)

    task = asyncio.create_task(drive())
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{ops}/healthz")).json() == {"status": "ok"}
        await asyncio.wait_for(started.wait(), 20)
        stopping = asyncio.create_task(gateway.server.stop(grace_s=10))
        await asyncio.sleep(0)  # one loop turn: stop() has begun, nothing awaited yet
        ready = await http.get(f"{ops}/healthz")
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        assert (await http.get(f"{ops}/livez")).status_code == 200
        got = await task
        assert "go_away" in got and "speech_ended" in got, got
        await stopping


async def test_no_session_data_on_the_public_listener(gateway: Gateway) -> None:
    """The public listener never answers with session data: only callback outcomes."""
    session = await gateway.create()
    async with httpx.AsyncClient(timeout=10) as http:
        for method, path in (
            ("GET", f"/callbacks/zegocloud?TaskId={session.vendor_session_id}"),
            ("GET", f"/{session.name}"),
            ("GET", "/"),
        ):
            answer = await http.request(method, f"{gateway.server.callbacks_url}{path}")
            assert session.vendor_session_id not in answer.text
            assert answer.status_code in (401, 404, 405), (path, answer.status_code)
