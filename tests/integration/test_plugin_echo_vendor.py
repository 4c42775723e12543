"""A vendor added as a plugin only: the test-only echo vendor (tests/plugins/echo) goes
through ListVendors, CreateSession, Drive (audio, text, interrupt) and CloseSession on a real
gateway over real gRPC, loaded by name like any out-of-tree vendor, with no shared file
knowing it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import vendor_options_pb2

from gateway.vendors import PluginError, VendorRegistry
from tests.conftest import Gateway, audio_format, error_info, kinds, tone

pytestmark = pytest.mark.integration

ECHO = {"plugins": "tests.plugins.echo", "sandbox_vendors": "zegocloud,echo"}
ROOT = Path(__file__).resolve().parents[2]


def test_no_shared_file_names_the_echo_vendor() -> None:
    # The proof is only worth something if the vendor really lives in tests/ alone.
    for package in ("core", "gateway", "adapters", "emulators"):
        for path in (ROOT / package).rglob("*.py"):
            assert not re.search(r"plugins\.echo|[\"']echo[\"']", path.read_text()), path


@pytest.mark.parametrize("gateway", [ECHO], indirect=True)
async def test_echo_vendor_creates_drives_and_closes(gateway: Gateway) -> None:
    vendors = await gateway.stub.ListVendors(pb.ListVendorsRequest(), timeout=5)
    echo = next(v for v in vendors.vendors if v.vendor == "echo")
    assert echo.sandbox and echo.capabilities.interrupt_ack
    assert list(echo.capabilities.vendor_sample_rates_hertz) == [16000]

    session = await gateway.create("echo", avatar_id="parrot")
    assert session.state == pb.SESSION_STATE_READY
    emulator = gateway.emulator("echo")
    vendor_session = emulator.sessions[session.vendor_session_id]
    assert vendor_session.avatar_id == "parrot"

    pcm = tone(0.5)
    requests = [
        pb.DriveRequest(config=pb.DriveConfig(session=session.name, audio_format=audio_format())),
        *(pb.DriveRequest(audio=pcm[i : i + 3200]) for i in range(0, len(pcm), 3200)),
        pb.DriveRequest(end_turn=pb.EndTurn()),
        pb.DriveRequest(text=pb.TextInput(text="Hello ", final=False)),
        pb.DriveRequest(text=pb.TextInput(text="there.", final=True)),
    ]
    responses = [r async for r in gateway.stub.Drive(iter(requests), timeout=20)]
    got = kinds(responses)
    assert got[0] == "started"
    assert got.count("speech_started") == 2 and got.count("speech_ended") == 2
    ended = [r.speech_ended for r in responses if r.WhichOneof("response") == "speech_ended"]
    assert [e.turn_id for e in ended] == ["1", "2"]
    assert ended[0].played_duration.ToNanoseconds() == 500_000_000
    # What the vendor received is exactly what the caller sent (16 kHz in, 16 kHz vendor).
    assert hashlib.sha256(vendor_session.audio["1"]).digest() == hashlib.sha256(pcm).digest()
    assert vendor_session.text["2"] == "Hello there."

    closed = await gateway.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=10)
    assert closed.state == pb.SESSION_STATE_CLOSED
    assert not vendor_session.open
    assert emulator.rejected == 0


@pytest.mark.parametrize("gateway", [ECHO], indirect=True)
async def test_echo_vendor_rejects_other_vendors_options(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.create(
            "echo",
            avatar_id="parrot",
            zegocloud=vendor_options_pb2.ZegocloudOptions(background_color="#000000"),
        )
    code, reason, md = error_info(err.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert md["field"] == "vendor_options.zegocloud"


def test_plugins_are_discovered_and_checked() -> None:
    registry = VendorRegistry.discover(["tests.plugins.echo"])
    assert {"zegocloud", "tencent", "akool", "echo"} <= set(registry.specs)
    with pytest.raises(PluginError, match="claim"):
        VendorRegistry.discover(["tests.plugins.echo", "tests.plugins.echo"])
    with pytest.raises(PluginError, match="cannot be imported"):
        VendorRegistry.discover(["tests.plugins.nope"])
    with pytest.raises(PluginError, match="no VendorSpec"):
        VendorRegistry.discover(["tests.plugins.echo.adapter"])


async def test_an_unknown_sandbox_vendor_starts_nothing() -> None:
    from gateway.config import Settings
    from gateway.sandbox import Sandbox

    registry = VendorRegistry.discover(["tests.plugins.echo"])
    sandbox = Sandbox("http://127.0.0.1:9")
    vendor_settings = registry.vendor_settings(Settings())
    with pytest.raises(PluginError, match="'nope' has no emulator"):
        await sandbox.start(registry, ["echo", "nope"], vendor_settings)
    assert sandbox.vendors == {}  # echo, named first, was not started either
    running = await sandbox.start(registry, ["echo"], vendor_settings)
    try:
        assert running["echo"].configured and list(sandbox.vendors) == ["echo"]
    finally:
        await sandbox.stop()
