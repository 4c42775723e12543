"""What shared vendor code measures, reported through one hook the server fills in.

``core`` knows no metrics backend (architecture.md §1): the shared loops and the shared HTTP
client report here, and the gateway installs a :class:`Telemetry` that turns the reports
into Prometheus metrics (``gateway/metrics.py``). Without one installed (a plugin's unit
tests, a tool) every report is dropped.

Vendor HTTP calls are measured by the client :func:`vendor_http_client` builds: every
adapter makes its REST calls through one, so latency and failures are measured per vendor
and endpoint in one place, not in each adapter. The adapter only names the endpoint of a
request (ZEGO's ``Action``, Tencent's operation, Akool's path), never with ids in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

OTHER = "_OTHER"
"""The endpoint label of a request whose endpoint is empty or beyond :data:`MAX_ENDPOINTS`."""
MAX_ENDPOINTS = 32
"""Distinct endpoint labels kept per vendor; any further one is reported as :data:`OTHER`
(a safety bound: an endpoint function that put an id in its answer cannot grow the metrics
without bound)."""


class Telemetry:
    """Receives the measurements of shared code. This base drops them all."""

    def vendor_request(self, vendor: str, endpoint: str, outcome: str, seconds: float) -> None:
        """One HTTP request to a vendor ended.

        Args:
            vendor: vendor id.
            endpoint: the operation (bounded: see :func:`vendor_http_client`).
            outcome: the HTTP status code (``"200"``, ``"503"``...) or, when no answer came,
                ``"timeout"``, ``"connect_error"``, ``"transport_error"`` or ``"cancelled"``.
            seconds: from sending the request to its answer (or the failure).
        """

    def vendor_error(self, vendor: str, reason: str) -> None:
        """A vendor answered with a business error code (mapped to ``reason``)."""

    def reconnect(self, vendor: str, outcome: str) -> None:
        """A dropped vendor socket was re-opened (``"succeeded"``) or given up (``"failed"``)."""

    def keepalive_failed(self, vendor: str, reason: str) -> None:
        """A keepalive (heartbeat) to the vendor failed with ``reason``."""


_installed: Telemetry = Telemetry()


def install(telemetry: Telemetry) -> None:
    """Make ``telemetry`` receive every report from now on (the server does this once)."""
    global _installed
    _installed = telemetry


def telemetry() -> Telemetry:
    """The installed :class:`Telemetry` (the dropping base until one is installed)."""
    return _installed


def _failure(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "transport_error"


class _MeasuredClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that times each request it sends and reports it.

    ``send`` is where every request of the client passes (``get``, ``post``, ``request``
    and ``stream`` alike), whichever transport or proxy carries it.
    """

    def __init__(
        self, vendor: str, endpoint: Callable[[httpx.Request], str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._vendor = vendor
        self._endpoint = endpoint
        self._seen: set[str] = set()

    def _label(self, request: httpx.Request) -> str:
        try:
            name = self._endpoint(request)
        except Exception:
            return OTHER
        if not name:
            return OTHER
        if name not in self._seen:
            if len(self._seen) >= MAX_ENDPOINTS:
                return OTHER
            self._seen.add(name)
        return name

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        start = time.perf_counter()
        try:
            response = await super().send(request, **kwargs)
        except BaseException as exc:
            telemetry().vendor_request(
                self._vendor, self._label(request), _failure(exc), time.perf_counter() - start
            )
            raise
        telemetry().vendor_request(
            self._vendor,
            self._label(request),
            str(response.status_code),
            time.perf_counter() - start,
        )
        return response


def vendor_http_client(
    vendor: str, endpoint: Callable[[httpx.Request], str], **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request is measured for ``vendor``.

    Each request reports its duration (to the answer, body included unless streamed) and
    outcome to :func:`telemetry`.

    Args:
        vendor: vendor id (the ``vendor`` label).
        endpoint: names the operation a request calls (the ``endpoint`` label): a bounded
            name, never one with an id in it. At most :data:`MAX_ENDPOINTS` distinct names
            are kept per client; empty ones and further ones are :data:`OTHER`.
        **kwargs: passed to ``httpx.AsyncClient`` (timeout, headers, transport...).
    """
    return _MeasuredClient(vendor, endpoint, **kwargs)
