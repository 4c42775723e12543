"""Leases that let replicas share sessions safely (docs/architecture.md §4.1).

* :class:`ReplicaLease`: this replica's liveness lease in the registry, renewed every third
  of its TTL. A session belongs to its owner while the owner's lease lives; once it lapses
  (``kill -9``, node loss) another replica adopts the session on its next Drive, or closes it.
* :class:`DriveLease`: this replica's lease on driving one session, with a fencing token.
  At most one replica holds it; a Drive elsewhere is refused (``DRIVE_ALREADY_ACTIVE``). The
  lease is known valid until a deadline on the local monotonic clock that its renewals push
  forward (a renewal counts from *before* it was sent, so the deadline is never later than
  the expiry Redis applies). The sender checks that deadline before every vendor write, a
  comparison, not a Redis call; past it (a stalled process, a slow Redis) the sender asks
  Redis before writing, and a replica that lost the lease stops before its next write.

Redis being unreachable is not a loss: the lease stays usable and is asked again a third of
a TTL later, so live Drives go on through a Redis outage. The price: a replica cut off from
Redis while the others still reach it can keep sending after another replica took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import structlog

from core.errors import GatewayError, Reason
from gateway.registry import LeaseState, SessionRegistry

log = structlog.get_logger("gateway.leases")

VALID_FRACTION = 0.8
"""Share of the TTL a renewal makes the lease usable for, counted from before the call: a
margin for the clock rates of this host and of Redis."""


def default_replica_id() -> str:
    """A replica id: the host name (the pod name on Kubernetes) and a per-process suffix.

    The suffix keeps a restarted container from inheriting the leases and sessions of the
    process it replaces: those are adopted or closed like any dead replica's.
    """
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class ReplicaLease:
    """This replica's liveness lease, renewed every ``ttl_s / 3`` seconds.

    Args:
        registry: where the lease lives.
        owner: this replica's id.
        ttl_s: lifetime of the lease without renewal (s).
        on_lapse: awaited after a renewal found the lease had lapsed (this process stalled
            or lost Redis longer than ``ttl_s``): other replicas may have adopted or closed
            its sessions meanwhile.
    """

    def __init__(
        self,
        registry: SessionRegistry,
        owner: str,
        ttl_s: float,
        on_lapse: Callable[[], Awaitable[None]],
    ) -> None:
        self.registry = registry
        self.owner = owner
        self.ttl_s = ttl_s
        self._on_lapse = on_lapse
        self._task: asyncio.Task[None] | None = None
        self._reachable_since: float | None = None

    def reachable_for(self) -> float:
        """How long the registry has answered every renewal, without a failure (s; 0 now).

        After an outage every replica's lease looks lapsed until it renews again (within a
        third of a TTL of Redis coming back): a replica judges others dead only once it has
        reached Redis for a whole TTL itself.
        """
        if self._reachable_since is None:
            return 0.0
        return time.monotonic() - self._reachable_since

    async def start(self) -> None:
        """Take the lease now, then keep renewing it in the background.

        Raises:
            Exception: the registry's error when the first renewal fails (no Redis at start).
        """
        await self.registry.renew_replica(self.owner, self.ttl_s)
        self._reachable_since = time.monotonic()
        self._task = asyncio.create_task(self._renew_forever(), name="replica-lease")

    async def _renew_forever(self) -> None:
        interval = self.ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await asyncio.wait_for(
                    self.registry.renew_replica(self.owner, self.ttl_s), interval
                )
            except Exception as exc:  # Redis unreachable: retry at the next tick
                log.warning("replica_lease_renew_failed", error=type(exc).__name__)
                self._reachable_since = None
                continue
            if self._reachable_since is None:
                self._reachable_since = time.monotonic()
            if not alive:
                log.warning("replica_lease_lapsed", replica=self.owner, ttl_s=self.ttl_s)
                try:
                    await self._on_lapse()
                except Exception:
                    log.exception("replica_lease_reconcile_failed")

    async def stop(self, *, drop: bool) -> None:
        """Stop renewing; with ``drop``, end the lease now (a clean shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if drop:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.registry.drop_replica(self.owner), self.ttl_s / 3)


