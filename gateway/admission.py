"""Admission control: refuse new work at once past this replica's capacity (architecture.md §8).

One process serves every stream from one event loop. Past its capacity nothing fails: every
stream falls behind together (issue 15 measured audio 8 s late at 500 streams, each call
accepted). So the gateway watches three signals it already measures and, past a configured
bound, is *overloaded*:

* ``active_drives``: open Drive streams on this replica (``AVATAR_GATEWAY_MAX_ACTIVE_DRIVES``),
  counted exactly at admission, so it needs no hysteresis: overloaded while the count is at
  the bound, ready again as soon as one stream ends.
* ``event_loop_lag_ms``: how late the event loop wakes a timer, sampled every
  :data:`SAMPLE_INTERVAL_S` (``AVATAR_GATEWAY_OVERLOAD_EVENT_LOOP_LAG_MS``). Every stream's
  pacing waits as long, so it is the direct measure of the loop falling behind.
* ``drive_backlog_ms``: the largest input backlog of an open Drive stream, sampled likewise
  (``AVATAR_GATEWAY_OVERLOAD_DRIVE_BACKLOG_MS``; off by default: a client that sends ahead of
  real time fills its stream's queue by design, so only where clients send in real time is a
  backlog a sign of the gateway falling behind).

A sampled signal enters overload when :data:`ENTER_SAMPLES` samples in a row reach its bound,
and leaves it only after every sampled signal stayed below :data:`CLEAR_FRACTION` of its
bound for ``hold_s``, so readiness does not flap with each sample. While overloaded, new
CreateSession and Drive calls are refused with RESOURCE_EXHAUSTED ``GATEWAY_OVERLOADED``
(ErrorInfo metadata ``signal``, ``value``, ``bound``; a RetryInfo) before any vendor work,
readiness turns NOT_SERVING (``/healthz`` 503, gRPC health), and streams already accepted go
on untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from core.errors import GatewayError, Reason
from gateway import metrics
from gateway.config import Settings

log = structlog.get_logger("gateway.admission")

SAMPLE_INTERVAL_S = 0.25
"""How often the event-loop lag and the Drive backlogs are sampled (s)."""

ENTER_SAMPLES = 2
"""A sampled signal enters overload after this many samples in a row at its bound (0.5 s):
a single stall (a burst of handshakes, a collection) is not yet a lack of capacity."""

CLEAR_FRACTION = 0.5
"""A sampled signal counts as calm below this fraction of its bound (the low mark)."""

STRAIN_MEMORY_S = 600.0
"""How far back :meth:`AdmissionControl.strain_since` can look (s): turns last seconds to
minutes; older samples are dropped."""

RETRY_AFTER_S = 1.0
"""The ``RetryInfo`` delay of a refusal (s): long enough for a load balancer to have seen
readiness turn NOT_SERVING and send the retry to another replica."""

ACTIVE_DRIVES = "active_drives"
EVENT_LOOP_LAG = "event_loop_lag_ms"
DRIVE_BACKLOG = "drive_backlog_ms"


@dataclass(frozen=True)
class Overload:
    """Why the replica is overloaded: the signal, its value and its bound.

    Attributes:
        signal: ``active_drives`` (a count), ``event_loop_lag_ms`` or ``drive_backlog_ms``
            (milliseconds).
        value: the signal's value that crossed the bound (the latest sample for the
            sampled signals while they stay high; the peak otherwise).
        bound: the configured bound.
    """

    signal: str
    value: float
    bound: float

    def metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata: ``signal``, ``value``, ``bound`` (numbers as text)."""
        return {"signal": self.signal, "value": f"{self.value:.0f}", "bound": f"{self.bound:g}"}


