"""Latched causes and bursts on the wire: issue 13 defects 1 and 2 on the simulated gantry (virtual time)."""

from __future__ import annotations

from pathlib import Path

import simpy

from protocols.wire import messages as M
from protocols.wire.catalogue import DeviceState, ErrorCode, FaultCode, SimInput
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RETRANSMIT, FLAG_SYN, encode_frame
from simulator.gantry import GantryConfig, load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, hello, open_session
from simulator.gantry.config import small_detector

S = DeviceState


def cfg_small() -> GantryConfig:
    return load_config().with_overrides(geometry={"detector": small_detector(16, 20, 8).model_dump()},
                                        phantom={"name": "uniform"})


def test_estop_pressed_in_safe_hold_after_a_watchdog_trip_stays_latched(tmp_path: Path) -> None:
    """Defect 1: RESET_FAULT / HELLO reached IDLE with the e-stop pressed, and HOME was accepted."""
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=11, data_dir=tmp_path, event_log=None)
    first = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(first, watchdog_timeout_ms=300)
        first.go_silent()
        yield env.timeout(1.0)
        out["after_watchdog"] = gantry.state
        gantry.set_input(int(SimInput.ESTOP_RELEASED), False)  # the operator presses the e-stop now
        yield env.timeout(0.1)
        host = LinkClient(env, ep, initial_seq=0x4000)
        out["reset"] = yield host.request(M.ResetFault(fault_code=0))
        out["hello"] = yield host.request(hello(session_id=0xBEEF))
        out["reset2"] = yield host.request(M.ResetFault(fault_code=0))
        out["home"] = yield host.request(M.Home())
        yield env.timeout(0.5)
        out["moving"] = gantry.axis.moving(env.now)
        out["state_pressed"] = gantry.state
        yield host.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=1))
        out["reset_released"] = yield host.request(M.ResetFault(fault_code=0))
        out["state_released"] = gantry.state

    env.run(until=env.process(script()))
    assert out["after_watchdog"] == int(S.SAFE_HOLD)
    assert out["reset"].NAME == "NAK" and out["reset"].error_code == int(ErrorCode.FAULT_ACTIVE)
    assert out["reset"].detail == int(FaultCode.ESTOP)
    assert out["hello"].NAME == "HELLO_REPLY" and out["hello"].state == int(S.SAFE_HOLD)
    assert out["reset2"].NAME == "NAK"
    assert out["home"].NAME == "NAK" and out["home"].error_code == int(ErrorCode.BAD_STATE)
    assert out["state_pressed"] == int(S.SAFE_HOLD) and not out["moving"]
    assert out["reset_released"].NAME == "ACK" and out["state_released"] == int(S.IDLE)


def test_estop_pressed_in_boot_holds_the_first_session(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=12, data_dir=tmp_path, event_log=None)
    gantry.set_input(int(SimInput.ESTOP_RELEASED), False)
    host = LinkClient(env, ep)
    out: dict = {}

    def script():
        out["hello"] = yield host.request(hello())
        out["home"] = yield host.request(M.Home())

    env.run(until=env.process(script()))
    assert out["hello"].state == int(S.SAFE_HOLD)
    assert out["home"].NAME == "NAK" and not gantry.axis.moving(env.now)


def test_a_fault_latched_in_safe_hold_survives_the_estop_release(tmp_path: Path) -> None:
    """A tube arc while the e-stop holds the device is not forgotten when the e-stop is released."""
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=13, data_dir=tmp_path, event_log=None)
    host = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(host)
        yield host.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=0))
        gantry._latch(int(FaultCode.MOTOR_STALL), 0, "stall while held")
        yield host.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=1))
        out["wrong_code"] = yield host.request(M.ResetFault(fault_code=int(FaultCode.TUBE_ARC)))
        out["only_estop"] = yield host.request(M.ResetFault(fault_code=int(FaultCode.ESTOP)))
        out["state"] = gantry.state
        out["all"] = yield host.request(M.ResetFault(fault_code=0))

    env.run(until=env.process(script()))
    assert out["wrong_code"].NAME == "NAK"
    assert out["only_estop"].NAME == "NAK" and out["only_estop"].detail == int(FaultCode.MOTOR_STALL)
    assert out["state"] == int(S.SAFE_HOLD)
    assert out["all"].NAME == "ACK" and gantry.state == int(S.IDLE) and not gantry.latched


