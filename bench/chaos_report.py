"""Run the chaos scenario of tests/integration/test_chaos.py once and record its figures.

    .venv/bin/python bench/chaos_report.py [--seed N] [--sessions N] [--concurrency N]
                                           [--no-write]

Starts a sandboxed gateway in this process (ZEGOCLOUD, Tencent and Akool emulators, a real
LiveKit server for Akool), runs the same scenario as the test (seeded faults, client kills,
abandoned sessions for the reaper, a final GatewayServer.stop() as on SIGTERM) and prints the
figures: faults injected, sessions run, audio bytes lost, sessions leaked. Unless
``--no-write``, it rewrites only the block between ``<!-- BEGIN chaos -->`` and
``<!-- END chaos -->`` in bench/RESULTS.md (appended at the end when absent); the rest of the
file belongs to other reports and is left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import grpc  # noqa: E402
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc  # noqa: E402
from results_md import write_block  # noqa: E402

from emulators.livekit_server import LiveKitServer  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from gateway.server import GatewayServer  # noqa: E402
from tests.conftest import Gateway, make_settings  # noqa: E402
from tests.integration.test_chaos import (  # noqa: E402
    CHAOS_CONCURRENCY,
    CHAOS_SEED,
    CHAOS_SESSIONS,
    CHAOS_SETTINGS,
    ChaosReport,
    run_chaos,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- BEGIN chaos -->", "<!-- END chaos -->"
CAUSES = {
    "open vendor sessions not READY in the gateway": "a CreateSession cancelled by its "
    "client's deadline is cancelled inside the gateway: its record stays CREATING (never "
    "reaped) and its vendor session stays open until shutdown; the retry with the same "
    "request_id creates a second one (gateway/sessions.py `SessionManager.create`)",
    "stuck gateway records": "the same cancelled CreateSession calls",
    "speech events naming no turn of their session": "Akool: avatar playback RPCs are matched "
    "to turns by arrival order; a barge-in before the avatar's `lk.playback_started` empties "
    "the queue, so later events get turn id '' or the next turn's id "
    "(adapters/akool/channel.py)",
    "turns with neither speech_ended nor turn_failed": "Akool, same cause: the next turn is "
    "resolved by the interrupted turn's mislabelled end, so its own end is never reported",
}


async def run(seed: int, sessions: int, concurrency: int) -> ChaosReport:
    LiveKitServer.ensure_built()
    server = GatewayServer(make_settings(**CHAOS_SETTINGS))
    await server.start()
    channel = grpc.aio.insecure_channel(server.grpc_target)
    try:
        gw = Gateway(server, channel, pb_grpc.AvatarGatewayStub(channel))
        return await run_chaos(gw, seed=seed, sessions=sessions, concurrency=concurrency)
    finally:
        await channel.close()
        await server.stop(grace_s=1.0)  # already stopped by the scenario: returns at once


def block(report: ChaosReport, command: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    details = []
    for kind, items in report.details().items():
        if items:
            shown = "; ".join(items[:4]) + (
                f"; … ({len(items) - 4} more)" if len(items) > 4 else ""
            )
            cause = f" — cause: {CAUSES[kind]}." if kind in CAUSES else ""
            details.append(f"- **{kind}** ({len(items)}){cause} Seen: {shown}")
    verdict = (
        "**Pass**: no audio lost, no session leaked or billed past its close, every Drive "
        "ended as expected."
        if not details and report.reaped == report.abandoned
        else "**Fail**: the problems below are product bugs, reported with the test suite "
        "(`tests/integration/test_chaos.py` asserts the correct behaviour)."
    )
    return "\n".join(
        [
            BEGIN,
            "## Faults and leaks",
            "",
            f"Command: `{command}` — run {when} on {machine}. The same scenario is "
            "`tests/integration/test_chaos.py` (seed, sessions and concurrency as below).",
            "",
            "One sandboxed gateway runs every vendor (ZEGOCLOUD, Tencent and Akool emulators; "
            "Akool over a real LiveKit server). Each session draws one fault from a seeded RNG: "
            "REST 5xx on the readiness poll (`rest_5xx`), a retryable business code (`busy`), "
            "a vendor stall past the client's CreateSession deadline followed by a retry with "
            "the same request_id (`kill_create`), the drive socket dropped mid-turn (`drop`), "
            "the vendor stalling mid-turn (`stall`), the client cancelling its Drive mid-turn "
            "and reconnecting (`kill_drive`), a barge-in (`interrupt`) or nothing. Sessions "
            "are closed, abandoned with a 5–8 s max_duration (the reaper must close them) or "
            "left for the shutdown; three Drives are open when `GatewayServer.stop()` runs. "
            "Audio is checked per turn by SHA-256 at the vendor; a turn counts as lost when "
            "the gateway reported no failure for it and the vendor does not hold it byte for "
            "byte. A session counts as leaked when an emulator bills it while the gateway "
            "does not report it READY (before shutdown), or when it is open after shutdown. "
            "A session counts as billed past its close when its usage does not say it was "
            "billed exactly from create_time to close_time, says more on a later read, or the "
            "emulator billed its vendor session outside that window (architecture.md §4.4).",
            "",
            report.render(),
            "",
            verdict,
            *([""] + details if details else []),
            END,
        ]
    )


def write(text: str) -> None:
    write_block(RESULTS, BEGIN, END, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=CHAOS_SEED)
    parser.add_argument("--sessions", type=int, default=CHAOS_SESSIONS)
    parser.add_argument("--concurrency", type=int, default=CHAOS_CONCURRENCY)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    configure_logging("error", "console")
    report = asyncio.run(run(args.seed, args.sessions, args.concurrency))
    command = (
        f".venv/bin/python bench/chaos_report.py --seed {args.seed} "
        f"--sessions {args.sessions} --concurrency {args.concurrency}"
    )
    text = block(report, command)
    print(text)
    if not args.no_write:
        write(text)
        print(f"\nwrote the chaos block of {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
