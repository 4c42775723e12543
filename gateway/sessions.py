"""Session lifecycle: idempotent create, readiness wait, close on every path, reaper.

Peer lesson (b) 2: leaked sessions keep billing. So a session is recorded before the vendor
call returns, the vendor-side backstops are always set by the adapter, every close path
(CloseSession, reaper, shutdown, vendor loss, failed start) goes through :meth:`close`, and
the reaper closes sessions past ``idle_timeout`` or ``max_duration``.

Replicas sharing the registry coordinate through leases (docs/architecture.md §4.1,
:mod:`gateway.leases`): a session belongs to its owner while the owner's replica lease
lives; a Drive first takes the session's drive lease (one Drive per session across
replicas), then adopts the session if another replica owned it; the reaper of a live replica
closes the sessions of a replica whose lease lapsed; and every change of owner or close by the
reaper happens under the session's claim, so exactly one replica makes it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import structlog
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from core.contract import (
    DriveChannel,
    ReadyState,
    SessionSpec,
    SessionStatus,
    VendorAdapter,
    VendorSessionHandle,
)
from core.errors import (
    GatewayError,
    Reason,
    VendorError,
    failed_precondition,
    invalid_argument,
    registry_unavailable,
    session_limit_reached,
    session_not_found,
    tenant_quota_exceeded,
    unknown_vendor,
)
from core.resilience import (
    MemoryRateLimitStorage,
    RateLimitStorage,
    deadline_scope,
    keepalive_loop,
    poll_until,
)
from gateway import metrics
from gateway.admission import AdmissionControl
from gateway.auth import ANONYMOUS, Principal
from gateway.config import Settings
from gateway.leases import DriveLease, ReplicaLease, default_replica_id
from gateway.registry import RegistryRebuilding, SessionFilter, SessionRecord, SessionRegistry
from gateway.usage import Tally, UsageMeter, merge_shares, total
from gateway.vendors import VendorRegistry

if TYPE_CHECKING:
    from gateway.drive import DriveStream

log = structlog.get_logger("gateway.sessions")

MIN_IDLE_TIMEOUT_S = 30.0
CLOSE_BUDGET_S = 30.0
"""Time a vendor close may take, retries included (s); the vendor's backstops cover the rest."""
MAX_DURATION_S = 86400.0
CLAIM_TTL_S = CLOSE_BUDGET_S + 30.0
"""Lifetime of a session's claim (s): a close under it (vendor call included) fits, and the
claim of a replica that died while holding it lapses."""
HANDOVER_WAIT_S = 5.0
"""How long a replica that adopted a session retries opening its channel (s) while the
previous owner lets go of its own (a ``release`` message, else its next reaper pass)."""
CLAIM_WAIT_S = 5.0
"""How long a Drive waits for another replica's claim on the session (s) before giving up."""
REPLICA_LIMIT_RETRY_S = 1.0
"""RetryInfo of a CreateSession refused by a full replica (s): a retry may reach another."""
CLUSTER_LIMIT_RETRY_S = 10.0
"""RetryInfo of a CreateSession refused by a full deployment (s): sessions end in minutes."""
PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}={0,2}")
PAGE_CURSOR = re.compile(r"[0-9]{16}:[A-Za-z0-9_-]{1,64}")


def parse_session_name(name: str) -> str:
    """Return the id of ``sessions/{session_id}``.

    Raises:
        GatewayError: INVALID_ARGUMENT ``INVALID_SESSION_NAME`` for any other shape.
    """
    prefix, _, session_id = name.partition("/")
    if prefix != "sessions" or not session_id or "/" in session_id:
        raise invalid_argument(
            Reason.INVALID_SESSION_NAME,
            f"session name {name!r} is not of the form sessions/{{session_id}}",
            name=name,
        )
    return session_id


