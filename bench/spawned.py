"""A benchmark's emulator in a spawned process, driven over a pipe (run_bench, latency_bench).

The emulator runs in its own process so that its CPU and its event loop are not the
gateway's nor the load generator's. ``serve(conn, config)`` is the child's entry point: it
sends ``{"rest_url", "pid", ...}`` once ready, then answers one message per command sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class SpawnedEmulator:
    """One emulator process and the pipe that drives it.

    Args:
        serve: the child's entry point, ``serve(conn, config)``.
        config: what the child is given (``vendor`` names the process).
        start_timeout_s: how long the child may take to report ready (s).

    Raises:
        RuntimeError: the child did not report ready in time.
    """

    def __init__(
        self,
        serve: Callable[[Connection, dict[str, Any]], None],
        config: dict[str, Any],
        start_timeout_s: float = 60.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        name = f"{config.get('vendor', 'zegocloud')}-emulator"
        self.proc = ctx.Process(target=serve, args=(child, config), name=name)
        self.proc.start()
        child.close()
        if not self.conn.poll(start_timeout_s):
            raise RuntimeError(f"emulator process did not start within {start_timeout_s:g} s")
        self.info: dict[str, Any] = self.conn.recv()
        self.rest_url: str = self.info["rest_url"]
        self.pid: int = self.info["pid"]

    def _rpc(self, *command: Any) -> Any:
        self.conn.send(command)
        if not self.conn.poll(60):
            raise RuntimeError(f"emulator did not answer {command[0]!r} within 60 s")
        return self.conn.recv()

    async def call(self, *command: Any) -> Any:
        """Send ``command`` (a name and its arguments) and return the child's answer."""
        return await asyncio.get_running_loop().run_in_executor(None, self._rpc, *command)

    def stop(self) -> None:
        """Ask the child to stop; terminate it if it does not within 10 s."""
        with contextlib.suppress(Exception):
            self.conn.send(("stop",))
            self.conn.poll(10)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def commands_from(conn: Connection) -> asyncio.Queue[Any]:
    """In the child: a queue of the commands the parent sends on ``conn``, fed by the running
    event loop; a closed pipe becomes ``("stop",)``."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except EOFError:
            commands.put_nowait(("stop",))
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), readable)
    return commands
