"""AEC technique choice (by hand), the audit log reader, and the durable image store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware_host.aec import (CALIBRATION_PATH, KVP_CHART, aec_roi, chart_technique, choose_technique,
                               load_calibration, roi_signal, signal_ratio)
from firmware_host.audit import JsonlAudit, read_audit_log
from firmware_host.store import ExamStore, verify_exam_folder, verify_projection
from protocols.exams import load_standard_exam
from protocols.records import ExposureRecord, ProjectionRecord
from protocols.wire.crc import crc32c


def test_chart_interpolates_kvp_and_switches_filter_for_thick_breasts() -> None:
    assert chart_technique(45.0) == ("W/Rh", pytest.approx(30.5))  # halfway between 29 kV (40) and 32 kV (50)
    assert chart_technique(65.0)[0] == "W/Ag"
    assert chart_technique(5.0)[1] == pytest.approx(26.0)  # clamped at the chart's end
    assert max(k for _, p, k in KVP_CHART if p == "W/Ag") <= 36.0  # HVL with paddle <= 0.70 mm Al (g table)


def _table_ratio(pair: str, kvp: int, scout_kvp: int, thickness_mm: int) -> float:
    """Signal ratio read straight from the shipped calibration file at grid points (no interpolation code)."""
    data = json.loads(CALIBRATION_PATH.read_text())
    i, j, j0 = data["thickness_mm"].index(thickness_mm), data["kvp"].index(kvp), data["kvp"].index(scout_kvp)
    return float(np.exp(data["ln_signal_per_mas"][pair][i][j] - data["ln_signal_per_mas"]["W/Rh"][i][j0]))


def test_mas_scales_inversely_with_the_scout_signal_and_by_the_calibrated_signal_ratio() -> None:
    # scout 28 kV, 1 mAs W/Rh; ceiling 9.9 mAs; a round target of 0.3 for the arithmetic by hand
    aec = load_standard_exam("dbt-standard").technique.model_copy(update={"target_signal_fraction": 0.3})
    d = choose_technique(aec, 35.0, 0.15)  # chart at 35 mm: W/Rh 28 kV = the scout's technique
    assert (d.technique.anode_filter, d.technique.kvp) == ("W/Rh", 28.0)
    assert d.technique.mas == pytest.approx(1.0 * 0.3 / 0.15)  # same kVp and filter: 2 mAs
    assert d.signal_ratio == pytest.approx(1.0) and d.exponent == 0.0
    d2 = choose_technique(aec, 50.0, 0.15)  # chart at 50 mm: W/Rh 32 kV
    assert (d2.technique.anode_filter, d2.technique.kvp) == ("W/Rh", 32.0)
    r = _table_ratio("W/Rh", 32, 28, 50)
    assert 1.3 < r < 2.5  # more signal per mAs at 32 kV than at 28 kV through 50 mm PMMA
    assert d2.technique.mas == pytest.approx(2.0 / r, rel=1e-3)
    d4 = choose_technique(aec, 70.0, 0.015)  # chart at 70 mm: W/Ag 35 kV, a grid point of the table
    assert d4.technique.anode_filter == "W/Ag" and d4.technique.kvp == 35.0
    assert d4.technique.mas == pytest.approx(20.0 / _table_ratio("W/Ag", 35, 28, 70), rel=1e-3)
    d3 = choose_technique(aec, 35.0, 0.01)  # would need 30 mAs: clamped to the exam's ceiling
    assert d3.technique.mas == 9.9 and "clamped" in d3.clamped


def test_a_missing_pair_or_calibration_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="'X/Y' has no AEC calibration"):
        signal_ratio("W/Rh", 28.0, "X/Y", 30.0, 40.0)
    with pytest.raises(FileNotFoundError, match="crescent.qc.aec_calibration"):
        load_calibration(tmp_path / "none.json")


def test_kvp_stays_inside_the_exam_bounds() -> None:
    aec = load_standard_exam("ffdm-cc").technique  # kvp 25..35
    d = choose_technique(aec, 90.0, 0.05)
    assert d.technique.kvp == 35.0 and d.technique.anode_filter == "W/Ag"


def test_roi_signal_is_the_central_region_mean_over_full_scale() -> None:
    img = np.zeros((100, 80), dtype=np.uint16)
    roi = aec_roi(100, 80, pitch_mm=1.0, depth_mm=30.0, size_mm=20.0)
    assert (roi.r0, roi.r1, roi.c0, roi.c1) == (20, 40, 30, 50)
    img[roi.r0:roi.r1, roi.c0:roi.c1] = 65535 // 2
    assert roi_signal(img, roi, 16) == pytest.approx(0.5, abs=1e-4)


def test_audit_reader_tolerates_and_reports_a_torn_last_line(tmp_path) -> None:
    log = JsonlAudit(tmp_path / "a.jsonl")
    for i in range(3):
        log.write({"t": i, "kind": "event", "i": i})
    log.close()
    clean = read_audit_log(tmp_path / "a.jsonl")
    assert [e["i"] for e in clean.entries] == [0, 1, 2] and not clean.torn_last_line
    with open(tmp_path / "a.jsonl", "a") as f:
        f.write('{"t": 3, "kind": "ev')  # a crash mid-write
    torn = read_audit_log(tmp_path / "a.jsonl")
    assert len(torn.entries) == 3 and torn.torn_last_line and torn.torn_text.startswith('{"t": 3')
    text = (tmp_path / "a.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text("\n".join([text[0], "garbage", text[1]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_audit_log(tmp_path / "b.jsonl")


def test_store_writes_verifiable_images_and_detects_corruption(tmp_path) -> None:
    store = ExamStore(tmp_path)
    img = np.arange(12 * 10, dtype="<u2").reshape(12, 10)
    exp = ExposureRecord(index=0, frame_id=7, planned_angle_deg=0, angle_start_deg=0, angle_end_deg=0, kvp=28, mas=1,
                         anode_filter="W/Rh", window_start_s=0, window_end_s=0.01)
    rec = ProjectionRecord(exposure=exp, rows=12, cols=10, checksum_crc32c=crc32c(img.tobytes()))
    saved = store.save_image(store.projection_stem(0), img, rec)
    assert saved.path == "projections/proj_000.npy"
    assert json.loads((tmp_path / "projections/proj_000.json").read_text())["exposure"]["frame_id"] == 7
    assert verify_projection(tmp_path / saved.path) == (True, "ok")
    raw = bytearray((tmp_path / saved.path).read_bytes())
    raw[-1] ^= 0x01  # flip one pixel bit
    (tmp_path / saved.path).write_bytes(bytes(raw))
    ok, msg = verify_projection(tmp_path / saved.path)
    assert not ok and "CRC-32C" in msg
    assert verify_exam_folder(tmp_path)[0][1] is False
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind
