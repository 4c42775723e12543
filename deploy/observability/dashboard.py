"""Generates the Grafana dashboard ``avatar-gateway.json`` with the Grafana Foundation SDK.

Run ``python deploy/observability/dashboard.py`` after changing a panel (or ``--check`` to
fail when the committed JSON is stale; tests/integration/test_observability.py does both and
checks that every query names only metrics the gateway exports). Every metric is described
in the README's metrics table; the alerts that watch the same series are in alerts.yaml.

Import the JSON in Grafana (Dashboards → New → Import) and pick the Prometheus data source
that scrapes the gateway's ops port (``/metrics``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphDrawStyle,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

OUTPUT = Path(__file__).with_name("avatar-gateway.json")
UID = "avatar-gateway"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job", instance=~"$instance"'
"""The selector every query carries: the dashboard's job and instance variables."""
VSEL = SEL + ', vendor=~"$vendor"'
RATE = "$__rate_interval"


_ids = iter(range(1, 1000))
"""Panel ids, in the order the panels are built (stable: the JSON is compared in tests)."""


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    """A range query on the dashboard's data source, with a legend."""
    q = prometheus.Dataquery().expr(expr).datasource(DATASOURCE).range()
    return q.legend_format(legend) if legend else q


def graph(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    width: int = 12,
    bars: bool = False,
) -> timeseries.Panel:
    """A time-series panel of ``targets`` (refIds A, B, ...)."""
    panel = (
        timeseries.Panel()
        .id(next(_ids))
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .min(0)
    )
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS)
    for ref_id, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref_id))
    return panel


def single(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    """A stat panel of one query (its last value)."""
    return (
        stat.Panel()
        .id(next(_ids))
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(6)
        .height(4)
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr).ref_id("A"))
    )


def row(title: str) -> dash.Row:
    """A row header."""
    return dash.Row(title).id(next(_ids))


def quantile(q: float, metric: str, selector: str, by: str) -> str:
    """The ``q`` quantile of histogram ``metric`` by the labels ``by``."""
    return (
        f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{RATE}])))"
    )


def variables() -> list[dash.DatasourceVariable | dash.QueryVariable]:
    """Data source, job, replica and vendor (the last three multi-valued, default all)."""

    def labels(name: str, label: str, query_text: str) -> dash.QueryVariable:
        return (
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(query_text)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )

    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        labels("job", "Job", "label_values(avatar_gateway_active_sessions, job)"),
        labels(
            "instance",
            "Replica",
            'label_values(avatar_gateway_active_sessions{job=~"$job"}, instance)',
        ),
        labels(
            "vendor", "Vendor", 'label_values(avatar_gateway_active_sessions{job=~"$job"}, vendor)'
        ),
    ]


