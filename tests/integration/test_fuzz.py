"""Property-based fuzzing of the public API: nothing crashes, every error is documented, and
the valid audio of a Drive stream reaches the vendor intact.

Hypothesis generates Drive request sequences (configs with any ``AudioFormat`` and session
name, then any mix of audio of odd and oversized lengths, text of any length and script,
end_turn, interrupt, empty requests and repeated configs) and unary requests (CreateSession
with random vendors, avatars, durations, labels and options; Get/List/Close with random names,
page sizes and tokens; ListAvatars with random parents). The properties:

* the server keeps serving (health SERVING, a normal create + drive works after the run);
* every failure is a canonical status with exactly one ``google.rpc.ErrorInfo`` in domain
  ``avatargateway.dev`` whose reason is in the proto's error table, with the table's code and
  metadata keys (the table is parsed from the proto, so an undocumented reason fails here);
* input a client got wrong is never INTERNAL or UNKNOWN;
* for a 16 kHz mono LINEAR16 stream on a ZEGO session at 16 kHz (passthrough), every turn not
  cut by an interrupt reaches the ZEGO emulator byte-exact (sha256 of the turn's PCM as the
  emulator received it), up to a fatal error. Odd bytes are carried into the next chunk; a
  dangling half sample at the end of a turn is dropped by design.

Runs are derandomized (fixed seed per test) and not shrunk, so a failure is reproducible and
reported in bounded time; each test uses one gateway and a fresh session per example.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2, vendor_options_pb2
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, audio_format, paced_requests, still_serving, tone

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "avatar" / "gateway" / "v1" / "avatar_gateway_service.proto"
DOMAIN = "avatargateway.dev"
MAX_CHUNK = 65536  # DriveRequest.audio limit, from the proto
MAX_TEXT = 16384  # TextInput.text limit, from the proto
C = grpc.StatusCode


# ---- the contract: the error table of the proto's service comment --------------------------


@dataclass(frozen=True)
class Reason:
    """One row of the proto's error table."""

    code: grpc.StatusCode
    metadata: frozenset[str]


def documented_reasons() -> dict[str, Reason]:
    """Parse ``| REASON | CODE | metadata |`` rows from the proto's service comment."""
    rows = re.findall(
        r"^// \| ([A-Z][A-Z0-9_]*) +\| ([A-Z_]+) +\| ([^|\n]*)\|", PROTO.read_text(), re.M
    )
    table: dict[str, Reason] = {}
    for reason, code, metadata in rows:
        keys = frozenset(
            k.strip() for k in metadata.split(",") if k.strip() and k.strip() != "(none)"
        )
        table[reason] = Reason(C[code], keys)
    return table


REASONS = documented_reasons()
LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def test_error_table_is_parsed_from_the_proto() -> None:
    assert len(REASONS) >= 25
    assert REASONS["CONFIG_NOT_FIRST"] == Reason(C.INVALID_ARGUMENT, frozenset({"received"}))
    assert REASONS["SERVER_DRAINING"] == Reason(C.UNAVAILABLE, frozenset())
    assert REASONS["CHUNK_TOO_LARGE"].metadata == {"chunkBytes", "maxChunkBytes"}


