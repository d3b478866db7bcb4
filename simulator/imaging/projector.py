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

Run integration (why it is fast). Along a voxel row the labels come in long
runs (air outside the breast, adipose/glandular texture at the 0.5 mm scale
inside). With bilinear weights along x, every detector column whose two x
neighbours lie inside one run of material m receives exactly weight 1 for m,
so a run contributes a constant over an interval of columns: it is recorded
in O(1) in a difference array and recovered by one prefix sum per detector
row. Only the columns that straddle a run boundary are evaluated sample by
sample. The result equals the sample-by-sample definition
(:func:`voxel_line_integrals_dense`, kept as the reference) to float
rounding; the cost scales with the number of runs, not of voxels, and air
costs nothing. The run-length encoding is built once per phantom
(:meth:`~simulator.imaging.phantoms.voxel.VoxelPhantom.row_runs`).

Analytic objects are intersected exactly (:mod:`.phantoms.analytic`). The
polyenergetic, energy-integrating signal is then::

    S = sum_E w(E) exp(-sum_m mu_m(E) L_m),   w(E) = fluence x pixel area x eta(E) x E

computed by :func:`polyenergetic`, which also returns the second moment
``sum_E w(E) E exp(...)`` needed for the compound-Poisson noise of an
energy-integrating detector.

Example
-------
>>> from protocols.geometry import DetectorGeometry
>>> from simulator.imaging.phantoms.analytic import AnalyticPhantom, AnalyticObject, Sphere
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
from simulator.imaging.phantoms.analytic import AnalyticPhantom, chord_lengths
from simulator.imaging.phantoms.voxel import VoxelPhantom


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
    """Reference: the bilinear slice-by-slice definition evaluated voxel sample by voxel sample."""
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


@nb.njit(inline="always")
def _cf(p, a, invb, width):  # pragma: no cover - numba
    """First column c (clipped to [0, width]) whose sample fx = a + c / invb is >= voxel coordinate p.

    Every voxel boundary uses this same expression, so the column intervals of
    adjacent runs and boundaries partition the columns exactly.
    """
    c = math.ceil((p - a) * invb)
    if c < 0:
        return 0
    if c > width:
        return width
    return int(c)


@nb.njit(cache=True, parallel=True)
def _runs_kernel(offsets, starts, rlabels, nz, ny, nx, lut, n_mat, y0, z0, dy, dz, sx, sy, sz, xs, ys,
                 a_k, b_k, c_lo, c_hi, n_chunks, out):  # pragma: no cover - numba
    """Same bilinear slice-by-slice line integrals, integrated run by run along x.

    For detector row r and slice k the two voxel rows j0, j0+1 enter with the
    y weights (1-wy, wy). Along a voxel row, detector column c samples
    fx = a_k + b_k c (the x mapping depends on the slice only, not on the
    row). Columns whose two x neighbours lie in one run of material m get
    weight 1 for m: the whole run adds a constant over a column interval,
    recorded in O(1) in a difference array ``dif``. Only columns
    that straddle a run boundary (fx in [e, e+1) for a run ending at voxel e)
    are evaluated one by one, with the bilinear weights (1-wx, wx) to the
    materials on either side (air beyond the volume). A prefix sum over
    columns at the end of the row recovers the per-material sums. Air runs
    cost one comparison.

    Rows are split into ``n_chunks`` contiguous blocks (prange); each block
    owns its two accumulators (no shared writes) and reuses them row after
    row, clearing only the columns ``c_lo .. c_hi - 1`` that the volume's
    shadow can reach. ``out`` must be zero outside that range on entry.
    """
    rows = ys.size
    width = c_hi - c_lo
    ddx2 = np.empty(width)
    for c in range(width):
        ddx2[c] = (xs[c_lo + c] - sx) ** 2 + sz * sz
    for ch in nb.prange(n_chunks):
        dif = np.zeros((width + 1, n_mat), dtype=np.float64)  # run interiors, as differences along c
        acc = np.zeros((width + 1, n_mat), dtype=np.float32)  # columns straddling run boundaries
        run = np.zeros(n_mat, dtype=np.float64)
        r_begin = ch * rows // n_chunks
        r_end = (ch + 1) * rows // n_chunks
        for r in range(r_begin, r_end):
            yd = ys[r]
            hit = False
            for k in range(nz):
                f = (sz - (z0 + k * dz)) / sz
                fy = (sy + (yd - sy) * f - y0) / dy
                if fy <= -1.0 or fy >= ny:
                    continue
                j0 = int(math.floor(fy))
                wy = fy - j0
                a = a_k[k] + c_lo * b_k[k]  # fx = a + b * (c - c_lo)
                b = b_k[k]
                invb = 1.0 / b
                for jj in range(2):
                    j = j0 + jj
                    w = wy if jj else 1.0 - wy
                    if j < 0 or j >= ny or w == 0.0:
                        continue
                    q = k * ny + j
                    lo = offsets[q]
                    hi = offsets[q + 1]
                    m = lut[rlabels[lo]]
                    if hi - lo == 1 and m < 0:
                        continue  # an all-air row
                    hit = True
                    if m >= 0:  # boundary left of the volume: air (fx < 0) | first run
                        for c in range(_cf(-1.0, a, invb, width), _cf(0.0, a, invb, width)):
                            wx = min(max(a + b * c + 1.0, 0.0), 1.0)
                            acc[c, m] += w * wx
                    for n in range(lo, hi):
                        if n + 1 < hi:
                            e = starts[n + 1] - 1
                            m_next = lut[rlabels[n + 1]]
                        else:
                            e = nx - 1
                            m_next = -1
                        ce = _cf(e, a, invb, width)
                        if m >= 0:
                            cs = _cf(starts[n], a, invb, width)
                            if ce > cs:
                                dif[cs, m] += w
                                dif[ce, m] -= w
                        if ce >= width:
                            break
                        if m >= 0 or m_next >= 0:
                            for c in range(ce, _cf(e + 1.0, a, invb, width)):
                                wx = min(max(a + b * c - e, 0.0), 1.0)
                                if m >= 0:
                                    acc[c, m] += w * (1.0 - wx)
                                if m_next >= 0:
                                    acc[c, m_next] += w * wx
                        m = m_next
            if not hit:
                continue
            ddy2 = (yd - sy) ** 2
            run[:] = 0.0
            for c in range(width):
                scale = dz * math.sqrt(ddx2[c] + ddy2) / sz  # dz / cos(gamma): path through one slice
                for mm in range(n_mat):
                    run[mm] += dif[c, mm]
                    out[mm, r, c_lo + c] = (run[mm] + acc[c, mm]) * scale
            dif[:] = 0.0
            acc[:] = 0.0