@dataclass(frozen=True)
class Strain:
    """The gateway's own load at its highest since some moment (for a turn's warning).

    Attributes:
        signal: ``event_loop_lag_ms`` or ``drive_backlog_ms``.
        value_ms: the highest sample of that signal since then (ms).
    """

    signal: str
    value_ms: float

    def describe(self) -> str:
        """E.g. ``event-loop lag 412 ms``."""
        what = "event-loop lag" if self.signal == EVENT_LOOP_LAG else "Drive input backlog"
        return f"{what} {self.value_ms:.0f} ms"


def gateway_overloaded(overload: Overload, method: str) -> GatewayError:
    """RESOURCE_EXHAUSTED ``GATEWAY_OVERLOADED`` for ``method``, with a ``RetryInfo``.

    The message and metadata name the signal, its value and the bound; nothing was done (no
    vendor call, no session), so the caller retries, through its load balancer, elsewhere.
    """
    unit = "" if overload.signal == ACTIVE_DRIVES else " ms"
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Reason.GATEWAY_OVERLOADED,
        f"this gateway replica is over capacity ({overload.signal} {overload.value:.0f}{unit}, "
        f"bound {overload.bound:g}{unit}); {method} was not started, retry on another replica",
        overload.metadata(),
        retry_after_s=RETRY_AFTER_S,
    )