def check_error(err: grpc.aio.AioRpcError, context: str) -> tuple[str, dict[str, str]]:
    """Assert the error follows the contract and was not blamed on the server; return it."""
    code = err.code()
    where = f"{context}: {code.name} {err.details()!r}"
    assert code not in (C.OK, C.INTERNAL, C.UNKNOWN), f"server error for client input: {where}"
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None, f"no google.rpc.Status details: {where}"
    rich = status_pb2.Status.FromString(raw)
    assert rich.code == code.value[0] and rich.message == (err.details() or ""), where
    infos = [d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, f"{len(infos)} ErrorInfo details: {where}"
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == DOMAIN, where
    assert info.reason in REASONS, f"reason {info.reason} is not in the proto's table: {where}"
    row = REASONS[info.reason]
    assert code == row.code, f"{info.reason} must be {row.code.name}: {where}"
    metadata = dict(info.metadata)
    missing = row.metadata - set(metadata)
    assert not missing, f"{info.reason} lacks metadata {sorted(missing)}: {where} {metadata}"
    assert all(LOWER_CAMEL.match(k) for k in metadata), f"metadata keys {sorted(metadata)}"
    return info.reason, metadata


FUZZ: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,  # a fixed seed per test: CI runs are reproducible
    "database": None,
    "phases": (Phase.explicit, Phase.generate),  # no shrinking: failures report in bounded time
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,  # one gateway per test, shared by its examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}


# ---- strategies -------------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
NOISE = np.random.default_rng(20260101).integers(-32768, 32768, 128 * 1024, "<i2").tobytes()
REAL = "<the session>"  # placeholder for the example's real session name

formats_any = st.builds(
    media_pb2.AudioFormat,
    audio_encoding=st.sampled_from([0, 1, 1, 2, 7, -1, 2**31 - 1]) | INT32,
    sample_rate_hertz=st.sampled_from([0, 7999, 8000, 16000, 44100, 48000, 48001, -16000]) | INT32,
    audio_channel_count=st.sampled_from([0, 1, 2, 3, -1]) | INT32,
)
formats_valid = st.builds(
    audio_format,
    rate=st.sampled_from([8000, 11025, 22050, 24000, 32000, 44100, 48000])
    | st.integers(8000, 48000),
    channels=st.sampled_from([1, 2]),
)
session_names_random = st.one_of(
    st.sampled_from(
        ["", "sessions/", "sessions//x", "sessions/a/b", "projects/p", "sessions/" + "0" * 32]
    ),
    st.text(max_size=24),
    st.text(max_size=24).map(lambda s: "sessions/" + s),
)
session_names = st.one_of(st.just(REAL), session_names_random)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "\n\t", "Hello there. How are you?", "你好。世界！", "🙂" * 7, "a\x00b", "é" * 30]
    ),
)


@st.composite
def drive_ops(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 10) -> list[tuple[Any, ...]]:
    """Requests after the config: mostly audio, with text, end_turn, interrupt and bad ones.

    Half the sequences are "audio heavy" (no fatal request), so many turns get checked whole.
    """
    if draw(st.booleans()):
        kinds = ["audio"] * 12 + ["end_turn"] * 4 + ["text", "interrupt"]
        min_size = min(max(min_size, 2), max_size)
    else:
        kinds = (
            ["audio"] * 10
            + ["end_turn"] * 4
            + ["text"] * 4
            + ["interrupt"] * 2
            + ["big_audio", "long_text", "empty", "config", "max_text"]
        )
    ops: list[tuple[Any, ...]] = []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=min_size, max_size=max_size)):
        if kind == "audio":
            ops.append(("audio", draw(st.integers(0, 3200) | st.integers(0, 7))))
        elif kind == "big_audio":
            ops.append(("audio", draw(st.sampled_from([65535, 65536, 65537, 70001]))))
        elif kind == "text":
            ops.append(("text", draw(texts), draw(st.booleans())))
        elif kind == "max_text":
            ops.append(("text", draw(st.sampled_from(["word " * 800, "句子。" * 1500])), True))
        elif kind == "long_text":
            ops.append(("text", draw(st.sampled_from(["x", "é", "🙂", "ab "])) * 16385, True))
        else:
            ops.append((kind,))
    return ops


def build_requests(ops: list[tuple[Any, ...]], session: str) -> list[pb.DriveRequest]:
    """Turn ``ops`` into requests; audio is distinct noise so any lost or moved byte shows."""
    out: list[pb.DriveRequest] = []
    pos = 0
    for op in ops:
        kind = op[0]
        if kind == "audio":
            n = op[1]
            start = pos % (len(NOISE) - n)  # n <= 70001 < len(NOISE)
            data = NOISE[start : start + n]
            pos += n + 7
            out.append(pb.DriveRequest(audio=data))
        elif kind == "text":
            out.append(pb.DriveRequest(text=pb.TextInput(text=op[1], final=op[2])))
        elif kind == "end_turn":
            out.append(pb.DriveRequest(end_turn=pb.EndTurn()))
        elif kind == "interrupt":
            out.append(pb.DriveRequest(interrupt=pb.Interrupt()))
        elif kind == "config":
            out.append(pb.DriveRequest(config=pb.DriveConfig(session=session)))
        else:
            out.append(pb.DriveRequest())
    return out


# ---- what the contract says should happen -------------------------------------------------