@dataclass
class SessionRuntime:
    """What this process holds for a session it owns: channel, active drive, drive lease.

    ``lease`` is held while a Drive stream of this process is attached (or being attached);
    it also allocates the session's turn ids.
    """

    session_id: str
    adapter: VendorAdapter
    handle: VendorSessionHandle
    channel: DriveChannel | None = None
    drive: DriveStream | None = None
    lease: DriveLease | None = None
    last_activity: float = field(default_factory=time.monotonic)
    keepalive_task: asyncio.Task[None] | None = None
    open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    attach_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_turn: int = 0
    """The highest turn number this process's Drives of the session allocated."""
    handover_until: float = 0.0
    """``time.monotonic()`` until which opening the channel is retried: the session was just
    adopted from a replica that may still hold the vendor's channel."""
    usage: UsageMeter = field(default_factory=UsageMeter)
    """This replica's share of the session's usage (architecture.md §4.4)."""
    early_open: asyncio.Future[None] | None = None
    """The channel being opened ahead of the first Drive, if any (:meth:`open_channel_early`)."""

    async def get_channel(self) -> DriveChannel:
        """The session's drive channel, opened at first use, with shared keepalive.

        Right after an adoption (``handover_until``) a refused open is retried: the previous
        owner may still hold the vendor's one channel for a moment.
        """
        async with self.open_lock:
            if self.channel is None or self.channel.closed:
                self.channel = await self._open_channel()
                interval = self.adapter.capabilities.keepalive_interval_s
                if interval:
                    self.keepalive_task = asyncio.create_task(
                        keepalive_loop(self.channel, interval, self.adapter.capabilities.vendor),
                        name=f"keepalive-{self.session_id}",
                    )
            return self.channel

    async def _open_channel(self) -> DriveChannel:
        delay = 0.1
        while True:
            try:
                return await self.adapter.open_channel(self.handle, self.session_id)
            except GatewayError as exc:
                if exc.session_gone or time.monotonic() + delay > self.handover_until:
                    raise
                log.info("channel_open_retried", session_id=self.session_id, reason=exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def open_channel_early(self) -> None:
        """Open the channel ahead of the first Drive, in the background.

        For ``Capabilities.open_channel_at_ready`` and ``open_channel_at_create``. A
        failure is only logged: the first Drive opens the channel itself and reports why it
        cannot. :meth:`aclose` cancels an opening still under way.
        """
        if self.early_open is not None and not self.early_open.done():
            return
        self.early_open = asyncio.ensure_future(self._open_early())

    async def _open_early(self) -> None:
        try:
            await self.get_channel()
        except GatewayError as exc:
            log.info(
                "channel_open_early_failed",
                session_id=self.session_id,
                reason=exc.reason,
                message=exc.message,
            )

    async def aclose(self) -> None:
        """Stop keepalive, close the channel (not the vendor session), store the usage share.

        Cancels an early open still under way (it may wait for the vendor, e.g. an avatar
        joining), then waits for any other opening so its channel is closed too.
        """
        early, self.early_open = self.early_open, None
        if early is not None and not early.done():
            early.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await early
        async with self.open_lock:
            await self._aclose()

    async def _aclose(self) -> None:
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keepalive_task
        if self.channel is not None:
            await self.channel.aclose()
        await self.usage.aclose()


class SessionManager:
    """Creates, tracks, reaps and closes sessions for one gateway process.

    Args:
        settings: gateway settings (timeouts, defaults).
        adapters: configured adapters by vendor id.
        registry: where records are stored.
        vendors: the vendor plugins (their option fields).
        owner: this replica's id (default: host name and a per-process suffix).
    """

    def __init__(
        self,
        settings: Settings,
        adapters: dict[str, VendorAdapter],
        registry: SessionRegistry,
        vendors: VendorRegistry,
        owner: str | None = None,
        quota_storage: RateLimitStorage | None = None,
    ) -> None:
        self.settings = settings
        # Where tenants' CreateSession rates are counted: Redis (every replica) or here.
        self.quota_storage = quota_storage or MemoryRateLimitStorage()
        self.vendors = vendors
        self.adapters = adapters
        self.registry = registry
        self.owner = owner or default_replica_id()
        self.runtimes: dict[str, SessionRuntime] = {}
        self._creating: dict[str, asyncio.Task[pb.Session]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._close_locks: dict[str, asyncio.Lock] = {}
        # Serialises, per session, the admission of Drive streams in this process (lease,
        # adoption, channel, attach) with their detach and with lease losses.
        self._drive_locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.lease_ttl_s = settings.replica_lease_ttl_s
        self.replica_lease = ReplicaLease(
            registry, self.owner, self.lease_ttl_s, self._on_replica_lease_lapsed
        )
        # A copy of each live record this replica owns, as it last wrote it: what it puts
        # back if Redis restarts empty (rebuild()).
        self._owned: dict[str, SessionRecord] = {}
        self._released: dict[str, SessionRecord] = {}  # nobody's, as the reaper last read
        self._reaper_stopped = False
        # New CreateSession and Drive calls are refused past this replica's capacity.
        self.admission = AdmissionControl.from_settings(settings)

    # ---- create -------------------------------------------------------------------------

    def _validate_create(self, req: pb.CreateSessionRequest) -> tuple[VendorAdapter, float, float]:
        adapter = self.adapters.get(req.vendor)
        if adapter is None:
            raise unknown_vendor(req.vendor, sorted(self.adapters))
        if not req.avatar_id:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT, "avatar_id is required", field="avatar_id"
            )
        chosen = req.WhichOneof("vendor_options")
        spec = self.vendors.get(req.vendor)
        if chosen is not None and (spec is None or chosen != spec.options_field):
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"vendor_options.{chosen} does not match vendor {req.vendor!r}",
                field=f"vendor_options.{chosen}",
            )
        max_duration = (
            req.max_duration.ToNanoseconds() / 1e9
            if req.HasField("max_duration")
            else self.settings.default_max_duration_s
        )
        idle = (
            req.idle_timeout.ToNanoseconds() / 1e9
            if req.HasField("idle_timeout")
            else self.settings.default_idle_timeout_s
        )
        if not 0 < max_duration <= MAX_DURATION_S:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"max_duration must be in (0, {MAX_DURATION_S:.0f}] s, got {max_duration:g} s",
                field="max_duration",
            )
        if not MIN_IDLE_TIMEOUT_S <= idle <= MAX_DURATION_S:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                f"idle_timeout must be in [{MIN_IDLE_TIMEOUT_S:.0f}, {MAX_DURATION_S:.0f}] s, "
                f"got {idle:g} s",
                field="idle_timeout",
            )
        if len(req.labels) > 32 or any(len(k) > 63 or len(v) > 63 for k, v in req.labels.items()):
            raise invalid_argument(
                Reason.INVALID_ARGUMENT,
                "at most 32 labels of at most 63 characters",
                field="labels",
            )
        return adapter, max_duration, idle

    async def create(
        self,
        req: pb.CreateSessionRequest,
        deadline: float | None,
        principal: Principal = ANONYMOUS,
    ) -> pb.Session:
        """CreateSession: create the vendor session, wait until it is ready, return it.

        Args:
            req: the request.
            deadline: the call's deadline as ``time.monotonic()``, or ``None``.
            principal: the caller: its tenant owns the session and scopes its
                ``request_id`` (two tenants may use the same one); its quotas apply.

        Raises:
            GatewayError: bad request, unknown vendor, reused request id, or a vendor
                error before a vendor session existed.
        """
        adapter, max_duration, idle = self._validate_create(req)
        tenant = principal.tenant
        fingerprint = ""
        if req.request_id:
            stripped = pb.CreateSessionRequest()
            stripped.CopyFrom(req)
            stripped.request_id = ""
            fingerprint = hashlib.sha256(stripped.SerializeToString(deterministic=True)).hexdigest()
            session_id = uuid.uuid4().hex
            try:
                earlier = await self.registry.claim_request_id(
                    _binding(tenant, req.request_id), session_id, settled_after_s=self.lease_ttl_s
                )
            except RegistryRebuilding as exc:
                # Its binding may be one the registry lost: a new session would be a second.
                if exc.lost:
                    await self._after_data_loss()
                raise registry_unavailable() from None
            if earlier is not None:
                # A retry of a call that made (or is making) its session: no new work, so it
                # is answered even while overloaded, lest the caller lose a billed session.
                return await self._existing_for_request(req.request_id, earlier, fingerprint)
        else:
            session_id = uuid.uuid4().hex
        # Past capacity, before any vendor work and before the tenant's rate counts the call.
        try:
            self.admission.check("CreateSession")
        except GatewayError:
            if req.request_id:
                await self.registry.release_request_id(_binding(tenant, req.request_id))
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.GATEWAY_OVERLOADED).inc()
            raise
        # A retry that found its session above is not a new create: only new ones count.
        try:
            await self._check_create_rate(principal, session_id)
        except GatewayError:
            if req.request_id:
                await self.registry.release_request_id(_binding(tenant, req.request_id))
            raise
        # Checked and counted with no await in between, so concurrent creates on this
        # replica cannot overshoot max_sessions.
        if len(self._creating.keys() | self.runtimes.keys()) >= self.settings.max_sessions:
            if req.request_id:
                await self.registry.release_request_id(_binding(tenant, req.request_id))
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.SESSION_LIMIT_REACHED).inc()
            raise session_limit_reached(
                "replica", self.settings.max_sessions, REPLICA_LIMIT_RETRY_S
            )
        # The creation runs as its own task, shielded from this call: a caller that gives up
        # (deadline, cancel) must not abandon a vendor session half made. A retry with the
        # same request_id joins the same task instead of creating a second vendor session.
        task = asyncio.create_task(
            self._create(
                req, adapter, session_id, fingerprint, max_duration, idle, deadline, principal
            ),
            name=f"create-{session_id}",
        )
        self._creating[session_id] = task

        def settled(done: asyncio.Task[pb.Session]) -> None:
            self._creating.pop(session_id, None)
            if not done.cancelled() and done.exception() is not None and req.request_id:
                # No vendor session exists (a failed start returns a FAILED session
                # instead), so a retry with the same id may try again.
                task_release = self.registry.release_request_id(_binding(tenant, req.request_id))
                self._spawn(task_release)

        task.add_done_callback(settled)
        return await asyncio.shield(task)

    async def _check_create_rate(self, principal: Principal, session_id: str) -> None:
        """Count this CreateSession in the tenant's sliding minute, or refuse it.

        Raises:
            GatewayError: RESOURCE_EXHAUSTED ``TENANT_QUOTA_EXCEEDED`` (``create_rate``),
                with the time until the oldest counted call leaves the minute.
        """
        limit = principal.creates_per_minute
        if limit is None:
            return
        wait_s = await self.quota_storage.try_acquire(
            f"tenant:{principal.tenant}:create", limit, 60.0, session_id
        )
        if wait_s > 0:
            metrics.RPC_ERRORS.labels("CreateSession", Reason.TENANT_QUOTA_EXCEEDED).inc()
            raise tenant_quota_exceeded(principal.tenant, "create_rate", limit, wait_s)

    async def _existing_for_request(
        self, request_id: str, session_id: str, fingerprint: str
    ) -> pb.Session:
        pending = self._creating.get(session_id)
        if pending is not None:
            record = await self.registry.get(session_id)
            if record is not None and record.request_fingerprint != fingerprint:
                raise _request_id_reused(request_id)
            return await asyncio.shield(pending)
        record = await self.registry.get(session_id)
        if record is None:
            raise failed_precondition(
                Reason.SESSION_NOT_READY,
                f"a CreateSession with request_id {request_id} is still in progress; retry",
                session=f"sessions/{session_id}",
                state="SESSION_STATE_CREATING",
            )
        if record.request_fingerprint != fingerprint:
            raise _request_id_reused(request_id)
        return record.to_proto()

    async def _create(
        self,
        req: pb.CreateSessionRequest,
        adapter: VendorAdapter,
        session_id: str,
        fingerprint: str,
        max_duration: float,
        idle: float,
        deadline: float | None,
        principal: Principal,
    ) -> pb.Session:
        record = SessionRecord(
            tenant=principal.tenant,
            session_id=session_id,
            vendor=req.vendor,
            avatar_id=req.avatar_id,
            owner=self.owner,
            labels=dict(req.labels),
            max_duration_s=max_duration,
            idle_timeout_s=idle,
            request_id=req.request_id,
            request_fingerprint=fingerprint,
        )
        cluster_max = self.settings.cluster_max_sessions
        refused = await self._insert(record, cluster_max, principal.max_sessions)
        if refused == "cluster":
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.SESSION_LIMIT_REACHED).inc()
            assert cluster_max is not None  # only a limit refuses
            raise session_limit_reached("cluster", cluster_max, CLUSTER_LIMIT_RETRY_S)
        if refused == "tenant":
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.TENANT_QUOTA_EXCEEDED).inc()
            assert principal.max_sessions is not None
            raise tenant_quota_exceeded(
                principal.tenant, "sessions", principal.max_sessions, CLUSTER_LIMIT_RETRY_S
            )
        options_field = req.WhichOneof("vendor_options")
        spec = SessionSpec(
            session_id=session_id,
            avatar_id=req.avatar_id,
            max_duration_s=max_duration,
            idle_timeout_s=idle,
            options=getattr(req, options_field) if options_field else None,
        )
        bound = log.bind(session_id=session_id, vendor=req.vendor)
        create_deadline = time.monotonic() + self.settings.create_timeout_s
        if deadline is not None:
            create_deadline = min(create_deadline, deadline)
        try:
            with deadline_scope(create_deadline):
                handle = await adapter.create_session(spec)
        except GatewayError as exc:
            # The caller gets this error, not a session name, so no record may stay behind
            # for ListSessions to show (the proto's CreateSession contract). The record held
            # no vendor session id either: an adapter adopts a session whose create answer
            # was lost (core.resilience.create_or_adopt), so nothing here is left to close.
            bound.warning("session_create_failed", reason=exc.reason, message=exc.message)
            metrics.SESSIONS_CREATED.labels(req.vendor, exc.reason).inc()
            try:
                await self._delete(session_id)
            except Exception as delete_exc:  # the reaper fails the CREATING record later
                bound.warning("session_record_not_deleted", error=type(delete_exc).__name__)
            raise
        record.vendor_session_id = handle.vendor_session_id
        record.vendor_data = handle.data.model_dump(mode="json")
        record.playback = handle.playback.SerializeToString()
        runtime = SessionRuntime(session_id, adapter, handle, usage=self._meter(session_id))
        self.runtimes[session_id] = runtime
        if adapter.capabilities.open_channel_at_create:
            runtime.open_channel_early()
        try:
            return await self._until_ready(record, adapter, handle, deadline, bound)
        except BaseException as exc:
            # Anything unexpected after the vendor created the session (a bug, a shutdown):
            # close it rather than leave it billing until its backstop.
            bound.error("session_start_aborted", error=type(exc).__name__)
            if not isinstance(exc, GatewayError):
                _set_failure(
                    record,
                    GatewayError(
                        grpc.StatusCode.INTERNAL, Reason.INTERNAL, str(type(exc).__name__)
                    ),
                )
            await self._put(record)
            await asyncio.shield(self.close(record.name, pb.CLOSE_REASON_FAILED))
            if not isinstance(exc, Exception):
                raise  # cancelled (shutdown): there is no caller left to answer
            # A vendor session existed and its record names it: answer with that FAILED
            # session, as a failed start is answered, rather than an error and a record
            # nobody was told about.
            failed = await self.registry.get(record.session_id)
            if failed is None:
                raise
            return failed.to_proto()

    async def _until_ready(
        self,
        record: SessionRecord,
        adapter: VendorAdapter,
        handle: VendorSessionHandle,
        deadline: float | None,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> pb.Session:
        """Wait until the vendor session is ready and start it; FAILED (closed) otherwise."""
        req_vendor, session_id = record.vendor, record.session_id
        await self._put(record)
        now = time.monotonic()
        ready_deadline = now + self.settings.create_timeout_s
        if deadline is not None and deadline - 0.2 > now:
            # The caller still waits: answer within its deadline (a FAILED session beats
            # DEADLINE_EXCEEDED). A caller already gone leaves the server's own bound, so a
            # retry with the same request_id can join a session that does become ready.
            ready_deadline = min(ready_deadline, deadline - 0.2)
        # A vendor that notifies readiness (ZEGO's task-status callback) ends the poll's wait.
        notice = adapter.watch_status(handle.vendor_session_id)
        try:
            try:
                status: SessionStatus = await poll_until(
                    lambda: adapter.session_status(handle),
                    _is_settled,
                    deadline=ready_deadline,
                    vendor=req_vendor,
                    first_delay_s=adapter.capabilities.ready_poll_interval_s,
                    fast_for_s=adapter.capabilities.ready_poll_fast_s,
                    notice=notice,
                )
            finally:
                adapter.unwatch_status(handle.vendor_session_id)
            if status.state is not ReadyState.READY:
                raise VendorError(
                    grpc.StatusCode.UNAVAILABLE,
                    Reason.VENDOR_SESSION_FAILED,
                    f"{req_vendor} session failed to start: {status.detail or status.state.value}",
                    vendor=req_vendor,
                    vendor_code=status.vendor_code,
                )
            with deadline_scope(ready_deadline):
                await adapter.start_session(handle)
        except GatewayError as exc:
            bound.warning("session_start_failed", reason=exc.reason, message=exc.message)
            _set_failure(record, exc)
            await self._put(record)
            await self.close(record.name, pb.CLOSE_REASON_FAILED)
            metrics.SESSIONS_CREATED.labels(req_vendor, exc.reason).inc()
            failed = await self.registry.get(session_id)
            assert failed is not None
            return failed.to_proto()
        record.state = pb.SESSION_STATE_READY
        record.last_activity_time = time.time()
        await self._put(record)
        bound.info("session_ready", vendor_session_id=handle.vendor_session_id)
        metrics.SESSIONS_CREATED.labels(req_vendor, "READY").inc()
        runtime = self.runtimes.get(session_id)
        caps = adapter.capabilities
        if runtime is not None and (caps.open_channel_at_ready or caps.open_channel_at_create):
            runtime.open_channel_early()  # no-op while the one begun at create is under way
        return record.to_proto()

    # ---- read ---------------------------------------------------------------------------

    async def get_record(self, name: str, tenant: str | None = None) -> SessionRecord:
        """The record for session name ``name``.

        Args:
            name: ``sessions/{session_id}``.
            tenant: the caller's tenant: another tenant's session is answered exactly as a
                missing one. ``None``: any tenant's (an admin, or the gateway itself).

        Raises:
            GatewayError: INVALID_SESSION_NAME or SESSION_NOT_FOUND.
        """
        session_id = parse_session_name(name)
        record = await self.registry.get(session_id)
        if record is None:
            raise await self._missing(name)
        if tenant is not None and record.tenant != tenant:
            raise session_not_found(name)
        runtime = self.runtimes.get(session_id)
        if runtime is not None:
            record.drive_active = runtime.drive is not None
            record.last_activity_time = max(
                record.last_activity_time, time.time() - (time.monotonic() - runtime.last_activity)
            )
        self._own_share(record)
        return record

    async def list_sessions(
        self, req: pb.ListSessionsRequest, tenant: str | None = None
    ) -> pb.ListSessionsResponse:
        """ListSessions, newest first, with cursor page tokens.

        Only ``tenant``'s sessions, unless it is ``None`` (an admin). A page token is the
        creation-order position (``SessionRecord.index_key``) of the page's last session, so
        the next page starts right after it however many sessions were created or forgotten
        meanwhile, on any replica (an offset would shift).

        Raises:
            GatewayError: INVALID_ARGUMENT for a negative page size or a bad page token.
        """
        if req.page_size < 0:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT, "page_size must be >= 0", field="page_size"
            )
        size = min(req.page_size or 50, 500)
        after = _page_cursor(req.page_token) if req.page_token else ""
        flt = SessionFilter(
            vendor=req.vendor, state=req.state, labels=dict(req.labels), tenant=tenant
        )
        records = await self.registry.list_records(flt, after, size + 1)
        for record in records:
            self._own_share(record)
        more = len(records) > size
        return pb.ListSessionsResponse(
            sessions=[r.to_proto() for r in records[:size]],
            next_page_token=_page_token(records[size - 1].index_key) if more else "",
        )

    # ---- drive attach -------------------------------------------------------------------

    async def open_drive(
        self,
        name: str,
        preempt: bool,
        build: Callable[[SessionRecord, SessionRuntime], Awaitable[DriveStream]],
        tenant: str | None = None,
    ) -> tuple[SessionRecord, SessionRuntime, DriveStream]:
        """Admit a Drive stream on session ``name``: lease, adoption, ``build``, attach.

        The session's drive lease is taken first (architecture.md §4.1): while another
        replica holds it, the stream is refused, or with ``preempt`` that replica is asked to
        end its stream and this call waits for it (at most two lease TTLs: an unreachable
        holder's lease lapses within one). Then a session another replica owned is adopted
        under its claim, ``build`` opens the channel and makes the stream, and the stream
        becomes the session's one active stream in this process.

        Raises:
            GatewayError: SESSION_NOT_FOUND, SESSION_CLOSED, SESSION_NOT_READY,
                DRIVE_ALREADY_ACTIVE (with ``ownerReplica``), or what ``build`` raises.
        """
        session_id = parse_session_name(name)
        lock = self._drive_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            record = _drivable(await self.get_record(name, tenant))
            runtime = self.runtimes.get(session_id)
            if runtime is not None and record.owner != self.owner:
                # Another replica adopted the session meanwhile: what this process holds for
                # it is stale (its channel may even block theirs, tencent.md §5).
                await self._drop_runtime(runtime, _taken_over(record, self.owner))
                runtime = None
            lease = runtime.lease if runtime is not None else None
            fresh: DriveLease | None = None
            if lease is None or lease.lost is not None:
                lease = fresh = await self._acquire_drive_lease(record, preempt)
            try:
                if runtime is None:
                    record, runtime = await self._adopt(record)
                if fresh is not None:
                    runtime.lease = fresh
                    fresh.start()
                drive = await build(record, runtime)
                await self.attach_drive(runtime, name, preempt, drive)
            except BaseException:
                if fresh is not None and (runtime is None or runtime.drive is None):
                    if runtime is not None and runtime.lease is fresh:
                        runtime.lease = None
                    await asyncio.shield(fresh.release())
                raise
        return record, runtime, drive

    async def _acquire_drive_lease(self, record: SessionRecord, preempt: bool) -> DriveLease:
        ttl = self.lease_ttl_s
        # A live holder sees the preempt request at its next renewal (a third of a TTL) and
        # ends its stream; a dead one's lease lapses within a TTL.
        began = time.monotonic()
        deadline = began + 2 * ttl
        while True:
            started = time.monotonic()
            state = await self.registry.acquire_drive(
                record.session_id, self.owner, ttl, preempt=preempt
            )
            if state.held:
                log.info(
                    "drive_lease_acquired",
                    session_id=record.session_id,
                    token=state.token,
                    waited_s=round(started - began, 3),
                )
                return DriveLease(
                    self.registry,
                    record.session_id,
                    self.owner,
                    state.token,
                    ttl,
                    started,
                    self._on_drive_lease_end,
                    floor=record.last_turn,
                )
            if not preempt or time.monotonic() >= deadline:
                raise drive_already_active(record.name, state.holder)
            await asyncio.sleep(min(0.2, ttl / 10))

    def _on_drive_lease_end(self, lease: DriveLease, error: GatewayError) -> None:
        """Another replica drives the session now (or asked to): end ours, free the channel."""
        self._spawn(self._drive_lease_ended(lease, error))

    def _spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drive_lease_ended(self, lease: DriveLease, error: GatewayError) -> None:
        lock = self._drive_locks.setdefault(lease.session_id, asyncio.Lock())
        async with lock:
            runtime = self.runtimes.get(lease.session_id)
            if runtime is not None and runtime.lease is lease:
                await self._drop_runtime(runtime, error)
        # Preempted: hand over now rather than after a TTL (the other replica polls for it).
        # Taken over: the compare-and-delete leaves the new holder's lease alone.
        await lease.release()

    async def _drop_runtime(self, runtime: SessionRuntime, error: GatewayError) -> None:
        """Forget a session this process no longer drives or owns (not the vendor session).

        Ends its Drive stream with ``error`` and closes its channel, so the replica that
        drives it now can open its own.
        """
        if self.runtimes.get(runtime.session_id) is runtime:
            del self.runtimes[runtime.session_id]
        self._owned.pop(runtime.session_id, None)
        if runtime.drive is not None:
            await runtime.drive.terminate(error)
        await runtime.aclose()
        lease, runtime.lease = runtime.lease, None
        if lease is not None:
            await lease.release()
        log.info("session_runtime_dropped", session_id=runtime.session_id, reason=error.reason)

    async def attach_drive(
        self, runtime: SessionRuntime, name: str, preempt: bool, drive: DriveStream
    ) -> None:
        """Make ``drive`` the session's one active Drive stream in this process.

        Raises:
            GatewayError: DRIVE_ALREADY_ACTIVE (``preempt`` unset and another stream is open).
        """
        async with runtime.attach_lock:
            old = runtime.drive
            if old is not None and (old.call_done() or old.ending):
                # The old call already ended (a client that cancelled and reconnects) or its
                # stream is being torn down: wait for its cleanup instead of refusing.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(old.closed.wait(), 5.0)
                if runtime.drive is old:
                    runtime.drive = None
            if runtime.drive is not None:
                if not preempt:
                    raise drive_already_active(name, self.owner)
                old = runtime.drive
                await old.terminate(
                    GatewayError(
                        grpc.StatusCode.ABORTED,
                        Reason.DRIVE_PREEMPTED,
                        f"another Drive stream took over session {name}",
                        {"session": name},
                    )
                )
            runtime.drive = drive
        runtime.last_activity = time.monotonic()
        # Any replica's GetSession shows the open stream and the format the vendor receives.
        record = await self.registry.get(runtime.session_id)
        if record is not None and not record.terminal and record.state != pb.SESSION_STATE_CLOSING:
            record.drive_active = True
            if drive.has_audio:
                record.vendor_sample_rate_hertz = drive.vendor_rate
            await self._put(record)

    async def _adopt(self, record: SessionRecord) -> tuple[SessionRecord, SessionRuntime]:
        """Build a runtime for a session; take it over (under its claim) if another owned it.

        Called with the session's drive lease held, so no other replica drives it.

        Raises:
            GatewayError: UNKNOWN_VENDOR, SESSION_CLOSED (closed meanwhile, e.g. by a reaper
                that had claimed it), SESSION_NOT_READY (another replica kept its claim).
        """
        adapter = self.adapters.get(record.vendor)
        if adapter is None:
            raise unknown_vendor(record.vendor, sorted(self.adapters))
        previous = ""
        if record.owner != self.owner:
            previous = record.owner
            record = await self._take_over(record)
        handle = adapter.vendor_session_handle(record.vendor_session_id, record.vendor_data)
        if record.playback:
            handle.playback.ParseFromString(record.playback)
        runtime = SessionRuntime(
            record.session_id,
            adapter,
            handle,
            # This replica may have driven the session before: its share goes on from there.
            usage=self._meter(record.session_id, record.usage.get(self.owner)),
        )
        if previous:
            # The previous owner may be alive and still hold the vendor's channel (one per
            # session at Tencent, tencent.md §5): ask it to let go now, and let this
            # runtime's first channel open wait for that (SessionRuntime.get_channel).
            runtime.handover_until = time.monotonic() + HANDOVER_WAIT_S
            try:
                await self.registry.send_to_replica(
                    previous, "release", record.vendor, record.session_id.encode()
                )
            except Exception as exc:  # it lets go at its next reaper pass instead
                log.warning("release_request_failed", replica=previous, error=type(exc).__name__)
        self.runtimes[record.session_id] = runtime
        return record, runtime

    async def release_requested(self, vendor: str, body: bytes) -> None:
        """Another replica adopted session ``body`` (its id): drop what this process holds.

        Only if the record says so (the message may be late): reconcile's rule, for one
        session, at once rather than at the next reaper pass.
        """
        session_id = body.decode()
        runtime = self.runtimes.get(session_id)
        if runtime is None:
            return
        lock = self._drive_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            if self.runtimes.get(session_id) is not runtime:
                return
            record = await self.registry.get(session_id)
            if record is None or record.owner == self.owner:
                return
            if record.terminal or record.state == pb.SESSION_STATE_CLOSING:
                error = session_closed(record)
            else:
                error = _taken_over(record, self.owner)
            await self._drop_runtime(runtime, error)

    async def _take_over(self, record: SessionRecord) -> SessionRecord:
        """Make this replica the owner of ``record``'s session, under the session's claim."""
        session_id = record.session_id
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not await self.registry.claim(session_id, self.owner, CLAIM_TTL_S):
            if time.monotonic() >= deadline:
                raise failed_precondition(
                    Reason.SESSION_NOT_READY,
                    f"session {record.name} is being closed or handed over by another "
                    "replica; retry",
                    session=record.name,
                    state=pb.SessionState.Name(record.state),  # type: ignore[arg-type]
                )
            await asyncio.sleep(0.05)
        try:
            current = await self.registry.get(session_id)
            if current is None:
                raise await self._missing(record.name)
            current = _drivable(current)
            previous = current.owner
            current.owner = self.owner  # this replica now holds the channel and reaps it
            await self._put(current)
        finally:
            await self.registry.unclaim(session_id, self.owner)
        log.info(
            "session_adopted",
            session_id=session_id,
            vendor=current.vendor,
            previous_owner=previous or "(released)",
        )
        return current

    async def detach_drive(self, runtime: SessionRuntime, drive: DriveStream) -> None:
        """Forget ``drive`` as the active stream (if it still is); persist the activity time.

        The registry keeps ``last_activity_time`` so that any replica can judge idleness.
        The last stream of this process on the session gives the drive lease back.
        """
        # At once, not behind an admission in progress: a client that reconnects right
        # after cancelling must not find its old stream still attached.
        if runtime.drive is drive:
            runtime.drive = None
        runtime.last_activity = time.monotonic()
        lock = self._drive_locks.setdefault(runtime.session_id, asyncio.Lock())
        async with lock:
            if runtime.lease is not None:
                runtime.last_turn = max(runtime.last_turn, runtime.lease.last_turn)
            if runtime.drive is None and runtime.lease is not None:
                lease, runtime.lease = runtime.lease, None
                await lease.release()
        # The copy kept for a rebuild learns the turn too, even when the registry's record
        # is missing right now (Redis lost it and nobody put it back yet): turn ids stay
        # unique after the rebuild.
        mirrored = self._owned.get(runtime.session_id)
        if mirrored is not None:
            mirrored.last_turn = max(mirrored.last_turn, runtime.last_turn)
            mirrored.add_share(self.owner, runtime.usage.tally)
        # The stream's usage, for every replica (also when the record below is not this
        # replica's to write); in the background, as at a turn's end: Redis may be away.
        runtime.usage.store_soon()
        record = await self.registry.get(runtime.session_id)
        if (
            record is not None
            and record.owner == self.owner  # not a session another replica took over
            and not record.terminal
            and record.state != pb.SESSION_STATE_CLOSING
        ):
            record.last_activity_time = time.time()
            record.drive_active = runtime.drive is not None
            record.last_turn = max(record.last_turn, runtime.last_turn)
            await self._put(record)

    # ---- close --------------------------------------------------------------------------

    async def close(self, name: str, reason: int, tenant: str | None = None) -> pb.Session:
        """Close a session on every path: end its Drive, channel and vendor session.

        Idempotent: a closed (or failed) session is returned unchanged. Vendor close errors
        that are retryable are retried with backoff; the record is marked CLOSED even if
        the vendor keeps failing (its own backstops then end it) and the error is logged.
        ``tenant``: as :meth:`get_record` (a caller's close; ``None`` for the gateway's).
        """
        session_id = parse_session_name(name)
        lock = self._close_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            record = await self.registry.get(session_id)
            if record is None:
                raise await self._missing(name)
            if tenant is not None and record.tenant != tenant:
                raise session_not_found(name)
            if record.state == pb.SESSION_STATE_CLOSED or (
                record.state == pb.SESSION_STATE_FAILED and record.close_time
            ):
                return record.to_proto()
            failed_start = reason == pb.CLOSE_REASON_FAILED
            record.state = pb.SESSION_STATE_CLOSING
            await self._put(record)
            runtime = self.runtimes.pop(session_id, None)
            if runtime is not None and runtime.drive is not None:
                record.close_reason = reason
                await runtime.drive.terminate(session_closed(record))
            if runtime is not None:
                await runtime.aclose()
            adapter = self.adapters.get(record.vendor)
            if adapter is not None and not record.vendor_session_id:
                # A create cut between the vendor's answer and its record (its replica was
                # killed): find what it made by the id derived from ours, and close that.
                try:
                    with deadline_scope(time.monotonic() + CLOSE_BUDGET_S):
                        found = await adapter.find_vendor_session(session_id)
                except GatewayError:
                    found = None
                if found:
                    log.warning("vendor_session_found", session_id=session_id, vendor=record.vendor)
                    record.vendor_session_id = found
            if adapter is not None and record.vendor_session_id:
                handle = (
                    runtime.handle
                    if runtime is not None
                    else adapter.vendor_session_handle(record.vendor_session_id, record.vendor_data)
                )
                try:
                    # One retry budget: the adapter's own (its docstring states the most
                    # vendor calls), bounded here in time; no second loop around it.
                    with deadline_scope(time.monotonic() + CLOSE_BUDGET_S):
                        await adapter.close_session(handle)
                except GatewayError as exc:
                    log.error(
                        "vendor_close_failed",
                        session_id=session_id,
                        vendor=record.vendor,
                        reason=exc.reason,
                        message=exc.message,
                    )
            record.state = pb.SESSION_STATE_FAILED if failed_start else pb.SESSION_STATE_CLOSED
            record.close_reason = reason
            record.close_time = time.time()
            record.drive_active = False
            # The final usage: every replica's share as stored now (another replica may have
            # driven the session since it was read above), and this replica's own.
            stored = await self.registry.get(session_id)
            if stored is not None:
                record.usage = merge_shares(record.usage, stored.usage)
            if runtime is not None:
                record.add_share(self.owner, runtime.usage.tally)
            if not await self.registry.finish(record):
                # Another replica closed it meanwhile and counted it: answer with its close.
                self._owned.pop(session_id, None)
                log.info("session_closed_elsewhere", session_id=session_id)
                ended = await self.registry.get(session_id)
                return (ended or record).to_proto()
            self._mirror(record)
            self._count_closed(record)
            return record.to_proto()

    def _count_closed(self, record: SessionRecord) -> None:
        """The close log line and metrics of a session that just ended, with its usage.

        Called once per session, by the replica whose write ended it (``registry.finish``),
        so usage is counted once however many replicas drove or tried to close it.
        """
        reason = pb.CloseReason.Name(record.close_reason)  # type: ignore[arg-type]
        vendor_s = record.vendor_session_s()
        used = total(record.usage)
        metrics.SESSIONS_CLOSED.labels(record.vendor, reason).inc()
        labels = (record.vendor, record.tenant)
        metrics.USAGE_SESSIONS.labels(*labels).inc()
        metrics.USAGE_VENDOR_SESSION_SECONDS.labels(*labels).inc(vendor_s)
        metrics.USAGE_AUDIO_SECONDS.labels(*labels).inc(used.audio_s)
        metrics.USAGE_TEXT_CHARACTERS.labels(*labels).inc(used.text_characters)
        log.info(
            "session_closed",
            session_id=record.session_id,
            vendor=record.vendor,
            tenant=record.tenant,
            close_reason=reason,
            vendor_session_s=round(vendor_s, 3),
            audio_s=round(used.audio_s, 3),
            text_characters=used.text_characters,
        )

    # ---- leases, reaper and shutdown ----------------------------------------------------

    async def start_leases(self) -> None:
        """Take this replica's liveness lease and keep renewing it (call before serving).

        Raises:
            Exception: the registry's error when it cannot be reached at start.
        """
        await self.replica_lease.start()
        # A first start of the deployment: the data is there (no rebuild window). After a
        # loss, the first replica to notice marks it instead (registry_rebuilding).
        await self.registry.mark_data(rebuilding=False)

    def start_reaper(self) -> None:
        """Start the background reaper (every ``reaper_interval_s``)."""
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def _reap_forever(self) -> None:
        # A flag as well as the cancel: a cancel that lands inside a Redis call can be lost
        # there (seen with redis-py 8 on Python 3.11), and the loop would then run on and
        # keep shutdown() waiting for it forever.
        paused = False
        while not self._reaper_stopped:
            await asyncio.sleep(self.settings.reaper_interval_s)
            try:
                await self.reap_once()
            except self.registry.unavailable_errors as exc:
                # Redis is down: nothing can be claimed, so nothing is closed; the next
                # pass after it returns finds the same sessions (closes are under claims).
                if not paused:
                    log.warning("reaper_paused", error=type(exc).__name__)
                paused = True
                continue
            except Exception:  # the reaper must outlive any one bad session
                log.exception("reaper_failed")
            if paused:
                log.info("reaper_resumed")
                paused = False

    async def reap_once(self) -> list[str]:
        """One reaper pass; returns the ids of the sessions it closed.

        Closes owned (and released) sessions past max_duration or idle past idle_timeout,
        and the sessions of replicas whose lease lapsed at least one lease TTL ago (the
        grace in which a reconnecting client's Drive adopts them instead): with renewals
        every third of a TTL, a replica killed hard has its sessions closed within
        2 x TTL + ``reaper_interval_s`` (architecture.md §4.1). Each close happens under the
        session's claim, so two replicas never close one session.
        """
        owned = await self.registry.owned_by(self.owner)
        await self.reconcile(owned)
        now_wall, now_mono = time.time(), time.monotonic()
        reaped: list[str] = []
        # Sessions released by a replica that shut down (shared registry) are reaped by anyone,
        # and every replica keeps their last state, to put back should Redis lose it.
        released = await self.registry.owned_by("")
        await self._remember_released(released)
        for record in owned + released:
            reason = self._reap_reason(record, now_wall, now_mono)
            if reason is not None and await self._close_claimed(record, reason):
                reaped.append(record.session_id)
        reaped += await self._reap_orphans()
        return reaped

    async def _remember_released(self, released: list[SessionRecord]) -> None:
        """Keep the last state of every released session, for :meth:`rebuild`.

        A session that left the listing was adopted or closed, unless the registry lost it:
        then its copy stays, to be put back.
        """
        listed = {r.session_id: r for r in released}
        for session_id, record in self._released.items():
            if session_id not in listed and await self.registry.get(session_id) is None:
                listed[session_id] = record
        self._released = listed

    def _reap_reason(self, record: SessionRecord, now_wall: float, now_mono: float) -> int | None:
        """The close reason for an owned or released session the reaper should close, if any."""
        if record.state == pb.SESSION_STATE_CREATING:
            stale = now_wall - record.create_time > self.settings.create_timeout_s + 30
            if stale and record.session_id not in self._creating:
                # A create that never settled (its process died mid-way): close it.
                return pb.CLOSE_REASON_FAILED
            return None
        if record.state != pb.SESSION_STATE_READY:
            return None
        runtime = self.runtimes.get(record.session_id)
        if now_wall >= record.expire_time:
            return pb.CLOSE_REASON_MAX_DURATION
        if runtime is not None:
            idle = (
                runtime.drive is None and now_mono - runtime.last_activity >= record.idle_timeout_s
            )
        else:
            idle = now_wall - record.last_activity_time >= record.idle_timeout_s
        return pb.CLOSE_REASON_IDLE_TIMEOUT if idle else None

    async def _reap_orphans(self) -> list[str]:
        """Close the sessions of replicas whose lease lapsed at least one TTL ago."""
        reaped: list[str] = []
        if self.replica_lease.reachable_for() < self.lease_ttl_s:
            # Redis was away (or this replica just started): the others' leases may look
            # lapsed only because nobody could renew; wait until they had a TTL to do so.
            return reaped
        gate = asyncio.Semaphore(16)  # vendor closes in parallel, but not all at once
        for dead in await self.registry.lapsed_replicas(self.lease_ttl_s):
            if dead == self.owner:
                continue  # our own renewal was late: the lease loop takes it back
            orphans = await self.registry.owned_by(dead)

            async def close_orphan(record: SessionRecord, dead: str = dead) -> str | None:
                reason = (
                    pb.CLOSE_REASON_FAILED
                    if record.state == pb.SESSION_STATE_CREATING
                    else pb.CLOSE_REASON_SHUTDOWN
                )
                async with gate:
                    if not await self._close_claimed(record, reason):
                        return None
                log.warning("orphan_session_closed", session_id=record.session_id, replica=dead)
                return record.session_id

            closed = await asyncio.gather(*(close_orphan(r) for r in orphans))
            reaped += [c for c in closed if c is not None]
            if not await self.registry.owned_by(dead):
                await self.registry.forget_replica(dead)
        return reaped

    async def _close_claimed(self, record: SessionRecord, reason: int) -> bool:
        """Close ``record``'s session under its claim if it is unchanged; whether it closed.

        Skipped when another replica holds the claim (it is closing or adopting the
        session), when the owner changed or the session ended meanwhile, or when another
        replica holds its drive lease (it is adopting it for a Drive).
        """
        session_id, owner = record.session_id, record.owner
        if not await self.registry.claim(session_id, self.owner, CLAIM_TTL_S):
            return False
        try:
            current = await self.registry.get(session_id)
            if current is None or current.terminal or current.owner != owner:
                return False
            holder = await self.registry.drive_holder(session_id)
            if holder and holder not in (owner, self.owner):
                return False
            await self.close(record.name, reason)
            return True
        finally:
            await self.registry.unclaim(session_id, self.owner)

    # ---- registry writes, mirrored ------------------------------------------------------

    def _mirror(self, record: SessionRecord) -> None:
        if record.owner == self.owner and not record.terminal:
            self._owned[record.session_id] = copy.deepcopy(record)
        else:
            self._owned.pop(record.session_id, None)

    async def _put(self, record: SessionRecord) -> None:
        self._own_share(record)
        await self.registry.put(record)
        self._mirror(record)

    def _meter(self, session_id: str, start: Tally | None = None) -> UsageMeter:
        """A usage meter for this replica's share of ``session_id`` (architecture.md §4.4)."""

        async def store(share: Tally) -> None:
            await self.registry.record_usage(session_id, self.owner, share)

        return UsageMeter(start, store, session_id)

    def _own_share(self, record: SessionRecord) -> None:
        """Merge into ``record`` this replica's latest share (a turn in progress included)."""
        runtime = self.runtimes.get(record.session_id)
        if runtime is not None:
            record.add_share(self.owner, runtime.usage.tally)

    async def _insert(
        self, record: SessionRecord, max_live: int | None, max_tenant_live: int | None
    ) -> str:
        refused = await self.registry.insert(record, max_live, max_tenant_live)
        if not refused:
            self._mirror(record)
        return refused

    async def _delete(self, session_id: str) -> None:
        await self.registry.delete(session_id)
        self._owned.pop(session_id, None)

    async def rebuild(self) -> list[str]:
        """Put back the records of live sessions that the registry lost.

        Redis restarted without its data (no persistence, a failover to an empty replica):
        every replica writes again the records it owns, as it last wrote them, and those of
        sessions released by a drained replica, as its reaper last read them, with their
        request_id bindings, so no session is lost track of. A record the registry still
        has is left alone (another replica may have adopted the session meanwhile).

        Returns:
            The ids of the records put back.
        """
        restored: list[str] = []
        known = {**self._released, **self._owned}
        for session_id, record in known.items():
            if await self.registry.get(session_id) is not None:
                continue
            restored_record = copy.deepcopy(record)
            runtime = self.runtimes.get(session_id)
            if runtime is not None:
                # Turns this process numbered since it last wrote the record.
                last = runtime.lease.last_turn if runtime.lease is not None else 0
                restored_record.last_turn = max(restored_record.last_turn, runtime.last_turn, last)
            # Other replicas' shares as this one last saw them; its own as it counts it now.
            self._own_share(restored_record)
            await self.registry.put(restored_record)
            if record.request_id:
                await self.registry.claim_request_id(
                    _binding(record.tenant, record.request_id), session_id
                )
            restored.append(session_id)
        if restored:
            log.warning("registry_rebuilt", sessions=len(restored))
        return restored

    async def _missing(self, name: str) -> GatewayError:
        """The error for session ``name``, which has no record.

        NOT_FOUND, or UNAVAILABLE ``REGISTRY_UNAVAILABLE`` while the registry is being
        rebuilt: it may be a record the registry lost that its owner has not put back yet.
        """
        if await self.registry_rebuilding():
            return registry_unavailable()
        return session_not_found(name)

    async def registry_rebuilding(self) -> bool:
        """Whether the registry lost its data less than a lease TTL ago (or just now).

        Within that time every live replica renews its lease, finds it gone and puts back
        what it holds (:meth:`rebuild`); until then a missing record or request_id binding
        proves nothing. Asked only on a miss, and before a request_id is claimed.
        """
        age = await self.registry.data_age()
        if age is None:
            await self._after_data_loss()
            return True
        return age < self.lease_ttl_s

    async def _after_data_loss(self) -> None:
        # Marked first: from now on, for a lease TTL, misses and request_id claims on every
        # replica are answered "retry" while each replica puts back what it holds.
        await self.registry.mark_data(rebuilding=True)
        await self.rebuild()

    async def _on_replica_lease_lapsed(self) -> None:
        # Either this replica stalled past its lease (others may have adopted or closed its
        # sessions) or Redis lost its data (the lease key with it): rebuild, then reconcile.
        if await self.registry.data_age() is None:
            await self._after_data_loss()
        else:
            await self.rebuild()
        await self.reconcile()

    async def reconcile(self, owned: list[SessionRecord] | None = None) -> None:
        """Drop what this process holds for sessions it no longer owns.

        After this replica stalled or lost Redis longer than its lease, other replicas may
        have adopted or closed its sessions: their Drive streams end (``DRIVE_TAKEN_OVER``)
        and their channels close, so the new owner can open its own (tencent.md §5 allows one).
        Only a record that names another owner (or is closed) counts; a missing one does not.

        Args:
            owned: this replica's records, when the caller just read them.
        """
        if not self.runtimes:
            return
        if owned is None:
            owned = await self.registry.owned_by(self.owner)
        mine = {r.session_id for r in owned}
        for session_id, runtime in list(self.runtimes.items()):
            if session_id in mine or session_id in self._creating:
                continue
            lock = self._drive_locks.setdefault(session_id, asyncio.Lock())
            async with lock:
                if self.runtimes.get(session_id) is not runtime:
                    continue
                record = await self.registry.get(session_id)
                if record is None:
                    # Not proof that another replica took it (a registry that lost its
                    # data says the same): keep it; the record's owner decides.
                    continue
                if record.terminal or record.state == pb.SESSION_STATE_CLOSING:
                    error = session_closed(record)
                elif record.owner == self.owner:
                    continue
                else:
                    error = _taken_over(record, self.owner)
                await self._drop_runtime(runtime, error)

    async def shutdown(self, *, close_sessions: bool) -> None:
        """Stop the reaper and settle the sessions this process owns (SIGTERM path).

        Args:
            close_sessions: close them (in-memory registry: nobody else can), or release
                them so another replica adopts them on their next Drive and reaps them
                (shared registry: the sessions outlive this replica).
        """
        if self._reaper is not None:
            self._reaper_stopped = True
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        try:
            owned = await self.registry.owned_by(self.owner)
            if close_sessions:
                await asyncio.gather(
                    *(self.close(r.name, pb.CLOSE_REASON_SHUTDOWN) for r in owned),
                    return_exceptions=True,
                )
                return
            for record in owned:
                runtime = self.runtimes.pop(record.session_id, None)
                if runtime is not None:
                    await runtime.aclose()
                    if runtime.lease is not None:
                        await runtime.lease.release()
                    record.add_share(self.owner, runtime.usage.tally)
                record.owner = ""
                record.drive_active = False
                await self._put(record)
        finally:
            # Released sessions need no lease; a lease left behind would only delay nothing.
            await self.replica_lease.stop(drop=True)

    async def on_session_lost(self, session_id: str, message: str) -> None:
        """The vendor ended the session by itself: close the record (reason VENDOR)."""
        log.warning("vendor_session_lost", session_id=session_id, message=message)
        with contextlib.suppress(GatewayError):
            await self.close(f"sessions/{session_id}", pb.CLOSE_REASON_VENDOR)

    def session_ages(self) -> list[tuple[str, float, float]]:
        """For each vendor session this process owns: vendor, undriven and overdue time (s).

        Undriven: how long since its last activity, while no Drive stream is attached (0
        while one is). Overdue: how far past its max duration, or (undriven) past its idle
        timeout, it is; the reaper closes such a session on its next pass, so a value that
        keeps growing means sessions are not being closed (metrics, a leak alert).
        """
        now_wall, now_mono = time.time(), time.monotonic()
        ages = []
        for session_id, runtime in list(self.runtimes.items()):
            undriven = 0.0 if runtime.drive is not None else now_mono - runtime.last_activity
            overdue = 0.0
            record = self._owned.get(session_id)
            if record is not None and record.state == pb.SESSION_STATE_READY:
                overdue = max(0.0, now_wall - record.expire_time)
                if runtime.drive is None:
                    overdue = max(overdue, undriven - record.idle_timeout_s)
            ages.append((runtime.adapter.capabilities.vendor, max(0.0, undriven), overdue))
        return ages


