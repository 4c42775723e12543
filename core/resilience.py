"""Retries, polling, rate limits, keepalive and reconnect backoff shared by every adapter.

Vendor packages must not grow their own loops for these (architecture.md §5): they declare
numbers in :class:`core.contract.Capabilities` and call these helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import structlog

from core.errors import Reason, VendorError, vendor_timeout
from core.telemetry import telemetry

if TYPE_CHECKING:
    from core.contract import DriveChannel

T = TypeVar("T")
log = structlog.get_logger("core.resilience")


_DEADLINE: ContextVar[float | None] = ContextVar("vendor_operation_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Bound every :func:`retry_call` run inside (tasks started inside too) by ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value: the caller's gRPC deadline, or the
    server's own bound for work that outlives its caller (creating, closing). Scopes nest;
    the earlier deadline wins. This is how one vendor operation's retry budget is bounded by
    the caller's deadline without every adapter passing it along.
    """
    outer = _DEADLINE.get()
    if deadline is None or (outer is not None and outer < deadline):
        deadline = outer
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline of the innermost :func:`deadline_scope` (``time.monotonic()``), if any."""
    return _DEADLINE.get()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff").

    Attempt ``n`` (0-based) waits a uniform random time in ``[0, min(cap_s, base_s * 2**n)]``
    so that many clients retrying at once spread out.

    Attributes:
        base_s: first ceiling (s).
        cap_s: largest ceiling (s).
        max_attempts: attempts in all, the first included.
    """

    base_s: float = 0.2
    cap_s: float = 5.0
    max_attempts: int = 5

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        return random.uniform(0, min(self.cap_s, self.base_s * (2**attempt)))


async def retry_call(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    deadline: float | None = None,
    operation: str = "",
) -> T:
    """Run an idempotent vendor call, repeating it on retryable :class:`VendorError`.

    Args:
        call: the call; it is re-invoked (fresh signature, fresh nonce) per attempt.
        backoff: attempts and waits.
        deadline: ``time.monotonic()`` value after which no new attempt starts (the
            caller's gRPC deadline); the last error is raised then. The deadline of the
            enclosing :func:`deadline_scope` applies too; the earlier one wins.
        operation: name for logs.

    Raises:
        VendorError: the last error, when it is not retryable, attempts are used up or the
            deadline would pass during the wait.
    """
    scoped = _DEADLINE.get()
    if scoped is not None and (deadline is None or scoped < deadline):
        deadline = scoped
    attempt = 0
    while True:
        try:
            return await call()
        except VendorError as exc:
            attempt += 1
            if not exc.retryable or attempt >= backoff.max_attempts:
                raise
            wait = backoff.delay(attempt - 1)
            if exc.retry_after_s is not None:
                wait = max(wait, exc.retry_after_s)
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise
            log.info(
                "vendor_call_retry",
                operation=operation,
                attempt=attempt,
                wait_s=round(wait, 3),
                reason=exc.reason,
                vendor_code=exc.vendor_code,
            )
            await asyncio.sleep(wait)


async def create_or_adopt(
    create: Callable[[], Awaitable[str]],
    find: Callable[[], Awaitable[str | None]],
    *,
    vendor: str,
    avatar_id: str,
) -> str:
    """Create a vendor session; if the answer was lost, adopt the session the call made.

    A create is not idempotent, so a lost answer cannot be retried blindly: the vendor may
    have created (and started billing) the session. When ``create`` fails with
    ``VENDOR_UNAVAILABLE`` or ``VENDOR_TIMEOUT``, ``find`` looks the session up by an id the
    adapter derived from ours (ZEGO StreamId, Akool room) and it is adopted instead of leaked
    until the vendor's backstop ends it. ``AVATAR_NOT_FOUND`` gets ``avatarId`` metadata.

    Returns:
        The vendor session id.

    Raises:
        VendorError: the create's error when it is not a lost answer or nothing was found.
    """
    try:
        return await create()
    except VendorError as exc:
        if exc.reason == Reason.AVATAR_NOT_FOUND:
            exc.metadata["avatarId"] = avatar_id
        if exc.reason not in (Reason.VENDOR_UNAVAILABLE, Reason.VENDOR_TIMEOUT):
            raise
        found = await find()
        if found is None:
            raise
        log.warning("create_answer_lost_session_adopted", vendor=vendor, vendor_session_id=found)
        return found


