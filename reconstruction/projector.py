"""Slice-wise backprojection and forward projection on detector windows.

The public entry points are :func:`backproject_slices` (voxel-driven,
bilinear, one slice at a time) and :func:`forward_project` (Joseph-style,
slice by slice, path length ``dz / cos(ray angle)``). Both use the separable
tables of :mod:`reconstruction._kernels`.

Each projection only matters inside the *window* of detector pixels that the
region of interest shadows over all slices; :func:`detector_windows` finds it
so filtered projections and residuals are stored cropped.

Example
-------
>>> import numpy as np
>>> from reconstruction.geometry import Grid, ProjectionGeometry
>>> pg = ProjectionGeometry(np.array([[0.0, 0.0, 660.0]]), np.zeros(1), 0.1, 40, 40, 0.0, 0.0, 20.0, 10.0)
>>> grid = Grid(np.linspace(-1, 1, 21), np.linspace(1, 3, 21), np.array([25.0]))
>>> vol = np.ones(grid.shape, np.float32) * 0.05
>>> p = forward_project(vol, pg, grid, 0)
>>> round(float(p.data[p.data > 0].max()), 4)  # 0.05 / mm over a 1 mm slab, near-vertical ray
0.05
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from reconstruction._kernels import backproject_slice, forward_project_view, interp_table
from reconstruction.geometry import Grid, ProjectionGeometry, slice_to_detector


@dataclass(frozen=True)
class Window:
    """A rectangle of detector pixels ``[row0:row1, col0:col1]``."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the window."""
        return (self.row1 - self.row0, self.col1 - self.col0)


@dataclass
class WindowStack:
    """Per-projection detector windows stored in one padded float32 array ``(n, R, C)``."""

    data: np.ndarray
    windows: list[Window]


def check_grid(grid: Grid) -> None:
    """Reject grids the bilinear kernels cannot handle."""
    if grid.x_mm.size < 2 or grid.y_mm.size < 2:
        raise ValueError(f"the grid needs at least 2 x 2 voxels per slice, got {grid.x_mm.size} x {grid.y_mm.size}")


def detector_windows(pg: ProjectionGeometry, grid: Grid, margin: int = 2) -> list[Window]:
    """Detector window of each projection covering the shadow of the whole grid (all slices)."""
    out = []
    zs = (grid.z_mm[0], grid.z_mm[-1])
    for k in range(pg.n):
        cols, rows = [], []
        for z in zs:
            c, r, _ = slice_to_detector(pg, grid, k, float(z))
            cols += [c[0], c[-1]]
            rows += [r[0], r[-1]]
        c0 = max(0, int(np.floor(min(cols))) - margin)
        c1 = min(pg.cols, int(np.ceil(max(cols))) + margin + 1)
        r0 = max(0, int(np.floor(min(rows))) - margin)
        r1 = min(pg.rows, int(np.ceil(max(rows))) + margin + 1)
        if c1 - c0 < 2 or r1 - r0 < 2:
            raise ValueError(f"the region of interest does not project onto the detector in projection {k}")
        out.append(Window(r0, r1, c0, c1))
    return out


def empty_stack(windows: list[Window]) -> WindowStack:
    """A zeroed stack big enough for every window."""
    rmax = max(w.shape[0] for w in windows)
    cmax = max(w.shape[1] for w in windows)
    return WindowStack(np.zeros((len(windows), rmax, cmax), dtype=np.float32), windows)


