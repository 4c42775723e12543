"""The images and the compose stack, for real: podman builds, runs and stops them.

Builds every image of ``docker-compose.yml`` (on a local Debian base made by
``tools/containers_setup.sh``: no image registry is reachable here), then:

- the gateway image refuses to start without vendors, serves gRPC health as a non-root user on
  a read-only root filesystem, and carries no compiler, no pip and no sandbox dependency;
- the compose stack (gateway, redis, livekit, three vendor emulators) serves one session per
  vendor driven from the host with the Python client; each emulator received the exact audio
  (SHA-256 over its HTTP records);
- ``podman stop`` of the gateway during a live Drive: the client gets ``go_away`` and the
  container exits 0.

Nothing is left running: every container and the compose project are removed at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import audio_format, tone

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "localhost/debian-python:bookworm")
TAG = "test"
PROJECT = "avatar-gateway-test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
VENDOR_ENV = {
    "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "1",
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "not-a-real-secret",
}


def run(*cmd: str, timeout: float = 120, check: bool = True, **kw: Any) -> str:
    """Run a command; its stdout, or an AssertionError with its whole output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """``podman-compose -p PROJECT ...`` from the repository root."""
    exe = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    return run(exe, "-p", PROJECT, *args, timeout=timeout, cwd=ROOT, env=env)


def wait_healthy(container: str, timeout_s: float = 120) -> None:
    """Run the container's own HEALTHCHECK until it passes (podman has no systemd here)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(
            ["podman", "healthcheck", "run", container], capture_output=True, text=True
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = run("podman", "logs", container, check=False)
            raise AssertionError(f"{container} not healthy in {timeout_s} s:\n{logs[-4000:]}")
        time.sleep(1)


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """The environment of podman-compose: base image, tag and free host ports."""
    run("bash", str(ROOT / "tools/containers_setup.sh"), timeout=900)
    env = dict(os.environ, BASE_IMAGE=BASE_IMAGE, TAG=TAG)
    for name in (
        "GATEWAY_PORT",
        "GATEWAY_OPS_PORT",
        "ZEGOCLOUD_PORT",
        "TENCENT_PORT",
        "AKOOL_PORT",
    ):
        env[name] = str(free_port())
    return env


@pytest.fixture(scope="module")
def images(stack_env: dict[str, str]) -> dict[str, str]:
    """Build every image of the compose file; image names by service."""
    build_args = f"--format docker -v {CA_BUNDLE}:{CA_BUNDLE}:ro"
    compose(f"--podman-build-args={build_args}", "build", env=stack_env, timeout=1800)
    return {
        "gateway": f"localhost/avatar-gateway:{TAG}",
        "emulator": f"localhost/avatar-gateway-emulator:{TAG}",
    }


@pytest.fixture
def container() -> Iterator[list[str]]:
    """Names of containers a test started; removed whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


