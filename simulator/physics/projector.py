"""Cone-beam projection of phantoms onto the flat detector.

Theory of operation
-------------------
Rays run from the actual focal-spot position ``s`` (gantry frame, mm) to
every detector pixel centre ``d`` on ``z = 0``. Because the detector and the
voxel slices are parallel, the ray meets the plane ``z = z_k`` at::

    p = s + (d - s) * (s_z - z_k) / s_z

i.e. slice ``k`` maps to the detector by a magnification ``s_z/(s_z - z_k)``
and a shift (:func:`protocols.geometry.magnification`). In voxel units the
column coordinate depends only on the detector column and the row
coordinate only on the detector row: each slice is a separable 1-D
resampling. Per slice and pixel we sample the label volume bilinearly in the
slice plane (Joseph-style) and add the four weights to the line integral of
each neighbour's *material*; the path through a slice is ``dz / cos(gamma)``
with ``cos(gamma) = s_z / |d - s|``. One pass over the label volume yields the
per-material line integrals ``L[m, row, col]`` in mm.

Analytic objects are intersected exactly (:mod:`.phantoms.analytic`). The
polyenergetic, energy-integrating signal is then::

    S = sum_E w(E) exp(-sum_m mu_m(E) L_m),   w(E) = fluence x pixel area x eta(E) x E

computed by :func:`polyenergetic`, which also returns the second moment
``sum_E w(E) E exp(...)`` needed for the compound-Poisson noise of an
energy-integrating detector.

Example
-------
>>> from protocols.geometry import DetectorGeometry
>>> from simulator.physics.phantoms.analytic import AnalyticPhantom, AnalyticObject, Sphere
>>> det = DetectorGeometry(native_pitch_mm=0.5, rows=8, cols=8)
>>> ph = AnalyticPhantom([AnalyticObject(Sphere((0.0, 2.0, 30.0), 3.0), 2)])
>>> L = analytic_line_integrals(ph, (0.0, 0.0, 660.0), det, [2])
>>> L.shape
(1, 8, 8)
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from protocols.geometry import DetectorGeometry
from simulator.physics.phantoms.analytic import AnalyticPhantom, chord_lengths
from simulator.physics.phantoms.voxel import VoxelPhantom


def pixel_grid(det: DetectorGeometry, oversample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Detector sample positions (x of columns, y of rows) in mm.

    With ``oversample = q > 1`` each pixel is split into q x q sub-pixels whose
    centres are returned (``cols*q`` and ``rows*q`` positions), so that binning
    them back integrates the signal over the pixel's area (the del aperture).
    """
    xs = det.col_centres_mm()
    ys = det.row_centres_mm()
    if oversample == 1:
        return xs, ys
    off = (np.arange(oversample) + 0.5) / oversample - 0.5
    p = det.pitch_mm
    return (xs[:, None] + off[None, :] * p).ravel(), (ys[:, None] + off[None, :] * p).ravel()


def label_lut(material_labels: list[int]) -> np.ndarray:
    """256-entry table: voxel label -> index into ``material_labels`` (or -1 for air/unlisted)."""
    lut = np.full(256, -1, dtype=np.int32)
    for m, lab in enumerate(material_labels):
        lut[lab] = m
    return lut


