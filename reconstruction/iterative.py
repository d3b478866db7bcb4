"""SART for DBT with non-negativity and relaxation.

One SART sub-iteration per projection ``k`` (Andersen & Kak 1984)::

    f <- max(0, f + lambda * B_k[(p_k - A_k f) / (A_k 1)])

``A_k`` is the Joseph-style slice-by-slice forward projector
(:func:`reconstruction.projector.forward_project`), ``A_k 1`` the ray length
through the volume, and ``B_k`` the bilinear voxel-driven backprojector, whose
interpolation weights sum to one per voxel (so it is the column-normalised
backprojection of SART). Projections are visited in an interleaved order
(far-apart angles in turn), which speeds convergence.

The whole volume is held (iterative methods need it); use it on regions of
interest, FBP for whole breasts.

Example
-------
>>> import numpy as np
>>> from reconstruction.geometry import ProjectionGeometry, VolumeGrid
>>> src = np.array([[660 * np.sin(t), 0.0, 660 * np.cos(t)] for t in np.radians([-10, 0, 10])])
>>> pg = ProjectionGeometry(src, np.array([-10.0, 0, 10]), 0.1, 64, 128, 0.0, 0.0, 20.0, 20.0)
>>> grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-2, x_max_mm=2, y_min_mm=1, y_max_mm=5, z_mm=(25.0, 30.0))
>>> float(sart(np.zeros((3, 64, 128), np.float32), pg, grid, n_iter=1).max())
0.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from protocols.records import AcquisitionHeader
from reconstruction._kernels import backproject_view
from reconstruction.fbp import resolve_geometry
from reconstruction.geometry import Grid, ProjectionGeometry, VolumeGrid, as_grid
from reconstruction.projector import (
    Window,
    check_grid,
    detector_windows,
    forward_project,
    slice_tables,
    view_tables,
)


def view_backprojection_tables(
    pg: ProjectionGeometry, grid: Grid, k: int, window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backprojection tables of view ``k`` for every slice: ``(c0, cf)`` ``(nz, nx)``, ``(r0, rf)`` ``(nz, ny)``."""
    one = pg.subset([k])
    per_slice = [slice_tables(one, grid, [window], float(z)) for z in grid.z_mm]
    return (
        np.stack([t[0][0] for t in per_slice]),
        np.stack([t[1][0] for t in per_slice]),
        np.stack([t[2][0] for t in per_slice]),
        np.stack([t[3][0] for t in per_slice]),
    )


def interleaved_order(n: int) -> list[int]:
    """Visit order of ``n`` views by repeated halving (0, n/2, n/4, 3n/4, ...)."""
    order: list[int] = []
    step = n
    seen: set[int] = set()
    while len(order) < n:
        for k in range(0, n, max(step, 1)):
            if k not in seen:
                seen.add(k)
                order.append(k)
        step //= 2
        if step == 0:
            step = 1
    return order


def sart(
    projections: np.ndarray,
    geometry: AcquisitionHeader | ProjectionGeometry,
    grid: VolumeGrid | Grid,
    n_iter: int = 4,
    relaxation: float = 0.5,
    nonnegative: bool = True,
    initial: np.ndarray | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """SART reconstruction, float32 ``(nz, ny, nx)`` in 1/mm.

    projections: line integrals ``(n, rows, cols)``; geometry: header or ProjectionGeometry;
    grid: the volume (every slab along the rays should be inside it, or the
    missing attenuation is put into the slabs that are);
    n_iter: full passes over all views; relaxation: lambda in (0, 2);
    nonnegative: clip at 0 after every view; initial: starting volume (default 0);
    callback: called as ``callback(iteration, volume)`` after each pass.
    """
    if not 0.0 < relaxation < 2.0:
        raise ValueError(f"relaxation must be in (0, 2), got {relaxation}")
    pg = resolve_geometry(projections, geometry)
    g = as_grid(grid)
    check_grid(g)
    vol = np.zeros(g.shape, np.float32) if initial is None else np.array(initial, dtype=np.float32, copy=True)
    if vol.shape != g.shape:
        raise ValueError(f"initial volume has shape {vol.shape}, the grid needs {g.shape}")
    windows = detector_windows(pg, g)
    tables = [view_tables(pg, g, k, windows[k]) for k in range(pg.n)]
    ones = np.ones(g.shape, np.float32)
    ray_len = [forward_project(ones, pg, g, k, tables=tables[k]).data for k in range(pg.n)]
    bp_tables = [view_backprojection_tables(pg, g, k, windows[k]) for k in range(pg.n)]
    for it in range(n_iter):
        for k in interleaved_order(pg.n):
            w = windows[k]
            meas = np.asarray(projections[k, w.row0 : w.row1, w.col0 : w.col1], dtype=np.float32)
            est = forward_project(vol, pg, g, k, tables=tables[k]).data
            rl = ray_len[k]
            resid = np.where(rl > 1e-3 * rl.max(), (meas - est) / np.maximum(rl, 1e-12), 0.0).astype(np.float32)
            c0, cf, r0, rf = bp_tables[k]
            backproject_view(resid, c0, cf, r0, rf, relaxation, vol)
            if nonnegative:
                np.maximum(vol, 0.0, out=vol)
        if callback is not None:
            callback(it, vol)
    return vol
