"""This replica's inbox: messages other replicas queue for it in the registry.

With Redis, each replica has a stream, ``ag:inbox:{replica}`` (architecture.md §4.2), read
here with ``XREAD BLOCK`` and dispatched by kind:

* ``callback``: a vendor callback that reached another replica, for the session this one
  drives (:meth:`gateway.callbacks.CallbackRouter.apply_forwarded`);
* ``release``: another replica adopted a session this one owned; drop what this process
  holds for it now, so the new owner can open the vendor's one channel (tencent.md §5)
  without waiting for this replica's next reaper pass
  (:meth:`gateway.sessions.SessionManager.release_requested`).

An entry is read once: its handler's failure is logged, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog

from gateway.registry import SessionRegistry

log = structlog.get_logger("gateway.inbox")

READ_BLOCK_S = 1.0
"""How long one read of the queue waits for an entry (s)."""
RETRY_PAUSE_S = 0.5
"""Pause after a failed read (Redis away) before the next (s)."""

Handler = Callable[[str, bytes], Awaitable[None]]
"""``(vendor, body) -> None``: what to do with one message of a kind."""


class ReplicaInbox:
    """Reads replica ``owner``'s queue and hands each message to the handler of its kind.

    Args:
        registry: where the queue lives.
        owner: this replica's id.
        handlers: kind -> handler; a message of another kind is logged and dropped.
    """

    def __init__(
        self, registry: SessionRegistry, owner: str, handlers: Mapping[str, Handler]
    ) -> None:
        self.registry = registry
        self.owner = owner
        self.handlers = dict(handlers)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Start reading in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._read_forever(), name="replica-inbox")

    async def stop(self) -> None:
        """Stop reading (entries left in the queue expire with it)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            # A cancel that lands inside a Redis call can be lost there (see the reaper):
            # the flag ends the loop after its current read at the latest.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, READ_BLOCK_S * 3)

    async def _read_forever(self) -> None:
        after = "0-0"
        while not self._stopped:
            try:
                messages = await self.registry.read_messages(self.owner, after, READ_BLOCK_S)
                for message in messages:
                    after = message.entry_id  # never read twice, even if handling fails
                    await self._handle(message.kind, message.vendor, message.body)
                if messages:
                    await self.registry.ack_messages(self.owner, [m.entry_id for m in messages])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis outage: keep reading once it is back
                log.warning("replica_inbox_failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _handle(self, kind: str, vendor: str, body: bytes) -> None:
        handler = self.handlers.get(kind)
        if handler is None:
            log.warning("replica_message_unknown", kind=kind)
            return
        try:
            await handler(vendor, body)
        except Exception:
            log.exception("replica_message_failed", kind=kind, vendor=vendor)
