"""Only the right caller: API keys and tenancy, over real gRPC (docs/security.md).

A sandboxed gateway (ZEGOCLOUD emulator) with a keys file of three tenants, one of them
admin. What is checked:

* a call without a key, with an unknown key, or with another scheme is UNAUTHENTICATED with
  one ``ErrorInfo`` (reason ``UNAUTHENTICATED``) and the same words whatever was wrong; the
  health service answers without a key; the server keeps serving;
* a tenant's Get, Close and Drive of another tenant's session answer exactly as for a
  session that does not exist, List shows only its own, and nothing of the other session
  changes; an admin lists and reads every tenant's;
* ``request_id`` is scoped per tenant;
* deleting a key's line revokes it without a restart; adding one grants it;
* a keys file that cannot be parsed stops the server from starting;
* reflection can be turned off;
* keys (good, wrong, revoked) and their hashes never reach logs, statuses or responses;
* a Hypothesis state machine of several tenants issuing random calls: no tenant ever
  observes or affects another tenant's sessions;
* quotas per tenant (live sessions, creates per minute) hold across two replicas sharing
  Redis, refused with ``QuotaFailure`` and ``RetryInfo``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import gateway.auth
from emulators.zegocloud import ZegocloudEmulator
from gateway.auth import KeysFileError, hash_key
from gateway.server import GatewayServer
from tests.conftest import (
    Gateway,
    audio_format,
    base_env,
    error_info,
    gateway_process,
    make_settings,
    running_gateway,
    tone,
)
from tests.integration.test_jwt import AUDIENCE, ISSUER, Issuer
from tests.integration.test_replica_limits import start_replica

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

KEYS = {"acme": "agk_acme_0123456789abcdef", "globex": "agk_globex_0123456789abcd"}
ADMIN_KEY = "agk_ops_0123456789abcdef0123"
C = grpc.StatusCode


def keys_file(path: Path, keys: dict[str, str], admin: str | None = ADMIN_KEY) -> Path:
    lines = ["# tenant  sha256(key)  [role]"]
    lines += [f"{tenant} {hash_key(key)}" for tenant, key in keys.items()]
    if admin is not None:
        lines.append(f"ops {hash_key(admin)} admin")
    path.write_text("\n".join(lines) + "\n")
    return path


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    path = keys_file(tmp_path / "keys", KEYS)
    async with running_gateway(make_settings(api_keys_file=str(path))) as gateway:
        yield gateway


async def create(gw: Gateway, key: str, **kw: Any) -> pb.Session:
    session = await gw.stub.CreateSession(
        pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma", **kw),
        metadata=auth(key),
        timeout=30,
    )
    assert session.state == pb.SESSION_STATE_READY
    return session


async def refused(call: Any) -> tuple[C, str, dict[str, str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    code, reason, metadata = error_info(failed.value)
    return code, reason, metadata, str(failed.value.details())


async def drive_refused(gw: Gateway, session: str, key: str | None) -> tuple[C, str, str]:
    """A Drive's status when its config names ``session`` (written, then read)."""
    call = gw.stub.Drive(metadata=auth(key) if key else None, timeout=10)
    await call.write(
        pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call.read()
    code, reason, _ = error_info(failed.value)
    return code, reason, str(failed.value.details())


async def test_calls_without_a_valid_key_are_unauthenticated(gw: Gateway) -> None:
    stub = gw.stub
    expected = (C.UNAUTHENTICATED, "UNAUTHENTICATED", {})
    answers = []
    for metadata in (
        None,
        auth("agk_not_a_key"),
        auth(KEYS["acme"] + "x"),
        (("authorization", f"Basic {KEYS['acme']}"),),
        (("authorization", "Bearer"),),
    ):
        for call in (
            stub.ListSessions(pb.ListSessionsRequest(), metadata=metadata, timeout=5),
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
                metadata=metadata,
                timeout=5,
            ),
            stub.ListVendors(pb.ListVendorsRequest(), metadata=metadata, timeout=5),
        ):
            code, reason, md, details = await refused(call)
            assert (code, reason, md) == expected
            answers.append(details)
    assert len(set(answers)) == 1, set(answers)  # nothing tells what was wrong
    assert (await drive_refused(gw, "sessions/x", None))[:2] == expected[:2]
    assert (await drive_refused(gw, "sessions/x", "agk_wrong"))[:2] == expected[:2]
    # No vendor session was made by any of them; health answers without a key.
    assert not gw.emulator("zegocloud").tasks
    health = health_pb2_grpc.HealthStub(gw.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # Still serving the callers who have a key.
    assert (await create(gw, KEYS["acme"])).state == pb.SESSION_STATE_READY


async def test_a_tenant_never_sees_nor_touches_another_tenants_session(gw: Gateway) -> None:
    acme, globex = KEYS["acme"], KEYS["globex"]
    mine = await create(gw, acme, labels={"who": "acme"})
    theirs = await create(gw, globex, labels={"who": "globex"})
    assert (mine.tenant, theirs.tenant) == ("acme", "globex")
    ghost = "sessions/00000000000000000000000000000000"

    def as_missing(answer: tuple[C, str, dict[str, str], str], name: str) -> tuple[Any, ...]:
        code, reason, metadata, details = answer
        same = {k: "<name>" if v == name else v for k, v in metadata.items()}
        return code, reason, same, details.replace(name, "<name>")

    for name in (theirs.name, ghost):
        got = await refused(
            gw.stub.GetSession(pb.GetSessionRequest(name=name), metadata=auth(acme), timeout=5)
        )
        closed = await refused(
            gw.stub.CloseSession(pb.CloseSessionRequest(name=name), metadata=auth(acme), timeout=5)
        )
        assert got[:3] == (C.NOT_FOUND, "SESSION_NOT_FOUND", {"session": name})
        assert as_missing(got, name) == as_missing(closed, name)
    # Another tenant's session answers exactly as one that does not exist, Drive included.
    other = await refused(
        gw.stub.GetSession(pb.GetSessionRequest(name=theirs.name), metadata=auth(acme), timeout=5)
    )
    missing = await refused(
        gw.stub.GetSession(pb.GetSessionRequest(name=ghost), metadata=auth(acme), timeout=5)
    )
    assert as_missing(other, theirs.name) == as_missing(missing, ghost)
    d_other = await drive_refused(gw, theirs.name, acme)
    d_missing = await drive_refused(gw, ghost, acme)
    assert d_other[:2] == d_missing[:2] == (C.NOT_FOUND, "SESSION_NOT_FOUND")
    assert d_other[2].replace(theirs.name, "<n>") == d_missing[2].replace(ghost, "<n>")

    listed = await gw.stub.ListSessions(pb.ListSessionsRequest(), metadata=auth(acme), timeout=5)
    assert [s.name for s in listed.sessions] == [mine.name]
    # Nothing of theirs changed: still open, no Drive, nothing sent to the vendor.
    again = await gw.stub.GetSession(
        pb.GetSessionRequest(name=theirs.name), metadata=auth(globex), timeout=5
    )
    assert again.state == pb.SESSION_STATE_READY and not again.drive_active
    assert not gw.emulator("zegocloud").drives_for_task(theirs.vendor_session_id)
    # An admin sees every tenant's sessions, each naming its tenant, and may use them.
    everything = await gw.stub.ListSessions(
        pb.ListSessionsRequest(), metadata=auth(ADMIN_KEY), timeout=5
    )
    assert {(s.name, s.tenant) for s in everything.sessions} == {
        (mine.name, "acme"),
        (theirs.name, "globex"),
    }
    closed = await gw.stub.CloseSession(
        pb.CloseSessionRequest(name=theirs.name), metadata=auth(ADMIN_KEY), timeout=10
    )
    assert closed.state == pb.SESSION_STATE_CLOSED
    # The owner drives its own as before.
    pcm = tone(0.4)

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=mine.name, audio_format=audio_format()))
        yield pb.DriveRequest(audio=pcm)
        yield pb.DriveRequest(end_turn=pb.EndTurn())

    responses = [r async for r in gw.stub.Drive(requests(), metadata=auth(acme), timeout=30)]
    assert any(r.HasField("speech_ended") for r in responses)


