"""``bench/latency_bench.py`` end to end at a tiny scale, so the latency benchmark cannot rot.

The real harness (an emulator process per vendor, a gateway process per vendor, LiveKit for
Akool, the direct clients), 2 sessions per vendor and path, no warm-up session, the three
vendors at once (``--parallel``: the harness is under test, not the numbers), without touching
bench/RESULTS.md. Checks that every metric each vendor supports was measured on
both paths in every session, that every number is positive, and that the markdown table has
a row per metric.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from latency_bench import METRICS, SUPPORTED, VENDORS  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    # The bench builds livekit-server when missing (make livekit) and starts its own.
    out = tmp_path_factory.mktemp("latbench") / "latency.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "latency_bench.py"),
        "--reps",
        "2",
        "--warmup",
        "0",
        "--turn-ms",
        "100",
        "--barge-in-ms",
        "200",
        "--parallel",
        "--no-write",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved: dict[str, Any] = json.loads(out.read_text())
    return saved, done.stdout


@pytest.mark.timeout(300)
def test_every_vendor_every_metric_both_paths(run: tuple[dict[str, Any], str]) -> None:
    saved, _ = run
    assert [r["vendor"] for r in saved["vendors"]] == list(VENDORS)
    for result in saved["vendors"]:
        vendor = result["vendor"]
        assert not result["errors"]["gateway"] and not result["errors"]["direct"], result["errors"]
        assert list(result["metrics"]) == list(SUPPORTED[vendor])
        for metric, m in result["metrics"].items():
            for path in ("gateway", "direct"):
                samples = result["samples"][path][metric]
                assert len(samples) == 2, (vendor, metric, path, samples)
                # Send → receipt across processes, or ready → seen ready: always positive.
                assert all(v > 0 for v in samples), (vendor, metric, path, samples)
                assert m[path]["p50"] <= m[path]["p95"] <= m[path]["max"]
            assert set(m["added"]) == {"p50", "p95", "max"}
    # ZEGOCLOUD streams no text (ListVendors), the others do.
    caps = {r["vendor"]: r["capabilities"] for r in saved["vendors"]}
    assert caps["zegocloud"]["streaming_text"] is False
    assert caps["tencent"]["streaming_text"] and caps["akool"]["streaming_text"]


@pytest.mark.timeout(300)
def test_the_report_has_a_row_per_metric(run: tuple[dict[str, Any], str]) -> None:
    saved, stdout = run
    for result in saved["vendors"]:
        assert f"**{result['vendor']}**" in stdout
    for metric in METRICS:
        rows = [line for line in stdout.splitlines() if line.startswith(f"| {METRICS[metric]} |")]
        vendors = [v for v in VENDORS if metric in SUPPORTED[v]]
        assert len(rows) == len(vendors), (metric, rows)
        assert all("–" not in row for row in rows), rows