def drive_already_active(name: str, owner: str) -> GatewayError:
    """FAILED_PRECONDITION ``DRIVE_ALREADY_ACTIVE``: replica ``owner`` drives session ``name``."""
    return failed_precondition(
        Reason.DRIVE_ALREADY_ACTIVE,
        f"session {name} already has an open Drive stream on replica {owner} "
        "(set preempt to take it over)",
        session=name,
        ownerReplica=owner,
    )


def _taken_over(record: SessionRecord, owner: str) -> GatewayError:
    """ABORTED ``DRIVE_TAKEN_OVER``: replica ``owner`` lost ``record``'s session to its owner."""
    return GatewayError(
        grpc.StatusCode.ABORTED,
        Reason.DRIVE_TAKEN_OVER,
        f"replica {owner} no longer owns session {record.name} (replica "
        f"{record.owner or '(none)'} took it over); reconnect to drive it",
        {"session": record.name, "ownerReplica": record.owner},
    )


def _drivable(record: SessionRecord) -> SessionRecord:
    """``record`` if its session can be driven now.

    Raises:
        GatewayError: SESSION_CLOSED, SESSION_NOT_READY.
    """
    if record.terminal or record.state == pb.SESSION_STATE_CLOSING:
        raise session_closed(record)
    if record.state != pb.SESSION_STATE_READY:
        raise failed_precondition(
            Reason.SESSION_NOT_READY,
            f"session {record.name} is not ready to drive",
            session=record.name,
            state=pb.SessionState.Name(record.state),  # type: ignore[arg-type]
        )
    return record


