"""Conversational latency: what the gateway adds to a turn, against a direct vendor client.

For each vendor (ZEGOCLOUD, Tencent IVH, Akool) three processes run, as in
``bench/run_bench.py``: the vendor's emulator (``bench/latency_emulators.py``: the real
emulator plus a log of when each vendor command arrived, ``time.monotonic_ns()``), the
gateway (``python -m gateway serve`` with real vendor settings pointing at the emulator,
``AVATAR_GATEWAY_SANDBOX=false``), and this process, the client. Akool also needs a
LiveKit server: the one ``make livekit`` builds into ``.cache/bin``, started as the tests
start it (``emulators/livekit_server.py``).

Each repetition is one session, driven once through the gateway and once directly (the two
paths alternate, so machine load hits both alike). A session runs, in order:

1. create the session (gateway: ``CreateSession``; direct: the vendor's REST create, then its
   status polled, see ``DIRECT_POLL_S``). Metric ``create_ready``: when the call returned
   (direct: when the client saw the session ready) minus when the emulator made it ready;
2. an audio turn, the session's first turn (``first_audio_first_turn``), then a second one
   (``first_audio``): from the moment the client has its first 20 ms chunk to the first
   audio byte at the vendor. The client produces 20 ms chunks of 16 kHz s16le at real time
   (``--turn-ms`` of audio); a direct client does what the vendor's API needs per turn
   (ZEGOCLOUD: ``DriveByWsStream``, a new ``wss://`` socket and ``Start``; Tencent: a new
   ReqId, 160 ms ``SEND_AUDIO`` packets as the adapter sends them; Akool: a new
   ``lk.audio_stream`` byte stream to the avatar);
3. a whole text turn (``first_text``): ZEGOCLOUD ``DriveByText``, Tencent ``SEND_TEXT``,
   Akool a chat message;
4. where the vendor streams text (Tencent ``SEND_STREAMTEXT``, Akool chat parts; not
   ZEGOCLOUD, whose ``ListVendors`` capabilities say ``streaming_text=false``), a streamed text
   turn sent as soon as the whole text turn has ended (``first_stream_text_after_text``);
5. a barge-in: an audio turn, and ``--barge-in-ms`` into it the client interrupts.
   ``interrupt_stop``: interrupt → the first stop command at the vendor (ZEGOCLOUD
   ``InterruptDriveTask`` or the socket's ``Stop``; Tencent the ``Interrupt`` packet or
   ``IsFinal``; Akool the ``interrupt`` command or ``lk.clear_buffer``).
   ``interrupt_ack``: interrupt → the client knows the avatar stopped (gateway: the Drive
   ``interrupted`` event; direct: ZEGOCLOUD's ``InterruptDriveTask`` answer, Tencent's
   ``AudioOver`` of the drive, Akool's ack of the ``interrupt`` command, the facts the
   adapters wait for before emitting ``interrupted``);
6. a barge-in on a whole text turn (``LONG_TEXT``) once the vendor reports it speaking
   (gateway: ``speech_started``; direct: Tencent ``TextStart``, Akool ``audio_start``,
   ZEGOCLOUD 50 ms after ``DriveByText``): ``interrupt_text_stop`` and ``interrupt_text_ack``
   as above. Tencent's rules make this one wait on both paths: an interrupt of a text is an
   empty ``SEND_TEXT``, more than 1 s after the previous ``SEND_TEXT`` (tencent.md §5), so the
   row shows that vendor-mandated wait, measured apart from the audio barge-in.

Each metric is reported as p50 / p95 / max over the repetitions, per path, and added =
gateway − direct per percentile. The direct client polls readiness every
``DIRECT_POLL_S`` (the vendor's documented QPS allows; Akool: the client joins the room and
waits for the avatar participant). Texts are short so turns end quickly; the emulators'
readiness delays are their defaults (ZEGOCLOUD 0.3 s, Tencent 0.3 s; Akool: the avatar's
room join).

``--multi-turn``: one ZEGOCLOUD session through the gateway, an audio turn every
``--turn-every`` s for ``--duration`` s, the gateway's RSS sampled at each turn: memory under
ZEGOCLOUD's socket-per-turn churn (start, end, max, least-squares slope per minute).

Usage::

    .venv/bin/python bench/latency_bench.py                  # 20 repetitions, all vendors
    .venv/bin/python bench/latency_bench.py --reps 2 --no-write --json /tmp/lat.json
    .venv/bin/python bench/latency_bench.py --multi-turn --duration 180

It prints a markdown table per vendor, rewrites its marked block of ``bench/RESULTS.md`` and
saves the raw results (every sample) to ``bench/results/latency_bench.json``
(``latency_multi_turn.json``), which ``bench/plots.py`` draws; ``--no-write`` skips both (the
raw results then go to a temporary directory, or ``--json PATH``). All traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import websockets
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

from latency_emulators import serve  # noqa: E402
from results_md import write_block  # noqa: E402
from spawned import SpawnedEmulator  # noqa: E402

from adapters.akool.api import AkoolApi  # noqa: E402
from adapters.akool.settings import AkoolSettings  # noqa: E402
from adapters.tencent.api import TencentApi  # noqa: E402
from adapters.tencent.models import Answer, CreateSessionAnswer, StatSessionAnswer  # noqa: E402
from adapters.zegocloud.api import ZegoApi  # noqa: E402
from emulators.livekit_server import LiveKitServer  # noqa: E402

VENDORS = ("zegocloud", "tencent", "akool")
SAMPLE_RATE = 16000
CHUNK_MS = 20
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000 * 2  # 640
CHUNK = bytes(CHUNK_BYTES)  # silence: content does not matter for first-byte timing
TENCENT_PACKET_CHUNKS = 8  # 160 ms SEND_AUDIO packets (tencent.md §5)
APP_ID = 1234567890
ZEGO_AVATAR = "zego_emma"
ZEGO_TIMBRE = "zego_timbre_en_female"
TENCENT_APPKEY = "bench-appkey"
TENCENT_PROJECT = "bench-project"
AKOOL_AVATAR = "dvp_Tristan_cloth2_1080P"
AKOOL_AVATAR_IDENTITY = "akool-avatar-agent"
AKOOL_CLIENT_IDENTITY = "bench-direct"
TEXT = "Hello there."
LONG_TEXT = "Let me tell you about the weather in the mountains this week."
"""A text turn long enough (~3.7 s of speech in the emulators) to be interrupted mid-way."""
TENCENT_TEXT_SPACING_S = 1.05
"""SEND_TEXT commands more than 1 s apart (tencent.md §5); an interrupt is one too."""
STREAM_PIECES = ("Hello ", "there.")
DIRECT_POLL_S = {"zegocloud": 0.1, "tencent": 0.04, "akool": 0.05}
"""Readiness poll of the direct client (s). ZEGOCLOUD allows 10 QPS per Action
(zegocloud.md §1); Tencent publishes no QPS (its SDK polls every 100 ms; the adapter 40 ms);
Akool publishes none either: ``session/detail`` until status 2 (processing), while the client
joins the room and waits for the avatar participant, as the adapter checks both."""

METRICS: dict[str, str] = {
    "create_ready": "vendor ready → CreateSession returns",
    "first_audio_first_turn": "first audio byte, first turn of the session",
    "first_audio": "first audio byte, later turn",
    "first_text": "whole text → vendor",
    "first_stream_text_after_text": "streamed text right after a text turn → vendor",
    "interrupt_stop": "barge-in → vendor stop command",
    "interrupt_ack": "barge-in → client told `interrupted`",
    "interrupt_text_stop": "barge-in on a text turn → vendor stop command",
    "interrupt_text_ack": "barge-in on a text turn → client told `interrupted`",
}
SUPPORTED: dict[str, tuple[str, ...]] = {
    "zegocloud": (
        "create_ready",
        "first_audio_first_turn",
        "first_audio",
        "first_text",
        "interrupt_stop",
        "interrupt_ack",
        "interrupt_text_stop",
        "interrupt_text_ack",
    ),
    "tencent": tuple(METRICS),
    "akool": tuple(METRICS),
}
RESULTS = BENCH_DIR / "RESULTS.md"
BEGIN, END = "<!-- BEGIN latency_bench -->", "<!-- END latency_bench -->"
MBEGIN, MEND = "<!-- BEGIN latency_bench multi-turn -->", "<!-- END latency_bench multi-turn -->"
DEFAULT_JSON = BENCH_DIR / "results" / "latency_bench.json"
MULTI_JSON = BENCH_DIR / "results" / "latency_multi_turn.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- processes -----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def busy_seconds() -> float:
    """CPU seconds all cores spent busy, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


