"""`crescent campaign`: the checker can fail (deliberate breakages), and a small campaign runs clean on Dask.

The breakages are made on a real exam's evidence (device event log, record, stored images,
paddle force), one at a time, and each must be caught by the invariant that covers it and by no
unrelated one being required. The CI campaign runs ~60 seeded exams on a LocalCluster of 2
worker processes, started and stopped by the test, and checks determinism against a rerun of
a few seeds in this process.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from crescent.campaign.cases import LIBRARY, Case, draw_case
from crescent.campaign.invariants import Evidence, check_all


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Any]:
    """A clean dbt-standard exam (no fault) with everything the invariants read."""
    import simpy

    from crescent.campaign.exam_run import campaign_config, stored_crcs
    from firmware_host import connect_virtual
    from simulator.gantry import start_virtual_gantry

    root = tmp_path_factory.mktemp("clean")
    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, campaign_config(), seed=11, data_dir=root / "device", event_log=None)
    model.detector.synthetic = True
    with connect_virtual(env, endpoint, seed=11) as gantry:
        result = gantry.run_exam("dbt-standard", root / "exam")
        env.run(until=env.now + 3.0)
    record = json.loads(result.record_path.read_text())
    assert record["status"] == "complete"
    return {"device": model.log.records(), "record": record, "crc": stored_crcs(root / "exam", record),
            "force": float(model.paddle.force_n()), "root": root}


def _evidence(c: dict[str, Any], **changes: Any) -> Evidence:
    ev = Evidence(device=copy.deepcopy(c["device"]), record=copy.deepcopy(c["record"]), stored_crc=dict(c["crc"]),
                  paddle_force_n=c["force"], release_policy="after_exam", release_on_fault=True, capture_errors=[])
    for k, v in changes.items():
        setattr(ev, k, v)
    return ev


def _letters(ev: Evidence) -> set[str]:
    return {v.invariant for v in check_all(ev)}


def test_clean_exam_has_no_violation(clean) -> None:
    assert check_all(_evidence(clean)) == []


def test_device_ignoring_the_estop_is_caught_by_d_and_a(clean) -> None:
    """E-stop pressed during exposure 5's window; the device keeps exposing (window goes on, next ones fire)."""
    ev = _evidence(clean)
    xs = [r for r in ev.device if r["kind"] == "exposure"]
    x = xs[5]
    t_press = x["t_us"] - int(x["window_s"] * 1e6 / 2)
    pos = ev.device.index(x)
    ev.device.insert(pos, {"t_us": t_press, "kind": "interlocks", "mask": 0b111101, "changed": 0b10})
    x["window_s"] += 0.5  # X-rays kept on half a second past the e-stop
    x["t_us"] += 500_000
    letters = _letters(ev)
    assert "d" in letters and "a" in letters


def test_doubled_exposure_is_caught_by_b(clean) -> None:
    ev = _evidence(clean)
    x = next(r for r in ev.device if r["kind"] == "exposure" and r["index"] == 3)
    ev.device.append({**x, "t_us": ev.device[-1]["t_us"] + 1})
    assert "b" in _letters(ev)


def test_record_that_lies_is_caught_by_f_and_c(clean) -> None:
    """The record drops the last exposure and claims completeness with a false count in its reason."""
    ev = _evidence(clean)
    ev.record["exposures"] = ev.record["exposures"][:-1]
    assert "c" in _letters(ev)
    ev2 = _evidence(clean)
    ev2.record["status"] = "aborted"
    ev2.record["reason"] = "the device ended the plan after 14 of 15 exposures"
    ev2.record["fault"] = "TUBE_ARC"
    v = {x.invariant: x.message for x in check_all(ev2)}
    assert "f" in v and ("14 of 15" in v["f"] or "TUBE_ARC" in v["f"])
    ev3 = _evidence(clean)  # complete although an exposure ended early
    next(r for r in ev3.device if r["kind"] == "exposure" and r["index"] == 7)["status"] = 3
    assert "f" in _letters(ev3)


