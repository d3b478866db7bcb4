"""Signal-difference-to-noise and contrast-to-noise of lesions (masses, calcifications).

A lesion is measured with a disc ROI and a background annulus around it, in
pixel units of the image (a projection, a 2D view or a reconstructed slice)::

    SDNR = (mean_lesion - mean_background) / std_background
    CNR  = |mean_lesion - mean_background| / std_background

The background standard deviation includes whatever varies in the annulus:
quantum noise and anatomical (structured) noise alike, which is what a
reader sees.

Example
-------
>>> import numpy as np
>>> img = np.random.default_rng(1).normal(0.0, 1.0, (101, 101))
>>> r, c = np.indices(img.shape); img[(r - 50) ** 2 + (c - 50) ** 2 <= 100] += 5.0
>>> round(sdnr(img, (50, 50), 8, (14, 30)))
5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LesionContrast:
    """Signal, background mean and standard deviation, and the ratios (image units)."""

    signal: float
    background: float
    noise: float

    @property
    def sdnr(self) -> float:
        """(signal - background) / noise."""
        return (self.signal - self.background) / self.noise

    @property
    def cnr(self) -> float:
        """|signal - background| / noise."""
        return abs(self.signal - self.background) / self.noise


def disc_masks(
    shape: tuple[int, int], centre_rc: tuple[float, float], radius_px: float, annulus_px: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the lesion disc and the background annulus ``(inner, outer)`` radii in pixels."""
    r, c = np.indices(shape)
    d2 = (r - centre_rc[0]) ** 2 + (c - centre_rc[1]) ** 2
    inner, outer = annulus_px
    if not radius_px <= inner < outer:
        raise ValueError(f"need radius <= inner < outer, got {radius_px}, {annulus_px}")
    return d2 <= radius_px**2, (d2 >= inner**2) & (d2 <= outer**2)


def lesion_contrast(
    image: np.ndarray, centre_rc: tuple[float, float], radius_px: float, annulus_px: tuple[float, float]
) -> LesionContrast:
    """Measure a lesion at ``centre_rc`` (row, col) with a disc ROI and a background annulus."""
    img = np.asarray(image, dtype=np.float64)
    roi, bg = disc_masks(img.shape, centre_rc, radius_px, annulus_px)
    if roi.sum() == 0 or bg.sum() < 2:
        raise ValueError("lesion ROI or background annulus lies outside the image")
    return LesionContrast(float(img[roi].mean()), float(img[bg].mean()), float(img[bg].std(ddof=1)))


def sdnr(image: np.ndarray, centre_rc: tuple[float, float], radius_px: float, annulus_px: tuple[float, float]) -> float:
    """SDNR of a lesion (see module docstring)."""
    return lesion_contrast(image, centre_rc, radius_px, annulus_px).sdnr


def cnr(image: np.ndarray, centre_rc: tuple[float, float], radius_px: float, annulus_px: tuple[float, float]) -> float:
    """CNR of a lesion (see module docstring)."""
    return lesion_contrast(image, centre_rc, radius_px, annulus_px).cnr


def sdnr_known_signal(
    signal_image: np.ndarray,
    image: np.ndarray,
    centre_rc: tuple[float, float],
    radius_px: float,
    annulus_px: tuple[float, float],
) -> float:
    """SDNR with the signal known exactly: signal difference from a noise- and background-free image.

    signal_image: the lesion alone through the same (linear) imaging chain, e.g. the
    reconstruction of the lesion's own line integrals; image: the real image, whose
    annulus gives the noise (quantum plus anatomical). This avoids chance overlap of
    background structure with the lesion ROI inflating or cancelling the signal.
    """
    s = lesion_contrast(signal_image, centre_rc, radius_px, annulus_px)
    n = lesion_contrast(image, centre_rc, radius_px, annulus_px)
    return (s.signal - s.background) / n.noise
