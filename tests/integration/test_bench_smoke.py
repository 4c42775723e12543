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