@dataclass
class Expected:
    """The outcome the Drive contract prescribes for a request sequence."""

    reason: str | None  # the fatal reason, or None for OK
    sent: int  # requests the client sends: up to and including the fatal one
    turns: list[bytes]  # PCM of every audio turn with at least one sample, in order
    checkable: list[bytes]  # ... of those after the last interrupt (not cut by design)
    interrupted: bool


def expect_after_config(requests: list[pb.DriveRequest], has_audio: bool) -> Expected:
    """Follow the proto's Drive protocol over the requests after an accepted config."""
    turns: list[tuple[bytes, int]] = []
    epoch = 0  # interrupts so far
    mode: str | None = None
    pcm = bytearray()

    def end_turn() -> None:
        nonlocal mode, pcm
        if mode == "audio":
            whole = len(pcm) - len(pcm) % 2  # a dangling half sample is dropped
            if whole:
                turns.append((bytes(pcm[:whole]), epoch))
        mode, pcm = None, bytearray()

    reason = None
    sent = 0
    for request in requests:
        sent += 1
        kind = request.WhichOneof("request")
        if kind == "audio":
            if len(request.audio) > MAX_CHUNK:
                reason = "CHUNK_TOO_LARGE"
                break
            if not has_audio:
                reason = "UNSUPPORTED_AUDIO_FORMAT"
                break
            if mode == "text":
                end_turn()
            mode = "audio"
            pcm += request.audio
        elif kind == "text":
            text, final = request.text.text, request.text.final
            if len(text) > MAX_TEXT:
                reason = "TEXT_TOO_LONG"
                break
            if not text:  # ignored, or the closing marker of streamed text
                if final and mode == "text":
                    mode = None
                continue
            if mode == "audio":
                end_turn()
            mode = None if final else "text"
        elif kind == "end_turn":
            end_turn()
        elif kind == "interrupt":
            mode, pcm = None, bytearray()
            epoch += 1
        elif kind == "config":
            reason = "CONFIG_ALREADY_SENT"
            break
        else:
            reason = "INVALID_ARGUMENT"
            break
    end_turn()  # half-close, or the fatal error: what was accepted is finished
    return Expected(
        reason,
        sent,
        [t for t, _ in turns],
        [t for t, e in turns if e == epoch],
        epoch > 0,
    )


def format_ok(fmt: media_pb2.AudioFormat | None) -> bool:
    return fmt is None or (
        fmt.audio_encoding == media_pb2.AUDIO_ENCODING_LINEAR16
        and 8000 <= fmt.sample_rate_hertz <= 48000
        and fmt.audio_channel_count in (1, 2)
    )


def name_ok(name: str) -> bool:
    prefix, _, session_id = name.partition("/")
    return prefix == "sessions" and bool(session_id) and "/" not in session_id


# ---- helpers ------------------------------------------------------------------------------


async def run_drive(
    gw: Gateway, requests: list[pb.DriveRequest], *, half_close: bool, call_timeout_s: float = 60
) -> tuple[list[pb.DriveResponse], grpc.aio.AioRpcError | None]:
    """One Drive call; returns (responses, the error or None).

    Without ``half_close`` the last request must be fatal: the stream then stays open and the
    server has to end it. Nothing is written after a fatal request, since a write racing the
    server's status makes grpc-python report a local INTERNAL "Internal error from Core"
    instead of the server's status.
    """

    async def gen() -> AsyncIterator[pb.DriveRequest]:
        for request in requests:
            yield request
        if not half_close:
            await asyncio.sleep(call_timeout_s + 5)  # bounded by the call's own deadline

    got: list[pb.DriveResponse] = []
    try:
        async for response in gw.stub.Drive(gen(), timeout=call_timeout_s):
            got.append(response)
    except grpc.aio.AioRpcError as err:
        return got, err
    return got, None


async def zego_session(gw: Gateway) -> pb.Session:
    session = await gw.create(
        zegocloud=vendor_options_pb2.ZegocloudOptions(sample_rate_hertz=16000)
    )
    assert session.state == pb.SESSION_STATE_READY
    return session