def _voxel_setup(phantom: VoxelPhantom, source: tuple[float, float, float], det: DetectorGeometry,
                 material_labels: list[int], oversample: int, out: np.ndarray | None):
    xs, ys = pixel_grid(det, oversample)
    sz = float(source[2])
    dz, dy, dx = phantom.voxel_mm
    top = phantom.origin_mm[2] + phantom.shape[0] * dz
    if sz <= top:
        raise ValueError(f"focal spot z={sz} mm is not above the phantom top z={top} mm")
    if out is None:
        out = np.zeros((len(material_labels), ys.size, xs.size), dtype=np.float32)
    else:
        out[...] = 0.0
    centres = (phantom.origin_mm[0] + 0.5 * dx, phantom.origin_mm[1] + 0.5 * dy, phantom.origin_mm[2] + 0.5 * dz)
    return np.ascontiguousarray(xs), np.ascontiguousarray(ys), out, centres


def voxel_line_integrals(phantom: VoxelPhantom, source: tuple[float, float, float], det: DetectorGeometry,
                         material_labels: list[int], *, oversample: int = 1,
                         out: np.ndarray | None = None) -> np.ndarray:
    """Per-material line integrals (mm) through a voxel phantom, shape ``(len(material_labels), rows*q, cols*q)``.

    ``source`` is the focal spot (mm, gantry frame); it must lie above the
    phantom. Voxels whose label is not in ``material_labels`` count as air.
    Slice-by-slice bilinear (Joseph-style) sampling, integrated run by run
    over the phantom's cached run-length encoding (:meth:`VoxelPhantom.row_runs`);
    equal, to float rounding, to :func:`voxel_line_integrals_dense`.
    """
    xs, ys, out, (x0, y0, z0) = _voxel_setup(phantom, source, det, material_labels, oversample, out)
    if not material_labels:
        return out
    rr = phantom.row_runs()
    nz, ny, nx = phantom.shape
    dz, dy, dx = phantom.voxel_mm
    sx, sy, sz = (float(v) for v in source)
    # x mapping of every slice: voxel coordinate fx = a_k + b_k * column
    f = (sz - (z0 + np.arange(nz) * dz)) / sz
    step = xs[1] - xs[0] if xs.size > 1 else dx
    a_k = (sx + (xs[0] - sx) * f - x0) / dx
    b_k = step * f / dx
    # columns the volume's shadow can reach: fx in [-1, nx) in some slice
    c_lo = int(max(0, np.floor(((-1.0 - a_k) / b_k).min())))
    c_hi = int(min(xs.size, np.ceil(((nx - a_k) / b_k).max()) + 1))
    if c_hi <= c_lo:
        return out
    # rows the volume's shadow can reach (fy in (-1, ny) in some slice); ys increase with the row index
    if ys.size > 1:
        fy_lo = (sy + (ys[0] - sy) * f - y0) / dy
        step_y = (ys[1] - ys[0]) * f / dy
        r_lo = int(max(0, np.floor(((-1.0 - fy_lo) / step_y).min())))
        r_hi = int(min(ys.size, np.ceil(((ny - fy_lo) / step_y).max()) + 1))
    else:
        r_lo, r_hi = 0, 1
    if r_hi <= r_lo:
        return out
    # many small row blocks handed out dynamically: the breast covers only part of the panel
    n_chunks = min(r_hi - r_lo, 16 * nb.get_num_threads())
    with nb.parallel_chunksize(1):
        _runs_kernel(rr.offsets, rr.starts, rr.labels, nz, ny, nx, label_lut(material_labels), len(material_labels),
                     y0, z0, dy, dz, sx, sy, sz, xs, ys[r_lo:r_hi], a_k, b_k, c_lo, c_hi, n_chunks, out[:, r_lo:r_hi])
    return out


