"""Stereotactic localisation from two exposures (e.g. the +15 / -15 degree pair).

Given where a lesion was marked on the detector in each image (gantry frame,
mm), the lesion is the point closest to both back-projected rays (exact
cone-beam triangulation from each exposure's actual focal spot). The classic
parallel-beam formula is given for comparison::

    z = (u_b - u_a) / (tan theta_a - tan theta_b)      (for +/-15 deg: z = dx / (2 tan 15))

And the needle guide's coordinates for a vertical approach through the
compression paddle's window follow from the target.

Example
-------
>>> from protocols.geometry import AcquisitionGeometry, project_point
>>> g = AcquisitionGeometry()
>>> a, b = g.source_position(15.0), g.source_position(-15.0)
>>> lesion = (12.0, 40.0, 45.0)
>>> res = localise(g, 15.0, -15.0, project_point(a, lesion), project_point(b, lesion))
>>> [round(float(v), 6) for v in res.position_mm]
[12.0, 40.0, 45.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from protocols.geometry import AcquisitionGeometry
from protocols.records import ExposureRecord


@dataclass(frozen=True)
class StereoResult:
    """Lesion position from a stereo pair (gantry frame, mm).

    position_mm: exact cone-beam triangulation (midpoint of the closest points of the two rays);
    parallel_mm: the parallel-beam approximation; miss_mm: distance between the two rays at
    their closest approach (large values mean inconsistent marks).
    """

    position_mm: np.ndarray
    parallel_mm: np.ndarray
    miss_mm: float


def _angle(e: ExposureRecord | float) -> float:
    return e.mean_angle_deg if isinstance(e, ExposureRecord) else float(e)


def closest_point(s1: np.ndarray, d1: np.ndarray, s2: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, float]:
    """Midpoint of the shortest segment between lines ``s1 + t d1`` and ``s2 + u d2``, and its length."""
    w = s1 - s2
    a, b, c = d1 @ d1, d1 @ d2, d2 @ d2
    d, e = d1 @ w, d2 @ w
    den = a * c - b * b
    if den <= 1e-12 * a * c:
        raise ValueError("the two rays are parallel: exposures at the same angle cannot triangulate")
    t = (b * e - c * d) / den
    u = (a * e - b * d) / den
    p1, p2 = s1 + t * d1, s2 + u * d2
    return 0.5 * (p1 + p2), float(np.linalg.norm(p1 - p2))


def localise(
    geometry: AcquisitionGeometry,
    exposure_a: ExposureRecord | float,
    exposure_b: ExposureRecord | float,
    mark_a_mm: tuple[float, float],
    mark_b_mm: tuple[float, float],
) -> StereoResult:
    """Lesion (x, y, z) in mm from its detector marks ``(x, y)`` (mm) in two exposures.

    exposure_a/b: the exposure records (their actual window-mean angle is used) or arc angles in degrees.
    """
    ta, tb = _angle(exposure_a), _angle(exposure_b)
    sa, sb = np.array(geometry.source_position(ta)), np.array(geometry.source_position(tb))
    pa = np.array([mark_a_mm[0], mark_a_mm[1], 0.0])
    pb = np.array([mark_b_mm[0], mark_b_mm[1], 0.0])
    pos, miss = closest_point(sa, pa - sa, sb, pb - sb)
    return StereoResult(pos, localise_parallel(ta, tb, mark_a_mm, mark_b_mm), miss)


def localise_parallel(
    angle_a_deg: float, angle_b_deg: float, mark_a_mm: tuple[float, float], mark_b_mm: tuple[float, float]
) -> np.ndarray:
    """Parallel-beam approximation (x, y, z) in mm: rays tilted by the arc angle, no magnification."""
    ta, tb = np.tan(np.radians(angle_a_deg)), np.tan(np.radians(angle_b_deg))
    if abs(ta - tb) < 1e-9:
        raise ValueError("the two exposures are at the same angle")
    z = (mark_b_mm[0] - mark_a_mm[0]) / (ta - tb)
    x = 0.5 * (mark_a_mm[0] + z * ta + mark_b_mm[0] + z * tb)
    y = 0.5 * (mark_a_mm[1] + mark_b_mm[1])
    return np.array([x, y, z])


class NeedleSpec(BaseModel):
    """Biopsy needle and gun: how far the gun throws the needle, and where the sample notch sits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    throw_mm: float = Field(22.0, ge=0.0, le=60.0, description="forward travel of the needle when fired, mm")
    tip_to_aperture_mm: float = Field(9.0, ge=0.0, le=40.0, description="from the tip back to the notch centre, mm")
    min_margin_mm: float = Field(4.0, ge=0.0, description="least clearance between fired tip and support, mm")


@dataclass(frozen=True)
class NeedlePlan:
    """Coordinates for a vertical (z-axis) needle approach through the paddle window, mm.

    target_mm: lesion (gantry frame); entry_mm: skin entry at the paddle's lower surface above it;
    depth_mm: target depth below the paddle (= support height + thickness - z);
    prefire_depth_mm: stroke of the guide, i.e. how deep the tip is pushed before firing, so that after
    the throw the notch centre lies on the target; postfire_tip_depth_mm: tip depth after firing;
    margin_mm: clearance between the fired tip and the breast support (negative: the tip would hit it);
    safe: margin at least the needle's minimum and a non-negative pre-fire depth.
    """

    target_mm: np.ndarray
    entry_mm: np.ndarray
    depth_mm: float
    prefire_depth_mm: float
    postfire_tip_depth_mm: float
    margin_mm: float
    safe: bool


def needle_plan(
    target_mm: np.ndarray, geometry: AcquisitionGeometry, thickness_mm: float, needle: NeedleSpec | None = None
) -> NeedlePlan:
    """Needle-guide coordinates for a target (x, y, z) in mm, compressed thickness in mm."""
    nd = NeedleSpec() if needle is None else needle
    t = np.asarray(target_mm, dtype=np.float64)
    paddle_z = geometry.support_height_mm + thickness_mm
    depth = paddle_z - t[2]
    if not 0.0 <= depth <= thickness_mm:
        raise ValueError(f"target z={t[2]:.2f} mm lies outside the compressed breast "
                         f"({geometry.support_height_mm}..{paddle_z} mm)")
    post = depth + nd.tip_to_aperture_mm
    pre = post - nd.throw_mm
    margin = thickness_mm - post
    return NeedlePlan(t, np.array([t[0], t[1], paddle_z]), float(depth), float(pre), float(post), float(margin),
                      bool(margin >= nd.min_margin_mm and pre >= 0.0))
