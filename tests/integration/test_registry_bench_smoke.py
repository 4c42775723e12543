"""``bench/registry_bench.py`` end to end at a tiny scale, so the benchmark cannot rot unnoticed.

Runs the real harness (emulator process, redis-server, the two gateway processes, direct
calls) with 5 measured iterations per path, 2 callers at once and a 3-iteration census pass,
its block written to a copy of bench/RESULTS.md in a temporary directory (never to the file
itself); then checks from its JSON that every operation of every path was measured with
positive times, that the Redis gateway's calls reached Redis and the in-memory one's did
not, and that nothing failed or was left open at the vendor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "RESULTS.md"
CALLS = 5

EXPECTED_OPS = {
    "direct": {"create_call", "create", "drive_open", "first_chunk", "close"},
    "memory": {"create", "drive_start", "first_chunk", "drive_end", "close"},
    "redis": {"create", "drive_start", "first_chunk", "drive_end", "close"},
}


def test_registry_bench_smoke(tmp_path: Path) -> None:
    results_before = RESULTS.read_bytes()
    out = tmp_path / "RESULTS.md"
    shutil.copy(RESULTS, out)
    raw = tmp_path / "result.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "registry_bench.py"),
        "--calls",
        str(CALLS),
        "--warmup",
        "1",
        "--rounds",
        "2",
        "--interval",
        "0.12",
        "--concurrency",
        "2",
        "--bursts",
        "2",
        "--census-calls",
        "3",
        "--out",
        str(out),
        "--json",
        str(raw),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert RESULTS.read_bytes() == results_before, "the smoke run must not touch RESULTS.md"

    saved: dict[str, Any] = json.loads(raw.read_text())
    seq, conc = saved["result"]["sequential"], saved["result"]["concurrent"]
    assert saved["meta"]["open_tasks"] == 0
    for path, ops in EXPECTED_OPS.items():
        assert seq[path]["failed"] == 0, seq[path]["errors"]
        assert conc[path]["failed"] == 0, conc[path]["errors"]
        assert saved["result"]["census"][path]["failed"] == 0
        assert set(seq[path]["lat"]) == ops, (path, sorted(seq[path]["lat"]))
        for op in ops:
            s = seq[path]["lat"][op]
            assert s["n"] == CALLS, (path, op, s)
            assert 0 < s["p50"] <= s["p90"] <= s["p99"] <= s["max"] < 30_000, (path, op, s)
            c = conc[path]["lat"][op]
            assert c["n"] == 2 and 0 < c["p50"], (path, op, c)  # the first burst is discarded

    # Every step of a redis iteration goes to Redis; the registry's own share of CreateSession
    # is at least the request_id claim and the record's insert, READY and start writes.
    census = saved["result"]["census"]["redis"]["steps"]
    assert set(census) == {"create", "drive_start", "drive_rest", "close"}
    assert census["create"]["registry_median"] >= 3
    assert census["drive_start"]["registry_median"] >= 1  # the drive lease at least
    assert all(c["round_trips_median"] > 0 and c["redis_us_median"] > 0 for c in census.values())
    for path in ("memory", "direct"):
        steps = saved["result"]["census"][path]["steps"].values()
        assert all(c["round_trips_median"] == 0 for c in steps), path

    # The report: its block replaced in the copy, everything else kept.
    text = out.read_text()
    assert text.count("<!-- BEGIN registry_bench -->") == 1
    assert "## Registry cost: Redis vs in-memory (issue 12)" in text
    block = text.split("<!-- BEGIN registry_bench -->")[1].split("<!-- END registry_bench -->")[0]
    assert saved["report"].split("\n", 1)[1].rsplit("\n", 1)[0] in block
    outside = text.replace(block, "")
    for marker in ("<!-- BEGIN run_bench results -->", "<!-- END chaos -->", "## Method"):
        assert marker in outside
    for label in ("| CreateSession | redis |", "| Drive start (config → `started`) | memory |"):
        assert label in block
