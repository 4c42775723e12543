"""``serve --workers 2``: one supervisor, two real worker processes, one real redis-server.

The gateway runs as ``python -m gateway serve --workers 2`` against the Tencent emulator run
as a server of its own (``python -m gateway emulate tencent``), which records the SHA-256
of every turn's audio. The workers share the gRPC and callbacks ports (``SO_REUSEPORT``),
so the kernel spreads new connections over them; which worker a connection landed on is
read from the pod's /metrics, where the supervisor labels each worker's samples
``worker="<i>"``. Shown here:

1. Connections land on both workers; a session created through a connection on one worker
   is driven through a connection on the other, and every byte reaches the vendor; the
   pod's /healthz is 200 only with both workers ready; SIGTERM drains both, exit code 0.
2. ZEGOCLOUD's callbacks, posted to the pod's one callbacks port, reach the worker driving
   their session (the workers forward them through Redis as replicas do).
3. A worker killed with SIGKILL is restarted (logged at error); the pod is not ready until
   it serves again. A supervisor killed with SIGKILL takes its workers with it (they drain).
4. More than one worker without Redis, or in sandbox mode, is a configuration error
   (exit code 2, one line naming what to set); so is a configuration every worker refuses.
5. Workers that keep dying are restarted with a backoff until the supervisor gives up (1).

Every wait polls a condition with a deadline; nothing sleeps a fixed time for an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ROOT,
    LoggingProcess,
    audio_format,
    base_env,
    emulate,
    free_port,
    gateway_process,
    tone,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ZEGO = {
    "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "424242",
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "zego-server-secret-0123456789abcd",
    "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": "zego-callback-secret",
}
TENCENT = {
    "AVATAR_GATEWAY_TENCENT__APPKEY": "tencent-appkey-0123",
    "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": "tencent-access-token-4567",
}
GET_SESSION = "avatar.gateway.v1.AvatarGateway/GetSession"


class Pod:
    """The supervisor process, its ops URL and helpers to read the pod's ops listener."""

    def __init__(self, process: LoggingProcess) -> None:
        self.process = process
        self.ops = str(process.started["ops"])
        self.listen = str(process.started["listen"])

    async def healthz(self) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.get(f"{self.ops}/healthz", timeout=10)

    async def ready(self) -> bool:
        return (await self.healthz()).status_code == 200

    async def worker_pids(self) -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{self.ops}/livez", timeout=10)).json()
        pids: dict[str, int] = body["workers"]
        return pids

    async def calls(self, method: str) -> dict[str, float]:
        """Calls of ``method`` served so far, by worker label, from the pod's /metrics."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.ops}/metrics", timeout=10)).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "rpc_server_call_duration_seconds":
                continue
            for s in family.samples:
                if s.name.endswith("_count") and s.labels.get("rpc_method") == method:
                    worker = s.labels["worker"]
                    out[worker] = out.get(worker, 0.0) + s.value
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.process.events(name)

    async def lines(
        self, name: str, count: int, where: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> list[dict[str, Any]]:
        """The ``name`` lines matching ``where``, once there are ``count`` (stderr is read
        concurrently: a line written before a response may be read after it)."""

        async def enough() -> list[dict[str, Any]] | None:
            found = [e for e in self.events(name) if where(e)]
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = await until(f"{count} {name} line(s)", enough, 10)
        return found


@contextlib.asynccontextmanager
async def pod(env: dict[str, str], workers: int = 2) -> AsyncIterator[Pod]:
    """``serve --workers <workers>``, ready (its /healthz 200) before it is yielded."""
    async with gateway_process(
        env, "serve", "--workers", str(workers), started="workers_starting"
    ) as process:
        p = Pod(process)
        assert process.started["workers"] == workers
        assert process.started["reason"] == f"--workers={workers}"
        await until("every worker ready", p.ready, 90, every_s=0.2)
        yield p


def pod_env(redis_url: str, emulator_url: str, **extra: str) -> dict[str, str]:
    """Tencent at ``emulator_url`` (``extra`` may configure another vendor instead)."""
    vendor = {**TENCENT, "AVATAR_GATEWAY_TENCENT__API_URL": emulator_url} if not extra else {}
    settings = {
        "AVATAR_GATEWAY_LISTEN": "127.0.0.1:0",
        "AVATAR_GATEWAY_OPS_LISTEN": "127.0.0.1:0",
        "AVATAR_GATEWAY_CALLBACKS_LISTEN": "127.0.0.1:0",
        "AVATAR_GATEWAY_REDIS_URL": redis_url,
        "AVATAR_GATEWAY_REPLICA_LEASE_TTL_S": "2",
        "AVATAR_GATEWAY_REAPER_INTERVAL_S": "1",
        "AVATAR_GATEWAY_SHUTDOWN_GRACE_S": "1",
        "AVATAR_GATEWAY_EVENT_LOOP": "asyncio",
    }
    return base_env(**{**vendor, **settings, **extra})


async def turn(session: str, pcm: bytes) -> AsyncIterator[pb.DriveRequest]:
    """Config, ``pcm`` as one audio turn in 200 ms chunks, end_turn, half-close."""
    yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
    for i in range(0, len(pcm), 6400):
        yield pb.DriveRequest(audio=pcm[i : i + 6400])
    yield pb.DriveRequest(end_turn=pb.EndTurn())


async def channels_on_each_worker(
    p: Pod, stack: contextlib.AsyncExitStack
) -> dict[str, pb_grpc.AvatarGatewayStub]:
    """Open connections until one landed on each worker; a stub on each, by worker label.

    Each channel gets its own subchannel pool, hence its own TCP connection (grpc shares
    connections between channels of equal arguments otherwise). One GetSession through it
    shows, in the pod's /metrics, which worker accepted the connection.
    """
    found: dict[str, pb_grpc.AvatarGatewayStub] = {}
    for _ in range(40):  # both workers missed by 40 connections: p = 2**-39
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(p.listen, options=[("grpc.use_local_subchannel_pool", 1)])
        )
        stub = pb_grpc.AvatarGatewayStub(channel)
        before = await p.calls(GET_SESSION)
        with contextlib.suppress(grpc.aio.AioRpcError):  # NOT_FOUND: only the count matters
            await stub.GetSession(pb.GetSessionRequest(name="sessions/none"), timeout=10)
        after = await p.calls(GET_SESSION)
        (worker,) = [w for w in after if after[w] > before.get(w, 0.0)]
        found.setdefault(worker, stub)
        if len(found) == 2:
            return found
    raise AssertionError(f"40 connections all landed on worker {list(found)}")


async def test_two_workers_share_the_port_and_drive_each_others_sessions(redis_url: str) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        pod(pod_env(redis_url, emu.url)) as p,
        contextlib.AsyncExitStack() as stack,
    ):
        health = (await p.healthz()).json()
        assert health == {"status": "ok", "workers": {"0": "ok", "1": "ok"}}
        started = await p.lines("gateway_started", 2)
        assert sorted(e["worker"] for e in started) == [0, 1]
        assert len({e["replica"] for e in started}) == 2  # two replicas in the registry
        assert {e["listen"] for e in started} == {p.listen}  # one port

        stubs = await channels_on_each_worker(p, stack)
        creates_before = await p.calls("avatar.gateway.v1.AvatarGateway/CreateSession")
        session = await stubs["0"].CreateSession(
            pb.CreateSessionRequest(vendor="tencent", avatar_id="sandbox-project"), timeout=30
        )
        assert session.state == pb.SESSION_STATE_READY
        creates = await p.calls("avatar.gateway.v1.AvatarGateway/CreateSession")
        assert creates.get("0", 0) == creates_before.get("0", 0) + 1
        # Each worker's lines carry its index: the audit line of the create is worker 0's.
        created = await p.lines("audit", 1, lambda e: e.get("session") == session.name)
        assert [e["worker"] for e in created] == [0], created

        pcm = tone(2.0, freq=310)

        drives_before = await p.calls("avatar.gateway.v1.AvatarGateway/Drive")
        responses = [r async for r in stubs["1"].Drive(turn(session.name, pcm), timeout=60)]
        ended = [r.speech_ended for r in responses if r.HasField("speech_ended")]
        assert len(ended) == 1 and not ended[0].interrupted, responses
        drives = await p.calls("avatar.gateway.v1.AvatarGateway/Drive")
        assert drives.get("1", 0) == drives_before.get("1", 0) + 1  # driven on the other one
        session_id = session.name.rsplit("/", 1)[-1]
        driven = await p.lines("drive_started", 1, lambda e: e.get("session_id") == session_id)
        assert [e["worker"] for e in driven] == [1], driven

        state = await emu.state()
        audio = [
            d
            for d in state["drives"]
            if d["sessionId"] == session.vendor_session_id and d["kind"] == "audio"
        ]
        assert len(audio) == 1 and audio[0]["final"] and not audio[0]["missingSeqs"]
        assert audio[0]["sha256"] == hashlib.sha256(pcm).hexdigest()
        closed = await stubs["0"].CloseSession(
            pb.CloseSessionRequest(name=session.name), timeout=15
        )
        assert closed.state == pb.SESSION_STATE_CLOSED

        p.process.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.process.proc.wait(), 60) == 0
        stopped = [e["worker"] for e in await p.lines("gateway_stopped", 2)]
        assert sorted(stopped) == [0, 1]
        assert sorted(e["worker"] for e in p.events("gateway_draining")) == [0, 1]
        assert (await p.lines("workers_stopped", 1))[0]["exit_code"] == 0


async def vendor_callbacks(p: Pod) -> dict[tuple[str, str], float]:
    """``avatar_gateway_vendor_callbacks_total`` by (worker, outcome), from the pod's /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{p.ops}/metrics", timeout=10)).text
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "avatar_gateway_vendor_callbacks_total":
                key = (s.labels["worker"], s.labels["outcome"])
                out[key] = out.get(key, 0.0) + s.value
    return out


