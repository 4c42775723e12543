"""How many workers ``serve`` runs: CPU affinity, cgroup quotas (files in a temp dir), Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import workers
from gateway.config import Settings
from gateway.workers import (
    WorkerCount,
    WorkersConfigError,
    available_cpus,
    cgroup_cpu_quota,
    resolve_workers,
)


def v2(tmp_path: Path, relative: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 tree: ``files`` maps a directory (relative to the root) to its cpu.max."""
    root = tmp_path / "cgroup"
    for directory, cpu_max in files.items():
        d = root / directory.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(cpu_max + "\n")
    (root / relative.strip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::{relative}\n")
    return root, proc


def test_v2_quota_in_cpus(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, "/", {"/": "150000 100000"})
    assert cgroup_cpu_quota(root, proc) == 1.5


def test_v2_max_is_no_limit(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, "/", {"/": "max 100000"})
    assert cgroup_cpu_quota(root, proc) is None


def test_v2_smallest_quota_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, proc = v2(
        tmp_path,
        "/kubepods/pod1/ctr",
        {
            "/kubepods": "400000 100000",
            "/kubepods/pod1": "250000 100000",
            "/kubepods/pod1/ctr": "max 100000",
        },
    )
    assert cgroup_cpu_quota(root, proc) == 2.5


def test_v2_path_missing_under_the_mount_falls_back_to_its_root(tmp_path: Path) -> None:
    # A cgroup namespace: /proc/self/cgroup names a host path the container does not see.
    root, proc = v2(tmp_path, "/", {"/": "50000 100000"})
    proc.write_text("0::/host/only/path\n")
    assert cgroup_cpu_quota(root, proc) == 0.5


def test_malformed_or_missing_files_are_no_limit(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, "/", {"/": "garbage"})
    assert cgroup_cpu_quota(root, proc) is None
    assert cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "nothing-either") is None


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    d = root / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("300000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_quota(root, proc) == 3.0
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(root, proc) is None


def test_available_cpus_rounds_the_quota_up_and_never_exceeds_the_affinity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    root, proc = v2(tmp_path, "/", {"/": "150000 100000"})
    assert available_cpus(root, proc) == WorkerCount(2, "cgroup CPU quota 1.5 CPUs, rounded up")
    (root / "cpu.max").write_text("800000 100000\n")
    assert available_cpus(root, proc) == WorkerCount(4, "4 CPUs in the process's affinity")
    (root / "cpu.max").write_text("10000 100000\n")  # 0.1 CPU: still one worker
    assert available_cpus(root, proc).count == 1


def settings(**overrides: object) -> Settings:
    return Settings.model_validate({"plaintext": True, **overrides})


def test_default_is_the_cpus_with_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: WorkerCount(4, "4 CPUs"))
    count = resolve_workers(settings(redis_url="redis://r:6379/0"))
    assert count == WorkerCount(4, "4 CPUs")


def test_default_falls_back_to_one_without_redis_or_in_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: WorkerCount(4, "4 CPUs"))
    count = resolve_workers(settings())
    assert count.count == 1 and count.fallback and "AVATAR_GATEWAY_REDIS_URL" in count.reason
    count = resolve_workers(settings(sandbox=True, redis_url="redis://r:6379/0"))
    assert count.count == 1 and count.fallback and "sandbox" in count.reason
    monkeypatch.setattr(workers, "available_cpus", lambda: WorkerCount(1, "1 CPU"))
    assert not resolve_workers(settings()).fallback  # one CPU: nothing to say


def test_explicit_count_wins_and_needs_redis_beyond_one() -> None:
    assert resolve_workers(settings(workers=3, redis_url="redis://r/0")).count == 3
    assert resolve_workers(settings(redis_url="redis://r/0"), 2) == WorkerCount(2, "--workers=2")
    assert resolve_workers(settings(workers=4), 1).count == 1  # the flag wins over the setting
    with pytest.raises(WorkersConfigError, match="AVATAR_GATEWAY_WORKERS=2.*REDIS_URL"):
        resolve_workers(settings(workers=2))
    with pytest.raises(WorkersConfigError, match="--workers=2.*sandbox"):
        resolve_workers(settings(sandbox=True, redis_url="redis://r/0"), 2)
    with pytest.raises(WorkersConfigError, match="at least 1"):
        resolve_workers(settings(), 0)


def test_workers_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_GATEWAY_WORKERS", "3")
    assert Settings().workers == 3
    monkeypatch.setenv("AVATAR_GATEWAY_WORKERS", "0")
    with pytest.raises(ValueError):
        Settings()


def test_merged_exposition_has_each_family_once_with_every_workers_samples() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.supervisor import merge_expositions

    texts = []
    for worker in range(2):
        registry = CollectorRegistry()
        calls = Counter("calls", "Calls.", ["method"], registry=registry)
        calls.labels("Drive").inc(worker + 1)
        Histogram("lag_seconds", "Lag.", registry=registry).observe(0.01 * (worker + 1))
        texts.append((str(worker), generate_latest(registry).decode()))
    merged = merge_expositions(texts).decode()
    assert merged.count("# TYPE calls_total counter") == 1
    assert merged.count("# TYPE lag_seconds histogram") == 1
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    totals = {
        s.labels["worker"]: s.value for s in families["calls"].samples if s.name == "calls_total"
    }
    assert totals == {"0": 1.0, "1": 2.0}
    counts = [s for s in families["lag_seconds"].samples if s.name == "lag_seconds_count"]
    assert sorted(s.labels["worker"] for s in counts) == ["0", "1"]
    assert merge_expositions([]) == b""


def test_unix_addresses() -> None:
    from gateway.workers import unix_socket_path

    assert unix_socket_path("unix:/run/ops.sock") == "/run/ops.sock"
    assert unix_socket_path("unix:@avatar-gateway-1/worker-0") == "\0avatar-gateway-1/worker-0"
