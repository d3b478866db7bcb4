"""QC issue 18, second part: missed tissue at the chest wall, X-ray field alignment and ghosting.

Fast checks of the pieces against independent results (the area method on an exact box-blurred step, the
collimated field's pixel coverage, the ghost memory's arithmetic) and, marked slow, the measurements on the
simulated gantry against the configured truth (chest-wall gap, field margins, ghost model)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from crescent.qc.procedures import _edges_from_profile, _unexposed_mm


def _box_blurred(edges: tuple[float, float], y0: float, pitch: float, n: int) -> np.ndarray:
    """Open (1) between the two edges, 0 elsewhere, integrated over each pixel [y0 + i p, y0 + (i+1) p]."""
    lo = y0 + np.arange(n) * pitch
    return np.clip((np.minimum(lo + pitch, edges[1]) - np.maximum(lo, edges[0])) / pitch, 0.0, 1.0)


@pytest.mark.parametrize("edges", [(7.23, 12.41), (2.0, 7.0), (0.13, 5.9)])
def test_ruler_edges_by_area_are_exact_for_a_pixel_blurred_step(edges):
    v = _box_blurred(edges, 0.0, 0.4, 60)
    e1, e2 = _edges_from_profile(v, 0.0, 0.4)
    assert e1 == pytest.approx(edges[0], abs=1e-9) and e2 == pytest.approx(edges[1], abs=1e-9)
    # noise of 2 % per pixel moves them by a few hundredths of a mm only
    noisy = v + np.random.default_rng(5).normal(0.0, 0.02, v.size)
    e1n, e2n = _edges_from_profile(noisy, 0.0, 0.4)
    assert abs(e1n - edges[0]) < 0.1 and abs(e2n - edges[1]) < 0.1
    assert _edges_from_profile(np.zeros(30), 0.0, 0.4) is None  # no open gap: no reading (the figure is NaN)


def test_unexposed_strip_width():
    assert _unexposed_mm(np.r_[np.zeros(15), np.ones(85)], 0.4) == pytest.approx(6.0)
    assert _unexposed_mm(np.ones(100), 0.4) == 0.0
    # a smooth gain gradient (0.45 at the edge, 1 inside) is not a field edge; a step to 0 on top of it is
    ramp = np.linspace(0.45, 1.2, 100)
    assert _unexposed_mm(ramp, 0.4) == 0.0
    assert _unexposed_mm(np.r_[np.zeros(5), ramp[5:]], 0.4) == pytest.approx(2.0)


def test_collimated_field_covers_pixels_by_area():
    from protocols.geometry import AcquisitionGeometry, DetectorGeometry
    from simulator.imaging.imager import ExposureImager, make_phantom

    g = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=10, cols=10))
    # columns span x = -2 .. 2 mm (0.4 mm pixels); the field ends at x = 1.0 mm, inside the pixel [0.8, 1.2]
    im = ExposureImager(make_phantom("uniform", 10.0, g, seed=0), g, seed=0, field_mm=(-5.0, 10.0, -5.0, 1.0))
    cover = im.field_coverage()
    xs = g.detector.col_centres_mm()
    expected = np.clip((1.0 - (xs - 0.2)) / 0.4, 0.0, 1.0)
    assert np.allclose(cover[0], expected) and np.allclose(cover[:, 0], expected[0])
    assert ExposureImager(make_phantom("uniform", 10.0, g, seed=0), g, seed=0,
                          field_mm=(-5.0, 10.0, -5.0, 5.0)).field_coverage() is None


def test_ghost_memory_arithmetic():
    from simulator.gantry.detector import Ghost

    gh = Ghost(0.01, 60.0, 100.0)
    assert gh.gain((2, 2), 0.0) is None  # nothing exposed yet
    gh.remember(np.array([[1100, 100], [2100, 100]], dtype=np.uint16), 0.0)
    gain = gh.gain((2, 2), 60.0)
    # 1000 ADU recorded, one decay time later: 1 - 0.01 x 1000/1000 x exp(-1)
    assert gain[0, 0] == pytest.approx(1.0 - 0.01 * math.exp(-1.0))
    assert gain[1, 0] == pytest.approx(1.0 - 0.02 * math.exp(-1.0)) and gain[0, 1] == 1.0


@pytest.mark.slow
def test_missed_tissue_and_field_match_the_configured_gantry(tmp_path: Path):
    """Measured from the image against the configured truth: the chest-wall gap (3 mm healthy, 8 mm defect)
    and the ruler's scale = 1 / magnification of the ruler top (21 mm above the detector, 660 mm SID)."""
    from crescent.qc.procedures import field_chest_wall
    from crescent.qc.site import SimulatedSite

    for gap in (3.0, 8.0):
        r = field_chest_wall(SimulatedSite(tmp_path / f"g{gap:g}", defects={"detector": {"chest_wall_gap_mm": gap}}),
                             "constancy")
        fig = {f.name: f for f in r.figures}
        assert fig["missed tissue at the chest wall"].value == pytest.approx(gap, abs=0.1)
        assert fig["missed tissue at the chest wall"].passed == (gap <= 5.0)
        assert fig["ruler scale (ruler mm per detector mm, recorded)"].value == pytest.approx(639.0 / 660.0, abs=0.003)
    # a field edge 6 mm inside the panel on the +x side: seen on the film and as an unexposed strip in the image
    r = field_chest_wall(SimulatedSite(tmp_path / "x", defects={"detector": {"field_margin_mm": [2.0, 3.0, 3.0, -6.0]}}),
                         "constancy")
    fig = {f.name: f for f in r.figures}
    assert fig["X-ray field beyond the detector, +x (film)"].value == -6.0
    assert fig["widest unexposed strip at the image edges"].value == pytest.approx(6.0, abs=0.4)
    assert not r.passed and fig["missed tissue at the chest wall"].passed


@pytest.mark.slow
def test_ghost_image_factor_follows_the_ghost_model(tmp_path: Path):
    """The measured factor against the panel model's own prediction: loss x (open - shielded signal of the first
    projection, 1000 ADU units) x exp(-7 s / 60 s) / Al contrast; and ~0 without ghosting."""
    from crescent.qc.procedures import ghosting
    from crescent.qc.site import SimulatedSite

    def run(loss: float):
        r = ghosting(SimulatedSite(tmp_path / f"l{loss:g}", defects={"detector": {"ghost_loss_per_kadu": loss}}),
                     "constancy")
        return r.figures[0].value, -r.figures[1].value

    none, _ = run(0.0)
    assert abs(none) < 0.02
    delta_kadu = (1435.6 - 69.7) / 1000.0  # open vs 45 mm PMMA, 28 kV 5 mAs, first projection (measured)
    for loss in (0.0025, 0.03):
        gif, contrast = run(loss)
        predicted = loss * delta_kadu * math.exp(-7.0 / 60.0) / contrast
        assert gif == pytest.approx(predicted + none, abs=0.02 + 0.05 * predicted)
