"""retry_call's budget, the caller's deadline through deadline_scope, acked sends, rate limits."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from core.errors import Reason, VendorError
from core.resilience import (
    Backoff,
    MemoryRateLimitStorage,
    RateLimiter,
    current_deadline,
    deadline_scope,
    poll_until,
    retry_call,
    send_until_acknowledged,
)

pytestmark = pytest.mark.unit


def _busy() -> VendorError:
    return VendorError(
        grpc.StatusCode.UNAVAILABLE, Reason.VENDOR_UNAVAILABLE, "busy", vendor="t", retryable=True
    )


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        raise _busy()


async def test_attempts_are_the_budget() -> None:
    call = Counter()
    with pytest.raises(VendorError):
        await retry_call(call, backoff=Backoff(base_s=0.0, cap_s=0.0, max_attempts=4))
    assert call.calls == 4


async def test_a_scoped_deadline_stops_new_attempts() -> None:
    budget = Backoff(base_s=0.0, cap_s=0.0, max_attempts=3)
    unscoped = Counter()
    with pytest.raises(VendorError):
        await retry_call(unscoped, backoff=budget)
    assert unscoped.calls == 3
    # A deadline that has passed: the attempt under way finishes, no new one starts.
    scoped = Counter()
    with deadline_scope(time.monotonic()), pytest.raises(VendorError):
        await retry_call(scoped, backoff=budget)
    assert scoped.calls == 1


async def test_nested_scopes_keep_the_earlier_deadline_and_tasks_inherit_it() -> None:
    now = time.monotonic()
    assert current_deadline() is None
    with deadline_scope(now + 1.0):
        with deadline_scope(now + 5.0):
            assert current_deadline() == now + 1.0
        with deadline_scope(now + 0.5):
            assert current_deadline() == now + 0.5
            inherited = await asyncio.create_task(asyncio.sleep(0, current_deadline()))
            assert inherited == now + 0.5
        with deadline_scope(None):
            assert current_deadline() == now + 1.0
    assert current_deadline() is None


async def test_non_retryable_errors_are_not_repeated() -> None:
    calls = 0

    async def rejected() -> None:
        nonlocal calls
        calls += 1
        raise VendorError(
            grpc.StatusCode.INVALID_ARGUMENT, Reason.VENDOR_INVALID_ARGUMENT, "no", vendor="t"
        )

    with pytest.raises(VendorError):
        await retry_call(rejected, backoff=Backoff(base_s=0.0, cap_s=0.0, max_attempts=5))
    assert calls == 1


class Peer:
    """Loses the first ``lost`` sends, acknowledges the later ones."""

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.sends = 0
        self.acked = asyncio.Event()

    async def send(self) -> None:
        self.sends += 1
        if self.sends > self.lost:
            asyncio.get_running_loop().call_soon(self.acked.set)


async def test_an_acked_send_is_not_repeated() -> None:
    peer = Peer(lost=0)
    assert await send_until_acknowledged(peer.send, peer.acked, attempts=3, wait_s=5.0)
    assert peer.sends == 1


async def test_a_lost_send_is_repeated_until_acked() -> None:
    peer = Peer(lost=1)
    assert await send_until_acknowledged(peer.send, peer.acked, attempts=2, wait_s=0.05)
    assert peer.sends == 2


async def test_no_ack_after_every_attempt_is_false_and_bounded() -> None:
    peer = Peer(lost=10)
    started = time.monotonic()
    assert not await send_until_acknowledged(peer.send, peer.acked, attempts=2, wait_s=0.05)
    assert peer.sends == 2 and time.monotonic() - started < 1.0


async def test_the_scoped_deadline_bounds_the_wait() -> None:
    peer = Peer(lost=10)
    started = time.monotonic()
    with deadline_scope(time.monotonic() + 0.05):
        assert not await send_until_acknowledged(peer.send, peer.acked, attempts=3, wait_s=5.0)
    assert peer.sends == 1 and time.monotonic() - started < 1.0


# ---- rate limits -------------------------------------------------------------------------


async def test_the_limiter_waits_for_the_window_instead_of_failing() -> None:
    limiter = RateLimiter(rate=20, window_s=0.2, vendor="v")  # 4 calls per 0.2 s
    start = time.monotonic()
    for _ in range(8):
        await limiter.acquire("Op")
    # The first four go at once; the next four wait for the first ones to leave the window.
    assert time.monotonic() - start >= 0.2


async def test_operations_have_their_own_windows() -> None:
    limiter = RateLimiter(rate=0.25, window_s=4, vendor="v")  # 1 call per 4 s
    await limiter.acquire("A")
    await asyncio.wait_for(limiter.acquire("B"), 1.0)  # B's window is empty


async def test_the_scoped_deadline_bounds_the_limiter() -> None:
    limiter = RateLimiter(rate=0.25, window_s=4, vendor="v")  # 1 call per 4 s
    await limiter.acquire("Op")
    start = time.monotonic()
    with deadline_scope(time.monotonic() + 0.2), pytest.raises(VendorError) as err:
        await limiter.acquire("Op")
    # Refused at once: no slot before the deadline, so waiting would only burn it.
    assert time.monotonic() - start < 0.1
    exc = err.value
    assert (exc.code, exc.reason, exc.retryable) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Reason.VENDOR_RATE_LIMITED,
        True,
    )
    assert exc.metadata == {"vendor": "v", "vendorCode": ""}
    assert exc.retry_after_s is not None and 3.5 < exc.retry_after_s <= 4.01


class CountingStorage(MemoryRateLimitStorage):
    """A storage that records the keys it was asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def try_acquire(self, key: str, limit: int, window_s: float, call: str) -> float:
        self.keys.append(key)
        return await super().try_acquire(key, limit, window_s, call)


