"""What the Redis registry adds to CreateSession and to a Drive's start, against the in-memory one.

Processes, all on this machine, all in one run:

1. the ZEGOCLOUD emulator in its own process (``bench/emulator_proc.py``, as ``run_bench.py``
   starts it: task ready at once, its rate and concurrency limits raised so they never
   answer "too many"); it also timestamps every binary frame on its drive sockets;
2. one ``redis-server`` on a free loopback port, no persistence; in the census pass (below)
   every command is logged to its slowlog (``slowlog-log-slower-than 0``): that is how the
   commands of each call are counted, without MONITOR;
3. two gateways, ``python -m gateway serve`` (not sandbox) with real ZEGOCLOUD settings
   pointing at the emulator: ``memory`` (no ``AVATAR_GATEWAY_REDIS_URL``: in-memory registry
   and rate limits) and ``redis`` (``AVATAR_GATEWAY_REDIS_URL`` set: Redis registry, leases
   and the shared vendor rate limits, which that one setting turns on together);
4. this process, the client: gRPC to the gateways, and HTTP/WebSocket straight to the
   emulator for the ``direct`` baseline.

One *iteration* per path, timed on the client with ``time.monotonic_ns()``:

* ``memory`` and ``redis``: CreateSession (with a request_id) until it answers READY;
  Drive: the config request until the ``started`` response (the gateway makes no vendor call
  before ``started``: this is lease, adoption and attach); one 20 ms audio chunk, stamped with
  its send time, whose arrival the emulator records (the turn's id comes from the registry,
  then DriveByWsStream, the drive socket and Start); end_turn and half-close until the stream
  ends; CloseSession.
* ``direct``: the vendor calls a CreateSession makes (CreateDigitalHumanStreamTask, then
  GetDigitalHumanStreamTaskStatus until live), the drive socket as the adapter opens it
  (DriveByWsStream, ``wss://``, Start) and one chunk stamped when DriveByWsStream was sent,
  Stop, StopDigitalHumanStreamTask.

Sequential phase: one call at a time, iterations started at least ``--interval`` apart (the
gateway itself holds ZEGO's 10 calls per second per Action, and this bench must not measure
that queue). The paths take turns in ``--rounds`` blocks (order rotated each round), so a
burst of load from elsewhere on the machine hits all three alike; ``--rounds 1`` runs each
path's calls in one block. The first ``--warmup`` iterations of each path are discarded.
Concurrent phase (``--concurrency K``): bursts of K iterations at once per path, a burst
only after the path's previous one ended over a second ago (ZEGO's limit again). Latencies
in ms; "added by Redis" = redis percentile - memory percentile.

Census pass, after the timed phases (so that logging every command costs them nothing):
``--census-calls`` more sequential iterations per path with the slowlog on; between the
steps of an iteration the client reads and clears it: what each step made Redis do, the
top-level commands (round trips) and the commands scripts ran, named by script (SHA-1 of the
script texts in ``gateway/registry.py`` and ``gateway/ratelimit.py``).

Usage::

    .venv/bin/python bench/registry_bench.py                          # print only
    .venv/bin/python bench/registry_bench.py --out bench/RESULTS.md   # rewrite its block

Every loop is bounded; all traffic stays on 127.0.0.1; every process started here is
stopped on the way out, also after an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import redis
import redis.asyncio as aioredis
import websockets
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

from emulator_proc import SAMPLE_RATE, make_chunk  # noqa: E402
from results_md import write_block  # noqa: E402
from run_bench import (  # noqa: E402
    APP_ID,
    AVATAR,
    EmulatorProcess,
    GatewayProcess,
    cpu_seconds,
    emulator_config,
    free_port,
    machine_busy_seconds,
)

from adapters.zegocloud.api import ZegoApi  # noqa: E402
from gateway import ratelimit as ratelimit_module  # noqa: E402
from gateway import registry as registry_module  # noqa: E402

BEGIN, END = "<!-- BEGIN registry_bench -->", "<!-- END registry_bench -->"
HEADING = "## Registry cost: Redis vs in-memory (issue 12)"
PATHS = ("direct", "memory", "redis")
GATEWAYS = ("memory", "redis")
PROBE = "registry-bench-probe"
RATELIMIT = "EVALSHA ratelimit_"  # the label of the rate-limit scripts' round trips
RPC_TIMEOUT_S = 30.0
PROBE_COMMANDS = {"MULTI", "EXEC", "SLOWLOG", "INFO"}  # the probe's own, never the gateway's

# Operations, in report order: (key, label, paths that have it).
OPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("create_call", "CreateDigitalHumanStreamTask alone", ("direct",)),
    ("create", "CreateSession", PATHS),
    ("drive_start", "Drive start (config → `started`)", GATEWAYS),
    ("drive_open", "drive socket (DriveByWsStream, wss, Start)", ("direct",)),
    ("first_chunk", "first audio chunk at the vendor", PATHS),
    ("drive_end", "Drive end (end_turn, half-close → end)", GATEWAYS),
    ("close", "CloseSession", PATHS),
)
# Steps of a gateway iteration whose Redis commands are counted (the slowlog is read after
# each): the op whose latency covers the step, and how the step is named in the report.
CENSUS_STEPS: tuple[tuple[str, str], ...] = (
    ("create", "CreateSession"),
    ("drive_start", "Drive start (config → `started`)"),
    ("drive_rest", "rest of the Drive (one turn, end_turn, half-close)"),
    ("close", "CloseSession"),
)


def script_names() -> dict[str, str]:
    """SHA-1 of every Lua script of the registry and the rate limits -> a short name."""
    names: dict[str, str] = {}
    for module, prefix in ((registry_module, ""), (ratelimit_module, "ratelimit_")):
        for name, value in vars(module).items():
            if name.startswith("_") and isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = prefix + name.strip("_").lower()
    return names


def pct(values: list[float], q: float) -> float:
    """Percentile ``q`` (0-100) of ``values``, linear interpolation; NaN when empty."""
    return float(np.percentile(values, q)) if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    """Count, p50, p90, p99, max and mean of latencies (ms)."""
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": float(np.mean(values)) if values else float("nan"),
    }


# ---- processes -----------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence, its slowlog off until asked."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is required (make system-deps installs it)")
        self.version = (
            subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
            .stdout.split()[2]
            .removeprefix("v=")
        )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = (log_dir / "redis.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(log_dir),
                "--slowlog-log-slower-than",
                "-1",  # off until the census pass
                "--slowlog-max-len",
                "100000",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until it answers PING (at most ``timeout_s`` seconds)."""
        client = aioredis.Redis(port=self.port)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited at start")
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.ping()
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not ready in {timeout_s} s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@dataclass
class Census:
    """What Redis ran between two reads of its slowlog.

    Attributes:
        calls: top-level commands (one client round trip each; redis-py pipelines are not
            used on these paths), named ``EVALSHA <script>`` or ``<COMMAND> <key prefix>``.
        inner: commands run inside scripts.
        redis_us: Redis's execution time of the top-level commands (µs; a script's includes
            its inner commands).
    """

    calls: list[str] = field(default_factory=list)
    inner: int = 0
    redis_us: int = 0