def _page_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def _page_cursor(token: str) -> str:
    """The cursor a page token carries.

    Raises:
        GatewayError: INVALID_ARGUMENT when ``token`` is not one :func:`_page_token` made.
    """
    cursor = None
    if PAGE_TOKEN.fullmatch(token):
        with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError too
            cursor = base64.urlsafe_b64decode(token).decode("ascii")
    if cursor is None or not PAGE_CURSOR.fullmatch(cursor):
        raise invalid_argument(
            Reason.INVALID_ARGUMENT, "page_token is not one this server issued", field="page_token"
        )
    return cursor


def _is_settled(status: SessionStatus) -> bool:
    return status.state is not ReadyState.PENDING


def _set_failure(record: SessionRecord, exc: GatewayError) -> None:
    record.failure_reason = exc.reason
    record.failure_message = exc.message
    record.failure_vendor_code = exc.metadata.get("vendorCode", "")


def session_closed(record: SessionRecord) -> GatewayError:
    """FAILED_PRECONDITION ``SESSION_CLOSED`` for a closed session, with its close reason."""
    reason = pb.CloseReason.Name(record.close_reason)  # type: ignore[arg-type]
    return failed_precondition(
        Reason.SESSION_CLOSED,
        f"session {record.name} is closed ({reason})",
        session=record.name,
        closeReason=reason,
    )


def _binding(tenant: str, request_id: str) -> str:
    """The registry key of a request_id: scoped by tenant (tenant names hold no "/")."""
    return f"{tenant}/{request_id}" if tenant else request_id


def _request_id_reused(request_id: str) -> GatewayError:
    return invalid_argument(
        Reason.REQUEST_ID_REUSED,
        f"request_id {request_id} was used for a different CreateSession request",
        requestId=request_id,
    )
