"""Scatter in the projection images, from the project's Monte Carlo kernels, and the anti-scatter grid.

Model (the convolution method, Boone & Cooper, Med. Phys. 27 (2000) 1818):

* every pencil of primary that crossed the breast spreads scatter over the detector with the kernel
  :func:`physics.scatter_mc.spr_kernel` (scatter per unit primary, tabulated by Monte Carlo for the
  slab thickness the pencil crossed, the spectrum incident on the breast, the glandularity, the
  projection angle and the breast support's height above the detector), so the scatter image is the
  primary image *inside the breast's shadow* convolved with that kernel, level by level of local
  thickness (under the rounded edge a pencil crosses less tissue: more primary, less scatter per
  primary). Outside the breast there is no scatterer (air): an open field adds no scatter. Deep inside a
  large breast the scatter-to-primary ratio tends to the tabulated infinite-field SPR; towards the
  edge it falls, as published (Boone et al. 2000);
* the kernel's projection angle is that of the ray from the focal spot to the centre of the breast's
  shadow, and the kernel is mirrored when the beam travels toward -x; one kernel per exposure (the
  cone-beam change of obliquity across the breast is neglected);
* the convolution runs on a grid of about :data:`SCATTER_PITCH_MM` (block sums of the primary) and the
  scatter is interpolated back bilinearly (scatter has no fine detail; the kernel's sum, and so the
  scatter energy, is kept exactly by :func:`physics.scatter_mc.render_kernel`);
* an anti-scatter grid (:class:`AntiScatterGrid`) transmits ``primary_transmission`` of the primary
  and ``scatter_transmission`` of the scatter.

Units: mm, keV, degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba as nb
import numpy as np

from physics import scatter_mc
from simulator.imaging import detector as _detector

#: Pitch of the grid the scatter convolution runs on, mm (rounded to a whole number of pixels).
SCATTER_PITCH_MM = 2.0

#: Published transmissions of a mammography anti-scatter grid: J. Q. Xia, J. Y. Lo and C. E. Floyd,
#: "Characterization of scatter radiation of a breast phantom on Siemens prototype FFDM with and without
#: an anti-scatter grid", Proc. SPIE 5745 (2005): primary 73 %, scatter 13 % (5 cm, 50 % glandular
#: phantom, Mo/Mo 28 kV). Measured at 35-49 kV behind a mammography grid, Tp 0.81-0.84 and Ts 0.13-0.21
#: (PMC2736748, contrast-enhanced breast imaging); the bounds below admit both.
GRID_PRIMARY_TRANSMISSION = 0.73
GRID_SCATTER_TRANSMISSION = 0.13


@dataclass(frozen=True)
class AntiScatterGrid:
    """A focused linear anti-scatter grid: what it passes of the primary and of the scatter (fractions).

    ``ratio`` (lead strip height / interspace) labels the grid (mammography grids are about 4:1-5:1);
    the image model uses only the two transmissions.
    """

    ratio: float = 5.0
    primary_transmission: float = GRID_PRIMARY_TRANSMISSION
    scatter_transmission: float = GRID_SCATTER_TRANSMISSION

    def __post_init__(self) -> None:
        if not 2.0 <= self.ratio <= 16.0:
            raise ValueError(f"grid ratio={self.ratio} must lie in [2, 16]")
        if not 0.5 <= self.primary_transmission <= 1.0:
            raise ValueError(f"grid primary_transmission={self.primary_transmission} must lie in [0.5, 1.0]")
        if not 0.0 <= self.scatter_transmission <= self.primary_transmission:
            raise ValueError(f"grid scatter_transmission={self.scatter_transmission} must lie in "
                             f"[0, primary_transmission={self.primary_transmission}]")


@lru_cache(maxsize=32)
def _kernel_cached(kernel_key: tuple, pitch_mm: float, beam_dir_x: float) -> np.ndarray:
    energies, fluence, thickness, angle, gland, gap = kernel_key
    polar = scatter_mc.spr_kernel(np.array(energies), np.array(fluence), thickness, angle, gland, gap)
    return scatter_mc.render_kernel(polar, pitch_mm, beam_dir_x=beam_dir_x, subsamples=3)


def scatter_kernel(energies_kev: np.ndarray, fluence: np.ndarray, thickness_mm: float, angle_deg: float,
                   glandularity: float, air_gap_mm: float, pitch_mm: float, beam_dir_x: float = 1.0) -> np.ndarray:
    """Cartesian scatter kernel per unit primary (sum = infinite-field SPR) on ``pitch_mm`` cells (cached)."""
    key = (tuple(np.round(np.asarray(energies_kev, dtype=float), 4)),
           tuple(np.asarray(fluence, dtype=float) / max(float(np.sum(fluence)), 1e-300)),
           round(float(thickness_mm), 2), round(abs(float(angle_deg)), 1), round(float(glandularity), 3),
           round(float(air_gap_mm), 2))
    return _kernel_cached(key, round(float(pitch_mm), 6), 1.0 if beam_dir_x >= 0 else -1.0)


def thickness_nodes(thickness_mm: float) -> np.ndarray:
    """Local-thickness levels (mm) the scatter is computed at: the table's thicknesses below ``thickness_mm``, and it."""
    grid = scatter_mc.THICKNESS_MM
    return np.append(grid[grid < thickness_mm - 0.5], float(thickness_mm))


