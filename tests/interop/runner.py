"""Cross-language interop runner: one set of scenarios, one driver per client language.

Scenarios are data (``tests/interop/scenarios/*.yaml``): a list of steps for a driver and
what must be observed. Each language has a small driver program under ``clients/<lang>/interop``
that reads a scenario as JSON on stdin, runs the steps against the gateway with that
language's generated stubs and helpers, and prints what it observes as JSON lines on stdout.
This module builds the drivers (once per session), runs a gateway process in sandbox mode,
feeds scenarios to drivers, reacts to ``mark`` lines (``drain``: SIGTERM to the gateway) and
checks the observations against the scenario's ``expect`` block. The checks live here, once;
the drivers assert nothing.

Every gateway here serves TLS and requires authentication, as a production one does: the
shared gateway an API key (``credential``), the dedicated ones mutual TLS with a client
certificate whose SPIFFE ID names the tenant (docs/security.md §2, §5).

Driver protocol (stdin: one JSON object): ``target``, ``vendor``, ``avatar_id``, ``steps``,
``tls`` (``ca_file``, ``server_name``, ``cert_file``, ``key_file``; absent: plaintext) and
``credential`` (sent as ``authorization: Bearer <credential>`` on every call).
Steps (``op``): ``create_session``, ``get_session``/``close_session`` (``name``), ``drive``
(``session``, ``deadline_ms``, ``config: false`` for a raw stream that sends no config),
``send_audio`` (``wav``, ``pace``, ``chunk_ms``), ``send_text``, ``end_turn``, ``interrupt``,
``half_close``, ``cancel``, ``wait_event`` (``event``, ``turn_id``, ``timeout_ms``),
``wait_status`` (``timeout_ms``), ``sleep`` (``ms``), ``mark`` (``name``).
Output lines (``type``): ``session``, ``event`` (``event``, ``turn_id``, ``interrupted``,
``reason``), ``status`` (``op``, ``code`` as the canonical number, ``message``,
``error_info``), ``sent`` (``op``, ``error``), ``wait`` (``event``, ``ok``), ``mark``,
``error``, ``done``.

Command line, for debugging one language or scenario against a fresh gateway::

    .venv/bin/python -m tests.interop.runner --lang go --scenario audio_ping_pong -v
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from gateway.auth import hash_key
from tests.tlsutil import CertificateAuthority

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
CACHE = ROOT / ".cache"
BIN = CACHE / "bin"
LANGS = ("python", "go", "typescript", "java")

# Standard gRPC tools, pinned by tests/interop/tools/go.mod + go.sum (Go `tool` directives;
# `go install pkg@version` cannot be used: the proxy refuses grpc-health-probe's version list,
# which `go install` reads for deprecation notices). Built into .cache/bin.
TOOLS_MODULE = Path(__file__).resolve().parent / "tools"
STANDARD_TOOLS = {
    "grpcurl": "github.com/fullstorydev/grpcurl/cmd/grpcurl",
    "grpc-health-probe": "github.com/grpc-ecosystem/grpc-health-probe",
}

JAVA_JAR = "target/avatar-gateway-client-0.1.0.jar"


def tool_env() -> dict[str, str]:
    """Environment for Go/npm/Maven with their caches under .cache (as tools/gen_clients.sh)."""
    env = dict(os.environ)
    env.setdefault("GOMODCACHE", str(CACHE / "go" / "mod"))
    env.setdefault("GOCACHE", str(CACHE / "go" / "build"))
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -modcacherw").strip()
    env.setdefault("npm_config_cache", str(CACHE / "npm"))
    env.setdefault("npm_config_update_notifier", "false")
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    return env


def maven_repo() -> str:
    return os.environ.get("MAVEN_REPO_LOCAL", str(CACHE / "m2"))


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> None:
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} (in {cwd}) failed with {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


def ensure_standard_tools() -> dict[str, Path]:
    """Build grpcurl and grpc-health-probe at their pinned versions into .cache/bin when
    missing or stale (idempotent)."""
    pins = (TOOLS_MODULE / "go.mod").read_bytes() + (TOOLS_MODULE / "go.sum").read_bytes()
    digest = hashlib.sha256(pins).hexdigest()
    paths = {name: BIN / name for name in STANDARD_TOOLS}
    stamp = BIN / ".interop-tools.version"
    if (
        all(p.exists() for p in paths.values())
        and stamp.exists()
        and stamp.read_text().strip() == digest
    ):
        return paths
    if shutil.which("go") is None:
        raise RuntimeError("grpcurl/grpc-health-probe are not built and there is no Go toolchain")
    BIN.mkdir(parents=True, exist_ok=True)
    grpcurl_version = next(
        line.split()[1]
        for line in (TOOLS_MODULE / "go.mod").read_text().splitlines()
        if line.strip().startswith("github.com/fullstorydev/grpcurl ")
    )
    _run(
        [
            "go",
            "build",
            "-ldflags",
            f"-X main.version={grpcurl_version}",
            "-o",
            f"{BIN}{os.sep}",
            *STANDARD_TOOLS.values(),
        ],
        TOOLS_MODULE,
    )
    stamp.write_text(digest + "\n")
    return paths


# ---------------------------------------------------------------------------------------------
# Drivers


TOOLCHAINS: dict[str, tuple[str, ...]] = {
    "python": (),
    "go": ("go",),
    "typescript": ("node", "npm"),
    "java": ("java", "mvn"),
}


def missing_toolchain(lang: str) -> str | None:
    """The first missing tool a language's driver needs, or None."""
    for tool in TOOLCHAINS[lang]:
        if shutil.which(tool) is None:
            return tool
    return None


