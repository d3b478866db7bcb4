"""crescent qc end to end on the simulated gantry (virtual time, small panels): a healthy gantry passes,
each injected defect is caught by its own test and by no other, and the CLI stores and reports a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from crescent.qc.runner import run_suite
from crescent.qc.site import SimulatedSite

pytestmark = pytest.mark.slow

#: defect name -> (simulated gantry config overrides, the one QC test that must fail)
DEFECTS = {
    "dead pixel column": ({"detector": {"dead_columns_x_mm": [-60.0]}}, "homogeneity_artefacts"),
    "detuned AEC": ({"detector": {"dark_offset_report_error_adu": -30.0}}, "aec_tracking"),
    "arc angle offset 0.5 deg": ({"axis": {"angle_offset_deg": 0.5}}, "geometry_arc"),
    "enlarged focal spot": ({"generator": {"focal_spot_scale": 5.0}}, "mtf"),
    "non-uniform field": ({"detector": {"gain_gradient_percent_per_100mm": 30.0}}, "homogeneity_artefacts"),
    "slow detector": ({"detector": {"readout_delay_ms": 3000.0}}, "timing"),
    # issue 18, second part: NNPS, missed tissue, field alignment, ghosting
    "noisy panel": ({"detector": {"extra_electronic_noise_adu": 12.0}}, "detector_response"),
    "chest-wall gap 8 mm": ({"detector": {"chest_wall_gap_mm": 8.0}}, "field_chest_wall"),
    "X-ray field 12 mm beyond the chest wall": ({"detector": {"field_margin_mm": [12.0, 3.0, 3.0, 3.0]}},
                                                "field_chest_wall"),
    "strong ghosting": ({"detector": {"ghost_loss_per_kadu": 0.03}}, "ghosting"),
}
#: for the defects of issue 18's second part, the figures of the expected test that must fail (and no other)
FAILING_FIGURES = {
    "noisy panel": {"NNPS at 1 /mm, 20 mAs (1e-6 mm^2)", "NNPS at 2 /mm, 20 mAs (1e-6 mm^2)",
                    "noise slope d log(var) / d log(PV)"},
    "chest-wall gap 8 mm": {"missed tissue at the chest wall"},
    "X-ray field 12 mm beyond the chest wall": {"X-ray field beyond the detector, chest wall (film)"},
    "strong ghosting": {"ghost image factor"},
}


def _failed(results) -> set[str]:
    return {r.test for r in results if not r.passed}


def test_healthy_gantry_passes_the_acceptance_suite(tmp_path: Path):
    """Every acceptance test passes on a healthy simulated gantry, AEC tracking included.

    AEC tracking failed before the AEC was calibrated (issue 15: 35 % signal spread over PMMA 20-70 mm
    once the compression paddle was in the beam, the mAs clamped at 6 from 40 mm); with the factory
    calibration (firmware_host/data/aec_calibration.json) the signal holds within the 10 % limit at every
    acceptance thickness and every MGD is below the EUREF acceptable level. A detuned AEC still fails
    (test_each_injected_defect_fails_its_test_and_only_it, "detuned AEC").
    """
    results = run_suite(SimulatedSite(tmp_path), "acceptance")
    assert len(results) == 10
    assert _failed(results) == set(), [(r.test, r.notes, [(f.name, f.value) for f in r.figures
                                                          if not f.passed]) for r in results if not r.passed]
    aec = next(r for r in results if r.test == "aec_tracking")
    print("AEC tracking figures:", [(f.name, f.value, f.passed) for f in aec.figures])
    assert _failed(results) == set(), [(r.test, r.notes, [(f.name, f.value) for f in r.figures
                                                          if not f.passed]) for r in results if not r.passed]
    assert aec.series["thickness_mm"] == [20, 30, 40, 45, 50, 60, 70]
    spread = next(f for f in aec.figures if f.name == "AEC signal spread over thicknesses")
    assert spread.value <= 10.0 and spread.limit.hi == 10.0


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_injected_defect_fails_its_test_and_only_it(tmp_path: Path, defect: str):
    overrides, expected = DEFECTS[defect]
    results = run_suite(SimulatedSite(tmp_path, defects=overrides), "constancy")
    assert _failed(results) == {expected}, [(r.test, r.notes, [(f.name, f.value) for f in r.figures
                                                                if not f.passed]) for r in results]
    if defect in FAILING_FIGURES:
        bad = {f.name for r in results for f in r.figures if not f.passed}
        assert bad == FAILING_FIGURES[defect], bad


def test_cli_run_stores_history_and_report(tmp_path: Path, capsys):
    from crescent.cli import main

    db, out = tmp_path / "qc.sqlite", tmp_path / "out"
    assert main(["qc", "run", "--suite", "constancy", "--test", "tube_output_hvl", "--db", str(db),
                 "--out", str(out), "--quiet"]) == 0
    assert "QC constancy passed" in capsys.readouterr().out
    # a second run on a gantry with a defect the selected test catches: exit 1, both runs in the history
    cfg = tmp_path / "bad.yaml"
    from crescent.acquire.gantry_launch import write_gantry_config
    from simulator.gantry import load_config

    write_gantry_config(load_config("default").with_overrides(detector={"readout_delay_ms": 3000.0}), cfg)
    assert main(["qc", "run", "--suite", "constancy", "--test", "timing", "--db", str(db), "--out", str(out),
                 "--gantry-config", str(cfg), "--quiet"]) == 1
    assert main(["qc", "report", "--db", str(db), "--out", str(out)]) == 0
    html = (out / "qc_report.html").read_text()
    assert "2 run(s)" in html and "Verdict: FAIL" in html and "worst image-ready time" in html


def test_rig_path_prompts_the_operator_and_takes_meter_readings(tmp_path: Path):
    """`crescent qc run --port`: the same test code over a real pty; phantom prompt and dosimeter from stdin."""
    import subprocess
    import sys

    from host_pty import PtyGantry

    gantry = PtyGantry(tmp_path)
    try:
        proc = subprocess.run([sys.executable, "-m", "crescent", "qc", "run", "--port", gantry.path, "--test",
                               "tube_output_hvl", "--db", str(tmp_path / "rig.sqlite"), "--out", str(tmp_path / "o"),
                               "--watchdog-ms", "8000", "--quiet"],
                              input="\n0.40\n0.47\n", capture_output=True, text=True, timeout=300)
    finally:
        gantry.stop()
    assert "Place the uniform" in proc.stdout and "HVL, mm Al" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from crescent.qc.history import load

    rows = {r.figure: r for r in load(tmp_path / "rig.sqlite")}
    assert rows["HVL"].value == pytest.approx(0.47) and rows["HVL"].site == "rig"
    assert rows["tube output at 1 m"].value == pytest.approx(20.0, rel=0.02)  # 0.40 mGy / 20 mAs (meter's mAs)
    assert rows["HVL"].device_serial.startswith("rig-")


def test_z_resolution_fails_a_narrow_arc(tmp_path: Path, monkeypatch):
    """The ASF check can fail: a +-3 deg sweep (instead of +-12.5) spreads a bead over ~4x more depth
    (FWHM ~ d / tan(half arc)), so the same analysis measures it over the limit."""
    from crescent.qc import exams, procedures

    real = exams.dbt_manual

    def narrow(name, kvp=28.0, mas=2.0, count=15):
        exam = real(name, kvp, mas, count)
        return exam.model_copy(update={"arc": exam.arc.model_copy(update={"start_deg": -3.0, "stop_deg": 3.0})})

    monkeypatch.setattr(exams, "dbt_manual", narrow)
    result = procedures.z_resolution(SimulatedSite(tmp_path), "constancy")
    assert not result.passed and result.figures[0].value > 15.0, result.figures
