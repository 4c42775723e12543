"""Process-level tuning applied once by ``avatar-gateway serve`` before the server starts."""

from __future__ import annotations

import ctypes
import os
import platform

import structlog

log = structlog.get_logger("gateway.runtime")

# glibc <malloc.h>: mallopt parameters.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 * 1024
"""Allocations of this size or more get a mapping of their own (glibc's initial default)."""

ARENA_MAX = 2
"""malloc arenas for the whole process: the event loop plus grpc's few core threads."""


def tune_malloc() -> dict[str, int]:
    """Pin glibc malloc's mmap threshold and arena count; returns what was set.

    Why: every TLS drive socket (ZEGOCLOUD opens one per turn) gets a 256 KiB read buffer
    from uvloop's SSL protocol (``PyMem_RawMalloc``), of which a drive socket touches a few
    hundred bytes. glibc's *dynamic* mmap threshold rises to 256 KiB after the first such
    buffer is freed, after which these buffers are carved from the heap, where pages that
    earlier objects touched stay resident: with turns churning, resident memory can then
    grow by up to 256 KiB per open socket. A fixed threshold (setting it disables the dynamic one)
    keeps each buffer in its own mapping, resident only where written and unmapped on free.
    Two arenas instead of glibc's 8 per core stop grpc's threads from each keeping a heap
    with its own free space. Measured in bench/RESULTS.md (ZEGOCLOUD, 100 streams).

    Only on glibc; a setting the operator already made through ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES`` is left alone. Never raises: on failure the
    process runs with glibc's defaults (and logs why).
    """
    if platform.libc_ver()[0] != "glibc":
        return {}
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    wanted: dict[str, tuple[int, int]] = {}
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "mmap_threshold" not in tunables:
        wanted["mmap_threshold_bytes"] = (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
        wanted["arena_max"] = (_M_ARENA_MAX, ARENA_MAX)
    done: dict[str, int] = {}
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    except (OSError, AttributeError) as exc:
        log.warning("malloc_tuning_unavailable", error=str(exc))
        return done
    for name, (param, value) in wanted.items():
        if mallopt(param, value) == 1:
            done[name] = value
        else:
            log.warning("malloc_tuning_refused", setting=name, value=value)
    return done
