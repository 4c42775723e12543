"""A real LiveKit SFU on loopback, for the Akool emulator, the sandbox and the tests.

Akool streams through "bring your own" LiveKit rooms (akool.md §4, §6): the gateway
and the avatar are both participants of a room on a LiveKit server the gateway is configured
with. Locally that server is ``livekit-server`` built from its Go module by
``tools/build_livekit.sh`` (pinned version below) and run by :class:`LiveKitServer` with a
generated config:

* signalling (HTTP/WebSocket) bound to ``127.0.0.1`` on a free port;
* WebRTC media and data over one UDP port, with ICE candidates limited to ``127.0.0.1``
  (loopback candidates enabled, no external-IP discovery, no STUN);
* ICE over TCP disabled: livekit-server binds its ICE/TCP listener on every interface, and on
  loopback UDP always works, so nothing is lost;
* a freshly generated API key and secret per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

__all__ = ["LIVEKIT_SERVER_VERSION", "LiveKitServer", "LiveKitServerError"]

LIVEKIT_SERVER_VERSION = "1.13.5"
"""The livekit-server version ``tools/build_livekit.sh`` builds (keep both in step)."""

_REPO_ROOT = Path(__file__).resolve().parents[1]
_BUILD_SCRIPT = _REPO_ROOT / "tools" / "build_livekit.sh"


class LiveKitServerError(RuntimeError):
    """livekit-server is not built, or it did not start."""


def _free_port(kind: int) -> int:
    """A port that is free on 127.0.0.1 now (TCP or UDP); the OS picks it."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveKitServer:
    """One ``livekit-server`` process on loopback with its own ports and API key.

    The process is started with :class:`subprocess.Popen`, not an asyncio subprocess, so the
    object is not bound to the event loop that started it (a module-scoped test fixture may
    start it under one loop and tests use it under others).

    Attributes:
        api_key: API key the server accepts (sign access tokens with it).
        api_secret: the key's secret (at least 32 characters, as LiveKit requires).
        port: signalling port (HTTP/WebSocket) on 127.0.0.1, set by :meth:`start`.
        udp_port: WebRTC UDP port on 127.0.0.1, set by :meth:`start`.
    """

    def __init__(self, *, log_level: str = "warn") -> None:
        self.api_key = "APIgw" + secrets.token_hex(6)
        self.api_secret = secrets.token_urlsafe(32)
        self.port = 0
        self.udp_port = 0
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    @staticmethod
    def binary_path() -> Path:
        """Path of the built ``livekit-server`` (``$LIVEKIT_SERVER_BIN`` overrides it).

        Raises:
            LiveKitServerError: the binary is not there; the message says how to build it.
        """
        path = Path(os.environ.get("LIVEKIT_SERVER_BIN", _REPO_ROOT / ".cache/bin/livekit-server"))
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LiveKitServerError(
                f"livekit-server {LIVEKIT_SERVER_VERSION} is not built at {path}; "
                f"run `make livekit` (tools/build_livekit.sh: needs Go and the Go module proxy)"
            )
        return path

    @classmethod
    def is_built(cls) -> bool:
        """Whether the binary is there and reports :data:`LIVEKIT_SERVER_VERSION` (blocking)."""
        try:
            path = cls.binary_path()
            version = subprocess.run(
                [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (LiveKitServerError, OSError, subprocess.TimeoutExpired):
            return False
        return version.strip().endswith(LIVEKIT_SERVER_VERSION)

    @classmethod
    def ensure_built(cls, *, timeout_s: float = 1800.0) -> Path:
        """Build ``livekit-server`` with ``tools/build_livekit.sh`` unless it is already built.

        Blocking: call it before the event loop runs (a fixture, a CLI). The first build on a
        fresh machine downloads the Go modules and compiles for a few minutes (about 2 min
        on 2 cores).

        Raises:
            LiveKitServerError: the build failed; the message carries the script's output tail.
        """
        if cls.is_built():
            return cls.binary_path()
        result = subprocess.run(
            ["bash", str(_BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-4000:]
            raise LiveKitServerError(f"tools/build_livekit.sh failed:\n{tail}")
        return cls.binary_path()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``: what clients and the rtc SDK connect to."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``: the server API (livekit-api RoomService)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> dict[str, object]:
        return {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": {
                "udp_port": self.udp_port,
                "tcp_port": 0,
                "use_external_ip": False,
                "node_ip": "127.0.0.1",
                "enable_loopback_candidate": True,
                "ips": {"includes": ["127.0.0.1/32"]},
                "stun_servers": [],
            },
            "keys": {self.api_key: self.api_secret},
            "logging": {"level": self.log_level},
            "room": {"auto_create": True, "empty_timeout": 60, "departure_timeout": 5},
        }

    async def start(self, *, timeout_s: float = 20.0) -> None:
        """Start the server and return once it accepts connections.

        Raises:
            LiveKitServerError: not built, or it exited / did not answer within ``timeout_s``
                (the message includes the end of its log).
        """
        binary = self.binary_path()
        # Another process can take a port between our probe and the server's bind: retry
        # with fresh ports rather than fail a test run on a rare race.
        last_error: LiveKitServerError | None = None
        for _ in range(3):
            self.port = _free_port(socket.SOCK_STREAM)
            self.udp_port = _free_port(socket.SOCK_DGRAM)
            try:
                await self._start_once(binary, timeout_s)
                return
            except LiveKitServerError as exc:
                last_error = exc
                await self.stop()
        assert last_error is not None
        raise last_error

    async def _start_once(self, binary: Path, timeout_s: float) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="livekit-server-"))
        config = self._workdir / "config.yaml"
        # JSON is valid YAML, so no YAML writer is needed.
        config.write_text(json.dumps(self._config(), indent=2))
        self._proc = self._launch(binary, config)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LiveKitServerError(
                    f"livekit-server exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if await self._answers():
                return
            await asyncio.sleep(0.05)
        raise LiveKitServerError(
            f"livekit-server did not answer on {self.http_url} within {timeout_s} s:\n"
            f"{self.log_tail()}"
        )

    def _launch(self, binary: Path, config: Path) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        self._log = (self._workdir / "server.log").open("wb")
        command = [str(binary), "--config", str(config)]
        setpriv = shutil.which("setpriv")
        if setpriv and sys.platform.startswith("linux"):
            # The server must not outlive its owner: a gateway or test run that is killed
            # (SIGKILL, no stop()) would otherwise leave it running. util-linux setpriv sets
            # PR_SET_PDEATHSIG and execs the server; the signal follows the thread that
            # spawned it, which is the event loop's (start() runs there). KILL, not TERM:
            # livekit-server drops a TERM that arrives while it is still starting, and this
            # throw-away server has nothing to flush.
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._workdir,
        )

    async def _answers(self) -> bool:
        """True when ``GET /`` answers 200 (livekit-server's health endpoint says "OK")."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 1.0
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 1.0)
            return b" 200 " in status
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def log_tail(self, max_chars: int = 3000) -> str:
        """The end of the server's log (for error messages)."""
        if self._workdir is None:
            return ""
        path = self._workdir / "server.log"
        if self._log is not None:
            self._log.flush()
        try:
            return path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its files. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    async def __aenter__(self) -> LiveKitServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