def slice_tables(
    pg: ProjectionGeometry, grid: Grid, windows: list[Window], z_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backprojection tables of one slice for all projections, relative to their windows.

    Returns ``(c0, cf, r0, rf, m)`` with shapes ``(n, nx)``, ``(n, nx)``, ``(n, ny)``, ``(n, ny)``, ``(n,)``.
    """
    n, nx, ny = pg.n, grid.x_mm.size, grid.y_mm.size
    c0 = np.empty((n, nx), np.int64)
    cf = np.empty((n, nx), np.float32)
    r0 = np.empty((n, ny), np.int64)
    rf = np.empty((n, ny), np.float32)
    mags = np.empty(n)
    for k, w in enumerate(windows):
        cols, rows, m = slice_to_detector(pg, grid, k, z_mm)
        # validity is judged against the physical detector, interpolation against the window
        ok_c = (cols >= -0.5) & (cols <= pg.cols - 0.5)
        ok_r = (rows >= -0.5) & (rows <= pg.rows - 0.5)
        ic, fc = interp_table(np.clip(cols, 0, pg.cols - 1) - w.col0, w.shape[1])
        ir, fr = interp_table(np.clip(rows, 0, pg.rows - 1) - w.row0, w.shape[0])
        ic[~ok_c] = -1
        ir[~ok_r] = -1
        c0[k], cf[k], r0[k], rf[k], mags[k] = ic, fc, ir, fr, m
    return c0, cf, r0, rf, mags


def backproject_slices(
    stack: WindowStack,
    pg: ProjectionGeometry,
    grid: Grid,
    weights: np.ndarray,
    mag_power: float = 0.0,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, z_mm, slice)`` for each slice: ``sum_k w_k m_k(z)**mag_power * stack_k(u, v)``.

    weights: ``(n,)`` per-projection weights. ``mag_power`` lets FBP include the
    magnification of the ramp (1.0); shift-and-add uses 0. Each yielded slice
    is a new ``(ny, nx)`` float32 array: nothing else of the volume is held.
    """
    check_grid(grid)
    w = np.asarray(weights, dtype=np.float64)
    for iz, z in enumerate(grid.z_mm):
        c0, cf, r0, rf, m = slice_tables(pg, grid, stack.windows, float(z))
        out = np.zeros((grid.y_mm.size, grid.x_mm.size), dtype=np.float32)
        backproject_slice(stack.data, c0, cf, r0, rf, (w * m**mag_power).astype(np.float32), out)
        yield iz, float(z), out


@dataclass
class ViewTables:
    """Forward-projection tables of one view over its detector window."""

    window: Window
    jx0: np.ndarray
    jxf: np.ndarray
    jy0: np.ndarray
    jyf: np.ndarray
    path: np.ndarray


def view_tables(pg: ProjectionGeometry, grid: Grid, k: int, window: Window) -> ViewTables:
    """Voxel tables of the rays of projection ``k``'s window at every slice height."""
    sx, sy, sz = pg.sources_mm[k]
    u = pg.x_of_col(np.arange(window.col0, window.col1))
    v = pg.y_of_row(np.arange(window.row0, window.row1))
    t = (sz - grid.z_mm[:, None]) / sz  # fraction of the way back up from detector to source
    xs = sx + (u[None, :] - sx) * t
    ys = sy + (v[None, :] - sy) * t
    dx = grid.x_mm[1] - grid.x_mm[0]
    dy = grid.y_mm[1] - grid.y_mm[0]
    jx0, jxf = interp_table((xs - grid.x_mm[0]) / dx, grid.x_mm.size)
    jy0, jyf = interp_table((ys - grid.y_mm[0]) / dy, grid.y_mm.size)
    path = np.sqrt((u[None, :] - sx) ** 2 + (v[:, None] - sy) ** 2 + sz**2) / sz
    return ViewTables(window, jx0, jxf, jy0, jyf, path.astype(np.float32))


def forward_project(
    vol: np.ndarray,
    pg: ProjectionGeometry,
    grid: Grid,
    k: int,
    window: Window | None = None,
    tables: ViewTables | None = None,
) -> "WindowImage":
    """Line integrals of ``vol`` (``(nz, ny, nx)``, 1/mm) through projection ``k``'s rays.

    Each slice is treated as a slab of its :attr:`Grid.slab_mm` thickness;
    along a ray the path through the slab is ``slab / cos(ray angle)``.
    Returns the detector window (default: the grid's shadow) with its image.
    """
    check_grid(grid)
    if vol.shape != grid.shape:
        raise ValueError(f"volume shape {vol.shape} does not match the grid {grid.shape}")
    if tables is None:
        w = window if window is not None else detector_windows(pg, grid)[k]
        tables = view_tables(pg, grid, k, w)
    out = np.empty(tables.window.shape, dtype=np.float32)
    forward_project_view(
        np.ascontiguousarray(vol, dtype=np.float32), tables.jx0, tables.jxf, tables.jy0, tables.jyf,
        grid.slab_mm.astype(np.float32), tables.path, out,
    )
    return WindowImage(tables.window, out)


@dataclass
class WindowImage:
    """An image of a detector window."""

    window: Window
    data: np.ndarray