async def test_vendor_callbacks_on_the_shared_port_reach_the_driving_worker(
    redis_url: str,
) -> None:
    """ZEGOCLOUD's speech events come only from its callbacks (zegocloud.md §6), posted to the
    pod's one callbacks port, which both workers listen on: sessions driven on either worker
    get theirs, whichever worker the kernel hands the callback's connection to."""
    port = free_port()  # the pod's callbacks port, which the emulator must know first
    callback = f"http://127.0.0.1:{port}/callbacks/zegocloud"
    emulator_args = ("--listen", "127.0.0.1:0", "--callback-url", callback)
    async with (
        emulate("zegocloud", base_env(**ZEGO), *emulator_args) as emu,
        pod(
            pod_env(
                redis_url,
                emu.url,
                **ZEGO,
                AVATAR_GATEWAY_ZEGOCLOUD__API_URL=emu.url,
                AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{port}",
            )
        ) as p,
        contextlib.AsyncExitStack() as stack,
    ):
        assert p.process.started["callbacks"] == f"127.0.0.1:{port}"
        stubs = await channels_on_each_worker(p, stack)
        for creator, driver in (("0", "1"), ("1", "0")):
            session = await stubs[creator].CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
            )
            call = stubs[driver].Drive(turn(session.name, tone(1.0, freq=260)), timeout=60)
            responses = [r async for r in call]
            got = [r.WhichOneof("response") for r in responses]
            assert "speech_started" in got and "speech_ended" in got, (driver, got)
            assert "warning" not in got, [r.warning for r in responses if r.HasField("warning")]
        counts = await vendor_callbacks(p)
        applied = {w: counts.get((w, "applied"), 0.0) for w in ("0", "1")}
        assert applied["0"] >= 2 and applied["1"] >= 2, counts  # each drove one turn
        state = await emu.state()
        assert state["callbacks"]["failed"] == 0 and state["rejected"] == {}, state["callbacks"]
        p.process.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.process.proc.wait(), 60) == 0


