"""The sans-IO core against a scripted device on the real Link: commands, NAK, retries, waits, suspenders."""

from __future__ import annotations

import pytest

from firmware_host.audit import MemoryAudit
from firmware_host.controller import Controller
from firmware_host.errors import (CommandFailed, CommandRefused, DeviceLimitsInvalid, Interrupted, VersionMismatch,
                                  WaitTimeout)
from firmware_host.plans import Command, Guard, Now, Phase, Sleep, WaitFor
from firmware_host.session import HOST_MIN_VERSION, HOST_PROTOCOL_VERSION, connect_plan, geometry_from_info, limits_from_info
from host_peer import ScriptedDevice, ack, drive
from protocols.limits import DeviceLimits
from protocols.wire.catalogue import ALL_INTERLOCKS, DeviceState, ErrorCode, Interlock
from protocols.wire.messages import (
    DeviceInfo,
    Fire,
    GetStatus,
    HelloReply,
    InterlockChanged,
    LimitsInfo,
    Message,
    MotionDone,
    MoveArc,
    Nak,
    Status,
    StateChanged,
)


def status_reply(**kw: int) -> Status:
    base = dict(state=int(DeviceState.IDLE), fault_code=0, interlocks=ALL_INTERLOCKS, homed=1, arc_mdeg=0,
                force_dn=0, thickness_um=60000, anode_heat_permille=0, armed_plan_id=0, exposures_done=0,
                detector_state=1)
    base.update(kw)
    return Status(**base)


def test_command_resumes_with_the_response_and_events_are_acked() -> None:
    audit = MemoryAudit()
    ctl = Controller(audit=audit, seed=1)
    dev = ScriptedDevice(lambda m: status_reply(arc_mdeg=1234) if m.NAME == "GET_STATUS" else None)

    def plan():
        st = yield Command(GetStatus())
        t = yield Now()
        return st, t

    ev = StateChanged(device_time_us=5, old_state=1, new_state=2, cause_msg_id=0x11, fault_code=0)
    runner = drive(ctl, dev, plan(), at={0.0: lambda t: dev.push(ev, t)})
    st, _ = runner.outcome()
    assert st.arc_mdeg == 1234
    assert ctl.mirror.arc_deg == pytest.approx(1.234)  # STATUS updates the mirror
    # the device's event got its ACK from the host (the device link reports Answered)
    assert any(type(a).__name__ == "Answered" and a.request.NAME == "STATE_CHANGED" for a in dev.answers)
    assert [e["name"] for e in audit.kinds("event")] == ["STATE_CHANGED"]
    assert audit.kinds("command")[0]["name"] == "GET_STATUS"


def test_nak_raises_command_refused_naming_the_error() -> None:
    ctl = Controller(seed=2)
    dev = ScriptedDevice(lambda m: Nak(acked_msg_id=m.ID, error_code=int(ErrorCode.NOT_ARMED), detail=0))

    def plan():
        yield Command(Fire(plan_id=1, digest=0))

    runner = drive(ctl, dev, plan())
    with pytest.raises(CommandRefused, match="FIRE refused by the device: NOT_ARMED"):
        runner.outcome()


def test_idempotent_command_is_resent_after_send_failed_but_fire_is_not() -> None:
    ctl = Controller(seed=3)
    dev = ScriptedDevice(lambda m: status_reply() if m.NAME == "GET_STATUS" else None)
    dev.drop_to_device = 6  # the first send and its 5 retransmissions are lost: SendFailed

    def plan():
        return (yield Command(GetStatus(), retries=2))

    runner = drive(ctl, dev, plan())
    assert runner.outcome().NAME == "STATUS"
    assert sum(1 for m in dev.received if m.NAME == "GET_STATUS") == 1

    ctl2 = Controller(seed=4)
    dev2 = ScriptedDevice(lambda m: None)  # never answers

    def fire():
        yield Command(Fire(plan_id=1, digest=0))

    runner2 = drive(ctl2, dev2, fire())
    with pytest.raises(CommandFailed, match="FIRE got no response after 6 attempts"):
        runner2.outcome()
    assert sum(1 for m in dev2.received if m.NAME == "FIRE") == 1  # de-duplicated by the device link