@nb.njit(cache=True, parallel=True, fastmath=True)
def _voxel_kernel(labels, lut, n_mat, x0, y0, z0, dx, dy, dz, sx, sy, sz, xs, ys, out):  # pragma: no cover - numba
    nz, ny, nx = labels.shape
    rows = ys.size
    cols = xs.size
    for r in nb.prange(rows):
        acc = np.zeros((cols, n_mat), dtype=np.float32)
        yd = ys[r]
        for k in range(nz):
            zk = z0 + k * dz
            f = (sz - zk) / sz  # fraction of the source->pixel vector at which the ray meets slice k
            fy = (sy + (yd - sy) * f - y0) / dy
            if fy <= -1.0 or fy >= ny:
                continue
            j0 = int(math.floor(fy))
            wy = fy - j0
            # column mapping fx = a + b * c (b > 0 for increasing xs)
            a = (sx + (xs[0] - sx) * f - x0) / dx
            b = (xs[1] - xs[0]) * f / dx if cols > 1 else 1.0
            c_lo = int(math.ceil((-1.0 - a) / b))
            c_hi = int(math.floor((nx - a) / b))
            if c_lo < 0:
                c_lo = 0
            if c_hi > cols - 1:
                c_hi = cols - 1
            j0_ok = j0 >= 0
            j1_ok = j0 + 1 < ny
            for c in range(c_lo, c_hi + 1):
                fx = a + b * c
                i0 = int(math.floor(fx))
                wx = fx - i0
                i0_ok = i0 >= 0
                i1_ok = i0 + 1 < nx
                l00 = labels[k, j0, i0] if (j0_ok and i0_ok) else 0
                l01 = labels[k, j0, i0 + 1] if (j0_ok and i1_ok) else 0
                l10 = labels[k, j0 + 1, i0] if (j1_ok and i0_ok) else 0
                l11 = labels[k, j0 + 1, i0 + 1] if (j1_ok and i1_ok) else 0
                if l00 == l01 and l00 == l10 and l00 == l11:
                    m = lut[l00]
                    if m >= 0:
                        acc[c, m] += 1.0
                    continue
                m = lut[l00]
                if m >= 0:
                    acc[c, m] += (1.0 - wx) * (1.0 - wy)
                m = lut[l01]
                if m >= 0:
                    acc[c, m] += wx * (1.0 - wy)
                m = lut[l10]
                if m >= 0:
                    acc[c, m] += (1.0 - wx) * wy
                m = lut[l11]
                if m >= 0:
                    acc[c, m] += wx * wy
        for c in range(cols):
            ddx = xs[c] - sx
            ddy = yd - sy
            sec = math.sqrt(ddx * ddx + ddy * ddy + sz * sz) / sz
            for m in range(n_mat):
                out[m, r, c] = acc[c, m] * dz * sec


def voxel_line_integrals(phantom: VoxelPhantom, source: tuple[float, float, float], det: DetectorGeometry,
                         material_labels: list[int], *, oversample: int = 1,
                         out: np.ndarray | None = None) -> np.ndarray:
    """Per-material line integrals (mm) through a voxel phantom, shape ``(len(material_labels), rows*q, cols*q)``.

    ``source`` is the focal spot (mm, gantry frame); it must lie above the
    phantom. Voxels whose label is not in ``material_labels`` count as air.
    """
    xs, ys = pixel_grid(det, oversample)
    sx, sy, sz = (float(v) for v in source)
    dz, dy, dx = phantom.voxel_mm
    top = phantom.origin_mm[2] + phantom.shape[0] * dz
    if sz <= top:
        raise ValueError(f"focal spot z={sz} mm is not above the phantom top z={top} mm")
    n_mat = len(material_labels)
    if out is None:
        out = np.zeros((n_mat, ys.size, xs.size), dtype=np.float32)
    if n_mat == 0:
        return out
    x0 = phantom.origin_mm[0] + 0.5 * dx
    y0 = phantom.origin_mm[1] + 0.5 * dy
    z0 = phantom.origin_mm[2] + 0.5 * dz
    _voxel_kernel(phantom.labels, label_lut(material_labels), n_mat, x0, y0, z0, dx, dy, dz, sx, sy, sz,
                  np.ascontiguousarray(xs), np.ascontiguousarray(ys), out)
    return out


