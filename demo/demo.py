"""`make demo`: the gateway in sandbox mode driving real speech through every vendor.

1. Synthesises an English sentence with espeak-ng (the committed demo/speech.wav, made with
   espeak-ng, is the fallback) and converts it to 16 kHz mono s16le.
2. Starts `avatar-gateway serve --sandbox` (in-process vendor emulators); or, with
   `--target HOST:PORT --emulator VENDOR=URL ...`, drives a gateway running elsewhere (the
   compose stack: `make demo-compose`) and reads each emulator's records over HTTP.
3. For every vendor the gateway offers: creates a session, streams the speech at real-time
   pace in 40 ms chunks (ZEGOCLOUD: into a 24 kHz session), sends end_turn, drives a text
   turn, interrupts a long turn, closes the session, and prints an event timeline with
   latencies and what the vendor emulator received per turn.

Exits 0 only if every vendor's emulator received the whole utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import soxr
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2, vendor_options_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = (
    "Hello, I am your avatar. The gateway streams my voice to the vendor in real time, "
    "and every word arrives intact."
)
RATE = 16000
CHUNK_MS = 40
DEFAULT_AVATARS = {
    "zegocloud": "zego_emma",
    "tencent": "sandbox-project",
    "akool": "dvp_Tristan_cloth2_1080P",
}


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthesise() -> tuple[bytes, str]:
    """Return (16 kHz mono s16le PCM, where it came from)."""
    source = "espeak-ng"
    wav_path = Path(tempfile.mkdtemp()) / "speech.wav"
    if shutil.which("espeak-ng"):
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav_path), SENTENCE], check=True
        )
    else:
        wav_path, source = ROOT / "demo" / "speech.wav", "demo/speech.wav (espeak-ng not installed)"
    with wave.open(str(wav_path), "rb") as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels == 2:
        samples = samples[0::2]
    pcm = soxr.resample(samples, rate, RATE).astype("<i2").tobytes()
    return pcm, source


class Timeline:
    """Prints events with the time since the demo step started."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.t0 = time.monotonic()

    def say(self, what: str) -> None:
        """Print one line of the timeline."""
        print(f"  [{self.vendor:9}] +{time.monotonic() - self.t0:7.3f}s  {what}", flush=True)

    def event(self, response: pb.DriveResponse) -> None:
        """Print a Drive response."""
        kind = response.WhichOneof("response")
        if kind == "started":
            fmt = response.started.vendor_audio_format
            self.say(f"drive started: vendor receives {fmt.sample_rate_hertz} Hz mono")
        elif kind == "speech_started":
            ev = response.speech_started
            self.say(
                f"speech_started   turn {ev.turn_id}  latency {ev.latency.ToMilliseconds()} ms"
            )
        elif kind == "speech_ended":
            ev = response.speech_ended
            played = ev.played_duration.ToMilliseconds()
            cut = "  (interrupted)" if ev.interrupted else ""
            self.say(f"speech_ended     turn {ev.turn_id}  played {played} ms{cut}")
        elif kind == "interrupted":
            ev = response.interrupted
            self.say(
                f"interrupted      turn {ev.turn_id}  ack in {ev.latency.ToMilliseconds()} ms "
                f"({'vendor' if ev.vendor_acknowledged else 'synthesised'})"
            )
        elif kind == "transcript":
            self.say(
                f"transcript       turn {response.transcript.turn_id}: {response.transcript.text!r}"
            )
        elif kind == "warning":
            self.say(f"warning          {response.warning.reason}: {response.warning.message}")
        elif kind == "turn_failed":
            failed = response.turn_failed
            self.say(f"turn_failed      turn {failed.turn_id}: {failed.reason}")
        else:
            self.say(kind or "?")


async def drive(
    stub: pb_grpc.AvatarGatewayStub, session: str, pcm: bytes, timeline: Timeline
) -> list[pb.DriveResponse]:
    """One Drive stream: audio turn, text turn, long turn interrupted after 1.5 s."""
    responses: list[pb.DriveResponse] = []
    ended: dict[str, asyncio.Event] = {}
    interrupted = asyncio.Event()

    def wait_end(turn: str) -> asyncio.Event:
        return ended.setdefault(turn, asyncio.Event())

    async def requests() -> AsyncIterator[pb.DriveRequest]:
        fmt = media_pb2.AudioFormat(
            audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=RATE,
            audio_channel_count=1,
        )
        yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=fmt))
        step = RATE * 2 * CHUNK_MS // 1000
        timeline.say(
            f"turn 1: streaming {len(pcm) / 2 / RATE:.2f} s of speech in {CHUNK_MS} ms chunks"
        )
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            yield pb.DriveRequest(audio=pcm[i : i + step])
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()))
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        timeline.say("turn 1: end_turn sent")
        await asyncio.wait_for(wait_end("1").wait(), 30)
        timeline.say("turn 2: text")
        yield pb.DriveRequest(
            text=pb.TextInput(text="This sentence is spoken by the vendor's own voice.", final=True)
        )
        await asyncio.wait_for(wait_end("2").wait(), 30)
        timeline.say("turn 3: long speech, interrupted after 1.5 s")
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            if time.monotonic() - start >= 1.5:
                break
            yield pb.DriveRequest(audio=pcm[i : i + step])
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()))
        yield pb.DriveRequest(interrupt=pb.Interrupt())
        await asyncio.wait_for(interrupted.wait(), 10)
        timeline.say("half-close")

    call = stub.Drive(requests(), timeout=120)
    async for response in call:
        responses.append(response)
        timeline.event(response)
        kind = response.WhichOneof("response")
        if kind == "speech_ended":
            wait_end(response.speech_ended.turn_id).set()
        elif kind == "turn_failed":
            wait_end(response.turn_failed.turn_id).set()
        elif kind == "interrupted":
            interrupted.set()
    return responses


