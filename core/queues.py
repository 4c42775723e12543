"""A bounded FIFO for one consumer task, for the queues every Drive stream owns."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleConsumerQueue(Generic[T]):
    """``asyncio.Queue``'s ``put``/``get`` subset for one consumer, at a quarter of its size.

    Why not ``asyncio.Queue``: it allocates four deques up front (items, getters, putters and
    the ``join`` event's waiters), ~3.3 KiB per queue, and each Drive stream holds three
    queues (responses, paced work, vendor events). This one keeps the items in one deque and
    wakes its one consumer through a future made only while it waits; producers that find
    it full wait on futures made only then: ~0.8 KiB per queue (tracemalloc over 1000 empty
    queues of each kind; the effect per stream is in bench/RESULTS.md). No
    ``task_done``/``join``.

    Semantics as ``asyncio.Queue``: FIFO; ``maxsize`` items at most (``<= 0``: unbounded);
    ``put`` waits while full, ``put_nowait`` raises ``asyncio.QueueFull``; ``get_nowait``
    raises ``asyncio.QueueEmpty``; a cancelled ``get`` or ``put`` takes or adds nothing.

    Raises:
        RuntimeError: ``get`` while another ``get`` is waiting (a second consumer).
    """

    __slots__ = ("_getter", "_items", "_putters", "maxsize")

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        """Items queued now."""
        return len(self._items)

    def empty(self) -> bool:
        """True when no item is queued."""
        return not self._items

    def full(self) -> bool:
        """True when ``put`` would wait."""
        return 0 < self.maxsize <= len(self._items)

    def put_nowait(self, item: T) -> None:
        """Append ``item``; raises ``asyncio.QueueFull`` when full."""
        if self.full():
            raise asyncio.QueueFull
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the queue is full."""
        while self.full():
            waiter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._drop_putter(waiter)
                # Woken and cancelled at once: pass the free slot on to the next producer.
                if waiter.done() and not waiter.cancelled() and not self.full():
                    self._wake_putter()
                raise
        self.put_nowait(item)

    def get_nowait(self) -> T:
        """Remove and return the oldest item; raises ``asyncio.QueueEmpty`` when empty."""
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        self._wake_putter()
        return item

    async def get(self) -> T:
        """Remove and return the oldest item, waiting while the queue is empty."""
        while not self._items:
            if self._getter is not None:
                raise RuntimeError("SingleConsumerQueue: a second consumer is waiting")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getter = waiter
            try:
                await waiter
            finally:
                self._getter = None
        return self.get_nowait()

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            waiter = putters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def _drop_putter(self, waiter: asyncio.Future[None]) -> None:
        if self._putters is not None and waiter in self._putters:
            self._putters.remove(waiter)
