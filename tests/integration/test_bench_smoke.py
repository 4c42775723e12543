"""``bench/run_bench.py`` end to end at a tiny scale, so the benchmark cannot rot unnoticed.

Runs the real harness (emulator process, gateway process, load generator) for ZEGOCLOUD
with the Go generator (``bench/loadgen``, the default) and with the Python one, and for
Tencent (Python generator), 3 streams, a 2 s window, without touching bench/RESULTS.md;
then checks from the run's results.json
that every stream of every phase delivered every chunk intact (per-drive SHA-256 equal to
what the generator sent) and that latencies were measured.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _run_bench(*extra: str, vendor: str = "zegocloud") -> dict[str, Any]:
    command = [
        sys.executable,
        str(REPO / "bench" / "run_bench.py"),
        "--vendor",
        vendor,
        "--streams",
        "3",
        "--seconds",
        "2",
        "--warmup",
        "0.5",
        "--quiet-wait",
        "0",
        "--no-write",
        *extra,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    match = re.search(r"raw results: (\S+results\.json)", done.stdout)
    assert match, done.stdout[-3000:]
    saved: dict[str, Any] = json.loads(Path(match.group(1)).read_text())
    return saved


def _check(saved: dict[str, Any]) -> None:
    results = saved["results"]
    assert [(r["path"], r["n"]) for r in results] == [("direct", 3), ("gateway", 3)]
    for r in results:
        assert r["failed"] == 0, r["errors"]
        integrity = r["integrity"]
        assert integrity["sha_ok"] == 3 and integrity["sha_bad"] == 0, integrity
        assert integrity["bad_size"] == integrity["bad_payload"] == integrity["seq_errors"] == 0
        # 3 streams x 50 chunks/s x 2 s, give or take the window's edges.
        assert 250 <= r["sent_in_window"] <= 350, r["sent_in_window"]
        assert r["received_in_window"] == r["sent_in_window"]
        assert 0 < r["lat"]["p50"] < 1000
        assert r["open_tasks_after"] == 0
    gateway = results[1]
    assert gateway["cpu_s"]["gateway"] > 0
    assert gateway["control"]["integrity"]["sha_ok"] == 2


def test_bench_with_the_go_generator() -> None:
    saved = _run_bench("--generator", "go")
    assert saved["args"]["generator"] == "go"
    _check(saved)


def test_bench_with_two_gateway_workers() -> None:
    """``--gateway-workers 2``: the gateway runs as a supervisor and two workers sharing a
    redis-server the bench starts; the CPU is each process's (supervisor, worker 0, worker 1)."""
    saved = _run_bench("--generator", "go", "--gateway-workers", "2", "--grpc-channels", "4")
    assert saved["args"]["gateway_workers"] == 2
    _check(saved)
    gateway = saved["results"][1]
    assert len(gateway["gw_process_share"]) == 3
    assert "redis" in gateway["cpu_s"]


def test_bench_with_100_ms_client_chunks() -> None:
    """``--chunk-ms 100``: five 20 ms chunks per DriveRequest (five binary messages at once on
    the direct path); the gateway re-chunks them and every frame still arrives intact."""
    saved = _run_bench("--generator", "go", "--chunk-ms", "100")
    assert saved["args"]["chunk_ms"] == 100
    _check(saved)


def test_bench_with_the_python_generator() -> None:
    saved = _run_bench("--generator", "python")
    _check(saved)


def test_bench_tencent() -> None:
    """The Tencent phases: every packet's chunks intact, one SHA-256 match per drive, no
    pacing violation; ~6 packets/s per stream over the 2 s window."""
    results = _run_bench(vendor="tencent")["results"]
    assert [(r["path"], r["n"]) for r in results] == [("direct", 3), ("gateway", 3)]
    for r in results:
        assert r["failed"] == 0, r["errors"]
        integrity = r["integrity"]
        assert integrity["sha_ok"] == 3 and integrity["sha_bad"] == 0, integrity
        assert integrity["bad_size"] == integrity["bad_payload"] == integrity["seq_errors"] == 0
        assert 30 <= r["received_in_window"] <= 45, r["received_in_window"]
        assert r["tencent"]["counts"]["pacing"] == 0
        assert r["open_tasks_after"] == 0
    assert results[1]["control"]["integrity"]["sha_ok"] == 2


def test_go_generator_vets_and_passes_its_own_tests() -> None:
    """bench/loadgen's schedule and chunk header against values computed by Python."""
    for command in (["go", "vet", "./..."], ["go", "test", "./..."]):
        done = subprocess.run(
            command, cwd=REPO / "bench" / "loadgen", capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bench_counts_the_calls_refused_past_capacity() -> None:
    """3 streams against a gateway admitting 2 Drive streams: one stream's CreateSession or
    Drive is refused (RESOURCE_EXHAUSTED), counted with the time its answer took; the two
    accepted streams deliver every chunk intact and nothing counts as failed."""
    for generator in ("go", "python"):
        saved = _run_bench(
            "--generator", generator, "--paths", "gateway", "--max-active-drives", "2"
        )
        assert saved["args"]["max_active_drives"] == 2
        (r,) = saved["results"]
        refused = r["refused"]
        assert refused["CreateSession"] + refused["Drive"] == 1, (generator, refused)
        assert 0 < refused["ms"]["p50"] <= refused["ms"]["max"] < 10_000
        # The gateway's own count of the refusal (its call-duration histogram).
        server = refused["server"]
        assert sum(b.get("+Inf", 0) for b in server.values()) == 1, server
        assert r["failed"] == 0, r["errors"]
        integrity = r["integrity"]
        assert integrity["sha_ok"] == 2 and integrity["sha_bad"] == 0, integrity
        assert r["received_in_window"] == r["sent_in_window"] > 0
        assert r["open_tasks_after"] == 0
