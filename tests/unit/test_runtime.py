"""gateway.runtime.tune_malloc: glibc's mmap threshold and arena count, in a child process.

mallopt changes the whole process, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")

# A 256 KiB block (uvloop's SSL read buffer size) allocated after one of its size was freed:
# with glibc's dynamic threshold the second one comes from the heap (mallinfo2.hblks == 0
# while it is live); with the fixed threshold it has its own mapping (hblks == 1).
_CHILD = r"""
import ctypes, json, sys
from gateway.runtime import tune_malloc
done = tune_malloc() if sys.argv[1] == "tune" else {}
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(256 * 1024))
before = libc.mallinfo2().hblks
block = libc.malloc(256 * 1024)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"done": done, "mapped": mapped}))
"""


def _child(mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_without_tuning_a_reused_256_kib_block_comes_from_the_heap() -> None:
    assert _child("plain") == {"done": {}, "mapped": 0}


def test_tuned_256_kib_blocks_always_get_their_own_mapping() -> None:
    result = _child("tune")
    assert result["done"] == {"mmap_threshold_bytes": 128 * 1024, "arena_max": 2}
    assert result["mapped"] == 1


def test_operator_settings_are_left_alone() -> None:
    # The operator's 1 MiB threshold wins: the 256 KiB block stays in the heap.
    tunables = "glibc.malloc.mmap_threshold=1048576"
    env = {**os.environ, "MALLOC_ARENA_MAX": "4", "GLIBC_TUNABLES": tunables}
    assert _child("tune", env) == {"done": {}, "mapped": 0}