def test_wait_for_times_out_and_sleep_resumes_on_time() -> None:
    ctl = Controller(seed=5)
    dev = ScriptedDevice(lambda m: None)

    def plan():
        t0 = yield Now()
        t1 = yield Sleep(0.5)
        assert t1 - t0 == pytest.approx(0.5, abs=0.006)
        yield WaitFor(lambda m: m.first_since(0, "MOTION_DONE"), 0.2, "the move")

    runner = drive(ctl, dev, plan())
    with pytest.raises(WaitTimeout, match="waiting for the move"):
        runner.outcome()


def test_wait_for_sees_an_event_that_arrived_before_the_wait() -> None:
    ctl = Controller(seed=6)
    dev = ScriptedDevice(lambda m: ack(m))
    done = MotionDone(device_time_us=1, cause_msg_id=MoveArc.ID, ok=1, arc_mdeg=5000, force_dn=0, thickness_um=0)

    def plan():
        mark = ctl.mirror.mark
        yield Command(MoveArc(target_mdeg=5000, speed_mdeg_s=0))
        yield Sleep(0.3)  # MOTION_DONE arrives meanwhile
        ev = yield WaitFor(lambda m: m.first_since(mark, "MOTION_DONE"), 0.01, "MOTION_DONE")
        return ev.message.arc_mdeg

    runner = drive(ctl, dev, plan(), at={0.1: lambda t: dev.push(done, t)})
    assert runner.outcome() == 5000


def test_suspender_throws_interrupted_once_and_never_resumes_the_step() -> None:
    ctl = Controller(seed=7)
    dev = ScriptedDevice(lambda m: status_reply() if m.NAME == "GET_STATUS" else ack(m))
    steps: list[str] = []

    def plan():
        yield Command(GetStatus())
        yield Guard(True)
        try:
            steps.append("sweep")
            yield WaitFor(lambda m: False, 10.0, "never")
            steps.append("resumed")  # must not happen
        except Interrupted as exc:
            steps.append(f"handler: {exc.reason} / {exc.abort_reason} / {exc.fault}")
            yield Sleep(0.1)
            # a second interlock change does not interrupt the handler
            return "stopped"

    door_open = ALL_INTERLOCKS & ~int(Interlock.DOOR_CLOSED)
    ev = InterlockChanged(device_time_us=1, interlocks=door_open, changed=int(Interlock.DOOR_CLOSED))
    runner = drive(ctl, dev, plan(), at={0.2: lambda t: dev.push(ev, t)})
    assert runner.outcome() == "stopped"
    assert steps == ["sweep", "handler: interlock open: DOOR_CLOSED / INTERLOCK / DOOR_OPEN"]


def test_operator_abort_interrupts_the_running_plan() -> None:
    ctl = Controller(seed=8)
    dev = ScriptedDevice(lambda m: ack(m))

    def plan():
        try:
            yield Sleep(100.0)
        except Interrupted as exc:
            return exc.abort_reason

    runner = drive(ctl, dev, plan(), at={0.05: lambda t: ctl.request_abort("stop", t)})
    assert runner.outcome() == "OPERATOR"


def info_reply() -> DeviceInfo:
    return DeviceInfo(sid_um=650000, pivot_height_um=47000, support_height_um=20000, native_pitch_nm=85000, binning=2,
                      rows=100, cols=120, offset_x_um=1500, offset_y_um=-2000, arc_min_mdeg=-30000, arc_max_mdeg=30000,
                      arc_max_speed_mdeg_s=10000, force_limit_dn=2000, kv_min_ckv=2200, kv_max_ckv=4900,
                      mas_max_nas=500000000, data_channel="file:///tmp/frames")


def hello_reply(version: int) -> HelloReply:
    return HelloReply(protocol_version=version, device_capabilities=0, session_id=9, firmware_version=0x010203,
                      serial_number=77, watchdog_timeout_ms=1000, max_payload=640, state=int(DeviceState.IDLE),
                      resumed_plan_id=12, resumed_exposures_done=4)


