"""Vendor callbacks, routed to the replica that holds the session's channel.

A vendor posts its callbacks (ZEGOCLOUD drive and task status, zegocloud.md §6) to one
public URL, so with several replicas behind a Service any replica may receive one about a
session another replica drives. :class:`CallbackRouter` serves the ops listener's
``/callbacks/<vendor>`` routes (docs/architecture.md §4.2):

1. the body is read (at most ``MAX_CALLBACK_BYTES``, else 413) and the vendor's ``accept``
   verifies its signature and parses it (401/400 as the adapter says);
2. a duplicate is acknowledged and dropped: the first replica to see a body marks it in the
   registry for ``DEDUPE_TTL_S`` (a vendor retrying, or one callback sent to every replica);
3. a replica holding the session's channel applies it at once (also while Redis is down);
   otherwise the session's owner is looked up and the body queued for it in the registry
   (a Redis stream);
4. the vendor gets 200 only once the callback was applied or durably queued. When the
   registry cannot be reached the answer is 503 (and the mark is removed), so the vendor's
   retry is handled rather than dropped as a duplicate.

Each replica reads its own queue (:meth:`CallbackRouter.start`) and applies what it finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping

import structlog
from aiohttp import web

from core.contract import CallbackRejected, CallbackRoute
from gateway import metrics
from gateway.registry import SessionRegistry

log = structlog.get_logger("gateway.callbacks")

MAX_CALLBACK_BYTES = 64 * 1024
"""Largest callback body accepted (bytes); ZEGO's are under 1 KiB (zegocloud.md §6)."""
DEDUPE_TTL_S = 600.0
"""How long a callback body is remembered as handled (s): longer than a vendor's retries."""
READ_BLOCK_S = 1.0
"""How long one read of this replica's queue waits for an entry (s)."""
RETRY_PAUSE_S = 0.5
"""Pause after a failed read of the queue before the next (s)."""


class CallbackRouter:
    """Serves vendor callback routes and this replica's queue of forwarded callbacks.

    Args:
        registry: where duplicates are marked, owners looked up and queues kept.
        owner: this replica's id.
        routes: ``(vendor, route)`` for each route the adapters declared.

    Raises:
        ValueError: a vendor declared two callback routes.
    """

    def __init__(
        self, registry: SessionRegistry, owner: str, routes: list[tuple[str, CallbackRoute]]
    ) -> None:
        self.registry = registry
        self.owner = owner
        self._routes = {(r.method.upper(), r.path): (vendor, r) for vendor, r in routes}
        self._by_vendor = dict(routes)
        if len(self._by_vendor) != len(routes):
            # A forwarded callback names only its vendor, which must pick its route.
            raise ValueError("a vendor declares at most one callback route")
        self._inbox: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Start reading this replica's queue of forwarded callbacks."""
        if self._by_vendor and self._inbox is None:
            self._inbox = asyncio.create_task(self._read_inbox(), name="callback-inbox")

    async def stop(self) -> None:
        """Stop reading the queue (entries left in it expire with it)."""
        self._stopped = True
        if self._inbox is not None:
            self._inbox.cancel()
            # A cancel that lands inside a Redis call can be lost there (see the reaper):
            # the flag ends the loop after its current read at the latest.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._inbox, READ_BLOCK_S * 3)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one vendor callback (steps in the module docstring).

        Returns:
            200 applied, queued for the owner, a duplicate, or about no live session; 401/400
            as the adapter's ``accept`` says; 404 no such route; 413 too large; 503 the
            registry could not be reached (the vendor should retry).
        """
        found = self._routes.get((request.method, request.path))
        if found is None:
            raise web.HTTPNotFound()
        vendor, route = found
        if (request.content_length or 0) > MAX_CALLBACK_BYTES:
            return self._answer(vendor, "too_large", 413, "callback too large")
        body = await request.content.read(MAX_CALLBACK_BYTES + 1)
        if len(body) > MAX_CALLBACK_BYTES:
            return self._answer(vendor, "too_large", 413, "callback too large")
        try:
            callback = route.accept(body, request.headers)
        except CallbackRejected as exc:
            return self._answer(vendor, "rejected", exc.status, exc.message)
        key = f"{vendor}:{hashlib.sha256(body).hexdigest()}"
        try:
            first: bool | None = await self.registry.first_delivery(key, DEDUPE_TTL_S)
        except Exception as exc:
            log.warning("callback_registry_unavailable", vendor=vendor, error=repr(exc))
            first = None  # unknown: applied here if the channel is here, else retried
        if first is False:
            return self._answer(vendor, "duplicate")
        if route.deliver(body):
            # Also while Redis is down: the session's channel is here (a duplicate may then
            # be applied twice; channels ignore a status they already have).
            return self._answer(vendor, "applied")
        if first is None:
            return self._answer(vendor, "failed", 503, "try again")
        try:
            outcome = await self._route(vendor, callback.vendor_session_id, body)
        except Exception as exc:
            log.warning("callback_not_routed", vendor=vendor, error=repr(exc))
            with contextlib.suppress(Exception):
                await self.registry.forget_delivery(key)
            return self._answer(vendor, "failed", 503, "try again")
        return self._answer(vendor, outcome)

    async def _route(self, vendor: str, vendor_session_id: str, body: bytes) -> str:
        """Queue ``body`` for its session's owner; the outcome label."""
        if not vendor_session_id:
            return "unrouted"
        record = await self.registry.find_live(vendor, vendor_session_id)
        if record is None or record.owner in ("", self.owner):
            # No live session, or one nobody drives (released, or ours without a channel):
            # no channel anywhere waits for it.
            return "unrouted"
        await self.registry.enqueue_callback(record.owner, vendor, body)
        log.info(
            "callback_forwarded",
            vendor=vendor,
            vendor_session_id=vendor_session_id,
            replica=record.owner,
        )
        return "forwarded"

    async def _read_inbox(self) -> None:
        after = "0-0"
        while not self._stopped:
            try:
                entries = await self.registry.read_callbacks(self.owner, after, READ_BLOCK_S)
                for entry in entries:
                    after = entry.entry_id  # never read twice, even if applying it fails
                    self._apply_forwarded(entry.vendor, entry.body)
                if entries:
                    await self.registry.ack_callbacks(self.owner, [e.entry_id for e in entries])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis outage: keep reading once it is back
                log.warning("callback_inbox_failed", error=repr(exc))
                await asyncio.sleep(RETRY_PAUSE_S)

    def _apply_forwarded(self, vendor: str, body: bytes) -> None:
        route = self._by_vendor.get(vendor)
        try:
            applied = route is not None and route.deliver(body)
        except Exception:
            log.exception("callback_apply_failed", vendor=vendor)
            applied = False
        # Not applied: the channel closed since the sender looked the owner up.
        metrics.CALLBACKS.labels(vendor, "applied" if applied else "unrouted").inc()

    @staticmethod
    def _answer(vendor: str, outcome: str, status: int = 200, message: str = "") -> web.Response:
        metrics.CALLBACKS.labels(vendor, outcome).inc()
        body: Mapping[str, object] = {"error": message} if status != 200 else {"ok": True}
        return web.json_response(body, status=status)