def test_corrupted_stored_image_is_caught_by_c(clean) -> None:
    ev = _evidence(clean)
    fid = next(iter(ev.stored_crc))
    ev.stored_crc[fid] = (ev.stored_crc[fid] or 0) ^ 0x1
    assert _letters(ev) == {"c"}
    # and from the file itself: corrupt one stored projection on disk, recompute
    from crescent.campaign.exam_run import stored_crcs

    import numpy as np

    path = clean["root"] / "exam" / ev.record["header"]["projections"][2]["path"]
    arr = np.load(path)
    arr[0, 0] ^= 1
    np.save(path, arr)
    try:
        ev2 = _evidence(clean, stored_crc=stored_crcs(clean["root"] / "exam", clean["record"]))
        assert _letters(ev2) == {"c"}
    finally:
        arr[0, 0] ^= 1
        np.save(path, arr)


def test_paddle_left_compressed_is_caught_by_e(clean) -> None:
    assert _letters(_evidence(clean, paddle_force_n=45.0)) == {"e"}


def test_hang_or_exception_is_caught_by_g(clean) -> None:
    assert "g" in _letters(_evidence(clean, error="ExamHang: exam still running after 400 s"))


def test_cases_are_deterministic_and_cover_every_kind_and_phase() -> None:
    from crescent.campaign.cases import FAULT_KINDS, PHASES
    from crescent.campaign.exam_run import resolve_exam_model

    models = {e: resolve_exam_model(e) for e in LIBRARY}
    a = [draw_case(s, list(LIBRARY), models) for s in range(1, 400)]
    b = [draw_case(s, list(LIBRARY), models) for s in range(1, 400)]
    assert a == b
    assert {c.fault for c in a} == set(FAULT_KINDS)
    assert {c.phase for c in a} == set(PHASES)
    dead = [c.duration_s for c in a if c.fault == "LINE_DEAD_RETRY"]
    assert dead and min(dead) >= 0.5 and max(dead) <= 1.5


@pytest.mark.slow
def test_small_campaign_on_a_local_cluster(tmp_path) -> None:
    """~60 exams on a LocalCluster of 2 worker processes: no violation; JUnit and HTML written; resumable;
    a rerun of three seeds in this process gives the same outcome (independent of the workers)."""
    from crescent.campaign.exam_run import run_case
    from crescent.cli import main

    results = tmp_path / "results.jsonl"
    code = main(["campaign", "--exams", "60", "--first-seed", "1000", "--workers", "2", "--out", str(tmp_path),
                 "--results", str(results)])
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    bad = [r for r in lines if r["violations"]]
    assert code == 0 and not bad, bad
    assert len({r["seed"] for r in lines}) == 60
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "60" and suite.get("failures") == "0"
    assert "Fault campaign: 60 exams" in (tmp_path / "campaign.html").read_text()
    # resumed: nothing is run again
    code = main(["campaign", "--exams", "60", "--first-seed", "1000", "--out", str(tmp_path), "--results", str(results)])
    assert code == 0 and len(results.read_text().splitlines()) == 60
    by_seed = {r["seed"]: r for r in lines}
    for seed in (1000, 1017, 1042):
        again = run_case(Case(**by_seed[seed]["case"]))
        for key in ("status", "reason", "fault", "device_exposures", "violations", "virtual_s"):
            assert again[key] == by_seed[seed][key], (seed, key)


def test_capture_finding_is_kept_unless_the_device_log_shows_a_late_report(clean) -> None:
    """A capture 'exposure outside plan' stands (a) unless the device log shows that exposure made inside
    its armed plan (a report that crossed a dead line late); one the device never made in a plan stands."""
    ev = _evidence(clean)
    x = next(r for r in ev.device if r["kind"] == "exposure" and r["index"] == 4)
    late = {"rule": "exposure-outside-plan", "message": f"exposure plan {x['plan_id']} index 4 but no such plan "
            "is running"}
    assert _letters(_evidence(clean, capture_errors=[late])) == set()
    bogus = {"rule": "exposure-outside-plan", "message": f"exposure plan {x['plan_id']} index 40 but no such plan "
             "is running"}
    assert _letters(_evidence(clean, capture_errors=[bogus])) == {"a"}
    dup = {"rule": "duplicate-execution", "message": "FIRE answered twice differently"}
    assert _letters(_evidence(clean, capture_errors=[dup])) == {"b"}
