"""What ``crescent acquire`` was asked to do: the validated options and their defaults.

Light on purpose (pydantic only): nothing here loads the pipeline, numba or the simulator.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crescent.acquire.defaults import DEFAULT_PHANTOM_VOXEL_MM
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
    watchdog_ms: int | None = Field(
        None, ge=WATCHDOG_MS_MIN, le=WATCHDOG_MS_MAX,
        description="device watchdog asked for on a --port connection, ms (default 2000; the simulated gantry "
                    "this command starts gets 5000)")
    image_timeout_s: float | None = Field(
        None, gt=0.0, le=IMAGE_TIMEOUT_S_MAX,
        description="wait for each image, s (default: 3 s on a rig, 60 s on a simulated gantry, which renders "
                    "each frame)")
