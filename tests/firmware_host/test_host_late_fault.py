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
    mirror.mark_reset()  # as prepare() does once RESET_FAULT is answered
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


def _fake_controller(mirror: DeviceMirror, logged: list[dict] | None = None) -> SimpleNamespace:
    """The controller state ``_on_fault`` and ``trouble`` read, with the real helper they call."""
    fake = SimpleNamespace(mirror=mirror, _fault_trouble=None, _fault_trouble_us=0, now=0.0,
                           log=lambda kind, **kw: (logged if logged is not None else []).append(kw),
                           _request_telemetry=lambda now: None)
    fake._drop_cleared_fault_trouble = lambda: Controller._drop_cleared_fault_trouble(fake)  # type: ignore[arg-type]
    return fake


def test_a_fault_from_before_the_reset_delivered_late_does_not_end_the_exam() -> None:
    assert _cause(_mirror_after_reset(250_900_000), _watchdog(250_837_024)) is None


def test_a_fault_after_the_reset_still_ends_the_exam() -> None:
    cause = _cause(_mirror_after_reset(250_900_000), _watchdog(251_000_000))
    assert cause is not None and cause[1] == "WATCHDOG"


def test_the_controller_ignores_only_the_faults_before_the_floor() -> None:
    logged: list[dict] = []
    fake = _fake_controller(_mirror_after_reset(250_900_000), logged)
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
    fake = _fake_controller(mirror)
    for m in _watchdog(250_837_024):
        mirror.apply(m, 1.0)
    assert mirror.state == int(DeviceState.IDLE) and mirror.fault_code == 0
    assert Controller.trouble(fake) is None  # type: ignore[arg-type]
    assert len(mirror.events) == 2  # kept in the log all the same
    for m in _watchdog(251_000_000):
        mirror.apply(m, 2.0)
    assert mirror.state == int(DeviceState.SAFE_HOLD)
    assert "SAFE_HOLD (WATCHDOG)" in str(Controller.trouble(fake))  # type: ignore[arg-type]


def _late_fault_exam(tmp_path, fault_in_sweep: bool):  # type: ignore[no-untyped-def]
    import simpy

    from firmware_host import connect_virtual
    from host_sim import fast_config
    from simulator.gantry import start_virtual_gantry

    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / "device", event_log=None)
    with connect_virtual(env, endpoint, seed=1):
        env.run(until=env.now + 1.0)
    env.run(until=env.now + 1.0)  # no host: the watchdog trips
    assert model.state == int(DeviceState.SAFE_HOLD)
    tripped_us = model.now_us() - 400_000

    def inject(phase: str, index: int, total: int) -> None:
        if phase == "prepare":  # after HELLO, before STATUS and RESET_FAULT
            model.emit(Fault(device_time_us=tripped_us, fault_code=int(FaultCode.WATCHDOG), latched=0, detail=0,
                             text="host heartbeat lost: safe hold"))
        elif fault_in_sweep and phase == "sweep" and index == 3:  # a fault of this exam
            model.emit(Fault(device_time_us=model.now_us(), fault_code=int(FaultCode.WATCHDOG), latched=0, detail=0,
                             text="a fault during this exam"))

    with connect_virtual(env, endpoint, seed=2) as gantry:
        result = gantry.run_exam("dbt-standard", tmp_path / "exam", progress=inject)
    assert '"name":"FAULT"' in result.audit_path.read_text().replace(" ", "")  # the late event reached this host
    return result


def test_a_late_fault_arriving_before_the_reset_does_not_end_the_exam(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The product path: a real controller and the simulated gantry (virtual time). The previous host leaves,
    the device's watchdog holds it in SAFE_HOLD; the next host connects and, before its RESET_FAULT, receives
    that watchdog's FAULT (the previous session's event, delivered late: on a shared pty the bytes wait in the
    line). The reset clears it, so the exam runs to the end. Found by the README test on a loaded CI run
    (README.md's Python recipe aborted in prepare with "device fault WATCHDOG: host heartbeat lost")."""
    result = _late_fault_exam(tmp_path, fault_in_sweep=False)
    assert result.record.status == "complete", result.record.reason
    assert len(result.image_paths) == 15
    assert "cleared by it, the exam goes on" in result.audit_path.read_text()  # the audit log says why


def test_a_fault_of_this_exam_after_a_late_one_still_ends_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _late_fault_exam(tmp_path, fault_in_sweep=True)
    assert result.record.status == "aborted"
    assert "a fault during this exam" in (result.record.reason or "")


def test_a_late_fault_that_is_the_newest_frame_before_the_reset_is_cleared_by_it() -> None:
    """No telemetry yet: the previous session's FAULT is the newest timed frame this host has seen when its
    RESET_FAULT is answered. The floor lies above it (a float round trip once put it 1 us low, or equal)."""
    mirror = DeviceMirror()
    fault = _watchdog(250_837_023)[0]
    mirror.apply(fault, 0.5)
    mirror.mark_reset()
    assert mirror.fault_floor_us == 250_837_024
    logged: list[dict] = []
    fake = _fake_controller(mirror, logged)
    Controller._on_fault(fake, fault)  # type: ignore[arg-type]
    assert fake._fault_trouble is None


def test_a_fault_after_the_reset_replaces_one_the_reset_cleared_at_once() -> None:
    """The old fault was kept as the reason to end the exam before RESET_FAULT; a fault after the reset arrives
    before the controller's next check: it is the one that ends the exam, with its own reason."""
    mirror = DeviceMirror()
    logged: list[dict] = []
    fake = _fake_controller(mirror, logged)
    old = _watchdog(250_837_023)[0]
    mirror.apply(old, 0.5)
    Controller._on_fault(fake, old)  # type: ignore[arg-type]
    assert fake._fault_trouble is not None
    mirror.mark_reset()
    new = Fault(device_time_us=251_000_000, fault_code=int(FaultCode.WATCHDOG), latched=0, detail=0,
                text="a fault during this exam")
    Controller._on_fault(fake, new)  # type: ignore[arg-type]
    assert "a fault during this exam" in str(fake._fault_trouble)
    assert any("cleared by it" in str(e.get("note", "")) for e in logged)
