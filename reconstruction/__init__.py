"""DBT reconstruction and image-quality analysis for Crescent.

Works on line-integral projections ``(n, rows, cols)`` plus their exposure
records (:class:`protocols.records.AcquisitionHeader`), from the simulator or a
real detector alike; it does not import :mod:`simulator`. Gantry frame and
units: see :mod:`protocols.geometry` (mm, degrees).

Main entry points::

    line_integrals(raw, flat=..., dark=..., i0=...)        -> (n, rows, cols) float32
    default_grid(header, voxel_mm, slice_spacing_mm)        -> VolumeGrid
    fbp(projections, header, grid, spec=FilterSpec(...))    -> (nz, ny, nx) 1/mm   (iter_fbp streams slices)
    shift_and_add(projections, header, grid)                -> (nz, ny, nx)        (iter_shift_and_add)
    sart(projections, header, grid, n_iter, relaxation)     -> (nz, ny, nx) 1/mm
    forward_project(volume, projection_geometry, grid, k)   -> line integrals of view k
    stereo.localise(geometry, exp_a, exp_b, mark_a, mark_b) -> StereoResult
    calibration.calibrate(images, header, beads_mm)         -> CalibrationResult
    analysis.mtf.slanted_edge_mtf(image, pitch_mm)          -> (freq_lp_mm, mtf)
"""

from reconstruction.fbp import fbp, iter_fbp, iter_shift_and_add, shift_and_add
from reconstruction.filters import FilterSpec
from reconstruction.geometry import Grid, ProjectionGeometry, VolumeGrid, default_grid, from_header, slice_heights
from reconstruction.iterative import sart
from reconstruction.preprocess import line_integrals
from reconstruction.projector import forward_project

__all__ = [
    "FilterSpec", "Grid", "ProjectionGeometry", "VolumeGrid", "default_grid", "fbp", "forward_project",
    "from_header", "iter_fbp", "iter_shift_and_add", "line_integrals", "sart", "shift_and_add", "slice_heights",
]
