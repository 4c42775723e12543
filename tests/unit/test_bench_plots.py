"""``bench/plots.py`` renders every plot from small result files into a temporary directory.

The fixtures are the shapes ``bench/run_bench.py`` and ``bench/latency_bench.py`` save (two
vendors and three levels; three vendors' latency table; a short multi-turn run). Each PNG
must exist, start with the PNG signature, and decode as an image of a sensible size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import plots  # noqa: E402

pytestmark = pytest.mark.unit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _phase(vendor: str, path: str, n: int, p50: float, p99: float, cpu_s: float) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "path": path,
        "n": n,
        "lat": {"p50": p50, "p90": p99 * 0.8, "p99": p99, "max": p99 * 2, "mean": p50},
        "relayed": 750 * n,
        "cpu_s": {"gateway": cpu_s, "emulator": 0.1, "generator": 0.1, "other": 0.0},
    }


RUN_BENCH: dict[str, Any] = {
    "date": "2026-12-06 05:08",
    "command": ".venv/bin/python bench/run_bench.py",
    "results": [
        _phase(vendor, path, n, p50, p99, cpu)
        for vendor, scale in (("zegocloud", 1.0), ("tencent", 8.0))
        for n, (d50, d99, g50, g99, cpu) in {
            1: (0.4, 0.5, 0.7, 1.0, 0.01),
            100: (0.4, 0.6, 0.9, 2.0, 1.5),
            300: (0.5, 0.9, 3.0, 40.0, 4.0),
        }.items()
        for path, p50, p99 in (("direct", d50, d99), ("gateway", g50, g99))
        if not (vendor == "tencent" and n == 300)
        for cpu in [cpu * scale]
    ],
}


def _metric(g: float, d: float) -> dict[str, Any]:
    gw = {"n": 2, "p50": g, "p95": g * 1.2, "max": g * 1.3}
    di = {"n": 2, "p50": d, "p95": d * 1.2, "max": d * 1.3}
    return {"gateway": gw, "direct": di, "added": {q: gw[q] - di[q] for q in ("p50", "p95", "max")}}


LATENCY: dict[str, Any] = {
    "date": "2026-12-06 16:00 UTC",
    "args": {"reps": 2, "turn_ms": 200, "barge_in_ms": 300},
    "vendors": [
        {
            "vendor": vendor,
            "metrics": {
                metric: _metric(g, d)
                for metric, (g, d) in {
                    "create_ready": (190.0, 17.0),
                    "first_audio_first_turn": (106.0, 12.0),
                    "first_audio": (11.0, 13.0),
                    "first_text": (2.1, 2.3),
                    "first_stream_text_after_text": (0.7, 0.2),
                    "interrupt_stop": (3.2, 2.2),
                    "interrupt_ack": (10.0, 3.9),
                }.items()
                if vendor != "zegocloud" or metric != "first_stream_text_after_text"
            },
        }
        for vendor in ("zegocloud", "tencent", "akool")
    ],
}

MULTI_TURN: dict[str, Any] = {
    "multi_turn": {
        "turn_every_s": 3.0,
        "rss_kib": {"start": 90000, "end": 91000, "max": 91500, "slope_kib_per_min": 12.5},
        "samples": [[3.0 * i, 90000 + 20 * i] for i in range(20)],
    }
}


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _check_png(path: Path) -> None:
    from PIL import Image

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert 300 <= width <= 3000 and 200 <= height <= 2000, (path, image.size)


def test_render_every_plot(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    files = plots.render(
        _write(tmp_path, "run_bench.json", RUN_BENCH),
        _write(tmp_path, "latency.json", LATENCY),
        _write(tmp_path, "multi.json", MULTI_TURN),
        out,
    )
    assert sorted(p.name for p in files) == [
        "latency_bench.png",
        "latency_multi_turn.png",
        "run_bench_cpu.png",
        "run_bench_latency.png",
    ]
    for path in files:
        assert path.parent == out
        _check_png(path)


def test_the_cli_skips_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latency = _write(tmp_path, "latency.json", LATENCY)
    code = plots.main(
        [
            "--run-bench",
            str(tmp_path / "absent.json"),
            "--latency",
            str(latency),
            "--multi-turn",
            str(tmp_path / "absent-too.json"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "absent.json not found" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["latency_bench.png"]
    _check_png(tmp_path / "out" / "latency_bench.png")