async def close(gw: Gateway, name: str) -> None:
    closed = await gw.stub.CloseSession(pb.CloseSessionRequest(name=name), timeout=15)
    assert closed.state in (pb.SESSION_STATE_CLOSED, pb.SESSION_STATE_FAILED)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def ws_drives(gw: Gateway, task_id: str, want: Expected) -> list[Any]:
    """The ZEGO emulator's WS drives of the task, once the expected ones have all arrived."""
    emulator = gw.emulator("zegocloud")
    wanted = [sha(t) for t in want.checkable]
    deadline = time.monotonic() + 5.0
    while True:
        drives = [d for d in emulator.drives_for_task(task_id) if d.kind == "ws"]
        tail = drives[len(drives) - len(wanted) :] if wanted else []
        if (
            len(drives) >= len(wanted)
            and [d.sha256 for d in tail] == wanted
            and all(d.stopped for d in tail)
        ) or time.monotonic() > deadline:
            return drives
        await asyncio.sleep(0.05)


async def assert_still_works(gw: Gateway) -> None:
    """Health is SERVING and a normal session takes a normal audio turn intact."""
    await still_serving(gw)
    session = await zego_session(gw)
    pcm = tone(0.3)
    responses = [
        r
        async for r in gw.stub.Drive(paced_requests(session.name, pcm, realtime=False), timeout=30)
    ]
    assert responses[0].HasField("started")
    assert any(r.HasField("speech_ended") for r in responses)
    (drive,) = gw.emulator("zegocloud").drives_for_task(session.vendor_session_id)
    assert drive.sha256 == sha(pcm) and drive.stopped
    await close(gw, session.name)


@pytest.fixture
async def gw(gateway: Gateway) -> AsyncIterator[Gateway]:
    """The test's one gateway; once every example has run it must still do normal work."""
    yield gateway
    await assert_still_works(gateway)


def describe(requests: list[pb.DriveRequest]) -> str:
    parts = []
    for r in requests:
        kind = r.WhichOneof("request")
        if kind == "audio":
            parts.append(f"audio[{len(r.audio)}]")
        elif kind == "text":
            parts.append(f"text[{len(r.text.text)},final={r.text.final}]")
        else:
            parts.append(str(kind))
    return " ".join(parts)


# ---- Drive: the first request and the config --------------------------------------------


first_requests = st.one_of(
    st.tuples(st.just("config"), session_names, st.none() | formats_any, st.booleans()),
    st.tuples(
        st.just("other"),
        drive_ops(min_size=1, max_size=1).filter(lambda ops: ops[0][0] != "config"),
    ),
    st.just(("other", [("empty",)])),
)


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud"}], indirect=True)
@settings(**FUZZ, max_examples=40)
@given(first=first_requests)
@example(first=("config", REAL, audio_format(), False))
# An AudioEncoding value the enum does not name (proto3 enums are open): INTERNAL today.
@example(first=("config", REAL, media_pb2.AudioFormat(audio_encoding=5), False))
@example(first=("config", REAL, media_pb2.AudioFormat(audio_encoding=-1), False))
async def test_fuzz_drive_first_request_and_config(gw: Gateway, first: tuple[Any, ...]) -> None:
    session: pb.Session | None = None
    if first[0] == "config":
        _, name, fmt, preempt = first
        if name == REAL:
            session = await zego_session(gw)
            name = session.name
        config = pb.DriveConfig(session=name, preempt=preempt)
        if fmt is not None:
            config.audio_format.CopyFrom(fmt)
        request = pb.DriveRequest(config=config)
        if not name_ok(name):
            want = "INVALID_SESSION_NAME"
        elif not format_ok(fmt):
            want = "UNSUPPORTED_AUDIO_FORMAT"
        elif session is None:
            want = "SESSION_NOT_FOUND"
        else:
            want = None
    else:
        (request,) = build_requests(first[1], "sessions/x")
        want = "CONFIG_NOT_FIRST"
    context = f"Drive first request {request!r}"
    try:
        responses, err = await run_drive(gw, [request], half_close=want is None)
        if err is None:
            assert want is None, f"{context}: OK, expected {want}"
            assert responses and responses[0].HasField("started"), context
            assert responses[0].started.session == request.config.session, context
        else:
            reason, metadata = check_error(err, context)
            assert reason == want, f"{context}: {reason}, expected {want}"
            if reason == "CONFIG_NOT_FIRST":
                assert metadata["received"] == (request.WhichOneof("request") or "none")
            elif reason == "UNSUPPORTED_AUDIO_FORMAT":
                fmt = request.config.audio_format
                assert metadata["sampleRateHertz"] == str(fmt.sample_rate_hertz)
                assert metadata["audioChannelCount"] == str(fmt.audio_channel_count)
            elif reason in ("INVALID_SESSION_NAME", "SESSION_NOT_FOUND"):
                assert request.config.session in metadata.values()
    finally:
        if session is not None:
            await close(gw, session.name)