def ensure_node_modules(directory: Path) -> None:
    """``npm ci`` in ``directory`` unless node_modules is newer than package-lock.json."""
    lock, installed = directory / "package-lock.json", directory / "node_modules/.package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], directory)


def build_driver(lang: str) -> list[str]:
    """Build ``lang``'s interop driver and return the command that runs it."""
    if lang == "python":
        return [sys.executable, str(ROOT / "clients/python/interop/driver.py")]
    if lang == "go":
        out = CACHE / "interop" / "go-driver"
        out.parent.mkdir(parents=True, exist_ok=True)
        _run(["go", "build", "-o", str(out), "./interop"], ROOT / "clients/go")
        return [str(out)]
    if lang == "typescript":
        ts = ROOT / "clients/typescript"
        ensure_node_modules(ts)
        _run([str(ts / "node_modules/.bin/tsc"), "-p", "tsconfig.json"], ts)
        return ["node", str(ts / "dist/interop/driver.js")]
    if lang == "java":
        java = ROOT / "clients/java"
        _run(
            [
                "mvn",
                "-B",
                "-q",
                "-Dstyle.color=never",
                f"-Dmaven.repo.local={maven_repo()}",
                "-DskipTests",
                "package",
            ],
            java,
        )
        # The driver is test code (src/test/java): it is not in the published jar.
        classpath = os.pathsep.join(
            [str(java / JAVA_JAR), str(java / "target/test-classes"), f"{java / 'target/lib'}/*"]
        )
        return ["java", "-cp", classpath, "com.avatargateway.interop.Driver"]
    raise ValueError(f"unknown language {lang}")


# ---------------------------------------------------------------------------------------------
# Gateway process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ClientSecurity:
    """What a client needs to reach a gateway of this module: the CA to trust, the name in
    the server certificate, and an API key or a client certificate."""

    ca_file: str
    server_name: str = "localhost"
    credential: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def payload(self) -> dict[str, Any]:
        """The driver payload's ``tls`` and ``credential`` fields."""
        tls: dict[str, str] = {"ca_file": self.ca_file, "server_name": self.server_name}
        if self.cert_file and self.key_file:
            tls.update(cert_file=self.cert_file, key_file=self.key_file)
        out: dict[str, Any] = {"tls": tls}
        if self.credential is not None:
            out["credential"] = self.credential
        return out

    def grpcurl_args(self) -> list[str]:
        """grpcurl flags for the same connection (TLS, the credential on every call)."""
        args = ["-cacert", self.ca_file, "-servername", self.server_name]
        if self.credential is not None:
            args += ["-H", f"authorization: Bearer {self.credential}"]
        return args