def voxel_line_integrals_dense(phantom: VoxelPhantom, source: tuple[float, float, float], det: DetectorGeometry,
                               material_labels: list[int], *, oversample: int = 1,
                               out: np.ndarray | None = None) -> np.ndarray:
    """Reference implementation of :func:`voxel_line_integrals`: every (slice, pixel) sample evaluated.

    Four label reads and bilinear weights per sample; kept to verify the run
    kernel and as the benchmark's slice-driven reference.
    """
    xs, ys, out, (x0, y0, z0) = _voxel_setup(phantom, source, det, material_labels, oversample, out)
    if not material_labels:
        return out
    dz, dy, dx = phantom.voxel_mm
    sx, sy, sz = (float(v) for v in source)
    _voxel_kernel(phantom.labels, label_lut(material_labels), len(material_labels), x0, y0, z0, dx, dy, dz,
                  sx, sy, sz, xs, ys, out)
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
def _poly_kernel(L, mu, w1, w2, sx, sy, sz, xs, ys, d2, out1, out2):  # pragma: no cover - numba
    """Energy sums per pixel; exponentials in float32 (relative error ~1e-7), sums in float64.

    ``d2 > 0`` selects the accumulate mode: ``out += geo * sum`` with the
    inverse-square and obliquity factor ``geo = d2 / r^2 * sz / r`` of the
    pixel seen from the source (sx, sy, sz); ``d2 <= 0`` writes the plain sums.
    """
    n_mat, rows, cols = L.shape
    n_e = w1.size
    t1 = 0.0
    t2 = 0.0
    for e in range(n_e):
        t1 += w1[e]
        t2 += w2[e]
    for r in nb.prange(rows):
        expo = np.empty(n_e, dtype=np.float32)
        ddy2 = (ys[r] - sy) ** 2 + sz * sz
        for c in range(cols):
            any_l = False
            for m in range(n_mat):
                if L[m, r, c] != 0.0:
                    any_l = True
            if any_l:
                expo[:] = 0.0
                for m in range(n_mat):  # exponent vector over energies; materials absent here are skipped
                    lm = L[m, r, c]
                    if lm != 0.0:
                        for e in range(n_e):
                            expo[e] -= mu[m, e] * lm
                s1 = 0.0
                s2 = 0.0
                for e in range(n_e):
                    t = math.exp(expo[e])
                    s1 += w1[e] * t
                    s2 += w2[e] * t
            else:  # unattenuated ray: the open-field sums
                s1 = t1
                s2 = t2
            if d2 > 0.0:
                r2 = (xs[c] - sx) ** 2 + ddy2
                geo = d2 / r2 * sz / math.sqrt(r2)
                out1[r, c] += s1 * geo
                out2[r, c] += s2 * geo
            else:
                out1[r, c] = s1
                out2[r, c] = s2


