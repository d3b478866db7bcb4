"""Raw detector images to line integrals ``log(I0 / I)``.

Corrections, in order: subtract the dark (offset) image, divide by the
dark-corrected flat field (gain and heel effect), then take the log against
the unattenuated signal ``I0``. ``I0`` comes from one of:

* a flat-field image taken at the same technique (``flat``; ``I0`` is then
  the flat's own signal, so the ratio is ``(I - dark) / (flat - dark)``);
* an explicit number (``i0``, counts);
* an unattenuated region of the image itself (``i0_region``, a pair of slices),
  e.g. the direct-exposure area beside the breast.

Clipping guards: signals are floored at ``min_counts`` before the log (a dead
or fully attenuated pixel would otherwise give ``inf``), and the result is
capped at ``max_line_integral``. Negative line integrals (noise in the direct
area) are kept unless ``clip_negative`` is set, since clipping them biases the
noise.

Example
-------
>>> import numpy as np
>>> raw = np.full((2, 4, 4), 1000.0); raw[:, 1, 1] = 1000.0 * np.exp(-2.0)
>>> li = line_integrals(raw, i0=1000.0)
>>> round(float(li[0, 1, 1]), 6), abs(float(li[0, 0, 0]))
(2.0, 0.0)
"""

from __future__ import annotations

import numpy as np


_BAND_ELEMENTS = 1 << 20
"""Pixels per band of rows converted at once (float64 temporaries of ~8 MB each)."""


def _rows(x: np.ndarray | float, k: int, band: slice, rows: int) -> np.ndarray | float:
    """The rows ``band`` of projection ``k`` of ``x``: a scalar, an image ``(rows, cols)`` or a stack ``(n, rows, cols)``.

    Arrays whose row axis does not span the image (for example ``(1, 1)`` per-projection values) broadcast whole.
    """
    if np.ndim(x) == 3:
        x = x[k if x.shape[0] > 1 else 0]
    if np.ndim(x) == 2 and x.shape[0] == rows:
        return x[band]
    return x


def line_integrals(
    raw: np.ndarray,
    flat: np.ndarray | None = None,
    dark: np.ndarray | float | None = None,
    i0: float | np.ndarray | None = None,
    i0_region: tuple[slice, slice] | None = None,
    min_counts: float = 0.5,
    max_line_integral: float = 20.0,
    clip_negative: bool = False,
) -> np.ndarray:
    """Convert raw images ``(n, rows, cols)`` or ``(rows, cols)`` to float32 line integrals.

    Parameters
    ----------
    raw: detector counts (ADU or photons), any numeric dtype.
    flat: flat-field image(s) at the same technique, ``(rows, cols)`` or like ``raw``.
    dark: offset image or scalar, subtracted from ``raw`` and ``flat``.
    i0: unattenuated, dark-corrected signal per pixel (counts): scalar, per-projection ``(n,)`` or an image.
    i0_region: ``(row_slice, col_slice)`` of an unattenuated area, used when ``flat`` and ``i0`` are absent.
    min_counts: floor on the corrected signal before the log, counts.
    max_line_integral: cap on the result (dimensionless).
    clip_negative: clip negative line integrals to 0.
    """
    a = np.asarray(raw)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"raw images must be (n, rows, cols) or (rows, cols), got shape {np.shape(raw)}")
    n = a.shape[0]
    d = 0.0 if dark is None else np.asarray(dark, dtype=np.float64)
    fl = None
    if flat is not None:
        fl = np.asarray(flat)
        if fl.ndim == 2:
            fl = fl[None]
    else:
        if i0 is not None:
            ref = np.asarray(i0, dtype=np.float64)
            if ref.ndim == 1:
                ref = ref[:, None, None]
        elif i0_region is not None:
            rs, cs = i0_region
            ref = np.array([(a[k, rs, cs].astype(np.float64) - d).mean() for k in range(n)])[:, None, None]
        else:
            raise ValueError("give a flat field, an i0 value or an unattenuated i0_region")
        if np.any(ref <= 0):
            raise ValueError("the unattenuated signal I0 must be positive")
        ref = np.broadcast_to(ref, (n,) + ref.shape[1:]) if ref.ndim == 3 else ref
    # one projection and one band of rows at a time (float64 inside, float32 out): a stack of 50 um
    # frames in float64 temporaries would be several GB, and even one frame's temporaries are ~0.3 GB
    out = np.empty(a.shape, dtype=np.float32)
    rows = a.shape[1]
    step = max(1, _BAND_ELEMENTS // max(a.shape[2], 1))
    for k in range(n):
        for r0 in range(0, rows, step):
            band = slice(r0, min(r0 + step, rows))
            dk = _rows(d, k, band, rows)
            sig = a[k, band].astype(np.float64)
            sig -= dk
            if fl is not None:
                den = fl[k if fl.shape[0] > 1 else 0, band].astype(np.float64)
                den -= dk
                np.maximum(den, min_counts, out=den)
            else:
                den = _rows(ref, k, band, rows)
            np.maximum(sig, min_counts, out=sig)
            sig /= den
            line = np.log(sig, out=sig)
            np.negative(line, out=line)
            np.minimum(line, max_line_integral, out=line)
            if clip_negative:
                np.maximum(line, 0.0, out=line)
            out[k, band] = line
    return out[0] if single else out