class EmulatorProcess(SpawnedEmulator):
    """One vendor's emulator (``latency_emulators.serve``) in a spawned process."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(serve, config)

    async def events(self) -> list[tuple[str, str, int, str]]:
        """Every event since the last call (``latency_emulators`` kinds)."""
        return [tuple(e) for e in await self.call("events")]  # type: ignore[misc]


class GatewayProcess:
    """``python -m gateway serve`` configured for one vendor only, pointing at its emulator."""

    def __init__(
        self, vendor: str, env_vendor: dict[str, str], log_dir: Path, ports: dict[str, int]
    ):
        self.vendor = vendor
        self.grpc_port = ports["grpc"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_GATEWAY_")}
        env.update(
            {
                "AVATAR_GATEWAY_SANDBOX": "false",
                "AVATAR_GATEWAY_LISTEN": f"127.0.0.1:{ports['grpc']}",
                "AVATAR_GATEWAY_OPS_LISTEN": f"127.0.0.1:{ports['ops']}",
                "AVATAR_GATEWAY_CALLBACKS_LISTEN": f"127.0.0.1:{ports['callbacks']}",
                "AVATAR_GATEWAY_PLAINTEXT": "true",
                "AVATAR_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{ports['callbacks']}",
                "AVATAR_GATEWAY_LOG_LEVEL": "warning",
                "AVATAR_GATEWAY_LOG_FORMAT": "json",
                "AVATAR_GATEWAY_SHUTDOWN_GRACE_S": "2",
                "PYTHONUNBUFFERED": "1",
                **env_vendor,
            }
        )
        self.log_path = log_dir / f"gateway-{vendor}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.target = f"127.0.0.1:{self.grpc_port}"

    async def wait_ready(
        self, stub: pb_grpc.AvatarGatewayStub, timeout_s: float = 60.0
    ) -> pb.Vendor:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early; see {self.log_path}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await stub.ListVendors(pb.ListVendorsRequest(), timeout=2)
                for v in answer.vendors:
                    if v.vendor == self.vendor:
                        return v
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready in {timeout_s} s; see {self.log_path}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# ---- one session's measurements ------------------------------------------------------------


@dataclass
class Marks:
    """Client-side times (``time.monotonic_ns()``) of one session, matched to vendor events."""

    key: str = ""  # vendor session id
    created_ns: int = 0  # create returned / client saw ready
    turns: list[tuple[str, int]] = field(default_factory=list)  # (metric, t0_ns) in order
    # (metric prefix, interrupt sent, client told interrupted): "interrupt" (an audio turn),
    # "interrupt_text" (a whole text turn).
    interrupts: list[tuple[str, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


EVENT_OF = {
    "first_audio_first_turn": ("audio",),
    "first_audio": ("audio",),
    "first_text": ("text", "chat"),
    "first_stream_text_after_text": ("stream_text", "chat"),
}


def match(marks: Marks, events: list[tuple[str, str, int, str]]) -> dict[str, float]:
    """Latencies (ms) of one session from its marks and the emulator's events."""
    mine = sorted((e for e in events if e[1] == marks.key), key=lambda e: e[2])
    out: dict[str, float] = {}
    ready = [e[2] for e in mine if e[0] == "ready"]
    if ready and marks.created_ns:
        out["create_ready"] = (marks.created_ns - ready[0]) / 1e6
    bounds = [t for _, t in marks.turns]
    for i, (metric, t0) in enumerate(marks.turns):
        if metric.startswith("barge_in"):
            continue
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        kinds = EVENT_OF[metric]
        hits = [e[2] for e in mine if e[0] in kinds and e[2] >= t0 and (end is None or e[2] < end)]
        if hits:
            out[metric] = (hits[0] - t0) / 1e6
        else:
            marks.errors.append(f"{metric}: no vendor event")
    for prefix, t_int, t_ack in marks.interrupts:
        stops = [e[2] for e in mine if e[0] == "stop" and e[2] >= t_int]
        if stops:
            out[f"{prefix}_stop"] = (stops[0] - t_int) / 1e6
        else:
            marks.errors.append(f"{prefix}_stop: no vendor stop command")
        out[f"{prefix}_ack"] = (t_ack - t_int) / 1e6
    return out


async def chunks_at_real_time(
    n: int, send: Callable[[int, bytes], Awaitable[None]], t0: float, *, stop_at: int = -1
) -> None:
    """Call ``send(i, chunk)`` for chunk ``i`` once it exists (``t0 + i * 20 ms``)."""
    for i in range(n):
        if i == stop_at:
            return
        delay = t0 + i * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i, CHUNK)


# ---- gateway client --------------------------------------------------------------------------


