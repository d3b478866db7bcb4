"""Exact cone-beam line integrals of analytic objects, for the reconstruction tests only.

Independent of the product code: rays go from the focal spot of each exposure
(from the record's actual window-mean angle, placed with the shared
``protocols.geometry`` formula) to each detector pixel centre (or to a
``sub x sub`` grid inside each pixel, averaging transmitted intensity, i.e. the
pixel aperture), and the chord through each object is solved in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid: centre (mm), semi-axes (mm), attenuation mu (1/mm), added to what is around."""

    centre: tuple[float, float, float]
    axes: tuple[float, float, float]
    mu: float


def sphere(centre: tuple[float, float, float], diameter: float, mu: float) -> Ellipsoid:
    r = diameter / 2.0
    return Ellipsoid(centre, (r, r, r), mu)


@dataclass(frozen=True)
class Slab:
    """Uniform layer between heights z0 < z1 (mm), infinite in x and y, attenuation mu (1/mm)."""

    z0: float
    z1: float
    mu: float


def exposure(index: int, angle_deg: float, jitter_deg: float = 0.0, mas: float = 1.0) -> ExposureRecord:
    """A record whose actual window straddles the planned angle (+ jitter), e.g. continuous motion."""
    a = angle_deg + jitter_deg
    return ExposureRecord(
        index=index, frame_id=index, planned_angle_deg=angle_deg, angle_start_deg=a - 0.3, angle_end_deg=a + 0.3,
        kvp=29.0, mas=mas, anode_filter="W/Rh", window_start_s=index * 0.2, window_end_s=index * 0.2 + 0.05,
    )


def make_header(
    angles_deg: np.ndarray,
    pitch_mm: float,
    rows: int,
    cols: int,
    thickness_mm: float,
    sid_mm: float = 660.0,
    pivot_mm: float = 40.0,
    support_mm: float = 20.0,
    offset_x_mm: float = 0.0,
    offset_y_mm: float = 0.0,
    jitter_deg: np.ndarray | None = None,
) -> AcquisitionHeader:
    det = DetectorGeometry(native_pitch_mm=pitch_mm, rows=rows, cols=cols, offset_x_mm=offset_x_mm,
                           offset_y_mm=offset_y_mm)
    geo = AcquisitionGeometry(sid_mm=sid_mm, pivot_height_mm=pivot_mm, support_height_mm=support_mm, detector=det)
    jit = np.zeros(len(angles_deg)) if jitter_deg is None else jitter_deg
    recs = [
        ProjectionRecord(exposure=exposure(i, float(a), float(j)), rows=rows, cols=cols, checksum_crc32c=0)
        for i, (a, j) in enumerate(zip(angles_deg, jit))
    ]
    return AcquisitionHeader(geometry=geo, compressed_thickness_mm=thickness_mm, projections=recs)


def source_of(geo: AcquisitionGeometry, rec: ExposureRecord) -> np.ndarray:
    """Focal spot at the middle of the actual exposure window (by hand, from the frame definition)."""
    t = np.radians(0.5 * (rec.angle_start_deg + rec.angle_end_deg))
    r = geo.sid_mm - geo.pivot_height_mm
    return np.array([r * np.sin(t), 0.0, geo.pivot_height_mm + r * np.cos(t)])


def _chords(s: np.ndarray, px: np.ndarray, py: np.ndarray, objects) -> np.ndarray:
    """Sum of mu * chord length along rays s -> (px, py, 0); px, py broadcast together."""
    dx, dy, dz = px - s[0], py - s[1], -s[2] + np.zeros_like(px)
    length = np.sqrt(dx * dx + dy * dy + dz * dz)
    total = np.zeros(np.broadcast(px, py).shape)
    for ob in objects:
        if isinstance(ob, Slab):
            total += ob.mu * (ob.z1 - ob.z0) * length / s[2]
            continue
        a = np.asarray(ob.axes)
        c = np.asarray(ob.centre)
        s0 = (s - c) / a
        ex, ey, ez = dx / a[0], dy / a[1], dz / a[2]
        A = ex * ex + ey * ey + ez * ez
        B = s0[0] * ex + s0[1] * ey + s0[2] * ez
        C = float(s0 @ s0) - 1.0
        disc = B * B - A * C
        dt = np.where(disc > 0, 2.0 * np.sqrt(np.maximum(disc, 0.0)) / A, 0.0)
        total += ob.mu * dt * length
    return total


def project(header: AcquisitionHeader, objects, sub: int = 1) -> np.ndarray:
    """Line integrals (n, rows, cols). With ``sub > 1`` each pixel averages exp(-L) over sub x sub rays."""
    geo = header.geometry
    det = geo.detector
    x = det.col_centres_mm()
    y = det.row_centres_mm()
    out = np.empty((len(header.projections), det.rows, det.cols), np.float32)
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    for k, pr in enumerate(header.projections):
        s = source_of(geo, pr.exposure)
        if sub == 1:
            out[k] = _chords(s, x[None, :], y[:, None], objects)
            continue
        acc = np.zeros((det.rows, det.cols))
        for oy in offs:
            for ox in offs:
                acc += np.exp(-_chords(s, x[None, :] + ox * det.pitch_mm, y[:, None] + oy * det.pitch_mm, objects))
        out[k] = -np.log(acc / sub**2)
    return out


def noisy(line_integrals: np.ndarray, photons: float, seed: int) -> np.ndarray:
    """Raw counts: Poisson with mean ``photons * exp(-L)`` per pixel (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.poisson(photons * np.exp(-line_integrals.astype(np.float64))).astype(np.float64)
