"""Exposure and projection records: what actually happened on each exposure.

These models cross every boundary (wire events decoded by the host, files on
disk, the input of reconstruction and of the X-ray simulator), so they carry
physical units in their field names. Angles are arc angles in degrees in the
gantry frame of :mod:`protocols.geometry`; times are seconds on the device
clock.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.geometry import AcquisitionGeometry

#: Anode/filter combinations the generator and the physics know.
AnodeFilter = Literal["W/Rh", "W/Ag", "W/Al", "Mo/Mo", "Mo/Rh", "Rh/Rh"]
ANODE_FILTERS: tuple[str, ...] = ("W/Rh", "W/Ag", "W/Al", "Mo/Mo", "Mo/Rh", "Rh/Rh")


class Technique(BaseModel):
    """Exposure technique of one projection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anode_filter: AnodeFilter = "W/Rh"
    kvp: float = Field(29.0, ge=20.0, le=49.0, description="tube voltage, kV")
    mas: float = Field(4.0, gt=0.0, le=600.0, description="tube current-time product, mAs")
    focal_spot_mm: float = Field(0.3, ge=0.05, le=0.6, description="nominal focal spot size, mm")


class ExposureRecord(BaseModel):
    """One exposure as the device performed it (actual values, not the plan).

    ``angle_start_deg`` and ``angle_end_deg`` are the encoder angles at the
    start and end of the X-ray window; for step-and-shoot they are equal up to
    encoder noise, for continuous motion the focal spot travels between them.
    """

    model_config = ConfigDict(extra="forbid")

    index: int = Field(..., ge=0, description="position in the exam's plan, 0-based")
    frame_id: int = Field(..., ge=0, description="detector frame id of the image")
    planned_angle_deg: float
    angle_start_deg: float
    angle_end_deg: float
    kvp: float = Field(..., description="mean tube voltage during the window, kV")
    mas: float = Field(..., ge=0.0, description="delivered mAs")
    anode_filter: AnodeFilter
    focal_spot_mm: float = 0.3
    window_start_s: float = Field(..., description="X-ray on, device clock, s")
    window_end_s: float = Field(..., description="X-ray off, device clock, s")
    terminated_early: bool = Field(False, description="ended by backup timer, interlock or abort")
    is_scout: bool = Field(False, description="AEC pre-exposure, not part of the image set")

    @property
    def mean_angle_deg(self) -> float:
        """Arc angle at the middle of the window, degrees."""
        return 0.5 * (self.angle_start_deg + self.angle_end_deg)

    @property
    def window_s(self) -> float:
        """Exposure window length, s."""
        return self.window_end_s - self.window_start_s


def exposure_from_done(done: Any, anode_filter: str, focal_spot_mm: float, is_scout: bool = False) -> ExposureRecord:
    """The :class:`ExposureRecord` an EXPOSURE_DONE message describes (wire units -> deg, kV, mAs, s).

    The one decoding both ends use: the simulated gantry renders each image from exactly this record, so
    a host decoding the same event gets the same floats and can regenerate the image bit for bit. Wire
    units are divided by their scale (``kv_ckv / 100``): the nearest double to the decimal value (a
    multiplication by 0.01 can land one ulp away, and a spectrum one ulp apart draws other noise).
    """
    from protocols.wire.catalogue import ExposureStatus

    return ExposureRecord(index=done.index, frame_id=done.frame_id, planned_angle_deg=done.planned_mdeg / 1000.0,
                          angle_start_deg=done.start_mdeg / 1000.0, angle_end_deg=done.end_mdeg / 1000.0,
                          kvp=done.kv_ckv / 100.0, mas=done.mas_nas / 1e6, anode_filter=anode_filter,  # type: ignore[arg-type]
                          focal_spot_mm=focal_spot_mm, window_start_s=done.window_start_us / 1e6,
                          window_end_s=done.window_end_us / 1e6,
                          terminated_early=done.status != int(ExposureStatus.OK), is_scout=is_scout)


class ProjectionRecord(BaseModel):
    """A stored projection image and the exposure that made it."""

    model_config = ConfigDict(extra="forbid")

    exposure: ExposureRecord
    rows: int
    cols: int
    dtype: str = "uint16"
    checksum_crc32c: int = Field(..., ge=0, lt=2**32, description="CRC-32C of the raw little-endian pixels")
    path: str | None = Field(None, description="file holding the pixels, relative to the exam folder")


class AcquisitionHeader(BaseModel):
    """Everything reconstruction needs besides the pixels."""

    model_config = ConfigDict(extra="forbid")

    geometry: AcquisitionGeometry
    compressed_thickness_mm: float = Field(..., gt=0.0, le=200.0)
    compression_force_n: float = Field(0.0, ge=0.0)
    projections: list[ProjectionRecord] = Field(default_factory=list)