class GatewayProcess:
    """``avatar-gateway serve`` in sandbox mode on free loopback ports, with TLS and auth.

    Args:
        log_dir: where its log and its certificates go.
        extra_env: more ``AVATAR_GATEWAY_*`` variables.
        mutual_tls: clients present a certificate (whose SPIFFE ID is the tenant's) instead
            of an API key.
    """

    def __init__(
        self, log_dir: Path, extra_env: dict[str, str] | None = None, mutual_tls: bool = False
    ) -> None:
        self.port = free_port()
        self.ops_port = free_port()
        self.callbacks_port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"gateway-{self.port}.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.security_env, self.client = self._security(log_dir / f"tls-{self.port}", mutual_tls)

    @staticmethod
    def _security(directory: Path, mutual_tls: bool) -> tuple[dict[str, str], ClientSecurity]:
        """Certificates, a keys file, the gateway's variables and the clients' side."""
        ca = CertificateAuthority("interop CA")
        cert, key = ca.server_pair().write(directory, "server")
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(ca.cert_pem)
        keys = directory / "api-keys"
        env = {
            "AVATAR_GATEWAY_TLS_CERT_FILE": str(cert),
            "AVATAR_GATEWAY_TLS_KEY_FILE": str(key),
            "AVATAR_GATEWAY_API_KEYS_FILE": str(keys),
        }
        if mutual_tls:
            spiffe_id = "spiffe://interop.avatargateway.dev/ns/interop/sa/driver"
            client_cert, client_key = ca.client_pair(spiffe_id).write(directory, "client")
            keys.write_text(f"interop {spiffe_id}\n")
            env["AVATAR_GATEWAY_TLS_CLIENT_CA_FILE"] = str(ca_file)
            return env, ClientSecurity(
                str(ca_file), cert_file=str(client_cert), key_file=str(client_key)
            )
        credential = f"interop-{os.urandom(12).hex()}"
        keys.write_text(f"interop {hash_key(credential)}\n")
        return env, ClientSecurity(str(ca_file), credential=credential)

    def start(self, ready_timeout: float = 60.0) -> GatewayProcess:
        env = dict(os.environ)
        # No vendor credentials reach the process; it serves the in-process emulators.
        for key in list(env):
            if key.startswith("AVATAR_GATEWAY_"):
                del env[key]
        env.update(
            AVATAR_GATEWAY_LISTEN=self.target,
            AVATAR_GATEWAY_OPS_LISTEN=f"127.0.0.1:{self.ops_port}",
            AVATAR_GATEWAY_CALLBACKS_LISTEN=f"127.0.0.1:{self.callbacks_port}",
            AVATAR_GATEWAY_SHUTDOWN_GRACE_S="10",
            AVATAR_GATEWAY_LOG_FORMAT="json",
        )
        env.update(self.security_env)
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--sandbox"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll readiness (``/healthz`` on the ops listener) until 200."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ops_port}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM: the gateway drains (go_away on each Drive stream), then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        if self.wait(30) is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ---------------------------------------------------------------------------------------------
# Audio fixtures


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A voiced, syllable-like 16-bit mono signal (harmonics of a gliding f0, 3 Hz envelope)."""
    frames = bytearray()
    for i in range(int(rate * seconds)):
        t = i / rate
        env = 0.5 * (1 - math.cos(2 * math.pi * 3 * t))
        f0 = 140 + 30 * math.sin(2 * math.pi * 0.7 * t)
        s = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, 0.35 * env * s)) * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def make_wavs(directory: Path) -> dict[str, str]:
    """The named WAV files scenarios refer to (``wav: sample``)."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "sample": str(ROOT / "clients/testdata/sample-16k-mono.wav"),
        "short": str(write_wav(directory / "short-100ms.wav", 0.1)),
        "long": str(write_wav(directory / "long-3s.wav", 3.0)),
    }


# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Scenario:
    name: str
    description: str
    steps: list[dict[str, Any]]
    expect: dict[str, Any]
    gateway: str = "shared"  # "dedicated": a fresh gateway (the scenario stops it)
    timeout_s: float = 60.0
    vendor: str = "zegocloud"
    avatar_id: str = "zego_emma"


def load_scenarios() -> list[Scenario]:
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        out.append(
            Scenario(
                name=data.get("name", path.stem),
                description=data.get("description", ""),
                steps=data["steps"],
                expect=data.get("expect", {}),
                gateway=data.get("gateway", "shared"),
                timeout_s=float(data.get("timeout_s", 60)),
                vendor=data.get("vendor", "zegocloud"),
                avatar_id=data.get("avatar_id", "zego_emma"),
            )
        )
    return out


@dataclass
class RunResult:
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    returncode: int | None = None
    timed_out: bool = False
    gateway_exit: int | None = None

    def transcript(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines)


def run_scenario(
    command: list[str], scenario: Scenario, gateway: GatewayProcess, wavs: dict[str, str]
) -> RunResult:
    """Run one scenario with one driver; a ``mark`` named ``drain`` sends SIGTERM to the gateway."""
    steps = []
    for step in scenario.steps:
        step = dict(step)
        if "wav" in step:
            step["wav"] = wavs.get(step["wav"], step["wav"])
        steps.append(step)
    payload = json.dumps(
        {
            "target": gateway.target,
            "vendor": scenario.vendor,
            "avatar_id": scenario.avatar_id,
            "steps": steps,
            **gateway.client.payload(),
        }
    )
    result = RunResult()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=tool_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr_chunks: list[str] = []
    stderr = proc.stderr
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(stderr.read()), daemon=True)
    err_reader.start()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    killer = threading.Timer(scenario.timeout_s, kill)
    killer.start()
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
        for raw in proc.stdout:
            raw = raw.strip()
            if not raw:
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"type": "error", "message": f"not JSON: {raw[:200]}"}
            result.lines.append(line)
            if line.get("type") == "mark" and line.get("name") == "drain":
                gateway.terminate()
        result.returncode = proc.wait()
    finally:
        killer.cancel()
        result.timed_out = killed.is_set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err_reader.join(5)
    result.stderr = "".join(stderr_chunks)
    if scenario.gateway == "dedicated":
        result.gateway_exit = gateway.wait(30)
    return result


