"""A small TCP fault proxy on loopback for tests (asyncio streams, no dependencies).

Sits between the gateway and a vendor emulator and injects network faults that the
emulators' own hooks cannot: latency, a blackhole (nothing forwarded, TCP backpressure
builds up), cut connections (RST), lost answers (the request reaches the vendor, the answer
never comes back), and a vendor that reads slowly (a bytes-per-second cap on what the
proxy reads from the gateway). It is protocol-agnostic, so TLS (ZEGO's ``wss://``) and
WebSockets pass through unchanged.

Every change applies at once to open connections too. Each connection is two pumps
(client → upstream, upstream → client); a pump reads at most ``chunk_bytes`` at a time and
its reader's buffer is small, so when a pump does not read the kernel buffers fill and the
sender is pushed back, as with a real slow peer. Latency is added per forwarded chunk, so
it also caps a direction's throughput at ``chunk_bytes / latency_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field

UP, DOWN = "up", "down"
"""Directions: ``up`` is client → upstream (what the vendor reads), ``down`` the answers."""


@dataclass
class ProxyStats:
    """What went through the proxy."""

    connections: int = 0
    open_connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cut_connections: int = 0
    lost_answers: int = 0
    faults: int = 0
    """Fault actions taken (cuts, lost answers, blackholes, rate limits set)."""


@dataclass(eq=False)
class _Conn:
    client_w: asyncio.StreamWriter
    upstream_w: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` with injectable faults.

    Args:
        upstream_host: where to forward.
        upstream_port: where to forward.
        chunk_bytes: most bytes a pump reads at once (small: rate limits stay smooth).
        sock_buffer_bytes: SO_RCVBUF / SO_SNDBUF of the proxy's own sockets (small, so a
            pump that stops reading pushes back on the sender quickly).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        chunk_bytes: int = 4096,
        sock_buffer_bytes: int = 16384,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.chunk_bytes = chunk_bytes
        self.sock_buffer_bytes = sock_buffer_bytes
        self.latency_s = 0.0
        self.rate_bytes_per_s: dict[str, float | None] = {UP: None, DOWN: None}
        self.stats = ProxyStats()
        self._flowing = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        for event in self._flowing.values():
            event.set()
        self._lose_answers = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self.port = 0

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free loopback port (:attr:`port`)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=self.chunk_bytes
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        self.release()
        if self._server is not None:
            self._server.close()
        await self.cut(count_as_fault=False)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    # ---- faults -------------------------------------------------------------------------

    def blackhole(self, direction: str | None = None) -> None:
        """Stop forwarding (one direction, or both); sockets stay open and buffers fill.

        ``blackhole(DOWN)`` is a client that stops reading: nothing reaches it any more,
        while what it sends still flows until the peer's flow control stops it.
        """
        for key in (UP, DOWN) if direction is None else (direction,):
            self._flowing[key].clear()
        self.stats.faults += 1

    def release(self, direction: str | None = None) -> None:
        """End a blackhole: everything held flows on, in order."""
        for key in (UP, DOWN) if direction is None else (direction,):
            self._flowing[key].set()

    def set_rate(self, direction: str, bytes_per_s: float | None) -> None:
        """Cap what the proxy reads in ``direction`` (``UP``: a vendor that reads slowly)."""
        self.rate_bytes_per_s[direction] = bytes_per_s
        if bytes_per_s is not None:
            self.stats.faults += 1

    def lose_next_answers(self, count: int = 1) -> None:
        """The next ``count`` answers from upstream are dropped and their connection cut.

        The request has reached the vendor (it acted on it); the caller sees a connection
        reset instead of the answer: the "lost answer" of a non-idempotent call.
        """
        self._lose_answers += count

    async def cut(self, *, count_as_fault: bool = True) -> int:
        """Abort every open connection (RST both ways); return how many."""
        victims = list(self._conns)
        for conn in victims:
            self._abort(conn)
        if count_as_fault and victims:
            self.stats.cut_connections += len(victims)
            self.stats.faults += len(victims)
        for conn in victims:
            for task in conn.tasks:
                task.cancel()  # a pump held by a blackhole would never see the abort
            for task in conn.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return len(victims)

    # ---- internals ----------------------------------------------------------------------

    def _shrink(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.sock_buffer_bytes)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sock_buffer_bytes)

    @staticmethod
    def _abort(conn: _Conn) -> None:
        for writer in (conn.client_w, conn.upstream_w):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()

    async def partition(self) -> None:
        """Cut every connection and reset new ones until :meth:`heal`: the upstream is
        unreachable (a network partition) while it keeps running with its state."""
        self.refusing = True
        self.stats.faults += 1
        await self.cut()

    def heal(self) -> None:
        """End a partition: new connections are forwarded again."""
        self.refusing = False

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self.refusing:
            client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, limit=self.chunk_bytes
            )
        except OSError:
            client_w.transport.abort()
            return
        self._shrink(client_w)
        self._shrink(upstream_w)
        conn = _Conn(client_w, upstream_w)
        self._conns.add(conn)
        self.stats.open_connections += 1
        conn.tasks = [
            asyncio.create_task(self._pump(conn, client_r, upstream_w, UP)),
            asyncio.create_task(self._pump(conn, upstream_r, client_w, DOWN)),
        ]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            # One side finished: half-close semantics are not needed by HTTP/WS clients;
            # let the other pump drain briefly, then close everything.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*conn.tasks, return_exceptions=True), 2.0)
        finally:
            for task in conn.tasks:
                task.cancel()
            for writer in (client_w, upstream_w):
                with contextlib.suppress(Exception):
                    writer.close()
            self._conns.discard(conn)
            self.stats.open_connections -= 1

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        try:
            flowing = self._flowing[direction]
            while True:
                await flowing.wait()
                rate = self.rate_bytes_per_s[direction]
                size = self.chunk_bytes if rate is None else max(1, min(self.chunk_bytes, 1024))
                data = await reader.read(size)
                if not data:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                if direction == DOWN and self._lose_answers > 0:
                    self._lose_answers -= 1
                    self.stats.lost_answers += 1
                    self.stats.faults += 1
                    self._abort(conn)
                    return
                started = time.monotonic()
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                await flowing.wait()
                writer.write(data)
                await writer.drain()
                if direction == UP:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                rate = self.rate_bytes_per_s[direction]
                if rate:
                    spent = time.monotonic() - started
                    wait = len(data) / rate - spent
                    if wait > 0:
                        await asyncio.sleep(wait)
        except (ConnectionError, OSError):
            self._abort(conn)
