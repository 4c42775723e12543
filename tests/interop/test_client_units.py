"""Unit tests of each client's helpers (WAV, pacing, ErrorInfo decoding): Python here, and
each other language's own tests run with its toolchain (go test, node --test, Maven
Surefire)."""

from __future__ import annotations

import io
import subprocess
import time
import wave
from pathlib import Path

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from avatar_gateway_client import (
    DOMAIN,
    Audio,
    chunks,
    drive_requests,
    error_info,
    paced_sync,
    parse_wav,
)
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from tests.interop import runner
from tests.interop.conftest import Drivers


def _wav(rate: int, channels: int, width: int, frames: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


@pytest.mark.unit
def test_parse_wav_reads_pcm16_and_rejects_the_rest() -> None:
    audio = parse_wav(_wav(16000, 1, 2, bytes(3200)))
    assert (audio.sample_rate_hertz, audio.channels, len(audio.pcm)) == (16000, 1, 3200)
    assert audio.duration_s == pytest.approx(0.1)
    assert audio.format.audio_encoding == media_pb2.AUDIO_ENCODING_LINEAR16
    with pytest.raises(ValueError, match="16-bit PCM"):
        parse_wav(_wav(16000, 1, 1, bytes(100)))
    with pytest.raises(ValueError, match="16-bit PCM"):
        parse_wav(b"nope")


@pytest.mark.unit
def test_chunks_and_pacing() -> None:
    audio = Audio(bytes(9602), 16000, 1)  # 300 ms + 1 sample
    assert [len(c) for c in chunks(audio, 100)] == [3200, 3200, 3200, 2]
    start = time.monotonic()
    assert sum(len(c) for c in paced_sync(audio, 100)) == 9602
    assert 0.29 <= time.monotonic() - start < 2.0


@pytest.mark.unit
def test_drive_requests_sends_config_first_and_splits_audio() -> None:
    fmt = Audio(b"", 16000).format
    reqs = list(
        drive_requests("sessions/x", fmt, [bytes(70000), pb.DriveRequest(end_turn=pb.EndTurn())])
    )
    kinds = [r.WhichOneof("request") for r in reqs]
    assert kinds == ["config", "audio", "audio", "end_turn"]
    assert reqs[0].config.session == "sessions/x"
    assert [len(r.audio) for r in reqs[1:3]] == [65536, 70000 - 65536]


class _FakeError(grpc.RpcError):
    def __init__(self, trailers: tuple[tuple[str, bytes], ...]) -> None:
        self._trailers = trailers

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


@pytest.mark.unit
def test_error_info_decodes_the_status_details_trailer() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="SESSION_NOT_FOUND", domain=DOMAIN, metadata={"session": "sessions/x"}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=5, message="no such session", details=[detail])
    err = _FakeError((("grpc-status-details-bin", status.SerializeToString()),))
    assert error_info(err) == info
    assert error_info(_FakeError(())) is None
    assert error_info(ValueError("plain")) is None


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=runner.tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"


@pytest.mark.interop
@pytest.mark.timeout(1200)
def test_go_helpers(drivers: Drivers) -> None:
    drivers.command("go")  # builds (and so downloads) the module once
    _run(["go", "vet", "./..."], runner.ROOT / "clients/go")
    _run(["go", "test", "./..."], runner.ROOT / "clients/go")


@pytest.mark.interop
@pytest.mark.timeout(1200)
def test_typescript_helpers(drivers: Drivers) -> None:
    drivers.command("typescript")  # npm ci + tsc (compiles test/ too)
    _run(["node", "--test", "dist/test/"], runner.ROOT / "clients/typescript")


@pytest.mark.interop
@pytest.mark.timeout(1200)
def test_java_helpers(drivers: Drivers) -> None:
    drivers.command("java")
    _run(
        [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            f"-Dmaven.repo.local={runner.maven_repo()}",
            "test",
        ],
        runner.ROOT / "clients/java",
    )
