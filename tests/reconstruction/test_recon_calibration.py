"""Geometric calibration recovers SID, rotation-centre height and detector offset from a bead phantom.

Truth: SID 650.0 mm, pivot 47.3 mm, detector offset (+0.6, -0.4) mm (a gantry
built off its nominal 660 / 40 / (0, 0) drawing). Phantom: 20 beads of 1 mm
(mu 2 /mm) on a staggered grid in three layers at z = 28, 48 and 68 mm plus two at 38 and 58 mm, in a
PMMA-like slab (mu 0.05 /mm, 20-75 mm). Nine exposures over +/-12.5 deg with
actual angles off the plan. Images: exact cone-beam line integrals onto a
0.1 mm detector, Poisson noise at 3000 photons per pixel. The calibration
starts from the nominal geometry and only sees images, exposure records and
the bead positions.
"""

from __future__ import annotations

import numpy as np
import pytest
from _analytic import Slab, make_header, noisy, project, sphere

from reconstruction import line_integrals
from reconstruction.calibration import calibrate

BEADS = np.array([[x + (6.0 if k % 2 else 0.0), y + 4.0 * k, z]
                  for k, z in enumerate((28.0, 48.0, 68.0))
                  for x in (-24.0, -8.0, 8.0, 24.0) for y in (12.0, 30.0)][:18] + [[0.0, 45.0, 38.0], [0.0, 50.0, 58.0]])


@pytest.fixture(scope="module")
def result():
    angles = np.linspace(-12.5, 12.5, 9)
    jitter = np.random.default_rng(3).uniform(-0.3, 0.3, angles.size)
    kw = dict(angles_deg=angles, pitch_mm=0.1, rows=700, cols=900, thickness_mm=55.0, jitter_deg=jitter)
    truth = make_header(sid_mm=650.0, pivot_mm=47.3, offset_x_mm=0.6, offset_y_mm=-0.4, **kw)
    nominal = make_header(**kw)
    objs = [Slab(20.0, 75.0, 0.05)] + [sphere(tuple(b), 1.0, 2.0) for b in BEADS]
    images = line_integrals(noisy(project(truth, objs), 3000.0, seed=9), i0=3000.0)
    return calibrate(images, nominal, BEADS)


def test_calibration_recovers_sid_and_pivot_to_half_a_millimetre(result):
    assert result.n_marks >= 0.9 * 9 * len(BEADS)
    assert result.sid_mm == pytest.approx(650.0, abs=0.5)
    assert result.pivot_height_mm == pytest.approx(47.3, abs=0.5)


def test_calibration_recovers_detector_offset(result):
    assert result.offset_x_mm == pytest.approx(0.6, abs=0.1)
    assert result.offset_y_mm == pytest.approx(-0.4, abs=0.1)
    assert result.rms_residual_mm < 0.05
