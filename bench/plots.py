"""PNG plots of the benchmarks' raw results, linked from ``bench/RESULTS.md``.

From ``bench/run_bench.py``'s results (``bench/results/run_bench.json``, written with its
RESULTS.md block):

* ``run_bench_latency.png``: added latency per 20 ms chunk (ZEGOCLOUD) or 160 ms packet
  (Tencent), gateway − direct at p50 and p99, against the number of streams, one panel per
  vendor;
* ``run_bench_cpu.png``: gateway CPU per 20 ms of audio (µs; Tencent: per packet / 8)
  against streams, one line per vendor.

From ``bench/latency_bench.py``'s results (``bench/results/latency_bench.json``):

* ``latency_bench.png``: its table per vendor as bars, gateway and direct side by side at
  p50, with the p95 as a whisker, on a log scale (the metrics span 0.2 to 200 ms);
* ``latency_multi_turn.png`` (from ``bench/results/latency_multi_turn.json``, when a
  ``--multi-turn`` run saved one): the gateway's RSS at each turn.

A missing input is skipped with a note. Usage::

    .venv/bin/python bench/plots.py            # the default inputs, into bench/plots/
    .venv/bin/python bench/plots.py --run-bench run.json --latency lat.json --out /tmp/p

Rendering uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PLOTS_DIR = BENCH_DIR / "plots"
PACKET_CHUNKS = {"tencent": 8}  # 20 ms chunks per unit of run_bench's latency and CPU
LABELS = {
    "create_ready": "vendor ready → CreateSession",
    "first_audio_first_turn": "first audio, first turn",
    "first_audio": "first audio, later turn",
    "first_text": "whole text",
    "first_stream_text_after_text": "streamed text after text",
    "interrupt_stop": "barge-in → vendor stop",
    "interrupt_ack": "barge-in → interrupted",
    "interrupt_text_stop": "barge-in on text → vendor stop",
    "interrupt_text_ack": "barge-in on text → interrupted",
}
DPI = 100


def _levels(results: list[dict[str, Any]], vendor: str) -> list[int]:
    return sorted({r["n"] for r in results if r.get("vendor", "zegocloud") == vendor})


def _by(results: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r.get("vendor", "zegocloud"), r["path"], r["n"]): r for r in results}


def plot_run_bench(saved: dict[str, Any], out_dir: Path) -> list[Path]:
    """Added latency and gateway CPU against streams (``run_bench`` results); returns files.

    Args:
        saved: ``run_bench.py``'s ``results.json``: ``{"date", "command", "results": [{
            "vendor", "path": "direct"|"gateway", "n", "lat": {"p50", "p99"}, "relayed",
            "cpu_s": {"gateway"}}, ...]}`` (latencies in ms, CPU in s).
        out_dir: where the PNGs go (created if missing).
    """
    results = saved["results"]
    by = _by(results)
    vendors = [v for v in ("zegocloud", "tencent") if _levels(results, v)]
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if not vendors:
        return files
    fig, axes = plt.subplots(1, len(vendors), figsize=(5.5 * len(vendors), 4), squeeze=False)
    for ax, vendor in zip(axes[0], vendors, strict=True):
        levels = [
            n
            for n in _levels(results, vendor)
            if (vendor, "direct", n) in by and (vendor, "gateway", n) in by
        ]
        values: list[float] = []
        for q, style in (("p50", "o-"), ("p99", "s--")):
            added = [
                by[(vendor, "gateway", n)]["lat"][q] - by[(vendor, "direct", n)]["lat"][q]
                for n in levels
            ]
            values += added
            ax.plot(levels, added, style, label=f"added {q}")
        unit = "160 ms packet" if vendor == "tencent" else "20 ms chunk"
        ax.set_title(f"{vendor}: added latency per {unit}")
        ax.set_xlabel("streams")
        ax.set_ylabel("gateway − direct (ms)")
        ax.set_xscale("log")
        # Linear up to 1 ms, logarithmic above: sub-ms values and seconds of backlog both show.
        ax.set_yscale("symlog", linthresh=1.0)
        if values:
            ax.set_ylim(min(0.0, min(values) * 1.5), max(1.0, max(values)) * 2)
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"bench/run_bench.py, {saved.get('date', '')}", fontsize=9)
    fig.tight_layout()
    files.append(out_dir / "run_bench_latency.png")
    fig.savefig(files[-1], dpi=DPI)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ticks: set[int] = set()
    for vendor in vendors:
        levels, cpu = [], []
        for n in _levels(results, vendor):
            r = by.get((vendor, "gateway", n))
            if r is None or not r.get("relayed"):
                continue
            levels.append(n)
            cpu.append(r["cpu_s"]["gateway"] * 1e6 / r["relayed"] / PACKET_CHUNKS.get(vendor, 1))
        ax.plot(levels, cpu, "o-", label=vendor)
        ticks.update(levels)
    # At 1 stream the process's fixed costs (timers, keepalives) dominate the per-chunk share.
    ax.set_title("gateway CPU per 20 ms of audio")
    ax.set_xlabel("streams")
    ax.set_ylabel("µs of CPU")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [str(n) for n in sorted(ticks)])
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.suptitle(f"bench/run_bench.py, {saved.get('date', '')}", fontsize=9)
    fig.tight_layout()
    files.append(out_dir / "run_bench_cpu.png")
    fig.savefig(files[-1], dpi=DPI)
    plt.close(fig)
    return files


def plot_latency_bench(saved: dict[str, Any], out_dir: Path) -> list[Path]:
    """The latency bench's table per vendor as bars; returns the files written.

    Args:
        saved: ``latency_bench.py``'s JSON: ``{"date", "vendors": [{"vendor", "metrics":
            {metric: {"gateway": {"p50", "p95", "max"}, "direct": {...}}}}]}`` (ms).
        out_dir: where the PNG goes (created if missing).
    """
    vendors = saved.get("vendors") or []
    out_dir.mkdir(parents=True, exist_ok=True)
    if not vendors:
        return []
    fig, axes = plt.subplots(
        1, len(vendors), figsize=(5.2 * len(vendors), 4.6), squeeze=False, sharex=True
    )
    height = 0.38
    top = max(
        (
            s.get("p95", 0.0)
            for r in vendors
            for m in r["metrics"].values()
            for s in (m["gateway"], m["direct"])
        ),
        default=1.0,
    )
    for ax, result in zip(axes[0], vendors, strict=True):
        metrics = list(result["metrics"])
        for j, (path, colour) in enumerate((("gateway", "tab:red"), ("direct", "tab:blue"))):
            ys, p50, err = [], [], []
            for i, metric in enumerate(metrics):
                s = result["metrics"][metric][path]
                if "p50" not in s:
                    continue
                ys.append(i + (j - 0.5) * height)
                p50.append(max(s["p50"], 0.1))
                err.append(max(s["p95"] - s["p50"], 0.0))
            ax.barh(ys, p50, height=height, color=colour, alpha=0.8, label=f"{path} p50")
            ax.errorbar(
                p50,
                ys,
                xerr=[[0] * len(err), err],
                fmt="none",
                ecolor="black",
                capsize=2,
                elinewidth=0.8,
            )
        ax.set_yticks(range(len(metrics)), [LABELS.get(m, m) for m in metrics], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(0.1, max(top, 1.0) * 1.5)
        ax.set_xlabel("ms (bar p50, whisker p95)")
        ax.set_title(result["vendor"])
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"bench/latency_bench.py, {saved.get('date', '')}, "
        f"{saved.get('args', {}).get('reps', '?')} sessions per vendor and path",
        fontsize=9,
    )
    fig.tight_layout()
    path = out_dir / "latency_bench.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [path]


def plot_multi_turn(saved: dict[str, Any], out_dir: Path) -> list[Path]:
    """Gateway RSS at each turn of a ``--multi-turn`` run; returns the files written.

    Args:
        saved: ``latency_bench.py --multi-turn``'s JSON: ``{"multi_turn": {"samples":
            [[s since start, RSS KiB], ...], "rss_kib": {"slope_kib_per_min"}}}``.
        out_dir: where the PNG goes (created if missing).
    """
    m = saved.get("multi_turn")
    if not m or not m.get("samples"):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    t = [s[0] / 60 for s in m["samples"]]
    rss = [s[1] / 1024 for s in m["samples"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(t, rss, ".-")
    ax.set_xlabel("minutes")
    ax.set_ylabel("gateway RSS (MiB)")
    ax.set_title(
        f"ZEGOCLOUD, one session, a turn every {m['turn_every_s']:g} s: "
        f"{m['rss_kib']['slope_kib_per_min']:+.0f} KiB/min",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = out_dir / "latency_multi_turn.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [path]


def render(
    run_bench: Path | None, latency: Path | None, multi_turn: Path | None, out_dir: Path
) -> list[Path]:
    """Every plot whose input exists; returns the PNG files written."""
    files: list[Path] = []
    for source, plot in (
        (run_bench, plot_run_bench),
        (latency, plot_latency_bench),
        (multi_turn, plot_multi_turn),
    ):
        if source is None:
            continue
        if not source.exists():
            print(f"plots: {source} not found, skipped", file=sys.stderr)
            continue
        files += plot(json.loads(source.read_text()), out_dir)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-bench", type=Path, default=RESULTS_DIR / "run_bench.json")
    parser.add_argument("--latency", type=Path, default=RESULTS_DIR / "latency_bench.json")
    parser.add_argument("--multi-turn", type=Path, default=RESULTS_DIR / "latency_multi_turn.json")
    parser.add_argument("--out", type=Path, default=PLOTS_DIR)
    args = parser.parse_args(argv)
    for path in render(args.run_bench, args.latency, args.multi_turn, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
