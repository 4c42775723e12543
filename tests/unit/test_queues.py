"""core.queues.SingleConsumerQueue: FIFO, bounds, back-pressure and cancellation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.queues import SingleConsumerQueue


@settings(max_examples=200, deadline=None)
@given(
    maxsize=st.integers(min_value=0, max_value=5),
    ops=st.lists(st.one_of(st.integers(0, 1000), st.none()), max_size=60),
)
def test_nowait_operations_match_asyncio_queue(maxsize: int, ops: list[int | None]) -> None:
    """An int is put_nowait, None is get_nowait; results and errors equal asyncio.Queue's."""

    async def run() -> None:
        ours: SingleConsumerQueue[int] = SingleConsumerQueue(maxsize)
        ref: asyncio.Queue[int] = asyncio.Queue(maxsize)
        for op in ops:
            if op is None:
                got = [_outcome(q.get_nowait) for q in (ours, ref)]
            else:
                got = [_outcome(functools.partial(q.put_nowait, op)) for q in (ours, ref)]
            assert got[0] == got[1]
            assert (ours.qsize(), ours.empty(), ours.full()) == (
                ref.qsize(),
                ref.empty(),
                ref.full(),
            )

    asyncio.run(run())


def _outcome(call: Callable[[], object]) -> object:
    try:
        return ("ok", call())
    except (asyncio.QueueFull, asyncio.QueueEmpty) as exc:
        return ("raised", type(exc).__name__)


@settings(max_examples=50, deadline=None)
@given(
    maxsize=st.integers(min_value=1, max_value=4),
    items=st.lists(st.integers(), min_size=1, max_size=40),
    producers=st.integers(min_value=1, max_value=3),
)
def test_producers_are_held_back_and_nothing_is_lost(
    maxsize: int, items: list[int], producers: int
) -> None:
    """Producers faster than the consumer never exceed maxsize; every item arrives once,
    in each producer's order."""

    async def run() -> None:
        q: SingleConsumerQueue[tuple[int, int]] = SingleConsumerQueue(maxsize)
        peak = 0

        async def produce(p: int) -> None:
            for i, item in enumerate(items):
                await q.put((p, i))
                del item

        async def consume() -> list[tuple[int, int]]:
            nonlocal peak
            out: list[tuple[int, int]] = []
            while len(out) < producers * len(items):
                peak = max(peak, q.qsize())
                out.append(await q.get())
                await asyncio.sleep(0)
            return out

        tasks = [asyncio.create_task(produce(p)) for p in range(producers)]
        got = await asyncio.wait_for(consume(), 10)
        await asyncio.gather(*tasks)
        assert peak <= maxsize
        for p in range(producers):
            assert [i for (pp, i) in got if pp == p] == list(range(len(items)))

    asyncio.run(run())


async def test_get_waits_for_a_put() -> None:
    q: SingleConsumerQueue[str] = SingleConsumerQueue(2)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait("a")
    assert await asyncio.wait_for(getter, 1) == "a"


async def test_a_cancelled_get_takes_nothing_and_the_next_get_works() -> None:
    q: SingleConsumerQueue[str] = SingleConsumerQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    q.put_nowait("kept")
    assert await asyncio.wait_for(q.get(), 1) == "kept"


async def test_a_woken_then_cancelled_get_leaves_the_item_queued() -> None:
    q: SingleConsumerQueue[str] = SingleConsumerQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("kept")  # wakes the getter...
    getter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert q.get_nowait() == "kept"


async def test_a_cancelled_put_adds_nothing_and_passes_its_slot_on() -> None:
    q: SingleConsumerQueue[int] = SingleConsumerQueue(1)
    q.put_nowait(0)
    first = asyncio.create_task(q.put(1))
    second = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert q.get_nowait() == 0  # frees a slot and wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` gets the slot
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert q.get_nowait() == 2
    assert q.empty()


async def test_a_second_waiting_consumer_is_refused() -> None:
    q: SingleConsumerQueue[int] = SingleConsumerQueue()
    first = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="second consumer"):
        await q.get()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
