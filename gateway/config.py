"""Gateway configuration from the environment (docs/architecture.md §2: names are a contract).

pydantic-settings with prefix ``AVATAR_GATEWAY_``; every value may also come from a
``*_FILE`` variable or a file in ``AVATAR_GATEWAY_SECRETS_DIR`` (:mod:`core.settings`). Each
vendor's own settings (e.g. ``AVATAR_GATEWAY_ZEGOCLOUD__APP_ID``) are the settings model its
plugin declares (:class:`core.plugin.VendorSettings`), read by :mod:`gateway.vendors`. A
vendor is offered when its credentials are set. The in-process emulators (sandbox) run only
when asked for (``--sandbox`` or ``AVATAR_GATEWAY_SANDBOX=true``), never as a fallback.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.settings import FileSettings


class Settings(FileSettings):
    """All gateway settings. See README "Configuration" for every variable."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_GATEWAY_", env_nested_delimiter="__", extra="ignore"
    )

    # All interfaces: in a container or pod loopback is unreachable from outside.
    listen: str = "0.0.0.0:50051"
    # TLS on the gRPC port (docs/security.md §5): the certificate chain and key (PEM files,
    # e.g. a mounted kubernetes.io/tls Secret), re-read when they change; with a client CA
    # every caller must present a certificate it signed (mutual TLS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Serve gRPC without TLS. Only when set explicitly (or in sandbox mode): a production
    # server with neither this nor a certificate refuses to start.
    plaintext: bool = False
    # Internal ops HTTP listener: /metrics, /healthz (readiness), /livez, and /sandbox in
    # sandbox mode. Reachable by the cluster's monitoring and kubelet, never the internet.
    ops_listen: str = "0.0.0.0:8081"
    # Public HTTP listener: vendor callbacks (/callbacks/<vendor>) and nothing else.
    callbacks_listen: str = "0.0.0.0:8080"
    # Vendor callbacks accepted per sliding second per vendor on this replica; beyond it 429
    # with Retry-After (ZEGO retries after 2, 4, 8... s). Bounds the registry writes a flood
    # of forged or replayed callbacks causes. ZEGO sends a few per turn: 500/s is above what
    # a replica's sessions send at its capacity (docs/security.md §6).
    callbacks_per_second: float = Field(default=500.0, gt=0)
    # Public base URL of the callbacks listener as the vendors reach it (ZEGO callback URL).
    public_url: str | None = None
    # The in-process vendor emulators instead of the vendors' clouds; only when asked for.
    sandbox: bool = False
    # Which emulators the sandbox starts (comma-separated vendor ids).
    sandbox_vendors: str = "zegocloud,tencent,akool"
    redis_url: str | None = None
    # Worker processes of `avatar-gateway serve` (each a replica with its own event loop,
    # all on the same ports; gateway/workers.py). Unset: the CPUs available to the process
    # (affinity and cgroup quota); more than 1 needs redis_url, and sandbox mode uses 1.
    workers: int | None = Field(default=None, ge=1)
    # Event loop of `avatar-gateway serve`: uvloop (less CPU per chunk, and its TLS does not
    # preallocate 256 KiB per connection as asyncio's does) or the standard asyncio loop.
    event_loop: str = "uvloop"
    log_level: str = "info"
    log_format: str = "auto"  # auto | json | console
    shutdown_grace_s: float = 20.0
    reaper_interval_s: float = 5.0
    # Shared registry (Redis) only. A replica's liveness lease and each Drive's lease live
    # this long without renewal (renewed every third of it). A replica killed hard loses its
    # sessions after at most one TTL (another replica may then adopt them on their next
    # Drive) and they are closed at the vendor after at most 2 x TTL + reaper_interval_s
    # (one TTL of grace for a reconnecting client): 25 s with the defaults.
    replica_lease_ttl_s: float = Field(default=10.0, ge=0.5, le=300.0)
    create_timeout_s: float = 60.0
    default_idle_timeout_s: float = 300.0
    default_max_duration_s: float = 3600.0
    # Live sessions (creating or open) one replica holds at most; CreateSession beyond it is
    # refused with RESOURCE_EXHAUSTED SESSION_LIMIT_REACHED (another replica may have room).
    max_sessions: int = Field(default=1000, ge=1)
    # Live sessions of all replicas together at most (counted in Redis, atomically with the
    # record of the new session); unset: no cluster-wide limit.
    cluster_max_sessions: int | None = Field(default=None, ge=1)
    # Admission control (gateway/admission.py; docs/architecture.md §8): past any of these
    # bounds the replica is overloaded: new CreateSession and Drive calls are refused with
    # RESOURCE_EXHAUSTED GATEWAY_OVERLOADED and readiness turns NOT_SERVING, while streams
    # already accepted go on. Open Drive streams at most; unset: no bound (what one process
    # sustains depends on its CPU, the vendor mix and the clients' chunk size: measure it
    # with bench/run_bench.py and set it below what held the latency target).
    max_active_drives: int | None = Field(default=None, ge=1)
    # Event-loop lag (ms) that marks the replica overloaded: every stream's pacing waits as
    # long. A healthy loop wakes within a few ms (a full garbage collection ~3 ms).
    overload_event_loop_lag_ms: float | None = Field(default=100.0, gt=0)
    # Largest Drive input backlog (ms of audio) that marks the replica overloaded. Unset by
    # default: a client sending ahead of real time fills its stream's queue (2 s) by design;
    # set it where clients send in real time (live microphones).
    overload_drive_backlog_ms: float | None = Field(default=None, gt=0)
    # A replica overloaded by the lag or backlog becomes ready again once both stayed below
    # half their bound for this long (s), so readiness does not flap with every sample.
    overload_hold_s: float = Field(default=5.0, ge=0, le=300)
    # How long the record of an ended (closed or failed) session stays readable (s); then the
    # registry forgets it, so it does not grow with every session ever made.
    session_retention_s: float = Field(default=3600.0, gt=0)
    # The tenants' API keys, as SHA-256 hashes (gateway/auth.py; docs/security.md): every
    # call but health must then carry ``authorization: Bearer <key>``. Unset: no
    # authentication (one anonymous tenant), which the first log line says loudly.
    api_keys_file: str | None = None
    # JWT bearer tokens (gateway/auth.py; docs/security.md §2.1): the JWKS (a file, or an
    # http(s) URL fetched and cached), the required issuer and audience, the claim naming
    # the tenant, the claim listing roles ("admin"), and the clock skew allowed (s).
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    # Every tenant's quotas, unless its line in the keys file sets its own: live sessions at
    # once, and CreateSession calls per sliding minute, both counted across replicas (Redis).
    tenant_max_sessions: int | None = Field(default=None, ge=1)
    tenant_creates_per_minute: int | None = Field(default=None, ge=1)
    # gRPC server reflection (grpcurl without protos). Off hides the API's shape from
    # callers who may reach the port but have no key.
    reflection: bool = True
    # Extra vendor plugin modules, comma-separated, each exporting ``SPEC`` (the shipped
    # vendors are found through the ``avatar_gateway.vendors`` entry points).
    plugins: str = ""
    # Vendor settings given in code (tests, the sandbox), by vendor id; a vendor missing here
    # reads its own ``AVATAR_GATEWAY_<VENDOR>__*`` variables.
    vendors: dict[str, Any] = {}

    @property
    def plugin_modules(self) -> list[str]:
        """``plugins`` as a list of module names."""
        return [m.strip() for m in self.plugins.split(",") if m.strip()]

    @property
    def sandbox_vendor_ids(self) -> list[str]:
        """``sandbox_vendors`` as a list of vendor ids."""
        return [v.strip() for v in self.sandbox_vendors.split(",") if v.strip()]
