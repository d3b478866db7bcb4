"""A FAULT (or SAFE_HOLD) the device reported before this host's RESET_FAULT — typically its watchdog when
the previous host left — may reach the new host only after the reset (the device's events are reliable
across sessions). It was cleared by that reset and must not end the new exam; a fault after it still does.
(Found by the README test: a shared pty gantry, one recipe's host after another.)"""

from __future__ import annotations

from types import SimpleNamespace

from firmware_host.controller import Controller
from firmware_host.exam_plan import device_cause
from firmware_host.mirror import DeviceMirror
from protocols.wire.catalogue import DeviceState, FaultCode
from protocols.wire.messages import Fault, StateChanged, Telemetry


def _mirror_after_reset(reset_at_us: int) -> DeviceMirror:
    mirror = DeviceMirror()
    mirror.apply(Telemetry(device_time_us=reset_at_us, arc_mdeg=0, arc_speed_mdeg_s=0, force_dn=0, thickness_um=0,
                           kv_ckv=0, ma_dma=0, anode_heat_permille=0, state=int(DeviceState.IDLE), interlocks=63,
                           detector_state=0), 0.0)
    mirror.fault_floor_us = int(mirror.latest_device_time_s * 1e6)  # as prepare() sets it after RESET_FAULT
    return mirror


def _watchdog(at_us: int) -> list:
    return [Fault(device_time_us=at_us, fault_code=int(FaultCode.WATCHDOG), latched=0, detail=0,
                  text="host heartbeat lost: safe hold"),
            StateChanged(device_time_us=at_us, old_state=int(DeviceState.IDLE), new_state=int(DeviceState.SAFE_HOLD),
                         fault_code=int(FaultCode.WATCHDOG), cause_msg_id=0)]


def _cause(mirror: DeviceMirror, events: list) -> object:
    mark = len(mirror.events)
    for m in events:
        mirror.apply(m, 1.0)
    return device_cause(SimpleNamespace(mirror=mirror), SimpleNamespace(event_mark=mark))  # type: ignore[arg-type]


def test_a_fault_from_before_the_reset_delivered_late_does_not_end_the_exam() -> None:
    assert _cause(_mirror_after_reset(250_900_000), _watchdog(250_837_024)) is None


def test_a_fault_after_the_reset_still_ends_the_exam() -> None:
    cause = _cause(_mirror_after_reset(250_900_000), _watchdog(251_000_000))
    assert cause is not None and cause[1] == "WATCHDOG"


def test_the_controller_ignores_only_the_faults_before_the_floor() -> None:
    logged: list[dict] = []
    fake = SimpleNamespace(mirror=_mirror_after_reset(250_900_000), _fault_trouble=None,
                           log=lambda kind, **kw: logged.append(kw), now=0.0,
                           _request_telemetry=lambda now: None)
    Controller._on_fault(fake, _watchdog(250_837_024)[0])  # type: ignore[arg-type]
    assert fake._fault_trouble is None and "before this host's RESET_FAULT" in logged[-1]["note"]
    Controller._on_fault(fake, _watchdog(251_000_000)[0])  # type: ignore[arg-type]
    assert fake._fault_trouble is not None and "WATCHDOG" in str(fake._fault_trouble)


def test_a_late_safe_hold_from_before_the_reset_leaves_the_mirror_and_the_exam_alone() -> None:
    """The late STATE_CHANGED(SAFE_HOLD) of the previous host's watchdog does not put the mirror back in
    SAFE_HOLD: the controller's every-tick check (``trouble``) stays quiet. Found by the README test on a
    loaded machine: the Python snippet's exam aborted at COMPRESS with "device entered SAFE_HOLD (WATCHDOG)"
    when the old event arrived after its RESET_FAULT. A SAFE_HOLD after the reset still ends the exam."""
    mirror = _mirror_after_reset(250_900_000)
    mirror.peer_alive = True
    fake = SimpleNamespace(mirror=mirror, _fault_trouble=None)
    for m in _watchdog(250_837_024):
        mirror.apply(m, 1.0)
    assert mirror.state == int(DeviceState.IDLE) and mirror.fault_code == 0
    assert Controller.trouble(fake) is None  # type: ignore[arg-type]
    assert len(mirror.events) == 2  # kept in the log all the same
    for m in _watchdog(251_000_000):
        mirror.apply(m, 2.0)
    assert mirror.state == int(DeviceState.SAFE_HOLD)
    assert "SAFE_HOLD (WATCHDOG)" in str(Controller.trouble(fake))  # type: ignore[arg-type]