# ---- Drive: request sequences, and intact audio ------------------------------------------


@pytest.fixture
def fast_text(gateway: Gateway) -> None:
    # The emulator speaks text at 0.06 s per character; the fuzz cares about order and bytes,
    # not about listening to 16384 characters.
    gateway.emulator("zegocloud").text_seconds_per_char = 0.0001


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud"}], indirect=True)
@settings(**FUZZ, max_examples=40)
@given(
    fmt=st.one_of(
        st.just(audio_format()),
        st.just(audio_format()),
        st.just(audio_format()),
        formats_valid,
        st.none(),
    ),
    preempt=st.booleans(),
    ops=drive_ops(),
)
@example(
    fmt=audio_format(),
    preempt=False,
    ops=[("audio", 1), ("audio", 639), ("audio", 3), ("end_turn",), ("audio", 5), ("audio", 0)],
)
@example(
    fmt=audio_format(),
    preempt=False,
    ops=[("audio", 1001), ("text", "Hi. " * 5, False), ("audio", 641), ("audio", 65537)],
)
@example(
    fmt=audio_format(),
    preempt=True,
    ops=[("audio", 3200), ("interrupt",), ("audio", 999), ("text", "", True), ("empty",)],
)
@example(
    fmt=audio_format(),
    preempt=False,
    ops=[("audio", 65535), ("audio", 1), ("text", "word " * 3276 + "end.", True), ("audio", 2)],
)
@example(  # odd chunks across turns, a turn ended by text, one by half-close
    fmt=audio_format(),
    preempt=False,
    ops=[
        ("audio", 1001),
        ("audio", 1),
        ("end_turn",),
        ("audio", 3),
        ("audio", 3199),
        ("text", "Hi.", True),
        ("audio", 641),
        ("audio", 65536),
        ("audio", 1),
    ],
)
@example(  # turns after a barge-in arrive whole; the interrupted one may be cut
    fmt=audio_format(),
    preempt=False,
    ops=[
        ("audio", 3200),
        ("audio", 3200),
        ("interrupt",),
        ("audio", 641),
        ("audio", 3),
        ("end_turn",),
        ("interrupt",),
        ("audio", 2001),
        ("end_turn",),
        ("audio", 1280),
    ],
)
async def test_fuzz_drive_sequences_keep_valid_audio_intact(
    gw: Gateway,
    fast_text: None,
    fmt: media_pb2.AudioFormat | None,
    preempt: bool,
    ops: list[tuple[Any, ...]],
) -> None:
    session = await zego_session(gw)
    config = pb.DriveConfig(session=session.name, preempt=preempt)
    if fmt is not None:
        config.audio_format.CopyFrom(fmt)
    requests = build_requests(ops, session.name)
    want = expect_after_config(requests, fmt is not None)
    context = f"Drive {fmt.sample_rate_hertz if fmt else 'text'}: {describe(requests)}"
    try:
        responses, err = await run_drive(
            gw,
            [pb.DriveRequest(config=config), *requests[: want.sent]],
            half_close=want.reason is None,
        )
        assert responses and responses[0].HasField("started"), context
        if err is None:
            assert want.reason is None, f"{context}: OK, expected {want.reason}"
        else:
            reason, _ = check_error(err, context)
            assert reason == want.reason, f"{context}: {reason}, expected {want.reason}"
        event(f"outcome: {want.reason or 'OK'}")
        failed = [r.turn_failed for r in responses if r.HasField("turn_failed")]
        assert not failed, f"{context}: turns lost: {failed}"
        passthrough = fmt is not None and fmt.sample_rate_hertz == 16000
        passthrough = passthrough and fmt is not None and fmt.audio_channel_count == 1
        if passthrough:
            event(f"intact turns checked: {min(len(want.checkable), 3)}+")
            drives = await ws_drives(gw, session.vendor_session_id, want)
            got = [d.sha256 for d in drives]
            wanted = [sha(t) for t in want.checkable]
            if want.interrupted:
                # The turns after the last interrupt are the last drives, whole and in order.
                assert len(got) >= len(wanted), context
                assert got[len(got) - len(wanted) :] == wanted, context
            else:
                # No interrupt: exactly one vendor drive per audio turn, every byte in order.
                assert got == [sha(t) for t in want.turns], (
                    f"{context}: vendor got {[d.bytes_received for d in drives]} bytes, "
                    f"sent {[len(t) for t in want.turns]}"
                )
            assert all(d.stopped for d in drives[len(drives) - len(wanted) :]), context
    finally:
        await close(gw, session.name)


