"""Usage shares and the meter (gateway/usage.py): merge, totals, billed time, background writes."""

from __future__ import annotations

import asyncio

from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from gateway.registry import SessionRecord
from gateway.usage import Tally, UsageMeter, merge_shares, total, vendor_session_seconds


def test_shares_merge_by_the_larger_value_and_sum_across_replicas() -> None:
    a = {"r1": Tally(1.0, 5), "r2": Tally(0.5, 0)}
    b = {"r1": Tally(0.75, 9), "r3": Tally(0.25, 1)}
    merged = merge_shares(a, b)
    assert merged == {"r1": Tally(1.0, 9), "r2": Tally(0.5, 0), "r3": Tally(0.25, 1)}
    assert merge_shares(merged, a) == merged  # idempotent: a write repeated counts once
    assert total(merged) == Tally(1.75, 10)


def test_vendor_session_time_runs_while_live_and_stops_at_the_close() -> None:
    live = vendor_session_seconds(100.0, 0.0, ended=False, vendor_session=True, now=130.5)
    assert live == 30.5
    ended = vendor_session_seconds(100.0, 160.0, ended=True, vendor_session=True, now=9999.0)
    assert ended == 60.0
    # Ended without a vendor session ever made: nothing was billed.
    assert vendor_session_seconds(100.0, 160.0, ended=True, vendor_session=False, now=200) == 0
    record = SessionRecord(session_id="s", vendor="zegocloud", avatar_id="a", owner="r1")
    record.create_time, record.close_time = 100.0, 160.0
    record.vendor_session_id = "task_1"
    record.state = pb.SESSION_STATE_CLOSED
    record.usage = {"r1": Tally(1.5, 3), "r2": Tally(0.5, 4)}
    usage = record.to_proto().usage
    assert usage.vendor_session_duration.ToNanoseconds() == 60_000_000_000
    assert usage.audio_duration.ToNanoseconds() == 2_000_000_000
    assert usage.text_character_count == 7


async def test_meter_writes_running_totals_in_the_background_and_retries_after_a_failure() -> None:
    stored: list[Tally] = []
    fail = [True]
    gate = asyncio.Event()

    async def store(share: Tally) -> None:
        await gate.wait()
        if fail[0]:
            fail[0] = False
            raise ConnectionError("registry away")
        stored.append(share)

    meter = UsageMeter(Tally(1.0, 0), store, "s")
    meter.store_soon()  # nothing new since the start: no write
    assert meter._task is None
    meter.add(audio_s=0.5)
    meter.store_soon()
    gate.set()
    await meter.flush()  # the first write failed; flush writes the total again
    assert stored == [Tally(1.5, 0)]
    meter.add(text_characters=3)
    meter.store_soon()
    meter.add(audio_s=0.25)  # counted before the write: the running total is written
    await meter.aclose()
    assert stored[-1] == Tally(1.75, 3)