class RedisProbe:
    """Reads and clears Redis's slowlog over its own, named connection."""

    def __init__(self, port: int) -> None:
        self.pool = aioredis.BlockingConnectionPool(
            host="127.0.0.1",
            port=port,
            max_connections=1,
            client_name=PROBE,
            decode_responses=True,
        )
        self.client = aioredis.Redis(connection_pool=self.pool)
        self.scripts = script_names()

    async def log_all(self, on: bool) -> None:
        """Log every command to the slowlog (``on``), or none."""
        await self.client.config_set("slowlog-log-slower-than", 0 if on else -1)

    async def take(self) -> Census:
        """The commands others ran since the last call (one MULTI/EXEC round trip)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.execute_command("SLOWLOG", "GET", "-1")
            pipe.execute_command("SLOWLOG", "RESET")
            entries, _ = await pipe.execute()
        census = Census()
        # Entries: [id, unix time, duration µs, argv, client address, client name], newest first.
        for entry in reversed(entries):
            duration, argv, address, name = int(entry[2]), entry[3], entry[4], entry[5]
            command = str(argv[0]).upper() if argv else "?"
            if name == PROBE or command in PROBE_COMMANDS:
                continue
            if address == "?:0":  # run by a script
                census.inner += 1
                continue
            census.calls.append(self._label(command, [str(a) for a in argv[1:]]))
            census.redis_us += duration
        return census

    def _label(self, command: str, args: list[str]) -> str:
        if command in ("EVALSHA", "EVAL") and args:
            sha = args[0] if command == "EVALSHA" else hashlib.sha1(args[0].encode()).hexdigest()
            return f"EVALSHA {self.scripts.get(sha, sha[:8])}"
        if command in ("SCRIPT", "CLIENT", "CONFIG") and args:
            return f"{command} {args[0].upper()}"
        if args and args[0].startswith("ag:"):
            return f"{command} {':'.join(args[0].split(':')[:2])}"
        return command

    async def aclose(self) -> None:
        """Close its connection."""
        await self.client.aclose()
        await self.pool.disconnect()


# ---- the client ----------------------------------------------------------------------------


@dataclass
class Iteration:
    """One iteration of one path: latency per op (ms) and, sequential only, Redis per step."""

    path: str
    sid: int
    ms: dict[str, float] = field(default_factory=dict)
    census: dict[str, Census] = field(default_factory=dict)
    error: str = ""


class Bench:
    """Runs iterations of the three paths against one emulator, Redis and two gateways."""

    def __init__(
        self,
        args: argparse.Namespace,
        emulator: EmulatorProcess,
        gateways: dict[str, GatewayProcess],
        redis_server: RedisServer,
        secret: str,
    ) -> None:
        self.args = args
        self.emulator = emulator
        self.gateways = gateways
        self.redis_server = redis_server
        self.api = ZegoApi(APP_ID, secret, emulator.rest_url + "/", None, timeout_s=30)
        self.channels = {
            name: grpc.aio.insecure_channel(gw.target) for name, gw in gateways.items()
        }
        self.stubs = {name: pb_grpc.AvatarGatewayStub(ch) for name, ch in self.channels.items()}
        self.probe = RedisProbe(redis_server.port)
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE
        self.next_sid = 1
        self.sid_owner: dict[int, Iteration] = {}

    async def aclose(self) -> None:
        """Close the client's connections."""
        for channel in self.channels.values():
            await channel.close()
        await self.api.aclose()
        await self.probe.aclose()

    def _new(self, path: str) -> Iteration:
        it = Iteration(path, self.next_sid)
        self.sid_owner[it.sid] = it
        self.next_sid += 1
        return it

    async def _census(self, it: Iteration, step: str, counted: bool) -> None:
        if counted:
            it.census[step] = await self.probe.take()

    async def iteration(self, path: str, counted: bool) -> Iteration:
        """One iteration of ``path``; ``counted``: read the slowlog between its steps."""
        it = self._new(path)
        try:
            if path == "direct":
                await self._direct(it, counted)
            else:
                await self._gateway(it, counted)
        except Exception as exc:  # reported per iteration; the run goes on
            it.error = f"{type(exc).__name__}: {exc}"[:300]
        return it

    async def _gateway(self, it: Iteration, counted: bool) -> None:
        stub = self.stubs[it.path]
        await self._census(it, "before", counted)
        t0 = time.monotonic_ns()
        session = await stub.CreateSession(
            pb.CreateSessionRequest(
                vendor="zegocloud", avatar_id=AVATAR, request_id=str(uuid.uuid4())
            ),
            timeout=RPC_TIMEOUT_S,
        )
        it.ms["create"] = (time.monotonic_ns() - t0) / 1e6
        try:
            if session.state != pb.SESSION_STATE_READY:
                raise RuntimeError(f"session {pb.SessionState.Name(session.state)}")
            await self._census(it, "create", counted)
            fmt = media_pb2.AudioFormat(
                audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                audio_channel_count=1,
            )
            t0 = time.monotonic_ns()
            call = stub.Drive(timeout=RPC_TIMEOUT_S)
            await call.write(
                pb.DriveRequest(config=pb.DriveConfig(session=session.name, audio_format=fmt))
            )
            first = await call.read()
            it.ms["drive_start"] = (time.monotonic_ns() - t0) / 1e6
            if first is grpc.aio.EOF or first.WhichOneof("response") != "started":
                raise RuntimeError(f"no started response: {first}")
            await self._census(it, "drive_start", counted)
            await call.write(pb.DriveRequest(audio=make_chunk(time.monotonic_ns(), it.sid, 0)))
            t0 = time.monotonic_ns()
            await call.write(pb.DriveRequest(end_turn=pb.EndTurn()))
            await call.done_writing()
            for _ in range(1000):  # responses of one turn: a handful
                if await asyncio.wait_for(call.read(), RPC_TIMEOUT_S) is grpc.aio.EOF:
                    break
            it.ms["drive_end"] = (time.monotonic_ns() - t0) / 1e6
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise RuntimeError(f"Drive ended {code.name}: {await call.details()}")
            await self._census(it, "drive_rest", counted)
        finally:
            t0 = time.monotonic_ns()
            await stub.CloseSession(
                pb.CloseSessionRequest(name=session.name), timeout=RPC_TIMEOUT_S
            )
            it.ms["close"] = (time.monotonic_ns() - t0) / 1e6
            await self._census(it, "close", counted)

    async def _direct(self, it: Iteration, counted: bool) -> None:
        api = self.api
        await self._census(it, "before", counted)
        t0 = time.monotonic_ns()
        data = await api.call(
            "CreateDigitalHumanStreamTask",
            {
                "DigitalHumanConfig": {"DigitalHumanId": AVATAR},
                "RTCConfig": {"RoomId": f"rb-{it.sid}", "StreamId": f"rb_{it.sid}"},
                "TTL": 600,
                "MaxIdleTime": 300,
            },
        )
        it.ms["create_call"] = (time.monotonic_ns() - t0) / 1e6
        task_id = str(data["TaskId"])
        try:
            for _ in range(200):
                status = await api.call(
                    "GetDigitalHumanStreamTaskStatus", {"TaskId": task_id}, idempotent=True
                )
                if int(status.get("Status", 0)) == 3:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("task did not start streaming")
            it.ms["create"] = (time.monotonic_ns() - t0) / 1e6
            await self._census(it, "create", counted)
            t0 = time.monotonic_ns()
            drive = await api.call("DriveByWsStream", {"TaskId": task_id})
            drive_id = str(drive["DriveId"])
            async with websockets.connect(
                str(drive["WssAddress"]),
                ssl=self.tls,
                compression=None,
                open_timeout=10,
                max_queue=4,
            ) as ws:
                start = {"SampleRate": SAMPLE_RATE, "Channel": 1, "DriveId": drive_id}
                await ws.send(json.dumps({"Action": "Start", "Payload": start}))
                it.ms["drive_open"] = (time.monotonic_ns() - t0) / 1e6
                await ws.send(make_chunk(t0, it.sid, 0))
                await ws.send(json.dumps({"Action": "Stop", "Payload": {"DriveId": drive_id}}))
            await self._census(it, "drive_rest", counted)
        finally:
            t0 = time.monotonic_ns()
            await api.call("StopDigitalHumanStreamTask", {"TaskId": task_id}, idempotent=True)
            it.ms["close"] = (time.monotonic_ns() - t0) / 1e6
            await self._census(it, "close", counted)

    # ---- phases ----------------------------------------------------------------------------

    async def _block(self, path: str, run: Any) -> dict[str, float]:
        """Run ``run()`` with the emulator recording the first chunks' arrivals.

        Returns CPU seconds of each process over the block, ``others`` (CPU seconds of every
        other process on the machine) and ``wall`` (the block's length, s).
        """
        gw = self.gateways.get(path)
        await self.emulator.call("callbacks", gw.callback_url if gw else None)
        await self.emulator.call("reset")
        pids = {
            "gateway": gw.pid if gw else 0,
            "redis": self.redis_server.pid,
            "emulator": self.emulator.pid,
            "client": os.getpid(),
        }
        pids["other_gateway"] = next(
            (g.pid for name, g in self.gateways.items() if name != path), 0
        )
        gc.collect()
        gc.disable()  # harness hygiene: no collector pause of the client inside a block
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
        busy0, t0 = machine_busy_seconds(), time.monotonic()
        try:
            await run()
        finally:
            gc.enable()
        busy1, t1 = machine_busy_seconds(), time.monotonic()
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items() if p}
        frames = await self.emulator.call("collect")
        send, recv, sids = (array("q"), array("q"), array("q"))
        send.frombytes(frames["send"])
        recv.frombytes(frames["recv"])
        sids.frombytes(frames["sid"])
        for s, r, sid in zip(send, recv, sids, strict=True):
            owner = self.sid_owner.get(sid)
            if owner is not None and "first_chunk" not in owner.ms:
                owner.ms["first_chunk"] = (r - s) / 1e6
        others = max(0.0, (busy1 - busy0) - sum(cpu.values()))
        return cpu | {"others": others, "wall": t1 - t0}

    async def sequential(self, counts: dict[str, int], *, counted: bool) -> dict[str, Any]:
        """Each path's iterations, one at a time, the paths taking turns in rounds.

        A path's iterations start ``--interval`` seconds apart at the least. ``counted``: read
        the slowlog between the steps of each iteration (census pass).
        """
        args = self.args
        out: dict[str, Any] = {p: {"iterations": [], "cpu": Counter()} for p in PATHS}
        next_start = dict.fromkeys(PATHS, 0.0)
        rounds = max(1, min(args.rounds, *counts.values()))
        for r in range(rounds):
            order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
            for path in order:
                total = counts[path]
                n = total // rounds + (1 if r < total % rounds else 0)
                done: list[Iteration] = out[path]["iterations"]

                async def run(path: str = path, n: int = n, done: list[Iteration] = done) -> None:
                    for _ in range(n):
                        delay = next_start[path] - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        next_start[path] = time.monotonic() + args.interval
                        done.append(await self.iteration(path, counted=counted))

                out[path]["cpu"].update(await self._block(path, run))
        return out

    async def concurrent(self, k: int, bursts: int) -> dict[str, Any]:
        """``bursts`` bursts of ``k`` iterations at once per path, paths taking turns.

        A path's burst starts ``--burst-gap`` seconds after its previous one ended at the
        earliest, so that the gateway's vendor rate limiter (per Action, a sliding second)
        never has to wait.
        """
        out: dict[str, Any] = {p: {"iterations": [], "bursts": []} for p in PATHS}
        last_end = dict.fromkeys(PATHS, 0.0)
        for b in range(bursts):
            order = PATHS[b % len(PATHS) :] + PATHS[: b % len(PATHS)]
            for path in order:
                delay = last_end[path] + self.args.burst_gap - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                burst: list[Iteration] = []

                async def run(path: str = path, burst: list[Iteration] = burst) -> None:
                    burst.extend(
                        await asyncio.gather(
                            *(self.iteration(path, counted=False) for _ in range(k))
                        )
                    )

                await self._block(path, run)
                last_end[path] = time.monotonic()
                out[path]["iterations"].extend(burst)
                out[path]["bursts"].append(len(burst))
        return out


