"""``avatar-gateway`` command line: ``serve`` runs the gateway until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.runtime import tune_malloc
from gateway.server import GatewayServer
from gateway.vendors import VendorRegistry


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``avatar-gateway`` and ``python -m gateway``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="avatar-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC gateway (configured by AVATAR_GATEWAY_*)")
    serve.add_argument("--listen", help="override AVATAR_GATEWAY_LISTEN (host:port)")
    serve.add_argument("--sandbox", action="store_true", help="force sandbox mode")
    emulate = sub.add_parser(
        "emulate",
        help="run one vendor's emulator as a server (reads AVATAR_GATEWAY_<VENDOR>__*)",
        description="Flags override AVATAR_GATEWAY_EMULATOR__<OPTION> (docs/architecture.md §2.2).",
    )
    emulate.add_argument("vendor", help="vendor id, e.g. zegocloud, tencent, akool")
    emulate.add_argument("--listen", help="host:port to bind (default 127.0.0.1:0)")
    emulate.add_argument("--public-url", help="http(s)://host:port clients reach it by")
    emulate.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None)
    emulate.add_argument("--callback-url", help="where vendor callbacks go (ZEGOCLOUD)")
    emulate.add_argument("--internal-livekit-url", help="LiveKit URL its avatars join (Akool)")
    args = parser.parse_args(argv)
    if args.command == "emulate":
        return _emulate(args)
    settings = Settings()
    if args.listen:
        settings = settings.model_copy(update={"listen": args.listen})
    if args.sandbox:
        settings = settings.model_copy(update={"sandbox": True})
    configure_logging(settings.log_level, settings.log_format)
    vendors = VendorRegistry.discover(settings.plugin_modules)
    if vendors.sandbox_enabled(settings):
        # The first line says the mode, before anything else happens (issue: sandbox).
        structlog.get_logger("gateway").info(
            "sandbox_mode", message="no vendor credentials configured: serving in-process emulators"
        )
    tuned = tune_malloc()
    if tuned:
        structlog.get_logger("gateway").debug("malloc_tuned", **tuned)
    loop_factory = None
    if settings.event_loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(GatewayServer(settings, vendors=vendors).serve_forever())
    return 0


def _emulate(args: argparse.Namespace) -> int:
    """``avatar-gateway emulate``: logging as the gateway's, then :func:`gateway.emulate.main`."""
    from gateway import emulate

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    flags = ("listen", "public_url", "tls", "callback_url", "internal_livekit_url")
    overrides = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    return emulate.main(args.vendor, overrides, settings.plugin_modules)
