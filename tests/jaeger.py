"""A real Jaeger on loopback for the tracing tests: OTLP receivers, in-memory storage, query API.

``jaeger`` is built from its Go module by ``tools/build_jaeger.sh`` (pinned by
``tools/jaeger/go.mod``) into ``.cache/bin/jaeger`` and run here with a generated
configuration (Jaeger v2 is an OpenTelemetry Collector distribution configured in YAML;
JSON is valid YAML):

* the OTLP receiver over gRPC and HTTP, each on a free 127.0.0.1 port;
* the ``jaeger_query`` extension (query HTTP API, ``/api/traces/<trace id>``) on another;
* memory storage, no sampling extension, the collector's own metrics off (they would bind
  port 8888 on every run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "tools" / "build_jaeger.sh"
JAEGER_VERSION = "v1.75.0"
"""The version ``tools/build_jaeger.sh`` builds (keep both in step)."""


class JaegerError(RuntimeError):
    """Jaeger is not built, or it did not start."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary_path() -> Path:
    """Path of the built ``jaeger`` (``$JAEGER_BIN`` overrides it)."""
    return Path(os.environ.get("JAEGER_BIN", ROOT / ".cache/bin/jaeger"))


def ensure_built(timeout_s: float = 2400.0) -> Path:
    """Build ``jaeger`` with ``tools/build_jaeger.sh`` unless it is built (blocking).

    The script returns at once when the binary reports the pinned version.

    Raises:
        JaegerError: the build failed; the message carries the script's output tail.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise JaegerError(
            f"tools/build_jaeger.sh failed:\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return binary_path()


class Jaeger:
    """One ``jaeger`` process on loopback with its own ports, started and stopped by the test.

    Attributes:
        otlp_grpc_port: OTLP/gRPC receiver port.
        otlp_http_port: OTLP/HTTP receiver port (``/v1/traces``).
        query_port: query HTTP API port.
    """

    def __init__(self) -> None:
        self.otlp_grpc_port = 0
        self.otlp_http_port = 0
        self.query_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    @property
    def otlp_http_endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for ``http/protobuf``."""
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for ``grpc`` (plaintext)."""
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the query HTTP API."""
        return f"http://127.0.0.1:{self.query_port}"

    def _config(self) -> dict[str, Any]:
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 10000}}}},
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    # Jaeger tracing itself would export to localhost:4317.
                    "enable_tracing": False,
                    "http": {"endpoint": f"127.0.0.1:{self.query_port}"},
                    "grpc": {"endpoint": f"127.0.0.1:{_free_port()}"},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"127.0.0.1:{self.otlp_grpc_port}"},
                        "http": {"endpoint": f"127.0.0.1:{self.otlp_http_port}"},
                    }
                }
            },
            "processors": {"batch": {"timeout": "100ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def start(self, timeout_s: float = 60.0) -> None:
        """Start Jaeger and return once its query API answers and its receivers listen.

        Another process may take a probed port before Jaeger binds it: retried with fresh
        ports (three attempts).

        Raises:
            JaegerError: not built, or it exited / did not answer within ``timeout_s``.
        """
        binary = binary_path()
        if not binary.exists():
            raise JaegerError(f"jaeger is not built at {binary}; run `make jaeger`")
        last: JaegerError | None = None
        for _ in range(3):
            try:
                self._start_once(binary, timeout_s)
                return
            except JaegerError as exc:
                last = exc
                self.stop()
        assert last is not None
        raise last

    def _start_once(self, binary: Path, timeout_s: float) -> None:
        self.otlp_grpc_port, self.otlp_http_port = _free_port(), _free_port()
        self.query_port = _free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="jaeger-"))
        config = self._workdir / "config.yaml"
        config.write_text(json.dumps(self._config(), indent=2))
        self._log = (self._workdir / "jaeger.log").open("wb")
        # Not the test process's OTEL_* variables: they are for the gateway.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self._proc = subprocess.Popen(
            [str(binary), "--config", str(config)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise JaegerError(f"jaeger exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.1)
        raise JaegerError(f"jaeger did not answer within {timeout_s:g} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            response = httpx.get(f"{self.query_url}/api/services", timeout=1.0)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        for port in (self.otlp_grpc_port, self.otlp_http_port):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace ``trace_id`` (32 hex digits) as the query API returns it, or ``None``.

        The shape is Jaeger's JSON model: ``{"traceID", "spans": [{"spanID",
        "operationName", "references", "tags", "logs", "processID", ...}], "processes"}``.
        """
        response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=5.0)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json().get("data") or []
        return data[0] if data else None

    def find_traces(self, service: str, operation: str, limit: int = 50) -> list[dict[str, Any]]:
        """Traces of ``service`` with a span named ``operation`` (same shape as :meth:`trace`)."""
        response = httpx.get(
            f"{self.query_url}/api/traces",
            params={"service": service, "operation": operation, "limit": limit, "lookback": "1h"},
            timeout=5.0,
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("data") or [])

    def operations(self, service: str) -> list[str]:
        """The span names Jaeger stored for ``service``."""
        response = httpx.get(f"{self.query_url}/api/services/{service}/operations", timeout=5.0)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return [str(op) for op in response.json().get("data") or []]

    def log_tail(self, limit: int = 4000) -> str:
        """The end of Jaeger's own log (for failure messages)."""
        if self._workdir is None:
            return ""
        path = self._workdir / "jaeger.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s) and remove its files."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
