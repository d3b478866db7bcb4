"""MGD vs PMMA thickness of the shipped dbt-standard and ffdm-cc exams (product defaults: the library exams, the
default simulated gantry, the host's AEC) against the EUREF acceptable levels and published clinical doses
(crescent/qc/limits.py: DBT_TYPICAL_MGD / DBT_TYPICAL_RATIO for DBT, FFDM_TYPICAL_MGD / FFDM_TYPICAL_RATIO
for 2D); the README table is this command's output. The 2D AEC target is calibrated on the published 2D
dose at 45 mm PMMA (``--calibrate``), which is checked here too."""

from __future__ import annotations

from pathlib import Path

import pytest

from crescent.qc import limits
from crescent.qc.mgd_table import CALIBRATION_PMMA_MM, THICKNESSES_MM, calibrate, measure, problems, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows():
    return run(("dbt-standard",))


def test_dbt_standard_mgd_is_within_euref_and_near_the_published_system(rows) -> None:
    assert [r.pmma_mm for r in rows] == list(THICKNESSES_MM)
    assert problems(rows) == [], problems(rows)
    for r in rows:
        assert r.projections == 15
        # the EUREF achievable level is a 2D goal that published DBT systems exceed in thin breasts (the
        # published system: 0.92 mGy at 20 mm against 0.6; at 45 mm 2.08 against 2.0); from 40 mm the
        # simulated exam (scatter on) meets it: 1.51 mGy against 1.6 at 40 mm
        if r.pmma_mm >= 40:
            assert r.mgd_mgy <= r.achievable_mgy
        assert 0.9 <= r.signal_over_target <= 1.1  # the AEC holds its target signal at every thickness
    mgd = [r.mgd_mgy for r in rows]
    assert all(b > a for a, b in zip(mgd, mgd[1:]))  # dose rises with thickness
    for r in rows:
        if r.pmma_mm in limits.DBT_TYPICAL_MGD:
            lo, hi = limits.DBT_TYPICAL_RATIO
            assert lo <= r.mgd_mgy / limits.DBT_TYPICAL_MGD[r.pmma_mm] <= hi


@pytest.fixture(scope="module")
def rows_2d():
    return run(("ffdm-cc",))


def test_ffdm_cc_mgd_is_within_euref_and_on_the_published_2d_dose(rows_2d) -> None:
    assert [r.pmma_mm for r in rows_2d] == list(THICKNESSES_MM)
    assert problems(rows_2d) == [], problems(rows_2d)
    for r in rows_2d:
        assert r.projections == 1 and r.kind == "ffdm"
        assert r.mgd_mgy <= r.acceptable_mgy
        assert 0.9 <= r.signal_over_target <= 1.1
    mgd = {r.pmma_mm: r.mgd_mgy for r in rows_2d}
    assert all(mgd[b] > mgd[a] for a, b in zip(THICKNESSES_MM, THICKNESSES_MM[1:]))
    # calibrated on the UK survey's mean for DR systems (1.37 mGy): the shipped target lands within 3 %
    ref = limits.FFDM_TYPICAL_MGD[CALIBRATION_PMMA_MM]
    assert mgd[CALIBRATION_PMMA_MM] == pytest.approx(ref, rel=0.03)
    # at 45 mm, inside the EUREF achievable level (2.0 mGy) too
    assert mgd[45] <= limits.EUREF_MGD[45][1]


def test_dbt_sits_above_2d_as_published(rows, rows_2d) -> None:
    """DBT above 2D at 45 mm PMMA, by less than the published surveys' upper figure: Sechopoulos et al. 2012
    (one system, 50 mm / 50 %: DBT 8 % above 2D) to the UK 2019-2023 survey (34-40 % above)."""
    d = {r.pmma_mm: r.mgd_mgy for r in rows}
    f = {r.pmma_mm: r.mgd_mgy for r in rows_2d}
    assert 1.0 < d[45] / f[45] < 1.45, (d[45], f[45])


def test_the_shipped_2d_target_is_the_calibrated_one() -> None:
    """``--calibrate ffdm-cc`` on the shipped exam returns its own target (within 3 %), and the check run at the
    calibrated target lands on the published figure; both 2D views share the target."""
    from protocols.exams import load_standard_exam

    c = calibrate("ffdm-cc")
    assert c.target == pytest.approx(c.shipped_target, rel=0.03), c
    assert c.check_mgy == pytest.approx(c.reference_mgy, rel=0.01), c
    assert load_standard_exam("ffdm-mlo").technique.target_signal_fraction == c.shipped_target


def test_the_2d_calibration_fails_with_a_hand_set_target(tmp_path: Path, monkeypatch) -> None:
    """The previous hand-set 2D target (0.035) is not the calibrated one: the check above would fail on it."""
    from protocols import exams as exams_pkg

    original = exams_pkg.load_standard_exam

    def hand_set(name: str):
        exam = original(name)
        if name != "ffdm-cc":
            return exam
        return exam.model_copy(update={"technique": exam.technique.model_copy(update={"target_signal_fraction": 0.035})})

    monkeypatch.setattr(exams_pkg, "load_standard_exam", hand_set)
    c = calibrate("ffdm-cc")
    assert c.shipped_target == 0.035
    assert c.target != pytest.approx(c.shipped_target, rel=0.03), c
    assert c.shipped_mgy != pytest.approx(c.reference_mgy, rel=0.03), c


def test_the_checks_fail_when_the_dose_is_wrong(tmp_path: Path) -> None:
    """The same measurement with the delivered mAs doubled (45 mm: over the 2.5 mGy acceptable level) and
    cut to a third (below half the published system) is reported as a problem."""
    high = measure("dbt-standard", 45, tmp_path / "high", mas_scale=2.0)
    assert any("above the EUREF acceptable 2.5 mGy" in p for p in problems([high])), high
    low = measure("dbt-standard", 45, tmp_path / "low", mas_scale=1.0 / 3.0)
    assert any("x the published 2.08 mGy" in p for p in problems([low])), low
    # 2D: doubled, above the published survey's band; a third, below it
    high2 = measure("ffdm-cc", 45, tmp_path / "high2", mas_scale=2.0)
    assert any("x the published 1.37 mGy" in p for p in problems([high2])), high2
    low2 = measure("ffdm-cc", 45, tmp_path / "low2", mas_scale=1.0 / 3.0)
    assert any("x the published 1.37 mGy" in p for p in problems([low2])), low2


def test_the_checks_fail_when_the_aec_clamps(tmp_path: Path, monkeypatch) -> None:
    """An AEC whose target needs more mAs than the exam allows clamps: signal low and a clamp note."""
    from protocols import exams as exams_pkg

    original = exams_pkg.load_standard_exam

    def doubled(name: str):
        exam = original(name)
        tech = exam.technique.model_copy(update={"target_signal_fraction": 2.5 * exam.technique.target_signal_fraction})
        return exam.model_copy(update={"technique": tech})

    monkeypatch.setattr(exams_pkg, "load_standard_exam", doubled)
    row = measure("dbt-standard", 70, tmp_path / "clamp")
    found = problems([row])
    assert any("clamped to the exam's ceiling" in p for p in found) and any("x the AEC target" in p for p in found)
