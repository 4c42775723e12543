"""The ZEGOCLOUD or Tencent emulator in its own process, with a bench-only receive hook.

``emulators/zegocloud.py`` is used unchanged: :class:`BenchZegoEmulator` subclasses it and
wraps ``_on_binary`` (the handler of every binary PCM frame on the WSS drive socket) to
record, per frame, the receive time (``time.monotonic_ns()``, taken before the emulator's
own work) and the send time the load generator wrote into the frame. It also checks that
each frame arrived unchanged: 640 bytes, the fixed payload after the 16-byte header, and a
per-stream sequence number that increases by exactly one.

Chunk layout (little endian): ``int64 send_ns | uint32 stream_id | uint32 seq | 624 bytes
of a fixed 16 kHz tone``. CLOCK_MONOTONIC is system wide, so the difference of the two
times is the one-way latency between two processes.

Tencent (``emulators/tencent.py``, also unchanged): :class:`BenchTencentEmulator` wraps
``_on_frame`` (every JSON text frame of the command channel) to take the receive time before
the emulator parses the frame, and ``_send_audio`` to decode the base64 ``Audio`` of each
SEND_AUDIO packet once more and read the 20 ms chunks in it. A 160 ms packet is eight chunks;
its latency sample is the send time of its *last* chunk, the one that completed it. Every
chunk is checked (whole 640-byte chunks, payload unchanged, sequence +1 per stream). Tencent
chunks carry real speech after the header (``demo/speech.wav`` resampled to 16 kHz) instead
of the repeated tone: the command channel negotiates permessage-deflate, and a tone repeated
every 20 ms would compress to almost nothing, hiding what deflate costs on real audio.

The harness talks to the process over a :mod:`multiprocessing` pipe (see :func:`serve`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import gc
import math
import os
import struct
import time
import wave
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from spawned import commands_from

from emulators.tencent import TencentEmulator
from emulators.zegocloud import ZegocloudEmulator

CHUNK_MS = 20
SAMPLE_RATE = 16000
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000 * 2  # 640
HEADER = struct.Struct("<qII")


def _tone() -> bytes:
    samples = CHUNK_BYTES // 2
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)))
        for i in range(samples)
    )


TAIL = _tone()[HEADER.size :]

PACKET_MS = 160
PACKET_BYTES = SAMPLE_RATE * PACKET_MS // 1000 * 2  # 5120: one Tencent SEND_AUDIO packet
CHUNKS_PER_PACKET = PACKET_BYTES // CHUNK_BYTES  # 8
SPEECH_WAV = Path(__file__).resolve().parent.parent / "demo" / "speech.wav"


def _speech() -> bytes:
    """``demo/speech.wav`` (espeak-ng, 22.05 kHz) as 16 kHz mono s16le, whole 20 ms chunks."""
    with wave.open(str(SPEECH_WAV)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    src = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    n = int(len(src) * SAMPLE_RATE / rate)
    pcm = np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(src)), src)
    out = np.clip(np.round(pcm), -32768, 32767).astype("<i2").tobytes()
    return out[: len(out) // CHUNK_BYTES * CHUNK_BYTES]


SPEECH = _speech()
SPEECH_CHUNKS = len(SPEECH) // CHUNK_BYTES  # ~8 s of speech, looped


class GcPauses:
    """Records garbage-collector pauses of this process (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int, float]] = []  # (generation, monotonic_ns, ms)
        self._t0 = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
        else:
            ms = (time.perf_counter_ns() - self._t0) / 1e6
            if ms >= 1.0 or info.get("generation") == 2:
                self.pauses.append((int(info.get("generation", -1)), time.monotonic_ns(), ms))

    def take(self) -> list[tuple[int, int, float]]:
        out, self.pauses = self.pauses, []
        return out


def make_chunk(send_ns: int, stream_id: int, seq: int) -> bytes:
    """One 20 ms chunk carrying its send time, stream id and sequence number."""
    return HEADER.pack(send_ns, stream_id, seq) + TAIL


def speech_tail(seq: int) -> bytes:
    """The 624 bytes after the header of Tencent chunk ``seq``: speech, looping every ~8 s."""
    start = (seq % SPEECH_CHUNKS) * CHUNK_BYTES + HEADER.size
    return SPEECH[start : start + CHUNK_BYTES - HEADER.size]


def make_speech_chunk(send_ns: int, stream_id: int, seq: int) -> bytes:
    """One 20 ms chunk of speech carrying its send time, stream id and sequence number."""
    return HEADER.pack(send_ns, stream_id, seq) + speech_tail(seq)


