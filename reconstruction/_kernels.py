"""Numba kernels for detector-parallel slices: separable bilinear resampling.

Because a slice ``z = const`` maps to the detector by a magnification and a
shift, the detector column of a voxel depends only on its ``x`` and the row
only on its ``y``. The kernels therefore take 1-D interpolation tables (an
integer left index and a fractional weight per voxel column and per voxel row)
computed once per (projection, slice) in numpy, and do only the 2 x 2 gather
and the multiply-adds in the inner loop: no division, no ray geometry per
voxel.

Index tables use ``-1`` as the left index of a sample that falls outside the
sampled area (it contributes nothing); otherwise ``i0`` is in ``[0, n-2]`` and
the weight ``f`` of sample ``i0 + 1`` is in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def interp_table(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation table for fractional sample indices ``coords`` into ``n`` samples.

    Samples whose coordinate lies within half a sample of the sampled range are
    clamped to the edge; further out they are marked ``-1`` (no contribution).
    Returns ``(i0 int64, f float32)`` with the shape of ``coords``.
    """
    c = np.asarray(coords, dtype=np.float64)
    valid = (c >= -0.5) & (c <= n - 0.5)
    if n < 2:
        i0 = np.where(valid, 0, -1).astype(np.int64)
        return i0, np.zeros(c.shape, dtype=np.float32)
    cc = np.clip(c, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(cc), n - 2).astype(np.int64)
    f = (cc - i0).astype(np.float32)
    i0[~valid] = -1
    return i0, f


@njit(cache=True, inline="always")
def _accumulate_row(
    p0: np.ndarray, p1: np.ndarray, ck: np.ndarray, fk: np.ndarray, w0: float, w1: float, orow: np.ndarray
) -> None:
    """``orow[i] += w0 * lerp(p0, ck[i], fk[i]) + w1 * lerp(p1, ck[i], fk[i])`` for valid ``ck[i] >= 0``."""
    for i in range(orow.size):
        c = ck[i]
        if c < 0:
            continue
        fx = fk[i]
        a = p0[c] + fx * (p0[c + 1] - p0[c])
        b = p1[c] + fx * (p1[c + 1] - p1[c])
        orow[i] += w0 * a + w1 * b


@njit(parallel=True, cache=True, fastmath=True)
def backproject_slice(
    projs: np.ndarray,
    c0: np.ndarray,
    cf: np.ndarray,
    r0: np.ndarray,
    rf: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """Accumulate ``sum_k weights[k] * projs[k](row(y), col(x))`` into ``out``.

    projs: ``(n, R, C)`` float32 (filtered) projections or windows of them.
    c0, cf: ``(n, nx)`` column table; r0, rf: ``(n, ny)`` row table.
    weights: ``(n,)`` float32. out: ``(ny, nx)`` float32, added to.
    """
    n = projs.shape[0]
    ny = out.shape[0]
    for j in prange(ny):
        orow = out[j]
        for k in range(n):
            r = r0[k, j]
            if r < 0:
                continue
            fy = rf[k, j]
            w = weights[k]
            w0 = w * (1.0 - fy)
            w1 = w * fy
            _accumulate_row(projs[k, r], projs[k, r + 1], c0[k], cf[k], w0, w1, orow)


@njit(parallel=True, cache=True, fastmath=True)
def forward_project_view(
    vol: np.ndarray,
    jx0: np.ndarray,
    jxf: np.ndarray,
    jy0: np.ndarray,
    jyf: np.ndarray,
    slab: np.ndarray,
    path: np.ndarray,
    out: np.ndarray,
) -> None:
    """Joseph-style projection of a volume onto one view's detector window.

    vol: ``(nz, ny, nx)`` float32 (attenuation, 1/mm).
    jx0, jxf: ``(nz, C)`` voxel-column table of each detector column per slice;
    jy0, jyf: ``(nz, R)`` voxel-row table of each detector row per slice.
    slab: ``(nz,)`` slice thickness, mm. path: ``(R, C)`` obliquity ``L / s_z``
    (ray length per unit height). out: ``(R, C)`` float32, overwritten with the
    line integrals ``sum_z slab_z * path * vol(z, y(ray), x(ray))``.
    """
    nz = vol.shape[0]
    R, C = out.shape
    for r in prange(R):
        orow = out[r]
        for c in range(C):
            orow[c] = 0.0
        for s in range(nz):
            j = jy0[s, r]
            if j < 0:
                continue
            fy = jyf[s, r]
            w0 = slab[s] * (1.0 - fy)
            w1 = slab[s] * fy
            _accumulate_row(vol[s, j], vol[s, j + 1], jx0[s], jxf[s], w0, w1, orow)
        prow = path[r]
        for c in range(C):
            orow[c] *= prow[c]


@njit(parallel=True, cache=True, fastmath=True)
def backproject_view(
    img: np.ndarray,
    c0: np.ndarray,
    cf: np.ndarray,
    r0: np.ndarray,
    rf: np.ndarray,
    weight: float,
    vol: np.ndarray,
) -> None:
    """Accumulate ``weight * img(row(z, y), col(z, x))`` of one view into every slice of ``vol``.

    img: ``(R, C)`` float32; c0, cf: ``(nz, nx)``; r0, rf: ``(nz, ny)``; vol: ``(nz, ny, nx)`` float32.
    One call per view (the iterative methods' update), parallel over (slice, row).
    """
    nz, ny = vol.shape[0], vol.shape[1]
    for t in prange(nz * ny):
        s = t // ny
        j = t - s * ny
        r = r0[s, j]
        if r < 0:
            continue
        fy = rf[s, j]
        w0 = weight * (1.0 - fy)
        w1 = weight * fy
        _accumulate_row(img[r], img[r + 1], c0[s], cf[s], w0, w1, vol[s, j])
