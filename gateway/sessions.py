"""Session lifecycle: idempotent create, readiness wait, close on every path, reaper.

Peer lesson (b) 2: leaked sessions keep billing. So a session is recorded before the vendor
call returns, the vendor-side backstops are always set by the adapter, every close path
(CloseSession, reaper, shutdown, vendor loss, failed start) goes through :meth:`close`, and
the reaper closes sessions past ``idle_timeout`` or ``max_duration``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import time
import uuid
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
    session_limit_reached,
    session_not_found,
    unknown_vendor,
)
from core.resilience import deadline_scope, keepalive_loop, poll_until
from gateway import metrics
from gateway.config import Settings
from gateway.registry import SessionFilter, SessionRecord, SessionRegistry
from gateway.vendors import VendorRegistry

if TYPE_CHECKING:
    from gateway.drive import DriveStream

log = structlog.get_logger("gateway.sessions")

MIN_IDLE_TIMEOUT_S = 30.0
CLOSE_BUDGET_S = 30.0
"""Time a vendor close may take, retries included (s); the vendor's backstops cover the rest."""
MAX_DURATION_S = 86400.0
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
    """What this process holds for a session it owns: channel, active drive, turn counter."""

    session_id: str
    adapter: VendorAdapter
    handle: VendorSessionHandle
    channel: DriveChannel | None = None
    drive: DriveStream | None = None
    turn_counter: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    keepalive_task: asyncio.Task[None] | None = None
    open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    attach_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def next_turn_id(self) -> str:
        """Allocate the next turn id of the session ("1", "2", ...)."""
        self.turn_counter += 1
        return str(self.turn_counter)

    async def get_channel(self) -> DriveChannel:
        """The session's drive channel, opened at first use, with shared keepalive."""
        async with self.open_lock:
            if self.channel is None or self.channel.closed:
                self.channel = await self.adapter.open_channel(self.handle, self.session_id)
                interval = self.adapter.capabilities.keepalive_interval_s
                if interval:
                    self.keepalive_task = asyncio.create_task(
                        keepalive_loop(self.channel, interval), name=f"keepalive-{self.session_id}"
                    )
            return self.channel

    async def aclose(self) -> None:
        """Stop keepalive and close the channel (not the vendor session)."""
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keepalive_task
        if self.channel is not None:
            await self.channel.aclose()