class FrameRecorder:
    """Latency samples and per-chunk integrity counters of one phase, for either vendor.

    ``check`` verifies one 640-byte chunk (header, payload, sequence +1 per stream);
    ``sample`` records one latency sample; ``as_dict`` is the part of ``collect`` they share.
    """

    def __init__(self) -> None:
        self.send = array("q")
        self.recv = array("q")
        self.sid = array("q")
        self.bad_size = 0
        self.bad_payload = 0
        self.seq_errors = 0
        self._last_seq: dict[int, int] = {}

    def check(
        self, buf: bytes | memoryview, offset: int, tail: Callable[[int], bytes]
    ) -> tuple[int, int]:
        """Check the chunk at ``offset`` against ``tail(seq)``; returns ``(send_ns, sid)``."""
        send_ns, sid, seq = HEADER.unpack_from(buf, offset)
        if buf[offset + HEADER.size : offset + CHUNK_BYTES] != tail(seq):
            self.bad_payload += 1
        if seq != self._last_seq.get(sid, -1) + 1:
            self.seq_errors += 1
        self._last_seq[sid] = seq
        return send_ns, sid

    def sample(self, send_ns: int, recv_ns: int, sid: int) -> None:
        self.send.append(send_ns)
        self.recv.append(recv_ns)
        self.sid.append(sid)

    def as_dict(self) -> dict[str, Any]:
        return {
            "send": self.send.tobytes(),
            "recv": self.recv.tobytes(),
            "sid": self.sid.tobytes(),
            "bad_size": self.bad_size,
            "bad_payload": self.bad_payload,
            "seq_errors": self.seq_errors,
        }


def _tone_tail(_seq: int) -> bytes:
    return TAIL