def _poly_call(L: np.ndarray, mu: np.ndarray, w1: np.ndarray, w2: np.ndarray, source: tuple[float, float, float],
               xs: np.ndarray, ys: np.ndarray, d2: float, out1: np.ndarray, out2: np.ndarray) -> None:
    with nb.parallel_chunksize(8):  # dynamic: attenuated rows (the breast) cost far more than open field
        _poly_kernel(np.ascontiguousarray(L, dtype=np.float32), np.ascontiguousarray(mu, dtype=np.float32),
                     np.ascontiguousarray(w1, dtype=np.float64), np.ascontiguousarray(w2, dtype=np.float64),
                     float(source[0]), float(source[1]), float(source[2]), np.ascontiguousarray(xs, dtype=np.float64),
                     np.ascontiguousarray(ys, dtype=np.float64), float(d2), out1, out2)


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
    _poly_call(L, mu, w1, w2, (0.0, 0.0, 1.0), np.zeros(cols), np.zeros(rows), 0.0, out1, out2)
    return out1, out2


def accumulate_polyenergetic(L: np.ndarray, mu: np.ndarray, w1: np.ndarray, w2: np.ndarray,
                             source: tuple[float, float, float], xs: np.ndarray, ys: np.ndarray,
                             ref_distance_mm: float, acc1: np.ndarray, acc2: np.ndarray) -> None:
    """Add the energy sums of one focal-spot position, scaled to the pixel's distance and obliquity.

    ``acc += S * (ref_distance_mm / r)^2 * (sz / r)`` where ``r`` is the
    distance from ``source`` (mm) to the pixel at ``(xs[c], ys[r], 0)``: the
    weights ``w1, w2`` are given at ``ref_distance_mm`` for normal incidence.
    One pass, no temporaries (the imager's inner loop over source samples).
    """
    if L.shape[0] == 0:
        L = np.zeros((1,) + L.shape[1:], np.float32)
        mu = np.zeros((1, np.asarray(w1).size))
    _poly_call(L, mu, w1, w2, source, xs, ys, ref_distance_mm**2, acc1, acc2)


def bin_sum(img: np.ndarray, q: int) -> np.ndarray:
    """Sum q x q blocks of a (rows*q, cols*q) image."""
    if q == 1:
        return img
    r, c = img.shape
    return img.reshape(r // q, q, c // q, q).sum(axis=(1, 3))


def analytic_line_integrals_at(phantom: AnalyticPhantom, source: tuple[float, float, float], x_mm: np.ndarray,
                               y_mm: np.ndarray, material_labels: list[int]) -> np.ndarray:
    """Per-material line integrals (mm) of analytic objects at arbitrary detector points ``(x_mm, y_mm, 0)``.

    Shape ``(len(material_labels), N)``; objects with ``replaces`` give negative entries for the
    displaced material (the caller adds the voxel background and clamps at zero). Each object is
    evaluated only at the points inside its projected bounding box.
    """
    x = np.asarray(x_mm, dtype=np.float64).ravel()
    y = np.asarray(y_mm, dtype=np.float64).ravel()
    index = {lab: m for m, lab in enumerate(material_labels)}
    out = np.zeros((len(material_labels), x.size), dtype=np.float32)
    src = np.asarray(source, dtype=np.float64)
    for obj in phantom.objects:
        lo, hi = obj.shape.bounds()
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        m = src[2] / (src[2] - np.minimum(corners[:, 2], src[2] - 1e-6))
        px = src[0] + (corners[:, 0] - src[0]) * m
        py = src[1] + (corners[:, 1] - src[1]) * m
        sel = np.flatnonzero((x >= px.min() - 1e-6) & (x <= px.max() + 1e-6) & (y >= py.min() - 1e-6)
                             & (y <= py.max() + 1e-6))
        if sel.size == 0:
            continue
        pts = np.stack([x[sel], y[sel], np.zeros(sel.size)], axis=1)
        chord = chord_lengths(obj.shape, src, pts).astype(np.float32)
        if obj.label in index:
            out[index[obj.label], sel] += chord
        if obj.replaces is not None and obj.replaces in index:
            out[index[obj.replaces], sel] -= chord
    return out


def analytic_footprints(phantom: AnalyticPhantom, source: tuple[float, float, float],
                        xs: np.ndarray, ys: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Per object, the (row_lo, row_hi, col_lo, col_hi) index range of its detector shadow (conservative)."""
    src = np.asarray(source, dtype=np.float64)
    out = []
    for obj in phantom.objects:
        lo, hi = obj.shape.bounds()
        out.append(_footprint(src, lo, hi, xs, ys))
    return out
