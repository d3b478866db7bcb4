"""Measurements of ``crescent acquire`` after the exam: reconstruction, lesion focus and SDNR, dose, MTF.

This module composes the other packages and adds no physics of its own:
line integrals and FBP come from :mod:`reconstruction`, air kerma and MGD
from :mod:`physics` (the same models the simulated gantry books its dose with),
MTF and SDNR from :mod:`reconstruction.analysis`. It imports nothing from
:mod:`simulator`: what only a simulated gantry can give (flat fields, phantom
truth, a QA-edge image) is in :mod:`crescent.acquire.simulated`. Coordinates are in the gantry frame (mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np

from physics.beam_path import DEFAULT_BEAM_PATH, BeamPath
from physics.exposure_dose import exposure_hvl_mm_al, exposure_mgd_mgy, incident_air_kerma_mgy
from protocols.records import AcquisitionHeader, ExposureRecord
from reconstruction.fbp import as_grid, iter_fbp
from reconstruction.analysis.contrast import lesion_contrast
from reconstruction.filters import FilterSpec
from reconstruction.geometry import VolumeGrid, slice_heights
from reconstruction.preprocess import line_integrals


@dataclass(frozen=True)
class LesionTruth:
    """A lesion of the phantom: kind, centre (mm, gantry frame), diameter (mm)."""

    kind: str
    x_mm: float
    y_mm: float
    z_mm: float
    diameter_mm: float


@dataclass
class LesionFinding:
    """Where a lesion came into focus and how visible it is there."""

    truth: LesionTruth
    focus_z_mm: float
    depth_error_mm: float
    sdnr: float


@dataclass
class Reconstruction:
    """The reconstructed volume ``(nz, ny, nx)`` in 1/mm on ``grid``."""

    volume: np.ndarray
    grid: VolumeGrid
    seconds: float = 0.0

    @property
    def z_mm(self) -> np.ndarray:
        return np.asarray(self.grid.z_mm)

    def rc_of(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(row, col) fractional voxel indices of a gantry-frame point."""
        v = self.grid.voxel_mm
        return ((y_mm - self.grid.y_min_mm) / v - 0.5, (x_mm - self.grid.x_min_mm) / v - 0.5)


@dataclass
class DoseSummary:
    """Per-projection incident air kerma and MGD (mGy), and their totals."""

    air_kerma_mgy: list[float] = field(default_factory=list)
    mgd_mgy: list[float] = field(default_factory=list)
    hvl_mm_al: float = 0.0

    @property
    def total_mgd_mgy(self) -> float:
        return float(sum(self.mgd_mgy))


