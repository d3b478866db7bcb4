"""The exam record: what the exam did, complete or incomplete and why (pydantic, JSON on disk).

``status``:

* ``complete`` - every planned image acquired, checksummed and stored; compression
  released as the exam says;
* ``incomplete`` - the sweep ran but something is missing (an image never arrived,
  an exposure ended early, the paddle did not release): ``reason`` says what;
* ``aborted`` - the exam was ended (fault, interlock, link lost, operator, refused
  command): ``reason`` and ``fault`` say why, ``phase`` where.

Angles deg, kVp kV, mAs mAs, forces N, thicknesses mm; ``*_host_s`` on the host
clock (wall clock or SimPy virtual time), exposure windows on the device clock.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord, Technique

ExamStatus = Literal["complete", "incomplete", "aborted"]


class AecRecord(BaseModel):
    """The AEC's inputs and choice."""

    model_config = ConfigDict(extra="forbid")

    thickness_mm: float
    scout_signal_fraction: float
    target_signal_fraction: float
    kvp_exponent: float
    chosen: Technique
    note: str = ""


class ExposureCheck(BaseModel):
    """An exposure compared with its plan."""

    model_config = ConfigDict(extra="forbid")

    index: int
    status: str = Field(..., description="ExposureStatus name from EXPOSURE_DONE")
    planned_angle_deg: float
    actual_angle_deg: float = Field(..., description="mean of window start and end angles")
    angle_error_deg: float
    within_tolerance: bool
    planned_kvp: float
    planned_mas: float
    planned_window_ms: float
    actual_window_ms: float
    image_stored: bool = False


class ExamRecord(BaseModel):
    """Everything about one exam run (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    exam_name: str
    exam_kind: str
    status: ExamStatus
    reason: str | None = None
    fault: str | None = None
    phase: str = Field(..., description="phase the exam ended in")
    plan_id: int = 0
    started_host_s: float
    ended_host_s: float
    device: dict[str, Any] = Field(default_factory=dict, description="session info: firmware, serial, versions")
    angle_tolerance_deg: float
    technique: Technique | None = None
    aec: AecRecord | None = None
    compression_force_n: float | None = None
    compressed_thickness_mm: float | None = None
    compression_release: str = Field(..., description="after_exam or hold (the exam's policy)")
    released: bool = False
    scout: ProjectionRecord | None = None
    header: AcquisitionHeader | None = Field(None, description="geometry, thickness and one ProjectionRecord per image")
    exposures: list[ExposureRecord] = Field(default_factory=list, description="every exposure, scout included")
    checks: list[ExposureCheck] = Field(default_factory=list)
    planned_count: int = 0
    missing_images: list[int] = Field(default_factory=list, description="plan indices without a stored image")
    missing_reasons: dict[int, str] = Field(
        default_factory=dict, description="frame id -> why that exposure's image is not stored (scout included)")
    device_exposures: int | None = Field(
        None, description="exposures the device's ledger reports for this exam's plans (None: ledger not read)")
    warnings: list[str] = Field(default_factory=list)
    audit_log: str = "audit.jsonl"
    image_paths: list[str] = Field(default_factory=list, description="relative to the exam folder")

    @property
    def complete(self) -> bool:
        return self.status == "complete"
