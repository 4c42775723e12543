"""Replicas sharing a Redis registry: any replica gets, lists, drives and closes any session."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
import redis.asyncio as aioredis
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc

from emulators.zegocloud import ZegocloudEmulator
from gateway.registry import RedisRegistry, SessionRecord
from gateway.server import GatewayServer
from tests.conftest import collect, make_settings, paced_requests, tone

pytestmark = pytest.mark.integration


async def test_two_replicas_share_sessions(redis_url: str) -> None:
    emulator = ZegocloudEmulator(app_id=9, server_secret="x", callback_secret="cb")
    await emulator.start()
    replicas, channels = [], []
    try:
        for _ in range(2):
            settings = make_settings(
                sandbox=False,
                redis_url=redis_url,
                vendors={
                    "zegocloud": {
                        "app_id": 9,
                        "server_secret": "x",
                        "callback_secret": "cb",
                        "api_url": emulator.rest.base_url + "/",
                    }
                },
            )
            server = GatewayServer(settings)
            await server.start()
            replicas.append(server)
            channels.append(grpc.aio.insecure_channel(server.grpc_target))
        a, b = (pb_grpc.AvatarGatewayStub(c) for c in channels)
        # Callbacks go to replica B, which will hold the drive channel.
        emulator.callback_url = f"{replicas[1].callbacks_url}/callbacks/zegocloud"
        s = await a.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma", request_id="r1"),
            timeout=10,
        )
        # Idempotency holds across replicas.
        again = await b.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma", request_id="r1"),
            timeout=10,
        )
        assert again.name == s.name and len(emulator.tasks) == 1
        assert (
            await b.GetSession(pb.GetSessionRequest(name=s.name), timeout=5)
        ).state == pb.SESSION_STATE_READY
        listed = await b.ListSessions(pb.ListSessionsRequest(), timeout=5)
        assert [x.name for x in listed.sessions] == [s.name]
        responses = await collect(
            b.Drive(paced_requests(s.name, tone(0.3), realtime=False), timeout=20)
        )
        assert any(r.HasField("speech_ended") for r in responses)
        closed = await a.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=10)
        assert closed.state == pb.SESSION_STATE_CLOSED
        await asyncio.sleep(0.2)
        assert emulator.open_tasks() == []
        # A replica that shuts down releases (not closes) its shared sessions; another reaps them.
        s2 = await a.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=10
        )
        await channels[0].close()
        await replicas[0].stop(grace_s=0.5)
        assert len(emulator.open_tasks()) == 1
        manager = replicas[1].manager
        assert manager is not None
        record = await manager.registry.get(s2.name.split("/")[1])
        assert record is not None and record.owner == ""
        record.last_activity_time -= 10_000
        await manager.registry.put(record)
        assert await manager.reap_once() == [record.session_id]
        await asyncio.sleep(0.2)
        assert emulator.open_tasks() == []
    finally:
        for c in channels:
            await c.close()
        for r in replicas:
            await r.stop(grace_s=0.5)
        await emulator.stop()


async def test_a_record_with_fields_from_a_newer_version_is_read(redis_url: str) -> None:
    """Rolling upgrades: a record a newer replica wrote, with fields this version does not
    know, is read (those fields left out), not refused."""
    registry = RedisRegistry(redis_url)
    try:
        await registry.put(
            SessionRecord(session_id="s1", vendor="zegocloud", avatar_id="a", owner="r")
        )
        client = aioredis.from_url(redis_url, decode_responses=True)
        raw = json.loads(await client.get("ag:session:s1"))
        raw["a_field_from_the_future"] = {"x": 1}
        await client.set("ag:session:s1", json.dumps(raw))
        await client.aclose()
        record = await registry.get("s1")
        assert record is not None and record.avatar_id == "a"
    finally:
        await registry.aclose()
