"""The simulated gantry answers as SPEC.md (protocol v2) says: one code per situation, details as defined.

Each expectation is taken from the spec's text or its test vectors (protocols/wire/test_vectors.yaml),
not from the firmware: FIRE in IDLE is the vector ``nak_not_armed``; a plan turning back is
``nak_plan_not_monotonic``; a plan needing 1000 mA is ``nak_beyond_limits_current``.
"""

from __future__ import annotations

from pathlib import Path

import simpy
import yaml

from protocols.wire import messages as M
from protocols.wire import specgen
from protocols.wire.catalogue import DeviceState, ErrorCode, SimInput
from simulator.gantry import GantryConfig, load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, hello, make_plan, open_session
from simulator.gantry.config import small_detector

VECTORS = {v["name"]: v for v in yaml.safe_load(specgen.VECTORS_PATH.read_text())["vectors"]}


def cfg_small() -> GantryConfig:
    base = {"geometry": {"detector": small_detector(16, 20, 8).model_dump()}, "phantom": {"name": "uniform"}}
    return load_config().with_overrides(**base)


def _fields(msg: M.Message) -> dict:
    return msg.to_dict()


def test_answers_match_the_spec_vectors_and_detail_table(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=5, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out: dict = {}

    def script():
        out["abort_boot"] = yield client.request(M.Abort(reason=0))
        out["state_boot"] = gantry.state
        yield from open_session(client, home=False)
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["home"] = yield client.request(M.Home())
        yield done
        out["fire_idle"] = yield client.request(M.Fire(plan_id=7, digest=0x5EB0C1A2))
        out["turn_back"] = yield client.request(make_plan(4, [0.0, 10.0, 5.0], continuous=True, speed_deg_s=4.0))
        out["stereo_step"] = yield client.request(make_plan(4, [0.0, 15.0, -15.0], continuous=False))
        out["abort_stereo"] = yield client.request(M.Abort(reason=0))
        out["repeat_cont"] = yield client.request(make_plan(4, [0.0, 5.0, 5.0], continuous=True, speed_deg_s=4.0))
        out["repeat_step"] = yield client.request(make_plan(6, [0.0, 0.0, 1.0], continuous=False))
        out["abort_armed"] = yield client.request(M.Abort(reason=0))
        out["current"] = yield client.request(make_plan(5, [0.0], kv=28.0, mas=60.0, pulse_ms=60.0, continuous=False))
        out["ma"] = yield client.request(M.SetTechnique(anode_filter=0, kv_ckv=2800, ma_dma=5000, focal_spot=0))
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["compress"] = yield client.request(M.Compress(target_force_dn=800, min_thickness_um=0, speed_um_s=0))
        yield done
        out["release"] = yield client.request(M.Release())
        yield client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["info"] = yield client.request(M.GetInfo())

    env.run(until=env.process(script()))
    E = ErrorCode
    # ABORT is accepted in every state, BOOT included, and does nothing there
    assert out["abort_boot"].NAME == "ACK" and out["abort_boot"].detail == 0
    assert out["state_boot"] == int(DeviceState.BOOT)
    assert out["home"].NAME == "ACK" and out["home"].detail > 0  # estimated duration, ms
    # FIRE in IDLE: exactly the vector nak_not_armed
    assert _fields(out["fire_idle"]) == VECTORS["nak_not_armed"]["fields"]
    # a continuous sweep turning back or repeating an angle: PLAN_INVALID, 1000 x NOT_MONOTONIC + entry
    assert _fields(out["turn_back"]) == VECTORS["nak_plan_not_monotonic"]["fields"]
    # step-and-shoot stops at each entry: the stereotactic pair 0, +15, -15 deg is one plan
    assert out["stereo_step"].NAME == "ACK" and out["abort_stereo"].NAME == "ACK"
    assert (out["repeat_cont"].error_code, out["repeat_cont"].detail) == (int(E.PLAN_INVALID), 2002)
    assert out["repeat_step"].NAME == "ACK" and out["abort_armed"].NAME == "ACK"  # step-and-shoot may repeat an angle
    # 60 mAs in 60 ms = 1000 mA: the implied tube current (record field 4), not pulse_us (3)
    assert _fields(out["current"]) == VECTORS["nak_beyond_limits_current"]["fields"]
    # 500 mA is valid on the wire (ma_dma max 5000) but beyond this device's current: BEYOND_LIMITS, field 2
    assert gantry.limits.tube_current_max_ma < 500.0
    assert (out["ma"].error_code, out["ma"].detail) == (int(E.BEYOND_LIMITS), 2)
    assert out["compress"].NAME == "ACK" and out["compress"].detail == -1  # no estimate: ends on force
    assert out["release"].NAME == "ACK" and out["release"].detail > 0  # estimated time to park, ms
    # DEVICE_INFO carries nAs: 500 mAs is 500 000 000
    assert out["info"].mas_max_nas == round(gantry.limits.mas_max_mas * 1e6)


def test_hello_never_leaves_safe_hold_and_never_inherits_a_plan(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=6, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(client)
        plan = make_plan(8, [-2.0, 2.0], continuous=False)
        assert (yield client.request(plan)).NAME == "ACK"
        out["hello_armed"] = yield client.request(hello(session_id=0xA1))
        out["state_after_armed"] = gantry.state
        out["fire_after_hello"] = yield client.request(M.Fire(plan_id=8, digest=plan.digest))
        # e-stop: SAFE_HOLD; a HELLO keeps it, with the e-stop pressed and after its release
        yield client.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=0))
        out["hello_hold_pressed"] = yield client.request(hello(session_id=0xA2))
        yield client.request(M.SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=1))
        out["hello_hold_released"] = yield client.request(hello(session_id=0xA3))
        out["reset"] = yield client.request(M.ResetFault(fault_code=0))
        out["status"] = yield client.request(M.GetStatus())

    env.run(until=env.process(script()))
    assert out["hello_armed"].state == int(DeviceState.IDLE) and out["hello_armed"].resumed_plan_id == 8
    assert out["state_after_armed"] == int(DeviceState.IDLE)
    assert (out["fire_after_hello"].error_code, out["fire_after_hello"].detail) == (int(ErrorCode.NOT_ARMED), 0)
    assert out["hello_hold_pressed"].state == int(DeviceState.SAFE_HOLD)
    assert out["hello_hold_released"].state == int(DeviceState.SAFE_HOLD)
    assert out["reset"].NAME == "ACK" and out["status"].state == int(DeviceState.IDLE)
