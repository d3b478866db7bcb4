"""crescent qc, fast parts: limits, history round trip, report, the bead-angle fit, the CLI wiring."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from crescent.qc import history, limits
from crescent.qc.limits import Limit
from crescent.qc.procedures import TESTS, Figure, QcResult, _detrended_var, _fit_angle
from crescent.qc.report import write_report
from crescent.qc.runner import record_run, run_suite


def test_limit_intervals_and_nan():
    lim = Limit(-1.0, 1.0, "kV", "x")
    assert lim.passes(0.99) and lim.passes(-1.0) and not lim.passes(1.01)
    assert not lim.passes(float("nan"))
    assert Limit(None, 15.0, "%", "x").passes(-1e9) and not Limit(None, 15.0, "%", "x").passes(15.1)
    assert Limit(None, None, "", "x").describe() == "recorded"


def test_hvl_limits_follow_the_acr_formula():
    # 21 CFR 900.12(e)(5)(iv): kVp/100 + 0.03 <= HVL <= kVp/100 + C, C(W/Rh) = 0.30
    lim = limits.hvl_limit(28.0, "W/Rh")
    assert lim.lo == pytest.approx(0.31) and lim.hi == pytest.approx(0.58)


def test_every_limit_cites_a_source():
    for name in dir(limits):
        v = getattr(limits, name)
        if isinstance(v, Limit):
            assert v.source.split(":")[0].split(" ")[0] in ("EUREF-2D", "EUREF-DBT", "ACR-2018", "project"), name
    assert set(limits.EUREF_MGD) == {20, 30, 40, 45, 50, 60, 70}


def _result(test: str, value: float, lim: Limit) -> QcResult:
    return QcResult(test, test, "exam", "phantom", [Figure("fig", value, lim)])


def test_history_round_trip_and_report(tmp_path: Path):
    db = tmp_path / "h.sqlite"
    lim = Limit(None, 15.0, "%", "EUREF-2D test")
    record_run(db, "acceptance", "simulated", "sim-1", [_result("homogeneity", 4.0, lim)])
    rid = record_run(db, "constancy", "simulated", "sim-1", [_result("homogeneity", 20.0, lim)])
    rows = history.load(db)
    assert [r.value for r in rows] == [4.0, 20.0]
    assert rows[-1].run_id == rid and not rows[-1].passed and rows[0].passed
    assert rows[-1].limit_hi == 15.0 and rows[-1].source == "EUREF-2D test"
    with sqlite3.connect(db) as con:  # plain SQL works on it (the physicist's own queries)
        assert con.execute("SELECT COUNT(*) FROM qc_results WHERE passed = 0").fetchone()[0] == 1
    curve = _result("mtf", 0.9, lim)
    curve.series = {"freq_lp_mm": [0.0, 5.0], "mtf": [1.0, 0.9]}
    html = write_report(rows, tmp_path / "rep", [curve]).read_text()
    assert "qc_curve_mtf.png" in html and (tmp_path / "rep" / "qc_curve_mtf.png").stat().st_size > 0
    assert "Verdict: FAIL" in html and "20" in html and "baseline" in html
    assert list((tmp_path / "rep").glob("qc_trend_*.png"))


def test_report_of_missing_history_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not found"):
        history.load(tmp_path / "none.sqlite")


def test_a_test_that_raises_fails_with_its_reason(tmp_path: Path):
    class Broken:
        kind = "simulated"

        def acquire(self, exam, phantom):
            raise RuntimeError("gantry on fire")

    res = run_suite(Broken(), "constancy", only=("timing",))
    assert len(res) == 1 and not res[0].passed and "gantry on fire" in res[0].notes
    record_run(tmp_path / "h.sqlite", "constancy", "simulated", "x", res)
    assert not history.load(tmp_path / "h.sqlite")[0].passed


def test_unknown_suite_or_test_is_refused():
    with pytest.raises(ValueError, match="suite"):
        run_suite(object(), "monthly")
    with pytest.raises(ValueError, match="unknown QC test"):
        run_suite(object(), "constancy", only=("nope",))


def test_bead_angle_fit_recovers_a_known_angle():
    """Independent forward model: central projection of points from the source at a known angle."""
    from protocols.geometry import AcquisitionGeometry

    g = AcquisitionGeometry()
    beads = [(x, y, z) for x in (-30.0, 0.0, 30.0) for y in (30.0, 60.0) for z in (25.0, 45.0, 65.0)]
    true = 7.3
    s = np.array([g.pivot_height_mm * 0 + (g.sid_mm - g.pivot_height_mm) * math.sin(math.radians(true)), 0.0,
                  g.pivot_height_mm + (g.sid_mm - g.pivot_height_mm) * math.cos(math.radians(true))])
    meas = np.array([[s[0] + (x - s[0]) * s[2] / (s[2] - z), y * s[2] / (s[2] - z)] for x, y, z in beads])
    theta, rms = _fit_angle(g, beads, meas, 7.0)
    assert theta == pytest.approx(true, abs=1e-3) and rms < 1e-3
    theta_off, _ = _fit_angle(g, beads, meas, 6.0)  # a guess 1.3 deg off still converges
    assert theta_off == pytest.approx(true, abs=1e-3)


def test_detrended_variance_removes_a_ramp():
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 2.0, (40, 40))
    ramp = np.add.outer(np.arange(40) * 5.0, np.arange(40) * 3.0)
    assert _detrended_var(noise + ramp) == pytest.approx(4.0, rel=0.15)
    assert np.var(noise + ramp) > 100.0


def test_suites_list_every_test():
    assert {t.name for t in TESTS} == {"tube_output_hvl", "detector_response", "mtf", "homogeneity_artefacts",
                                       "aec_tracking", "geometry_arc", "z_resolution", "timing",
                                       "field_chest_wall", "ghosting"}
    assert all({"acceptance", "constancy"} <= set(t.suites) for t in TESTS)


def test_qc_help_lists_run_and_report(capsys):
    from crescent.cli import main

    with pytest.raises(SystemExit):
        main(["qc", "run", "--help"])
    out = capsys.readouterr().out
    assert "--suite" in out and "--port" in out and "--db" in out


def test_qc_report_without_history_exits_2(tmp_path: Path, capsys):
    from crescent.cli import main

    assert main(["qc", "report", "--db", str(tmp_path / "no.sqlite"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_nnps_of_white_noise_integrates_to_the_relative_variance():
    """Independent check of the NNPS (IEC 62220-1 method): uncorrelated noise of known sigma on a mean mu has
    a flat NNPS = sigma^2 dx dy / mu^2, and its integral over frequency is sigma^2 / mu^2 (Parseval)."""
    from crescent.qc.procedures import nnps_2d, nnps_radial

    rng = np.random.default_rng(18)
    mu, sigma, pitch = 400.0, 20.0, 0.1
    ramp = np.add.outer(np.arange(-128, 128) * 0.2, np.arange(-128, 128) * -0.1)  # a heel-like trend, mean ~0: detrended away
    fx, fy, nn = nnps_2d(mu + ramp + rng.normal(0.0, sigma, (256, 256)), pitch, roi_px=64)
    df = fx[1] - fx[0]
    rel_var = (sigma / mu) ** 2
    assert nn.sum() * df * df == pytest.approx(rel_var, rel=0.03)
    white = rel_var * pitch * pitch
    for v in nnps_radial(fx, fy, nn, (1.0, 2.0, 4.0)):
        assert v == pytest.approx(white, rel=0.05)
    # the check can fail: correlated noise (2x2 box-smoothed) is not white and loses power at high frequency
    smooth = rng.normal(0.0, sigma, (257, 257))
    smooth = 0.25 * (smooth[1:, 1:] + smooth[:-1, 1:] + smooth[1:, :-1] + smooth[:-1, :-1])
    fx, fy, nn = nnps_2d(mu + smooth, pitch)
    lo, hi = nnps_radial(fx, fy, nn, (1.0, 4.0))
    assert hi < 0.6 * lo
    with pytest.raises(ValueError, match="roi_px"):
        nnps_2d(np.ones((10, 10)), pitch)


def test_report_plots_series_of_their_own_length(tmp_path: Path):
    """The response curves (4 doses) and the NNPS curve (its own frequencies) of one result: two x axes."""
    lim = Limit(None, None, "", "project: recorded")
    r = QcResult("detector_response", "Detector response", "e", "p", [Figure("fig", 1.0, lim)],
                 {"air_kerma_mgy": [1.0, 2.0, 3.0, 4.0], "mean_pv": [10.0, 20.0, 30.0, 40.0],
                  "nnps_freq_per_mm": [0.5, 1.0, 1.5], "nnps_mm2": [1e-5, 1e-5, 1e-5]})
    db = tmp_path / "h.sqlite"
    record_run(db, "constancy", "simulated", "sim-1", [r])
    html = write_report(history.load(db), tmp_path / "rep", [r]).read_text()
    assert "qc_curve_detector_response.png" in html
    assert (tmp_path / "rep" / "qc_curve_detector_response.png").stat().st_size > 0