class GatewayDriver:
    """One session through the gateway: CreateSession, one Drive stream for every turn."""

    def __init__(self, stub: pb_grpc.AvatarGatewayStub, vendor: str, args: argparse.Namespace):
        self.stub, self.vendor, self.args = stub, vendor, args
        self.responses: asyncio.Queue[tuple[int, pb.DriveResponse]] = asyncio.Queue()

    def _avatar(self) -> str:
        return {"zegocloud": ZEGO_AVATAR, "tencent": TENCENT_PROJECT, "akool": AKOOL_AVATAR}[
            self.vendor
        ]

    async def _next(self, kind: str, within_s: float) -> tuple[int, pb.DriveResponse]:
        deadline = time.monotonic() + within_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} from the gateway within {within_s:g} s")
            t, r = await asyncio.wait_for(self.responses.get(), left)
            which = r.WhichOneof("response")
            if which == "turn_failed":
                raise RuntimeError(f"turn failed: {r.turn_failed.reason} {r.turn_failed.message}")
            if which == kind:
                return t, r

    async def _settle(self) -> None:
        """Let the interrupted turn's last events arrive (bounded), then forget them."""
        with contextlib.suppress(TimeoutError):
            await self._next("speech_ended", 1.0)
        while not self.responses.empty():
            self.responses.get_nowait()

    async def run(self, marks: Marks) -> None:
        args = self.args
        session = await self.stub.CreateSession(
            pb.CreateSessionRequest(vendor=self.vendor, avatar_id=self._avatar()), timeout=60
        )
        marks.created_ns = time.monotonic_ns()
        marks.key = session.vendor_session_id
        # The first turn starts when the client has its first chunk and opens the Drive
        # stream for it (the config and the audio go at once; `started` is not awaited):
        # whatever the gateway does on a session's first Drive counts in that turn.
        t_first = time.monotonic()
        marks.turns.append(("first_audio_first_turn", time.monotonic_ns()))
        call = self.stub.Drive(timeout=120)
        reader: asyncio.Task[None] | None = None
        try:
            fmt = media_pb2.AudioFormat(
                audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                audio_channel_count=1,
            )
            await call.write(
                pb.DriveRequest(config=pb.DriveConfig(session=session.name, audio_format=fmt))
            )

            async def read() -> None:
                while True:
                    r = await call.read()
                    if r is grpc.aio.EOF:
                        return
                    self.responses.put_nowait((time.monotonic_ns(), r))

            reader = asyncio.create_task(read())
            n = args.turn_ms // CHUNK_MS

            async def send_audio(_i: int, chunk: bytes) -> None:
                await call.write(pb.DriveRequest(audio=chunk))

            for metric in ("first_audio_first_turn", "first_audio"):
                if metric == "first_audio_first_turn":
                    t0 = t_first
                else:
                    t0 = time.monotonic()
                    marks.turns.append((metric, time.monotonic_ns()))
                await chunks_at_real_time(n, send_audio, t0)
                await call.write(pb.DriveRequest(end_turn=pb.EndTurn()))
                if metric == "first_audio_first_turn":
                    await self._next("started", 30)
                await self._next("speech_ended", 15)
            marks.turns.append(("first_text", time.monotonic_ns()))
            await call.write(pb.DriveRequest(text=pb.TextInput(text=TEXT, final=True)))
            await self._next("speech_ended", 15)
            if "first_stream_text_after_text" in SUPPORTED[self.vendor]:
                marks.turns.append(("first_stream_text_after_text", time.monotonic_ns()))
                await call.write(pb.DriveRequest(text=pb.TextInput(text=STREAM_PIECES[0])))
                await call.write(
                    pb.DriveRequest(text=pb.TextInput(text=STREAM_PIECES[1], final=True))
                )
                await self._next("speech_ended", 15)
            # Barge-in: a long audio turn, interrupted --barge-in-ms into it.
            marks.turns.append(("barge_in", time.monotonic_ns()))
            t0 = time.monotonic()
            cut = args.barge_in_ms // CHUNK_MS
            await chunks_at_real_time(cut + 50, send_audio, t0, stop_at=cut)
            t_int = time.monotonic_ns()
            await call.write(pb.DriveRequest(interrupt=pb.Interrupt()))
            t_ack, _ = await self._next("interrupted", 15)
            marks.interrupts.append(("interrupt", t_int, t_ack))
            await self._settle()
            # Barge-in on a whole text turn, once the vendor reports it speaking.
            marks.turns.append(("barge_in_text", time.monotonic_ns()))
            await call.write(pb.DriveRequest(text=pb.TextInput(text=LONG_TEXT, final=True)))
            await self._next("speech_started", 15)
            t_int = time.monotonic_ns()
            await call.write(pb.DriveRequest(interrupt=pb.Interrupt()))
            t_ack, _ = await self._next("interrupted", 15)
            marks.interrupts.append(("interrupt_text", t_int, t_ack))
            await call.done_writing()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 15)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            call.cancel()
            with contextlib.suppress(Exception):
                await self.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)


# ---- direct clients ----------------------------------------------------------------------------


class ZegoDirect:
    """ZEGOCLOUD without the gateway: signed REST, one ``DriveByWsStream`` socket per audio turn."""

    def __init__(self, api: ZegoApi, args: argparse.Namespace) -> None:
        self.api, self.args = api, args
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # zegocloud.md §8: the drive socket is not verified

    async def _open(self, task_id: str) -> tuple[Any, str]:
        drive = await self.api.call("DriveByWsStream", {"TaskId": task_id})
        drive_id = str(drive["DriveId"])
        ws = await websockets.connect(
            str(drive["WssAddress"]), ssl=self.tls, compression=None, open_timeout=10, max_queue=4
        )
        start = {"SampleRate": SAMPLE_RATE, "Channel": 1, "DriveId": drive_id}
        await ws.send(json.dumps({"Action": "Start", "Payload": start}))
        return ws, drive_id

    async def _audio_turn(self, task_id: str, n: int, stop_at: int = -1) -> tuple[Any, str]:
        t0 = time.monotonic()
        ws, drive_id = await self._open(task_id)

        async def send(_i: int, chunk: bytes) -> None:
            await ws.send(chunk)

        await chunks_at_real_time(n, send, t0, stop_at=stop_at)
        return ws, drive_id

    async def run(self, marks: Marks, rep: int) -> None:
        api, args = self.api, self.args
        data = await api.call(
            "CreateDigitalHumanStreamTask",
            {
                "DigitalHumanConfig": {"DigitalHumanId": ZEGO_AVATAR},
                "RTCConfig": {
                    "RoomId": f"lat-{rep}-{uuid.uuid4().hex[:8]}",
                    "StreamId": f"lat_{uuid.uuid4().hex[:12]}",
                },
                "TTL": 600,
                "MaxIdleTime": 300,
            },
        )
        marks.key = task_id = str(data["TaskId"])
        try:
            for _ in range(600):
                status = await api.call(
                    "GetDigitalHumanStreamTaskStatus", {"TaskId": task_id}, idempotent=True
                )
                if int(status.get("Status", 0)) == 3:
                    break
                await asyncio.sleep(DIRECT_POLL_S["zegocloud"])
            marks.created_ns = time.monotonic_ns()
            n = args.turn_ms // CHUNK_MS
            for metric in ("first_audio_first_turn", "first_audio"):
                marks.turns.append((metric, time.monotonic_ns()))
                ws, drive_id = await self._audio_turn(task_id, n)
                await ws.send(json.dumps({"Action": "Stop", "Payload": {"DriveId": drive_id}}))
                await ws.close()
                await asyncio.sleep(args.turn_ms / 1000 + 0.1)  # let it play out
            marks.turns.append(("first_text", time.monotonic_ns()))
            await api.call(
                "DriveByText",
                {
                    "TaskId": task_id,
                    "Text": TEXT,
                    "TTSConfig": {"TimbreId": ZEGO_TIMBRE},
                    "InterruptMode": 0,
                },
            )
            await asyncio.sleep(len(TEXT) * 0.06 + 0.1)
            marks.turns.append(("barge_in", time.monotonic_ns()))
            cut = args.barge_in_ms // CHUNK_MS
            ws, drive_id = await self._audio_turn(task_id, cut + 50, stop_at=cut)
            t_int = time.monotonic_ns()
            await api.call("InterruptDriveTask", {"TaskId": task_id})
            marks.interrupts.append(("interrupt", t_int, time.monotonic_ns()))
            await ws.send(json.dumps({"Action": "Stop", "Payload": {"DriveId": drive_id}}))
            await ws.close()
            await asyncio.sleep(0.2)
            # Barge-in on a whole text turn. The direct client gets no drive-status callback
            # (they go to the gateway); the emulator starts a text drive at once, so the
            # client interrupts 50 ms after DriveByText answered, when it is speaking.
            marks.turns.append(("barge_in_text", time.monotonic_ns()))
            await api.call(
                "DriveByText",
                {
                    "TaskId": task_id,
                    "Text": LONG_TEXT,
                    "TTSConfig": {"TimbreId": ZEGO_TIMBRE},
                    "InterruptMode": 0,
                },
            )
            await asyncio.sleep(0.05)
            t_int = time.monotonic_ns()
            await api.call("InterruptDriveTask", {"TaskId": task_id})
            marks.interrupts.append(("interrupt_text", t_int, time.monotonic_ns()))
        finally:
            with contextlib.suppress(Exception):
                await api.call("StopDigitalHumanStreamTask", {"TaskId": task_id}, idempotent=True)


