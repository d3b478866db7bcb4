"""Per-exam acquisition QC (crescent.acquire.acquisition_qc): each check passes a clean exam and fails its own defect."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from crescent.acquire.acquisition_qc import acquisition_qc, defective_lines
from protocols.geometry import AcquisitionGeometry, DetectorGeometry


def _exam(n: int = 9, rows: int = 100, cols: int = 120, mas_jitter: float = 0.0, angle_error: float = 0.0,
          chest_gap_mm: float = 0.0, aec_target: float | None = None, dead_col: int | None = None, seed: int = 0,
          moved_px: tuple[int, int] = (0, 0)):
    """A synthetic sweep over -12.5..12.5 deg of a tissue block (no parallax: it lies on the detector);
    ``moved_px`` (rows, cols) shifts the block in the second half of the sweep (patient motion)."""
    rng = np.random.default_rng(seed)
    g = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=rows, cols=cols))
    pitch = g.detector.pitch_mm
    angles = np.linspace(-12.5, 12.5, n)
    exps = [NS(is_scout=False, kvp=28.0, mas=2.0 * (1 + (mas_jitter if i % 2 else -mas_jitter)),
               mean_angle_deg=float(a)) for i, a in enumerate(angles)]
    img = np.full((rows, cols), 1100.0)  # open field 1000 ADU above the 100 ADU pedestal
    tissue = np.zeros((rows, cols), bool)
    tissue[int(round(chest_gap_mm / pitch)):80, 20:100] = True
    img[tissue] = 400.0
    img[30:40, 40:50] = 250.0  # a denser structure inside
    moved = np.roll(img, moved_px, axis=(0, 1))
    raw = np.stack([(moved if i > n // 2 else img) + rng.normal(0, 5, img.shape) for i in range(n)])
    if dead_col is not None:
        raw[:, :, dead_col] = 100.0
    checks = [NS(planned_angle_deg=0.0, actual_angle_deg=angle_error) for _ in range(n)]
    aec = None if aec_target is None else NS(target_signal_fraction=aec_target, note="")
    rec = NS(checks=checks, angle_tolerance_deg=0.25, aec=aec)
    return rec, NS(geometry=g), exps, raw


def _verdicts(**kw):
    rec, header, exps, raw = _exam(**kw)
    return {v.name: v.result for v in acquisition_qc(rec, header, exps, raw, 100.0)}


def test_clean_exam_passes_every_check():
    v = _verdicts(aec_target=300.0 / 65535.0)
    assert set(v.values()) == {"PASS"} and len(v) == 6, v


@pytest.mark.parametrize("defect,check", [
    ({"mas_jitter": 0.1}, "Exposure consistency across projections"),
    ({"angle_error": 0.4}, "Arm motion residual"),
    ({"dead_col": 60}, "Detector artefacts (defective lines)"),
    ({"chest_gap_mm": 5.0}, "Chest-wall coverage"),
    ({"aec_target": 0.001}, "AEC plausibility"),  # the projections are 3x brighter than the target (in tissue)
    ({"moved_px": (0, 3)}, "Patient motion between projections"),  # 1.2 mm along the arc, mid-sweep
    ({"moved_px": (3, 0)}, "Patient motion between projections"),  # 1.2 mm toward the nipple
])
def test_each_defect_fails_its_own_check_only(defect, check):
    kw = {"aec_target": 300.0 / 65535.0, **defect}
    v = _verdicts(**kw)
    assert {k for k, r in v.items() if r == "FAIL"} == {check}, v


def test_defective_lines_counts_a_dead_row_and_column():
    img = np.full((50, 60), 500.0)
    img[:, 10] = 0.0
    img[20, :] = 0.0
    assert defective_lines(img) == 2
    assert defective_lines(np.full((50, 60), 500.0)) == 0


@pytest.mark.slow
def test_acquire_reports_acquisition_qc_and_a_dead_column_is_never_silent(tmp_path):
    """`crescent acquire`'s default path (virtual time): verdicts in summary.json, the report and the warnings."""
    import json

    from crescent.acquire.gantry_launch import write_gantry_config
    from crescent.acquire.options import AcquireOptions
    from crescent.acquire.pipeline import run_acquire
    from simulator.gantry import load_config

    def run(name: str, config: str | None):
        run_acquire(AcquireOptions(out=tmp_path / name, virtual_time=True, exam="ffdm-cc", phantom="pmma",
                                   binning=8, seed=2, gantry_config=config))
        return json.loads((tmp_path / name / "summary.json").read_text())

    healthy = run("ok", None)
    assert {q["check"]: q["verdict"] for q in healthy["acquisition_qc"]}["Detector artefacts (defective lines)"] == "PASS"
    assert not [w for w in healthy["warnings"] if "acquisition QC" in w]
    cfg = tmp_path / "dead.yaml"
    write_gantry_config(load_config("default").with_overrides(detector={"dead_columns_x_mm": [-60.0]}), cfg)
    bad = run("bad", str(cfg))
    verdicts = {q["check"]: q["verdict"] for q in bad["acquisition_qc"]}
    assert verdicts["Detector artefacts (defective lines)"] == "FAIL"
    assert verdicts.pop("Patient motion between projections") == "INFO"  # one view: no sweep to track
    assert [v for k, v in verdicts.items() if k != "Detector artefacts (defective lines)"] == ["PASS"] * (len(verdicts) - 1)
    assert any("acquisition QC failed: Detector artefacts" in w for w in bad["warnings"])
    assert "Detector artefacts (defective lines)" in (tmp_path / "bad" / "report.html").read_text()
    # and in the DICOM study: a quality-rejection KOS (CID 7011 "Detector artifact(s)") referencing the view
    import pydicom

    assert not (tmp_path / "ok" / "dicom" / "qc_rejection_kos.dcm").exists()
    kos = pydicom.dcmread(tmp_path / "bad" / "dicom" / "qc_rejection_kos.dcm")
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113001"
    assert [i.ConceptCodeSequence[0].CodeMeaning for i in kos.ContentSequence if i.ValueType == "CODE"] == [
        "Detector artifact(s)"]
    view = pydicom.dcmread(tmp_path / "bad" / "dicom" / "proj_000.dcm", stop_before_pixels=True)
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
            if i.ValueType == "IMAGE"] == [view.SOPInstanceUID]


def test_motion_verdict_names_the_projections_after_the_jump():
    from crescent.acquire.acquisition_qc import motion_verdict

    rec, header, exps, raw = _exam(moved_px=(0, 2))  # 0.8 mm: above the 0.5 mm limit
    v = motion_verdict(raw, 100.0, exps, header.geometry)
    assert v.result == "FAIL" and v.frames == (6, 7, 8, 9), v
    rec, header, exps, raw = _exam(moved_px=(0, 1))  # 0.4 mm: under it
    assert motion_verdict(raw, 100.0, exps, header.geometry).result == "PASS"


def test_motion_verdict_is_info_without_a_sweep_or_structure():
    from crescent.acquire.acquisition_qc import motion_verdict

    rec, header, exps, raw = _exam()
    for e in exps:
        e.mean_angle_deg = 0.0
    assert motion_verdict(raw, 100.0, exps, header.geometry).result == "INFO"
    rec, header, exps, raw = _exam()
    flat = np.random.default_rng(1).normal(1100.0, 5.0, raw.shape)  # open field only: noise, nothing to track
    v = motion_verdict(flat, 100.0, exps, header.geometry)
    assert v.result == "INFO" and "no trackable structure" in v.value, v