class BenchZegoEmulator(ZegocloudEmulator):
    """The real emulator plus a per-frame latency and integrity recorder."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reset_samples()

    def reset_samples(self) -> None:
        self.frames = FrameRecorder()

    def _on_binary(self, session: Any, data: bytes) -> str | None:
        recv_ns = time.monotonic_ns()
        problem = super()._on_binary(session, data)
        if len(data) != CHUNK_BYTES:
            self.frames.bad_size += 1
            return problem
        send_ns, sid = self.frames.check(data, 0, _tone_tail)
        self.frames.sample(send_ns, recv_ns, sid)
        return problem

    def collect(self) -> dict[str, Any]:
        drives = [
            {
                "task_id": d.task_id,
                "drive_id": d.drive_id,
                "sha256": d.sha256,
                "bytes": d.bytes_received,
                "underruns": d.underruns,
                "violations": list(d.violations),
                "stopped": d.stopped,
                "status": d.status,
            }
            for d in self.drives.values()
            if d.kind == "ws" and d.begun  # not the drive prepared for a next turn
        ]
        return self.frames.as_dict() | {
            "drives": drives,
            "open_tasks": len(self.open_tasks()),
            "callbacks": dict(self.callback_stats),
            "rejected": {str(k): v for k, v in self.rejected.items()},
        }


_RECV_NS: contextvars.ContextVar[int] = contextvars.ContextVar("bench_recv_ns", default=0)
"""Receive time of the frame being handled (per aiohttp handler task, so frames of other
sockets handled meanwhile cannot overwrite it)."""


class BenchTencentEmulator(TencentEmulator):
    """The real Tencent emulator plus a per-packet latency and per-chunk integrity recorder.

    Protocol checks (signature, pacing policer, sizes, switching...) are the emulator's own
    and all stay on. ``max_concurrency`` (open sessions before 100008) is the only limit the
    bench sets, to ``None``; the emulator's default is ``None`` too.
    """

    def __init__(self, *, max_concurrency: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_concurrency = max_concurrency
        self.reset_samples()

    def reset_samples(self) -> None:
        self.frames = FrameRecorder()
        self.short_packets = 0
        # Forget the closed sessions of earlier phases and their drives (the PCM they hold).
        for session_id, session in list(self.sessions.items()):
            self._refresh(session)
            if not session.open:
                for req_id in session.drives:
                    self.records.pop(req_id, None)
                    self._plays.pop(req_id, None)
                del self.sessions[session_id]
        self.commands.clear()
        self.rest_calls.clear()

    async def _on_frame(self, session: Any, connection: int, raw: str) -> None:
        _RECV_NS.set(time.monotonic_ns())
        await super()._on_frame(session, connection, raw)

    async def _send_audio(
        self, session: Any, command: Any, data: dict[str, Any], connection: int
    ) -> None:
        audio = data.get("Audio")
        if isinstance(audio, str) and audio and not data.get("Interrupt"):
            record = self.records.get(command.req_id)
            if record is None or data.get("Seq") not in record.seen_seqs:
                self._sample(_RECV_NS.get(), audio)
        await super()._send_audio(session, command, data, connection)

    def _sample(self, recv_ns: int, audio: str) -> None:
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.frames.bad_payload += 1
            return
        size = len(pcm)
        if size % CHUNK_BYTES or size > PACKET_BYTES:
            self.frames.bad_size += 1
            return
        view = memoryview(pcm)
        send_ns = sid = 0
        for offset in range(0, size, CHUNK_BYTES):
            send_ns, sid = self.frames.check(view, offset, speech_tail)
        if size < PACKET_BYTES:
            self.short_packets += 1  # the remainder of a turn: not a latency sample
            return
        self.frames.sample(send_ns, recv_ns, sid)

    def collect(self) -> dict[str, Any]:
        drives = []
        for record in self.records.values():
            if record.kind != "audio":
                continue
            drives.append(
                {
                    "task_id": record.session_id,
                    "req_id": record.req_id,
                    "sha256": record.sha256 if record.packets else "",
                    "bytes": record.audio_bytes,
                    "packets": len(record.packets),
                    "final": record.final,
                    "final_type": record.final_type,
                    "auto_finalized": record.auto_finalized,
                    "duplicates": record.duplicates,
                    "missing": len(record.missing_seqs),
                    "errors": list(record.errors),
                    "pacing_violations": len(record.pacing_violations),
                    "size_violations": len(record.size_violations),
                    "underruns": len(record.underruns),
                    "min_window_ratio": record.min_window_ratio,
                }
            )
        sessions = {
            s.session_id: {
                "switch": len(s.switch_violations),
                "text_spacing": len(s.text_spacing_violations),
                "ineffective_interrupt": len(s.ineffective_interrupts),
                "refused_connects": len(s.refused_connects),
                "channel_connects": s.channel_connects,
            }
            for s in self.sessions.values()
        }
        outcomes: dict[str, int] = {}
        for command in self.commands:
            if command.outcome != "ok":
                key = command.outcome.split(":")[0][:40]
                outcomes[key] = outcomes.get(key, 0) + 1
        return {
            **self.frames.as_dict(),
            "short_packets": self.short_packets,
            "drives": drives,
            "sessions": sessions,
            "open_tasks": len(self.open_sessions()),
            "command_outcomes": outcomes,
        }


async def _main(conn: Connection, config: dict[str, Any]) -> None:
    gc_pauses = GcPauses()
    config = dict(config)
    vendor = config.pop("vendor", "zegocloud")
    config.pop("event_loop", None)
    emulator: BenchZegoEmulator | BenchTencentEmulator
    if vendor == "tencent":
        emulator = BenchTencentEmulator(**config)
        await emulator.start()
        rest_url = emulator.base_url
    else:
        emulator = BenchZegoEmulator(**config)
        await emulator.start()
        rest_url = emulator.rest.base_url
    # Harness hygiene: move the start-up heap out of the collector's way, so a full
    # collection does not stall the emulator for tens of ms mid-window (both paths alike).
    gc.collect()
    gc.freeze()
    commands = commands_from(conn)
    conn.send({"rest_url": rest_url, "pid": os.getpid()})
    try:
        while True:
            command = await commands.get()
            name = command[0]
            if name == "stop":
                break
            if name == "reset":
                emulator.reset_samples()
                # Harness hygiene: no collector pauses inside a phase (both paths alike);
                # garbage of the phase is collected when it is collected.
                gc.collect()
                gc.freeze()
                gc.disable()
                reply: Any = True
            elif name == "callbacks":
                if isinstance(emulator, BenchZegoEmulator):
                    emulator.callback_url = command[1]
                reply = True
            elif name == "collect":
                gc.enable()
                reply = emulator.collect() | {"gc": gc_pauses.take()}
            else:
                reply = {"error": f"unknown command {name!r}"}
            # uvloop's add_reader leaves the pipe non-blocking; a large reply (``collect``)
            # must not fail with EAGAIN half-way.
            os.set_blocking(conn.fileno(), True)
            conn.send(reply)
    finally:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(conn.fileno())
        await emulator.stop()
        with contextlib.suppress(Exception):
            conn.send(True)


def serve(conn: Connection, config: dict[str, Any]) -> None:
    """Process entry point: run the emulator until the pipe says ``stop`` or closes.

    ``config["event_loop"]`` is ``"asyncio"`` (default) or ``"uvloop"``.
    """
    loop_factory = None
    if config.get("event_loop") == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_main(conn, config))
