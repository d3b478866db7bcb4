"""Reconstruction geometry: focal spots from exposure records, and the volume grid.

All coordinates are in the gantry frame of :mod:`protocols.geometry` (mm):
detector surface ``z = 0``, ``x`` along the arc / chest wall, ``y`` into the
breast, ``z`` up. Reconstruction slices are planes ``z = const`` parallel to
the detector, so a point ``(x, y, z)`` seen from focal spot ``s`` lands on the
detector at::

    u = s_x + (x - s_x) * m,   v = s_y + (y - s_y) * m,   m = s_z / (s_z - z)

which is linear in ``x`` alone and in ``y`` alone: every slice maps to every
projection by a magnification and a shift (the separable structure the
kernels exploit).

The focal spot of each projection is placed from the *actual* arc angle, the
mean of the encoder angles at the start and end of the X-ray window
(:attr:`protocols.records.ExposureRecord.mean_angle_deg`), never the planned one.

Example
-------
>>> from protocols.geometry import AcquisitionGeometry, DetectorGeometry
>>> from protocols.records import AcquisitionHeader
>>> det = DetectorGeometry(native_pitch_mm=0.1, rows=100, cols=200)
>>> hdr = AcquisitionHeader(geometry=AcquisitionGeometry(detector=det), compressed_thickness_mm=40.0)
>>> grid = default_grid(hdr, voxel_mm=0.5, slice_spacing_mm=1.0).to_grid()
>>> float(grid.z_mm[0]), float(grid.z_mm[-1]), grid.shape
(20.5, 59.5, (40, 20, 40))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.geometry import AcquisitionGeometry
from protocols.records import AcquisitionHeader, ExposureRecord


@dataclass(frozen=True)
class ProjectionGeometry:
    """Per-projection focal spots plus the detector layout, as plain arrays.

    Attributes
    ----------
    sources_mm:
        Focal-spot positions, shape ``(n, 3)``, gantry frame, mm.
    angles_deg:
        Actual mean arc angle of each projection, shape ``(n,)``, degrees.
    pitch_mm, rows, cols, offset_x_mm, offset_y_mm:
        Detector layout (see :mod:`protocols.geometry`; pixel ``(r, c)`` centre is
        ``x = offset_x + (c - (cols-1)/2) * pitch``, ``y = offset_y + (r + 0.5) * pitch``).
    support_height_mm, thickness_mm:
        Breast support top above the detector and compressed thickness, mm.
    """

    sources_mm: np.ndarray
    angles_deg: np.ndarray
    pitch_mm: float
    rows: int
    cols: int
    offset_x_mm: float
    offset_y_mm: float
    support_height_mm: float
    thickness_mm: float

    @property
    def n(self) -> int:
        """Number of projections."""
        return int(self.sources_mm.shape[0])

    def col_of_x(self, x_mm: np.ndarray) -> np.ndarray:
        """Fractional column index of detector x (mm)."""
        return (np.asarray(x_mm) - self.offset_x_mm) / self.pitch_mm + (self.cols - 1) / 2.0

    def row_of_y(self, y_mm: np.ndarray) -> np.ndarray:
        """Fractional row index of detector y (mm)."""
        return (np.asarray(y_mm) - self.offset_y_mm) / self.pitch_mm - 0.5

    def x_of_col(self, col: np.ndarray) -> np.ndarray:
        """Detector x (mm) of a (fractional) column index."""
        return self.offset_x_mm + (np.asarray(col, dtype=np.float64) - (self.cols - 1) / 2.0) * self.pitch_mm

    def y_of_row(self, row: np.ndarray) -> np.ndarray:
        """Detector y (mm) of a (fractional) row index."""
        return self.offset_y_mm + (np.asarray(row, dtype=np.float64) + 0.5) * self.pitch_mm

    def subset(self, indices: Sequence[int]) -> "ProjectionGeometry":
        """The same detector with only the given projections."""
        idx = np.asarray(indices, dtype=np.int64)
        return ProjectionGeometry(
            self.sources_mm[idx], self.angles_deg[idx], self.pitch_mm, self.rows, self.cols,
            self.offset_x_mm, self.offset_y_mm, self.support_height_mm, self.thickness_mm,
        )


def projection_geometry(
    geometry: AcquisitionGeometry,
    exposures: Sequence[ExposureRecord],
    thickness_mm: float,
) -> ProjectionGeometry:
    """Focal spots of the given exposures from their actual (window-mean) angles.

    Parameters
    ----------
    geometry: the gantry (SID, pivot height, support height, detector).
    exposures: one record per projection, in the order of the image stack.
    thickness_mm: compressed breast thickness, mm.
    """
    if len(exposures) == 0:
        raise ValueError("no exposures given: need at least one projection")
    angles = np.array([e.mean_angle_deg for e in exposures], dtype=np.float64)
    det = geometry.detector
    return ProjectionGeometry(
        sources_mm=geometry.source_positions(angles),
        angles_deg=angles,
        pitch_mm=float(det.pitch_mm),
        rows=int(det.rows),
        cols=int(det.cols),
        offset_x_mm=float(det.offset_x_mm),
        offset_y_mm=float(det.offset_y_mm),
        support_height_mm=float(geometry.support_height_mm),
        thickness_mm=float(thickness_mm),
    )


def from_header(header: AcquisitionHeader, include_scouts: bool = False) -> ProjectionGeometry:
    """Projection geometry of every (non-scout) projection listed in an acquisition header.

    The order is that of ``header.projections`` (the order of the image stack).
    """
    exposures = [p.exposure for p in header.projections if include_scouts or not p.exposure.is_scout]
    return projection_geometry(header.geometry, exposures, header.compressed_thickness_mm)


@dataclass(frozen=True)
class Grid:
    """Voxel centres of a reconstruction volume (hot-path form of :class:`VolumeGrid`).

    Volume arrays are indexed ``[slice, y, x]``: shape ``(nz, ny, nx)``.
    ``slab_mm`` is each slice's thickness used as the path-length weight by the
    forward projector (half-way between neighbouring slice centres).
    """

    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)``."""
        return (self.z_mm.size, self.y_mm.size, self.x_mm.size)

    @property
    def voxel_mm(self) -> float:
        """In-plane voxel size, mm."""
        return float(self.x_mm[1] - self.x_mm[0]) if self.x_mm.size > 1 else 1.0

    @property
    def slab_mm(self) -> np.ndarray:
        """Thickness attributed to each slice, mm, shape ``(nz,)``."""
        z = self.z_mm
        if z.size == 1:
            return np.ones(1)
        edges = np.concatenate(([z[0] - 0.5 * (z[1] - z[0])], 0.5 * (z[1:] + z[:-1]), [z[-1] + 0.5 * (z[-1] - z[-2])]))
        return np.diff(edges)


