"""The dashboard and alert rules of deploy/observability/ against the metrics the gateway exports.

* The dashboard JSON is what ``dashboard.py`` generates (Grafana Foundation SDK), and every
  query in it names only metric series a running gateway's /metrics has; each query parses
  as PromQL (``promtool check rules`` on them as recording rules).
* The alert rules pass ``promtool check rules`` and their unit tests (``promtool test
  rules alerts_test.yaml``: for each alert, sample series that fire it and series that must
  not), and name only exported series.

promtool is built from Prometheus's Go module (tools/build_promtool.sh, `make promtool`):
without Go these tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, collect, paced_requests, tone

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
DASHBOARD = OBS / "avatar-gateway.json"
ALERTS = OBS / "alerts.yaml"
ALERT_TESTS = OBS / "alerts_test.yaml"
PROMTOOL = Path(os.environ.get("PROMTOOL_BIN", ROOT / ".cache" / "bin" / "promtool"))
# Series names in PromQL: our metric prefixes (functions and labels never start so).
SERIES = re.compile(r"\b((?:avatar_gateway|rpc_server)_[a-z_]+)\b")
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$job": ".*",
    "$instance": ".*",
    "$vendor": ".*",
}


def require_or_skip(reason: str) -> None:
    """Skip locally; in CI (CI=true) a missing tool is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must check the alert rules)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def promtool() -> Path:
    """promtool at its pinned version (built once into .cache/bin)."""
    if shutil.which("go") is None and not PROMTOOL.exists():
        require_or_skip("promtool is not built and there is no Go toolchain to build it")
    build = subprocess.run(
        ["bash", str(ROOT / "tools" / "build_promtool.sh")],
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return PROMTOOL


def run(promtool: Path, *args: str) -> str:
    done = subprocess.run(
        [str(promtool), *args], cwd=OBS, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"])
            assert inner, variable["query"]
            out.append((f"variable {variable['name']}", inner.group(1)))
    return out


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


async def exported_series(gateway: Gateway) -> set[str]:
    """Every series name the gateway can export (a Drive ran, so histograms have samples)."""
    session = await gateway.create()
    await collect(
        gateway.stub.Drive(paced_requests(session.name, tone(0.3), realtime=False), timeout=20)
    )
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{gateway.server.ops_url}/metrics")).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    # The parser reads each counter's and histogram's _created series as a gauge of its own.
    return {n for n in names if not (n.endswith("_created") and n[:-8] + "_count" in names)} - {
        n for n in names if n.endswith("_created") and n[:-8] + "_total" in names
    }


# ---- dashboard --------------------------------------------------------------------------


def test_the_dashboard_json_is_what_dashboard_py_generates() -> None:
    done = subprocess.run(
        [sys.executable, str(OBS / "dashboard.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs) and all(refs), panel["title"]
        assert panel["type"] == "row" or panel.get("description"), panel["title"]


async def test_every_dashboard_query_names_only_exported_series(gateway: Gateway) -> None:
    exported = await exported_series(gateway)
    queries = dashboard_queries()
    assert len(queries) > 30
    unknown = {
        (where, name)
        for where, expr in queries
        for name in SERIES.findall(expr)
        if name not in exported
    }
    assert not unknown, f"series the gateway does not export: {sorted(unknown)}"
    # Every family the gateway exports is on the dashboard somewhere.
    shown = {name for _, expr in queries for name in SERIES.findall(expr)}
    families = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in exported if SERIES.match(n)}
    missing = {f for f in families if not any(s.startswith(f) for s in shown)}
    assert not missing, f"exported but on no panel: {sorted(missing)}"


def test_every_dashboard_query_is_valid_promql(promtool: Path, tmp_path: Path) -> None:
    rules = []
    for n, (where, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, (where, expr)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(promtool, "check", "rules", str(path))
    assert f"{len(rules)} rules found" in out, out


# ---- alert rules ------------------------------------------------------------------------


def test_the_alert_rules_are_valid_and_pass_their_unit_tests(promtool: Path) -> None:
    out = run(promtool, "check", "rules", ALERTS.name)
    assert f"{len(alert_rules())} rules found" in out, out
    out = run(promtool, "test", "rules", ALERT_TESTS.name)
    assert "SUCCESS" in out, out


def test_every_alert_has_a_test_that_fires_it_and_one_that_must_not() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "AvatarGatewaySessionsNotReaped",
        "AvatarGatewaySessionLeakSuspected",
        "AvatarGatewayVendorErrorRate",
        "AvatarGatewayEventLoopLagging",
        "AvatarGatewayPacingLate",
        "AvatarGatewayDrainStuck",
    } <= names
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == names, f"never fired in a test: {sorted(names - fired)}"
    assert quiet == names, f"never shown quiet in a test: {sorted(names - quiet)}"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


async def test_every_alert_names_only_exported_series(gateway: Gateway) -> None:
    exported = await exported_series(gateway)
    for rule in alert_rules():
        names = set(SERIES.findall(rule["expr"]))
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], sorted(names - exported))
