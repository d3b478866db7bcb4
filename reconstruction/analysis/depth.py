"""Depth behaviour of a reconstruction: artifact spread function and depth resolution.

Artifact spread function (ASF, Wu et al. 2004; used by Zhang et al., Med Phys 33, 2006)::

    ASF(z) = (mean_feature(z) - mean_bg(z)) / (mean_feature(z0) - mean_bg(z0))

with ``z0`` the in-focus slice, the feature ROI fixed at the object's in-plane
position and a background ROI beside it. Depth resolution is the FWHM of an
in-focus object's profile across slices (linear interpolation at half maximum
above the baseline, slices of any spacing).

Example
-------
>>> import numpy as np
>>> z = np.arange(0.0, 20.0, 0.05)
>>> prof = np.exp(-0.5 * ((z - 10.0) / 1.0) ** 2)
>>> abs(fwhm(z, prof) - 2.3548) < 0.01  # 2 sqrt(2 ln 2) sigma
True
"""

from __future__ import annotations

import numpy as np


def focus_profile(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``volume[z][mask]`` for every slice: ``(nz,)``. volume ``(nz, ny, nx)``, mask ``(ny, nx)``."""
    m = np.asarray(mask, dtype=bool)
    return np.array([np.asarray(s)[m].mean() for s in volume])


def in_focus_slice(volume: np.ndarray, mask: np.ndarray, background: np.ndarray | None = None) -> int:
    """Index of the slice where the feature ROI (minus background ROI, if given) is highest."""
    p = focus_profile(volume, mask)
    if background is not None:
        p = p - focus_profile(volume, background)
    return int(np.argmax(p))


def artifact_spread(volume: np.ndarray, feature: np.ndarray, background: np.ndarray, z0: int | None = None) -> np.ndarray:
    """ASF over slices ``(nz,)`` normalised to 1 at the in-focus slice ``z0`` (default: its maximum)."""
    diff = focus_profile(volume, feature) - focus_profile(volume, background)
    k = int(np.argmax(diff)) if z0 is None else z0
    if diff[k] == 0:
        raise ValueError("feature and background are equal in the in-focus slice")
    return diff / diff[k]


def fwhm(z_mm: np.ndarray, profile: np.ndarray, baseline: float | None = None) -> float:
    """Full width at half maximum (mm) of a single-peaked profile sampled at ``z_mm``.

    baseline: level subtracted first (default: the smaller of the profile's end values).
    """
    z = np.asarray(z_mm, dtype=np.float64)
    p = np.asarray(profile, dtype=np.float64)
    base = min(p[0], p[-1]) if baseline is None else baseline
    p = p - base
    k = int(np.argmax(p))
    half = 0.5 * p[k]
    i = k
    while i > 0 and p[i - 1] > half:
        i -= 1
    j = k
    while j < p.size - 1 and p[j + 1] > half:
        j += 1
    if i == 0 or j == p.size - 1:
        raise ValueError("profile does not fall to half maximum on both sides")
    zl = z[i - 1] + (half - p[i - 1]) * (z[i] - z[i - 1]) / (p[i] - p[i - 1])
    zr = z[j] + (half - p[j]) * (z[j + 1] - z[j]) / (p[j + 1] - p[j])
    return float(zr - zl)
