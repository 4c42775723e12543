"""Shared machinery for the vendor emulators: an aiohttp server, fault injection, records.

Every emulator is a real HTTP (and WebSocket) server on loopback that speaks one vendor's
documented protocol. This module holds what they have in common so each vendor module stays
about its protocol:

* :class:`EmulatorServer` runs an :class:`aiohttp.web.Application` on ``127.0.0.1:<port>``
  (port 0 picks a free one; a standalone emulator binds what ``avatar-gateway emulate
  --listen`` says), optionally over TLS with a self-signed certificate made by
  ``trustme`` (vendors such as ZEGOCLOUD serve their drive socket as ``wss://`` with a
  certificate clients are told not to verify). Every URL an emulator hands out is built from
  :attr:`EmulatorServer.base_url`, i.e. from its public URL when it has one.
* :class:`FaultPlan` is the fault-injection hook tests use: fail the next N calls of an
  operation with a vendor error code, stall them, or drop sockets.
* ``GET /_emulator/state`` on every emulator returns :meth:`EmulatorServer.snapshot` as JSON,
  so a process that did not start the emulator (``make demo``) can read what it received.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trustme
from aiohttp import web


@dataclass
class Fault:
    """One injected fault for an operation.

    Attributes:
        code: vendor business error code to answer with, or ``None`` for no error.
        stall_s: seconds to wait before answering (a vendor that is slow or hangs).
        http_status: HTTP status to answer with instead of the normal 200 (e.g. 503).
        remaining: how many more calls this fault applies to.
    """

    code: int | None = None
    stall_s: float = 0.0
    http_status: int | None = None
    remaining: int = 1


@dataclass
class FaultPlan:
    """Faults queued per operation name (a ZEGO ``Action``, a Tencent path, an Akool path).

    Tests call :meth:`fail_next` / :meth:`stall_next`; the emulator calls :meth:`take` once per
    request and applies what it gets. ``injected`` counts every fault applied, for reports.
    """

    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    injected: int = 0

    def fail_next(
        self,
        operation: str,
        code: int | None = None,
        *,
        count: int = 1,
        http_status: int | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``operation`` with ``code`` or ``http_status``."""
        self._faults.setdefault(operation, []).append(
            Fault(code=code, http_status=http_status, remaining=count)
        )

    def stall_next(self, operation: str, seconds: float, *, count: int = 1) -> None:
        """Delay the next ``count`` calls of ``operation`` by ``seconds`` before answering."""
        self._faults.setdefault(operation, []).append(Fault(stall_s=seconds, remaining=count))

    def take(self, operation: str) -> Fault | None:
        """Consume and return the fault for one call of ``operation``, if any is queued."""
        queue = self._faults.get(operation)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        self.injected += 1
        return fault

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()


def self_signed_server_context(hostname: str = "127.0.0.1") -> ssl.SSLContext:
    """Return a server TLS context with a fresh self-signed certificate for ``hostname``.

    The certificate is issued by a throw-away ``trustme`` CA that no client trusts, which is
    the point: clients of such a vendor socket must skip verification, as the vendor says.
    """
    ca = trustme.CA()
    cert = ca.issue_cert(hostname, "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


# A server bound to every interface is reached on loopback unless told its public URL.
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}


class EmulatorServer:
    """An aiohttp application on loopback with the ``/_emulator/state`` admin endpoint.

    Subclasses add their routes in :meth:`build_routes` and describe their state in
    :meth:`snapshot`. ``start()`` binds (port 0 = any free port) and ``stop()`` closes every
    socket, including open WebSockets, so tests can tear an emulator down mid-stream.

    Args:
        host: address to bind (``0.0.0.0`` in a container).
        port: port to bind; 0 picks a free one.
        tls: serve https/wss with a fresh self-signed certificate.
        public_url: ``http(s)://host:port`` clients reach the server by (behind a container
            port mapping or a service name), or ``None`` for the bound address (a wildcard
            address is then reached on loopback).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        public_url: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.public_url = public_url.rstrip("/") if public_url else None
        self.faults = FaultPlan()
        self._runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None
        self._websockets: set[web.WebSocketResponse] = set()

    def build_routes(self, app: web.Application) -> None:
        """Add the vendor's routes to ``app``; subclasses override."""

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-serialisable view of what the emulator holds and received."""
        return {}

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` clients reach the running server by (no trailing slash).

        The public URL when one was given; else the bound address, where a wildcard address
        (which no client can dial) stands for loopback.
        """
        if self.public_url is not None:
            return self.public_url
        scheme = "https" if self.tls else "http"
        host = _WILDCARD_HOSTS.get(self.host, self.host)
        return f"{scheme}://{host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """``ws(s)://host:port`` of :attr:`base_url` (no trailing slash)."""
        return "ws" + self.base_url.removeprefix("http")

    async def start(self) -> None:
        """Bind and serve; afterwards :attr:`port` holds the real port."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/_emulator/state", self._state_handler)
        self.build_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        if self.tls:
            # The certificate names the host clients dial (a wildcard bind address is none).
            self._ssl = self_signed_server_context(urlsplit(self.base_url).hostname or self.host)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close every WebSocket (going away, not a fault) and the listener."""
        for ws in list(self._websockets):
            await ws.close(code=1001, message=b"emulator stopping")
        self._websockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def track_websocket(self, ws: web.WebSocketResponse) -> None:
        """Remember an open WebSocket so :meth:`drop_websockets` and :meth:`stop` can close it."""
        self._websockets.add(ws)

    def untrack_websocket(self, ws: web.WebSocketResponse) -> None:
        """Forget a WebSocket that has closed."""
        self._websockets.discard(ws)

    async def drop_websockets(
        self, predicate: Callable[[web.WebSocketResponse], bool] | None = None
    ) -> int:
        """Abruptly close open WebSockets (all, or those ``predicate`` selects); return how many.

        Used as the "drop the socket" fault: the close code is 1011 (server error), as a
        vendor restart would look to a client.
        """
        victims = [ws for ws in self._websockets if predicate is None or predicate(ws)]
        for ws in victims:
            await ws.close(code=1011, message=b"emulator dropped the socket")
            self._websockets.discard(ws)
        self.faults.injected += len(victims)
        return len(victims)

    async def apply_stall(self, fault: Fault | None) -> None:
        """Sleep for the fault's stall, if it has one."""
        if fault is not None and fault.stall_s > 0:
            await asyncio.sleep(fault.stall_s)

    async def _state_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
