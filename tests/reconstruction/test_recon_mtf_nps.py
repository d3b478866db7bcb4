"""Slanted-edge MTF and NPS against analytic truth.

Edge images are made by integrating an ideal edge over each pixel's aperture
(``sub x sub`` supersampling, area fraction of the pixel on the bright side),
optionally blurred by a Gaussian of known sigma (the ESF is then the normal CDF
of the distance to the edge). Truth: MTF = |sinc(f p cos a)| |sinc(f p sin a)|
(the square aperture seen along the edge normal at angle a), times
exp(-2 pi^2 sigma^2 f^2) for the Gaussian.
"""

from __future__ import annotations

from math import erf

import numpy as np
import pytest

from reconstruction.analysis.mtf import mtf_at, slanted_edge_mtf
from reconstruction.analysis.nps import nps_1d, nps_2d

_erf = np.vectorize(erf)


def edge_image(n: int, pitch: float, angle_deg: float, sigma_mm: float = 0.0, sub: int = 16,
               transpose: bool = False) -> np.ndarray:
    t = np.radians(angle_deg)
    nx, ny = np.cos(t), -np.sin(t)  # edge normal; edge through the image centre
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    r, c = np.indices((n, n)).astype(float)
    acc = np.zeros((n, n))
    for oy in offs:
        for ox in offs:
            d = ((c + ox - n / 2) * nx + (r + oy - n / 2) * ny) * pitch
            acc += (d > 0) if sigma_mm == 0 else 0.5 * (1 + _erf(d / (np.sqrt(2) * sigma_mm)))
    img = 100.0 + 900.0 * acc / sub**2
    return img.T if transpose else img


def truth(f, pitch, angle_deg, sigma=0.0):
    a = np.radians(angle_deg)
    return np.abs(np.sinc(f * pitch * np.cos(a)) * np.sinc(f * pitch * np.sin(a))) * np.exp(-2 * (np.pi * sigma * f) ** 2)


@pytest.mark.parametrize("angle, transpose", [(3.0, False), (5.0, True)])
def test_pixel_aperture_edge_gives_sinc(angle, transpose):
    pitch = 0.05
    f, m = slanted_edge_mtf(edge_image(200, pitch, angle, transpose=transpose), pitch)
    band = (f > 0) & (f <= 10.0)
    assert np.max(np.abs(m[band] - truth(f[band], pitch, angle))) < 0.02


def test_gaussian_blurred_edge():
    pitch, sigma = 0.05, 0.04
    f, m = slanted_edge_mtf(edge_image(200, pitch, 4.0, sigma_mm=sigma, sub=8), pitch)
    band = (f > 0) & (f <= 10.0)
    assert np.max(np.abs(m[band] - truth(f[band], pitch, 4.0, sigma))) < 0.02
    # a clearly different blur must be told apart
    assert abs(mtf_at(f, m, 5.0) - truth(np.array(5.0), pitch, 4.0, 0.06)) > 0.05


def test_noisy_edge_mtf_still_close():
    pitch = 0.1
    img = edge_image(160, pitch, 2.5, sub=8)
    img = np.random.default_rng(4).poisson(img * 10) / 10.0
    f, m = slanted_edge_mtf(img, pitch)
    band = (f > 0) & (f <= 5.0)
    assert np.max(np.abs(m[band] - truth(f[band], pitch, 2.5))) < 0.05


def test_nps_of_white_and_filtered_noise():
    """White noise: NPS = sigma^2 dx dy. 3-tap smoothing [1,2,1]/4 along x: times cos^4(pi f dx)."""
    rng = np.random.default_rng(7)
    pitch, sigma = 0.1, 3.0
    white = rng.normal(50.0, sigma, (512, 512)) + np.linspace(0, 20, 512)[None, :]  # plus a trend to detrend
    f, nx, ny = nps_1d(white, pitch)
    assert np.mean(nx[1:]) == pytest.approx(sigma**2 * pitch**2, rel=0.05)
    assert np.mean(ny[1:]) == pytest.approx(sigma**2 * pitch**2, rel=0.05)
    sm = 0.25 * (np.roll(white, 1, axis=1) + 2 * white + np.roll(white, -1, axis=1))
    f, nx, ny = nps_1d(sm, pitch)
    expect = sigma**2 * pitch**2 * np.cos(np.pi * f * pitch) ** 4
    sel = np.flatnonzero((f > 0.3) & (f < 4.0))[:30].reshape(6, 5)  # 6 groups of 5 bins: ~3% statistical error
    np.testing.assert_allclose(nx[sel].mean(axis=1), expect[sel].mean(axis=1), rtol=0.1)
    # the cut along y averages f_x bins +/-1..7 of 128, where the x-smoothing passes cos^4(pi k / 128)
    band_gain = np.mean(np.cos(np.pi * np.array([1, 2, 3, 4, 5, 6, 7]) / 128) ** 4)
    assert np.mean(ny[1:]) == pytest.approx(sigma**2 * pitch**2 * band_gain, rel=0.05)
    assert np.mean(sm) == pytest.approx(np.mean(white))
    fu, fv, n2 = nps_2d(white, pitch)
    assert n2.shape == (128, 128) and fu[64] == 0.0
