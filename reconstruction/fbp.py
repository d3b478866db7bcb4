"""Filtered backprojection and shift-and-add for DBT, slice by slice.

Both take line-integral projections ``(n, rows, cols)`` (see
:mod:`reconstruction.preprocess`) and the acquisition geometry (an
:class:`~protocols.records.AcquisitionHeader` or a
:class:`~reconstruction.geometry.ProjectionGeometry`), and reconstruct onto a
:class:`~reconstruction.geometry.VolumeGrid` (any ROI, any slice heights).

Streaming: :func:`iter_fbp` / :func:`iter_shift_and_add` yield one slice at a
time; :func:`fbp` / :func:`shift_and_add` fill a caller-given array (which may
be a ``numpy.memmap``) or a new one. Only the filtered projections, cropped to
each projection's shadow of the ROI, are held (float32).

Scaling of FBP: each filtered projection is ``q_k = (m_k(z) / cos theta_k) *
H * p_k`` with ``H`` in 1/mm (:mod:`reconstruction.filters`), and the slice is
``sum_k dtheta_k q_k`` with ``dtheta_k`` the actual angular spacing in radians.
This is parallel-beam FBP (``f = int dtheta int |w| P e^{2 pi i w t} dw``)
written in detector coordinates: the ramp in the coordinate perpendicular to
the ray, at the slice's scale, is ``m / cos theta`` times the ramp on the
detector. Structures whose spectrum lies inside the sampled Fourier wedge are
therefore reconstructed in attenuation units (1/mm); the rest of the spectrum
is missing, as for any limited-angle method.

Example
-------
>>> import numpy as np
>>> from reconstruction.geometry import ProjectionGeometry, VolumeGrid
>>> src = np.array([[660 * np.sin(t), 0.0, 660 * np.cos(t)] for t in np.radians([-10, 0, 10])])
>>> pg = ProjectionGeometry(src, np.array([-10.0, 0, 10]), 0.1, 64, 128, 0.0, 0.0, 20.0, 20.0)
>>> grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-2, x_max_mm=2, y_min_mm=1, y_max_mm=5, z_mm=(25.0, 30.0))
>>> vol = fbp(np.zeros((3, 64, 128), np.float32), pg, grid)
>>> vol.shape
(2, 20, 20)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from protocols.records import AcquisitionHeader
from reconstruction.filters import FilterSpec, ProjectionFilter, make_filter
from reconstruction.geometry import Grid, ProjectionGeometry, VolumeGrid, as_grid, from_header
from reconstruction.projector import WindowStack, backproject_slices, detector_windows, empty_stack

SliceIter = Iterator[tuple[int, float, np.ndarray]]


def resolve_geometry(projections: np.ndarray, geometry: AcquisitionHeader | ProjectionGeometry) -> ProjectionGeometry:
    """Projection geometry from a header (or as given) checked against the image stack."""
    pg = from_header(geometry) if isinstance(geometry, AcquisitionHeader) else geometry
    shape = np.shape(projections)
    if len(shape) != 3 or shape[0] != pg.n or shape[1:] != (pg.rows, pg.cols):
        raise ValueError(
            f"projections of shape {shape} do not match the geometry: {pg.n} projections of {pg.rows} x {pg.cols}"
        )
    return pg


def angular_weights(angles_deg: np.ndarray) -> np.ndarray:
    """Angular interval each projection represents, radians (half-way to its neighbours).

    End projections get the full spacing to their only neighbour.
    """
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    if a.size < 2:
        raise ValueError("FBP needs at least two projections at different angles")
    order = np.argsort(a)
    s = a[order]
    d = np.empty_like(s)
    d[1:-1] = 0.5 * (s[2:] - s[:-2])
    d[0] = s[1] - s[0]
    d[-1] = s[-1] - s[-2]
    if np.any(d <= 0):
        raise ValueError(f"projection angles must be distinct, got {np.degrees(s)}")
    out = np.empty_like(d)
    out[order] = d
    return out


def filtered_stack(
    projections: np.ndarray,
    pg: ProjectionGeometry,
    grid: Grid,
    spec: FilterSpec | None,
    workers: int = -1,
) -> WindowStack:
    """Filter each projection (``spec=None``: no filter) and keep only its window over the ROI.

    Only the window's rows are read and filtered (full width along x, where
    the ramp is non-local); projections may be a memmap.
    """
    windows = detector_windows(pg, grid)
    stack = empty_stack(windows)
    arc = float(np.ptp(pg.angles_deg))
    filters: dict[int, ProjectionFilter] = {}
    for k, w in enumerate(windows):
        rows = np.asarray(projections[k, w.row0 : w.row1, :], dtype=np.float32)
        if spec is not None:
            h = filters.get(rows.shape[0])
            if h is None:
                h = filters[rows.shape[0]] = make_filter(rows.shape[0], pg.cols, pg.pitch_mm, spec, arc)
            rows = h(rows, workers=workers)
        r, c = w.shape
        stack.data[k, :r, :c] = rows[:, w.col0 : w.col1]
    return stack


def iter_fbp(
    projections: np.ndarray,
    geometry: AcquisitionHeader | ProjectionGeometry,
    grid: VolumeGrid | Grid,
    spec: FilterSpec | None = None,
    workers: int = -1,
) -> SliceIter:
    """Yield ``(slice_index, z_mm, image)`` of the FBP reconstruction, one ``(ny, nx)`` float32 slice at a time.

    Units of the slices: attenuation, 1/mm (see the module docstring for the scaling).
    """
    pg = resolve_geometry(projections, geometry)
    g = as_grid(grid)
    spec = FilterSpec() if spec is None else spec
    stack = filtered_stack(projections, pg, g, spec, workers)
    weights = angular_weights(pg.angles_deg) / np.cos(np.radians(pg.angles_deg))
    yield from backproject_slices(stack, pg, g, weights, mag_power=1.0)


def iter_shift_and_add(
    projections: np.ndarray,
    geometry: AcquisitionHeader | ProjectionGeometry,
    grid: VolumeGrid | Grid,
) -> SliceIter:
    """Yield shift-and-add slices: ``(1/n) sum_k p_k(u_k, v_k)`` over the ``n`` projections.

    Units: line integral (dimensionless). A voxel whose shadow falls off the
    detector in some projections gets no contribution from them (it comes out darker).
    """
    pg = resolve_geometry(projections, geometry)
    g = as_grid(grid)
    stack = filtered_stack(projections, pg, g, None)
    yield from backproject_slices(stack, pg, g, np.full(pg.n, 1.0 / pg.n))


def collect(slices: SliceIter, shape: tuple[int, int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Write streamed slices into ``out`` (e.g. a memmap) or a new float32 ``(nz, ny, nx)`` array."""
    vol = np.empty(shape, dtype=np.float32) if out is None else out
    if vol.shape != shape:
        raise ValueError(f"output array has shape {vol.shape}, the grid needs {shape}")
    for iz, _, img in slices:
        vol[iz] = img
    return vol


def fbp(
    projections: np.ndarray,
    geometry: AcquisitionHeader | ProjectionGeometry,
    grid: VolumeGrid | Grid,
    spec: FilterSpec | None = None,
    out: np.ndarray | None = None,
    workers: int = -1,
) -> np.ndarray:
    """Filtered backprojection into ``out`` (or a new array), shape ``(nz, ny, nx)``, 1/mm.

    projections: line integrals ``(n, rows, cols)``; geometry: header or ProjectionGeometry;
    grid: the volume; spec: filter (default: pure ramp with Hann apodisation).
    """
    g = as_grid(grid)
    return collect(iter_fbp(projections, geometry, g, spec, workers), g.shape, out)


def shift_and_add(
    projections: np.ndarray,
    geometry: AcquisitionHeader | ProjectionGeometry,
    grid: VolumeGrid | Grid,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Shift-and-add reconstruction into ``out`` (or a new array), shape ``(nz, ny, nx)``."""
    g = as_grid(grid)
    return collect(iter_shift_and_add(projections, geometry, g), g.shape, out)
