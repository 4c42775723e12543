"""A flood of forged vendor callbacks changes nothing (docs/security.md §1, §6).

While a real Drive turn plays on a sandboxed ZEGOCLOUD session, 300 callbacks are posted at
once to the gateway's public callback route, each one an attack on that very session: task
"stopped" and drive "failed"/"ended" events for its real task id, signed with the wrong
secret, unsigned, with a genuine signature replayed from another body, malformed, or larger
than any callback. Every one is refused (401, 400 or 413) before it reaches the session;
the turn plays out whole with its speech events from the real, signed callbacks; the
session stays READY; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time

import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from emulators.zegocloud import callback_signature
from tests.conftest import Gateway, collect, kinds, paced_requests, still_serving, tone

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FORGED = 300


def forged_bodies(task_id: str, secret_seen: dict[str, str]) -> list[bytes]:
    """``FORGED`` hostile bodies about ``task_id``, of every kind."""
    now = int(time.time())
    events = [
        {"EventType": 3, "TaskId": task_id, "Detail": {"Status": 5, "FailReason": "forged"}},
        {
            "EventType": 4,
            "TaskId": task_id,
            "EventTime": now * 1000,
            "Detail": {"DriveId": "d", "Status": 4},
        },
        {
            "EventType": 4,
            "TaskId": task_id,
            "EventTime": now * 1000,
            "Detail": {"DriveId": "d", "Status": 3},
        },
    ]
    bodies: list[bytes] = []
    for n, event in zip(range(FORGED), itertools.cycle(events), strict=False):
        kind = n % 5
        if kind == 0:  # signed with a guessed secret
            ts, nonce = str(now), f"n{n}"
            signed = {**event, "Timestamp": ts, "Nonce": nonce}
            signed["Signature"] = callback_signature("guessed-secret", ts, nonce)
            bodies.append(json.dumps(signed).encode())
        elif kind == 1:  # unsigned
            bodies.append(json.dumps(event).encode())
        elif kind == 2:  # a real signature seen elsewhere, replayed on another body
            bodies.append(json.dumps({**event, **secret_seen}).encode())
        elif kind == 3:  # not JSON
            bodies.append(b'{"EventType": 3, "TaskId": "' + task_id.encode() + b'"')
        else:  # larger than any callback
            bodies.append(b'{"pad": "' + b"x" * (70 * 1024) + b'"}')
    return bodies


async def test_forged_callbacks_change_nothing(gateway: Gateway) -> None:
    session = await gateway.create()
    emulator = gateway.emulator("zegocloud")
    task_id = session.vendor_session_id
    # A genuine signature, sniffed from a harmless callback the gateway accepted: ZEGO's
    # signature does not cover the body (zegocloud.md §6), so it is replayed on hostile ones.
    ts, nonce = str(int(time.time())), "seen"
    seen = {
        "Timestamp": ts,
        "Nonce": nonce,
        "Signature": callback_signature(emulator.callback_secret, ts, nonce),
    }
    url = f"{gateway.server.callbacks_url}/callbacks/zegocloud"
    harmless = {"EventType": 7, "TaskId": task_id, "Detail": {}, **seen}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.post(url, json=harmless)).status_code == 200
    pcm = tone(1.2)
    drive = asyncio.create_task(
        collect(gateway.stub.Drive(paced_requests(session.name, pcm), timeout=30))
    )

    async with httpx.AsyncClient(timeout=30) as http:

        async def post(body: bytes) -> int:
            answer = await http.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
            return answer.status_code

        statuses = await asyncio.gather(*(post(b) for b in forged_bodies(task_id, seen)))
    assert len(statuses) == FORGED
    assert set(statuses) <= {400, 401, 413}, sorted(set(statuses))
    assert {401, 400, 413} <= set(statuses)

    responses = await drive
    got = kinds(responses)
    assert "speech_started" in got and "speech_ended" in got, got
    assert "turn_failed" not in got and "warning" not in got, got
    ended = next(r.speech_ended for r in responses if r.HasField("speech_ended"))
    assert not ended.interrupted
    drives = emulator.drives_for_task(task_id)
    assert [d.sha256 for d in drives] == [hashlib.sha256(pcm).hexdigest()]
    again = await gateway.stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
    assert again.state == pb.SESSION_STATE_READY
    await still_serving(gateway)


@pytest.mark.parametrize("gateway", [{"callbacks_per_second": 20}], indirect=True)
async def test_callbacks_beyond_the_rate_are_refused_with_retry_after(gateway: Gateway) -> None:
    """Past ``callbacks_per_second`` a vendor's callbacks get 429 and Retry-After, before
    any signature check or registry write; the window slides, so a vendor's retry succeeds.
    """
    session = await gateway.create()
    emulator = gateway.emulator("zegocloud")
    url = f"{gateway.server.callbacks_url}/callbacks/zegocloud"
    ts = str(int(time.time()))
    signed = {
        "EventType": 7,
        "TaskId": session.vendor_session_id,
        "Detail": {},
        "Timestamp": ts,
        "Signature": callback_signature(emulator.callback_secret, ts, "n"),
    }
    async with httpx.AsyncClient(timeout=30) as http:
        answers = [await http.post(url, json={**signed, "Nonce": "n", "Seq": i}) for i in range(30)]
        statuses = [a.status_code for a in answers]
        # The window holds 20 (including the sandbox's own callbacks of the create).
        assert statuses.count(429) >= 10 and set(statuses) <= {200, 401, 429}, statuses
        limited = next(a for a in answers if a.status_code == 429)
        assert 1 <= int(limited.headers["Retry-After"]) <= 1
        # Unknown vendors are not counted in anyone's window: 404.
        assert (await http.post(f"{url}x", json=signed)).status_code == 404

        async def accepted_again() -> bool:
            ts = str(int(time.time()))
            fresh = {
                **signed,
                "Timestamp": ts,
                "Nonce": f"retry-{time.monotonic_ns()}",
            }
            fresh["Signature"] = callback_signature(emulator.callback_secret, ts, fresh["Nonce"])
            return (await http.post(url, json=fresh)).status_code == 200

        # The window slides: within about a second the vendor's retry is served again.
        deadline = time.monotonic() + 10
        while not await accepted_again():
            assert time.monotonic() < deadline, "still refused 10 s later"
            await asyncio.sleep(0.1)
    await still_serving(gateway)