def build() -> dict[str, object]:
    """The dashboard as a JSON-ready dict."""
    global _ids
    _ids = iter(range(1, 1000))
    unary = 'rpc_method!~".*/(Drive|Watch|ServerReflectionInfo)"'
    calls = "rpc_server_call_duration_seconds"
    vendor_requests = "avatar_gateway_vendor_request_duration_seconds"
    failed = 'outcome!~"2..|3..|cancelled"'
    board = (
        dash.Dashboard("AvatarGateway")
        .uid(UID)
        .description(
            "One gateway deployment: calls, sessions and drives, vendors, capacity. "
            "Metrics: the README's metrics table; alerts: deploy/observability/alerts.yaml."
        )
        .tags(["avatar-gateway"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .variables(variables())  # type: ignore[arg-type]
        # ---- overview
        .with_row(row("Overview"))
        .with_panel(
            single(
                "Live sessions",
                "Vendor sessions owned by the selected replicas (billed while open).",
                "short",
                f"sum(avatar_gateway_active_sessions{{{VSEL}}})",
            )
        )
        .with_panel(
            single(
                "Open Drive streams",
                "Drive streams in progress.",
                "short",
                f"sum(avatar_gateway_active_drives{{{VSEL}}})",
            )
        )
        .with_panel(
            single(
                "Failed calls",
                "Share of gRPC calls that did not end OK (all methods, last 5 minutes).",
                "percentunit",
                f'sum(rate({calls}_count{{{SEL}, rpc_response_status_code!="OK"}}[5m])) '
                f"/ sum(rate({calls}_count{{{SEL}}}[5m]))",
            )
        )
        .with_panel(
            single(
                "Event-loop lag p99",
                "How late the busiest selected replica wakes its timers (5 minutes).",
                "s",
                "max(histogram_quantile(0.99, sum by (instance, le) "
                f"(rate(avatar_gateway_event_loop_lag_seconds_bucket{{{SEL}}}[5m]))))",
            )
        )
        # ---- gRPC
        .with_row(row("gRPC calls"))
        .with_panel(
            graph(
                "Calls by method and status",
                "Finished calls per second (rpc_server_call_duration_seconds_count); a Drive "
                "stream counts once, at its end.",
                "reqps",
                query(
                    "sum by (rpc_method, rpc_response_status_code) "
                    f"(rate({calls}_count{{{SEL}}}[{RATE}]))",
                    "{{rpc_method}} {{rpc_response_status_code}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Unary latency (p50, p99)",
                "Duration of unary calls by method (streams are in 'Calls in progress').",
                "s",
                query(quantile(0.5, calls, f"{SEL}, {unary}", "rpc_method"), "p50 {{rpc_method}}"),
                query(quantile(0.99, calls, f"{SEL}, {unary}", "rpc_method"), "p99 {{rpc_method}}"),
            )
        )
        .with_panel(
            graph(
                "Errors by reason",
                "Failed calls by method and ErrorInfo reason (avatar_gateway_rpc_errors_total).",
                "reqps",
                query(
                    "sum by (method, reason) "
                    f"(rate(avatar_gateway_rpc_errors_total{{{SEL}}}[{RATE}]))",
                    "{{method}} {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Calls in progress",
                "gRPC calls running now, by method (Drive: open streams).",
                "short",
                query(
                    f"sum by (rpc_method) (avatar_gateway_rpc_server_active_calls{{{SEL}}})",
                    "{{rpc_method}}",
                ),
            )
        )
        # ---- sessions and drives
        .with_row(row("Sessions and drives"))
        .with_panel(
            graph(
                "Live sessions and open drives",
                "Vendor sessions owned per vendor, and their Drive streams.",
                "short",
                query(
                    f"sum by (vendor) (avatar_gateway_active_sessions{{{VSEL}}})",
                    "sessions {{vendor}}",
                ),
                query(
                    f"sum by (vendor) (avatar_gateway_active_drives{{{VSEL}}})",
                    "drives {{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Sessions created and closed",
                "CreateSession outcomes (READY or the error reason) and close reasons.",
                "short",
                query(
                    "sum by (vendor, outcome) "
                    f"(increase(avatar_gateway_sessions_created_total{{{VSEL}}}[{RATE}]))",
                    "created {{vendor}} {{outcome}}",
                ),
                query(
                    "sum by (vendor, reason) "
                    f"(increase(avatar_gateway_sessions_closed_total{{{VSEL}}}[{RATE}]))",
                    "closed {{vendor}} {{reason}}",
                ),
                bars=True,
            )
        )
        .with_panel(
            graph(
                "Sessions without a Drive, and overdue",
                "Longest time a session went without a Drive stream, and how far past its "
                "idle timeout or max duration the most overdue one is (leak alerts).",
                "s",
                query(
                    f"max by (vendor) (avatar_gateway_session_undriven_max_seconds{{{VSEL}}})",
                    "undriven {{vendor}}",
                ),
                query(
                    f"max by (vendor) (avatar_gateway_session_overdue_max_seconds{{{VSEL}}})",
                    "overdue {{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Turns and audio sent",
                "Turns that reached the vendor per second, and seconds of audio sent per second.",
                "short",
                query(
                    f"sum by (vendor, mode) (rate(avatar_gateway_turns_total{{{VSEL}}}[{RATE}]))",
                    "turns {{vendor}} {{mode}}",
                ),
                query(
                    "sum by (vendor) "
                    f"(rate(avatar_gateway_audio_sent_seconds_total{{{VSEL}}}[{RATE}]))",
                    "audio s/s {{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Speech start and interrupt ack (p50, p99)",
                "First input of a turn to the vendor's speech-started event; interrupt to ack.",
                "s",
                query(
                    quantile(0.5, "avatar_gateway_speech_start_latency_seconds", VSEL, "vendor"),
                    "speech start p50 {{vendor}}",
                ),
                query(
                    quantile(0.99, "avatar_gateway_speech_start_latency_seconds", VSEL, "vendor"),
                    "speech start p99 {{vendor}}",
                ),
                query(
                    quantile(0.99, "avatar_gateway_interrupt_ack_latency_seconds", VSEL, "vendor"),
                    "interrupt ack p99 {{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Vendor callbacks",
                "Callbacks by outcome (applied, forwarded, duplicate, rejected, rate_limited...).",
                "reqps",
                query(
                    "sum by (vendor, outcome) "
                    f"(rate(avatar_gateway_vendor_callbacks_total{{{VSEL}}}[{RATE}]))",
                    "{{vendor}} {{outcome}}",
                ),
            )
        )
        # ---- vendors
        .with_row(row("Vendors"))
        .with_panel(
            graph(
                "Vendor requests by endpoint and outcome",
                "HTTP requests to the vendors' APIs per second; outcome is the HTTP status or "
                "timeout, connect_error, transport_error, cancelled.",
                "reqps",
                query(
                    "sum by (vendor, endpoint, outcome) "
                    f"(rate({vendor_requests}_count{{{VSEL}}}[{RATE}]))",
                    "{{vendor}} {{endpoint}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Vendor request latency p99",
                "Duration of vendor HTTP requests to their answer, by endpoint.",
                "s",
                query(
                    quantile(0.99, vendor_requests, VSEL, "vendor, endpoint"),
                    "{{vendor}} {{endpoint}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Vendor failure ratio",
                "Share of vendor HTTP requests that failed (alert: AvatarGatewayVendorErrorRate).",
                "percentunit",
                query(
                    f"sum by (vendor) (rate({vendor_requests}_count{{{VSEL}, {failed}}}[5m])) "
                    f"/ sum by (vendor) (rate({vendor_requests}_count{{{VSEL}}}[5m]))",
                    "{{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Vendor error codes, reconnects, keepalive failures",
                "Business error codes by reason; drive sockets re-opened or given up; failed "
                "heartbeats.",
                "short",
                query(
                    "sum by (vendor, reason) "
                    f"(increase(avatar_gateway_vendor_errors_total{{{VSEL}}}[{RATE}]))",
                    "error {{vendor}} {{reason}}",
                ),
                query(
                    "sum by (vendor, outcome) "
                    f"(increase(avatar_gateway_vendor_reconnects_total{{{VSEL}}}[{RATE}]))",
                    "reconnect {{vendor}} {{outcome}}",
                ),
                query(
                    "sum by (vendor) "
                    f"(increase(avatar_gateway_vendor_keepalive_failures_total{{{VSEL}}}[{RATE}]))",
                    "keepalive failed {{vendor}}",
                ),
                bars=True,
            )
        )
        # ---- capacity
        .with_row(row("Capacity"))
        .with_panel(
            graph(
                "Event-loop lag (p50, p99)",
                "How late each replica's event loop wakes a timer: every stream waits as long "
                "(alert: AvatarGatewayEventLoopLagging).",
                "s",
                query(
                    quantile(0.5, "avatar_gateway_event_loop_lag_seconds", SEL, "instance"),
                    "p50 {{instance}}",
                ),
                query(
                    quantile(0.99, "avatar_gateway_event_loop_lag_seconds", SEL, "instance"),
                    "p99 {{instance}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Admission: overloaded replicas and refused calls",
                "Replicas past a capacity bound (not ready; refusing new CreateSession and "
                "Drive calls with GATEWAY_OVERLOADED), and the calls refused per second by "
                "method and signal (alert: AvatarGatewayOverloaded).",
                "short",
                query(f"avatar_gateway_overloaded{{{SEL}}} > 0", "overloaded {{instance}}"),
                query(
                    "sum by (method, signal) "
                    f"(rate(avatar_gateway_admission_refused_total{{{SEL}}}[{RATE}]))",
                    "refused/s {{method}} {{signal}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Pacing lateness p99",
                "How late paced audio frames leave after their slot (alert: "
                "AvatarGatewayPacingLate).",
                "s",
                query(
                    quantile(0.99, "avatar_gateway_pacing_lateness_seconds", VSEL, "vendor"),
                    "{{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Drive backlog",
                "Input queued per Drive stream (s of audio): the largest now, and the p90 of "
                "the samples taken at each frame. Up to 2 s is the flow-control bound: a client "
                "that sends ahead of real time fills it by design.",
                "s",
                query(
                    f"max by (vendor) (avatar_gateway_drive_backlog_max_seconds{{{VSEL}}})",
                    "max now {{vendor}}",
                ),
                query(
                    quantile(0.9, "avatar_gateway_drive_backlog_seconds", VSEL, "vendor"),
                    "p90 {{vendor}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Draining",
                "Seconds since a replica began to drain, against its grace (alert: "
                "AvatarGatewayDrainStuck).",
                "s",
                query(f"avatar_gateway_draining_seconds{{{SEL}}} > 0", "draining {{instance}}"),
                query(
                    f"max(avatar_gateway_shutdown_grace_seconds{{{SEL}}})",
                    "grace",
                ),
            )
        )
        .with_panel(
            graph(
                "TLS certificate expiry",
                "Days until the gRPC server certificate in use expires (0: plaintext).",
                "d",
                query(
                    f"(avatar_gateway_tls_certificate_expiry_timestamp_seconds{{{SEL}}} - time())"
                    " / 86400 and "
                    f"avatar_gateway_tls_certificate_expiry_timestamp_seconds{{{SEL}}} > 0",
                    "{{instance}}",
                ),
            )
        )
        # ---- usage (what vendors bill; counted once per session, when it ends)
        .with_row(row("Usage"))
        .with_panel(
            graph(
                "Vendor session hours by tenant",
                "Vendor session time of the sessions that ended, by tenant and vendor (hours per "
                "interval): what the vendors bill, from creation to close.",
                "h",
                query(
                    "sum by (tenant, vendor) (increase("
                    f"avatar_gateway_usage_vendor_session_seconds_total{{{VSEL}}}[{RATE}])) / 3600",
                    "{{tenant}} {{vendor}}",
                ),
                bars=True,
            )
        )
        .with_panel(
            graph(
                "Sessions ended, audio and text driven, by tenant",
                "Sessions that ended; the audio minutes and text characters they handed to "
                "their vendor.",
                "short",
                query(
                    "sum by (tenant, vendor) "
                    f"(increase(avatar_gateway_usage_sessions_total{{{VSEL}}}[{RATE}]))",
                    "sessions {{tenant}} {{vendor}}",
                ),
                query(
                    "sum by (tenant, vendor) (increase("
                    f"avatar_gateway_usage_audio_seconds_total{{{VSEL}}}[{RATE}])) / 60",
                    "audio min {{tenant}} {{vendor}}",
                ),
                query(
                    "sum by (tenant, vendor) (increase("
                    f"avatar_gateway_usage_text_characters_total{{{VSEL}}}[{RATE}]))",
                    "text chars {{tenant}} {{vendor}}",
                ),
                bars=True,
            )
        )
    )
    encoded: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def render() -> str:
    """The dashboard JSON as committed (sorted keys, two-space indent, final newline)."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write the JSON (or, with ``--check``, fail when the committed one differs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
