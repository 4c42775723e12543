"""``avatar-gateway serve --workers N`` (N > 1): one supervisor, N gateway worker processes.

Each worker is a whole gateway (``python -m gateway serve --worker-index i``): its own event
loop, its own replica id and leases in the shared registry (Redis), so a Drive for any
session works on any worker exactly as it does on any replica (docs/architecture.md §4.1, §4.5).
The workers bind the same gRPC and callbacks ports with ``SO_REUSEPORT``, and the kernel
spreads new connections over them (a connection, and every stream on it, stays with the
worker that accepted it).

The supervisor holds no sessions and runs no event loop of the data path. It:

- reserves the ports first (a socket bound with ``SO_REUSEPORT`` and never listening), so
  port 0 resolves to one port for every worker and a port in use fails before any worker
  starts;
- serves the pod's ops listener (``AVATAR_GATEWAY_OPS_LISTEN``) for the pod as one:
  ``/healthz`` is 200 only when every worker answers its own ``/healthz`` with 200 (503
  while any starts, drains, or is being restarted), ``/livez`` is 200 while the supervisor
  runs (it restarts dead workers itself), ``/metrics`` is every worker's exposition merged,
  each sample labelled ``worker="<i>"``. Workers serve their ops on private unix sockets in
  Linux's abstract namespace (reachable only from the pod's network namespace, no port
  numbers, no files left behind by a process killed hard);
- forwards SIGTERM/SIGINT to every worker, each of which drains as a single gateway does,
  and exits 0 once all exited 0;
- restarts a worker that exits unexpectedly after a backoff (1 s doubling to 30 s, back to
  1 s after a minute of service), logged at error; more than :data:`RESTART_LIMIT` exits
  within :data:`RESTART_WINDOW_S` stop the pod with exit code 1 (Kubernetes then restarts
  it and its restarts show). A worker that exits with the configuration error code (2)
  stops the pod with 2.

Why processes and not threads: one event loop per core is what scales the Python data
path, and a process per worker keeps each one a replica the registry already knows how to
share work between, with nothing new to lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings
from gateway.workers import WorkerCount, unix_socket_path

log = structlog.get_logger("gateway.supervisor")

EXIT_CONFIGURATION = 2
"""A worker's exit code for a configuration that leaves nothing to serve (gateway/cli.py)."""
RESTART_BACKOFF_S = 1.0
"""First wait before restarting a worker that died (s); doubles per death, up to the max."""
RESTART_BACKOFF_MAX_S = 30.0
"""Longest wait before restarting a worker (s)."""
STABLE_S = 60.0
"""A worker that served this long before dying is restarted after the first backoff again."""
RESTART_LIMIT = 5
"""Unexpected worker exits tolerated within :data:`RESTART_WINDOW_S`; one more stops the pod."""
RESTART_WINDOW_S = 300.0
"""Window of :data:`RESTART_LIMIT` (s)."""
PROBE_TIMEOUT_S = 2.0
"""Deadline of one request to a worker's private ops listener (s)."""
STOP_MARGIN_S = 30.0
"""After SIGTERM, a worker gets its shutdown grace plus this long before SIGKILL (s)."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def reserve_port(address: str) -> tuple[socket.socket, str]:
    """Bind ``address`` (``host:port``, port 0: any) with ``SO_REUSEPORT``, not listening.

    Returns:
        The bound socket (keep it open while the workers run: it holds the port, and a
        socket that never listens receives no connections) and ``host:port`` with the
        port resolved.

    Raises:
        OSError: the address cannot be bound (in use by a process of another user, or by
            one that did not set ``SO_REUSEPORT``; or not an address of this host).
    """
    host, port = _split(address)
    bare = host.strip("[]")
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock, f"{host}:{sock.getsockname()[1]}"


def merge_expositions(expositions: Iterable[tuple[str, str]]) -> bytes:
    """Prometheus text expositions of the workers as one, each sample labelled ``worker``.

    Args:
        expositions: ``(worker label, exposition text)`` pairs.

    Returns:
        One exposition (``text/plain; version=0.0.4``): each family once (the first worker's
        help and type), with every worker's samples.
    """
    families: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": worker}))

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


class Supervisor:
    """Runs ``count.count`` workers until SIGTERM/SIGINT (see the module docstring).

    Args:
        settings: the pod's settings (its listen addresses are the workers').
        count: how many workers, and why (the first log line says both).

    Attributes:
        command: how a worker is started, before ``--worker-index <i>`` (tests may run
            another program in its place).
    """

    def __init__(self, settings: Settings, count: WorkerCount) -> None:
        self.settings = settings
        self.command = [sys.executable, "-m", "gateway", "serve"]
        self.count = count.count
        self.reason = count.reason
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stopping = False
        self._deaths: deque[float] = deque()
        # Unique per supervisor: several pods (or tests) may share a network namespace.
        self._sockets_name = f"avatar-gateway-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._listen = settings.listen
        self._callbacks = settings.callbacks_listen
        self._ops_port = 0

    def ops_address(self, worker: int) -> str:
        """``worker``'s private ops listen address (``unix:@<name>``, abstract namespace)."""
        return f"unix:@{self._sockets_name}/worker-{worker}"

    def _env(self, worker: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AVATAR_GATEWAY_LISTEN=self._listen,
            AVATAR_GATEWAY_CALLBACKS_LISTEN=self._callbacks,
            AVATAR_GATEWAY_OPS_LISTEN=self.ops_address(worker),
            AVATAR_GATEWAY_WORKERS="1",
        )
        return env

    async def serve(self) -> int:
        """Reserve the ports, serve ops, run the workers until a signal, drain; exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        held: list[socket.socket] = []
        runner: web.AppRunner | None = None
        try:
            try:
                for attr in ("_listen", "_callbacks"):
                    sock, resolved = reserve_port(getattr(self, attr))
                    held.append(sock)
                    setattr(self, attr, resolved)
                runner = await self._serve_ops()
            except OSError as exc:
                log.error("gateway_not_started", reason=f"cannot bind: {exc}")
                return 1
            ops_host, _ = _split(self.settings.ops_listen)
            log.info(
                "workers_starting",
                workers=self.count,
                reason=self.reason,
                listen=self._listen,
                callbacks=self._callbacks,
                ops=f"http://{ops_host.strip('[]') or '127.0.0.1'}:{self._ops_port}",
                pid=os.getpid(),
            )
            tasks = [
                asyncio.create_task(self._run_worker(i), name=f"worker-{i}")
                for i in range(self.count)
            ]
            await self._stop.wait()
            await self._drain(tasks)
            log.info("workers_stopped", exit_code=self.exit_code)
            return self.exit_code
        finally:
            if runner is not None:
                await runner.cleanup()
            for sock in held:
                sock.close()

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self._stopping:
            log.info("workers_draining", signal=sig.name, grace_s=self.settings.shutdown_grace_s)
        self._stopping = True
        self._stop.set()

    def _fail(self, code: int) -> None:
        """Stop the pod with ``code`` (the first failure's code wins)."""
        if not self._stopping:
            self.exit_code = code
        self._stopping = True
        self._stop.set()

    async def _run_worker(self, worker: int) -> None:
        """Start ``worker``; restart it while it dies unexpectedly; return when stopping."""
        backoff = RESTART_BACKOFF_S
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *self.command, "--worker-index", str(worker), env=self._env(worker)
            )
            self.procs[worker] = proc
            if self._stopping:  # the drain began while it was being started
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            if self._stopping:
                return
            if code == EXIT_CONFIGURATION:
                log.error("worker_not_started", worker=worker, pid=proc.pid, returncode=code)
                self._fail(EXIT_CONFIGURATION)
                return
            now = time.monotonic()
            if now - started >= STABLE_S:
                backoff = RESTART_BACKOFF_S
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - RESTART_WINDOW_S:
                self._deaths.popleft()
            if len(self._deaths) > RESTART_LIMIT:
                log.error(
                    "workers_keep_dying",
                    worker=worker,
                    pid=proc.pid,
                    returncode=code,
                    exits=len(self._deaths),
                    window_s=RESTART_WINDOW_S,
                )
                self._fail(1)
                return
            log.error(
                "worker_exited",
                worker=worker,
                pid=proc.pid,
                returncode=code,
                served_s=round(now - started, 1),
                restart_in_s=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        """SIGTERM every live worker, wait for its drain (then SIGKILL), collect exit codes.

        A worker that the SIGTERM ended before it could install its handlers (still
        importing: nothing served, nothing to drain) counts as a clean exit.
        """
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        budget = self.settings.shutdown_grace_s + STOP_MARGIN_S
        deadline = time.monotonic() + budget
        for worker, proc in sorted(self.procs.items()):
            try:
                code = await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.error("worker_killed", worker=worker, pid=proc.pid, after_s=budget)
                proc.kill()
                code = await proc.wait()
            if code not in (0, -signal.SIGTERM) and self.exit_code == 0:
                self.exit_code = 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _get(self, worker: int, path: str) -> tuple[int, bytes] | None:
        """``GET path`` on ``worker``'s private ops listener; ``None`` if it does not answer."""
        # The supervisor runs on asyncio's own loop (run()): uvloop's client refuses
        # abstract socket names (EINVAL), though its server accepts them.
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=unix_socket_path(self.ops_address(worker))),
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
            ) as client:
                async with client.get(f"http://worker-{worker}{path}") as response:
                    return response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def _gather(self, path: str) -> list[tuple[int, bytes] | None]:
        return list(await asyncio.gather(*(self._get(i, path) for i in range(self.count))))

    async def _serve_ops(self) -> web.AppRunner:
        """Serve the pod's ops listener (module docstring); returns its runner."""

        async def healthz(_: web.Request) -> web.Response:
            if self._stopping:
                return web.json_response({"status": "draining"}, status=503)
            workers: dict[str, Any] = {}
            for i, answer in enumerate(await self._gather("/healthz")):
                status = "unreachable"
                if answer is not None:
                    with contextlib.suppress(ValueError):
                        status = str(_json(answer[1]).get("status", answer[0]))
                    if answer[0] != 200 and status == "ok":
                        status = str(answer[0])
                workers[str(i)] = status
            ready = all(s == "ok" for s in workers.values())
            overall = "ok" if ready else "starting"
            if any(s == "draining" for s in workers.values()):
                overall = "draining"
            return web.json_response(
                {"status": overall, "workers": workers}, status=200 if ready else 503
            )

        async def livez(_: web.Request) -> web.Response:
            running = {str(i): p.pid for i, p in sorted(self.procs.items()) if p.returncode is None}
            return web.json_response({"status": "alive", "workers": running})

        async def metrics(_: web.Request) -> web.Response:
            answers = await self._gather("/metrics")
            texts = [(str(i), a[1].decode()) for i, a in enumerate(answers) if a and a[0] == 200]
            body = await asyncio.get_running_loop().run_in_executor(None, merge_expositions, texts)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/livez", livez)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        host, port = _split(self.settings.ops_listen)
        site = web.TCPSite(runner, host.strip("[]") or None, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        server = site._server
        assert server is not None
        self._ops_port = int(getattr(server, "sockets", [])[0].getsockname()[1])
        return runner


def _json(body: bytes) -> dict[str, Any]:
    import json

    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def run(settings: Settings, count: WorkerCount) -> int:
    """Run the supervisor of ``count`` workers until SIGTERM/SIGINT; the exit code."""
    return asyncio.run(Supervisor(settings, count).serve())


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent (the supervisor) dies.

    ``prctl(PR_SET_PDEATHSIG)`` (Linux): a supervisor killed hard must not leave workers
    serving on the pod's ports with nothing to stop them. Elsewhere: no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1