class DriveLease:
    """This replica's lease on driving session ``session_id``, with fencing token ``token``.

    Also the session's turn-id allocator: :meth:`next_turn_id` checks the token and takes the
    next number of the session's counter in one registry call, so turn ids stay unique
    within the session across replicas.

    Args:
        registry: where the lease lives.
        session_id: the session.
        owner: this replica's id.
        token: the fencing token the registry gave.
        ttl_s: lifetime without renewal (s).
        acquired_at: ``time.monotonic()`` just before the acquiring call was sent.
        on_end: called once when the lease ends for this replica (another replica took the
            Drive over, or asked to), with the error the Drive stream ends with.
        floor: the session's last turn number known to this replica (its record's): turn
            ids this lease allocates are above it.
    """

    def __init__(
        self,
        registry: SessionRegistry,
        session_id: str,
        owner: str,
        token: int,
        ttl_s: float,
        acquired_at: float,
        on_end: Callable[[DriveLease, GatewayError], None],
        floor: int = 0,
    ) -> None:
        self.registry = registry
        self.session_id = session_id
        self.owner = owner
        self.token = token
        self.ttl_s = ttl_s
        self.lost: GatewayError | None = None
        self._on_end = on_end
        self._valid_until = acquired_at + ttl_s * VALID_FRACTION
        self._last_turn = floor
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._released = False

    @property
    def last_turn(self) -> int:
        """The last turn number this lease allocated (or its floor)."""
        return self._last_turn

    @property
    def name(self) -> str:
        """The session's resource name."""
        return f"sessions/{self.session_id}"

    def start(self) -> None:
        """Renew in the background every ``ttl_s / 3`` seconds until released or lost."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._renew_forever(), name=f"drive-lease-{self.session_id}"
            )

    def fresh(self) -> bool:
        """Whether the lease is known to be ours now (no registry call: the hot path)."""
        return self.lost is None and time.monotonic() < self._valid_until

    async def confirm(self) -> None:
        """Make sure the lease is still ours before a vendor write (ask the registry if stale).

        Raises:
            GatewayError: ABORTED ``DRIVE_TAKEN_OVER`` (another replica drives the session)
                or ``DRIVE_PREEMPTED`` (another replica's Drive asked to take over).
        """
        if self.lost is None and not self.fresh():
            await self._renew(force=False)
        if self.lost is not None:
            raise self.lost

    async def next_turn_id(self) -> str:
        """The session's next turn id ("1", "2", ..., across replicas), if still ours.

        Raises:
            GatewayError: as :meth:`confirm`.
        """
        if self.lost is not None:
            raise self.lost
        started = time.monotonic()
        try:
            state = await asyncio.wait_for(
                self.registry.next_turn(
                    self.session_id, self.owner, self.token, self.ttl_s, self._last_turn
                ),
                self.ttl_s / 3,
            )
        except Exception as exc:
            # Redis unreachable: the Drive goes on (module docstring). Numbers continue from
            # ours; the registry's counter is raised past them at the next allocation.
            log.warning("turn_counter_unavailable", error=type(exc).__name__)
            self._last_turn += 1
            return str(self._last_turn)
        self._apply(state, started)
        if self.lost is not None:
            raise self.lost
        self._last_turn = state.turn
        return str(state.turn)

    async def _renew_forever(self) -> None:
        interval = self.ttl_s / 3
        while self.lost is None:
            await asyncio.sleep(interval)
            await self._renew(force=True)

    async def _renew(self, *, force: bool) -> None:
        async with self._lock:
            if self.lost is not None or (not force and self.fresh()):
                return  # a concurrent caller just renewed
            started = time.monotonic()
            try:
                state = await asyncio.wait_for(
                    self.registry.renew_drive(self.session_id, self.owner, self.token, self.ttl_s),
                    self.ttl_s / 3,
                )
            except Exception as exc:
                log.warning(
                    "drive_lease_unconfirmed", session_id=self.session_id, error=type(exc).__name__
                )
                # Not a loss (module docstring): usable for one more renewal period.
                self._valid_until = max(self._valid_until, time.monotonic() + self.ttl_s / 3)
                return
            self._apply(state, started)

    def _apply(self, state: LeaseState, started: float) -> None:
        if state.held and not state.preempted_by:
            self._valid_until = max(self._valid_until, started + self.ttl_s * VALID_FRACTION)
            return
        if state.held:
            error = GatewayError(
                grpc.StatusCode.ABORTED,
                Reason.DRIVE_PREEMPTED,
                f"a Drive stream on another replica took over session {self.name}",
                {"session": self.name},
            )
        else:
            error = GatewayError(
                grpc.StatusCode.ABORTED,
                Reason.DRIVE_TAKEN_OVER,
                f"replica {self.owner} no longer holds the drive lease of session {self.name} "
                f"(replica {state.holder or '(none)'} took it over); reconnect to drive it",
                {"session": self.name, "ownerReplica": state.holder},
            )
        self._end(error)

    def _end(self, error: GatewayError) -> None:
        if self.lost is not None:
            return
        self.lost = error
        log.warning(
            "drive_lease_lost", session_id=self.session_id, reason=error.reason, token=self.token
        )
        self._on_end(self, error)

    async def release(self) -> None:
        """Stop renewing and drop the lease if its token still holds it (compare-and-delete).

        Safe after a loss too: a lease another replica holds now is left alone.
        """
        self.stop()
        if self._released:
            return
        self._released = True
        if self.lost is None:
            self.lost = GatewayError(
                grpc.StatusCode.ABORTED,
                Reason.DRIVE_TAKEN_OVER,
                f"the drive lease of session {self.name} was given back",
                {"session": self.name, "ownerReplica": ""},
            )
        try:
            await asyncio.wait_for(
                self.registry.release_drive(self.session_id, self.token), self.ttl_s / 3
            )
        except Exception as exc:  # it lapses by itself within a TTL
            log.warning(
                "drive_lease_release_failed", session_id=self.session_id, error=type(exc).__name__
            )

    def stop(self) -> None:
        """Stop renewing (the lease was lost: nothing to release)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
