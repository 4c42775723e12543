"""Every interop scenario (scenarios/*.yaml) with every client language's driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import runner
from tests.interop.conftest import Drivers

pytestmark = pytest.mark.interop

SCENARIOS = runner.load_scenarios()


@pytest.mark.timeout(1200)  # the first test of a language builds its driver (npm ci, Maven)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.parametrize("lang", runner.LANGS)
def test_scenario(
    lang: str,
    scenario: runner.Scenario,
    drivers: Drivers,
    request: pytest.FixtureRequest,
    wavs: dict[str, str],
    interop_dir: Path,
) -> None:
    command = drivers.command(lang)
    if scenario.gateway == "dedicated":
        # Mutual TLS: every language's client certificate names the tenant (SPIFFE ID).
        gateway = runner.GatewayProcess(interop_dir, mutual_tls=True).start()
    else:
        gateway = request.getfixturevalue("shared_gateway")
    try:
        result = runner.run_scenario(command, scenario, gateway, wavs)
    finally:
        if scenario.gateway == "dedicated":
            gateway.stop()
    problems = runner.check(scenario, result)
    if problems:
        pytest.fail(
            f"{lang} / {scenario.name}: {scenario.description.strip()}\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\ndriver output:\n{result.transcript()}\ndriver stderr:\n{result.stderr[-3000:]}"
            + f"\ngateway log (tail):\n{gateway.log_tail()}"
        )


def test_scenarios_cover_the_contract() -> None:
    """The suite keeps the scenarios the API contract needs (a deleted file fails here)."""
    names = {s.name for s in SCENARIOS}
    assert names >= {
        "config_first",
        "audio_ping_pong",
        "end_turn",
        "interrupt",
        "half_close",
        "cancel_after_first_response",
        "deadline_exceeded",
        "unknown_session",
        "go_away",
    }
