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
   (its :class:`gateway.inbox.ReplicaInbox` reads it);
4. the vendor gets 200 only once the callback was applied or durably queued. When the
   registry cannot be reached the answer is 503 (and the mark is removed), so the vendor's
   retry is handled rather than dropped as a duplicate.

The owner applies it in :meth:`CallbackRouter.apply_forwarded`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping

import structlog
from aiohttp import web

from core.contract import CallbackRejected, CallbackRoute
from gateway import metrics
from gateway.registry import SessionRegistry

log = structlog.get_logger("gateway.callbacks")

MAX_CALLBACK_BYTES = 64 * 1024
"""Largest callback body accepted (bytes); ZEGO's are under 1 KiB (zegocloud.md §6)."""
MAX_CALLBACK_AGE_S = 300.0
"""Oldest signed time a callback may carry (s, either way: clock skew): longer than a vendor's
retries (ZEGO: 2 + 4 + 8 + 16 + 32 s, zegocloud.md §6), short enough to bound a replay."""
DEDUPE_TTL_S = 2 * MAX_CALLBACK_AGE_S
"""How long a callback body (and a signature) is remembered as seen (s): longer than a
vendor's retries, and than a signature stays fresh."""


class CallbackRouter:
    """Serves vendor callback routes; applies the callbacks other replicas forward here.

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
        if (
            callback.issued_at is not None
            and abs(time.time() - callback.issued_at) > MAX_CALLBACK_AGE_S
        ):
            return self._answer(vendor, "rejected", 401, "stale callback")
        key = f"{vendor}:{hashlib.sha256(body).hexdigest()}"
        # The body, and the signature when it does not cover the body, marked in one trip:
        # a new body whose signature was seen on another body is a replay.
        keys = [key]
        if callback.replay_key:
            keys.append(f"{vendor}:signature:{callback.replay_key}")
        try:
            marks = await self.registry.mark_seen(keys, DEDUPE_TTL_S)
            first: bool | None = marks[0]
            replayed = len(marks) > 1 and not marks[1]
        except Exception as exc:
            log.warning("callback_registry_unavailable", vendor=vendor, error=repr(exc))
            first, replayed = None, False  # unknown: applied if the channel is here, else retried
        if first is False:
            return self._answer(vendor, "duplicate")
        if replayed:
            with contextlib.suppress(Exception):
                await self.registry.forget_seen(key)
            log.warning("callback_signature_replayed", vendor=vendor)
            return self._answer(vendor, "rejected", 401, "bad signature")
        if _deliver(route, vendor, body):
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
                await self.registry.forget_seen(key)
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
        await self.registry.send_to_replica(record.owner, "callback", vendor, body)
        log.info(
            "callback_forwarded",
            vendor=vendor,
            vendor_session_id=vendor_session_id,
            replica=record.owner,
        )
        return "forwarded"

    async def apply_forwarded(self, vendor: str, body: bytes) -> None:
        """Apply a callback another replica queued for this one (a ``callback`` message)."""
        route = self._by_vendor.get(vendor)
        applied = route is not None and _deliver(route, vendor, body)
        # Not applied: the channel closed since the sender looked the owner up.
        metrics.CALLBACKS.labels(vendor, "applied" if applied else "unrouted").inc()

    @staticmethod
    def _answer(vendor: str, outcome: str, status: int = 200, message: str = "") -> web.Response:
        metrics.CALLBACKS.labels(vendor, outcome).inc()
        body: Mapping[str, object] = {"error": message} if status != 200 else {"ok": True}
        return web.json_response(body, status=status)


def _deliver(route: CallbackRoute, vendor: str, body: bytes) -> bool:
    """``route.deliver(body)``, whose failures are logged, not raised.

    A callback the vendor's code failed to apply is handled as if no channel were here.
    """
    try:
        return route.deliver(body)
    except Exception:
        log.exception("callback_apply_failed", vendor=vendor)
        return False
