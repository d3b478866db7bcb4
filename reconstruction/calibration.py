"""Geometric calibration from a bead phantom: SID, rotation-centre height, detector offset.

The phantom holds small high-attenuation beads at known positions in the
gantry frame (mm). In each projection the beads are detected blindly
(:func:`reconstruction.markers.find_blobs`), matched to the beads predicted
by the current geometry (nearest neighbour, within ``match_radius_mm``), and
the parameters

    sid_mm, pivot_height_mm, offset_x_mm, offset_y_mm

are fitted by nonlinear least squares (``scipy.optimize.least_squares``) on
the detector positions of all matched beads in all projections, with each
projection's focal spot placed from its actual (window-mean) arc angle. The
match-and-fit is repeated so that a poor nominal geometry still converges.

Example
-------
>>> import numpy as np
>>> from protocols.geometry import AcquisitionGeometry, project_point
>>> true = AcquisitionGeometry(sid_mm=650.0, pivot_height_mm=45.0)
>>> beads = np.array([[x, y, z] for x in (-20, 0, 20) for y in (20, 50) for z in (30, 60)], float)
>>> angles = np.array([-12.5, 0.0, 12.5])
>>> marks = [np.array([project_point(true.source_position(a), b) for b in beads]) for a in angles]
>>> p = fit_geometry(AcquisitionGeometry(), angles, beads, marks)
>>> round(p.sid_mm, 3), round(p.pivot_height_mm, 3)
(650.0, 45.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from protocols.geometry import AcquisitionGeometry
from protocols.records import AcquisitionHeader
from reconstruction.geometry import from_header
from reconstruction.markers import find_blobs


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted geometry (mm) and fit quality.

    rms_residual_mm: RMS distance between detected and predicted bead positions on the detector;
    n_marks: matched bead images used; geometry: the input geometry with the fitted values.
    """

    sid_mm: float
    pivot_height_mm: float
    offset_x_mm: float
    offset_y_mm: float
    rms_residual_mm: float
    n_marks: int
    geometry: AcquisitionGeometry


def _project(params: np.ndarray, angles_deg: np.ndarray, beads: np.ndarray) -> np.ndarray:
    """Detector (x, y) mm of every bead in every view, ``(n_views, n_beads, 2)``, for params (sid, pivot)."""
    sid, pivot = params[0], params[1]
    t = np.radians(angles_deg)[:, None]
    r = sid - pivot
    sx, sz = r * np.sin(t), pivot + r * np.cos(t)
    m = sz / (sz - beads[None, :, 2])
    return np.stack([sx + (beads[None, :, 0] - sx) * m, beads[None, :, 1] * m], axis=-1)


def fit_geometry(
    nominal: AcquisitionGeometry,
    angles_deg: np.ndarray,
    beads_mm: np.ndarray,
    marks_mm: Sequence[np.ndarray],
) -> CalibrationResult:
    """Least-squares fit of (sid, pivot, offset_x, offset_y) to marked bead positions.

    marks_mm: per view, ``(n_beads, 2)`` detector (x, y) in mm *as computed with the nominal detector
    offsets*, NaN for beads not found. Returns the fitted geometry.
    """
    beads = np.asarray(beads_mm, dtype=np.float64)
    obs = np.stack([np.asarray(m, dtype=np.float64) for m in marks_mm])
    ok = np.all(np.isfinite(obs), axis=-1)
    if ok.sum() < 4:
        raise ValueError(f"only {int(ok.sum())} bead images matched; need at least 4")
    det = nominal.detector

    def resid(p: np.ndarray) -> np.ndarray:
        pred = _project(p, np.asarray(angles_deg), beads)
        # a pixel marked at nominal position x_nom sits at x_nom + (offset - nominal offset) in truth
        shifted = obs + (p[2:4] - np.array([det.offset_x_mm, det.offset_y_mm]))
        return (pred - shifted)[ok].ravel()

    x0 = np.array([nominal.sid_mm, nominal.pivot_height_mm, det.offset_x_mm, det.offset_y_mm])
    sol = least_squares(resid, x0, x_scale=np.array([10.0, 10.0, 1.0, 1.0]), xtol=1e-12, ftol=1e-12)
    sid, pivot, ox, oy = (float(v) for v in sol.x)
    geo = nominal.model_copy(update={
        "sid_mm": sid, "pivot_height_mm": pivot,
        "detector": det.model_copy(update={"offset_x_mm": ox, "offset_y_mm": oy}),
    })
    rms = float(np.sqrt(np.mean(sol.fun**2) * 2.0))
    return CalibrationResult(sid, pivot, ox, oy, rms, int(ok.sum()), geo)


def calibrate(
    images: np.ndarray,
    header: AcquisitionHeader,
    beads_mm: np.ndarray,
    match_radius_mm: float = 3.0,
    rounds: int = 3,
    threshold: float | None = None,
) -> CalibrationResult:
    """Calibrate from bead-phantom projections.

    images: line integrals ``(n, rows, cols)`` (beads bright); header: nominal geometry and the
    exposure records of the images; beads_mm: ``(n_beads, 3)`` bead centres in the gantry frame;
    match_radius_mm: largest distance between a detected bead and its predicted position.
    """
    pg = from_header(header)
    if images.shape != (pg.n, pg.rows, pg.cols):
        raise ValueError(f"images {images.shape} do not match the header ({pg.n}, {pg.rows}, {pg.cols})")
    beads = np.asarray(beads_mm, dtype=np.float64)
    detections = []
    for k in range(pg.n):
        rc = find_blobs(images[k], threshold=threshold)
        detections.append(np.stack([pg.x_of_col(rc[:, 1]), pg.y_of_row(rc[:, 0])], axis=1))
    geo = header.geometry
    result: CalibrationResult | None = None
    for _ in range(rounds):
        det = geo.detector
        pred = _project(np.array([geo.sid_mm, geo.pivot_height_mm]), pg.angles_deg, beads)
        pred = pred - np.array([det.offset_x_mm - header.geometry.detector.offset_x_mm,
                                det.offset_y_mm - header.geometry.detector.offset_y_mm])
        marks = []
        for k in range(pg.n):
            m = np.full((beads.shape[0], 2), np.nan)
            if detections[k].size:
                d = np.linalg.norm(pred[k][:, None, :] - detections[k][None, :, :], axis=-1)
                j = d.argmin(axis=1)
                near = d[np.arange(beads.shape[0]), j] < match_radius_mm
                unique = np.bincount(j[near], minlength=detections[k].shape[0])[j] == 1
                use = near & unique
                m[use] = detections[k][j[use]]
            marks.append(m)
        result = fit_geometry(header.geometry, pg.angles_deg, beads, marks)
        geo = result.geometry
    assert result is not None
    return result