class AdmissionControl:
    """The capacity monitor of one gateway process and the admission check on it.

    Args:
        max_active_drives: open Drive streams at most (``None``: no bound).
        event_loop_lag_ms: the event-loop lag bound (ms; ``None``: not a signal).
        drive_backlog_ms: the Drive input backlog bound (ms of audio; ``None``: not a signal).
        hold_s: how long every sampled signal must stay below its low mark before the
            replica leaves overload (s).
        clock: monotonic clock (s); tests pass a fake one.
    """

    def __init__(
        self,
        *,
        max_active_drives: int | None,
        event_loop_lag_ms: float | None,
        drive_backlog_ms: float | None,
        hold_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_active_drives = max_active_drives
        self.bounds: dict[str, float] = {}
        if event_loop_lag_ms is not None:
            self.bounds[EVENT_LOOP_LAG] = event_loop_lag_ms
        if drive_backlog_ms is not None:
            self.bounds[DRIVE_BACKLOG] = drive_backlog_ms
        self.hold_s = hold_s
        self.clock = clock
        self.active_drives = 0
        self.on_change: Callable[[Overload | None], None] | None = None
        self._sampled: Overload | None = None  # overload by a sampled signal, with hysteresis
        self._calm_since: float | None = None
        self._last: dict[str, float] = {}
        self._runs: dict[str, int] = {}  # samples in a row at the bound, per signal
        # (time, signal, value in ms) of every sample at or above its low mark in the last
        # :data:`STRAIN_MEMORY_S`, for :meth:`strain_since`.
        self._strained: deque[tuple[float, str, float]] = deque()
        self._reported: Overload | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AdmissionControl:
        """The admission control the ``AVATAR_GATEWAY_*`` settings describe."""
        return cls(
            max_active_drives=settings.max_active_drives,
            event_loop_lag_ms=settings.overload_event_loop_lag_ms,
            drive_backlog_ms=settings.overload_drive_backlog_ms,
            hold_s=settings.overload_hold_s,
        )

    # ---- state --------------------------------------------------------------------------

    @property
    def overload(self) -> Overload | None:
        """Why the replica is overloaded now, or ``None`` (the drive count first: exact)."""
        cap = self.max_active_drives
        if cap is not None and self.active_drives >= cap:
            return Overload(ACTIVE_DRIVES, self.active_drives, cap)
        return self._sampled

    def check(self, method: str) -> None:
        """Admit one new ``method`` call (``CreateSession`` or ``Drive``), or refuse it.

        Raises:
            GatewayError: RESOURCE_EXHAUSTED ``GATEWAY_OVERLOADED`` while overloaded (counted
                in ``avatar_gateway_admission_refused_total``).
        """
        overload = self.overload
        if overload is not None:
            metrics.ADMISSION_REFUSED.labels(method, overload.signal).inc()
            raise gateway_overloaded(overload, method)

    def drive_started(self) -> None:
        """Count a Drive stream admitted (before its first await, so none overshoots)."""
        self.active_drives += 1
        self._report()

    def drive_ended(self) -> None:
        """Count a Drive stream gone (refused later in its setup, or ended)."""
        self.active_drives -= 1
        self._report()

    # ---- sampling -----------------------------------------------------------------------

    def sample(self, lag_ms: float, backlog_ms: float) -> None:
        """Take one sample of the sampled signals (ms) and update the overload state.

        Enters overload when :data:`ENTER_SAMPLES` samples in a row of a signal reach its
        bound; leaves it once every signal has been below its low mark
        (:data:`CLEAR_FRACTION` of the bound) for ``hold_s``.
        """
        now = self.clock()
        values = {EVENT_LOOP_LAG: lag_ms, DRIVE_BACKLOG: backlog_ms}
        self._last = values
        high: Overload | None = None
        calm = True
        for signal, bound in self.bounds.items():
            value = values[signal]
            if value >= bound * CLEAR_FRACTION:
                calm = False
                self._strained.append((now, signal, value))
            run = self._runs[signal] = self._runs.get(signal, 0) + 1 if value >= bound else 0
            if self._sampled is None and run < ENTER_SAMPLES:
                continue  # not yet: one stall alone is not overload
            if value >= bound and (high is None or value / bound > high.value / high.bound):
                high = Overload(signal, value, bound)
        while self._strained and self._strained[0][0] < now - STRAIN_MEMORY_S:
            self._strained.popleft()
        if high is not None:
            self._sampled = high
            self._calm_since = None
        elif self._sampled is not None:
            if not calm:
                self._calm_since = None
            elif self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.hold_s:
                self._sampled = None
                self._calm_since = None
        self._report()

    def strain_since(self, since: float) -> Strain | None:
        """The gateway's own strain since ``since`` (``time.monotonic()``), if any.

        Returns the highest sample at or above its low mark (:data:`CLEAR_FRACTION` of its
        bound) of the event-loop lag or the Drive backlog taken at or after ``since``, or
        ``None`` when the gateway was calm meanwhile (or no such signal is configured).
        """
        best: Strain | None = None
        best_ratio = 0.0
        for at, signal, value in reversed(self._strained):
            if at < since:
                break
            ratio = value / self.bounds[signal]
            if ratio > best_ratio:
                best, best_ratio = Strain(signal, value), ratio
        return best

    def _report(self) -> None:
        """Log and publish a change of state (entering or leaving overload), once each."""
        now = self.overload
        was = self._reported
        if (now is None) == (was is None):
            self._reported = now
            return
        self._reported = now
        metrics.OVERLOADED.set(0 if now is None else 1)
        signals = {
            "active_drives": self.active_drives,
            **{k: round(v, 1) for k, v in self._last.items()},
        }
        if now is not None:
            log.warning(
                "gateway_overloaded",
                message="refusing new CreateSession and Drive calls; readiness NOT_SERVING",
                signal=now.signal,
                value=round(now.value, 1),
                bound=now.bound,
                **signals,
            )
        else:
            log.warning(
                "gateway_overload_cleared",
                message="admitting new calls again; readiness SERVING",
                **signals,
            )
        if self.on_change is not None:
            self.on_change(now)

    async def run(self, backlog_ms: Callable[[], float]) -> None:
        """Sample the event-loop lag and ``backlog_ms()`` every :data:`SAMPLE_INTERVAL_S`.

        The lag is how much later than asked a ``sleep`` wakes: a loop busy with other work
        (a burst of calls, a slow callback, a garbage collection) wakes every timer late by
        as much. Also observed into ``avatar_gateway_event_loop_lag_seconds``. Runs until
        cancelled.
        """
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            lag_s = max(0.0, loop.time() - start - SAMPLE_INTERVAL_S)
            metrics.EVENT_LOOP_LAG.observe(lag_s)
            self.sample(lag_s * 1000, backlog_ms())