def test_gateway_image_without_vendors_exits_2_naming_the_settings(images: dict[str, str]) -> None:
    result = subprocess.run(
        ["podman", "run", "--rm", "--read-only", images["gateway"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result
    (line,) = [json.loads(raw) for raw in result.stderr.splitlines() if raw.startswith("{")]
    assert line["event"] == "gateway_not_started"
    assert "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET" in line["reason"]


def test_gateway_image_serves_health_non_root_read_only_without_build_tools(
    images: dict[str, str], container: list[str]
) -> None:
    image = images["gateway"]
    inspect = json.loads(run("podman", "image", "inspect", image))[0]
    config = inspect["Config"]
    assert config["User"] == "10001:10001"
    assert config["StopSignal"] == "SIGTERM"
    # podman reports the docker-format healthcheck at the top level, docker under Config.
    healthcheck = inspect.get("Healthcheck") or config.get("Healthcheck")
    assert healthcheck["Test"] == ["CMD", "avatar-gateway", "health"]
    assert {"50051/tcp", "8081/tcp"} <= set(config["ExposedPorts"])
    print(f"gateway image size: {inspect['Size'] / 1e6:.0f} MB")

    port = free_port()
    name = f"{PROJECT}-image-{port}"
    container.append(name)
    env = [arg for k, v in VENDOR_ENV.items() for arg in ("-e", f"{k}={v}")]
    run("podman", "run", "-d", "--name", name, "--read-only", "-p", f"127.0.0.1:{port}:50051",
        *env, image)  # fmt: skip
    wait_healthy(name)

    async def check() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            response = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            return int(response.status)

    assert asyncio.run(check()) == health_pb2.HealthCheckResponse.SERVING
    assert run("podman", "exec", name, "id", "-u").strip() == "10001"
    probe = (
        "import importlib.util as u, shutil as s;"
        "print([t for t in ('gcc', 'cc', 'pip', 'pip3') if s.which(t)],"
        "[m for m in ('trustme', 'pip') if u.find_spec(m)])"
    )
    assert run("podman", "exec", name, "python3", "-c", probe).strip() == "[] []"
    # The root filesystem is read-only, and the process does not need it writable.
    denied = subprocess.run(
        ["podman", "exec", name, "touch", "/opt/venv/x"], capture_output=True, text=True
    )
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    run("podman", "stop", "-t", "30", name)
    exit_code = run("podman", "inspect", "--format", "{{.State.ExitCode}}", name).strip()
    assert exit_code == "0", run("podman", "logs", name, check=False)


@pytest.fixture(scope="module")
def stack(images: dict[str, str], stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The compose stack, up and healthy; always taken down."""
    try:
        compose("up", "-d", env=stack_env, timeout=300)
        for service in ("redis", "livekit", "zegocloud", "tencent", "akool", "gateway"):
            wait_healthy(f"{PROJECT}_{service}_1")
        yield stack_env
    finally:
        compose("down", "-t", "5", env=stack_env, timeout=300)


def emulator_state(stack_env: dict[str, str], vendor: str) -> dict[str, Any]:
    port = stack_env[f"{vendor.upper()}_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/state", timeout=10) as r:
        state: dict[str, Any] = json.load(r)
    return state


def received_sha256(vendor: str, state: dict[str, Any], session: pb.Session) -> list[str]:
    """SHA-256 of each audio drive the vendor's emulator recorded for ``session``."""
    vid = session.vendor_session_id
    if vendor == "zegocloud":
        drives = [d for d in state["drives"].values() if d["task_id"] == vid]
        return [d["sha256"] for d in drives if d["kind"] == "ws"]
    if vendor == "tencent":
        return [d["sha256"] for d in state["drives"] if d["sessionId"] == vid]
    return [t["sha256"] for t in state["sessions"][vid]["audio_turns"]]


async def create_session(stub: pb_grpc.AvatarGatewayStub, vendor: str) -> pb.Session:
    """A session on the vendor's first listed avatar (Tencent: the configured project)."""
    avatars = await stub.ListAvatars(
        pb.ListAvatarsRequest(parent=f"vendors/{vendor}", page_size=1), timeout=30
    )
    request = pb.CreateSessionRequest(vendor=vendor, avatar_id=avatars.avatars[0].avatar_id)
    return await stub.CreateSession(request, timeout=90)


async def drive_once(stub: pb_grpc.AvatarGatewayStub, session: str, pcm: bytes) -> list[str]:
    """One audio turn at real time; the response kinds up to the turn's speech_ended."""
    done = asyncio.Event()

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
        for i in range(0, len(pcm), 1280):
            yield pb.DriveRequest(audio=pcm[i : i + 1280])
            await asyncio.sleep(0.04)
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        await done.wait()

    seen: list[str] = []
    call = stub.Drive(requests(), timeout=120)
    async for response in call:
        kind = str(response.WhichOneof("response"))
        seen.append(kind)
        if kind in ("speech_ended", "turn_failed"):
            break
    done.set()
    call.cancel()
    return seen


@pytest.mark.parametrize("vendor", ["zegocloud", "tencent", "akool"])
def test_compose_stack_drives_each_vendor_from_the_host(stack: dict[str, str], vendor: str) -> None:
    pcm = tone(1.5, freq=330.0)

    async def scenario() -> tuple[pb.Session, list[str]]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack['GATEWAY_PORT']}") as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            vendors = (await stub.ListVendors(pb.ListVendorsRequest(), timeout=10)).vendors
            assert {v.vendor: v.sandbox for v in vendors} == {
                "zegocloud": False,
                "tencent": False,
                "akool": False,
            }
            session = await create_session(stub, vendor)
            try:
                seen = await drive_once(stub, session.name, pcm)
            finally:
                await stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=60)
            return session, seen

    session, seen = asyncio.run(scenario())
    assert "speech_started" in seen and seen[-1] == "speech_ended", seen
    sha = received_sha256(vendor, emulator_state(stack, vendor), session)
    assert sha == [hashlib.sha256(pcm).hexdigest()], (seen, sha)


def test_stopping_the_gateway_container_during_a_drive_sends_go_away_and_exits_0(
    stack: dict[str, str],
) -> None:
    gateway = f"{PROJECT}_gateway_1"

    async def scenario() -> list[str]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack['GATEWAY_PORT']}") as channel:
            stub = pb_grpc.AvatarGatewayStub(channel)
            session = await create_session(stub, "tencent")
            started = asyncio.Event()
            finished = asyncio.Event()

            async def requests() -> AsyncIterator[pb.DriveRequest]:
                yield pb.DriveRequest(
                    config=pb.DriveConfig(session=session.name, audio_format=audio_format())
                )
                for _ in range(1000):  # 40 s of audio at most: the stop comes long before
                    yield pb.DriveRequest(audio=tone(0.04))
                    await asyncio.sleep(0.04)
                    if finished.is_set():
                        return

            seen: list[str] = []
            stopper: asyncio.Task[str] | None = None
            async for response in stub.Drive(requests(), timeout=120):
                kind = str(response.WhichOneof("response"))
                seen.append(kind)
                if kind == "started" and not started.is_set():
                    started.set()
                    stopper = asyncio.create_task(
                        asyncio.to_thread(run, "podman", "stop", "-t", "60", gateway, timeout=90)
                    )
                if kind == "go_away":
                    break
            finished.set()
            assert stopper is not None
            await stopper
            return seen

    seen = asyncio.run(scenario())
    assert "go_away" in seen, seen
    exit_code = run("podman", "inspect", "--format", "{{.State.ExitCode}}", gateway).strip()
    assert exit_code == "0", run("podman", "logs", gateway, check=False)[-4000:]