# ---- analysis ------------------------------------------------------------------------------


def latencies(iterations: list[Iteration], skip: int) -> dict[str, dict[str, float]]:
    """Latency summary (ms) per op over the iterations after the first ``skip``, failed ones
    left out."""
    kept = [it for it in iterations[skip:] if not it.error]
    ops = {op for it in kept for op in it.ms}
    return {op: summary([it.ms[op] for it in kept if op in it.ms]) for op in sorted(ops)}


def census_summary(iterations: list[Iteration], skip: int) -> dict[str, Any]:
    """Per counted step: round trips and inner commands (median, mean), Redis's time (µs,
    median) and the usual set of commands."""
    kept = [it for it in iterations[skip:] if not it.error]
    out: dict[str, Any] = {}
    for step, _ in CENSUS_STEPS:
        got = [it.census[step] for it in kept if step in it.census]
        if not got:
            continue
        mixes = Counter(tuple(sorted(c.calls)) for c in got)
        mix, seen = mixes.most_common(1)[0]
        out[step] = {
            "n": len(got),
            "round_trips_median": float(np.median([len(c.calls) for c in got])),
            "round_trips_mean": float(np.mean([len(c.calls) for c in got])),
            "ratelimit_median": float(
                np.median([sum(x.startswith(RATELIMIT) for x in c.calls) for c in got])
            ),
            "registry_median": float(
                np.median([sum(not x.startswith(RATELIMIT) for x in c.calls) for c in got])
            ),
            "inner_median": float(np.median([c.inner for c in got])),
            "redis_us_median": float(np.median([c.redis_us for c in got])),
            "usual_mix": dict(Counter(mix)),
            "usual_share": seen / len(got),
            "all_commands": dict(Counter(x for c in got for x in c.calls)),
        }
    return out