def emulator_urls(ops_url: str) -> dict[str, str]:
    """The in-process sandbox's emulator admin URLs by vendor (the gateway's ``/sandbox``)."""
    with urllib.request.urlopen(f"{ops_url}/sandbox", timeout=5) as r:
        urls: dict[str, str] = json.load(r)
    return urls


def emulator_state(admin_url: str) -> dict[str, Any]:
    """What a vendor's emulator received: its ``/_emulator/state`` records."""
    with urllib.request.urlopen(f"{admin_url.rstrip('/')}/_emulator/state", timeout=5) as r:
        state: dict[str, Any] = json.load(r)
    return state


def report_received(vendor: str, state: dict[str, Any], session: pb.Session, pcm: bytes) -> bool:
    """Print what the emulator received per turn; True if the whole utterance arrived.

    ZEGOCLOUD receives the speech resampled to 24 kHz, so its duration is compared (within
    30 ms); Akool and Tencent receive it unchanged at 16 kHz, so its SHA-256 must match (and
    Tencent's paced packets must show no pacing violation).
    """
    sent_s = len(pcm) / 2 / RATE
    if vendor == "zegocloud":
        drives = [d for d in state["drives"].values() if d["task_id"] == session.vendor_session_id]
        drives.sort(key=lambda d: d.get("start_time") or 0)
        for n, d in enumerate(drives, 1):
            what = (
                f"{d['duration_s']:.3f} s of audio at {d['sample_rate']} Hz"
                if d["kind"] == "ws"
                else f"text {d['text']!r}"
            )
            cut = "  (interrupted)" if d.get("interrupted") else ""
            print(f"    vendor drive {n}: {what}{cut}")
        audio = [d for d in drives if d["kind"] == "ws"]
        return bool(audio) and abs(audio[0]["duration_s"] - sent_s) <= 0.03
    if vendor == "akool":
        record = state["sessions"][session.vendor_session_id]
        for n, t in enumerate(record["audio_turns"], 1):
            cut = "  (interrupted)" if t.get("interrupted") else ""
            print(
                f"    vendor audio stream {n}: {t['duration_s']:.3f} s at {t['sample_rate']} Hz, "
                f"played {t['played_s']:.3f} s{cut}"
            )
        for t in record["text_turns"]:
            print(f"    vendor chat message: {t['text']!r} in {t['parts']} part(s)")
        if record["violations"]:
            print(f"    data-channel violations: {record['violations']}")
        audio = record["audio_turns"]
        return bool(audio) and audio[0]["sha256"] == hashlib.sha256(pcm).hexdigest()
    if vendor == "tencent":
        drives = [d for d in state["drives"] if d["sessionId"] == session.vendor_session_id]
        for n, d in enumerate(drives, 1):
            if d["kind"] == "audio":
                what = (
                    f"{d['durationS']:.3f} s of audio in {d['packets']} SEND_AUDIO packets, "
                    f"pacing violations {len(d['pacingViolations'])}"
                )
            else:
                what = f"{d['kind']} ({d['textBytes']} bytes)"
            cut = "  (interrupted)" if d.get("interrupted") else ""
            print(f"    vendor drive {n}: {what}{cut}")
        audio = [d for d in drives if d["kind"] == "audio"]
        return (
            bool(audio)
            and audio[0]["sha256"] == hashlib.sha256(pcm).hexdigest()
            and not audio[0]["pacingViolations"]
        )
    raise ValueError(f"the demo does not know how to read the {vendor} emulator")