def _code(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(grpc.StatusCode[str(value)].value[0])


def _code_name(value: int) -> str:
    for sc in grpc.StatusCode:
        if sc.value[0] == value:
            return sc.name
    return str(value)


def _matches(line: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(line.get(k) == v for k, v in want.items())


def _check_status(st: dict[str, Any] | None, want: dict[str, Any], what: str) -> list[str]:
    if st is None:
        return [f"{what}: no status line"]
    problems = []
    codes = want.get("code", "OK")
    codes = codes if isinstance(codes, list) else [codes]
    if st.get("code") not in [_code(c) for c in codes]:
        problems.append(
            f"{what}: code {_code_name(st.get('code', -1))} ({st.get('message')!r}), want {codes}"
        )
    info = st.get("error_info") or {}
    for key in ("reason", "domain"):
        if key in want and info.get(key) != want[key]:
            problems.append(f"{what}: ErrorInfo.{key} {info.get(key)!r}, want {want[key]!r}")
    for key, value in (want.get("metadata") or {}).items():
        got = (info.get("metadata") or {}).get(key)
        if value is None and key not in (info.get("metadata") or {}):
            problems.append(f"{what}: ErrorInfo.metadata has no {key!r}: {info.get('metadata')}")
        elif value is not None and got != value:
            problems.append(f"{what}: ErrorInfo.metadata[{key!r}] = {got!r}, want {value!r}")
    return problems


def check(scenario: Scenario, result: RunResult) -> list[str]:
    """Compare a driver's observations with the scenario's ``expect`` block."""
    exp = scenario.expect
    lines = result.lines
    problems: list[str] = []
    if not any(line.get("type") == "done" for line in lines):
        problems.append(
            f"driver did not finish (exit {result.returncode}, timed out: {result.timed_out})"
        )
    problems += [f"driver error: {line}" for line in lines if line.get("type") == "error"]
    if exp.get("waits_ok", True):
        problems += [
            f"wait failed: {line}"
            for line in lines
            if line.get("type") == "wait" and not line.get("ok")
        ]
    if exp.get("sends_ok", True):
        problems += [
            f"send failed: {line}"
            for line in lines
            if line.get("type") == "sent" and line.get("error")
        ]

    # Expected events, in order (other events may come between them).
    events = [(i, line) for i, line in enumerate(lines) if line.get("type") == "event"]
    pos, last_index = 0, -1
    for want in exp.get("events", []):
        for j in range(pos, len(events)):
            if _matches(events[j][1], want):
                pos, last_index = j + 1, events[j][0]
                break
        else:
            problems.append(f"missing event {want} (in order) among {[e for _, e in events]}")
            break
    for unwanted in exp.get("no_events", []):
        want = unwanted if isinstance(unwanted, dict) else {"event": unwanted}
        if any(_matches(e, want) for _, e in events):
            problems.append(f"unexpected event {want}")

    statuses = [(i, line) for i, line in enumerate(lines) if line.get("type") == "status"]
    wanted_statuses = list(exp.get("statuses", []))
    if not any(w.get("op") == "create_session" for w in wanted_statuses):
        problems += [
            f"create_session failed: {line}"
            for _, line in statuses
            if line.get("op") == "create_session" and line.get("code") != 0
        ]
    if "status" in exp:
        wanted_statuses.insert(0, {"op": "drive", **exp["status"]})
    for want in wanted_statuses:
        op = want.get("op", "drive")
        found = [(i, s) for i, s in statuses if s.get("op") == op]
        problems += _check_status(found[-1][1] if found else None, want, f"status of {op}")
        if op == "drive" and found and found[-1][0] < last_index:
            problems.append("the Drive call ended before the expected events")

    if "gateway_exit" in exp and result.gateway_exit != exp["gateway_exit"]:
        problems.append(f"gateway exit code {result.gateway_exit}, want {exp['gateway_exit']}")
    return problems


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run interop scenarios against a fresh sandbox gateway."
    )
    parser.add_argument("--lang", action="append", choices=LANGS, help="languages (default: all)")
    parser.add_argument("--scenario", action="append", help="scenario names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every driver line")
    args = parser.parse_args(argv)
    langs = args.lang or list(LANGS)
    scenarios = [s for s in load_scenarios() if not args.scenario or s.name in args.scenario]
    failures = 0
    passed = 0
    with tempfile.TemporaryDirectory(prefix="interop-") as tmp:
        wavs = make_wavs(Path(tmp) / "wav")
        shared = GatewayProcess(Path(tmp)).start()
        try:
            for lang in langs:
                if (tool := missing_toolchain(lang)) is not None:
                    print(f"SKIP {lang}: {tool} not found")
                    continue
                command = build_driver(lang)
                for sc in scenarios:
                    gw = (
                        GatewayProcess(Path(tmp), mutual_tls=True).start()
                        if sc.gateway == "dedicated"
                        else shared
                    )
                    try:
                        result = run_scenario(command, sc, gw, wavs)
                    finally:
                        if gw is not shared:
                            gw.stop()
                    problems = check(sc, result)
                    print(f"{'FAIL' if problems else 'PASS'} {lang} {sc.name}")
                    if problems or args.verbose:
                        print("  " + result.transcript().replace("\n", "\n  "))
                        for p in problems:
                            print(f"  - {p}")
                        if result.stderr.strip():
                            print("  stderr: " + result.stderr.strip()[-2000:])
                    failures += bool(problems)
                    passed += not problems
        finally:
            shared.stop()
    print(f"{passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