def limits_reply(**override: int) -> LimitsInfo:
    values = dict(ma_min_dma=50, ma_max_dma=1200, power_max_w=3500, mas_min_nas=400000, exposure_max_ms=3000,
                  backup_timer_ms=4000, anode_heat_capacity_j=150000, anode_cooling_w=500,
                  arc_acceleration_mdeg_s2=15000, arc_jerk_mdeg_s3=120000, detector_readout_ms=180,
                  detector_min_frame_interval_ms=240, arc_settle_ms=150, compression_thickness_min_um=8000,
                  compression_thickness_max_um=120000, max_projections=31, anode_filter_mask=0b000111,
                  small_focus_um=100, large_focus_um=300)
    values.update(override)
    return LimitsInfo(**values)


def old_firmware(m: Message) -> Message:
    """A device without GET_LIMITS: the link answers NAK UNKNOWN_MESSAGE."""
    return Nak(acked_msg_id=m.ID, error_code=int(ErrorCode.UNKNOWN_MESSAGE), detail=0)


def test_connect_reads_geometry_limits_and_the_interrupted_plan() -> None:
    ctl = Controller(seed=9)
    replies = {"HELLO": hello_reply(HOST_PROTOCOL_VERSION), "GET_INFO": info_reply(), "GET_STATUS": status_reply()}
    dev = ScriptedDevice(lambda m: replies[m.NAME] if m.NAME in replies else old_firmware(m))
    session = drive(ctl, dev, connect_plan(9)).outcome()
    g = session.geometry
    # by hand: 650 mm SID, 47 mm pivot, 0.085 mm x 2 = 0.17 mm pitch
    assert (g.sid_mm, g.pivot_height_mm, g.detector.pitch_mm) == pytest.approx((650.0, 47.0, 0.17))
    assert (g.detector.offset_x_mm, g.detector.offset_y_mm) == pytest.approx((1.5, -2.0))
    assert session.limits.compression_force_max_n == pytest.approx(200.0)
    assert session.firmware_version == "1.2.3"
    assert session.interrupted_plan and session.resumed_exposures_done == 4
    assert geometry_from_info(info_reply()) == g and limits_from_info(info_reply()) == session.limits
    # no GET_LIMITS on this device: generator limits stay at the defaults, and the session says so
    assert session.limits_source == "defaults"
    assert session.limits.tube_current_max_ma == DeviceLimits().tube_current_max_ma


def test_connect_takes_generator_and_detector_limits_from_limits_info() -> None:
    ctl = Controller(seed=19)
    replies = {"HELLO": hello_reply(HOST_PROTOCOL_VERSION), "GET_INFO": info_reply(), "GET_STATUS": status_reply(),
               "GET_LIMITS": limits_reply()}
    session = drive(ctl, ScriptedDevice(lambda m: replies[m.NAME]), connect_plan(19)).outcome()
    lim = session.limits
    assert session.limits_source == "device"
    # by hand from the fixed point: 50 x 0.1 mA, 1200 x 0.1 mA, 400000 nAs, 15000 mdeg/s^2
    assert (lim.tube_current_min_ma, lim.tube_current_max_ma, lim.tube_max_power_w) == pytest.approx((5.0, 120.0, 3500.0))
    assert (lim.mas_min_mas, lim.mas_max_mas, lim.exposure_max_ms, lim.backup_timer_ms) == pytest.approx((0.4, 500.0, 3000.0, 4000.0))
    assert (lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3) == pytest.approx((15.0, 120.0))
    assert (lim.detector_readout_ms, lim.detector_min_frame_interval_ms) == pytest.approx((180.0, 240.0))
    assert lim.anode_filters == ("W/Rh", "W/Ag", "W/Al") and lim.focal_spots_mm == pytest.approx((0.1, 0.3))
    assert (lim.anode_heat_capacity_j, lim.anode_cooling_w) == pytest.approx((150000.0, 500.0))
    assert (lim.arc_settle_ms, lim.compression_thickness_min_mm, lim.compression_thickness_max_mm) == pytest.approx((150.0, 8.0, 120.0))
    assert lim.max_projections == 31


