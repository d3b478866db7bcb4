"""What ``crescent acquire`` was asked to do: the validated options and their defaults.

Light on purpose (pydantic only): nothing here loads the pipeline, numba or the simulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crescent.acquire.defaults import DEFAULT_PHANTOM_VOXEL_MM
from crescent.pacs.address import DEFAULT_CALLING_AE, check_ae_title, parse_address
from protocols.option_bounds import IMAGE_TIMEOUT_S_MAX, WATCHDOG_MS_MAX, WATCHDOG_MS_MIN


class AcquireOptions(BaseModel):
    """What ``crescent acquire`` was asked to do (validated CLI input)."""

    model_config = ConfigDict(extra="forbid")

    exam: str = Field("dbt-standard", description="standard exam name or exam YAML path")
    phantom: str = Field("breast", description="phantom of the simulated gantry")
    seed: int = Field(1, ge=0, description="seed of the phantom, noise and everything random")
    port: str | None = Field(None, description="pyserial URL of a gantry; none = start the simulated gantry")
    out: Path = Field(Path("out"), description="output folder")
    virtual_time: bool = Field(False, description="simulated gantry in virtual time instead of a real pty")
    gantry_config: str | None = Field(None, description="gantry config name or YAML path (simulated gantry)")
    binning: int | None = Field(None, ge=1, le=8, description="read-out binning of the simulated panel "
                                "(default: 4 = 200 um; 1 = 50 um for stereotactic exams, which need the detail)")
    phantom_voxel_mm: float = Field(DEFAULT_PHANTOM_VOXEL_MM, gt=0.0, le=2.0)
    recon_voxel_mm: float | None = Field(None, gt=0.0, le=2.0, description="in-plane voxel (default: image pitch)")
    slice_mm: float = Field(1.0, gt=0.0, le=10.0, description="slice spacing, mm")
    scatter: bool | None = Field(None, description="scatter in the simulated images (default: the gantry "
                                 "config's, on)")
    grid: bool | None = Field(None, description="anti-scatter grid on the simulated panel (default: the gantry "
                              "config's, none)")
    grid_primary_transmission: float | None = Field(
        None, ge=0.5, le=1.0, description="primary transmission of the grid (default 0.73, Xia et al. 2005)")
    grid_scatter_transmission: float | None = Field(
        None, ge=0.0, le=1.0, description="scatter transmission of the grid (default 0.13, Xia et al. 2005); "
        "at most the primary transmission")
    watchdog_ms: int | None = Field(
        None, ge=WATCHDOG_MS_MIN, le=WATCHDOG_MS_MAX,
        description="device watchdog asked for, ms (default 500, SPEC's default, for a rig as for the simulated "
                    "gantry this command starts)")
    image_timeout_s: float | None = Field(
        None, gt=0.0, le=IMAGE_TIMEOUT_S_MAX,
        description="wait for each image, s (default: 3 s on a rig, 60 s on a simulated gantry, which renders "
                    "each frame)")
    projection_sop: Literal["breast-projection", "digital-mammography"] = Field(
        "breast-projection",
        description="DICOM object of a tomosynthesis sweep's projections: one multi-frame Breast Projection X-Ray "
                    "Image For Processing plus a For Presentation one (default), or one single-frame Digital "
                    "Mammography X-Ray Image For Processing per projection (older archives). 2D and stereotactic "
                    "exams are always written as Digital Mammography images")
    # DICOM network (crescent.acquire.network): AE@HOST:PORT of each peer, None = not used
    send: str | None = Field(None, description="PACS to C-STORE every DICOM object to after the exam")
    worklist: str | None = Field(None, description="Modality Worklist SCP that gives patient and procedure")
    mpps: str | None = Field(None, description="MPPS SCP told IN PROGRESS / COMPLETED / DISCONTINUED")
    calling_ae: str = Field(DEFAULT_CALLING_AE, description="our AE title on every association")
    accession: str | None = Field(None, max_length=16, description="worklist entry to use, by accession number")
    send_retries: int = Field(2, ge=0, le=20, description="new associations for objects that failed transiently")
    study: dict[str, Any] = Field(default_factory=dict, description="StudyInfo fields (patient, accession, "
                                  "procedure, study UID) from the worklist entry")

    @model_validator(mode="after")
    def _grid_transmissions(self) -> "AcquireOptions":
        tp = 0.73 if self.grid_primary_transmission is None else self.grid_primary_transmission
        if self.grid_scatter_transmission is not None and self.grid_scatter_transmission > tp:
            raise ValueError(f"grid_scatter_transmission={self.grid_scatter_transmission} must not exceed the grid's "
                             f"primary transmission {tp}")
        return self

    @field_validator("send", "worklist", "mpps")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else str(parse_address(v, "address"))

    @field_validator("calling_ae")
    @classmethod
    def _calling(cls, v: str) -> str:
        return check_ae_title(v, "calling AE title")