async def test_request_id_is_scoped_per_tenant(gw: Gateway) -> None:
    a1 = await create(gw, KEYS["acme"], request_id="order-42")
    g1 = await create(gw, KEYS["globex"], request_id="order-42")
    assert a1.name != g1.name
    assert (await create(gw, KEYS["acme"], request_id="order-42")).name == a1.name
    assert (await create(gw, KEYS["globex"], request_id="order-42")).name == g1.name
    assert len(gw.emulator("zegocloud").tasks) == 2


async def test_keys_are_revoked_and_granted_by_editing_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every call looks at the file (the server checks at most once a second), so that each
    # edit below is seen by the next call: no waiting for a period to pass.
    monkeypatch.setattr(gateway.auth, "RELOAD_CHECK_S", 0.0)
    path = keys_file(tmp_path / "keys", KEYS)
    async with running_gateway(make_settings(api_keys_file=str(path))) as gw:
        assert await gw.stub.ListSessions(
            pb.ListSessionsRequest(), metadata=auth(KEYS["globex"]), timeout=5
        )
        new_key = "agk_initech_0123456789abcdef"
        keys_file(path, {"acme": KEYS["acme"], "initech": new_key})  # globex's line removed

        async def globex_refused() -> bool:
            try:
                await gw.stub.ListSessions(
                    pb.ListSessionsRequest(), metadata=auth(KEYS["globex"]), timeout=5
                )
            except grpc.aio.AioRpcError as err:
                assert error_info(err)[:2] == (C.UNAUTHENTICATED, "UNAUTHENTICATED")
                return True
            return False

        assert await globex_refused(), "a removed key still works"
        assert (await create(gw, new_key)).tenant == "initech"
        assert (await create(gw, KEYS["acme"])).tenant == "acme"
        # A file broken by a bad edit keeps the keys last loaded (and logs why).
        path.write_text("this is not a keys file\n")
        assert (await create(gw, KEYS["acme"])).tenant == "acme"