def test_inconsistent_device_limits_are_refused_by_name() -> None:
    ctl = Controller(seed=20)
    replies = {"HELLO": hello_reply(HOST_PROTOCOL_VERSION), "GET_INFO": info_reply(), "GET_STATUS": status_reply(),
               "GET_LIMITS": limits_reply(ma_min_dma=2000, ma_max_dma=1000)}
    runner = drive(ctl, ScriptedDevice(lambda m: replies[m.NAME]), connect_plan(20))
    with pytest.raises(DeviceLimitsInvalid, match=r"mas_min_mas = 700\.0"):
        limits_from_info(info_reply(), limits_reply(mas_min_nas=700_000_000))
    with pytest.raises(DeviceLimitsInvalid, match="tube_current_min_ma = 200.0 must be below tube_current_max_ma = 100.0"):
        runner.outcome()


@pytest.mark.parametrize("how", ["reply", "nak"])
def test_version_mismatch_names_both_versions(how: str) -> None:
    ctl = Controller(seed=10)
    if how == "reply":
        dev = ScriptedDevice(lambda m: hello_reply(HOST_PROTOCOL_VERSION + 1))
    else:
        dev = ScriptedDevice(lambda m: Nak(acked_msg_id=m.ID, error_code=int(ErrorCode.VERSION_MISMATCH), detail=7))
    runner = drive(ctl, dev, connect_plan(1))
    with pytest.raises(VersionMismatch) as info:
        runner.outcome()
    device_version = HOST_PROTOCOL_VERSION + 1 if how == "reply" else 7
    assert f"host speaks {HOST_MIN_VERSION}..{HOST_PROTOCOL_VERSION}" in str(info.value)
    assert f"device answered {device_version}" in str(info.value)


def test_phase_calls_progress_and_logs() -> None:
    calls = []
    audit = MemoryAudit()
    ctl = Controller(audit=audit, seed=11, progress=lambda *a: calls.append(a))
    dev = ScriptedDevice(lambda m: None)

    def plan():
        yield Phase("sweep", 3, 15)

    drive(ctl, dev, plan()).outcome()
    assert calls == [("sweep", 3, 15)]
    assert audit.kinds("phase")[0]["phase"] == "sweep"


def test_focal_spot_code_picks_the_device_spot_nearest_the_request() -> None:
    from firmware_host.exam_plan import focal_spot_code
    from protocols.wire.catalogue import FocalSpot

    small, large = int(FocalSpot.SMALL), int(FocalSpot.LARGE)
    assert focal_spot_code(0.1, (0.1, 0.3)) == small and focal_spot_code(0.3, (0.1, 0.3)) == large
    # a 0.3/0.5 mm tube: 0.3 mm is its SMALL spot (a fixed 0.2 mm threshold would send LARGE = 0.5 mm)
    assert focal_spot_code(0.3, (0.5, 0.3)) == small and focal_spot_code(0.5, (0.3, 0.5)) == large
    assert focal_spot_code(0.1, (0.3,)) == large  # one spot: only LARGE exists


def test_a_simulated_device_gets_the_simulated_image_timeout() -> None:
    from dataclasses import replace

    from firmware_host.api import exam_options_for
    from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S, ExamOptions
    from protocols.wire.catalogue import Capability

    ctl = Controller(seed=21)
    replies = {"HELLO": hello_reply(HOST_PROTOCOL_VERSION), "GET_INFO": info_reply(), "GET_STATUS": status_reply()}
    rig = drive(ctl, ScriptedDevice(lambda m: replies[m.NAME] if m.NAME in replies else old_firmware(m)),
                connect_plan(21)).outcome()
    sim = replace(rig, device_capabilities=rig.device_capabilities | int(Capability.SIMULATION_CONTROLS))
    base = ExamOptions()
    assert exam_options_for(rig, base).image_timeout_s == base.image_timeout_s == 3.0
    assert exam_options_for(sim, base).image_timeout_s == SIMULATED_IMAGE_TIMEOUT_S
    assert exam_options_for(sim, base, 12.5).image_timeout_s == exam_options_for(rig, base, 12.5).image_timeout_s == 12.5
    assert exam_options_for(sim, base).watchdog_timeout_ms == base.watchdog_timeout_ms  # nothing else changes
