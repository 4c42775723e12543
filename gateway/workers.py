"""How many worker processes ``avatar-gateway serve`` runs (docs/architecture.md §4.5).

One gateway process drives its streams from one event loop, so it uses one core. ``serve
--workers N`` (``AVATAR_GATEWAY_WORKERS``) runs N of them in the pod under a supervisor
(:mod:`gateway.supervisor`); each worker is a replica of its own sharing the session
registry, so N > 1 needs Redis. Unset, N is the CPUs available to the process: its CPU
affinity (``sched_getaffinity``), capped by the cgroup's CPU quota rounded up (cgroup v2
``cpu.max``; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), which is what a Kubernetes CPU
limit sets (kernel docs: Documentation/admin-guide/cgroup-v2.rst, "cpu.max").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Settings

UNIX_PREFIX = "unix:"
"""An ops listen address of this form is a unix socket (a worker's, gateway/supervisor.py):
``unix:<path>``, or ``unix:@<name>`` in Linux's abstract namespace (no file to clean up)."""

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


class WorkersConfigError(ValueError):
    """``AVATAR_GATEWAY_WORKERS`` asks for what this configuration cannot serve."""


@dataclass(frozen=True)
class WorkerCount:
    """The number of worker processes and the reason, for the supervisor's first log line."""

    count: int
    reason: str
    fallback: bool = False
    """One worker although more CPUs are available (no Redis, or sandbox mode)."""


def unix_socket_path(address: str) -> str:
    r"""The socket path of a ``unix:`` address; ``unix:@<name>`` gives ``"\0<name>"``."""
    path = address.removeprefix(UNIX_PREFIX)
    return "\0" + path[1:] if path.startswith("@") else path


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_dirs(root: Path, relative: str) -> list[Path]:
    """The cgroup directory of this process under ``root`` and its ancestors up to ``root``.

    A limit on any ancestor applies too. Inside a cgroup namespace (containers) the path in
    /proc/self/cgroup is ``/`` and ``root`` itself is the container's cgroup; a path that
    does not exist under ``root`` (a namespace mounted differently) falls back to ``root``.
    """
    here = root / relative.strip("/")
    if not here.is_dir():
        return [root]
    dirs = [here]
    while here != root and root in here.parents:
        here = here.parent
        dirs.append(here)
    return dirs


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or ``None`` if unlimited.

    cgroup v2: ``cpu.max`` is ``"<quota_us> <period_us>"`` or ``"max <period_us>"``. cgroup v1
    (the ``cpu`` controller's hierarchy, e.g. ``cpu,cpuacct``): ``cpu.cfs_quota_us`` (-1:
    unlimited) over ``cpu.cfs_period_us``. The smallest quota of the cgroup and its
    ancestors wins. Unreadable or malformed files count as no limit.
    """
    lines = (_read(proc_self_cgroup) or "").splitlines()
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":  # "0::/path": the unified (v2) hierarchy
            for d in _cgroup_dirs(cgroup_root, relative):
                fields = (_read(d / "cpu.max") or "").split()
                if len(fields) == 2 and fields[0] != "max":
                    try:
                        quota, period = int(fields[0]), int(fields[1])
                    except ValueError:
                        continue
                    if quota > 0 and period > 0:
                        quotas.append(quota / period)
        elif "cpu" in controllers.split(","):
            mount = cgroup_root / controllers
            if not mount.is_dir():
                mount = cgroup_root / "cpu"
            for d in _cgroup_dirs(mount, relative):
                try:
                    quota = int(_read(d / "cpu.cfs_quota_us") or "-1")
                    period = int(_read(d / "cpu.cfs_period_us") or "0")
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    quotas.append(quota / period)
    return min(quotas) if quotas else None


def available_cpus(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> WorkerCount:
    """The CPUs this process may use: affinity, capped by the cgroup quota rounded up; ≥ 1.

    A quota of 1.5 CPUs gives 2: the second worker gets the half CPU the first cannot use.
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = affinity or os.cpu_count() or 1
    reason = f"{cpus} CPUs in the process's affinity"
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None and math.ceil(quota) < cpus:
        cpus = max(1, math.ceil(quota))
        reason = f"cgroup CPU quota {quota:g} CPUs, rounded up"
    return WorkerCount(max(1, cpus), reason)


def resolve_workers(settings: Settings, explicit: int | None = None) -> WorkerCount:
    """How many workers ``serve`` runs: ``explicit`` (``--workers``), else the setting, else CPUs.

    Without a shared registry (``AVATAR_GATEWAY_REDIS_URL``) the workers could not see each
    other's sessions, and the sandbox's emulators live inside one process: both serve with
    one worker by default.

    Raises:
        WorkersConfigError: more than one worker asked for explicitly without Redis, or in
            sandbox mode.
    """
    asked = explicit if explicit is not None else settings.workers
    source = "--workers" if explicit is not None else "AVATAR_GATEWAY_WORKERS"
    if asked is not None:
        if asked < 1:
            raise WorkersConfigError(f"{source}={asked}: at least 1")
        if asked > 1 and settings.sandbox:
            raise WorkersConfigError(
                f"{source}={asked}: sandbox mode runs the vendor emulators inside the one "
                "gateway process; serve it with 1 worker"
            )
        if asked > 1 and not settings.redis_url:
            raise WorkersConfigError(
                f"{source}={asked}: workers share sessions through the registry; set "
                "AVATAR_GATEWAY_REDIS_URL, or serve with 1 worker"
            )
        return WorkerCount(asked, f"{source}={asked}")
    cpus = available_cpus()
    if cpus.count > 1 and settings.sandbox:
        reason = f"{cpus.reason}, but 1 worker in sandbox mode (in-process emulators)"
        return WorkerCount(1, reason, True)
    if cpus.count > 1 and not settings.redis_url:
        return WorkerCount(
            1,
            f"{cpus.reason}, but 1 worker: no shared registry (AVATAR_GATEWAY_REDIS_URL) for "
            "workers to share sessions",
            True,
        )
    return WorkerCount(cpus.count, cpus.reason)