class TencentDirect:
    """Tencent IVH without the gateway: the session API and the command channel."""

    def __init__(self, api: TencentApi, args: argparse.Namespace) -> None:
        self.api, self.args = api, args

    async def run(self, marks: Marks, rep: int) -> None:
        api = self.api
        created = await api.call(
            "createsession",
            {
                "VirtualmanProjectId": TENCENT_PROJECT,
                "UserId": f"lat-direct-{rep}-{uuid.uuid4().hex[:8]}",
                "Protocol": "webrtc",
                "DriverType": 3,
            },
            CreateSessionAnswer,
        )
        marks.key = session_id = created.session_id
        try:
            for _ in range(1000):
                status = await api.call("statsession", {"SessionId": session_id}, StatSessionAnswer)
                if status.session_status == 1:
                    break
                await asyncio.sleep(DIRECT_POLL_S["tencent"])
            marks.created_ns = time.monotonic_ns()
            await api.call("startsession", {"SessionId": session_id}, Answer)
            async with websockets.connect(
                api.command_channel_url(session_id),
                proxy=None,
                open_timeout=30,
                max_size=4 * 1024 * 1024,
                close_timeout=2.0,
                compression=None,
            ) as ws:
                await self._drive(ws, session_id, marks)
        finally:
            with contextlib.suppress(Exception):
                await api.call("closesession", {"SessionId": session_id}, Answer)

    async def _drive(self, ws: Any, session_id: str, marks: Marks) -> None:
        args = self.args
        over: dict[str, asyncio.Future[int]] = {}
        text_started: dict[str, asyncio.Future[int]] = {}
        loop = asyncio.get_running_loop()

        def waiter(req_id: str) -> asyncio.Future[int]:
            return over.setdefault(req_id, loop.create_future())

        def started(req_id: str) -> asyncio.Future[int]:
            return text_started.setdefault(req_id, loop.create_future())

        async def read() -> None:
            async for raw in ws:
                t = time.monotonic_ns()
                payload = json.loads(raw).get("Payload") or {}
                status = str(payload.get("SpeakStatus") or "")
                req_id = str(payload.get("ReqId") or "")
                if req_id and (status.endswith("Over") or status == "Error"):
                    fut = waiter(req_id)
                    if not fut.done():
                        fut.set_result(t)
                if req_id and status == "TextStart":
                    fut = started(req_id)
                    if not fut.done():
                        fut.set_result(t)

        reader = asyncio.create_task(read())

        async def command(name: str, req_id: str, data: dict[str, Any]) -> None:
            frame = {
                "Header": {},
                "Payload": {
                    "ReqId": req_id,
                    "SessionId": session_id,
                    "Command": name,
                    "Data": data,
                },
            }
            await ws.send(json.dumps(frame, ensure_ascii=False))

        async def audio_turn(n: int, stop_at: int = -1) -> tuple[str, int]:
            req_id = uuid.uuid4().hex
            buf: list[bytes] = []
            seq = 0

            async def send(i: int, chunk: bytes) -> None:
                nonlocal seq
                buf.append(chunk)
                if len(buf) == TENCENT_PACKET_CHUNKS or i == n - 1:
                    seq += 1
                    audio = base64.b64encode(b"".join(buf)).decode("ascii")
                    buf.clear()
                    await command(
                        "SEND_AUDIO", req_id, {"Audio": audio, "Seq": seq, "IsFinal": False}
                    )

            await chunks_at_real_time(n, send, time.monotonic(), stop_at=stop_at)
            return req_id, seq

        try:
            n = args.turn_ms // CHUNK_MS
            for metric in ("first_audio_first_turn", "first_audio"):
                marks.turns.append((metric, time.monotonic_ns()))
                req_id, seq = await audio_turn(n)
                await command("SEND_AUDIO", req_id, {"Audio": "", "Seq": seq + 1, "IsFinal": True})
                await asyncio.wait_for(waiter(req_id), 15)
            marks.turns.append(("first_text", time.monotonic_ns()))
            req_id = uuid.uuid4().hex
            data = {"Text": TEXT, "Interrupt": False, "ChatCommand": "NotUseChat"}
            await command("SEND_TEXT", req_id, data)
            await asyncio.wait_for(waiter(req_id), 15)
            marks.turns.append(("first_stream_text_after_text", time.monotonic_ns()))
            req_id = uuid.uuid4().hex
            await command(
                "SEND_STREAMTEXT", req_id, {"Text": STREAM_PIECES[0], "Seq": 1, "IsFinal": False}
            )
            await command(
                "SEND_STREAMTEXT", req_id, {"Text": STREAM_PIECES[1], "Seq": 2, "IsFinal": True}
            )
            await asyncio.wait_for(waiter(req_id), 15)
            marks.turns.append(("barge_in", time.monotonic_ns()))
            cut = args.barge_in_ms // CHUNK_MS
            req_id, seq = await audio_turn(cut + 50, stop_at=cut)
            t_int = time.monotonic_ns()
            # The vendor SDK's audio stop(): Interrupt, then the closing IsFinal (tencent.md §5).
            await command("SEND_AUDIO", req_id, {"Interrupt": True})
            await command("SEND_AUDIO", req_id, {"Audio": "", "Seq": seq + 1, "IsFinal": True})
            t_ack = await asyncio.wait_for(waiter(req_id), 15)
            marks.interrupts.append(("interrupt", t_int, t_ack))
            await asyncio.sleep(0.2)
            # Barge-in on a whole text turn, as the vendor SDK's stop() does it: after the
            # drive's TextStart, an empty SEND_TEXT with Interrupt, which is a SEND_TEXT like
            # any other: more than 1 s after the previous one (tencent.md §5).
            marks.turns.append(("barge_in_text", time.monotonic_ns()))
            req_id = uuid.uuid4().hex
            data = {"Text": LONG_TEXT, "Interrupt": False, "ChatCommand": "NotUseChat"}
            sent_at = time.monotonic()
            await command("SEND_TEXT", req_id, data)
            await asyncio.wait_for(started(req_id), 15)
            t_int = time.monotonic_ns()
            await asyncio.sleep(max(0.0, sent_at + TENCENT_TEXT_SPACING_S - time.monotonic()))
            await command("SEND_TEXT", uuid.uuid4().hex, {"Text": "", "Interrupt": True})
            t_ack = await asyncio.wait_for(waiter(req_id), 15)
            marks.interrupts.append(("interrupt_text", t_int, t_ack))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