async def test_a_bound_storage_counts_under_the_account_scope() -> None:
    limiter = RateLimiter(rate=2, window_s=1.0, vendor="zegocloud")
    shared = CountingStorage()
    limiter.bind(shared, "zegocloud:123")
    await limiter.acquire("CreateDigitalHumanStreamTask")
    assert shared.keys == ["zegocloud:123:CreateDigitalHumanStreamTask"]


async def test_two_limiters_sharing_a_storage_share_the_window() -> None:
    # Two replicas' adapters of one vendor account: 2 calls per window in all, not each.
    shared = MemoryRateLimitStorage()
    a, b = (RateLimiter(rate=0.5, window_s=4, vendor="v") for _ in range(2))
    for limiter in (a, b):
        limiter.bind(shared, "v:acct")
    await a.acquire("Op")
    await b.acquire("Op")
    with deadline_scope(time.monotonic() + 1.0), pytest.raises(VendorError):
        await a.acquire("Op")


async def test_a_slot_counts_its_call_as_of_its_answer() -> None:
    # A call answered late (a cold connection, a busy vendor) reached the vendor late too:
    # the window runs from its answer, so the next call waits for that, not for admission.
    limiter = RateLimiter(rate=5, window_s=0.2, vendor="v")  # 1 call per 0.2 s
    async with limiter.slot("Op"):
        await asyncio.sleep(0.3)  # the answer comes after a whole window
    answered = time.monotonic()
    async with limiter.slot("Op"):
        admitted = time.monotonic()
    assert admitted - answered >= 0.2


# ---- poll_until and a vendor's notification ------------------------------------------------


async def test_a_notification_ends_the_polls_wait_at_once() -> None:
    """A notice completed between probes is taken as the answer: no further probe, and no
    waiting out the (here 60 s) delay."""
    probes: list[float] = []
    notice: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def probe() -> str:
        probes.append(time.monotonic())
        return "pending"

    asyncio.get_running_loop().call_later(0.05, notice.set_result, "ready")
    result = await asyncio.wait_for(
        poll_until(
            probe,
            lambda r: r == "ready",
            deadline=time.monotonic() + 120,
            vendor="v",
            first_delay_s=60.0,
            notice=notice,
        ),
        10,
    )
    assert result == "ready" and len(probes) == 1


async def test_a_notice_that_is_not_final_is_spent_and_polling_goes_on() -> None:
    answers = iter(["pending", "pending", "ready"])
    notice: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    notice.set_result("pending")  # e.g. a status that does not end the wait

    async def probe() -> str:
        return next(answers)

    result = await poll_until(
        probe,
        lambda r: r == "ready",
        deadline=time.monotonic() + 30,
        vendor="v",
        first_delay_s=0.01,
        notice=notice,
    )
    assert result == "ready"


async def test_a_cancelled_notice_leaves_plain_polling() -> None:
    answers = iter(["pending", "ready"])
    notice: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    notice.cancel()

    async def probe() -> str:
        return next(answers)

    assert (
        await poll_until(
            probe,
            lambda r: r == "ready",
            deadline=time.monotonic() + 30,
            vendor="v",
            first_delay_s=0.01,
            notice=notice,
        )
        == "ready"
    )


async def test_a_notification_is_not_held_up_by_a_hung_probe() -> None:
    """The vendor's status endpoint hangs, its notification says ready: the poll answers at
    once and the hung probe is cancelled."""
    cancelled = asyncio.Event()
    notice: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def probe() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "pending"

    asyncio.get_running_loop().call_later(0.05, notice.set_result, "ready")
    result = await asyncio.wait_for(
        poll_until(
            probe,
            lambda r: r == "ready",
            deadline=time.monotonic() + 120,
            vendor="v",
            notice=notice,
        ),
        10,
    )
    assert result == "ready" and cancelled.is_set()