async def test_a_keys_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "keys"
    bad.write_text("acme not-a-hash\n")
    for path in (bad, tmp_path / "missing"):
        server = GatewayServer(make_settings(api_keys_file=str(path)))
        with pytest.raises(KeysFileError):
            await server.start()


async def test_reflection_can_be_turned_off() -> None:
    async with running_gateway(make_settings(reflection=False)) as gw:
        stub = reflection_pb2_grpc.ServerReflectionStub(gw.channel)

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for _ in stub.ServerReflectionInfo(requests(), timeout=5):
                pass
        assert failed.value.code() == C.UNIMPLEMENTED


# ---- a state machine of tenants ----------------------------------------------------------


class GatewayThread:
    """A sandboxed gateway with keys on its own event loop thread, for a synchronous client."""

    def __init__(self, settings_kw: dict[str, Any]) -> None:
        self.settings_kw = settings_kw
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: GatewayServer | None = None

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        self.server = GatewayServer(make_settings(**self.settings_kw))
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)
        return self

    def __exit__(self, *_: object) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(grace_s=1.0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


EXAMPLES = itertools.count()
TENANTS = ("acme", "globex", "initech")
TENANT_KEYS = {t: f"agk_{t}_{'0' * 20}" for t in TENANTS}


@pytest.fixture(scope="module")
def tenant_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    path = keys_file(tmp_path_factory.mktemp("keys") / "keys", TENANT_KEYS)
    with GatewayThread({"api_keys_file": str(path)}) as gateway:
        yield gateway


def test_tenants_never_observe_or_affect_each_other(tenant_gateway: GatewayThread) -> None:
    assert tenant_gateway.server is not None
    assert tenant_gateway.server.sandbox is not None
    emulator = tenant_gateway.server.sandbox.emulators["zegocloud"]
    channel = grpc.insecure_channel(tenant_gateway.server.grpc_target)
    every_owner: dict[str, str] = {}  # every session any example made -> its tenant
    stub = pb_grpc.AvatarGatewayStub(channel)

    class Tenants(RuleBasedStateMachine):
        """Random calls by three tenants; the model is who owns what, and what is open."""

        sessions = Bundle("sessions")

        def __init__(self) -> None:
            super().__init__()
            self.owner: dict[str, str] = {}  # session name -> tenant
            self.vendor_id: dict[str, str] = {}  # session name -> vendor session id
            self.open: set[str] = set()
            self.by_request: dict[tuple[str, str], str] = {}
            self.prefix = f"example-{next(EXAMPLES)}-"  # request_ids stay bound across examples

        def call(self, tenant: str, method: str, request: Any) -> Any:
            return getattr(stub, method)(request, metadata=auth(TENANT_KEYS[tenant]), timeout=30)

        @rule(
            target=sessions, tenant=st.sampled_from(TENANTS), rid=st.sampled_from(("", "r1", "r2"))
        )
        def create(self, tenant: str, rid: str) -> str:
            request_id = self.prefix + rid if rid else ""
            s = self.call(
                tenant,
                "CreateSession",
                pb.CreateSessionRequest(
                    vendor="zegocloud", avatar_id="zego_emma", request_id=request_id
                ),
            )
            assert s.tenant == tenant
            earlier = self.by_request.get((tenant, rid)) if rid else None
            if earlier is not None:  # the same tenant's retry: the same session, as it is
                assert s.name == earlier
                assert (s.state == pb.SESSION_STATE_READY) == (earlier in self.open)
                return earlier
            assert s.name not in self.owner and s.state == pb.SESSION_STATE_READY
            if rid:
                self.by_request[(tenant, rid)] = s.name
            self.owner[s.name] = tenant
            every_owner[s.name] = tenant
            self.vendor_id[s.name] = s.vendor_session_id
            self.open.add(s.name)
            return str(s.name)

        @rule(tenant=st.sampled_from(TENANTS), name=sessions)
        def get(self, tenant: str, name: str) -> None:
            try:
                s = self.call(tenant, "GetSession", pb.GetSessionRequest(name=name))
            except grpc.RpcError as err:
                assert self.owner[name] != tenant, f"{tenant} cannot read its own {name}"
                assert err.code() == C.NOT_FOUND
                return
            assert self.owner[name] == tenant, f"{tenant} read {self.owner[name]}'s session"
            assert (s.state == pb.SESSION_STATE_READY) == (name in self.open)

        @rule(tenant=st.sampled_from(TENANTS), name=sessions)
        def close(self, tenant: str, name: str) -> None:
            try:
                s = self.call(tenant, "CloseSession", pb.CloseSessionRequest(name=name))
            except grpc.RpcError as err:
                assert self.owner[name] != tenant and err.code() == C.NOT_FOUND
                return
            assert self.owner[name] == tenant, f"{tenant} closed {self.owner[name]}'s session"
            assert s.state == pb.SESSION_STATE_CLOSED
            self.open.discard(name)

        @rule(tenant=st.sampled_from(TENANTS))
        def list(self, tenant: str) -> None:
            listed = self.call(tenant, "ListSessions", pb.ListSessionsRequest(page_size=500))
            names = {s.name for s in listed.sessions}
            # Earlier examples' sessions too: the gateway outlives an example.
            assert names == {n for n, t in every_owner.items() if t == tenant}
            assert all(s.tenant == tenant for s in listed.sessions)

        @invariant()
        def vendor_sessions_match_the_model(self) -> None:
            # Exactly the sessions their owners did not close are open at the vendor: no
            # tenant's call ended (or opened) another tenant's vendor session.
            open_tasks = {t.task_id for t in emulator.open_tasks()}
            mine = set(self.vendor_id.values())
            assert open_tasks & mine == {self.vendor_id[n] for n in self.open}

        def teardown(self) -> None:
            for name in list(self.open):
                self.call(self.owner[name], "CloseSession", pb.CloseSessionRequest(name=name))

    Tenants.TestCase.settings = settings(
        max_examples=10,
        stateful_step_count=10,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # not shrunk: bounded time
        suppress_health_check=[HealthCheck.too_slow],
    )
    try:
        Tenants.TestCase().runTest()
    finally:
        channel.close()


async def test_keys_never_reach_logs_statuses_or_responses(tmp_path: Path) -> None:
    """A ``serve`` process at debug level: keys (good, wrong, revoked), their hashes and JWTs
    (valid and forged) appear nowhere a client or an operator can read."""
    path = keys_file(tmp_path / "keys", KEYS)
    wrong = "agk_wrong_key_0123456789abcdef"
    issuer = Issuer()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    valid_jwt = issuer.token(tenant="initech")
    forged_jwt = issuer.token(tenant="initech", aud="someone-else")
    env = base_env(
        AVATAR_GATEWAY_SANDBOX="true",
        AVATAR_GATEWAY_SANDBOX_VENDORS="zegocloud",
        AVATAR_GATEWAY_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_CALLBACKS_LISTEN="127.0.0.1:0",
        AVATAR_GATEWAY_PLAINTEXT="true",
        AVATAR_GATEWAY_LOG_LEVEL="debug",
        AVATAR_GATEWAY_API_KEYS_FILE=str(path),
        AVATAR_GATEWAY_JWT_JWKS=str(jwks),
        AVATAR_GATEWAY_JWT_ISSUER=ISSUER,
        AVATAR_GATEWAY_JWT_AUDIENCE=AUDIENCE,
    )
    seen: list[str] = []
    async with gateway_process(env, "serve", started="gateway_started") as process:
        async with grpc.aio.insecure_channel(str(process.started["listen"])) as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            s = await stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
                metadata=auth(KEYS["acme"]),
                timeout=30,
            )
            seen.append(str(s))
            keys_file(path, {"globex": KEYS["globex"]})  # acme revoked
            for key in (wrong, KEYS["acme"], KEYS["acme"], KEYS["globex"], forged_jwt):
                try:
                    seen.append(
                        str(
                            await stub.GetSession(
                                pb.GetSessionRequest(name=s.name), metadata=auth(key), timeout=10
                            )
                        )
                    )
                except grpc.aio.AioRpcError as err:
                    seen += [str(err.details()), str(err.trailing_metadata()), str(err)]
            listed = await stub.ListSessions(
                pb.ListSessionsRequest(), metadata=auth(valid_jwt), timeout=10
            )
            seen.append(str(listed))
            async with httpx.AsyncClient() as http:
                seen.append((await http.get(f"{process.started['ops']}/metrics")).text)
        process.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.proc.wait(), 30)
    seen += process.lines
    text = "\n".join(seen)
    assert "audit" in text and "UNAUTHENTICATED" in text  # the capture sees the log
    for secret in (*KEYS.values(), ADMIN_KEY, wrong):
        for form in (secret, hash_key(secret)):
            assert form not in text, f"{form[:12]}... leaked"
    for token in (valid_jwt, forged_jwt):
        signature = token.rsplit(".", 1)[1]
        assert token not in text and signature not in text, "a JWT leaked"


