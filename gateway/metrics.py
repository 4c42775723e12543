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
