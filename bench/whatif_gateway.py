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
* ``tencent-no-deflate``: open the Tencent command channel with ``compression=None``. The
  adapter uses the websockets default, which offers permessage-deflate; the emulator (aiohttp)
  accepts it, so every SEND_AUDIO frame (~7 KB of base64 JSON per 160 ms) is deflated. Pair
  it with ``run_bench.py --tencent-direct-compression none`` for a like-for-like baseline.

Since commit 0d51451 ``shared-tls``, ``gc-freeze`` and ``uvloop`` are in the product (a
module-level TLS context, ``gc.freeze()`` after start, ``AVATAR_GATEWAY_EVENT_LOOP=uvloop`` by
default); ``shared-tls`` patches a function the adapter no longer calls per channel, so it is
a no-op now, and the other two repeat what the gateway already does.
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


PATCHES: dict[str, Callable[[], None]] = {
    "gc-log": _gc_log,
    "gc-freeze": _gc_freeze,
    "uvloop": _uvloop,
    "shared-tls": _shared_tls,
    "small-ssl-buffer": _small_ssl_buffer,
    "tencent-no-deflate": _tencent_no_deflate,
}


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        PATCHES[name]()
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
