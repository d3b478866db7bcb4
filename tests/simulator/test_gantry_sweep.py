"""A full DBT session against the virtual gantry: speed, angles, images from the physics, refusals."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import simpy

from protocols.exams.motion import runup_deg
from protocols.records import ExposureRecord
from protocols.wire import messages as M
from protocols.wire.catalogue import DeviceState, ErrorCode, ExposureStatus, Interlock
from protocols.wire.crc import crc32c
from simulator.gantry import GantryConfig, load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, make_plan, open_session
from simulator.gantry.config import small_detector
from simulator.gantry.detector import read_frame
from simulator.gantry.firmware import exposure_record
from simulator.imaging.imager import ExposureImager, make_phantom

ANGLES = [-25.0 + 50.0 * i / 24 for i in range(25)]


def small_config(phantom: str = "uniform", rows: int = 24, cols: int = 30) -> GantryConfig:
    return load_config().with_overrides(geometry={"detector": small_detector(rows, cols, 8).model_dump()},
                                        phantom={"name": phantom})


def run_sweep(cfg: GantryConfig, tmp: Path, seed: int = 1, plan: M.Message | None = None, during=None):
    """HELLO, HOME, COMPRESS 100 N, ARM, FIRE, wait for IDLE. Returns (env, gantry, client, wall_s)."""
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg, seed=seed, data_dir=tmp, event_log=None)
    client = LinkClient(env, ep)
    plan = plan or make_plan(7, ANGLES)

    def script():
        yield from open_session(client)
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield client.request(M.Compress(target_force_dn=1000, min_thickness_um=0, speed_um_s=0))
        yield done
        r = yield client.request(plan)
        assert r.NAME == "ACK", r
        idle = client.wait_event(lambda m: m.NAME == "STATE_CHANGED" and m.new_state == int(DeviceState.IDLE))
        r = yield client.request(M.Fire(plan_id=plan.plan_id, digest=plan.digest))
        assert r.NAME == "ACK", r
        if during is not None:
            yield from during(env, gantry, client)
        yield idle
        yield env.timeout(0.5)

    proc = env.process(script())
    t0 = time.perf_counter()
    env.run(until=proc)
    return env, gantry, client, time.perf_counter() - t0


def test_a_whole_25_exposure_session_runs_in_virtual_time(tmp_path: Path) -> None:
    """HELLO, HOME, COMPRESS, ARM, a 25-exposure sweep and release, all in virtual time.

    How much faster than real time this runs is measured by ``benchmarks/bench_virtual_time.py``
    (a wall-clock ratio has no place in a unit test on a shared machine).
    """
    env, gantry, client, _ = run_sweep(small_config(), tmp_path)
    assert len(client.of("EXPOSURE_DONE")) == 25 and len(client.of("IMAGE_READY")) == 25
    assert env.now > 5.0  # the sweep took its virtual seconds


def test_window_is_centred_on_planned_angle_and_travel_matches_speed(tmp_path: Path) -> None:
    cfg = small_config()
    env, gantry, client, _ = run_sweep(cfg, tmp_path)
    done = client.of("EXPOSURE_DONE")
    assert [d.index for d in done] == list(range(25))
    assert all(d.status == int(ExposureStatus.OK) for d in done)
    for d in done:
        window_s = (d.window_end_us - d.window_start_us) / 1e6
        assert abs(window_s - 0.060) < 2e-6  # the mAs timer ends a 60 ms pulse
        travel = (d.end_mdeg - d.start_mdeg) / 1000.0
        assert abs(travel - 8.0 * window_s) < 0.003  # constant speed 8 deg/s inside the window (+-encoder LSB)
        mid = 0.5 * (d.start_mdeg + d.end_mdeg) / 1000.0
        # the trigger reads the encoder (load side), so the window is centred on the plan to an LSB
        assert abs(mid - d.planned_mdeg / 1000.0) <= 0.0015
        assert abs(d.kv_ckv - 2900) < 60 and abs(d.mas_nas - 2_000_000) < 60_000
    # window starts are spaced by the planned (mdeg) angle spacing / speed
    starts = np.array([d.window_start_us for d in done]) / 1e6
    planned = np.array([d.planned_mdeg for d in done]) / 1000.0
    assert np.allclose(np.diff(starts), np.diff(planned) / 8.0, atol=2e-6)
    # the arm ran from first - (runup + half pulse) to last + (runup + half pulse) and stopped there
    extra = runup_deg(8.0, cfg.limits.arc_acceleration_deg_s2, cfg.limits.arc_jerk_deg_s3) + 0.5 * 8.0 * 0.06
    assert abs(gantry.axis.position(env.now) - (25.0 + extra)) < 1e-6
    st = client.of("STATE_CHANGED")
    assert [(s.old_state, s.new_state) for s in st][-4:] == [(1, 3), (3, 4), (4, 1), (1, 2)]  # ..., auto release


def test_images_come_from_the_physics_with_the_actual_exposure(tmp_path: Path) -> None:
    """Every frame equals what ExposureImager renders from the EXPOSURE_DONE record and the reached thickness."""
    cfg = small_config("pmma", rows=16, cols=20)
    plan = make_plan(3, [-25.0, 0.0, 25.0], mas=3.0, speed_deg_s=8.0)
    env, gantry, client, _ = run_sweep(cfg, tmp_path, seed=11, plan=plan)
    compress_done = [m for m in client.of("MOTION_DONE") if m.cause_msg_id == M.Compress.ID][0]
    thickness = round(compress_done.thickness_um / 1000.0, 2)
    assert 40.0 < thickness < 60.0  # a 70 mm breast squeezed to 100 N
    g = cfg.geometry
    imager = ExposureImager(make_phantom("pmma", thickness, g, seed=cfg.phantom.seed, voxel_mm=cfg.phantom.voxel_mm),
                            g, seed=11, scatter=cfg.detector.scatter)  # the gantry's panel: scatter on by default
    # the panel's ghost (issue 18): each frame's sensitivity is what the earlier frames left, at its window's end
    from simulator.gantry.detector import Ghost

    ghost = Ghost(cfg.detector.ghost_loss_per_kadu, cfg.detector.ghost_decay_s, 100.0)
    ready = {m.frame_id: m for m in client.of("IMAGE_READY")}
    assert len(ready) == 3
    data_dir = Path(client.of("IMAGE_READY") and gantry.detector.data_dir)
    for d in client.of("EXPOSURE_DONE"):
        r = ready[d.frame_id]
        raw = (data_dir / r.locator).read_bytes()
        assert r.locator == f"frame_{d.frame_id}.raw" and r.bits == 16 and r.size_bytes == len(raw) == 16 * 20 * 2
        assert crc32c(raw) == r.checksum
        record = exposure_record(d, "W/Rh", 0.3)
        assert isinstance(record, ExposureRecord) and record.angle_start_deg != record.angle_end_deg
        expected = imager.image(record, ghost.gain((r.rows, r.cols), record.window_end_s))
        ghost.remember(expected, record.window_end_s)
        assert np.array_equal(read_frame(data_dir, r.locator, r.rows, r.cols), expected)
    # a record at a different angle gives a different image (the geometry really is used)
    other = exposure_record(client.of("EXPOSURE_DONE")[0], "W/Rh", 0.3).model_copy(update={"angle_start_deg": 10.0,
                                                                                            "angle_end_deg": 10.5})
    assert not np.array_equal(imager.image(other), expected)
    info_channel = "file://" + str(Path(gantry.detector.data_dir).resolve())
    assert gantry.detector.data_channel == info_channel


def test_fire_without_arm_is_refused_with_not_armed(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, small_config(), seed=1, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out = {}

    def script():
        out["boot"] = yield client.request(M.Fire(plan_id=1, digest=0))
        yield from open_session(client)
        out["idle"] = yield client.request(M.Fire(plan_id=1, digest=0))
        plan = make_plan(5, [0.0], continuous=False)
        yield client.request(plan)
        out["wrong_id"] = yield client.request(M.Fire(plan_id=6, digest=plan.digest))
        out["wrong_digest"] = yield client.request(M.Fire(plan_id=5, digest=plan.digest ^ 1))

    env.run(until=env.process(script()))
    assert out["boot"].error_code == int(ErrorCode.NO_SESSION)
    assert out["idle"].NAME == "NAK" and out["idle"].error_code == int(ErrorCode.NOT_ARMED)
    assert out["wrong_id"].error_code == int(ErrorCode.NOT_ARMED)
    assert out["wrong_digest"].error_code == int(ErrorCode.DIGEST_MISMATCH)
    assert client.of("EXPOSURE_DONE") == [] and gantry.exposure_count == 0


def test_opening_the_door_mid_sweep_ends_the_exposure_and_is_reported(tmp_path: Path) -> None:
    cfg = small_config()

    def open_door_mid_window(env, gantry, client):
        # wait for the 6th window to open, then 20 ms into it open the door
        while not (gantry.generator.on and gantry.exposure_count == 6):
            yield env.timeout(0.001)
        yield env.timeout(0.020)
        r = yield client.request(M.SimSetInput(input=0, value=0))
        assert r.NAME == "ACK"

    env, gantry, client, _ = run_sweep(cfg, tmp_path, during=open_door_mid_window)
    done = client.of("EXPOSURE_DONE")
    assert len(done) == 6
    cut = done[-1]
    assert cut.status == int(ExposureStatus.INTERLOCK)
    assert (cut.window_end_us - cut.window_start_us) < 60_000  # shorter than the planned 60 ms
    assert cut.mas_nas < 2_000_000 * 0.6
    assert all(d.status == int(ExposureStatus.OK) for d in done[:-1])
    ilk = client.of("INTERLOCK_CHANGED")
    assert ilk and ilk[0].changed & int(Interlock.DOOR_CLOSED) and not ilk[0].interlocks & int(Interlock.DOOR_CLOSED)
    assert any(s.old_state == int(DeviceState.EXPOSING) and s.new_state == int(DeviceState.IDLE)
               for s in client.of("STATE_CHANGED"))
    # X-rays stopped with the door: the cut window ends when the SIM_SET_INPUT arrived, not later
    assert not gantry.generator.on and len(client.of("IMAGE_READY")) == 6


def test_duplicated_fire_exposes_once(tmp_path: Path) -> None:
    """The FIRE frame's bytes written twice (a retransmission) start one sweep."""
    from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RETRANSMIT, encode_frame

    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, small_config(), seed=1, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    plan = make_plan(9, [-5.0, 0.0, 5.0], continuous=False)

    def script():
        yield from open_session(client)
        yield client.request(plan)
        idle = client.wait_event(lambda m: m.NAME == "STATE_CHANGED" and m.new_state == int(DeviceState.IDLE))
        fire = M.Fire(plan_id=9, digest=plan.digest)
        seq = 0x7000
        frame = encode_frame(fire.ID, seq, FLAG_ACK_REQ, fire.pack())
        again = encode_frame(fire.ID, seq, FLAG_ACK_REQ | FLAG_RETRANSMIT, fire.pack())
        ep.write(frame)
        yield env.timeout(0.05)
        ep.write(again)  # mid-sweep retransmission
        ep.write(frame)
        yield idle
        yield env.timeout(1.0)

    env.run(until=env.process(script()))
    assert len(client.of("EXPOSURE_DONE")) == 3  # one plan of 3, not 6 or 9
    assert gantry.exposure_count == 3
    dups = [r for r in gantry.log.records() if r["kind"] == "duplicate"]
    assert len(dups) == 2 and all(r["answered_from_cache"] for r in dups)
    fires = [r for r in gantry.log.records() if r["kind"] == "command" and r["msg"] == "FIRE"]
    assert len(fires) == 1
