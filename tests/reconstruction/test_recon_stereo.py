"""Stereotactic localisation from a +/-15 degree pair, marked by the blob detector on simulated images.

Lesions: 1 mm spheres (mu 0.8 /mm, a calcification/clip-like marker) at 10
positions spread through a 60 mm compressed breast (support top at 20 mm, so
z from 23 to 77 mm) and across x and y, inside a uniform 60 mm slab of
mu = 0.05 /mm. Each pair is simulated with exact cone-beam line integrals from
the focal spots of exposures whose actual windows are off the nominal +/-15 deg
by a few tenths of a degree; the localiser only gets the images, the exposure
records and the geometry. Noise: Poisson, 2000 incident photons per 0.1 mm
pixel (about 90 behind the slab).
"""

from __future__ import annotations

import numpy as np
import pytest
from _analytic import Slab, make_header, noisy, project, sphere

from reconstruction import from_header, line_integrals
from reconstruction.markers import find_blobs
from reconstruction.stereo import NeedleSpec, localise, needle_plan

LESIONS = [(-25.0, 20.0, 23.0), (0.0, 45.0, 30.0), (20.0, 70.0, 36.0), (-10.0, 30.0, 42.0), (28.0, 55.0, 48.0),
           (5.0, 15.0, 54.0), (-28.0, 75.0, 60.0), (12.0, 38.0, 66.0), (-5.0, 60.0, 72.0), (25.0, 25.0, 77.0)]
THICKNESS = 60.0


def _header():
    return make_header(np.array([15.0, -15.0]), 0.1, 1000, 1500, THICKNESS, offset_y_mm=0.0,
                       jitter_deg=np.array([0.23, -0.17]))


def _marks(images: np.ndarray, hdr) -> list[tuple[float, float]]:
    pg = from_header(hdr)
    out = []
    for img in images:
        blobs = find_blobs(img)
        assert blobs.shape[0] >= 1
        r, c = blobs[0]
        out.append((float(pg.x_of_col(c)), float(pg.y_of_row(r))))
    return out


def _localise_all(photons: float | None):
    hdr = _header()
    errs, errs_par = [], []
    for i, lesion in enumerate(LESIONS):
        li = project(hdr, [Slab(20.0, 20.0 + THICKNESS, 0.05), sphere(lesion, 1.0, 0.8)])
        if photons is not None:
            li = line_integrals(noisy(li, photons, seed=100 + i), i0=photons)
        ma, mb = _marks(li, hdr)
        ea, eb = (p.exposure for p in hdr.projections)
        res = localise(hdr.geometry, ea, eb, ma, mb)
        errs.append(np.linalg.norm(res.position_mm - np.array(lesion)))
        errs_par.append(np.linalg.norm(res.parallel_mm - np.array(lesion)))
    return np.array(errs), np.array(errs_par)


@pytest.fixture(scope="module")
def noiseless():
    return _localise_all(None)


def test_localisation_error_without_noise_below_0p2_mm(noiseless):
    errs, _ = noiseless
    assert errs.max() < 0.2


def test_exact_triangulation_beats_parallel_approximation(noiseless):
    errs, errs_par = noiseless
    assert errs_par.max() > 1.0  # magnification and the off-centre source matter at these heights
    assert errs.max() < 0.2 * errs_par.max()


def test_localisation_error_with_detector_noise_below_1_mm():
    errs, _ = _localise_all(2000.0)
    assert errs.max() < 1.0


def test_needle_plan_depths_by_hand():
    hdr = _header()
    plan = needle_plan(np.array([5.0, 40.0, 50.0]), hdr.geometry, THICKNESS,
                       NeedleSpec(throw_mm=20.0, tip_to_aperture_mm=8.0, min_margin_mm=4.0))
    # paddle at 20 + 60 = 80 mm; target 30 mm below it; fired tip 8 mm past the target; pre-fire 20 mm shallower
    assert plan.depth_mm == pytest.approx(30.0)
    assert plan.postfire_tip_depth_mm == pytest.approx(38.0)
    assert plan.prefire_depth_mm == pytest.approx(18.0)
    assert plan.margin_mm == pytest.approx(22.0)
    assert plan.safe
    np.testing.assert_allclose(plan.entry_mm, [5.0, 40.0, 80.0])
    deep = needle_plan(np.array([5.0, 40.0, 22.0]), hdr.geometry, THICKNESS)  # 2 mm above the support
    assert not deep.safe and deep.margin_mm < 0
    with pytest.raises(ValueError, match="outside the compressed breast"):
        needle_plan(np.array([0.0, 40.0, 85.0]), hdr.geometry, THICKNESS)
