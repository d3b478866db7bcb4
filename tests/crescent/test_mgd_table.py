"""MGD vs PMMA thickness of the shipped dbt-standard exam (product defaults: the library exam, the default
simulated gantry, the host's AEC) against the EUREF acceptable levels and a published DBT system
(crescent/qc/limits.py: DBT_TYPICAL_MGD, DBT_TYPICAL_RATIO); the README table is this command's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from crescent.qc import limits
from crescent.qc.mgd_table import THICKNESSES_MM, measure, problems, run

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


def test_the_checks_fail_when_the_dose_is_wrong(tmp_path: Path) -> None:
    """The same measurement with the delivered mAs doubled (45 mm: over the 2.5 mGy acceptable level) and
    cut to a third (below half the published system) is reported as a problem."""
    high = measure("dbt-standard", 45, tmp_path / "high", mas_scale=2.0)
    assert any("above the EUREF acceptable 2.5 mGy" in p for p in problems([high])), high
    low = measure("dbt-standard", 45, tmp_path / "low", mas_scale=1.0 / 3.0)
    assert any("x the published 2.08 mGy" in p for p in problems([low])), low


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
