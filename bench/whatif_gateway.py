"""Run ``python -m gateway serve`` with optional in-process patches, for what-if runs only.

``run_bench.py --what-if NAME[,NAME]`` starts the gateway through this file instead of
``-m gateway`` to measure the effect of a suggested fix before anyone edits ``gateway/`` or
``adapters/``. The patches live here, not in the product code; the default bench never
uses them and a what-if run does not update ``RESULTS.md``.

Patches:

* ``shared-tls``: one module-level client ``SSLContext`` for every ZEGO drive socket
  instead of ``ssl.create_default_context()`` per channel (which loads the system CA
  bundle, ~0.85 MiB and ~20 ms of CPU each, only to switch verification off).
* ``small-ssl-buffer``: ``asyncio.sslproto.SSLProtocol.max_size`` 256 KiB -> 32 KiB. The
  stdlib allocates (and zero-fills, so it is resident) one receive buffer of ``max_size``
  per TLS connection; a drive socket receives almost nothing.
* ``gc-log`` (diagnostic, changes nothing): print every garbage-collector pause of 1 ms or
  more, or of generation 2, to stderr (the gateway log) as
  ``GC_PAUSE gen=<g> ms=<ms> uptime_s=<s>``.
* ``gc-freeze``: ``gc.collect(); gc.freeze()`` once the server has started, so full
  collections no longer walk the start-up heap (grpc, protobuf, pydantic...).
* ``uvloop``: run the gateway's event loop on uvloop (must be importable, e.g. through
  ``PYTHONPATH``; it is not a project dependency).
* ``mem-probe`` (diagnostic): every 2 s print to stderr ``MEM_PROBE t=… rss_kib=…
  traced_kib=… malloc_kib=…`` (VmRSS; what ``tracemalloc`` traces; glibc ``mallinfo2``
  in-use bytes, which hold grpc core, OpenSSL and Python's objects over 512 B; the rest of RSS
  is pymalloc's arenas, code and fragmentation). The first SIGUSR1 starts ``tracemalloc``
  (``$MEM_PROBE_FRAMES`` frames, default 1), so only what is allocated afterwards is traced;
  every later one writes a snapshot to ``$MEM_PROBE_DIR/snap-<n>.pickle``. Send the first
  after the warm-up and the others during the window to see which code holds a stream's
  memory.
* ``malloc-tune``: glibc ``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` (a fixed threshold: every
  allocation of 128 KiB or more gets its own mapping, returned on free, instead of the
  dynamic threshold moving up after the first free and such blocks being carved from the
  heap, where reused pages stay resident; ``$MALLOC_MMAP_THRESHOLD_KIB``, 0 to leave it) and
  ``M_ARENA_MAX`` = ``$MALLOC_ARENAS`` (default 2, 0 to leave it) so grpc's threads do not
  each grow a heap of their own.
* ``tencent-no-deflate``: open the Tencent command channel with ``compression=None``. The
  adapter uses the websockets default, which offers permessage-deflate; the emulator (aiohttp)
  accepts it, so every SEND_AUDIO frame (~7 KB of base64 JSON per 160 ms) is deflated. Pair
  it with ``run_bench.py --tencent-direct-compression none`` for a like-for-like baseline.

Since commit 0d51451 ``shared-tls``, ``gc-freeze`` and ``uvloop`` are in the product (a
module-level TLS context, ``gc.freeze()`` after start, ``AVATAR_GATEWAY_EVENT_LOOP=uvloop`` by
default); ``shared-tls`` patches a function the adapter no longer calls per channel, so it is
a no-op now, and the other two repeat what the gateway already does.
``tencent-no-deflate`` repeats what the Tencent adapter does since it opens its command
channel with ``compression=None``, and ``malloc-tune`` with its defaults what ``serve`` does
since commit c17254a (``gateway/runtime.py``); ``malloc-tune`` stays to try other values.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable


def _shared_tls() -> None:
    import adapters.zegocloud.channel as channel

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    channel._insecure_tls = lambda: ctx  # type: ignore[attr-defined]


def _small_ssl_buffer() -> None:
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024


def _gc_log() -> None:
    import gc
    import time

    started = [0]
    t0 = time.monotonic()

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
            return
        ms = (time.perf_counter_ns() - started[0]) / 1e6
        if ms >= 1.0 or info.get("generation") == 2:
            print(
                f"GC_PAUSE gen={info.get('generation')} ms={ms:.2f} "
                f"uptime_s={time.monotonic() - t0:.1f}",
                file=sys.stderr,
            )

    gc.callbacks.append(callback)


def _gc_freeze() -> None:
    import gc

    from gateway.server import GatewayServer

    original = GatewayServer.start

    async def start(self: GatewayServer) -> None:
        await original(self)
        gc.collect()
        gc.freeze()

    GatewayServer.start = start  # type: ignore[method-assign]


def _uvloop() -> None:
    import asyncio

    import uvloop  # type: ignore[import-not-found]

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _tencent_no_deflate() -> None:
    import functools

    import adapters.tencent.channel as channel

    channel.connect = functools.partial(channel.connect, compression=None)  # type: ignore[assignment]


def _mem_probe() -> None:
    import ctypes
    import os
    import signal
    import threading
    import time
    import tracemalloc

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    out_dir = os.environ.get("MEM_PROBE_DIR", "/tmp")
    count = [0]

    def rss_kib() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def report() -> None:
        while True:
            info = libc.mallinfo2()
            traced, _peak = tracemalloc.get_traced_memory()  # (0, 0) until started
            print(
                f"MEM_PROBE t={time.monotonic():.1f} rss_kib={rss_kib()} "
                f"traced_kib={traced // 1024} malloc_kib={(info.uordblks + info.hblkhd) // 1024}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(2.0)

    def snapshot(_signum: int, _frame: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(int(os.environ.get("MEM_PROBE_FRAMES", "1")))
            print("MEM_PROBE tracing", file=sys.stderr, flush=True)
            return
        count[0] += 1
        path = os.path.join(out_dir, f"snap-{count[0]}.pickle")
        tracemalloc.take_snapshot().dump(path)
        print(f"MEM_PROBE snapshot {path}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR1, snapshot)
    threading.Thread(target=report, daemon=True).start()


def _malloc_tune() -> None:
    import ctypes
    import os

    libc = ctypes.CDLL("libc.so.6")
    m_mmap_threshold, m_arena_max = -3, -8
    threshold_kib = int(os.environ.get("MALLOC_MMAP_THRESHOLD_KIB", "128"))
    arenas = int(os.environ.get("MALLOC_ARENAS", "2"))
    if threshold_kib:
        libc.mallopt(m_mmap_threshold, threshold_kib * 1024)
    if arenas:
        libc.mallopt(m_arena_max, arenas)


PATCHES: dict[str, Callable[[], None]] = {
    "gc-log": _gc_log,
    "gc-freeze": _gc_freeze,
    "uvloop": _uvloop,
    "shared-tls": _shared_tls,
    "small-ssl-buffer": _small_ssl_buffer,
    "tencent-no-deflate": _tencent_no_deflate,
    "mem-probe": _mem_probe,
    "malloc-tune": _malloc_tune,
}


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        PATCHES[name]()
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
