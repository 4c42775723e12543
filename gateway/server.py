"""Process assembly: gRPC server, the ops and callbacks HTTP listeners, sandbox, SIGTERM.

The gRPC server carries TLS (gateway/tls.py), authentication (gateway/auth.py), health and
reflection; the internal ops listener /metrics, /healthz, /livez (and /sandbox in sandbox
mode); the public callbacks listener only the vendors' callbacks (docs/security.md §1).

Graceful shutdown (architecture.md §6): health goes NOT_SERVING, every open Drive stream gets
``go_away``, ``server.stop(grace)`` lets streams finish within the grace period, then the
vendor sessions this process owns are closed (in-memory registry) and the emulators stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
import time
from typing import Any

import grpc
import structlog
from aiohttp import web
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.contract import VendorAdapter
from core.plugin import VendorSettings
from core.resilience import MemoryRateLimitStorage
from gateway import metrics, tracing
from gateway.admission import Overload
from gateway.auth import ApiKeys, AuthInterceptor, JwksError, JwtVerifier
from gateway.callbacks import MAX_CALLBACK_BYTES, CallbackRouter
from gateway.config import Settings
from gateway.inbox import ReplicaInbox
from gateway.ratelimit import RedisRateLimitStorage
from gateway.registry import MemoryRegistry, RedisRegistry, SessionRegistry
from gateway.rpc_metrics import RpcMetricsInterceptor
from gateway.sandbox import Sandbox
from gateway.servicer import AvatarGatewayServicer, refused
from gateway.sessions import SessionManager
from gateway.tls import ServerTls
from gateway.vendors import PluginError, VendorRegistry
from gateway.workers import UNIX_PREFIX, unix_socket_path

log = structlog.get_logger("gateway.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvatarGateway"].full_name

# Long Drive streams must not be cut by connection age; keepalive finds dead clients.
GRPC_SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    ("grpc.max_receive_message_length", 1024 * 1024),
    # BDP probing grows the HTTP/2 window to megabytes, letting a client push tens of
    # seconds of audio ahead; with fixed default windows flow control holds it near the
    # documented bound (tests/integration/test_client_faults.py).
    ("grpc.http2.bdp_probe", 0),
    ("grpc.so_reuseport", 0),
]


def _split_hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class TransportConfigError(ValueError):
    """The gRPC transport is not chosen: no certificate and plaintext not asked for, or both."""


class GatewayServer:
    """One gateway process: start, serve, drain, stop.

    Args:
        settings: configuration; listen addresses may use port 0 (tests).
        registry: session registry (default: in memory).
        vendors: the vendor plugins (default: discovered, plus ``settings.plugins``).
        worker: this process's index when it is one of ``serve --workers N`` (N > 1): the
            gRPC and callbacks ports are then bound with ``SO_REUSEPORT``, shared with the
            other workers (the kernel spreads new connections over them). ``None``: the
            only process; a second one on the same port fails to bind.
    """

    def __init__(
        self,
        settings: Settings,
        registry: SessionRegistry | None = None,
        vendors: VendorRegistry | None = None,
        worker: int | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.vendors = vendors or VendorRegistry.discover(settings.plugin_modules)
        if registry is None:
            registry = (
                RedisRegistry(settings.redis_url, retention_s=settings.session_retention_s)
                if settings.redis_url
                else MemoryRegistry(retention_s=settings.session_retention_s)
            )
        self.registry = registry
        # Vendor rate limits are per vendor account: with Redis, every replica counts in one
        # window (gateway/ratelimit.py); without, each adapter counts in this process.
        self.rate_limits = RedisRateLimitStorage(settings.redis_url) if settings.redis_url else None
        self.sandbox: Sandbox | None = None
        self.adapters: dict[str, VendorAdapter] = {}
        self.manager: SessionManager | None = None
        self.servicer: AvatarGatewayServicer | None = None
        self.server: grpc.aio.Server | None = None
        # grpc_health attaches the asyncio servicer as ``health.aio`` at import time.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.grpc_port = 0
        self.ops_port = 0
        self.callbacks_port = 0
        self._runners: list[web.AppRunner] = []
        self._callback_limits = MemoryRateLimitStorage()
        self._callback_count = 0
        self.tls: ServerTls | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.callbacks: CallbackRouter | None = None
        self.api_keys: ApiKeys | None = None
        self.jwt_verifier: JwtVerifier | None = None
        self.inbox: ReplicaInbox | None = None
        self._vendor_settings: dict[str, VendorSettings] | None = None
        self._loop_monitor: asyncio.Task[None] | None = None
        self._drain_started: float | None = None
        self._health_lock = asyncio.Lock()
        self._health_updates: set[asyncio.Future[None]] = set()

    @property
    def grpc_target(self) -> str:
        """``host:port`` clients dial."""
        host, _ = _split_hostport(self.settings.listen)
        return f"{host}:{self.grpc_port}"

    @property
    def ops_url(self) -> str:
        """Base URL of the internal ops listener (/metrics, /healthz, /livez, /sandbox).

        ``unix:<path>`` when it listens on a unix socket (a worker's, gateway/supervisor.py).
        """
        if self.settings.ops_listen.startswith(UNIX_PREFIX):
            return self.settings.ops_listen
        host, _ = _split_hostport(self.settings.ops_listen)
        return f"http://{host}:{self.ops_port}"

    @property
    def callbacks_url(self) -> str:
        """Base URL of the public callbacks listener (/callbacks/<vendor>)."""
        host, _ = _split_hostport(self.settings.callbacks_listen)
        return f"http://{host}:{self.callbacks_port}"

    @property
    def transport(self) -> str:
        """``"mtls"``, ``"tls"`` or ``"plaintext"``: how the gRPC port is served."""
        return self.tls.mode if self.tls is not None else "plaintext"

    async def start(self) -> None:
        """Start the ops listener, the sandbox (if enabled), the adapters and gRPC."""
        settings = self.settings
        sandbox = settings.sandbox
        vendor_settings = self.check_configuration()
        if isinstance(self.registry, RedisRegistry):
            try:
                await self.registry.migrate()
            except Exception as exc:  # Redis down at start: serve; the next start migrates
                log.warning("registry_migration_failed", error=type(exc).__name__)
        # Before anything calls a vendor: the REST calls of the sandbox and adapters are traced.
        tracing.start_tracing()
        await self._start_http()
        if sandbox:
            self.sandbox = Sandbox(settings.public_url or self.callbacks_url)
            try:
                vendor_settings = await self.sandbox.start(
                    self.vendors, settings.sandbox_vendor_ids, vendor_settings
                )
            except PluginError:
                await self._http_cleanup()
                raise
            settings = settings.model_copy(update={"vendors": vendor_settings})
            self.settings = settings
        self.adapters = self.vendors.build_adapters(
            vendor_settings, sandbox=sandbox, rate_limits=self.rate_limits
        )
        self.manager = SessionManager(
            settings,
            self.adapters,
            self.registry,
            self.vendors,
            quota_storage=self.rate_limits,
        )
        # The liveness lease first: a session created here must never look orphaned.
        await self.manager.start_leases()
        self.callbacks = CallbackRouter(
            self.registry,
            self.manager.owner,
            [(v, route) for v, a in self.adapters.items() for route in a.callback_routes()],
        )
        self.inbox = ReplicaInbox(
            self.registry,
            self.manager.owner,
            {"callback": self.callbacks.apply_forwarded, "release": self.manager.release_requested},
        )
        self.inbox.start()
        self.servicer = AvatarGatewayServicer(self.manager)
        # Metrics first: it wraps the others, so calls they refuse are counted too; then
        # tracing, so a call the authentication refuses still has its server span.
        interceptors: list[grpc.aio.ServerInterceptor] = [  # type: ignore[type-arg]
            RpcMetricsInterceptor(),
            *tracing.server_interceptors(),
        ]
        if self.api_keys is not None or self.jwt_verifier is not None:
            interceptors.append(AuthInterceptor(self.api_keys, self.jwt_verifier, refused))
        options = GRPC_SERVER_OPTIONS
        if self.worker is not None:
            # Replaced, not appended: of two values for one key grpc keeps the first.
            options = [(k, 1 if k == "grpc.so_reuseport" else v) for k, v in GRPC_SERVER_OPTIONS]
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        pb_grpc.add_AvatarGatewayServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
            )
        if self.tls is not None:
            self.grpc_port = self.server.add_secure_port(settings.listen, self.tls.credentials())
        else:
            self.grpc_port = self.server.add_insecure_port(settings.listen)
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.manager.start_reaper()
        metrics.SHUTDOWN_GRACE.set(settings.shutdown_grace_s)
        metrics.add_live_source(self.live_state)
        admission = self.manager.admission
        admission.on_change = self._overload_changed
        self._loop_monitor = asyncio.create_task(
            admission.run(self._largest_backlog_ms), name="capacity-monitor"
        )
        # Move the start-up heap (grpc, protobuf, pydantic, structlog...) out of the
        # collector's reach: full collections over it paused every stream for 12-84 ms
        # (bench/RESULTS.md); afterwards they take ~3 ms.
        gc.collect()
        gc.freeze()
        log.info(
            "gateway_started",
            listen=self.grpc_target,
            transport=self.transport,
            ops=self.ops_url,
            callbacks=self.callbacks_url,
            replica=self.manager.owner,
            **({"worker": self.worker} if self.worker is not None else {}),
            sandbox=sandbox,
            vendors=sorted(self.adapters),
            emulators=self.sandbox.describe() if self.sandbox else {},
        )

    def check_configuration(self) -> dict[str, VendorSettings]:
        """Read every vendor's settings and log the mode and the live vendors with their URLs.

        Called by :meth:`start` (once; ``serve`` calls it first, so that this is the process's
        first log line). Before anything listens: a pod whose Secret did not mount must
        fail, not serve.

        Returns:
            Every vendor's settings, by vendor id.

        Raises:
            NoVendorConfigured: production mode and no vendor has complete credentials.
            TracingConfigError: an ``OTEL_*`` variable names an exporter or protocol the
                gateway does not ship (gateway/tracing.py).
            TransportConfigError: production mode with neither a TLS certificate nor
                ``plaintext``; or both; or a key without a certificate.
            TlsConfigError: the TLS files cannot be used.
            pydantic.ValidationError, core.settings.SettingsFileError: a setting is invalid.
        """
        if self._vendor_settings is not None:
            return self._vendor_settings
        vendor_settings = self.vendors.vendor_settings(self.settings)
        tracing.exporter_names()
        self.tls = self._server_tls()
        if self.settings.api_keys_file:
            self.api_keys = ApiKeys(
                self.settings.api_keys_file,
                max_sessions=self.settings.tenant_max_sessions,
                creates_per_minute=self.settings.tenant_creates_per_minute,
            )
        if self.settings.jwt_jwks:
            self.jwt_verifier = self._jwt_verifier()
        methods = [
            name
            for name, on in (("api_keys", self.api_keys), ("jwt", self.jwt_verifier))
            if on is not None
        ]
        authentication = ",".join(methods) or "none"
        if self.settings.sandbox:
            log.warning(
                "sandbox_mode",
                message="serving in-process vendor emulators, not the vendors' clouds"
                + ("; open to anyone who reaches the port" if not methods else ""),
                vendors=self.settings.sandbox_vendor_ids,
                transport=self.transport,
                authentication=authentication,
            )
            self._vendor_settings = vendor_settings
            return vendor_settings
        offered = self.vendors.require_offered(vendor_settings)
        log.info(
            "vendors_live",
            mode="production",
            vendors={vendor: vendor_settings[vendor].endpoints() for vendor in offered},
            transport=self.transport,
            authentication=authentication,
        )
        if self.tls is None:
            log.warning(
                "plaintext_grpc",
                message="gRPC without TLS (AVATAR_GATEWAY_PLAINTEXT): credentials and playback "
                "secrets cross the network in clear; only behind a mesh or on a trusted link",
            )
        if not methods:
            log.warning(
                "authentication_disabled",
                message="anyone who reaches the gRPC port can create billed vendor sessions; "
                "set AVATAR_GATEWAY_API_KEYS_FILE (docs/security.md)",
            )
        for vendor, vs in vendor_settings.items():
            if vs.partially_configured:
                log.warning(
                    "vendor_not_offered",
                    vendor=vendor,
                    reason=f"credentials incomplete: set {vs.required_variables()}",
                )
        self._vendor_settings = vendor_settings
        return vendor_settings

    def _server_tls(self) -> ServerTls | None:
        """The TLS credentials the settings name; ``None`` for plaintext.

        Raises:
            TransportConfigError, TlsConfigError: as :meth:`check_configuration` says.
        """
        s = self.settings
        if bool(s.tls_cert_file) != bool(s.tls_key_file):
            raise TransportConfigError(
                "AVATAR_GATEWAY_TLS_CERT_FILE and AVATAR_GATEWAY_TLS_KEY_FILE go together"
            )
        if s.tls_cert_file and s.tls_key_file:
            if s.plaintext:
                raise TransportConfigError(
                    "AVATAR_GATEWAY_PLAINTEXT=true contradicts AVATAR_GATEWAY_TLS_CERT_FILE"
                )
            return ServerTls(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
        if s.tls_client_ca_file:
            raise TransportConfigError(
                "AVATAR_GATEWAY_TLS_CLIENT_CA_FILE needs AVATAR_GATEWAY_TLS_CERT_FILE and _KEY_FILE"
            )
        if not s.plaintext and not s.sandbox:
            raise TransportConfigError(
                "no TLS certificate: set AVATAR_GATEWAY_TLS_CERT_FILE and "
                "AVATAR_GATEWAY_TLS_KEY_FILE, or AVATAR_GATEWAY_PLAINTEXT=true to serve "
                "gRPC without TLS (docs/security.md §5)"
            )
        return None

    def _jwt_verifier(self) -> JwtVerifier:
        """The JWT verifier the settings describe.

        Raises:
            JwksError: issuer or audience unset (a token for any audience would do), or
                the JWKS file cannot be used.
        """
        s = self.settings
        assert s.jwt_jwks is not None
        if not s.jwt_issuer or not s.jwt_audience:
            raise JwksError(
                "AVATAR_GATEWAY_JWT_JWKS needs AVATAR_GATEWAY_JWT_ISSUER and "
                "AVATAR_GATEWAY_JWT_AUDIENCE (tokens of any issuer or audience would pass)"
            )
        return JwtVerifier(
            s.jwt_jwks,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            tenant_claim=s.jwt_tenant_claim,
            roles_claim=s.jwt_roles_claim,
            leeway_s=s.jwt_leeway_s,
            max_sessions=s.tenant_max_sessions,
            creates_per_minute=s.tenant_creates_per_minute,
        )

    async def _start_http(self) -> None:
        """Start the internal ops listener and the public callbacks listener."""

        async def healthz(_: web.Request) -> web.Response:
            # Readiness: 503 until gRPC serves and from the first moment of a drain, so a
            # probe or load balancer stops sending new work before the streams are told.
            if self._stopping is not None:
                return web.json_response({"status": "draining"}, status=503)
            if self.server is None or self.manager is None:
                return web.json_response({"status": "starting"}, status=503)
            overload = self.manager.admission.overload
            if overload is not None:
                # Past capacity (gateway/admission.py): new work belongs on another replica.
                return web.json_response(
                    {"status": "overloaded", **overload.metadata()}, status=503
                )
            return web.json_response({"status": "ok"})

        async def livez(_: web.Request) -> web.Response:
            # Liveness: the event loop answers. 200 while draining too (a restart would cut
            # the streams the drain lets finish).
            return web.json_response({"status": "alive"})

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def sandbox_info(_: web.Request) -> web.Response:
            return web.json_response(self.sandbox.describe() if self.sandbox else {})

        ops = web.Application()
        ops.router.add_get("/healthz", healthz)
        ops.router.add_get("/livez", livez)
        ops.router.add_get("/metrics", metrics)
        if self.settings.sandbox:
            ops.router.add_get("/sandbox", sandbox_info)
        self.ops_port = await self._listen(ops, self.settings.ops_listen)
        callbacks = web.Application(client_max_size=MAX_CALLBACK_BYTES)
        # Vendor callbacks (adapters' callback_routes) are known only after the sandbox started,
        # but aiohttp freezes its router on start: dispatch them through one route.
        callbacks.router.add_route("*", "/callbacks/{vendor}", self._callback)
        self.callbacks_port = await self._listen(
            callbacks, self.settings.callbacks_listen, reuse_port=self.worker is not None
        )

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        """One vendor callback: rate limited per vendor, then :meth:`CallbackRouter.handle`."""
        vendor = request.match_info["vendor"]
        if self.callbacks is None or vendor not in self.adapters:
            if self.callbacks is None:  # not started yet: the vendor retries
                return web.json_response({"error": "starting"}, status=503)
            raise web.HTTPNotFound()
        self._callback_count += 1
        wait = await self._callback_limits.try_acquire(
            vendor,
            max(1, int(self.settings.callbacks_per_second)),
            1.0,
            str(self._callback_count),
        )
        if wait > 0:
            metrics.CALLBACKS.labels(vendor, "rate_limited").inc()
            return web.json_response(
                {"error": "too many callbacks"},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return await self.callbacks.handle(request)

    async def _listen(self, app: web.Application, address: str, *, reuse_port: bool = False) -> int:
        """Serve ``app`` on ``address``; the bound port (0 for a unix socket).

        ``address`` is ``host:port`` (port 0: any) or ``unix:<path>`` (a worker's private
        ops listener, read by its supervisor). ``reuse_port``: bind with ``SO_REUSEPORT``.
        """
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        if address.startswith(UNIX_PREFIX):
            await web.UnixSite(runner, unix_socket_path(address)).start()
            return 0
        host, port = _split_hostport(address)
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        server = site._server
        assert server is not None
        return int(getattr(server, "sockets", [])[0].getsockname()[1])

    async def _http_cleanup(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop, idempotently: NOT_SERVING, go_away, grace period, close sessions."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop(grace_s))
        await asyncio.shield(self._stopping)

    def live_state(self) -> metrics.LiveState:
        """What this server holds now, for the scrape-time gauges (gateway/metrics.py)."""
        state = metrics.LiveState(
            vendors=sorted(self.adapters), draining_s=metrics.seconds_since(self._drain_started)
        )
        if self.manager is not None:
            for vendor, undriven_s, overdue_s in self.manager.session_ages():
                state.sessions[vendor] = state.sessions.get(vendor, 0) + 1
                state.undriven_s[vendor] = max(state.undriven_s.get(vendor, 0.0), undriven_s)
                state.overdue_s[vendor] = max(state.overdue_s.get(vendor, 0.0), overdue_s)
        if self.servicer is not None:
            for drive in self.servicer.drives:
                vendor = drive.record.vendor
                state.backlog_s[vendor] = max(state.backlog_s.get(vendor, 0.0), drive.backlog_s())
        return state

    def _largest_backlog_ms(self) -> float:
        """The largest input backlog of an open Drive stream now (ms of audio)."""
        if self.servicer is None:
            return 0.0
        return max((d.backlog_s() for d in self.servicer.drives), default=0.0) * 1000

    def _overload_changed(self, overload: Overload | None) -> None:
        """Readiness follows the overload state: NOT_SERVING while overloaded.

        Once draining, the health servicer ignores this (it stays NOT_SERVING for good).
        """
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if overload is None
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if self._stopping is not None or self.server is None:
            return
        task = asyncio.ensure_future(self._set_health(status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        # In order: each update is queued behind the previous one (one lock, FIFO).
        async with self._health_lock:
            await self.health.set("", status)
            await self.health.set(SERVICE_NAME, status)

    async def _stop(self, grace_s: float | None) -> None:
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._drain_started = time.monotonic()
        log.info("gateway_draining", grace_s=grace)
        await self.health.enter_graceful_shutdown()
        if self.servicer is not None:
            self.servicer.draining = True
            for drive in list(self.servicer.drives):
                drive.go_away(grace)
        if self.server is not None:
            await self.server.stop(grace)
        if self.manager is not None:
            await self.manager.shutdown(close_sessions=isinstance(self.registry, MemoryRegistry))
        if self.inbox is not None:
            # Only now: drives finishing their turns in the grace period still need their
            # forwarded callbacks.
            await self.inbox.stop()
        for adapter in self.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.aclose()
        if isinstance(self.registry, RedisRegistry):
            await self.registry.aclose()
        if self.rate_limits is not None:
            await self.rate_limits.aclose()
        await self._http_cleanup()
        metrics.remove_live_source(self.live_state)
        if self._loop_monitor is not None:
            self._loop_monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_monitor
        if self.sandbox is not None:
            await self.sandbox.stop()
        log.info("gateway_stopped")
        # Last: the spans of the drain and of the sessions closed above are exported too.
        await tracing.flush()

    async def serve_forever(self) -> None:
        """Start, then run until SIGTERM/SIGINT, then drain and stop.

        The handlers are installed before :meth:`start`, so a SIGTERM that arrives while the
        server starts (or right after its ``gateway_started`` line) still drains and closes
        the sessions this process owns instead of killing it.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()
