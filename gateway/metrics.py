"""Prometheus metrics served on the ops listener's ``/metrics`` (every one is in the README).

Labels stay low-cardinality (vendor, method, outcome, reason), never session ids. Three
kinds of source:

* counters and histograms updated where things happen (this package, and ``core`` through
  the :class:`PrometheusTelemetry` installed here: vendor HTTP calls, vendor error codes,
  reconnects, keepalive failures);
* the gRPC calls, measured by :class:`gateway.rpc_metrics.RpcMetricsInterceptor`;
* gauges read at scrape time from the live servers (:func:`add_live_source`): sessions
  owned here, how long the oldest one went without a Drive, how overdue the reaper is, the
  largest Drive backlog, how long a drain has run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core import telemetry as core_telemetry

SESSIONS_CREATED = Counter(
    "avatar_gateway_sessions_created_total", "CreateSession outcomes.", ["vendor", "outcome"]
)
SESSIONS_CLOSED = Counter(
    "avatar_gateway_sessions_closed_total",
    "Sessions closed, by close reason.",
    ["vendor", "reason"],
)
ACTIVE_DRIVES = Gauge("avatar_gateway_active_drives", "Open Drive streams.", ["vendor"])
TURNS = Counter("avatar_gateway_turns_total", "Turns that reached the vendor.", ["vendor", "mode"])
AUDIO_SECONDS = Counter(
    "avatar_gateway_audio_sent_seconds_total", "Audio handed to vendors (s).", ["vendor"]
)
SPEECH_START_LATENCY = Histogram(
    "avatar_gateway_speech_start_latency_seconds",
    "First input of a turn to the vendor's speech-started event.",
    ["vendor"],
    buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)
INTERRUPT_ACK_LATENCY = Histogram(
    "avatar_gateway_interrupt_ack_latency_seconds",
    "Interrupt request to its ack.",
    ["vendor", "acknowledged_by"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
RPC_ERRORS = Counter(
    "avatar_gateway_rpc_errors_total",
    "Calls that ended with an error, by method and ErrorInfo reason.",
    ["method", "reason"],
)
CALLBACKS = Counter(
    "avatar_gateway_vendor_callbacks_total",
    "Vendor callbacks by outcome (applied, forwarded, duplicate, unrouted, rejected, "
    "too_large, failed); a forwarded one counts again where it is applied.",
    ["vendor", "outcome"],
)
TLS_CERT_NOT_AFTER = Gauge(
    "avatar_gateway_tls_certificate_expiry_timestamp_seconds",
    "When the gRPC server certificate in use expires (Unix time); alert well before it.",
)

# ---- gRPC calls (OpenTelemetry RPC semantic conventions, rpc.server.call.duration) -------

RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The boundaries the semantic conventions give for ``rpc.server.call.duration`` (s)."""
RPC_SERVER_CALL_DURATION = Histogram(
    "rpc_server_call_duration_seconds",
    "Duration of inbound RPCs (a streaming call: to its end), by method and status code.",
    ["rpc_system_name", "rpc_method", "rpc_response_status_code", "error_type"],
    # Drive streams last minutes: the semconv boundaries, then longer ones.
    buckets=(*RPC_BUCKETS, 30, 60, 300, 900, 1800, 3600),
)
RPC_ACTIVE_CALLS = Gauge(
    "avatar_gateway_rpc_server_active_calls",
    "gRPC calls in progress (Drive: open streams), by method.",
    ["rpc_method"],
)

# ---- vendors ----------------------------------------------------------------------------

