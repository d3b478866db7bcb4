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

import numpy as np

from physics import scatter_mc

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


@lru_cache(maxsize=256)
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
    ``nodes_mm[l]``, on cells of ``block`` pixels, odd square; zero scatter at zero thickness). Only the
    breast's bounding box is weighted (in float32); each level is one FFT convolution of the
    block-summed weighted primary; the sum is interpolated back to the pixel grid bilinearly and keeps
    the total scatter energy.
    """
    from scipy.ndimage import zoom
    from scipy.signal import fftconvolve

    r, c = primary.shape
    b = max(1, int(block))
    nr, nc = -(-r // b), -(-c // b)  # coarse grid of the whole image
    t_all = np.asarray(local_thickness_mm)
    rows = np.flatnonzero((t_all > 0).any(axis=1))
    cols = np.flatnonzero((t_all > 0).any(axis=0))
    if rows.size == 0:
        return np.zeros_like(primary)
    r0, c0 = rows[0] // b * b, cols[0] // b * b  # the breast's box, aligned to whole cells
    r1, c1 = min(-(-(rows[-1] + 1) // b) * b, nr * b), min(-(-(cols[-1] + 1) // b) * b, nc * b)
    box = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    tb = np.zeros_like(box)
    pr, pc = min(r1, r) - r0, min(c1, c) - c0
    box[:pr, :pc] = primary[r0:r0 + pr, c0:c0 + pc]
    tb[:pr, :pc] = np.clip(t_all[r0:r0 + pr, c0:c0 + pc], 0.0, float(nodes_mm[-1]))
    levels = np.concatenate([[0.0], np.asarray(nodes_mm, dtype=np.float64)]).astype(np.float32)
    k = np.clip(np.searchsorted(levels, tb, side="right") - 1, 0, levels.size - 2).astype(np.int16)
    frac = (tb - levels[k]) / (levels[k + 1] - levels[k])
    h = kernels[0].shape[0] // 2
    s = np.zeros((nr + 2 * h, nc + 2 * h))  # coarse scatter, padded by the kernel's reach
    cr0, cc0 = r0 // b, c0 // b
    for lv, kern in enumerate(kernels, start=1):  # level 0 (no tissue) scatters nothing
        w = np.where(k == lv - 1, frac, np.float32(0.0))
        w += np.where(k == lv, np.float32(1.0) - frac, np.float32(0.0))
        if not w.any():
            continue
        w *= box
        coarse = w.reshape(w.shape[0] // b, b, w.shape[1] // b, b).sum(axis=(1, 3), dtype=np.float64)
        part = fftconvolve(coarse, kern, mode="full")  # (box cells + 2h) square around the box
        s[cr0:cr0 + part.shape[0], cc0:cc0 + part.shape[1]] += part
    s = np.maximum(s[h:h + nr, h:h + nc], 0.0)
    if b == 1:
        return s[:r, :c]
    fine = zoom(s, b, order=1, grid_mode=True, mode="nearest")[:r, :c] / (b * b)
    tot = s[: -(-r // b), : -(-c // b)].sum()
    ft = fine.sum()
    return fine * (tot / ft) if ft > 0 else fine


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