def analyse(
    seq: dict[str, Any],
    conc: dict[str, Any] | None,
    census: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Latency summaries and CPU per iteration by phase and path; Redis censuses by path."""
    result: dict[str, Any] = {"sequential": {}, "concurrent": {}, "census": {}}
    for path in PATHS:
        its: list[Iteration] = census[path]["iterations"]
        result["census"][path] = {
            "steps": census_summary(its, 0),
            "errors": [it.error for it in its if it.error][:5],
            "failed": sum(1 for it in its if it.error),
            "iterations": len(its),
            "wall_s": census[path]["cpu"]["wall"],
            # Every command Redis ran while this path's blocks ran, per step or between steps.
            "redis_commands": sum(len(c.calls) for it in its for c in it.census.values()),
        }
        its = seq[path]["iterations"]
        cpu: Counter[str] = seq[path]["cpu"]
        n = len(its)
        result["sequential"][path] = {
            "lat": latencies(its, args.warmup),
            "errors": [it.error for it in its if it.error][:5],
            "failed": sum(1 for it in its if it.error),
            "iterations": n,
            # CPU per iteration over all of them (warm-up included: /proc has no finer grain).
            "cpu_ms_per_iteration": {
                k: 1000 * cpu[k] / n
                for k in ("gateway", "redis", "emulator", "client", "other_gateway")
                if k in cpu and n
            },
            "others_cores": cpu["others"] / cpu["wall"] if cpu["wall"] else 0.0,
        }
        if conc is not None:
            its = conc[path]["iterations"]
            first_burst = conc[path]["bursts"][0] if conc[path]["bursts"] else 0
            result["concurrent"][path] = {
                "lat": latencies(its, first_burst),
                "errors": [it.error for it in its if it.error][:5],
                "failed": sum(1 for it in its if it.error),
                "iterations": len(its),
            }
    return result


# ---- report --------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """Milliseconds with two decimals (``-`` when missing)."""
    return "-" if x != x else f"{x:.2f}"


def fmt_signed(x: float) -> str:
    """A signed difference in ms with two decimals."""
    return "-" if x != x else f"{x:+.2f}"


def latency_table(phase: dict[str, Any]) -> list[str]:
    """Rows per op and path: calls, p50, p90, p99, max, mean (ms)."""
    lines = [
        "| operation | path | calls | p50 | p90 | p99 | max | mean |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op, label, paths in OPS:
        for path in paths:
            s = phase[path]["lat"].get(op)
            if s is None:
                continue
            lines.append(
                f"| {label} | {path} | {s['n']} | {fmt(s['p50'])} | {fmt(s['p90'])} | "
                f"{fmt(s['p99'])} | {fmt(s['max'])} | {fmt(s['mean'])} |"
            )
    return lines


def added_table(phase: dict[str, Any]) -> list[str]:
    """Redis - memory per percentile (ms), per gateway op."""
    lines = [
        "| operation | added p50 | added p90 | added p99 | added max | added mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op, label, paths in OPS:
        if "memory" not in paths:
            continue
        m, r = phase["memory"]["lat"].get(op), phase["redis"]["lat"].get(op)
        if m is None or r is None:
            continue
        added = (fmt_signed(r[q] - m[q]) for q in ("p50", "p90", "p99", "max", "mean"))
        lines.append(f"| {label} | " + " | ".join(added) + " |")
    return lines


def census_table(phase: dict[str, Any]) -> list[str]:
    """What Redis ran per step of a ``redis`` iteration: round trips, inner commands, time."""
    lines = [
        "| step | round trips: all (mean) | registry | rate limits | commands run by scripts "
        "| Redis µs | the step's commands (share of calls with exactly these) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    census = phase["redis"]["steps"]
    for step, label in CENSUS_STEPS:
        c = census.get(step)
        if c is None:
            continue
        mix = ", ".join(
            f"{cmd} ×{k}" if k > 1 else cmd for cmd, k in sorted(c["usual_mix"].items())
        )
        lines.append(
            f"| {label} | {c['round_trips_median']:g} ({c['round_trips_mean']:.2f}) | "
            f"{c['registry_median']:g} | {c['ratelimit_median']:g} | {c['inner_median']:g} | "
            f"{c['redis_us_median']:.0f} | {mix or 'none'} ({c['usual_share'] * 100:.0f}%) |"
        )
    return lines


def background_line(phase: dict[str, Any]) -> str:
    """Redis traffic while the ``memory`` and ``direct`` paths ran (the idle gateway's)."""
    quiet = [phase[p] for p in ("memory", "direct")]
    medians = {c["round_trips_median"] for q in quiet for c in q["steps"].values()}
    background = sum(q["redis_commands"] for q in quiet)
    wall = sum(q["wall_s"] for q in quiet)
    return (
        "The `memory` and `direct` paths made no Redis call (median round trips per step: "
        f"{', '.join(f'{m:g}' for m in sorted(medians)) or '-'}); what Redis ran while they ran "
        "was the idle `redis` gateway's background (replica lease renewal every TTL/3 = 3.3 s, "
        f"reaper every 5 s): {background} round trips in {wall:.0f} s "
        f"({background / wall if wall else 0:.2f}/s). The medians above leave such calls out."
    )


def cpu_lines(phase: dict[str, Any]) -> list[str]:
    """CPU per sequential iteration by process (ms) and the load of the rest of the machine."""
    lines = [
        "| path | gateway | redis-server | emulator | client | other processes (cores) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        c = phase[path]["cpu_ms_per_iteration"]
        lines.append(
            f"| {path} | {fmt(c.get('gateway', float('nan')))} | {fmt(c.get('redis', 0.0))} | "
            f"{fmt(c.get('emulator', 0.0))} | {fmt(c.get('client', 0.0))} | "
            f"{phase[path]['others_cores']:.2f} |"
        )
    return lines


def report(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """The markdown block (markers included)."""
    args = meta["args"]
    seq = result["sequential"]
    lines = [
        BEGIN,
        HEADING,
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}; machine: {meta['machine']}",
        f"- Versions: Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"redis-py {redis.__version__}, redis-server {meta['redis_version']}; gateways on "
        "their default event loop (uvloop), the client on uvloop.",
        f"- Sequential: {args['calls']} iterations per path after {args['warmup']} warm-up, "
        f"started ≥ {args['interval']:g} s apart, in {args['rounds']} rounds (paths take "
        "turns, order rotated per round). "
        + (
            f"Concurrent: {args['concurrency']} iterations at once, "
            f"{args['bursts']} bursts per path (the first one discarded)."
            if args["concurrency"]
            else "No concurrent phase."
        ),
        "",
        "Method: one ZEGOCLOUD emulator process (`bench/emulator_proc.py`, limits raised), "
        "one `redis-server` (no persistence), and two "
        "gateways (`python -m gateway serve`, not sandbox, real ZEGOCLOUD settings pointing "
        "at the emulator) that differ only in `AVATAR_GATEWAY_REDIS_URL`: `memory` (in-memory "
        "registry and rate limits) and `redis` (Redis registry, leases, and the shared vendor "
        "rate limits the same setting turns on). Both gateways run for the whole run; only "
        "one is called at a time. Per iteration the client times, with "
        "`time.monotonic_ns()`: CreateSession (with a request_id) until READY; a Drive from "
        "its config request to the `started` response (no vendor call happens before it); one "
        "20 ms chunk from its write to its arrival at the emulator (the turn id, "
        "DriveByWsStream, the drive socket and Start come first); end_turn + half-close until "
        "the stream ends; CloseSession. `direct` is the vendor work without the gateway: "
        "CreateSession = CreateDigitalHumanStreamTask + GetDigitalHumanStreamTaskStatus (the "
        "vendor calls one CreateSession makes); first chunk = from sending DriveByWsStream, "
        "through the `wss://` socket and Start, to the chunk's arrival; CloseSession = "
        "StopDigitalHumanStreamTask. All times in ms; added = redis − memory at the same "
        "percentile. Redis's commands are counted afterwards, in a census pass of "
        f"{args['census_calls']} more sequential iterations per path (not timed) with every "
        "command logged to Redis's slowlog, which the client reads and clears between the "
        "steps of each iteration: its top-level commands are the gateway's round trips.",
        "",
        "### One call at a time",
        "",
        *latency_table(seq),
        "",
        "Added by Redis (redis − memory, ms):",
        "",
        *added_table(seq),
        "",
        "What Redis ran per step of a `redis` iteration (census pass, medians): round trips "
        "are the top-level commands, split into the registry's (records, indexes, "
        "request_id, leases) and the shared rate limits' (two per vendor call: "
        "`ratelimit_acquire` before, `ratelimit_settle` after); Redis µs is Redis's own "
        "execution time of them (as the slowlog times them, its own logging of each inner "
        "command included). `EVALSHA x` is Lua script `_X` of `gateway/registry.py` or "
        "`gateway/ratelimit.py`; other commands are named with their key prefix. The first "
        "audio chunk's turn id (`renew_drive`) and its DriveByWsStream are in \"rest of the "
        'Drive".',
        "",
        *census_table(result["census"]),
        "",
        background_line(result["census"]),
        "",
        "CPU per iteration (ms, create + Drive + close, from /proc over each path's blocks) "
        "and the CPU other processes on the machine used meanwhile:",
        "",
        *cpu_lines(seq),
    ]
    conc = result["concurrent"]
    if conc:
        lines += [
            "",
            f"### {args['concurrency']} callers at once",
            "",
            *latency_table(conc),
            "",
            "Added by Redis (redis − memory, ms):",
            "",
            *added_table(conc),
        ]
    failures = {
        f"{phase} {path}": r["failed"]
        for phase, paths in result.items()
        for path, r in paths.items()
        if r["failed"]
    }
    lines += [
        "",
        f"Failed iterations: {failures or 'none'}; vendor tasks left open after the run: "
        f"{meta['open_tasks']}.",
        END,
    ]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, run the phases, stop everything; the result and its report."""
    secret = secrets.token_hex(16)
    callback_secret = secrets.token_hex(8)
    log_dir = Path(tempfile.mkdtemp(prefix="avatar-registry-bench-"))
    print(f"logs: {log_dir}", flush=True)
    emulator: EmulatorProcess | None = None
    redis_server: RedisServer | None = None
    gateways: dict[str, GatewayProcess] = {}
    bench: Bench | None = None
    try:
        emulator = EmulatorProcess(
            emulator_config("zegocloud", secret, callback_secret) | {"event_loop": "uvloop"}
        )
        redis_server = RedisServer(log_dir)
        await redis_server.wait_ready()
        for name in GATEWAYS:
            extra = {"AVATAR_GATEWAY_REDIS_URL": redis_server.url} if name == "redis" else {}
            gateways[name] = GatewayProcess(
                "zegocloud",
                emulator.rest_url,
                secret,
                callback_secret,
                log_dir,
                extra_env=extra,
                label=name,
            )
        for gw in gateways.values():
            await gw.wait_ready()
        bench = Bench(args, emulator, gateways, redis_server, secret)
        print(
            f"emulator pid {emulator.pid}, redis-server pid {redis_server.pid} "
            f"(port {redis_server.port}), gateways "
            + ", ".join(f"{k} pid {g.pid}" for k, g in gateways.items()),
            flush=True,
        )
        gc.collect()
        gc.freeze()
        started = time.monotonic()
        counts = dict.fromkeys(PATHS, args.calls + args.warmup)
        seq = await bench.sequential(counts, counted=False)
        print(f"sequential phase: {time.monotonic() - started:.0f} s", flush=True)
        conc = None
        if args.concurrency:
            started = time.monotonic()
            conc = await bench.concurrent(args.concurrency, args.bursts)
            print(f"concurrent phase: {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        await bench.probe.log_all(True)
        await bench.probe.take()  # forget what came before
        census = await bench.sequential(dict.fromkeys(PATHS, args.census_calls), counted=True)
        await bench.probe.log_all(False)
        print(f"census pass: {time.monotonic() - started:.0f} s", flush=True)
        open_tasks = (await emulator.call("collect"))["open_tasks"]
    finally:
        if bench is not None:
            await bench.aclose()
        for gw in gateways.values():
            gw.stop()
        if redis_server is not None:
            redis_server.stop()
        if emulator is not None:
            emulator.stop()
    result = analyse(seq, conc, census, args)
    meta = {
        "command": ".venv/bin/python bench/registry_bench.py " + " ".join(args.argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores (nproc), {platform.system()} {platform.release()}, "
        f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) "
        "at the end",
        "redis_version": redis_server.version,
        "open_tasks": open_tasks,
        "log_dir": str(log_dir),
        "args": {
            k: getattr(args, k)
            for k in (
                "calls",
                "warmup",
                "interval",
                "rounds",
                "concurrency",
                "bursts",
                "census_calls",
            )
        },
    }
    meta["command"] = meta["command"].strip()
    return {"meta": meta, "result": result, "report": report(result, meta)}


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="iterations per path, measured")
    parser.add_argument("--warmup", type=int, default=5, help="iterations per path, discarded")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.15,
        help="seconds between the starts of two sequential iterations of a path (the gateway "
        "holds ZEGO's 10 calls/s per Action; faster would measure its queue)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="blocks the paths take turns in")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="iterations at once in the concurrent phase (0: none; above 10 the gateway's "
        "own 10/s per Action limit queues the calls)",
    )
    parser.add_argument(
        "--bursts", type=int, default=0, help="bursts per path (default: fit --calls)"
    )
    parser.add_argument(
        "--burst-gap",
        type=float,
        default=1.05,
        help="seconds from the end of a path's burst to its next (ZEGO's 1 s window)",
    )
    parser.add_argument(
        "--census-calls",
        type=int,
        default=20,
        help="iterations per path of the census pass (slowlog on, not timed)",
    )
    parser.add_argument("--out", type=Path, help="rewrite the registry_bench block of this file")
    parser.add_argument("--json", type=Path, help="write the raw result here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if min(args.calls, args.census_calls) < 1 or min(args.warmup, args.concurrency) < 0:
        parser.error("--calls and --census-calls ≥ 1, --warmup and --concurrency ≥ 0")
    if args.interval < 0:
        parser.error("--interval ≥ 0")
    if args.concurrency and not args.bursts:
        args.bursts = 1 + -(-args.calls // args.concurrency)  # the first one is discarded
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out = runner.run(run(args))
    print()
    print(out["report"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if args.out:
        write_block(args.out, BEGIN, END, out["report"])
        print(f"\nrewrote the registry_bench block of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
