"""``avatar-gateway`` command line.

``serve`` runs the gateway until SIGTERM; ``health`` checks a running gateway's readiness on
its ops listener (the container image's ``HEALTHCHECK``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys

import structlog
from pydantic import ValidationError

from core.settings import SettingsFileError
from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.runtime import tune_malloc

EXIT_CONFIGURATION = 2
"""Exit code of ``serve`` when the configuration leaves nothing to serve."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``avatar-gateway`` and ``python -m gateway``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="avatar-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC gateway (configured by AVATAR_GATEWAY_*)")
    serve.add_argument("--listen", help="override AVATAR_GATEWAY_LISTEN (host:port)")
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="serve the in-process vendor emulators instead of the vendors' clouds",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="gateway processes on the same ports (override AVATAR_GATEWAY_WORKERS; default: "
        "the CPUs available; more than 1 needs AVATAR_GATEWAY_REDIS_URL)",
    )
    # Set by the supervisor of --workers N for each worker it starts (gateway/supervisor.py).
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
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
    health = sub.add_parser(
        "health",
        help="exit 0 if the gateway's /healthz answers 200 (ready; container healthchecks)",
    )
    health.add_argument(
        "--target",
        help="ops listener host:port (default: AVATAR_GATEWAY_OPS_LISTEN on loopback)",
    )
    health.add_argument("--timeout", type=float, default=3.0, help="deadline in seconds")
    args = parser.parse_args(argv)
    if args.command == "health":
        return _health(args.target, args.timeout)
    if args.command == "emulate":
        return _emulate(args)
    if importlib.util.find_spec("avatar.gateway.v1") is None:
        # The server ships without the generated code, which is the client package of this
        # repository (never fetched from the public index by name).
        print(
            "avatar-gateway: the generated API package avatar.gateway.v1 is not installed; "
            "install it from this repository: pip install ./clients/python",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION
    try:
        settings = Settings()
    except (ValidationError, SettingsFileError) as exc:
        print(f"avatar-gateway: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIGURATION
    if args.listen:
        settings = settings.model_copy(update={"listen": args.listen})
    if args.sandbox:
        settings = settings.model_copy(update={"sandbox": True})
    worker: int | None = args.worker_index
    # Why one process serves although more CPUs are available (no Redis, sandbox), if so.
    single_reason: str | None = None
    if worker is not None:
        from gateway.supervisor import die_with_parent

        die_with_parent()
        configure_logging(settings.log_level, settings.log_format, fields={"worker": worker})
    else:
        configure_logging(settings.log_level, settings.log_format)
        from gateway.workers import WorkersConfigError, resolve_workers

        try:
            count = resolve_workers(settings, args.workers)
        except WorkersConfigError as exc:
            structlog.get_logger("gateway").error("gateway_not_started", reason=str(exc))
            return EXIT_CONFIGURATION
        if count.count > 1:
            from gateway import supervisor

            return supervisor.run(settings, count)
        if count.fallback:
            single_reason = count.reason
    # Imported here, after the check above, so a missing API package gets its one line.
    from gateway.auth import JwksError, KeysFileError
    from gateway.server import GatewayServer, TransportConfigError
    from gateway.tls import TlsConfigError
    from gateway.tracing import TracingConfigError
    from gateway.vendors import PluginError, VendorRegistry

    log = structlog.get_logger("gateway")
    vendors = VendorRegistry.discover(settings.plugin_modules)
    server = GatewayServer(settings, vendors=vendors, worker=worker)
    try:
        server.check_configuration()
    except (
        PluginError,
        ValidationError,
        SettingsFileError,
        KeysFileError,
        JwksError,
        TransportConfigError,
        TlsConfigError,
        TracingConfigError,
    ) as exc:
        # One line that names what to set; a traceback would bury it.
        log.error("gateway_not_started", reason=_one_line(exc))
        return EXIT_CONFIGURATION
    if single_reason is not None:
        log.info("workers", workers=1, reason=single_reason)
    tuned = tune_malloc()
    if tuned:
        structlog.get_logger("gateway").debug("malloc_tuned", **tuned)
    loop_factory = None
    if settings.event_loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(server.serve_forever())
        except PluginError as exc:
            log.error("gateway_not_started", reason=_one_line(exc))
            return EXIT_CONFIGURATION
    return 0


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _health(target: str | None, timeout_s: float) -> int:
    """``GET /healthz`` on the ops listener: 0 when 200 (serving, not draining), else 1.

    The image's ``HEALTHCHECK`` and compose healthchecks run it; Kubernetes probes the same
    path itself. HTTP on the internal listener rather than gRPC health: the gRPC port may
    require TLS and client certificates that a probe does not have.
    """
    import httpx

    if target is None:
        host, _, port = Settings().ops_listen.rpartition(":")
        # A wildcard bind is reachable on loopback; a specific address only on itself.
        host = "127.0.0.1" if host.strip("[]") in ("", "0.0.0.0", "::") else host
        target = f"{host}:{port}"
    try:
        response = httpx.get(f"http://{target}/healthz", timeout=timeout_s)
    except httpx.HTTPError as exc:
        print(f"{target}: {type(exc).__name__} {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"{target}: {response.status_code} {response.text.strip()}", file=sys.stderr)
        return 1
    return 0


def _emulate(args: argparse.Namespace) -> int:
    """``avatar-gateway emulate``: logging as the gateway's, then :func:`gateway.emulate.main`."""
    from gateway import emulate

    try:
        settings = Settings()
    except (ValidationError, SettingsFileError) as exc:
        print(f"avatar-gateway: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIGURATION
    configure_logging(settings.log_level, settings.log_format)
    flags = ("listen", "public_url", "tls", "callback_url", "internal_livekit_url")
    overrides = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    return emulate.main(args.vendor, overrides, settings.plugin_modules)