class VolumeGrid(BaseModel):
    """Reconstruction volume: in-plane voxel size, region of interest and slice heights.

    The region of interest is given by the *edges* of the voxel area in the
    gantry frame (``x_min_mm .. x_max_mm``, ``y_min_mm .. y_max_mm``); voxel
    centres lie half a voxel inside. Slices are planes at the listed heights
    ``z_mm`` above the detector surface (any spacing, strictly increasing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    voxel_mm: float = Field(..., gt=0.0, le=10.0, description="in-plane voxel size, mm")
    x_min_mm: float
    x_max_mm: float
    y_min_mm: float
    y_max_mm: float
    z_mm: tuple[float, ...] = Field(..., min_length=1, description="slice heights above the detector, mm")

    @model_validator(mode="after")
    def _check(self) -> "VolumeGrid":
        if self.x_max_mm - self.x_min_mm < self.voxel_mm or self.y_max_mm - self.y_min_mm < self.voxel_mm:
            raise ValueError(
                f"region of interest x=[{self.x_min_mm}, {self.x_max_mm}] y=[{self.y_min_mm}, {self.y_max_mm}] "
                f"mm is smaller than one voxel ({self.voxel_mm} mm)"
            )
        if any(b <= a for a, b in zip(self.z_mm, self.z_mm[1:])):
            raise ValueError(f"slice heights z_mm must be strictly increasing, got {self.z_mm}")
        return self

    def to_grid(self) -> Grid:
        """Voxel centres as arrays."""
        nx = int(round((self.x_max_mm - self.x_min_mm) / self.voxel_mm))
        ny = int(round((self.y_max_mm - self.y_min_mm) / self.voxel_mm))
        x = self.x_min_mm + (np.arange(nx) + 0.5) * self.voxel_mm
        y = self.y_min_mm + (np.arange(ny) + 0.5) * self.voxel_mm
        return Grid(x_mm=x, y_mm=y, z_mm=np.asarray(self.z_mm, dtype=np.float64))


def slice_heights(start_mm: float, stop_mm: float, spacing_mm: float) -> tuple[float, ...]:
    """Slice centres from ``start_mm + spacing/2`` while below ``stop_mm`` (mm)."""
    if spacing_mm <= 0:
        raise ValueError(f"slice spacing must be > 0 mm, got {spacing_mm}")
    n = max(1, int(np.floor((stop_mm - start_mm) / spacing_mm + 1e-9)))
    return tuple(float(start_mm + (k + 0.5) * spacing_mm) for k in range(n))


def default_grid(
    header: AcquisitionHeader,
    voxel_mm: float | None = None,
    slice_spacing_mm: float = 1.0,
) -> VolumeGrid:
    """Grid over the whole detector area, slices from the support top through the breast.

    ``voxel_mm`` defaults to the detector pitch.
    """
    g = header.geometry
    det = g.detector
    v = det.pitch_mm if voxel_mm is None else voxel_mm
    x0 = det.offset_x_mm - det.width_mm / 2.0
    return VolumeGrid(
        voxel_mm=v,
        x_min_mm=x0,
        x_max_mm=x0 + det.width_mm,
        y_min_mm=det.offset_y_mm,
        y_max_mm=det.offset_y_mm + det.height_mm,
        z_mm=slice_heights(g.support_height_mm, g.support_height_mm + header.compressed_thickness_mm, slice_spacing_mm),
    )


def as_grid(grid: VolumeGrid | Grid) -> Grid:
    """Accept either form of the grid."""
    return grid.to_grid() if isinstance(grid, VolumeGrid) else grid


def slice_to_detector(
    pg: ProjectionGeometry, grid: Grid, k: int, z_mm: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fractional detector (col of each voxel x, row of each voxel y) for slice ``z_mm`` and projection ``k``.

    Returns ``(cols, rows, m)`` with shapes ``(nx,)``, ``(ny,)`` and the magnification.
    """
    sx, sy, sz = pg.sources_mm[k]
    if z_mm >= sz:
        raise ValueError(f"slice at z={z_mm} mm is not below the focal spot (z={sz} mm)")
    m = sz / (sz - z_mm)
    u = sx + (grid.x_mm - sx) * m
    v = sy + (grid.y_mm - sy) * m
    return pg.col_of_x(u), pg.row_of_y(v), float(m)