class AkoolDirect:
    """Akool without the gateway: REST with BYO LiveKit credentials, then our own room client."""

    def __init__(self, api: AkoolApi, livekit: LiveKitServer, args: argparse.Namespace) -> None:
        self.api, self.livekit, self.args = api, livekit, args

    def _token(self, identity: str, room: str, *, kind: str = "") -> str:
        from livekit import api as lkapi

        token = (
            lkapi.AccessToken(self.livekit.api_key, self.livekit.api_secret)
            .with_identity(identity)
            .with_grants(
                lkapi.VideoGrants(
                    room_join=True,
                    room=room,
                    can_publish=True,
                    can_publish_data=True,
                    can_subscribe=True,
                )
            )
            .with_ttl(dt.timedelta(seconds=1200))
        )
        if kind:
            token = token.with_kind(kind)  # type: ignore[arg-type]
        return token.to_jwt()

    async def run(self, marks: Marks, rep: int) -> None:
        from livekit import rtc

        args = self.args
        room_name = f"lat-direct-{rep}-{uuid.uuid4().hex[:8]}"
        body = {
            "avatar_id": AKOOL_AVATAR,
            "duration": 600,
            "mode_type": 1,
            "scene_mode": "meeting",
            "stream_type": "livekit",
            "credentials": {
                "livekit_url": self.livekit.url,
                "livekit_token": self._token(AKOOL_AVATAR_IDENTITY, room_name, kind="agent"),
                "livekit_room_name": room_name,
                "livekit_server_identity": AKOOL_AVATAR_IDENTITY,
                "livekit_client_identity": AKOOL_CLIENT_IDENTITY,
                "audio_only_from_data_stream": True,
                "audio_input_source": "data_stream",
            },
        }
        created = await self.api.create_session(body)
        marks.key = created.id
        room = rtc.Room()
        avatar_here = asyncio.Event()
        loop = asyncio.get_running_loop()
        acks: dict[str, asyncio.Future[int]] = {}
        speech_end: asyncio.Queue[int] = asyncio.Queue()
        speech_start: asyncio.Queue[int] = asyncio.Queue()

        def on_participant(p: rtc.RemoteParticipant) -> None:
            if p.identity == AKOOL_AVATAR_IDENTITY:
                avatar_here.set()

        def on_data(packet: rtc.DataPacket) -> None:
            t = time.monotonic_ns()
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(packet.data)
                pld = message.get("pld") or {}
                if message.get("type") == "command" and "code" in pld:
                    fut = acks.get(str(message.get("mid")))
                    if fut is not None and not fut.done():
                        fut.set_result(t)
                elif message.get("type") == "event" and pld.get("event") == "audio_end":
                    speech_end.put_nowait(t)
                elif message.get("type") == "event" and pld.get("event") == "audio_start":
                    speech_start.put_nowait(t)

        def playback_finished(_data: Any) -> str:
            speech_end.put_nowait(time.monotonic_ns())
            return "ok"

        room.on("participant_connected", on_participant)
        room.on("data_received", on_data)

        async def processing() -> None:
            for _ in range(1000):
                if (await self.api.session_detail(created.id)).status == 2:
                    return
                await asyncio.sleep(DIRECT_POLL_S["akool"])

        try:
            polling = asyncio.ensure_future(processing())
            await room.connect(
                self.livekit.url,
                self._token(AKOOL_CLIENT_IDENTITY, room_name),
                rtc.RoomOptions(auto_subscribe=False),
            )
            local = room.local_participant
            local.register_rpc_method("lk.playback_started", lambda _d: "ok")
            local.register_rpc_method("lk.playback_finished", playback_finished)
            if AKOOL_AVATAR_IDENTITY in room.remote_participants:
                avatar_here.set()
            await asyncio.wait_for(asyncio.gather(avatar_here.wait(), polling), 30)
            marks.created_ns = time.monotonic_ns()
            dest = [AKOOL_AVATAR_IDENTITY]

            async def publish(message: dict[str, Any]) -> None:
                payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
                await local.publish_data(payload, reliable=True, destination_identities=dest)

            async def command(cmd: str, data: dict[str, Any] | None = None) -> asyncio.Future[int]:
                mid = f"cmd-{secrets.token_hex(4)}"
                acks[mid] = loop.create_future()
                pld: dict[str, Any] = {"cmd": cmd}
                if data is not None:
                    pld["data"] = data
                await publish({"v": 2, "type": "command", "mid": mid, "pld": pld})
                return acks[mid]

            # set-params and its ack, as the adapter confirms the avatar hears us (akool.md §5.3).
            await asyncio.wait_for(await command("set-params", {"mode": 1}), 10)

            async def audio_turn(n: int, stop_at: int = -1) -> Any:
                t0 = time.monotonic()
                writer = await local.stream_bytes(
                    f"AUDIO_{uuid.uuid4().hex[:8]}",
                    topic="lk.audio_stream",
                    destination_identities=dest,
                    attributes={"sample_rate": str(SAMPLE_RATE), "num_channels": "1"},
                )

                async def send(_i: int, chunk: bytes) -> None:
                    await writer.write(chunk)

                await chunks_at_real_time(n, send, t0, stop_at=stop_at)
                return writer

            async def drain() -> None:
                for queue in (speech_end, speech_start):
                    while not queue.empty():
                        queue.get_nowait()

            n = args.turn_ms // CHUNK_MS
            for metric in ("first_audio_first_turn", "first_audio"):
                await drain()
                marks.turns.append((metric, time.monotonic_ns()))
                writer = await audio_turn(n)
                await writer.aclose()
                await asyncio.wait_for(speech_end.get(), 15)
            await drain()
            marks.turns.append(("first_text", time.monotonic_ns()))
            await publish(
                {
                    "v": 2,
                    "type": "chat",
                    "mid": f"msg-{uuid.uuid4().hex[:8]}",
                    "idx": 0,
                    "fin": True,
                    "pld": {"text": TEXT},
                }
            )
            await asyncio.wait_for(speech_end.get(), 15)
            await drain()
            marks.turns.append(("first_stream_text_after_text", time.monotonic_ns()))
            mid = f"msg-{uuid.uuid4().hex[:8]}"
            await publish(
                {
                    "v": 2,
                    "type": "chat",
                    "mid": mid,
                    "idx": 0,
                    "fin": False,
                    "pld": {"text": STREAM_PIECES[0]},
                }
            )
            await publish(
                {
                    "v": 2,
                    "type": "chat",
                    "mid": mid,
                    "idx": 1,
                    "fin": True,
                    "pld": {"text": STREAM_PIECES[1]},
                }
            )
            await asyncio.wait_for(speech_end.get(), 15)
            await drain()
            marks.turns.append(("barge_in", time.monotonic_ns()))
            cut = args.barge_in_ms // CHUNK_MS
            writer = await audio_turn(cut + 50, stop_at=cut)
            t_int = time.monotonic_ns()
            ack = await command("interrupt")
            with contextlib.suppress(Exception):
                await writer.aclose()
            with contextlib.suppress(Exception):
                await local.perform_rpc(
                    destination_identity=AKOOL_AVATAR_IDENTITY,
                    method="lk.clear_buffer",
                    payload="",
                    response_timeout=2.0,
                )
            marks.interrupts.append(("interrupt", t_int, await asyncio.wait_for(ack, 10)))
            # The avatar reports the cut stream (playback_finished, interrupted): leaving
            # before it answers only makes its RPC fail.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(speech_end.get(), 2)
            await drain()
            # Barge-in on a whole text turn once the avatar says it speaks (audio_start).
            marks.turns.append(("barge_in_text", time.monotonic_ns()))
            await publish(
                {
                    "v": 2,
                    "type": "chat",
                    "mid": f"msg-{uuid.uuid4().hex[:8]}",
                    "idx": 0,
                    "fin": True,
                    "pld": {"text": LONG_TEXT},
                }
            )
            await asyncio.wait_for(speech_start.get(), 15)
            t_int = time.monotonic_ns()
            ack = await command("interrupt")
            marks.interrupts.append(("interrupt_text", t_int, await asyncio.wait_for(ack, 10)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(speech_end.get(), 2)
        finally:
            with contextlib.suppress(Exception):
                await room.disconnect()
            with contextlib.suppress(Exception):
                await self.api.close_session(created.id)


# ---- one vendor ------------------------------------------------------------------------------


@dataclass
class VendorRig:
    """The processes and clients of one vendor's run."""

    vendor: str
    emulator: EmulatorProcess
    gateway: GatewayProcess
    channel: grpc.aio.Channel
    stub: pb_grpc.AvatarGatewayStub
    direct: Any
    capabilities: dict[str, Any]
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def start_rig(vendor: str, log_dir: Path, livekit: LiveKitServer | None) -> VendorRig:
    secret = secrets.token_hex(16)
    ports = {"grpc": free_port(), "ops": free_port(), "callbacks": free_port()}
    env: dict[str, str]
    if vendor == "zegocloud":
        callback_secret = secrets.token_hex(8)
        config: dict[str, Any] = {
            "vendor": vendor,
            "app_id": APP_ID,
            "server_secret": secret,
            "callback_url": f"http://127.0.0.1:{ports['callbacks']}/callbacks/zegocloud",
            "callback_secret": callback_secret,
            "concurrency_limit": 1000,
        }
        emulator = EmulatorProcess(config)
        env = {
            "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": str(APP_ID),
            "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": secret,
            "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": emulator.rest_url + "/",
            "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": callback_secret,
        }
    elif vendor == "tencent":
        config = {"vendor": vendor, "appkey": TENCENT_APPKEY, "access_token": secret}
        emulator = EmulatorProcess(config)
        env = {
            "AVATAR_GATEWAY_TENCENT__APPKEY": TENCENT_APPKEY,
            "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": secret,
            "AVATAR_GATEWAY_TENCENT__API_URL": emulator.rest_url,
            "AVATAR_GATEWAY_TENCENT__PROJECT_ID": TENCENT_PROJECT,
        }
    else:
        assert livekit is not None
        config = {
            "vendor": vendor,
            "api_key": secret,
            "client_id": "bench-client",
            "client_secret": secrets.token_hex(8),
            "livekit_url": livekit.url,
            "livekit_api_key": livekit.api_key,
            "livekit_api_secret": livekit.api_secret,
        }
        emulator = EmulatorProcess(config)
        env = {
            "AVATAR_GATEWAY_AKOOL__API_KEY": secret,
            "AVATAR_GATEWAY_AKOOL__API_URL": emulator.rest_url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": livekit.url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY": livekit.api_key,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET": livekit.api_secret,
        }
    gateway = GatewayProcess(vendor, env, log_dir, ports)
    channel = grpc.aio.insecure_channel(gateway.target)
    stub = pb_grpc.AvatarGatewayStub(channel)
    try:
        info = await gateway.wait_ready(stub)
    except Exception:
        await channel.close()
        gateway.stop()
        emulator.stop()
        raise
    caps = info.capabilities
    capabilities = {
        "audio": caps.audio,
        "text": caps.text,
        "streaming_text": caps.streaming_text,
        "interrupt": caps.interrupt,
    }
    closers: list[Callable[[], Awaitable[None]]] = []
    direct: Any
    if vendor == "zegocloud":
        zapi = ZegoApi(APP_ID, secret, emulator.rest_url + "/", None, timeout_s=30)
        closers.append(zapi.aclose)
        direct = ZegoDirect(zapi, _ARGS)
    elif vendor == "tencent":
        tapi = TencentApi(
            appkey=TENCENT_APPKEY, access_token=secret, api_url=emulator.rest_url, timeout_s=30
        )
        closers.append(tapi.aclose)
        direct = TencentDirect(tapi, _ARGS)
    else:
        assert livekit is not None
        aapi = AkoolApi(AkoolSettings(api_key=secret, api_url=emulator.rest_url))  # type: ignore[arg-type]
        closers.append(aapi.aclose)
        direct = AkoolDirect(aapi, livekit, _ARGS)
    return VendorRig(vendor, emulator, gateway, channel, stub, direct, capabilities, closers)


async def stop_rig(rig: VendorRig) -> None:
    for close in rig.closers:
        with contextlib.suppress(Exception):
            await close()
    await rig.channel.close()
    rig.gateway.stop()
    rig.emulator.stop()


_ARGS = argparse.Namespace()


async def one_session(rig: VendorRig, path: str, rep: int) -> tuple[dict[str, float], list[str]]:
    marks = Marks()
    try:
        if path == "gateway":
            await asyncio.wait_for(GatewayDriver(rig.stub, rig.vendor, _ARGS).run(marks), 120)
        else:
            await asyncio.wait_for(rig.direct.run(marks, rep), 120)
    except Exception as exc:
        marks.errors.append(f"{type(exc).__name__}: {exc}"[:300])
    await asyncio.sleep(0.2)  # the emulator's last events (stop commands) are in
    values = match(marks, await rig.emulator.events())
    return values, marks.errors


def summarise(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=float)
    if not len(a):
        return {"n": 0}
    return {
        "n": len(a),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


async def run_vendor(
    vendor: str, args: argparse.Namespace, log_dir: Path, livekit: LiveKitServer | None
) -> dict[str, Any]:
    rig = await start_rig(vendor, log_dir, livekit)
    print(f"{vendor}: gateway pid {rig.gateway.pid}, emulator pid {rig.emulator.pid}", flush=True)
    pids = [os.getpid(), rig.gateway.pid, rig.emulator.pid]
    if vendor == "akool" and livekit is not None and livekit._proc is not None:
        pids.append(livekit._proc.pid)
    loadavg = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    samples: dict[str, dict[str, list[float]]] = {"gateway": {}, "direct": {}}
    errors: dict[str, list[str]] = {"gateway": [], "direct": []}
    busy0, wall0 = busy_seconds(), time.monotonic()
    own0 = sum(proc_cpu_seconds(p) for p in pids)
    try:
        # Unmeasured sessions per path first: imports, TLS contexts, first connections.
        for _ in range(args.warmup):
            for path in ("gateway", "direct"):
                await one_session(rig, path, -1)
        for rep in range(args.reps):
            order = ("gateway", "direct") if rep % 2 == 0 else ("direct", "gateway")
            for path in order:
                values, errs = await one_session(rig, path, rep)
                for metric, v in values.items():
                    samples[path].setdefault(metric, []).append(v)
                errors[path] += [f"rep {rep}: {e}" for e in errs]
            print(f"  {vendor} rep {rep + 1}/{args.reps} done", flush=True)
    finally:
        wall = time.monotonic() - wall0
        own = sum(proc_cpu_seconds(p) for p in pids) - own0
        busy = busy_seconds() - busy0
        await stop_rig(rig)
    metrics: dict[str, Any] = {}
    for metric in SUPPORTED[vendor]:
        g = summarise(samples["gateway"].get(metric, []))
        d = summarise(samples["direct"].get(metric, []))
        added = {q: g[q] - d[q] for q in ("p50", "p95", "max") if q in g and q in d}
        metrics[metric] = {"gateway": g, "direct": d, "added": added}
    return {
        "vendor": vendor,
        "capabilities": rig.capabilities,
        "metrics": metrics,
        "samples": samples,
        "errors": errors,
        "wall_s": wall,
        "loadavg": loadavg,
        # Cores busy with everything but this bench's processes (client, gateway, emulator,
        # livekit-server for Akool), averaged over the vendor's run.
        "others_cores": max(0.0, (busy - own) / wall) if wall else 0.0,
        "machine_cores": busy / wall if wall else 0.0,
    }


# ---- multi-turn (ZEGOCLOUD socket churn) -------------------------------------------------------


async def run_multi_turn(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    rig = await start_rig("zegocloud", log_dir, None)
    samples: list[tuple[float, int]] = []
    latencies: list[float] = []
    failed = 0
    busy0, wall0 = busy_seconds(), time.monotonic()
    try:
        session = await rig.stub.CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id=ZEGO_AVATAR), timeout=60
        )
        call = rig.stub.Drive(timeout=args.duration + 120)
        fmt = media_pb2.AudioFormat(
            audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE,
            audio_channel_count=1,
        )
        await call.write(
            pb.DriveRequest(config=pb.DriveConfig(session=session.name, audio_format=fmt))
        )
        await call.read()
        ended: asyncio.Queue[int] = asyncio.Queue()

        async def read() -> None:
            nonlocal failed
            while True:
                r = await call.read()
                if r is grpc.aio.EOF:
                    return
                which = r.WhichOneof("response")
                if which == "speech_ended":
                    ended.put_nowait(time.monotonic_ns())
                elif which == "turn_failed":
                    failed += 1
                    ended.put_nowait(time.monotonic_ns())

        reader = asyncio.create_task(read())

        async def send(_i: int, chunk: bytes) -> None:
            await call.write(pb.DriveRequest(audio=chunk))

        start = time.monotonic()
        turn = 0
        await rig.emulator.events()
        while time.monotonic() - start < args.duration:
            due = start + turn * args.turn_every
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            t0_ns = time.monotonic_ns()
            await chunks_at_real_time(args.turn_ms // CHUNK_MS, send, time.monotonic())
            await call.write(pb.DriveRequest(end_turn=pb.EndTurn()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.get(), 15)
            events = [e for e in await rig.emulator.events() if e[0] == "audio" and e[2] >= t0_ns]
            if events:
                latencies.append((events[0][2] - t0_ns) / 1e6)
            samples.append((time.monotonic() - start, rss_kib(rig.gateway.pid)))
            turn += 1
            if turn % 10 == 0:
                print(f"  multi-turn: {turn} turns, RSS {samples[-1][1]} KiB", flush=True)
        await call.done_writing()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 15)
        await rig.stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
    finally:
        wall = time.monotonic() - wall0
        busy = busy_seconds() - busy0
        await stop_rig(rig)
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples], dtype=float)
    slope = float(np.polyfit(t / 60, rss, 1)[0]) if len(t) >= 2 else float("nan")
    return {
        "turns": len(samples),
        "failed_turns": failed,
        "turn_every_s": args.turn_every,
        "duration_s": args.duration,
        "rss_kib": {
            "start": int(rss[0]) if len(rss) else 0,
            "end": int(rss[-1]) if len(rss) else 0,
            "max": int(rss.max()) if len(rss) else 0,
            "slope_kib_per_min": slope,
        },
        "first_audio_ms": summarise(latencies),
        "samples": samples,
        "machine_cores": busy / wall if wall else 0.0,
    }


# ---- report ------------------------------------------------------------------------------------


def fmt(v: float | None) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def vendor_table(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['vendor']}** (ms; p50 / p95 / max over "
        f"{max((m['gateway'].get('n', 0) for m in result['metrics'].values()), default=0)} sessions"
        f"; others on the machine: {result['others_cores']:.2f} cores of {os.cpu_count()}, "
        f"load average {result.get('loadavg', '?')})",
        "",
        "| metric | gateway | direct | added |",
        "|---|---:|---:|---:|",
    ]
    for metric, m in result["metrics"].items():
        cells = []
        for part in ("gateway", "direct", "added"):
            v = m[part]
            cells.append(
                " / ".join(fmt(v.get(q)) for q in ("p50", "p95", "max"))
                if v.get("p50") is not None
                else "–"
            )
        lines.append(f"| {METRICS[metric]} | {' | '.join(cells)} |")
    errs = result["errors"]["gateway"] + result["errors"]["direct"]
    if errs:
        lines += ["", f"Errors ({len(errs)}): " + "; ".join(errs[:5])]
    return "\n".join(lines)


def multi_table(m: dict[str, Any]) -> str:
    r = m["rss_kib"]
    lat = m["first_audio_ms"]
    return "\n".join(
        [
            f"ZEGOCLOUD, one session through the gateway: {m['turns']} audio turns, one every "
            f"{m['turn_every_s']:g} s for {m['duration_s']:g} s (each turn its own "
            f"`DriveByWsStream` and `wss://` socket); {m['failed_turns']} failed; machine "
            f"{m['machine_cores']:.2f} cores busy.",
            "",
            "| gateway RSS start | end | max | slope | first audio byte p50 / p95 / max |",
            "|---:|---:|---:|---:|---:|",
            f"| {r['start']} KiB | {r['end']} KiB | {r['max']} KiB | "
            f"{r['slope_kib_per_min']:+.1f} KiB/min | "
            f"{fmt(lat.get('p50'))} / {fmt(lat.get('p95'))} / {fmt(lat.get('max'))} ms |",
        ]
    )


def report(saved: dict[str, Any]) -> str:
    parts = [vendor_table(r) for r in saved["vendors"]]
    return "\n\n".join(parts)


def write_results(saved: dict[str, Any]) -> None:
    if saved.get("vendors"):
        block = "\n".join(
            [
                BEGIN,
                f"## Conversational latency — {saved['date']}",
                "",
                f"- Command: `{saved['command']}` at {saved['commit']}",
                f"- Machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
                f"Python {platform.python_version()}, grpcio {grpc.__version__}. One emulator "
                "process and one gateway process per vendor; gateway and direct sessions "
                "alternate. Load average at start: " + saved["loadavg"] + ".",
                f"- Per session: {saved['args']['turn_ms']} ms audio turns, a "
                f"{len(TEXT)}-character text, barge-in {saved['args']['barge_in_ms']} ms into "
                "an audio turn. Plots: [latency per vendor](plots/latency_bench.png).",
                "",
                report(saved),
                END,
            ]
        )
        write_block(RESULTS, BEGIN, END, block, new_file="# Benchmark results\n")
    if saved.get("multi_turn"):
        block = "\n".join(
            [
                MBEGIN,
                f"### Multi-turn memory (ZEGOCLOUD socket per turn) — {saved['date']}",
                "",
                f"Command: `{saved['command']}` at {saved['commit']}; load average at start "
                f"{saved['loadavg']}.",
                "",
                multi_table(saved["multi_turn"]),
                MEND,
            ]
        )
        write_block(RESULTS, MBEGIN, MEND, block, new_file="# Benchmark results\n")


def commit() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    return "?"


async def run(args: argparse.Namespace) -> int:
    global _ARGS
    _ARGS = args
    log_dir = Path(tempfile.mkdtemp(prefix="avatar-latbench-"))
    vendors = [v.strip() for v in args.vendor.split(",") if v.strip()]
    loadavg = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    saved: dict[str, Any] = {
        "command": ".venv/bin/python bench/latency_bench.py " + " ".join(args.argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "loadavg": loadavg,
        "args": {
            "reps": args.reps,
            "warmup": args.warmup,
            "turn_ms": args.turn_ms,
            "barge_in_ms": args.barge_in_ms,
        },
        "vendors": [],
    }
    saved["command"] = saved["command"].strip()
    if args.multi_turn:
        saved["multi_turn"] = await run_multi_turn(args, log_dir)
        print(multi_table(saved["multi_turn"]))
    else:
        livekit: LiveKitServer | None = None
        try:
            if "akool" in vendors:
                LiveKitServer.ensure_built()
                livekit = LiveKitServer()
                await livekit.start()
            if args.parallel:
                # Smoke runs only: the vendors share the machine and this event loop, so
                # their numbers say nothing; never written to RESULTS.md.
                saved["vendors"] = list(
                    await asyncio.gather(*(run_vendor(v, args, log_dir, livekit) for v in vendors))
                )
                for result in saved["vendors"]:
                    print()
                    print(vendor_table(result), flush=True)
            for vendor in [] if args.parallel else vendors:
                result = await run_vendor(vendor, args, log_dir, livekit)
                saved["vendors"].append(result)
                print()
                print(vendor_table(result), flush=True)
        finally:
            if livekit is not None:
                await livekit.stop()
    if args.json:
        out = Path(args.json)
    elif not args.no_write:  # the committed block's raw results, read by bench/plots.py
        out = MULTI_JSON if args.multi_turn else DEFAULT_JSON
    else:
        out = log_dir / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(saved, indent=1))
    print(f"\nraw results: {out}; logs {log_dir}")
    if not args.no_write:
        write_results(saved)
        print(f"updated {RESULTS.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", default=",".join(VENDORS), help="comma-separated vendors")
    parser.add_argument("--reps", type=int, default=20, help="sessions per vendor and path")
    parser.add_argument("--turn-ms", type=int, default=200, help="audio per turn (ms)")
    parser.add_argument(
        "--barge-in-ms", type=int, default=300, help="interrupt this far into a turn"
    )
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured sessions per path")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the vendors at the same time (the smoke test: checks the harness, not the "
        "numbers; implies --no-write)",
    )
    parser.add_argument("--json", default="", help="write the raw results here")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--multi-turn", action="store_true", help="ZEGOCLOUD memory under turn churn"
    )
    parser.add_argument("--duration", type=float, default=180.0, help="multi-turn: seconds")
    parser.add_argument("--turn-every", type=float, default=3.0, help="multi-turn: s between turns")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.no_write = args.no_write or args.parallel
    unknown = {v.strip() for v in args.vendor.split(",") if v.strip()} - set(VENDORS)
    if unknown:
        parser.error(f"--vendor: choose from {', '.join(VENDORS)}")
    if args.reps < 1 or args.turn_ms < CHUNK_MS:
        parser.error("--reps ≥ 1, --turn-ms ≥ 20")
    if args.barge_in_ms < 180:
        # Before its first 160 ms packet has gone out a Tencent turn has nothing at the vendor
        # to stop: the gateway then answers `interrupted` without any vendor command.
        parser.error("--barge-in-ms ≥ 180 (a Tencent turn reaches the vendor at 160 ms)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
