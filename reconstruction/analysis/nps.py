"""Noise power spectrum, IEC 62220-1 style.

The 2-D NPS from square ROIs (half-overlapping) of a flat (uniform-exposure)
image, each detrended by subtracting a fitted 2-D polynomial (default second
order)::

    NPS(u, v) = (dx dy / (Nx Ny)) <|FFT(ROI - fit)|^2>

in (signal units)^2 mm^2, and 1-D cuts along each axis as the average of the
``cut_halfwidth`` lines of frequency bins either side of the axis, excluding
the axis itself (which carries residual row/column structure).

Example
-------
>>> import numpy as np
>>> img = np.random.default_rng(0).normal(0, 2.0, (512, 512))
>>> f, nps_u, nps_v = nps_1d(img, 0.1)
>>> bool(abs(nps_u.mean() / (4.0 * 0.01) - 1) < 0.1)  # white noise: sigma^2 dx dy
True
"""

from __future__ import annotations

import numpy as np


def _detrend(roi: np.ndarray, order: int) -> np.ndarray:
    n, m = roi.shape
    if order < 0:
        return roi
    y, x = np.mgrid[0:n, 0:m]
    x = (x - m / 2) / m
    y = (y - n / 2) / n
    terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    A = np.stack([t.ravel() for t in terms], axis=1)
    coef, *_ = np.linalg.lstsq(A, roi.ravel(), rcond=None)
    return roi - (A @ coef).reshape(n, m)


def nps_2d(
    image: np.ndarray, pitch_mm: float, roi: int = 128, detrend_order: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D NPS of a uniform image: ``(fu, fv, nps)`` with ``nps`` shape ``(roi, roi)`` fft-shifted.

    fu, fv: frequencies (lp/mm) along columns (x) and rows (y), fft-shifted.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.shape[0] < roi or img.shape[1] < roi:
        raise ValueError(f"image {img.shape} smaller than the ROI size {roi}")
    step = roi // 2
    acc = np.zeros((roi, roi))
    count = 0
    for r in range(0, img.shape[0] - roi + 1, step):
        for c in range(0, img.shape[1] - roi + 1, step):
            d = _detrend(img[r : r + roi, c : c + roi], detrend_order)
            acc += np.abs(np.fft.fft2(d)) ** 2
            count += 1
    nps = acc / count * pitch_mm * pitch_mm / (roi * roi)
    f = np.fft.fftshift(np.fft.fftfreq(roi, d=pitch_mm))
    return f, f.copy(), np.fft.fftshift(nps)


def nps_1d(
    image: np.ndarray, pitch_mm: float, roi: int = 128, detrend_order: int = 2, cut_halfwidth: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D NPS cuts: ``(f_lp_mm, nps_along_x, nps_along_y)`` for ``f >= 0``, (units)^2 mm^2."""
    fu, _, nps = nps_2d(image, pitch_mm, roi, detrend_order)
    c = roi // 2
    band = [c + k for k in range(-cut_halfwidth, cut_halfwidth + 1) if k != 0]
    along_x = nps[band, :].mean(axis=0)[c:]
    along_y = nps[:, band].mean(axis=1)[c:]
    return fu[c:], along_x, along_y
