"""Finding small bright objects (beads, calcifications, markers) in line-integral images.

Images are line integrals (attenuating objects are bright), indexed
``[row, col]``. Centroids are in fractional pixel indices; convert them to the
gantry frame with :meth:`reconstruction.geometry.ProjectionGeometry.x_of_col`
and ``y_of_row``.

Example
-------
>>> import numpy as np
>>> img = np.zeros((32, 32)); img[10:13, 20:23] = 1.0
>>> blobs = find_blobs(img)
>>> [round(float(v), 3) for v in blobs[0]]
[11.0, 21.0]
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _background(image: np.ndarray, size: int) -> np.ndarray:
    """Smooth background by a median filter over ``size`` pixels."""
    return ndimage.median_filter(image, size=size, mode="nearest")


def weighted_centroid(patch: np.ndarray, fraction: float = 0.2) -> tuple[float, float]:
    """Centroid (row, col) of a background-subtracted patch, weighting pixels above ``fraction`` of the peak."""
    w = np.where(patch > fraction * patch.max(), patch, 0.0)
    total = w.sum()
    if total <= 0:
        raise ValueError("no signal above background in the patch")
    r, c = np.indices(patch.shape)
    return float((w * r).sum() / total), float((w * c).sum() / total)


def find_blobs(
    image: np.ndarray,
    threshold: float | None = None,
    background_px: int = 0,
    min_pixels: int = 3,
    fraction: float = 0.2,
    smooth_px: float = 1.0,
) -> np.ndarray:
    """Centroids ``(k, 2)`` (row, col) of bright blobs, brightest first.

    image: ``(rows, cols)`` line integrals. background_px: if > 0, a median
    filter of that size is subtracted first (use ~3x the blob size on
    structured backgrounds); otherwise the image median is subtracted.
    threshold: detection level above background (default: 6 robust standard
    deviations of the smoothed image). Each detected component is refined by
    a weighted centroid of the unsmoothed, background-subtracted pixels
    (weights above ``fraction`` of the blob's peak) in its bounding box grown
    by two pixels.
    """
    img = np.asarray(image, dtype=np.float64)
    bg = _background(img, background_px) if background_px > 0 else np.median(img)
    sub = img - bg
    sm = ndimage.gaussian_filter(sub, smooth_px) if smooth_px > 0 else sub
    if threshold is None:
        mad = np.median(np.abs(sm - np.median(sm))) * 1.4826
        threshold = 6.0 * max(mad, 1e-12)
    labels, n = ndimage.label(sm > threshold)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or (labels[sl] == k).sum() < min_pixels:
            continue
        r0 = max(sl[0].start - 2, 0)
        c0 = max(sl[1].start - 2, 0)
        patch = sub[r0 : sl[0].stop + 2, c0 : sl[1].stop + 2]
        mask = labels[r0 : sl[0].stop + 2, c0 : sl[1].stop + 2]
        patch = np.where((mask == k) | (mask == 0), patch, 0.0)
        rr, cc = weighted_centroid(patch, fraction)
        out.append((r0 + rr, c0 + cc, float(sm[sl].max())))
    out.sort(key=lambda t: -t[2])
    return np.array([(r, c) for r, c, _ in out]).reshape(-1, 2)


def centroid_near(image: np.ndarray, row: float, col: float, radius_px: int, fraction: float = 0.2) -> tuple[float, float]:
    """Refined centroid (row, col) of the blob around an approximate mark, within ``radius_px``.

    The background is the median of the window's border pixels.
    """
    r0, c0 = int(round(row)) - radius_px, int(round(col)) - radius_px
    if r0 < 0 or c0 < 0 or r0 + 2 * radius_px + 1 > image.shape[0] or c0 + 2 * radius_px + 1 > image.shape[1]:
        raise ValueError(f"mark ({row}, {col}) is closer than {radius_px} px to the image edge")
    win = np.asarray(image[r0 : r0 + 2 * radius_px + 1, c0 : c0 + 2 * radius_px + 1], dtype=np.float64)
    border = np.concatenate([win[0], win[-1], win[1:-1, 0], win[1:-1, -1]])
    rr, cc = weighted_centroid(win - np.median(border), fraction)
    return r0 + rr, c0 + cc