def breast_roi(lines: np.ndarray, header: AcquisitionHeader, margin_mm: float = 5.0) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) mm of the attenuating region seen in the central projection."""
    det = header.geometry.detector
    mid = lines[len(lines) // 2]
    mask = mid > 0.05
    if not mask.any():
        x = det.col_centres_mm()
        y = det.row_centres_mm()
        return float(x[0]), float(x[-1]), float(y[0]), float(y[-1])
    rows = np.where(mask.any(axis=1))[0]
    cols = np.where(mask.any(axis=0))[0]
    x = det.col_centres_mm()
    y = det.row_centres_mm()
    return (max(float(x[cols[0]]) - margin_mm, float(x[0])), min(float(x[cols[-1]]) + margin_mm, float(x[-1])),
            max(float(y[rows[0]]) - margin_mm, float(y[0])), min(float(y[rows[-1]]) + margin_mm, float(y[-1])))


#: Percentile of a projection's dark-corrected signal taken as its open-field (unattenuated) level.
OPEN_FIELD_PERCENTILE = 99.5


def open_field_signal(raw: np.ndarray, dark: float) -> np.ndarray:
    """Unattenuated signal of each projection ``(n, rows, cols)`` when no flat field is known, counts.

    The direct-exposure area beside the breast is the brightest part of a mammogram, so the
    :data:`OPEN_FIELD_PERCENTILE` percentile of each dark-corrected projection stands for I0. It does
    not correct the heel effect or gain non-uniformity (a flat field would); the report says so.
    """
    a = np.asarray(raw, dtype=np.float32) - np.float32(dark)
    return np.array([float(np.percentile(p, OPEN_FIELD_PERCENTILE)) for p in a])


def reconstruct(raw: np.ndarray, header: AcquisitionHeader, *, flat: np.ndarray | None, dark: float,
                voxel_mm: float, slice_mm: float = 1.0, spec: FilterSpec | None = None,
                i0: np.ndarray | None = None,
                on_slice: Callable[[int, int], None] | None = None) -> Reconstruction:
    """FBP of the breast region: log-normalise (flat fields, else ``i0`` per projection), then filtered backprojection.

    ``on_slice(done, total)`` is called after each reconstructed slice (progress).
    """
    import time

    t0 = time.perf_counter()
    lines = line_integrals(raw, flat=flat, dark=dark, i0=None if flat is not None else i0, clip_negative=True)
    x0, x1, y0, y1 = breast_roi(lines, header)
    g = header.geometry
    grid = VolumeGrid(voxel_mm=voxel_mm, x_min_mm=x0, x_max_mm=x1, y_min_mm=y0, y_max_mm=y1,
                      z_mm=slice_heights(g.support_height_mm, g.support_height_mm + header.compressed_thickness_mm,
                                         slice_mm))
    # full ramp, Hann to Nyquist: brings sub-millimetre calcifications into sharp focus
    spec = spec or FilterSpec(ramp_fraction=1.0, apodisation="hann", cutoff=1.0)
    shape = as_grid(grid).shape
    volume = np.empty(shape, dtype=np.float32)
    for done, (iz, _, img) in enumerate(iter_fbp(lines, header, grid, spec), start=1):  # = fbp(), slice by slice
        volume[iz] = img
        if on_slice is not None:
            on_slice(done, shape[0])
    return Reconstruction(volume=volume, grid=grid, seconds=time.perf_counter() - t0)


#: Lesions smaller than this many image pixels are below what the detector resolves; reported, not judged.
RESOLVABLE_PIXELS = 1.25
#: Lesions at least this large (mm) are measured like masses (inner disc, close annulus).
MASS_DIAMETER_MM = 2.0


def roi_for(diameter_mm: float, voxel_mm: float) -> tuple[float, tuple[float, float]]:
    """Disc radius and background annulus (inner, outer), in voxels, for a lesion of ``diameter_mm``.

    Calcifications: the whole disc (at least one voxel) against a ring 2-6 voxels out. Masses:
    the inner 60 % of the disc against a ring at 1.3-2 radii, so that the ramp-filtered mass
    interior and nearby tissue texture weigh less than the mass itself.
    """
    r = 0.5 * diameter_mm / voxel_mm
    if diameter_mm >= MASS_DIAMETER_MM:
        return 0.6 * r, (1.3 * r, 2.0 * r)
    r = max(r, 1.0)
    return r, (r + 2.0, r + 6.0)


def resolvable(diameter_mm: float, pitch_mm: float) -> bool:
    """Whether a lesion spans enough image pixels to be judged for focus."""
    return diameter_mm >= RESOLVABLE_PIXELS * pitch_mm


def _edge_focus_profile(vol: np.ndarray, rc: tuple[float, float], radius_px: float) -> np.ndarray:
    """Per slice: energy of the x-gradient on a mass's boundary ring over that of a background ring.

    Out-of-plane blur in DBT runs along the tube's motion (x); a mass's boundary is sharpest, and its
    x-gradient strongest, in the slice where the mass is in focus.
    """
    from scipy import ndimage

    r, c = rc
    pad = int(2.8 * radius_px) + 2
    r0, r1 = max(int(r) - pad, 0), min(int(r) + pad + 1, vol.shape[1])
    c0, c1 = max(int(c) - pad, 0), min(int(c) + pad + 1, vol.shape[2])
    rr, cc = np.indices((r1 - r0, c1 - c0))
    dist = np.hypot(rr + r0 - r, cc + c0 - c)
    ring = (dist > 0.7 * radius_px) & (dist < 1.3 * radius_px)
    background = (dist > 1.6 * radius_px) & (dist < 2.6 * radius_px)
    out = np.empty(vol.shape[0])
    for k in range(vol.shape[0]):
        gx = ndimage.sobel(vol[k, r0:r1, c0:c1].astype(np.float64), axis=1)
        out[k] = (gx[ring] ** 2).mean() / max((gx[background] ** 2).mean(), 1e-30)
    return out


def find_lesions(recon: Reconstruction, lesions: list[LesionTruth]) -> list[LesionFinding]:
    """For each lesion inside the volume: the slice where it is in focus, and its SDNR there.

    Calcifications: the slice where the disc's mean exceeds its background annulus' most
    (:func:`roi_for`). Masses: the slice where the mass boundary is sharpest along the tube's
    motion (:func:`_edge_focus_profile`), since a large low-contrast mass's mean contrast changes
    little with depth. SDNR divides the disc-minus-annulus contrast by the annulus' standard deviation.
    """
    vol = recon.volume
    z = recon.z_mm
    v = recon.grid.voxel_mm
    out = []
    for les in lesions:
        r, c = recon.rc_of(les.x_mm, les.y_mm)
        radius, (inner, outer) = roi_for(les.diameter_mm, v)
        reach = max(outer, 2.7 * 0.5 * les.diameter_mm / v)
        if not (reach <= r < vol.shape[1] - reach and reach <= c < vol.shape[2] - reach):
            continue
        r0, r1 = int(r - outer - 1), int(r + outer + 2)
        c0, c1 = int(c - outer - 1), int(c + outer + 2)
        contrast = [lesion_contrast(vol[k, r0:r1, c0:c1], (r - r0, c - c0), radius, (inner, outer))
                    for k in range(vol.shape[0])]
        if les.diameter_mm >= MASS_DIAMETER_MM:
            k = int(np.argmax(_edge_focus_profile(vol, (r, c), 0.5 * les.diameter_mm / v)))
        else:
            k = int(np.argmax([m.signal - m.background for m in contrast]))
        out.append(LesionFinding(les, float(z[k]), float(z[k] - les.z_mm), float(contrast[k].sdnr)))
    return out


def dose(header: AcquisitionHeader, exposures: list[ExposureRecord], *, thickness_mm: float,
         glandularity: float, beam_path: BeamPath = DEFAULT_BEAM_PATH) -> DoseSummary:
    """Incident air kerma, HVL and MGD (Dance method, DBT t-factor) of each exposure for this breast.

    Physics from :mod:`physics.exposure_dose` only: the same for a simulated gantry and a rig. Kerma
    and HVL are those of the beam with the compression paddle in place (``beam_path``: the simulated
    gantry's own configuration, or the default calibrated beam path on a rig).
    """
    summary = DoseSummary()
    for e in exposures:
        summary.air_kerma_mgy.append(incident_air_kerma_mgy(
            header.geometry, e, header.geometry.support_height_mm + thickness_mm, beam_path=beam_path))
        summary.mgd_mgy.append(exposure_mgd_mgy(header.geometry, e, thickness_mm=thickness_mm,
                                                glandularity=glandularity, beam_path=beam_path))
    if exposures:
        summary.hvl_mm_al = float(exposure_hvl_mm_al(exposures[0], beam_path=beam_path))
    return summary


@dataclass
class StereoFinding:
    """A lesion localised from a stereotactic pair: true and triangulated centre (mm, gantry frame)."""

    truth: LesionTruth
    position_mm: tuple[float, float, float]
    parallel_mm: tuple[float, float, float]
    miss_mm: float

    @property
    def error_mm(self) -> float:
        t = np.array([self.truth.x_mm, self.truth.y_mm, self.truth.z_mm])
        return float(np.linalg.norm(np.asarray(self.position_mm) - t))


def stereo_localise(lines: np.ndarray, header: AcquisitionHeader, exposures: list[ExposureRecord],
                    lesions: list[LesionTruth], search_mm: float = 0.5) -> list[StereoFinding]:
    """Triangulate each resolvable lesion from the two views of a stereotactic pair.

    The operator's mark is simulated: the search starts where the lesion would project (as a
    user clicks near what they see) and the mark is the refined centroid of the blob found within
    ``search_mm`` in each line-integral image (small, so that a neighbour of the same cluster is not
    taken for it); the depth then comes from exact cone-beam
    triangulation (:func:`reconstruction.stereo.localise`).
    """
    from protocols.geometry import project_point
    from reconstruction.markers import centroid_near
    from reconstruction.stereo import localise

    g = header.geometry
    det = g.detector
    xs, ys = det.col_centres_mm(), det.row_centres_mm()
    radius = max(2, int(round(search_mm / det.pitch_mm)))
    a, b = exposures[0], exposures[1]
    out = []
    for les in lesions:
        if les.diameter_mm >= MASS_DIAMETER_MM or not resolvable(les.diameter_mm, det.pitch_mm):
            continue
        marks = []
        for img, e in ((lines[0], a), (lines[1], b)):
            px, py = project_point(g.source_position(e.mean_angle_deg), (les.x_mm, les.y_mm, les.z_mm))
            row = (py - ys[0]) / det.pitch_mm
            col = (px - xs[0]) / det.pitch_mm
            try:
                r, c = centroid_near(img, row, col, radius)
            except ValueError:
                break
            marks.append((xs[0] + c * det.pitch_mm, ys[0] + r * det.pitch_mm))
        if len(marks) != 2:
            continue
        res = localise(g, a, b, marks[0], marks[1])
        out.append(StereoFinding(les, tuple(float(v) for v in res.position_mm),
                                 tuple(float(v) for v in res.parallel_mm), float(res.miss_mm)))
    return out