def scatter_image(primary: np.ndarray, local_thickness_mm: np.ndarray, nodes_mm: np.ndarray,
                  kernels: list[np.ndarray], block: int) -> np.ndarray:
    """Scatter (same units as ``primary``) from every pencil through the breast, each with the kernel of its path.

    A pencil whose ray crosses ``local_thickness_mm`` of breast (0 outside the breast, less than the
    compressed thickness under the rounded edge) scatters ``primary x kernel(local thickness)``; the
    kernel is interpolated linearly between the ``nodes_mm`` levels (``kernels[l]`` per unit primary at
    ``nodes_mm[l]``, on cells of ``block`` pixels, odd squares of one size; zero scatter at zero
    thickness). On the cells: the primary of the breast's pixels is summed and its thickness averaged
    with the primary as weight (the interpolation is linear, so this is exact wherever a cell's pixels
    lie between the same two levels); every level's weighted sum is convolved with its kernel by FFT
    (summed in the frequency domain, one inverse), and the scatter is interpolated back to the pixel
    grid bilinearly, keeping the total scatter energy. Scatter falling outside the image is not detected.
    """
    import scipy.fft as sfft

    r, c = primary.shape
    b = max(1, int(block))
    nr, nc = -(-r // b), -(-c // b)  # coarse grid of the whole image
    t_all = np.asarray(local_thickness_mm)
    inside = t_all > 0
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return np.zeros_like(primary)
    r0, c0 = rows[0] // b * b, cols[0] // b * b  # the breast's box, aligned to whole cells
    r1, c1 = min(-(-(rows[-1] + 1) // b) * b, nr * b), min(-(-(cols[-1] + 1) // b) * b, nc * b)
    pr, pc = min(r1, r) - r0, min(c1, c) - c0
    # primary and primary x thickness summed over each cell, in bands of whole cell rows (a full-resolution
    # panel's box would be two more 230 MB float64 copies; each cell's sum is the same either way)
    psum = np.zeros(((r1 - r0) // b, (c1 - c0) // b))
    ptsum = np.zeros_like(psum)
    band = max(1, _detector.BAND_PIXELS // max(1, b * (c1 - c0))) * b
    for a0 in range(0, r1 - r0, band):
        a1 = min(a0 + band, r1 - r0)
        src = np.zeros((a1 - a0, c1 - c0), dtype=np.float64)
        pt = np.zeros_like(src)
        n = max(0, min(a1, pr) - a0)  # rows of this band inside the image
        win = (slice(r0 + a0, r0 + a0 + n), slice(c0, c0 + pc))
        src[:n, :pc] = np.where(inside[win], primary[win], 0.0)
        pt[:n, :pc] = src[:n, :pc] * np.clip(t_all[win], 0.0, float(nodes_mm[-1]))
        shape = (src.shape[0] // b, b, src.shape[1] // b, b)
        psum[a0 // b:a1 // b] = src.reshape(shape).sum(axis=(1, 3))
        ptsum[a0 // b:a1 // b] = pt.reshape(shape).sum(axis=(1, 3))
    tbar = np.divide(ptsum, psum, out=np.zeros_like(psum), where=psum > 0)
    levels = np.concatenate([[0.0], np.asarray(nodes_mm, dtype=np.float64)])
    h = kernels[0].shape[0] // 2
    full = (psum.shape[0] + 2 * h, psum.shape[1] + 2 * h)
    fshape = (sfft.next_fast_len(full[0]), sfft.next_fast_len(full[1], real=True))
    acc = None
    for lv, kern in enumerate(kernels, start=1):  # level 0 (no tissue) scatters nothing
        w = np.interp(tbar, levels, np.eye(levels.size)[lv])  # hat weight of this level
        if not w.any():
            continue
        f = sfft.rfft2(psum * w, fshape) * sfft.rfft2(kern, fshape)
        acc = f if acc is None else acc + f
    if acc is None:
        return np.zeros_like(primary)
    part = sfft.irfft2(acc, fshape)[:full[0], :full[1]]  # full convolution: box cells + h on every side
    s = np.zeros((nr + 2 * h, nc + 2 * h))  # coarse scatter, padded by the kernel's reach
    cr0, cc0 = r0 // b, c0 // b
    s[cr0:cr0 + full[0], cc0:cc0 + full[1]] += part
    s = np.maximum(s[h:h + nr, h:h + nc], 0.0)
    if b == 1:
        return s[:r, :c]
    fine = _upsample_linear(s, b, r, c)
    fine /= b * b
    tot = s.sum()
    ft = fine.sum()
    if ft > 0:
        fine *= tot / ft
    return fine


def _upsample_linear(s: np.ndarray, b: int, r: int, c: int) -> np.ndarray:
    """Bilinear interpolation of cell values (cells of ``b`` pixels) at the centres of ``r x c`` pixels, edges held."""
    def axis(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = (np.arange(n_fine) + 0.5) / b - 0.5  # pixel centre in cell-centre units
        i0 = np.clip(np.floor(u).astype(np.int64), 0, n_coarse - 1)
        i1 = np.minimum(i0 + 1, n_coarse - 1)
        return i0, i1, np.clip(u - i0, 0.0, 1.0)

    i0, i1, f = axis(r, s.shape[0])
    rows = s[i0] * (1.0 - f)[:, None] + s[i1] * f[:, None]  # (r, n_coarse_cols): small
    j0, j1, g = axis(c, s.shape[1])
    # one full-size array (230 MB for a full-resolution, 50 um frame), column-major as numpy's gather
    # ``rows[:, j0]`` gives it: its sum (the caller keeps the total scatter) then adds in the same order
    fine_t = np.empty((c, r))
    _interpolate_columns(np.ascontiguousarray(rows.T), j0, j1, 1.0 - g, g, fine_t)
    return fine_t.T


@nb.njit(cache=True, parallel=True)
def _interpolate_columns(rows_t, j0, j1, w0, w1, fine_t):  # pragma: no cover - numba
    """``fine_t[j, i] = rows_t[j0[j], i] * w0[j] + rows_t[j1[j], i] * w1[j]`` (the transposed images), columns in
    parallel, no full-size temporaries: the same products and sum as the numpy expression, bit for bit."""
    for j in nb.prange(fine_t.shape[0]):
        a, b, wa, wb = j0[j], j1[j], w0[j], w1[j]
        for i in range(fine_t.shape[1]):
            fine_t[j, i] = rows_t[a, i] * wa + rows_t[b, i] * wb



def projection_angle_deg(source_mm: np.ndarray, inside: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """(angle from the detector normal in the x-z plane, sign of the beam's x travel) of the ray to the shadow's centre.

    The centre is the middle of the shadow's extent along x (the arc's direction), mm.
    """
    cols = np.flatnonzero(inside.any(axis=0))
    if cols.size == 0:
        return 0.0, 1.0
    xc = 0.5 * float(xs[cols[0]] + xs[cols[-1]])
    dx = xc - float(source_mm[0])
    return math.degrees(math.atan2(abs(dx), float(source_mm[2]))), (1.0 if dx >= 0 else -1.0)