async def run_vendor(
    stub: pb_grpc.AvatarGatewayStub, admin_url: str, vendor: str, pcm: bytes
) -> bool:
    """Create, drive (speech, text, interrupt), close; True if the vendor got the utterance."""
    timeline = Timeline(vendor)
    avatars = await stub.ListAvatars(
        pb.ListAvatarsRequest(parent=f"vendors/{vendor}", page_size=5), timeout=10
    )
    avatar = avatars.avatars[0].avatar_id if avatars.avatars else DEFAULT_AVATARS.get(vendor, "")
    req = pb.CreateSessionRequest(vendor=vendor, avatar_id=avatar, request_id=os.urandom(8).hex())
    if vendor == "zegocloud":
        req.zegocloud.CopyFrom(vendor_options_pb2.ZegocloudOptions(sample_rate_hertz=24000))
    t = time.monotonic()
    session = await stub.CreateSession(req, timeout=60)
    timeline.say(
        f"session {session.name} {pb.SessionState.Name(session.state)} in "
        f"{(time.monotonic() - t) * 1000:.0f} ms (avatar {avatar})"
    )
    try:
        await drive(stub, session.name, pcm, timeline)
    finally:
        closed = await stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=30)
        state = pb.SessionState.Name(closed.state)
        timeline.say(f"session closed: {state} ({pb.CloseReason.Name(closed.close_reason)})")
    ok = report_received(vendor, emulator_state(admin_url), session, pcm)
    print(f"  [{vendor:9}] whole utterance received by the vendor: {'yes' if ok else 'NO'}")
    return ok


async def wait_serving(channel: grpc.aio.Channel, alive: Callable[[], bool]) -> bool:
    """Wait up to 120 s for gRPC health SERVING while ``alive()``; False if it never came."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and alive():
        try:
            r = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)
    return False


async def run_all(target: str, admin_urls: Callable[[], dict[str, str]], pcm: bytes) -> bool:
    """Every vendor the gateway at ``target`` offers, one after the other; True if all ok."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AvatarGatewayStub(channel)
        vendors = (await stub.ListVendors(pb.ListVendorsRequest(), timeout=10)).vendors
        print(f"gateway ready on {target}; vendors: {', '.join(v.vendor for v in vendors)}")
        urls = admin_urls()
        results = {}
        for vendor in vendors:
            print(f"\n== {vendor.display_name} ({'sandbox' if vendor.sandbox else 'live'})")
            if vendor.vendor not in urls:
                print(f"  [{vendor.vendor:9}] FAILED: no emulator records URL for this vendor")
                results[vendor.vendor] = False
                continue
            try:
                results[vendor.vendor] = await run_vendor(
                    stub, urls[vendor.vendor], vendor.vendor, pcm
                )
            except grpc.aio.AioRpcError as exc:
                print(f"  [{vendor.vendor:9}] FAILED: {exc.code().name} {exc.details()}")
                results[vendor.vendor] = False
    print("\nsummary: " + ", ".join(f"{v}={'ok' if ok else 'FAILED'}" for v, ok in results.items()))
    return bool(results) and all(results.values())


async def sandbox_demo(pcm: bytes) -> int:
    """Start `avatar-gateway serve --sandbox` here, drive it, SIGTERM it."""
    port, ops = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        AVATAR_GATEWAY_LISTEN=f"127.0.0.1:{port}",
        AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{ops}",
        # The emulators post ZEGOCLOUD's callbacks here; a free port, not the default 8080.
        AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{free_port()}",
        AVATAR_GATEWAY_LOG_LEVEL="warning",
        AVATAR_GATEWAY_LOG_FORMAT="console",
    )
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--sandbox", cwd=ROOT, env=env
    )
    ok = False
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            if not await wait_serving(channel, lambda: gateway.returncode is None):
                print("gateway did not become ready", file=sys.stderr)
                return 1
        ok = await run_all(
            f"127.0.0.1:{port}", lambda: emulator_urls(f"http://127.0.0.1:{ops}"), pcm
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(gateway.wait(), 30)
        print(f"\ngateway exited with {code} after SIGTERM")
    return 0 if ok and code == 0 else 1


async def target_demo(target: str, emulators: dict[str, str], pcm: bytes) -> int:
    """Drive a gateway that runs elsewhere (e.g. the compose stack) against its emulators."""
    async with grpc.aio.insecure_channel(target) as channel:
        if not await wait_serving(channel, lambda: True):
            print(f"gateway at {target} did not become ready", file=sys.stderr)
            return 1
    return 0 if await run_all(target, lambda: emulators, pcm) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``--target HOST:PORT`` with ``--emulator VENDOR=URL`` per vendor, or nothing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", help="drive the gateway at HOST:PORT instead of starting a sandbox one"
    )
    parser.add_argument(
        "--emulator",
        action="append",
        default=[],
        metavar="VENDOR=URL",
        help="with --target: base URL of a vendor emulator (its /_emulator/state records)",
    )
    args = parser.parse_args(argv)
    pairs = [item.partition("=") for item in args.emulator]
    if any(not sep or not url for _, sep, url in pairs):
        parser.error("--emulator takes VENDOR=URL")
    if pairs and not args.target:
        parser.error("--emulator needs --target")
    args.emulators = {vendor: url for vendor, _, url in pairs}
    return args


async def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every vendor received the whole utterance."""
    args = parse_args(argv)
    pcm, source = synthesise()
    print(f"speech: {len(pcm) / 2 / RATE:.2f} s from {source}, 16 kHz mono s16le")
    if args.target:
        return await target_demo(args.target, args.emulators, pcm)
    return await sandbox_demo(pcm)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
