"""DBT, 2D and stereo exams against the simulated gantry in virtual time: complete, angles within tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simpy

from firmware_host import EXAM_PHASES, ExamRecord, connect_virtual, read_audit_log, verify_exam_folder
from firmware_host.errors import ExamError
from host_sim import check_invariants, fast_config, run_virtual
from protocols.exams import expand_exam, load_standard_exam
from simulator.gantry import start_virtual_gantry


@pytest.mark.parametrize("exam", ["dbt-standard", "dbt-step", "ffdm-cc", "stereo-biopsy"])
def test_exam_completes_with_angles_in_tolerance_and_verified_images(exam: str, tmp_path) -> None:
    phases: list[str] = []
    result, model, env = run_virtual(exam, tmp_path, on_phase=lambda m, ph, i, n: phases.append(ph))
    rec = result.record
    assert rec.status == "complete", rec.reason
    definition = load_standard_exam(exam)
    n = len(expand_exam(definition, rec.technique if rec.aec else None))
    assert rec.planned_count == n and len(rec.image_paths) == n and not rec.missing_images
    # planned vs actual (window-mean) angles from the device's EXPOSURE_DONE, within the configured tolerance
    assert len(rec.checks) == n
    for c in rec.checks:
        assert c.status == "OK" and c.image_stored
        assert abs(c.actual_angle_deg - c.planned_angle_deg) <= rec.angle_tolerance_deg
    planned = [p.planned_angle_deg for p in expand_exam(definition, rec.technique if rec.aec else None)]
    assert [p.exposure.planned_angle_deg for p in rec.header.projections] == pytest.approx(planned, abs=1e-3)
    assert all(ok for _, ok, _ in verify_exam_folder(result.out_dir))
    # the record on disk round-trips and says the same
    again = ExamRecord.model_validate(json.loads(result.record_path.read_text()))
    assert again == rec
    # phases in order; AEC exams have a scout recorded as is_scout
    assert [p for p in dict.fromkeys(phases) if p != "image"] == [p for p in EXAM_PHASES if p in phases]
    order = [p for p in dict.fromkeys(phases) if p in ("prepare", "compress", "scout", "arm", "sweep", "readout",
                                                       "release", "done")]
    expected = ["prepare", "compress"] + (["scout"] if rec.aec else []) + ["arm", "sweep", "readout"]
    expected += ["release"] if definition.compression.release == "after_exam" else []
    assert order == expected + ["done"]
    if rec.aec:
        assert rec.scout is not None and rec.scout.exposure.is_scout
        assert rec.exposures[0].is_scout and not any(e.is_scout for e in rec.exposures[1:])
    else:
        assert rec.scout is None
    sweep = [r for r in model.log.records() if r["kind"] == "sweep_start"][-1]
    assert rec.compressed_thickness_mm == pytest.approx(sweep["thickness_mm"], abs=0.5)  # the device's own value
    check_invariants(result, model)


def test_the_stored_projection_is_the_devices_frame_bit_for_bit(tmp_path) -> None:
    result, model, _ = run_virtual("ffdm-cc", tmp_path)
    proj = result.record.header.projections[0]
    stored = np.load(result.out_dir / proj.path)
    raw = (tmp_path / "device" / f"frame_{proj.exposure.frame_id}.raw").read_bytes()
    assert stored.tobytes() == raw


def test_audit_log_has_every_exposure_with_planned_and_actual_values(tmp_path) -> None:
    result, model, _ = run_virtual("dbt-step", tmp_path)
    log = read_audit_log(result.audit_path).entries
    exposures = [e for e in log if e["kind"] == "exposure" and not e["is_scout"]]
    assert len(exposures) == 9
    device = [r for r in model.log.records() if r["kind"] == "exposure"]
    for host, dev in zip(exposures, device):
        assert host["actual_start_deg"] == pytest.approx(dev["start_deg"], abs=1e-3)
        assert host["actual_kvp"] == pytest.approx(dev["kv"], abs=0.01)
        assert host["actual_mas"] == pytest.approx(dev["mas"], abs=1e-5)
        for key in ("planned_angle_deg", "planned_kvp", "planned_mas", "planned_window_ms", "actual_window_ms",
                    "window_start_us", "window_end_us", "t"):
            assert key in host
    kinds = {e["kind"] for e in log}
    assert {"command", "response", "event", "telemetry", "phase", "armed", "image", "exam_end"} <= kinds


def test_same_seed_gives_the_same_record(tmp_path) -> None:
    a, _, _ = run_virtual("stereo-biopsy", tmp_path / "a", seed=5)
    b, _, _ = run_virtual("stereo-biopsy", tmp_path / "b", seed=5)
    strip = lambda r: r.model_dump(exclude={"device": {"data_channel"}})  # noqa: E731 - tmp dirs differ
    assert strip(a.record) == strip(b.record)
    assert a.record.exposures[0].window_start_s == b.record.exposures[0].window_start_s


def test_a_tap_sees_every_byte_both_ways(tmp_path) -> None:
    import simpy

    from firmware_host import connect_virtual
    from host_sim import fast_config
    from protocols.wire.framing import FrameDecoder
    from simulator.gantry import start_virtual_gantry

    class Tap:
        def __init__(self) -> None:
            self.chunks: list[tuple[int, bytes, float]] = []

        def record(self, direction: int, data: bytes, now: float) -> None:
            self.chunks.append((direction, data, now))

    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / "d", event_log=None)
    tap = Tap()
    with connect_virtual(env, endpoint, seed=1, tap=tap) as gantry:
        gantry.status()
    names = {0: [], 1: []}
    from protocols.wire.messages import BY_ID
    for direction in (0, 1):
        dec = FrameDecoder()
        for d, data, _ in tap.chunks:
            if d == direction:
                names[direction] += [BY_ID[f.msg_id].NAME for f in dec.feed(data) if hasattr(f, "msg_id")]
    commands = [n for n in names[0] if n not in ("HEARTBEAT", "ACK")]
    assert commands[:5] == ["HELLO", "GET_INFO", "GET_LIMITS", "GET_STATUS", "GET_STATUS"]  # connect, then status()
    assert {"HELLO_REPLY", "DEVICE_INFO", "STATUS"} <= set(names[1])


def test_operator_abort_mid_sweep_stops_safely_and_keeps_every_image(tmp_path) -> None:
    import simpy

    from firmware_host import connect_virtual
    from host_sim import check_invariants, fast_config
    from simulator.gantry import start_virtual_gantry

    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, fast_config(), seed=2, data_dir=tmp_path / "device", event_log=None)
    with connect_virtual(env, endpoint, seed=2) as gantry:
        def progress(phase: str, i: int, n: int) -> None:
            if phase == "sweep" and i == 3:
                gantry.abort("operator pressed stop")  # from inside the exam's own callback

        result = gantry.run_exam("dbt-step", tmp_path / "exam", progress=progress)
        env.run(until=env.now + 3.0)
    rec = result.record
    assert rec.status == "aborted" and rec.reason == "operator pressed stop" and rec.phase == "sweep"
    made = [r for r in model.log.records() if r["kind"] == "exposure"]
    assert 3 <= len(made) < 9  # stopped, not finished
    assert [r for r in model.log.records() if r["kind"] == "abort"][0]["reason"] == 0  # AbortReason.OPERATOR
    assert rec.released and len(rec.image_paths) == len(made) - len(rec.missing_images)
    check_invariants(result, model)


def test_an_operator_stop_frees_the_breast_first_and_the_next_exam_waits_for_the_park(tmp_path) -> None:
    """Ctrl-C / SIGTERM's path (an operator abort): RELEASE right after ABORT, the images of exposures already
    made taken in while the paddle rises, the record written once the breast is free (the device parks the
    paddle on its own); an exam started at once on the same connection waits for that park."""
    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, fast_config(), seed=2, data_dir=tmp_path / "device", event_log=None)
    with connect_virtual(env, endpoint, seed=2) as gantry:
        def progress(phase: str, i: int, n: int) -> None:
            if phase == "sweep" and i == 3:
                gantry.abort("operator abort (SIGTERM)")

        stopped = gantry.run_exam("dbt-standard", tmp_path / "stopped", progress=progress)
        again = gantry.run_exam("dbt-standard", tmp_path / "again")  # at once: the paddle may still be rising
        env.run(until=env.now + 3.0)
    rec = stopped.record
    assert rec.status == "aborted" and rec.released
    audit = read_audit_log(stopped.audit_path).entries
    after_abort = audit[next(i for i, e in enumerate(audit) if e["kind"] == "command" and e["name"] == "ABORT"):]
    steps = [(e["kind"], e.get("name") or e.get("to")) for e in after_abort if e["kind"] in ("command", "response", "image")]
    # ABORT answered, then RELEASE sent before the ledger is read or any image is taken in
    assert steps[:3] == [("command", "ABORT"), ("response", "ACK"), ("command", "RELEASE")], steps[:6]
    assert steps.index(("command", "RELEASE")) < steps.index(("command", "GET_EXPOSURE_LOG"))
    # the device's own reading when the record was written: no force on the breast
    end = next(e for e in audit if e["kind"] == "exam_end")
    force = [e["fields"]["force_dn"] for e in audit if e["kind"] == "telemetry" and e["t"] <= end["t"]]
    assert force[-1] < 10  # deci-newton: below 1 N
    # nothing lost: every sweep exposure the device made is in the record with its image
    made = {r["index"] for r in model.log.records() if r["kind"] == "exposure" and r["plan_id"] == rec.plan_id}
    assert 3 <= len(made) < 15
    assert {e.index for e in rec.exposures if not e.is_scout} == made and not rec.missing_images
    assert len(rec.image_paths) == len(made)
    assert all(ok for _, ok, _ in verify_exam_folder(stopped.out_dir))
    # the device parked the paddle on its own (the RELEASE's MOTION_DONE, at the park height), and the next exam
    # waited for that before it compressed again
    dev = model.log.records()
    t_abort = next(r["t_us"] for r in dev if r["kind"] == "abort")
    parked = next(r for r in dev if r["kind"] == "event" and r["msg"] == "MOTION_DONE" and r["t_us"] >= t_abort
                  and r["fields"]["thickness_um"] == round(model.cfg.paddle.park_height_mm * 1000))
    assert parked["fields"]["ok"] == 1 and parked["fields"]["force_dn"] == 0
    compress_again = next(r["t_us"] for r in dev if r["kind"] == "command" and r["msg"] == "COMPRESS" and r["t_us"] > t_abort)
    assert parked["t_us"] <= compress_again
    assert again.record.status == "complete", again.record.reason


def test_host_plans_with_the_generator_limits_the_gantry_reports(tmp_path) -> None:
    """A gantry with a weaker tube: GET_LIMITS tells the host, whose plans then stay inside it."""
    # dbt-standard's worst case: 9.9 mAs in a 60 ms pulse (165 mA) at 36 kV (5940 W)
    weak = {"tube_current_max_ma": 170.0, "tube_max_power_w": 5950.0, "anode_filters": ["W/Rh", "W/Ag"],
            "focal_spots_mm": [0.3], "arc_acceleration_deg_s2": 12.0}
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, fast_config(limits=weak), seed=3, data_dir=tmp_path / "device", event_log=None)
    with connect_virtual(env, endpoint, seed=3) as gantry:
        lim = gantry.session.limits
        assert gantry.session.limits_source == "device"
        assert (lim.tube_current_max_ma, lim.tube_max_power_w, lim.arc_acceleration_deg_s2) == pytest.approx((170.0, 5950.0, 12.0))
        assert lim.anode_filters == ("W/Rh", "W/Ag") and lim.focal_spots_mm == pytest.approx((0.3,))
        result = gantry.run_exam("dbt-standard", tmp_path / "exam")
    assert result.record.status == "complete", result.record.warnings
    for e in result.record.exposures:
        ma = e.mas / e.window_s  # mAs per second of window = mean tube current, mA
        assert ma <= 170.0 * 1.02 and ma * e.kvp <= 5950.0 * 1.02, (e.index, ma, e.kvp)


def test_host_refuses_an_exam_the_reported_tube_cannot_deliver(tmp_path) -> None:
    weak = {"tube_current_max_ma": 80.0, "tube_max_power_w": 2500.0}
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, fast_config(limits=weak), seed=4, data_dir=tmp_path / "device", event_log=None)
    with connect_virtual(env, endpoint, seed=4) as gantry:
        with pytest.raises(ExamError, match=r"needs 165\.0 mA, outside the tube current range \[10\.0, 80\.0\] mA"):
            gantry.run_exam("dbt-standard", tmp_path / "exam")