def analytic_line_integrals(phantom: AnalyticPhantom, source: tuple[float, float, float], det: DetectorGeometry,
                            material_labels: list[int], *, oversample: int = 1, out: np.ndarray | None = None,
                            rows_per_chunk: int = 256) -> np.ndarray:
    """Exact per-material line integrals (mm) of analytic objects; adds into ``out`` if given.

    Objects with ``replaces`` subtract their chord from the displaced material.
    """
    xs, ys = pixel_grid(det, oversample)
    index = {lab: m for m, lab in enumerate(material_labels)}
    if out is None:
        out = np.zeros((len(material_labels), ys.size, xs.size), dtype=np.float32)
    src = np.asarray(source, dtype=np.float64)
    for obj in phantom.objects:
        lo, hi = obj.shape.bounds()
        r_lo, r_hi, c_lo, c_hi = _footprint(src, lo, hi, xs, ys)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        for r0 in range(r_lo, r_hi, rows_per_chunk):
            r1 = min(r_hi, r0 + rows_per_chunk)
            yy, xx = np.meshgrid(ys[r0:r1], xs[c_lo:c_hi], indexing="ij")
            pts = np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], axis=1)
            chord = chord_lengths(obj.shape, src, pts).reshape(xx.shape).astype(np.float32)
            if obj.label in index:
                out[index[obj.label], r0:r1, c_lo:c_hi] += chord
            if obj.replaces is not None and obj.replaces in index:
                out[index[obj.replaces], r0:r1, c_lo:c_hi] -= chord
    np.maximum(out, 0.0, out=out)
    return out


def _footprint(src: np.ndarray, lo: np.ndarray, hi: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[int, int, int, int]:
    """Row/column index range of the detector shadow of a bounding box (conservative)."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    z = np.minimum(corners[:, 2], src[2] - 1e-6)
    m = src[2] / (src[2] - z)
    px = src[0] + (corners[:, 0] - src[0]) * m
    py = src[1] + (corners[:, 1] - src[1]) * m
    pad_x = 2 * abs(xs[1] - xs[0]) if xs.size > 1 else 1.0
    pad_y = 2 * abs(ys[1] - ys[0]) if ys.size > 1 else 1.0
    c_lo = int(np.searchsorted(xs, px.min() - pad_x))
    c_hi = int(np.searchsorted(xs, px.max() + pad_x))
    r_lo = int(np.searchsorted(ys, py.min() - pad_y))
    r_hi = int(np.searchsorted(ys, py.max() + pad_y))
    return r_lo, r_hi, c_lo, c_hi


@nb.njit(cache=True, parallel=True, fastmath=True)
def _poly_kernel(L, mu, w1, w2, out1, out2):  # pragma: no cover - numba
    n_mat, rows, cols = L.shape
    n_e = w1.size
    t1 = 0.0
    t2 = 0.0
    for e in range(n_e):
        t1 += w1[e]
        t2 += w2[e]
    for r in nb.prange(rows):
        lv = np.empty(n_mat, dtype=np.float64)
        for c in range(cols):
            any_l = False
            for m in range(n_mat):
                lv[m] = L[m, r, c]
                if lv[m] != 0.0:
                    any_l = True
            if not any_l:  # unattenuated ray: the open-field sums
                out1[r, c] = t1
                out2[r, c] = t2
                continue
            s1 = 0.0
            s2 = 0.0
            for e in range(n_e):
                expo = 0.0
                for m in range(n_mat):
                    expo += mu[m, e] * lv[m]
                t = math.exp(-expo)
                s1 += w1[e] * t
                s2 += w2[e] * t
            out1[r, c] = s1
            out2[r, c] = s2


def polyenergetic(L: np.ndarray, mu: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy sums over bins: ``S1 = sum_E w1 exp(-mu.L)`` and ``S2 = sum_E w2 exp(-mu.L)``.

    ``L``: (n_mat, rows, cols) mm; ``mu``: (n_mat, n_E) 1/mm; ``w1, w2``: (n_E,).
    Returns two float64 arrays (rows, cols).
    """
    n_mat, rows, cols = L.shape
    out1 = np.empty((rows, cols), dtype=np.float64)
    out2 = np.empty((rows, cols), dtype=np.float64)
    if n_mat == 0:
        out1[:] = w1.sum()
        out2[:] = w2.sum()
        return out1, out2
    _poly_kernel(np.ascontiguousarray(L, dtype=np.float32), np.ascontiguousarray(mu, dtype=np.float64),
                 np.ascontiguousarray(w1, dtype=np.float64), np.ascontiguousarray(w2, dtype=np.float64), out1, out2)
    return out1, out2


def bin_sum(img: np.ndarray, q: int) -> np.ndarray:
    """Sum q x q blocks of a (rows*q, cols*q) image."""
    if q == 1:
        return img
    r, c = img.shape
    return img.reshape(r // q, q, c // q, q).sum(axis=(1, 3))
