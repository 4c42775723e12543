"""Prometheus metrics served on the ops listener's ``/metrics``.

Labels stay low-cardinality (vendor, outcome, reason), never session ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    "avatar_gateway_rpc_errors_total", "Calls that ended with an error.", ["method", "reason"]
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