# ---- quotas per tenant ---------------------------------------------------------------------


def quota_details(err: grpc.aio.AioRpcError) -> tuple[list[tuple[str, str]], float]:
    """The QuotaFailure violations (subject, description) and the RetryInfo delay (s)."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None
    rich = status_pb2.Status.FromString(raw)
    violations: list[tuple[str, str]] = []
    delays: list[float] = []
    for detail in rich.details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            violations += [(v.subject, v.description) for v in failure.violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delays.append(info.retry_delay.ToNanoseconds() / 1e9)
    assert len(delays) == 1, rich
    return violations, delays[0]


async def test_quotas_hold_per_tenant_across_replicas(tmp_path: Path, redis_url: str) -> None:
    """acme: at most 2 live sessions and 4 creates a minute (its line); the others: the
    defaults from the settings. Two replicas share Redis: the quotas are for both together."""
    path = tmp_path / "keys"
    path.write_text(
        f"acme {hash_key(KEYS['acme'])} max_sessions=2 creates_per_minute=4\n"
        f"globex {hash_key(KEYS['globex'])}\n"
    )
    emulator = ZegocloudEmulator(app_id=9, server_secret="x", callback_secret="cb")
    await emulator.start()
    replicas = []
    try:
        for _ in range(2):
            replicas.append(
                await start_replica(
                    emulator,
                    redis_url=redis_url,
                    api_keys_file=str(path),
                    tenant_max_sessions=3,
                    tenant_creates_per_minute=100,
                )
            )
        a, b = (r.stub for r in replicas)

        async def create_on(stub: pb_grpc.AvatarGatewayStub, key: str, **kw: Any) -> Any:
            try:
                return await stub.CreateSession(
                    pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma", **kw),
                    metadata=auth(key),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as err:
                return err

        acme = KEYS["acme"]
        first = await create_on(a, acme)
        second = await create_on(b, acme)  # the other replica: counted together
        assert first.state == second.state == pb.SESSION_STATE_READY
        third = await create_on(a, acme)
        assert isinstance(third, grpc.aio.AioRpcError)
        assert error_info(third) == (
            C.RESOURCE_EXHAUSTED,
            "TENANT_QUOTA_EXCEEDED",
            {"tenant": "acme", "quota": "sessions", "limit": "2"},
        )
        violations, delay = quota_details(third)
        assert [v[0] for v in violations] == ["tenant:acme"] and delay > 0
        # Another tenant is not held by acme's quota; its own default applies (3).
        globex = [await create_on(b, KEYS["globex"]) for _ in range(4)]
        assert [isinstance(g, pb.Session) for g in globex] == [True, True, True, False]
        assert error_info(globex[3])[2]["limit"] == "3"
        # A closed session frees its place (on either replica).
        await b.CloseSession(
            pb.CloseSessionRequest(name=first.name), metadata=auth(acme), timeout=10
        )
        fourth = await create_on(b, acme, request_id="acme-4")
        assert fourth.state == pb.SESSION_STATE_READY
        # The rate: 4 creates counted in this minute (the refused third among them).
        # A retry of an existing request_id is not a new create, so it is answered ...
        again = await create_on(a, acme, request_id="acme-4")
        assert again.name == fourth.name
        # ... while a new create is refused for the rate, with the wait until the oldest
        # counted create leaves the minute.
        await b.CloseSession(
            pb.CloseSessionRequest(name=second.name), metadata=auth(acme), timeout=10
        )
        fifth = await create_on(a, acme)
        assert isinstance(fifth, grpc.aio.AioRpcError)
        assert error_info(fifth)[2] == {"tenant": "acme", "quota": "create_rate", "limit": "4"}
        violations, delay = quota_details(fifth)
        assert violations[0][0] == "tenant:acme" and 0 < delay <= 60
        assert len(emulator.tasks) == 2 + 3 + 1  # refused creates never reached the vendor
    finally:
        for replica in replicas:
            await replica.stop()
        await emulator.stop()