async def send_until_acknowledged(
    send: Callable[[], Awaitable[object]],
    acknowledged: asyncio.Event,
    *,
    attempts: int,
    wait_s: float,
) -> bool:
    """Send, wait (bounded) for the peer's acknowledgement, send again if none came.

    For a message the peer answers, on a path that may lose it without an error (a data
    channel whose receiver is not listening yet). The ack of any attempt counts, so ``send``
    must be idempotent. Bounded by ``attempts * wait_s`` and by the enclosing
    :func:`deadline_scope`.

    Args:
        send: sends the message once; its errors propagate.
        acknowledged: set by the caller's receive path when an ack of any attempt arrives.
        attempts: sends in all, the first included.
        wait_s: how long to wait for the ack after each send (s).

    Returns:
        True once acknowledged; False when every attempt went unanswered for ``wait_s`` or
        the scope's deadline passed (the first send always goes out).
    """
    deadline = _DEADLINE.get()
    for attempt in range(attempts):
        left = wait_s if deadline is None else min(wait_s, deadline - time.monotonic())
        if acknowledged.is_set() or (attempt and left <= 0):
            break  # the first send goes out even past the deadline: it costs no wait
        await send()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acknowledged.wait(), max(0.0, left))
    return acknowledged.is_set()


async def poll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    deadline: float,
    vendor: str,
    first_delay_s: float = 0.1,
    max_delay_s: float = 2.0,
    fast_for_s: float = 0.0,
    notice: asyncio.Future[T] | None = None,
) -> T:
    """Poll ``probe`` until ``done(result)``, with growing delays, bounded by ``deadline``.

    Delays stay at ``first_delay_s`` for the first ``fast_for_s`` seconds (from the first
    poll), then grow by 1.5x up to ``max_delay_s`` (Tencent's SDK polls statsession every
    ~100 ms; its docs suggest 5 s: this starts fast and backs off). The fast phase bounds how
    late after the vendor is ready the poll notices it (about one delay). Retryable vendor
    errors during polling are tolerated until the deadline. ``notice``, completed by the
    vendor's own notification (a callback), ends a delay or a probe under way at once (a
    slow or failing status endpoint does not hold it up): its result is taken as a probe's;
    one that is not ``done`` is ignored and polling goes on.

    Raises:
        VendorError: ``VENDOR_TIMEOUT`` when ``deadline`` (``time.monotonic()``) passes, or a
            non-retryable error from ``probe``.
    """
    delay = first_delay_s
    fast_until = time.monotonic() + fast_for_s
    while True:
        # One hung probe must not outlive the caller's deadline, nor hold up a notice.
        probing = asyncio.ensure_future(probe())
        waits: set[asyncio.Future[Any]] = {probing}
        if notice is not None:
            waits.add(notice)
        while waits and not probing.done():
            finished, _ = await asyncio.wait(
                waits,
                timeout=max(0.05, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not finished:
                break  # the deadline passed during the probe
            if notice is not None and notice in finished:
                told = _told(notice)
                if told is not None and done(told):
                    await _cancelled(probing)
                    return told
                waits.discard(notice)
                notice = None  # spent: plain polling from here
        if probing.done():
            try:
                result = probing.result()
                if done(result):
                    return result
            except TimeoutError:
                pass
            except VendorError as exc:
                if not exc.retryable:
                    raise
        else:
            await _cancelled(probing)
        now = time.monotonic()
        if now >= deadline:
            raise vendor_timeout(vendor, "the session did not become ready in time")
        pause = min(delay, max(0.0, deadline - now))
        if notice is None:
            await asyncio.sleep(pause)
        else:
            await asyncio.wait([notice], timeout=pause)
            if notice.done():
                told = _told(notice)
                if told is not None and done(told):
                    return told
                notice = None  # spent: plain polling from here
        if time.monotonic() >= fast_until:
            delay = min(max_delay_s, delay * 1.5)


def _told(notice: asyncio.Future[T]) -> T | None:
    """A completed notice's value, ``None`` when it was cancelled."""
    return None if notice.cancelled() else notice.result()


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end, whatever it ends with."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled too
    except Exception:  # noqa: S110 - the probe's outcome no longer matters
        pass


class RateLimitStorage(ABC):
    """Where a :class:`RateLimiter` counts calls: this process, or shared by every replica.

    The default (:class:`MemoryRateLimitStorage`) counts in this process. The gateway injects
    a shared one (Redis) when replicas share a vendor account, so that their calls together
    stay within the vendor's rate (core knows no storage backend: architecture.md §1).
    """

    @abstractmethod
    async def try_acquire(self, key: str, limit: int, window_s: float, call: str) -> float:
        """Count call ``call`` for ``key`` if fewer than ``limit`` were counted in ``window_s``.

        Args:
            key: the limited thing (vendor account and operation).
            limit: calls allowed per window.
            window_s: the sliding window (s).
            call: a unique id of this call (for :meth:`settle`).

        Returns:
            0.0 when the call was counted (stamped now); otherwise the seconds until the
            oldest counted call leaves the window (nothing was counted).
        """

    @abstractmethod
    async def settle(self, key: str, window_s: float, call: str) -> None:
        """Stamp counted call ``call`` of ``key`` with the time now (it was answered or failed).

        Args:
            key: as counted.
            window_s: as counted (s).
            call: the id the call was counted with.
        """


class MemoryRateLimitStorage(RateLimitStorage):
    """Sliding windows of call times in this process (monotonic clock)."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[str, float]] = {}

    async def try_acquire(self, key: str, limit: int, window_s: float, call: str) -> float:
        """Count call ``call`` for ``key`` if the window has room; else the seconds to wait."""
        calls = self._calls.setdefault(key, {})
        now = time.monotonic()
        for old in [c for c, at in calls.items() if now - at >= window_s]:
            del calls[old]
        if len(calls) < limit:
            calls[call] = now
            return 0.0
        return window_s - (now - min(calls.values()))

    async def settle(self, key: str, window_s: float, call: str) -> None:
        """Stamp call ``call`` of ``key`` with the time now."""
        self._calls.setdefault(key, {})[call] = time.monotonic()


class RateLimiter:
    """At most ``rate`` calls per sliding second per key (ZEGO: 10 QPS per Action, zegocloud.md §1).

    :meth:`slot` waits until a call is allowed instead of failing, so a burst of
    CreateSession calls is smoothed rather than rejected by the vendor; the wait is bounded
    by the enclosing :func:`deadline_scope`. Calls are counted in this process unless
    :meth:`bind` shares the count (every replica using one vendor account).

    The vendor counts a call when it arrives, some unknown time after we let it go
    (connection set-up, a busy or cold process, the vendor's own queue), and we cannot see
    arrivals. We see answers: a call has arrived by the time its answer (or error) comes. So
    :meth:`slot` stamps the call again when it ends, and the window counts each call at an
    upper bound of its arrival: the vendor never sees more than ``rate`` in its second
    however latency varies between calls and replicas. (A margin on admission times could
    only guess the spread: 100 ms was not enough for three processes on one busy host.)
    Limit: a call still unanswered after a whole window leaves the count until it ends.

    Args:
        rate: calls per second.
        window_s: the sliding window (s).
        vendor: vendor id, for errors and as the default scope of keys.
    """

    def __init__(self, rate: float, window_s: float = 1.0, *, vendor: str = "") -> None:
        self.limit = max(1, int(rate * window_s))
        self.window_s = window_s
        self.vendor = vendor
        self.scope = vendor
        self.storage: RateLimitStorage = MemoryRateLimitStorage()
        self._locks: dict[str, asyncio.Lock] = {}

    def bind(self, storage: RateLimitStorage, scope: str) -> None:
        """Count calls in ``storage`` from now on, keyed under ``scope``.

        Args:
            storage: the shared count (the gateway's Redis storage).
            scope: the vendor account the limit belongs to (vendor id and a public account
                id, e.g. ``zegocloud:123456``; never a secret).
        """
        self.storage = storage
        self.scope = scope

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Make one call of ``key`` inside: wait for room first, count it as of its end after.

        Raises:
            VendorError: RESOURCE_EXHAUSTED ``VENDOR_RATE_LIMITED`` (retryable, with the wait
                as ``retry_after_s``) when no call fits before the deadline of the enclosing
                :func:`deadline_scope`; nothing was sent to the vendor then.
        """
        call = await self._admit(key)
        try:
            yield
        finally:
            await self.storage.settle(f"{self.scope}:{key}", self.window_s, call)

    async def acquire(self, key: str) -> None:
        """Wait until one more call for ``key`` fits in the window, then count it (as of now).

        Prefer :meth:`slot`, which also counts the call as of its answer.

        Raises:
            VendorError: as :meth:`slot`.
        """
        await self._admit(key)

    async def _admit(self, key: str) -> str:
        # Callers of this process queue here in order; only the head of the queue asks the
        # storage, so a shared storage sees one request per process and key at a time.
        lock = self._locks.setdefault(key, asyncio.Lock())
        call = uuid.uuid4().hex
        async with lock:
            while True:
                wait = await self.storage.try_acquire(
                    f"{self.scope}:{key}", self.limit, self.window_s, call
                )
                if wait <= 0:
                    return call
                # Small margin: the vendor's window and ours never line up exactly.
                wait += 0.005
                deadline = _DEADLINE.get()
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise VendorError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        Reason.VENDOR_RATE_LIMITED,
                        f"{self.vendor}: the gateway's limit of {self.limit} {key} calls per "
                        f"{self.window_s:g} s leaves no slot before the deadline",
                        vendor=self.vendor,
                        # No vendor code: the gateway refused before calling the vendor.
                        metadata={"vendorCode": ""},
                        retryable=True,
                        retry_after_s=wait,
                    )
                await asyncio.sleep(wait)


async def keepalive_loop(channel: DriveChannel, interval_s: float, vendor: str = "") -> None:
    """Call ``channel.keepalive()`` whenever the channel has been idle for ``interval_s``.

    Runs until cancelled or the channel closes. Traffic resets the timer
    (``DriveChannel.mark_activity``), so a busy channel sends no heartbeats (Tencent tencent.md §7:
    any valid traffic keeps the link, a heartbeat renews an idle one). A failed keepalive is
    logged and reported (``core.telemetry``) under ``vendor``.
    """
    while not channel.closed:
        idle = channel.idle_for()
        if idle >= interval_s:
            try:
                await channel.keepalive()
                channel.mark_activity()
            except VendorError as exc:
                log.warning("keepalive_failed", reason=exc.reason, message=exc.message)
                telemetry().keepalive_failed(vendor or exc.vendor, exc.reason)
            await asyncio.sleep(interval_s)
        else:
            await asyncio.sleep(interval_s - idle)


async def reconnect(
    connect: Callable[[], Awaitable[T]],
    *,
    vendor: str,
    still_wanted: Callable[[], bool],
    backoff: Backoff = Backoff(base_s=0.1, cap_s=2.0, max_attempts=8),
) -> T:
    """Re-open a dropped vendor socket with backoff while the session is still open.

    ``connect`` must build a fresh URL and signature on each call (signatures expire).

    Each call is one reconnect, reported (``core.telemetry``) as ``succeeded`` or ``failed``.

    Raises:
        VendorError: ``VENDOR_UNAVAILABLE`` when attempts run out or ``still_wanted()``
            turns false (the session closed meanwhile).
    """
    last: Exception | None = None
    for attempt in range(backoff.max_attempts):
        if not still_wanted():
            break
        try:
            connected = await connect()
        except (VendorError, OSError) as exc:
            last = exc
            wait = backoff.delay(attempt)
            log.info("reconnect_retry", vendor=vendor, attempt=attempt + 1, wait_s=round(wait, 3))
            await asyncio.sleep(wait)
        else:
            telemetry().reconnect(vendor, "succeeded")
            return connected
    telemetry().reconnect(vendor, "failed")
    if isinstance(last, VendorError):
        raise last
    from core.errors import vendor_unavailable

    raise vendor_unavailable(vendor, f"could not reconnect the drive channel: {last}")
