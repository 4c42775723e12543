"""Admission control's state machine (gateway/admission.py) on a fake clock.

The sampled signals (event-loop lag, Drive backlog) enter overload after two samples in a
row at their bound and leave it only after staying below half of it for the hold time; the
drive count is exact. The refusal is RESOURCE_EXHAUSTED GATEWAY_OVERLOADED with ErrorInfo
metadata and a RetryInfo.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from core.errors import DOMAIN, GatewayError, Reason, to_rpc_status
from gateway import metrics
from gateway.admission import (
    ACTIVE_DRIVES,
    DRIVE_BACKLOG,
    EVENT_LOOP_LAG,
    RETRY_AFTER_S,
    AdmissionControl,
    Overload,
)

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def control(clock: FakeClock, **kw: object) -> AdmissionControl:
    args: dict[str, object] = {
        "max_active_drives": None,
        "event_loop_lag_ms": 100.0,
        "drive_backlog_ms": 1000.0,
        "hold_s": 5.0,
        "clock": clock,
    }
    args.update(kw)
    return AdmissionControl(**args)  # type: ignore[arg-type]


def test_lag_enters_at_its_bound_and_leaves_after_the_hold_below_half() -> None:
    clock = FakeClock()
    changes: list[Overload | None] = []
    ac = control(clock)
    ac.on_change = changes.append
    ac.sample(99.0, 0.0)
    assert ac.overload is None and changes == []
    # One stall alone is not overload; two samples in a row at the bound are.
    ac.sample(300.0, 0.0)
    ac.sample(10.0, 0.0)
    assert ac.overload is None and changes == []
    ac.sample(120.0, 0.0)
    ac.sample(150.0, 0.0)
    assert ac.overload == Overload(EVENT_LOOP_LAG, 150.0, 100.0)
    assert len(changes) == 1
    # Below the bound but above half of it: still overloaded, however long it lasts.
    for _ in range(100):
        clock.now += 0.25
        ac.sample(60.0, 0.0)
    assert ac.overload is not None
    # Calm (below 50 ms) but not yet for the hold time.
    clock.now += 0.25
    ac.sample(10.0, 0.0)
    clock.now += 4.9
    ac.sample(10.0, 0.0)
    assert ac.overload is not None
    # One sample above the low mark restarts the hold.
    clock.now += 0.25
    ac.sample(55.0, 0.0)
    clock.now += 0.25
    ac.sample(10.0, 0.0)
    clock.now += 4.9
    ac.sample(10.0, 0.0)
    assert ac.overload is not None
    clock.now += 0.2
    ac.sample(10.0, 0.0)
    assert ac.overload is None
    assert changes[1:] == [None]  # one change each way, not one per sample


def test_the_overload_names_the_latest_sample_while_it_stays_high() -> None:
    clock = FakeClock()
    ac = control(clock)
    ac.sample(0.0, 1100.0)
    ac.sample(0.0, 1500.0)
    assert ac.overload == Overload(DRIVE_BACKLOG, 1500.0, 1000.0)
    clock.now += 0.25
    ac.sample(300.0, 1200.0)  # both past their bound: the lag is further past it
    assert ac.overload == Overload(EVENT_LOOP_LAG, 300.0, 100.0)


def test_an_unset_bound_is_no_signal() -> None:
    clock = FakeClock()
    ac = control(clock, event_loop_lag_ms=None, drive_backlog_ms=None)
    ac.sample(10_000.0, 10_000.0)
    assert ac.overload is None
    assert ac.strain_since(0.0) is None


def test_the_drive_count_is_exact_without_hysteresis() -> None:
    clock = FakeClock()
    changes: list[Overload | None] = []
    ac = control(clock, max_active_drives=2)
    ac.on_change = changes.append
    ac.drive_started()
    ac.check("Drive")
    ac.drive_started()
    assert ac.overload == Overload(ACTIVE_DRIVES, 2, 2)
    with pytest.raises(GatewayError) as refused:
        ac.check("Drive")
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    ac.drive_ended()
    assert ac.overload is None
    ac.check("CreateSession")
    assert [c is None for c in changes] == [False, True]


def test_a_refusal_is_resource_exhausted_with_error_info_and_retry_info() -> None:
    clock = FakeClock()
    ac = control(clock, max_active_drives=1)
    ac.drive_started()
    before = metrics.ADMISSION_REFUSED.labels("CreateSession", ACTIVE_DRIVES)._value.get()
    with pytest.raises(GatewayError) as refused:
        ac.check("CreateSession")
    after = metrics.ADMISSION_REFUSED.labels("CreateSession", ACTIVE_DRIVES)._value.get()
    assert after == before + 1
    status = to_rpc_status(refused.value)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = dict(status.trailing_metadata)["grpc-status-details-bin"]
    details = status_pb2.Status.FromString(raw).details
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    assert details[0].Unpack(info) and details[1].Unpack(retry)
    assert info.reason == Reason.GATEWAY_OVERLOADED and info.domain == DOMAIN
    assert dict(info.metadata) == {"signal": "active_drives", "value": "1", "bound": "1"}
    assert retry.retry_delay.ToNanoseconds() == int(RETRY_AFTER_S * 1e9)
    assert "active_drives 1" in refused.value.message


def test_strain_since_finds_samples_at_half_the_bound_after_a_moment() -> None:
    clock = FakeClock()
    ac = control(clock)
    ac.sample(70.0, 0.0)  # strained (>= 50 ms), before the turn
    clock.now += 1
    turn_start = clock.now
    clock.now += 0.25
    ac.sample(20.0, 100.0)  # calm
    assert ac.strain_since(turn_start) is None
    clock.now += 0.25
    ac.sample(60.0, 900.0)  # both strained: the backlog is nearer its bound
    clock.now += 0.25
    ac.sample(20.0, 0.0)
    strain = ac.strain_since(turn_start)
    assert strain is not None
    assert (strain.signal, strain.value_ms) == (DRIVE_BACKLOG, 900.0)
    assert strain.describe() == "Drive input backlog 900 ms"
    assert ac.strain_since(clock.now + 1) is None
