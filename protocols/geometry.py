"""Acquisition geometry shared by the device, the host and reconstruction.

Frame of reference (the *gantry frame*), used everywhere in Crescent:

* origin: on the detector's sensitive surface, at the chest-wall edge of the
  active area, centred laterally;
* ``x`` (mm): along the chest wall, the direction the tube travels on its arc
  (positive toward the patient's left for a CC view; only the sign convention
  of the arc angle matters here);
* ``y`` (mm): perpendicular to the chest wall, into the breast (toward the
  nipple); the active area covers ``y >= 0``;
* ``z`` (mm): up, normal to the detector; ``z = 0`` is the sensitive surface,
  the breast support plate's top is at ``z = support_height_mm``.

The tube arm rotates about an axis parallel to ``y`` through the point
``(0, 0, pivot_height_mm)``. At arc angle ``theta`` (degrees, positive toward
``+x``) the focal spot is at::

    (R sin theta, 0, pivot_height_mm + R cos theta),  R = sid_mm - pivot_height_mm

so at 0 degrees the focal spot is ``sid_mm`` above the detector, over the
chest-wall edge (the usual mammographic half-cone geometry). The detector is
stationary.

Detector pixel ``(row, col)`` has its centre at::

    x = offset_x_mm + (col - (cols - 1) / 2) * pitch_mm
    y = offset_y_mm + (row + 0.5) * pitch_mm

Row 0 lies along the chest wall. Images are stored ``[row, col]``.

Example
-------
>>> g = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0)
>>> [round(v, 3) for v in g.source_position(0.0)]
[0.0, 0.0, 660.0]
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class DetectorGeometry(BaseModel):
    """Flat-panel detector layout in the gantry frame (see module docstring).

    ``pitch_mm`` is the pitch of the delivered image (after binning);
    ``native_pitch_mm * binning == pitch_mm``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    native_pitch_mm: float = Field(0.05, gt=0.0, le=1.0, description="physical del pitch, mm")
    binning: int = Field(1, ge=1, le=8, description="square binning factor of the read-out image")
    rows: int = Field(..., ge=1, le=20000, description="image rows (along y, chest wall -> nipple)")
    cols: int = Field(..., ge=1, le=20000, description="image columns (along x, along the chest wall)")
    offset_x_mm: float = Field(0.0, description="x of the active-area centre, mm")
    offset_y_mm: float = Field(0.0, description="y of the chest-wall edge of the active area, mm")

    @property
    def pitch_mm(self) -> float:
        """Pitch of the delivered (binned) image, mm."""
        return self.native_pitch_mm * self.binning

    @property
    def width_mm(self) -> float:
        """Extent along x, mm."""
        return self.cols * self.pitch_mm

    @property
    def height_mm(self) -> float:
        """Extent along y, mm."""
        return self.rows * self.pitch_mm

    def col_centres_mm(self) -> np.ndarray:
        """x of every column centre, mm, shape ``(cols,)``."""
        return self.offset_x_mm + (np.arange(self.cols) - (self.cols - 1) / 2.0) * self.pitch_mm

    def row_centres_mm(self) -> np.ndarray:
        """y of every row centre, mm, shape ``(rows,)``."""
        return self.offset_y_mm + (np.arange(self.rows) + 0.5) * self.pitch_mm


def default_detector() -> DetectorGeometry:
    """A 24 x 30 cm a-Se panel at 50 um (10 lp/mm Nyquist), read out 2x2 binned (100 um)."""
    return DetectorGeometry(native_pitch_mm=0.05, binning=2, rows=2400, cols=3000)


class AcquisitionGeometry(BaseModel):
    """Source, rotation centre and detector of one gantry, in the gantry frame.

    Defaults follow the GE Senographe Essential DBT geometry (660 mm SID,
    rotation centre 40 mm above the detector).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sid_mm: float = Field(660.0, gt=100.0, le=2000.0, description="source-to-image distance at 0 deg, mm")
    pivot_height_mm: float = Field(40.0, ge=0.0, le=500.0, description="rotation axis height above detector, mm")
    support_height_mm: float = Field(
        20.0, ge=0.0, le=100.0, description="breast support top above the detector surface, mm"
    )
    detector: DetectorGeometry = Field(default_factory=default_detector)

    @model_validator(mode="after")
    def _pivot_below_source(self) -> "AcquisitionGeometry":
        if self.pivot_height_mm >= self.sid_mm:
            raise ValueError(
                f"pivot_height_mm={self.pivot_height_mm} must be below sid_mm={self.sid_mm}"
            )
        return self

    @property
    def arm_radius_mm(self) -> float:
        """Distance from rotation axis to focal spot, mm."""
        return self.sid_mm - self.pivot_height_mm

    def source_position(self, angle_deg: float) -> tuple[float, float, float]:
        """Focal-spot position (x, y, z) in mm for an arc angle in degrees."""
        t = math.radians(angle_deg)
        r = self.arm_radius_mm
        return (r * math.sin(t), 0.0, self.pivot_height_mm + r * math.cos(t))

    def source_positions(self, angles_deg: np.ndarray) -> np.ndarray:
        """Focal-spot positions, shape ``(n, 3)`` mm, for arc angles in degrees."""
        t = np.radians(np.asarray(angles_deg, dtype=np.float64))
        r = self.arm_radius_mm
        out = np.zeros((t.size, 3))
        out[:, 0] = r * np.sin(t)
        out[:, 2] = self.pivot_height_mm + r * np.cos(t)
        return out

    def angle_for_source_x(self, x_mm: float) -> float:
        """Arc angle (degrees) whose focal spot has the given x (inverse of ``source_position``)."""
        return math.degrees(math.asin(x_mm / self.arm_radius_mm))


def magnification(source_z_mm: float, plane_z_mm: float) -> float:
    """Magnification of a plane at height ``plane_z_mm`` onto the detector (z = 0).

    A point ``p`` in that plane projects from source ``s`` to
    ``s + (p - s) * m`` in x and y, with ``m = s_z / (s_z - plane_z)``.
    """
    return source_z_mm / (source_z_mm - plane_z_mm)


def project_point(source: tuple[float, float, float], point: tuple[float, float, float]) -> tuple[float, float]:
    """Detector (x, y) in mm where the ray from ``source`` through ``point`` meets z = 0."""
    sx, sy, sz = source
    px, py, pz = point
    m = sz / (sz - pz)
    return (sx + (px - sx) * m, sy + (py - sy) * m)
