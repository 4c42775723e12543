"""The images and the compose stack, for real: podman builds, runs and stops them.

Builds every image of ``docker-compose.yml`` (on a local Debian base made by
``tools/containers_setup.sh``: no image registry is reachable here), then:

- the gateway image refuses to start without a chosen gRPC transport and without vendors;
  with plaintext chosen it serves gRPC health as a non-root user on a read-only root
  filesystem, its ops listener (8081) answers /healthz and /livez and its callbacks listener
  (8080) nothing but /callbacks/<vendor>, and it carries no compiler, no pip and no sandbox
  dependency;
- with mutual TLS from mounted certificate files it serves gRPC health only to a client with a
  certificate, while its HEALTHCHECK (HTTP /healthz on the ops listener) still passes;
- the compose stack (gateway, redis, livekit, three vendor emulators) serves one session per
  vendor driven from the host with the Python client; each emulator received the exact audio
  (SHA-256 over its HTTP records), and ZEGOCLOUD's callbacks reached the callbacks listener;
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
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import audio_format, tone
from tests.tlsutil import CertificateAuthority

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "localhost/debian-python:bookworm")
# Image tag and compose project; override them to run beside another checkout's deploy tests
# on the same machine (both would otherwise build and run the same names).
TAG = os.environ.get("DEPLOY_TEST_TAG", "test")
PROJECT = os.environ.get("DEPLOY_TEST_PROJECT", "avatar-gateway-test")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
VENDOR_ENV = {
    "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": "1",
    "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": "not-a-real-secret",
}
PLAINTEXT_ENV = {"AVATAR_GATEWAY_PLAINTEXT": "true"}
GRPC_PORT, CALLBACKS_PORT, OPS_PORT = 50051, 8080, 8081


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


def env_args(env: dict[str, str]) -> list[str]:
    return [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET (an HTTP error status is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def first_log_event(container: str) -> dict[str, Any]:
    """The gateway's first JSON log line (vendors_live / sandbox_mode / gateway_not_started)."""
    logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True)
    output = logs.stderr + logs.stdout  # the gateway logs to stderr; podman may merge them
    lines = [json.loads(raw) for raw in output.splitlines() if raw.startswith("{")]
    assert lines, logs
    first: dict[str, Any] = lines[0]
    return first


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
        "GATEWAY_CALLBACKS_PORT",
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
        ["podman", "run", "--rm", "--read-only", *env_args(PLAINTEXT_ENV), images["gateway"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result
    (line,) = [json.loads(raw) for raw in result.stderr.splitlines() if raw.startswith("{")]
    assert line["event"] == "gateway_not_started"
    assert "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET" in line["reason"]


def test_gateway_image_without_a_transport_exits_2_naming_tls_and_plaintext(
    images: dict[str, str],
) -> None:
    """The image chooses no transport: vendors alone do not start a production gateway."""
    result = subprocess.run(
        ["podman", "run", "--rm", "--read-only", *env_args(VENDOR_ENV), images["gateway"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result
    (line,) = [json.loads(raw) for raw in result.stderr.splitlines() if raw.startswith("{")]
    assert line["event"] == "gateway_not_started"
    assert "AVATAR_GATEWAY_TLS_CERT_FILE" in line["reason"]
    assert "AVATAR_GATEWAY_PLAINTEXT=true" in line["reason"]


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
    # gRPC, the public callbacks listener, the internal ops listener.
    assert set(config["ExposedPorts"]) == {"50051/tcp", "8080/tcp", "8081/tcp"}
    print(f"gateway image size: {inspect['Size'] / 1e6:.0f} MB")

    port, callbacks_port, ops_port = free_port(), free_port(), free_port()
    name = f"{PROJECT}-image-{port}"
    container.append(name)
    env = env_args({**VENDOR_ENV, **PLAINTEXT_ENV})
    run("podman", "run", "-d", "--name", name, "--read-only",
        "-p", f"127.0.0.1:{port}:{GRPC_PORT}", "-p", f"127.0.0.1:{callbacks_port}:{CALLBACKS_PORT}",
        "-p", f"127.0.0.1:{ops_port}:{OPS_PORT}", *env, image)  # fmt: skip
    wait_healthy(name)
    started = first_log_event(name)
    assert started["event"] == "vendors_live" and started["transport"] == "plaintext", started

    # The ops listener answers the probes; the callbacks listener serves only callbacks.
    ops = f"http://127.0.0.1:{ops_port}"
    callbacks = f"http://127.0.0.1:{callbacks_port}"
    assert http_get(f"{ops}/healthz") == (200, '{"status": "ok"}')
    assert http_get(f"{ops}/livez")[0] == 200
    assert "avatar_gateway_" in http_get(f"{ops}/metrics")[1]
    assert http_get(f"{ops}/callbacks/zegocloud")[0] == 404
    for path in ("/healthz", "/livez", "/metrics", "/sandbox"):
        assert http_get(f"{callbacks}{path}")[0] == 404, path

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


def test_gateway_image_serves_mutual_tls_from_mounted_files_and_stays_healthy(
    images: dict[str, str], container: list[str], tmp_path: Path
) -> None:
    """Certificate files mounted read-only (as a Kubernetes Secret volume would be): gRPC
    answers only a client with a certificate the client CA signed; the image's HEALTHCHECK,
    HTTP /healthz on the ops listener, passes without any certificate."""
    ca = CertificateAuthority()
    certs = tmp_path / "tls"
    server_cert, server_key = ca.server_pair().write(certs, "server")
    (certs / "client-ca.pem").write_bytes(ca.cert_pem)
    client = ca.client_pair()
    certs.chmod(0o755)
    for f in certs.iterdir():
        f.chmod(0o644)  # the container runs as uid 10001

    port = free_port()
    name = f"{PROJECT}-mtls-{port}"
    container.append(name)
    env = env_args({
        **VENDOR_ENV,
        "AVATAR_GATEWAY_TLS_CERT_FILE": f"/tls/{server_cert.name}",
        "AVATAR_GATEWAY_TLS_KEY_FILE": f"/tls/{server_key.name}",
        "AVATAR_GATEWAY_TLS_CLIENT_CA_FILE": "/tls/client-ca.pem",
    })  # fmt: skip
    run("podman", "run", "-d", "--name", name, "--read-only", "-v", f"{certs}:/tls:ro",
        "-p", f"127.0.0.1:{port}:{GRPC_PORT}", *env, images["gateway"])  # fmt: skip
    wait_healthy(name)
    started = first_log_event(name)
    assert started["event"] == "vendors_live" and started["transport"] == "mtls", started

    async def check(with_client_cert: bool) -> int:
        creds = grpc.ssl_channel_credentials(
            ca.cert_pem,
            client.key_pem if with_client_cert else None,
            client.cert_pem if with_client_cert else None,
        )
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            response = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            return int(response.status)

    assert asyncio.run(check(True)) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(check(False))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value

    async def plaintext() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )

    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(plaintext())
    # Still healthy for the container runtime, which has no client certificate.
    run("podman", "healthcheck", "run", name)


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
    if vendor == "zegocloud":
        # Its drive-status callbacks went to the gateway's callbacks listener (8080) and were
        # applied: counted on the ops listener's /metrics.
        status, metrics = http_get(f"http://127.0.0.1:{stack['GATEWAY_OPS_PORT']}/metrics")
        assert status == 200
        # Summed over the `worker` label: with Redis the gateway runs a worker per CPU.
        counted: dict[str, float] = {}
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if (
                    sample.name == "avatar_gateway_vendor_callbacks_total"
                    and sample.labels.get("vendor") == "zegocloud"
                ):
                    outcome = sample.labels["outcome"]
                    counted[outcome] = counted.get(outcome, 0.0) + sample.value
        assert counted.get("applied", 0) >= 1, counted


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