def test_a_burst_of_copies_heartbeats_and_a_new_session_does_not_kill_the_device(tmp_path: Path) -> None:
    """Defect 2: the gantry died with ``LinkError: no request with seq N awaits an answer``.

    After a stall the device reads, at once: a request, its retransmitted copies, heartbeats and the
    HELLO (SYN) of a host that gave up and began a new session.
    """
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=14, data_dir=tmp_path, event_log=None)
    host = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(host, home=False)
        move = M.MoveArc(target_mdeg=0, speed_mdeg_s=0).pack()
        burst = encode_frame(M.MoveArc.ID, 0x3000, FLAG_ACK_REQ, move)
        burst += encode_frame(M.MoveArc.ID, 0x3000, FLAG_ACK_REQ | FLAG_RETRANSMIT, move) * 3
        burst += encode_frame(M.Heartbeat.ID, 0x3001, 0, M.Heartbeat(uptime_ms=1, state=1).pack()) * 2
        burst += encode_frame(M.Hello.ID, 0x5000, FLAG_ACK_REQ | FLAG_SYN, hello(session_id=0x77).pack())
        ep.write(burst)
        yield env.timeout(0.5)
        out["status"] = yield host.request(M.GetStatus())  # the device still answers

    env.run(until=env.process(script()))
    answers = [r for r in gantry.log.records() if r["kind"] == "answer"]
    assert [a["seq"] for a in answers[-3:-1]] == [0x3000, 0x5000]
    assert gantry.link.stats.answers_discarded == 1  # the MOVE_ARC's answer was owed to the old session
    assert out["status"] is not None and out["status"].NAME == "STATUS"


def test_a_plan_fired_while_a_stopped_sweep_winds_down_keeps_its_state(tmp_path: Path) -> None:
    """Found by the random safety machine: X-rays on in IDLE.

    A HELLO cut plan A's window (the plan stops as by ABORT, its readout still running). Plan B was
    armed and fired before that readout ended; when it ended, plan A's wind-down took plan B's
    EXPOSING for its own and moved the device to IDLE while plan B went on exposing. Each
    instant checks: the tube on only in EXPOSING; plan B completes with its three exposures.
    """
    from simulator.gantry.client import make_plan

    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=12, data_dir=tmp_path, event_log=None)
    host = LinkClient(env, ep)
    out: dict = {"xray_outside_exposing": []}

    def watch():
        while True:
            if gantry.generator.on and gantry.state != int(S.EXPOSING):
                out["xray_outside_exposing"].append((round(env.now, 4), S(gantry.state).name))
            yield env.timeout(0.001)

    def script():
        yield from open_session(host, watchdog_timeout_ms=500)
        plan_a = make_plan(1, [-2.0, 0.0, 2.0], mas=1.0, pulse_ms=40.0, continuous=False)
        plan_b = make_plan(2, [-2.0, 0.0, 2.0], mas=1.0, pulse_ms=40.0, continuous=False)
        assert (yield host.request(plan_a)).NAME == "ACK"
        assert (yield host.request(M.Fire(plan_id=1, digest=plan_a.digest))).NAME == "ACK"
        while not gantry.generator.on:  # plan A's first window opens
            yield env.timeout(0.001)
        out["hello"] = yield host.request(hello(session_id=0x51, watchdog_timeout_ms=500))
        out["arm_b"] = yield host.request(plan_b)
        out["fire_b"] = yield host.request(M.Fire(plan_id=2, digest=plan_b.digest))
        yield env.timeout(6.0)

    env.process(watch())
    env.run(until=env.process(script()))
    assert out["hello"].resumed_plan_id == 1
    assert out["arm_b"].NAME == "ACK" and out["fire_b"].NAME == "ACK"
    assert out["xray_outside_exposing"] == []
    done_b = [m for m in host.of("EXPOSURE_DONE") if m.plan_id == 2]
    assert [m.index for m in done_b] == [0, 1, 2]
    changes = [(m.old_state, m.new_state) for m in host.of("STATE_CHANGED")]
    assert changes[-1] == (int(S.EXPOSING), int(S.IDLE)) and gantry.state == int(S.IDLE)
    assert changes.count((int(S.EXPOSING), int(S.IDLE))) == 2  # plan A by HELLO, plan B complete: nothing between