class SessionManager:
    """Creates, tracks, reaps and closes sessions for one gateway process.

    Args:
        settings: gateway settings (timeouts, defaults).
        adapters: configured adapters by vendor id.
        registry: where records are stored.
        vendors: the vendor plugins (their option fields).
        owner: this replica's id.
    """

    def __init__(
        self,
        settings: Settings,
        adapters: dict[str, VendorAdapter],
        registry: SessionRegistry,
        vendors: VendorRegistry,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.vendors = vendors
        self.adapters = adapters
        self.registry = registry
        self.owner = owner or uuid.uuid4().hex[:12]
        self.runtimes: dict[str, SessionRuntime] = {}
        self._creating: dict[str, asyncio.Task[pb.Session]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._close_locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._reaper_stopped = False

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

    async def create(self, req: pb.CreateSessionRequest, deadline: float | None) -> pb.Session:
        """CreateSession: create the vendor session, wait until it is ready, return it.

        Args:
            req: the request.
            deadline: the call's deadline as ``time.monotonic()``, or ``None``.

        Raises:
            GatewayError: bad request, unknown vendor, reused request id, or a vendor
                error before a vendor session existed.
        """
        adapter, max_duration, idle = self._validate_create(req)
        fingerprint = ""
        if req.request_id:
            stripped = pb.CreateSessionRequest()
            stripped.CopyFrom(req)
            stripped.request_id = ""
            fingerprint = hashlib.sha256(stripped.SerializeToString(deterministic=True)).hexdigest()
            session_id = uuid.uuid4().hex
            earlier = await self.registry.claim_request_id(req.request_id, session_id)
            if earlier is not None:
                return await self._existing_for_request(req.request_id, earlier, fingerprint)
        else:
            session_id = uuid.uuid4().hex
        # Checked and counted with no await in between, so concurrent creates on this
        # replica cannot overshoot max_sessions.
        if len(self._creating.keys() | self.runtimes.keys()) >= self.settings.max_sessions:
            if req.request_id:
                await self.registry.release_request_id(req.request_id)
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.SESSION_LIMIT_REACHED).inc()
            raise session_limit_reached(
                "replica", self.settings.max_sessions, REPLICA_LIMIT_RETRY_S
            )
        # The creation runs as its own task, shielded from this call: a caller that gives up
        # (deadline, cancel) must not abandon a vendor session half made. A retry with the
        # same request_id joins the same task instead of creating a second vendor session.
        task = asyncio.create_task(
            self._create(req, adapter, session_id, fingerprint, max_duration, idle, deadline),
            name=f"create-{session_id}",
        )
        self._creating[session_id] = task

        def settled(done: asyncio.Task[pb.Session]) -> None:
            self._creating.pop(session_id, None)
            if not done.cancelled() and done.exception() is not None and req.request_id:
                # No vendor session exists (a failed start returns a FAILED session
                # instead), so a retry with the same id may try again.
                task_release = self.registry.release_request_id(req.request_id)
                self._background.add(asyncio.ensure_future(task_release))

        task.add_done_callback(settled)
        return await asyncio.shield(task)

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
    ) -> pb.Session:
        record = SessionRecord(
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
        if not await self.registry.insert(record, cluster_max):
            metrics.SESSIONS_CREATED.labels(req.vendor, Reason.SESSION_LIMIT_REACHED).inc()
            assert cluster_max is not None  # only a limit refuses
            raise session_limit_reached("cluster", cluster_max, CLUSTER_LIMIT_RETRY_S)
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
                await self.registry.delete(session_id)
            except Exception as delete_exc:  # the reaper fails the CREATING record later
                bound.warning("session_record_not_deleted", error=type(delete_exc).__name__)
            raise
        record.vendor_session_id = handle.vendor_session_id
        record.vendor_data = handle.data.model_dump(mode="json")
        record.playback = handle.playback.SerializeToString()
        runtime = SessionRuntime(session_id, adapter, handle)
        self.runtimes[session_id] = runtime
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
            await self.registry.put(record)
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
        await self.registry.put(record)
        now = time.monotonic()
        ready_deadline = now + self.settings.create_timeout_s
        if deadline is not None and deadline - 0.2 > now:
            # The caller still waits: answer within its deadline (a FAILED session beats
            # DEADLINE_EXCEEDED). A caller already gone leaves the server's own bound, so a
            # retry with the same request_id can join a session that does become ready.
            ready_deadline = min(ready_deadline, deadline - 0.2)
        try:
            status: SessionStatus = await poll_until(
                lambda: adapter.session_status(handle),
                _is_settled,
                deadline=ready_deadline,
                vendor=req_vendor,
            )
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
            await self.registry.put(record)
            await self.close(record.name, pb.CLOSE_REASON_FAILED)
            metrics.SESSIONS_CREATED.labels(req_vendor, exc.reason).inc()
            failed = await self.registry.get(session_id)
            assert failed is not None
            return failed.to_proto()
        record.state = pb.SESSION_STATE_READY
        record.last_activity_time = time.time()
        await self.registry.put(record)
        bound.info("session_ready", vendor_session_id=handle.vendor_session_id)
        metrics.SESSIONS_CREATED.labels(req_vendor, "READY").inc()
        return record.to_proto()

    # ---- read ---------------------------------------------------------------------------

    async def get_record(self, name: str) -> SessionRecord:
        """The record for session name ``name``.

        Raises:
            GatewayError: INVALID_SESSION_NAME or SESSION_NOT_FOUND.
        """
        session_id = parse_session_name(name)
        record = await self.registry.get(session_id)
        if record is None:
            raise session_not_found(name)
        runtime = self.runtimes.get(session_id)
        if runtime is not None:
            record.drive_active = runtime.drive is not None
            record.last_activity_time = max(
                record.last_activity_time, time.time() - (time.monotonic() - runtime.last_activity)
            )
        return record

    async def list_sessions(self, req: pb.ListSessionsRequest) -> pb.ListSessionsResponse:
        """ListSessions, newest first, with cursor page tokens.

        A page token is the creation-order position (``SessionRecord.index_key``) of the
        page's last session, so the next page starts right after it however many sessions
        were created or forgotten meanwhile, on any replica (an offset would shift).

        Raises:
            GatewayError: INVALID_ARGUMENT for a negative page size or a bad page token.
        """
        if req.page_size < 0:
            raise invalid_argument(
                Reason.INVALID_ARGUMENT, "page_size must be >= 0", field="page_size"
            )
        size = min(req.page_size or 50, 500)
        after = _page_cursor(req.page_token) if req.page_token else ""
        flt = SessionFilter(vendor=req.vendor, state=req.state, labels=dict(req.labels))
        records = await self.registry.list_records(flt, after, size + 1)
        more = len(records) > size
        return pb.ListSessionsResponse(
            sessions=[r.to_proto() for r in records[:size]],
            next_page_token=_page_token(records[size - 1].index_key) if more else "",
        )

    # ---- drive attach -------------------------------------------------------------------

    async def prepare_drive(self, name: str) -> tuple[SessionRecord, SessionRuntime]:
        """The record and this process's runtime of a session a Drive stream wants to drive.

        Adopts a session another replica created (shared registry).

        Raises:
            GatewayError: SESSION_NOT_FOUND, SESSION_CLOSED, SESSION_NOT_READY.
        """
        record = await self.get_record(name)
        if record.terminal or record.state == pb.SESSION_STATE_CLOSING:
            raise session_closed(record)
        if record.state != pb.SESSION_STATE_READY:
            raise failed_precondition(
                Reason.SESSION_NOT_READY,
                f"session {name} is not ready to drive",
                session=name,
                state=pb.SessionState.Name(record.state),  # type: ignore[arg-type]
            )
        runtime = self.runtimes.get(record.session_id)
        if runtime is None:
            runtime = await self._adopt(record)
        return record, runtime

    async def attach_drive(
        self, runtime: SessionRuntime, name: str, preempt: bool, drive: DriveStream
    ) -> None:
        """Make ``drive`` the session's one active Drive stream.

        Raises:
            GatewayError: DRIVE_ALREADY_ACTIVE (``preempt`` unset and another stream is open).
        """
        async with runtime.attach_lock:
            old = runtime.drive
            if old is not None and old.call_done():
                # The old call already ended (a client that cancelled and reconnects): wait
                # for its cleanup instead of refusing the new stream.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(old.closed.wait(), 5.0)
                if runtime.drive is old:
                    runtime.drive = None
            if runtime.drive is not None:
                if not preempt:
                    raise failed_precondition(
                        Reason.DRIVE_ALREADY_ACTIVE,
                        f"session {name} already has an open Drive stream "
                        "(set preempt to take it over)",
                        session=name,
                    )
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
            await self.registry.put(record)

    async def _adopt(self, record: SessionRecord) -> SessionRuntime:
        """Build a runtime for a session created by another replica (shared registry)."""
        adapter = self.adapters.get(record.vendor)
        if adapter is None:
            raise unknown_vendor(record.vendor, sorted(self.adapters))
        handle = adapter.vendor_session_handle(record.vendor_session_id, record.vendor_data)
        if record.playback:
            handle.playback.ParseFromString(record.playback)
        runtime = SessionRuntime(record.session_id, adapter, handle)
        self.runtimes[record.session_id] = runtime
        record.owner = self.owner  # this replica now holds the channel and reaps the session
        await self.registry.put(record)
        log.info("session_adopted", session_id=record.session_id, vendor=record.vendor)
        return runtime

    async def detach_drive(self, runtime: SessionRuntime, drive: DriveStream) -> None:
        """Forget ``drive`` as the active stream (if it still is); persist the activity time.

        The registry keeps ``last_activity_time`` so that any replica can judge idleness.
        """
        if runtime.drive is drive:
            runtime.drive = None
        runtime.last_activity = time.monotonic()
        record = await self.registry.get(runtime.session_id)
        if record is not None and not record.terminal and record.state != pb.SESSION_STATE_CLOSING:
            record.last_activity_time = time.time()
            record.drive_active = runtime.drive is not None
            await self.registry.put(record)

    # ---- close --------------------------------------------------------------------------

    async def close(self, name: str, reason: int) -> pb.Session:
        """Close a session on every path: end its Drive, channel and vendor session.

        Idempotent: a closed (or failed) session is returned unchanged. Vendor close errors
        that are retryable are retried with backoff; the record is marked CLOSED even if
        the vendor keeps failing (its own backstops then end it) and the error is logged.
        """
        session_id = parse_session_name(name)
        lock = self._close_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            record = await self.registry.get(session_id)
            if record is None:
                raise session_not_found(name)
            if record.state == pb.SESSION_STATE_CLOSED or (
                record.state == pb.SESSION_STATE_FAILED and record.close_time
            ):
                return record.to_proto()
            failed_start = reason == pb.CLOSE_REASON_FAILED
            record.state = pb.SESSION_STATE_CLOSING
            await self.registry.put(record)
            runtime = self.runtimes.pop(session_id, None)
            if runtime is not None and runtime.drive is not None:
                record.close_reason = reason
                await runtime.drive.terminate(session_closed(record))
            if runtime is not None:
                await runtime.aclose()
            adapter = self.adapters.get(record.vendor)
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
            await self.registry.put(record)
            metrics.SESSIONS_CLOSED.labels(
                record.vendor,
                pb.CloseReason.Name(reason),  # type: ignore[arg-type]
            ).inc()
            log.info(
                "session_closed",
                session_id=session_id,
                vendor=record.vendor,
                close_reason=pb.CloseReason.Name(reason),  # type: ignore[arg-type]
            )
            return record.to_proto()

    # ---- reaper and shutdown ------------------------------------------------------------

    def start_reaper(self) -> None:
        """Start the background reaper (every ``reaper_interval_s``)."""
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def _reap_forever(self) -> None:
        # A flag as well as the cancel: a cancel that lands inside a Redis call can be lost
        # there (seen with redis-py 8 on Python 3.11), and the loop would then run on and
        # keep shutdown() waiting for it forever.
        while not self._reaper_stopped:
            await asyncio.sleep(self.settings.reaper_interval_s)
            try:
                await self.reap_once()
            except Exception:  # the reaper must outlive any one bad session
                log.exception("reaper_failed")

    async def reap_once(self) -> list[str]:
        """Close owned sessions past max_duration, or idle past idle_timeout; return their ids."""
        now_wall, now_mono = time.time(), time.monotonic()
        reaped: list[str] = []
        # Sessions released by a replica that shut down (shared registry) are reaped by anyone.
        candidates = await self.registry.owned_by(self.owner) + await self.registry.owned_by("")
        for record in candidates:
            if record.state == pb.SESSION_STATE_CREATING:
                stale = now_wall - record.create_time > self.settings.create_timeout_s + 30
                if stale and record.session_id not in self._creating:
                    # A create that never settled (its process died mid-way): close it.
                    await self.close(record.name, pb.CLOSE_REASON_FAILED)
                    reaped.append(record.session_id)
                continue
            if record.state != pb.SESSION_STATE_READY:
                continue
            runtime = self.runtimes.get(record.session_id)
            if now_wall >= record.expire_time:
                reason = pb.CLOSE_REASON_MAX_DURATION
            elif (
                runtime is not None
                and runtime.drive is None
                and (now_mono - runtime.last_activity >= record.idle_timeout_s)
            ):
                reason = pb.CLOSE_REASON_IDLE_TIMEOUT
            elif runtime is None and now_wall - record.last_activity_time >= record.idle_timeout_s:
                reason = pb.CLOSE_REASON_IDLE_TIMEOUT
            else:
                continue
            await self.close(record.name, reason)
            reaped.append(record.session_id)
        return reaped

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
            record.owner = ""
            record.drive_active = False
            await self.registry.put(record)

    async def on_session_lost(self, session_id: str, message: str) -> None:
        """The vendor ended the session by itself: close the record (reason VENDOR)."""
        log.warning("vendor_session_lost", session_id=session_id, message=message)
        with contextlib.suppress(GatewayError):
            await self.close(f"sessions/{session_id}", pb.CLOSE_REASON_VENDOR)


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


def _request_id_reused(request_id: str) -> GatewayError:
    return invalid_argument(
        Reason.REQUEST_ID_REUSED,
        f"request_id {request_id} was used for a different CreateSession request",
        requestId=request_id,
    )