async def test_a_killed_worker_is_restarted_and_the_pod_is_ready_again(redis_url: str) -> None:
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        pod(pod_env(redis_url, emu.url)) as p,
    ):
        pids = await p.worker_pids()
        assert sorted(pids) == ["0", "1"]
        victim = pids["1"]
        proc = await asyncio.create_subprocess_exec("kill", "-KILL", str(victim))
        assert await proc.wait() == 0

        async def exits() -> list[dict[str, Any]]:
            return p.events("worker_exited")

        async def restarted() -> dict[str, int] | None:
            now = await p.worker_pids()
            return now if now.get("1") not in (None, victim) else None

        async def unready() -> dict[str, Any] | None:
            answer = await p.healthz()
            return answer.json() if answer.status_code == 503 else None

        # Not ready from the kill until the new worker serves (at least the 1 s backoff).
        health = await until("the pod's /healthz 503", unready, 30)
        assert health["workers"]["0"] == "ok" and health["workers"]["1"] != "ok", health
        (exited,) = await until("worker_exited", exits, 30)
        assert exited["level"] == "error" and exited["worker"] == 1
        assert exited["pid"] == victim and exited["returncode"] == -signal.SIGKILL
        new = await until("a new worker 1", restarted, 30)
        assert new["0"] == pids["0"]
        await until("the pod ready again", p.ready, 60, every_s=0.2)

        # /healthz turns 200 just before the start line is written: wait for the line.
        started_1 = await p.lines("gateway_started", 2, lambda e: e["worker"] == 1)
        assert started_1[0]["replica"] != started_1[1]["replica"]  # a new replica id

        p.process.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.process.proc.wait(), 60) == 0


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (exited, its new parent has not reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_workers_drain_when_the_supervisor_is_killed_hard(redis_url: str) -> None:
    """``kill -9`` of the supervisor: its workers get SIGTERM from the kernel
    (``PR_SET_PDEATHSIG``) and drain, instead of serving on with nothing to stop them."""
    async with (
        emulate("tencent", base_env(**TENCENT), "--listen", "127.0.0.1:0") as emu,
        pod(pod_env(redis_url, emu.url)) as p,
    ):
        pids = await p.worker_pids()
        p.process.proc.kill()
        await p.process.proc.wait()
        stopped = await p.lines("gateway_stopped", 2)
        assert sorted(e["worker"] for e in stopped) == [0, 1]

        async def gone() -> bool:
            return not any(running(pid) for pid in pids.values())

        await until("the workers to exit", gone, 30)


@pytest.mark.parametrize(
    ("extra", "args", "needle"),
    [
        ({}, ("--workers", "2"), "AVATAR_GATEWAY_REDIS_URL"),
        ({"AVATAR_GATEWAY_WORKERS": "3"}, (), "AVATAR_GATEWAY_REDIS_URL"),
        (
            {"AVATAR_GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"},
            ("--workers", "2", "--sandbox"),
            "sandbox",
        ),
    ],
)
async def test_more_than_one_worker_without_redis_or_in_sandbox_is_refused(
    extra: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway", "serve", *args),
        cwd=ROOT,
        env=base_env(**extra, AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "gateway_not_started" in lines[0], lines


async def test_a_configuration_error_in_the_workers_stops_the_pod_with_2(redis_url: str) -> None:
    """No TLS certificate and plaintext not chosen: each worker refuses to start (exit 2), and
    the supervisor stops the others and exits 2 instead of restarting them."""
    env = base_env(AVATAR_GATEWAY_REDIS_URL=redis_url, AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0")
    del env["AVATAR_GATEWAY_PLAINTEXT"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway", "serve", "--workers", "2"),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 90)
    text = stderr.decode()
    assert proc.returncode == 2, text
    assert '"workers_starting"' in text and "no TLS certificate" in text, text
    assert '"worker_not_started"' in text and '"worker_exited"' not in text, text


async def test_workers_that_keep_dying_stop_the_pod_with_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers that exit at once, again and again (here a program that exits 3 in place of
    the gateway): each exit is restarted after a backoff, logged at error, until more than
    RESTART_LIMIT exits within the window stop the pod with exit code 1."""
    from gateway import supervisor
    from gateway.config import Settings
    from gateway.workers import WorkerCount

    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", 0.01)
    monkeypatch.setattr(supervisor, "RESTART_LIMIT", 3)
    settings = Settings(
        listen="127.0.0.1:0", callbacks_listen="127.0.0.1:0", ops_listen="127.0.0.1:0"
    )
    pod = supervisor.Supervisor(settings, WorkerCount(2, "test"))
    pod.command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with structlog.testing.capture_logs() as logs:
        code = await asyncio.wait_for(pod.serve(), 60)
    assert code == 1
    # Only errors: the tests' logging configuration may filter info lines out.
    exits = [e for e in logs if e["event"] == "worker_exited"]
    assert len(exits) == 3 and all(e["log_level"] == "error" for e in exits), logs
    assert all(e["returncode"] == 3 for e in exits)
    (gave_up,) = [e for e in logs if e["event"] == "workers_keep_dying"]
    assert gave_up["log_level"] == "error" and gave_up["exits"] == 4
    assert not pod.procs or all(p.returncode is not None for p in pod.procs.values())