VENDOR_REQUEST_DURATION = Histogram(
    "avatar_gateway_vendor_request_duration_seconds",
    "Vendor HTTP requests: duration to the answer, by endpoint and outcome (the HTTP status "
    "code, or timeout, connect_error, transport_error, cancelled).",
    ["vendor", "endpoint", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
VENDOR_ERRORS = Counter(
    "avatar_gateway_vendor_errors_total",
    "Vendor answers carrying a business error code, by the reason it maps to.",
    ["vendor", "reason"],
)
VENDOR_RECONNECTS = Counter(
    "avatar_gateway_vendor_reconnects_total",
    "Dropped vendor drive sockets re-opened (succeeded) or given up (failed).",
    ["vendor", "outcome"],
)
KEEPALIVE_FAILURES = Counter(
    "avatar_gateway_vendor_keepalive_failures_total",
    "Keepalives (heartbeats) to a vendor that failed, by reason.",
    ["vendor", "reason"],
)

# ---- capacity: pacing, backlog, event loop -----------------------------------------------

PACING_LATENESS = Histogram(
    "avatar_gateway_pacing_lateness_seconds",
    "How late an audio frame that waited for its pacing slot was sent after that slot.",
    ["vendor"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
DRIVE_BACKLOG = Histogram(
    "avatar_gateway_drive_backlog_seconds",
    "Input queued in a Drive stream behind the audio frame being sent (s of audio), "
    "sampled at every frame.",
    ["vendor"],
    buckets=(0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3),
)
EVENT_LOOP_LAG = Histogram(
    "avatar_gateway_event_loop_lag_seconds",
    "How late the event loop woke a timer (sampled every 0.25 s by gateway/admission.py): "
    "every stream waits as long.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OVERLOADED = Gauge(
    "avatar_gateway_overloaded",
    "1 while this replica is past a capacity bound and refuses new CreateSession and Drive "
    "calls (readiness NOT_SERVING), else 0.",
)
ADMISSION_REFUSED = Counter(
    "avatar_gateway_admission_refused_total",
    "New calls refused with GATEWAY_OVERLOADED, by method and the signal past its bound "
    "(active_drives, event_loop_lag_ms, drive_backlog_ms).",
    ["method", "signal"],
)
SHUTDOWN_GRACE = Gauge(
    "avatar_gateway_shutdown_grace_seconds",
    "The configured drain grace (AVATAR_GATEWAY_SHUTDOWN_GRACE_S).",
)


class PrometheusTelemetry(core_telemetry.Telemetry):
    """Turns the reports of shared ``core`` code into the metrics above."""

    def vendor_request(self, vendor: str, endpoint: str, outcome: str, seconds: float) -> None:
        """See :meth:`core.telemetry.Telemetry.vendor_request`."""
        VENDOR_REQUEST_DURATION.labels(vendor, endpoint, outcome).observe(seconds)

    def vendor_error(self, vendor: str, reason: str) -> None:
        """See :meth:`core.telemetry.Telemetry.vendor_error`."""
        VENDOR_ERRORS.labels(vendor, reason).inc()

    def reconnect(self, vendor: str, outcome: str) -> None:
        """See :meth:`core.telemetry.Telemetry.reconnect`."""
        VENDOR_RECONNECTS.labels(vendor, outcome).inc()

    def keepalive_failed(self, vendor: str, reason: str) -> None:
        """See :meth:`core.telemetry.Telemetry.keepalive_failed`."""
        KEEPALIVE_FAILURES.labels(vendor, reason).inc()


core_telemetry.install(PrometheusTelemetry())


# ---- gauges read at scrape time ---------------------------------------------------------


@dataclass
class LiveState:
    """What one running server holds now, read at each scrape.

    Attributes:
        vendors: the configured vendors (each gets a series, 0 when idle).
        sessions: live vendor sessions this process owns, by vendor.
        undriven_s: by vendor, the longest time a session owned here has gone without a
            Drive stream (from its last activity).
        overdue_s: by vendor, how far past its idle timeout or max duration the most overdue
            session owned here is (the reaper should have closed it).
        backlog_s: by vendor, the largest input backlog of an open Drive stream (s of audio).
        draining_s: seconds since this server began to drain (0: serving).
    """

    vendors: list[str]
    sessions: dict[str, int] = field(default_factory=dict)
    undriven_s: dict[str, float] = field(default_factory=dict)
    overdue_s: dict[str, float] = field(default_factory=dict)
    backlog_s: dict[str, float] = field(default_factory=dict)
    draining_s: float = 0.0


_sources: list[Callable[[], LiveState]] = []


def add_live_source(source: Callable[[], LiveState]) -> None:
    """Read ``source`` at every scrape until :func:`remove_live_source` (a running server)."""
    _sources.append(source)


def remove_live_source(source: Callable[[], LiveState]) -> None:
    """Stop reading ``source``."""
    with contextlib.suppress(ValueError):
        _sources.remove(source)


class _LiveCollector(Collector):
    """The scrape-time gauges, summed (sessions) or maxed (the rest) over live servers."""

    def collect(self) -> Iterator[Metric]:
        states = []
        for source in list(_sources):
            with contextlib.suppress(Exception):  # a scrape must not fail for one server
                states.append(source())
        vendors = sorted({v for s in states for v in s.vendors})
        sessions = GaugeMetricFamily(
            "avatar_gateway_active_sessions",
            "Live vendor sessions this replica owns, by vendor.",
            labels=["vendor"],
        )
        undriven = GaugeMetricFamily(
            "avatar_gateway_session_undriven_max_seconds",
            "Longest time a session owned here has gone without a Drive stream (0: none).",
            labels=["vendor"],
        )
        overdue = GaugeMetricFamily(
            "avatar_gateway_session_overdue_max_seconds",
            "How far past its idle timeout or max duration the most overdue session owned "
            "here is (0: none; the reaper closes them within seconds).",
            labels=["vendor"],
        )
        backlog = GaugeMetricFamily(
            "avatar_gateway_drive_backlog_max_seconds",
            "Largest input backlog of an open Drive stream now (s of audio; 0: none).",
            labels=["vendor"],
        )
        for vendor in vendors:
            sessions.add_metric([vendor], sum(s.sessions.get(vendor, 0) for s in states))
            undriven.add_metric([vendor], max(s.undriven_s.get(vendor, 0.0) for s in states))
            overdue.add_metric([vendor], max(s.overdue_s.get(vendor, 0.0) for s in states))
            backlog.add_metric([vendor], max(s.backlog_s.get(vendor, 0.0) for s in states))
        draining = GaugeMetricFamily(
            "avatar_gateway_draining_seconds",
            "Seconds since this process began to drain (SIGTERM); 0 while serving.",
            value=max((s.draining_s for s in states), default=0.0),
        )
        yield from (sessions, undriven, overdue, backlog, draining)

    def describe(self) -> Iterator[Metric]:
        # No samples at registration: the families are named by collect().
        return iter(())


REGISTRY.register(_LiveCollector())


def seconds_since(monotonic_start: float | None) -> float:
    """Seconds since ``monotonic_start`` (``time.monotonic()``); 0 for ``None``."""
    return 0.0 if monotonic_start is None else max(0.0, time.monotonic() - monotonic_start)


# ---- Usage metering (docs/architecture.md §4.4) ----------------------------------------
#
# Counted when a session ends, from its final usage, by the one replica whose write ended it:
# however many replicas drove the session (or tried to close it), each session is counted
# once. A session's usage therefore shows here when it ends (at most its max_duration after
# it began); ListSessions shows the usage of live sessions. ``tenant`` is the session's
# tenant ("" without authentication): one value per tenant of the keys file or JWT issuer.

USAGE_SESSIONS = Counter(
    "avatar_gateway_usage_sessions_total",
    "Sessions that ended with their usage counted (each session once).",
    ["vendor", "tenant"],
)
USAGE_VENDOR_SESSION_SECONDS = Counter(
    "avatar_gateway_usage_vendor_session_seconds_total",
    "Vendor session time of ended sessions, from creation to close: what vendors bill (s).",
    ["vendor", "tenant"],
)
USAGE_AUDIO_SECONDS = Counter(
    "avatar_gateway_usage_audio_seconds_total",
    "Audio that ended sessions handed to their vendor (s).",
    ["vendor", "tenant"],
)
USAGE_TEXT_CHARACTERS = Counter(
    "avatar_gateway_usage_text_characters_total",
    "Text that ended sessions handed to their vendor (Unicode code points).",
    ["vendor", "tenant"],
)