# ---- unary requests -----------------------------------------------------------------------

VENDORS = ("zegocloud", "tencent")  # configured in the unary gateway; akool is not
AVATARS = {"zegocloud": "zego_emma", "tencent": "sandbox-project"}


def mostly(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``value`` three times in four, else a draw from ``other``: deep paths get exercised."""
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


any_durations = st.builds(
    duration_pb2.Duration,
    seconds=st.sampled_from([0, 1, 29, 30, 3600, 86400, 86401, -1]) | st.integers(-(10**6), 10**7),
    nanos=st.sampled_from([0, 1, -1, 999_999_999]) | st.integers(-999_999_999, 999_999_999),
)
durations = st.one_of(
    st.none(),
    st.none(),
    st.builds(duration_pb2.Duration, seconds=st.integers(30, 7200)),
    any_durations,
)
zego_options = st.builds(
    vendor_options_pb2.ZegocloudOptions,
    background_color=mostly("", st.sampled_from(["#FF0000", "red"]) | st.text(max_size=10)),
    room_id=mostly("", st.sampled_from(["room-1", "r" * 129]) | st.text(max_size=140)),
    stream_id=mostly("", st.sampled_from(["stream_1", "bad id!"]) | st.text(max_size=20)),
    timbre_id=mostly("", st.sampled_from(["zego_timbre_en_female"]) | st.text(max_size=20)),
    speech_rate=mostly(0, st.sampled_from([500, 501]) | INT32),
    pitch_rate=mostly(0, INT32),
    volume=mostly(0, st.sampled_from([1, 100, 101]) | INT32),
    sample_rate_hertz=mostly(0, st.sampled_from([16000, 24000, 8000]) | INT32),
)
tencent_options = st.builds(
    vendor_options_pb2.TencentOptions,
    protocol=mostly("", st.sampled_from(["webrtc", "rtmp", "trtc", "WEBRTC", "x"])),
    driver_type=mostly(0, st.sampled_from([1, 3, 2]) | INT32),
    user_id=mostly("", st.text(max_size=20)),
    stream_max_interval=st.one_of(st.none(), st.none(), any_durations),
    asset_virtualman_key=mostly("", st.sampled_from(["asset-1"]) | st.text(max_size=10)),
    trtc_use_external_app=st.booleans(),
    trtc_app_id=mostly(0, st.integers(-(2**63), 2**63 - 1)),
    trtc_room_id=mostly(0, st.integers(-(2**63), 2**63 - 1)),
    trtc_str_room_id=mostly("", st.text(max_size=10)),
    trtc_user_sig=mostly("", st.text(max_size=10)),
    trtc_private_map_key=mostly("", st.text(max_size=10)),
    css_custom_push_url=mostly("", st.text(max_size=20)),
    background_urls=mostly([], st.lists(st.text(max_size=20), max_size=7)),
    alpha_channel_enable=st.booleans(),
)
akool_options = st.builds(
    vendor_options_pb2.AkoolOptions,
    voice_id=st.text(max_size=10),
    language=st.text(max_size=6),
    mode_type=st.sampled_from([0, 1, 2, 3]) | INT32,
    voice_speed=st.floats(allow_nan=True, allow_infinity=True),
    scene_mode=st.text(max_size=10),
)
labels = st.one_of(
    st.dictionaries(st.sampled_from(["team", "env", "k"]), st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=66), st.text(max_size=66), max_size=34),
)


@st.composite
def create_requests(draw: st.DrawFn) -> pb.CreateSessionRequest:
    vendor = draw(st.sampled_from([*VENDORS, *VENDORS, *VENDORS, "akool", "", "other"]))
    if vendor == "other":
        vendor = draw(st.sampled_from(["ZEGOCLOUD", "vendors/tencent"]) | st.text(max_size=12))
    avatar = draw(
        mostly(
            AVATARS.get(vendor, "zego_emma"),
            st.sampled_from(["", "no_such_avatar", "zego_emma", "sandbox-project"])
            | st.text(max_size=20),
        )
    )
    request = pb.CreateSessionRequest(
        vendor=vendor,
        avatar_id=avatar,
        request_id=draw(mostly("", st.sampled_from(["rid-1", "rid-2"]) | st.text(max_size=40))),
        labels=draw(labels),
    )
    for field in ("max_duration", "idle_timeout"):
        value = draw(durations)
        if value is not None:
            getattr(request, field).CopyFrom(value)
    kind = draw(st.sampled_from(["none", vendor, vendor, "zegocloud", "tencent", "akool"]))
    if kind == "zegocloud":
        request.zegocloud.CopyFrom(draw(zego_options))
    elif kind == "tencent":
        request.tencent.CopyFrom(draw(tencent_options))
    elif kind == "akool":
        request.akool.CopyFrom(draw(akool_options))
    return request


names = st.one_of(
    st.integers(0, 5).map(lambda i: ("created", i)),
    st.integers(0, 5).map(lambda i: ("created", i)),
    session_names_random.map(lambda n: ("name", n)),
)
list_requests = st.builds(
    pb.ListSessionsRequest,
    page_size=st.sampled_from([0, 1, 2, 500, 501, -1]) | INT32,
    page_token=st.sampled_from(["", "0", "1", "50", "x", "²", "9" * 5000]) | st.text(max_size=12),
    vendor=st.sampled_from(["", *VENDORS, "nope"]),
    state=st.sampled_from([0, 1, 2, 4, 5, 99, -3]),
    labels=st.dictionaries(st.sampled_from(["team", "env"]), st.text(max_size=3), max_size=2),
)
unary_ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), create_requests()),
        st.tuples(st.just("create"), create_requests()),
        st.tuples(st.just("get"), names),
        st.tuples(st.just("close"), names),
        st.tuples(st.just("list"), list_requests),
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud,tencent"}], indirect=True)
@settings(**FUZZ, max_examples=40)
@given(ops=unary_ops)
# AVATAR_NOT_FOUND must carry the avatarId the table promises (ZEGO's lacks it today).
@example(ops=[("create", pb.CreateSessionRequest(vendor="zegocloud", avatar_id="no_such_avatar"))])
async def test_fuzz_unary_session_requests(gw: Gateway, ops: list[tuple[str, Any]]) -> None:
    created: list[pb.Session] = []
    try:
        for op, arg in ops:
            context = f"{op} {arg!r}"[:2000]
            try:
                if op == "create":
                    session = await gw.stub.CreateSession(arg, timeout=30)
                    created.append(session)
                    event(f"create {arg.vendor}: {pb.SessionState.Name(session.state)}")
                    assert name_ok(session.name), context
                    assert (session.vendor, session.avatar_id) == (arg.vendor, arg.avatar_id)
                    assert dict(session.labels) == dict(arg.labels), context
                    states = [pb.SESSION_STATE_READY, pb.SESSION_STATE_FAILED]
                    if arg.request_id:  # a retry returns the first call's session as it is now
                        states.append(pb.SESSION_STATE_CLOSED)
                    assert session.state in states, context
                    if session.state == pb.SESSION_STATE_FAILED:
                        assert session.failure.reason in REASONS, f"{context}: {session.failure}"
                elif op in ("get", "close"):
                    if arg[0] == "created":
                        if not created:
                            continue
                        name = created[arg[1] % len(created)].name
                    else:
                        name = arg[1]
                    if op == "get":
                        got = await gw.stub.GetSession(pb.GetSessionRequest(name=name))
                    else:
                        got = await gw.stub.CloseSession(pb.CloseSessionRequest(name=name))
                        assert got.state in (pb.SESSION_STATE_CLOSED, pb.SESSION_STATE_FAILED)
                    assert got.name == name, context
                else:
                    listed = await gw.stub.ListSessions(arg, timeout=10)
                    assert len(listed.sessions) <= min(arg.page_size or 50, 500), context
                    for s in listed.sessions:
                        assert not arg.vendor or s.vendor == arg.vendor, context
                        assert not arg.state or s.state == arg.state, context
                        assert dict(arg.labels).items() <= dict(s.labels).items(), context
            except grpc.aio.AioRpcError as err:
                reason, _ = check_error(err, context)
                event(f"{op}: {reason}")
                if op == "create" and arg.vendor not in (*VENDORS, "akool"):
                    assert reason == "UNKNOWN_VENDOR", context
                if op in ("get", "close") and arg[0] == "name":
                    want = "INVALID_SESSION_NAME" if not name_ok(arg[1]) else "SESSION_NOT_FOUND"
                    assert reason == want, context
    finally:
        for session in created:
            await close(gw, session.name)


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud,tencent"}], indirect=True)
@settings(**FUZZ, max_examples=30)
@given(
    request=st.builds(
        pb.ListAvatarsRequest,
        parent=st.sampled_from(
            ["vendors/zegocloud", "vendors/tencent", "vendors/akool", "vendors/", "", "zegocloud"]
        )
        | st.text(max_size=20),
        page_size=st.sampled_from([0, 1, 20, 21, -1]) | INT32,
        page_token=st.sampled_from(["", "0", "1", "20", "-1", "x", "99999999"])
        | st.text(max_size=12),
    )
)
# Page tokens str.isdigit() accepts but int() refuses: INTERNAL today.
@example(request=pb.ListAvatarsRequest(parent="vendors/zegocloud", page_token="²"))
@example(request=pb.ListAvatarsRequest(parent="vendors/zegocloud", page_token="9" * 5000))
async def test_fuzz_list_avatars(gw: Gateway, request: pb.ListAvatarsRequest) -> None:
    context = f"ListAvatars {request!r}"[:300]
    try:
        listed = await gw.stub.ListAvatars(request, timeout=10)
    except grpc.aio.AioRpcError as err:
        reason, _ = check_error(err, context)
        prefix, _, vendor = request.parent.partition("/")
        if prefix != "vendors" or not vendor:
            assert reason == "INVALID_ARGUMENT", context
        elif vendor not in VENDORS:
            assert reason == "UNKNOWN_VENDOR", context
        return
    for avatar in listed.avatars:
        assert avatar.name == f"{request.parent}/avatars/{avatar.avatar_id}", context


# ---- deterministic contract checks the fuzz found or relies on ----------------------------


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud"}], indirect=True)
async def test_failed_session_reports_a_documented_reason(gateway: Gateway) -> None:
    # Session.failure.reason is "the ErrorInfo reason" a call would have failed with.
    gateway.emulator("zegocloud").fail_next_task_init("fuzz: init failed")
    session = await gateway.create()
    assert session.state == pb.SESSION_STATE_FAILED
    assert session.failure.reason in REASONS, session.failure
    await assert_still_works(gateway)


@pytest.mark.parametrize("gateway", [{"sandbox_vendors": "zegocloud"}], indirect=True)
async def test_list_sessions_rejects_page_tokens_it_never_issued(gateway: Gateway) -> None:
    sessions = [await zego_session(gateway) for _ in range(3)]
    try:
        await _check_page_tokens(gateway, sessions)
    finally:
        for s in sessions:
            await close(gateway, s.name)


async def _check_page_tokens(gateway: Gateway, sessions: list[pb.Session]) -> None:
    # A negative offset today returns the oldest sessions and a bogus next_page_token.
    for token in ("-1", "-2", "x", "1.5"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway.stub.ListSessions(pb.ListSessionsRequest(page_token=token), timeout=5)
        reason, metadata = check_error(err.value, f"ListSessions page_token={token!r}")
        assert (err.value.code(), reason, metadata) == (
            C.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": "page_token"},
        ), token
    # The tokens the server issues do page through everything, newest first, exactly once.
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await gateway.stub.ListSessions(
            pb.ListSessionsRequest(page_size=1, page_token=token), timeout=5
        )
        seen += [s.name for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [s.name for s in reversed(sessions)]
