"""Voxel phantoms: a label volume in slices parallel to the detector.

``labels[k, j, i]`` (uint8, material labels of :mod:`physics.materials`)
is the voxel whose centre is at::

    x = origin_mm[0] + (i + 0.5) * voxel_mm[2]
    y = origin_mm[1] + (j + 0.5) * voxel_mm[1]
    z = origin_mm[2] + (k + 0.5) * voxel_mm[0]

in the gantry frame (mm). ``origin_mm`` is the outer corner of voxel (0, 0, 0)
(minimum x, y, z). ``voxel_mm`` is (dz, dy, dx).

The projector works on the run-length encoding of the labels along x
(:meth:`VoxelPhantom.row_runs`, built once and cached). Code that edits
``labels`` in place must call :meth:`VoxelPhantom.labels_changed` afterwards
(:func:`voxelise` does); assigning a new array to ``labels`` is detected.

Example
-------
>>> v = VoxelPhantom(np.zeros((2, 3, 4), np.uint8), (0.5, 0.25, 0.25), (0.0, 0.0, 20.0))
>>> v.slice_centres_mm().tolist()
[20.25, 20.75]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.imaging.phantoms.analytic import AnalyticObject
from simulator.imaging.phantoms.runs import RowRuns, row_runs


@dataclass(frozen=True)
class Lesion:
    """Ground truth of one lesion: kind ("mass", "calcification", "bead", "disc"...), centre (mm, gantry frame), diameter (mm)."""

    kind: str
    centre_mm: tuple[float, float, float]
    diameter_mm: float
    label: int


@dataclass
class VoxelPhantom:
    """Label volume ``[nz, ny, nx]`` with voxel size ``(dz, dy, dx)`` mm and corner ``origin_mm`` (x, y, z)."""

    labels: np.ndarray
    voxel_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    lesions: list[Lesion] = field(default_factory=list)
    _runs: tuple[np.ndarray, RowRuns] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.labels.dtype != np.uint8 or self.labels.ndim != 3:
            raise ValueError("labels must be a 3-D uint8 array [nz, ny, nx]")
        if min(self.voxel_mm) <= 0:
            raise ValueError(f"voxel_mm must be positive, got {self.voxel_mm}")
        if not self.labels.flags.c_contiguous:
            self.labels = np.ascontiguousarray(self.labels)

    def row_runs(self) -> RowRuns:
        """Run-length encoding of ``labels`` along x (cached; see :mod:`.runs`)."""
        if self._runs is None or self._runs[0] is not self.labels:
            if not self.labels.flags.c_contiguous:
                self.labels = np.ascontiguousarray(self.labels)
            self._runs = (self.labels, row_runs(self.labels))
        return self._runs[1]

    def labels_changed(self) -> None:
        """Drop cached derived data after ``labels`` was edited in place."""
        self._runs = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def slice_centres_mm(self) -> np.ndarray:
        """z of every slice centre, mm."""
        return self.origin_mm[2] + (np.arange(self.shape[0]) + 0.5) * self.voxel_mm[0]

    def axis_centres_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates along (z, y, x), mm."""
        dz, dy, dx = self.voxel_mm
        nz, ny, nx = self.shape
        return (self.origin_mm[2] + (np.arange(nz) + 0.5) * dz,
                self.origin_mm[1] + (np.arange(ny) + 0.5) * dy,
                self.origin_mm[0] + (np.arange(nx) + 0.5) * dx)

    def present_labels(self) -> list[int]:
        """Non-air labels that occur in the volume."""
        counts = np.zeros(256, dtype=np.int64)
        for sl in self.labels:  # slice by slice: bincount would widen the whole volume to int64
            counts += np.bincount(sl.ravel(), minlength=256)
        return [int(k) for k in np.nonzero(counts)[0] if k != 0]


def empty_grid(lo_mm: tuple[float, float, float], hi_mm: tuple[float, float, float],
               voxel_mm: float | tuple[float, float, float], fill: int = 0) -> VoxelPhantom:
    """An all-``fill`` phantom covering the box lo..hi (x, y, z in mm) with the given voxel size."""
    vz, vy, vx = (voxel_mm,) * 3 if np.isscalar(voxel_mm) else voxel_mm  # type: ignore[misc]
    n = [max(1, int(round((hi_mm[a] - lo_mm[a]) / d))) for a, d in zip((2, 1, 0), (vz, vy, vx))]
    return VoxelPhantom(np.full(n, fill, dtype=np.uint8), (float(vz), float(vy), float(vx)), tuple(float(v) for v in lo_mm))


def voxelise(phantom: VoxelPhantom, objects: list[AnalyticObject]) -> VoxelPhantom:
    """Paint analytic objects into the label volume in place (voxel centre inside -> label); returns it.

    Objects are painted in order, so later objects overwrite earlier ones.
    """
    zc, yc, xc = phantom.axis_centres_mm()
    dz, dy, dx = phantom.voxel_mm
    for obj in objects:
        lo, hi = obj.shape.bounds()
        i0, i1 = _index_range(xc, lo[0], hi[0])
        j0, j1 = _index_range(yc, lo[1], hi[1])
        k0, k1 = _index_range(zc, lo[2], hi[2])
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            continue
        for k in range(k0, k1):  # slice by slice keeps memory bounded
            yy, xx = np.meshgrid(yc[j0:j1], xc[i0:i1], indexing="ij")
            pts = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, zc[k])], axis=1)
            inside = obj.shape.contains(pts).reshape(xx.shape)
            view = phantom.labels[k, j0:j1, i0:i1]
            view[inside] = obj.label
    phantom.labels_changed()
    return phantom


def _index_range(centres: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    return int(np.searchsorted(centres, lo, "left")), int(np.searchsorted(centres, hi, "right"))
