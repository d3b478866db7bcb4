"""Gantry configuration: pydantic models loaded from YAML.

:class:`GantryConfig` embeds the shared contracts — :class:`protocols.limits.DeviceLimits`
(what the device enforces as its own limits) and :class:`protocols.geometry.AcquisitionGeometry`
(SID, pivot, support, detector layout; gantry frame) — and adds the dynamics of each simulated
actor. Every field name ends with its unit (``_mm``, ``_deg``, ``_deg_s``, ``_n``, ``_ms``, ``_s``,
``_kv``, ``_ma``, ``_j``, ``_w``, ``_hz``).

Defaults come from public figures of real systems (DESIGN.md's reference systems table); the
shipped presets live in :mod:`simulator.configs` (``default``, ``ge-like``, ``siemens-like``,
``hologic-like``).

Example
-------
>>> cfg = load_config("siemens-like")
>>> cfg.geometry.sid_mm, cfg.uart.baud
(650.0, 921600)
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.limits import DeviceLimits
from protocols.yamlsafe import describe_validation_error, load_yaml_text, read_text_capped


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AxisConfig(_Model):
    """Arc axis (tube arm) dynamics; speed/acceleration/jerk limits come from DeviceLimits."""

    profile: Literal["s_curve", "trapezoid"] = Field("s_curve", description="motion profile of the arc drive")
    # Absolute/incremental rotary encoders on mammography arms resolve ~0.001 deg (typical 2^19 counts/turn).
    encoder_resolution_deg: float = Field(0.001, gt=0.0, le=1.0, description="encoder quantum, deg")
    # Servo lag of a position loop with ~40 Hz bandwidth: ~4 ms; following error = speed * lag.
    servo_lag_ms: float = Field(4.0, ge=0.0, le=100.0, description="position-loop lag, ms")
    following_error_limit_deg: float = Field(0.5, gt=0.0, description="following-error trip level, deg")
    hard_limit_margin_deg: float = Field(2.0, gt=0.0, description="hard (switch) limits beyond the soft limits, deg")
    home_index_deg: float = Field(-2.0, description="angle of the index mark found by HOME, deg")
    homing_speed_deg_s: float = Field(5.0, gt=0.0, description="speed while seeking the index mark, deg/s")
    estop_decel_deg_s2: float = Field(200.0, gt=0.0, description="braking deceleration of a quick stop, deg/s^2")
    initial_angle_deg: float = Field(0.0, description="arm angle at power-up (not homed), deg")
    initially_homed: bool = Field(False, description="start homed (skip HOME)")
    # QC defect injection (crescent qc): the arm's true angle differs from what the encoder reports.
    angle_offset_deg: float = Field(0.0, ge=-5.0, le=5.0,
                                    description="true arm angle minus encoder angle (a miscalibrated encoder), deg")


class BreastConfig(_Model):
    """The breast as a nonlinear visco-elastic body (standard linear solid, exponential spring).

    Equilibrium force ``F_e = stiffness_n * (exp(exponent * strain) - 1)`` with
    ``strain = (free - h) / free``; a Maxwell arm adds ``relaxation_ratio`` times every
    change of ``F_e`` and relaxes with ``relaxation_time_s``. Fitted loosely to published
    compression curves (a 70 mm breast needs ~100 N to reach ~49 mm and ~200 N for ~45 mm;
    force relaxing ~20-30 % within ~10 s under held thickness).
    """

    free_thickness_mm: float = Field(70.0, gt=5.0, le=150.0, description="uncompressed thickness, mm")
    stiffness_n: float = Field(3.0, gt=0.0, description="scale of the exponential spring, N")
    exponent: float = Field(12.0, gt=0.0, le=30.0, description="exponent of the spring in strain")
    relaxation_ratio: float = Field(0.4, ge=0.0, le=5.0, description="Maxwell arm / equilibrium stiffness")
    relaxation_time_s: float = Field(4.0, gt=0.0, description="stress-relaxation time constant, s")


class PaddleConfig(_Model):
    """Compression paddle drive."""

    park_height_mm: float = Field(120.0, gt=0.0, description="paddle height after release, mm above the support")
    approach_speed_mm_s: float = Field(30.0, gt=0.0, description="speed before contact, mm/s")
    default_speed_mm_s: float = Field(8.0, gt=0.0, description="compression speed when COMPRESS gives 0, mm/s")
    min_speed_mm_s: float = Field(1.0, gt=0.0, description="slowest allowed compression speed, mm/s")
    max_speed_mm_s: float = Field(40.0, gt=0.0, description="fastest allowed paddle speed, mm/s")
    release_speed_mm_s: float = Field(40.0, gt=0.0, description="release speed, mm/s")
    control_period_ms: float = Field(20.0, gt=0.0, le=200.0, description="control loop period, ms")
    substeps: int = Field(10, ge=1, le=1000, description="force-limit checks per control period")
    release_after_exam: bool = Field(True, description="release automatically when the exam's last plan (ARM_PLAN.final) completes")
    release_on_faults: tuple[str, ...] = Field(
        ("WATCHDOG", "ESTOP"), description="FaultCode names after which the paddle releases"
    )
    paddle_present: bool = Field(True, description="a paddle is mounted at start")


class GeneratorConfig(_Model):
    """High-frequency generator and tube."""

    # HF mammography generators reach kV in ~1 ms with < 2 % ripple (tens of kHz inverters).
    kv_rise_time_ms: float = Field(1.0, ge=0.0, le=50.0, description="10-90 % kV rise time, ms")
    kv_ripple_percent: float = Field(1.0, ge=0.0, le=20.0, description="peak ripple of the kV waveform, %")
    kv_tolerance_percent: float = Field(5.0, gt=0.0, description="kV deviation that counts as KV_FAULT, %")
    mas_noise_percent: float = Field(0.5, ge=0.0, le=10.0, description="1-sigma error of the mAs meter, %")
    tube_current_ma: float = Field(100.0, gt=0.0, description="tube current before SET_TECHNIQUE, mA")
    backup_factor: float = Field(
        1.5, ge=1.0, le=10.0, description="backup timer = min(limits.backup_timer_ms, factor * planned pulse)"
    )
    initial_heat_j: float = Field(0.0, ge=0.0, description="anode heat at power-up, J")
    # QC defect injection (crescent qc): a worn / enlarged focal spot; records still carry the nominal size.
    focal_spot_scale: float = Field(1.0, gt=0.0, le=20.0, description="true focal spot size / nominal size")


class BeamPathConfig(_Model):
    """What the beam crosses besides the breast: tube window and take-off angle, paddle, support, cover.

    Defaults are :data:`physics.beam_path.DEFAULT_BEAM_PATH` (calibrated so the HVLs with the paddle
    in place reproduce the EUREF typical clinical HVLs; see physics/beam_path.py). Materials are
    names of :mod:`physics.materials` (``pmma``, ``polycarbonate``, ``carbon_fibre``, ...).
    """

    anode_angle_deg: float = Field(6.0, ge=1.0, le=30.0, description="anode take-off angle of the central ray, deg")
    be_window_mm: float = Field(1.0, ge=0.0, le=5.0, description="beryllium window of the tube, mm")
    paddle_material: str = Field("pmma", description="compression paddle material")
    paddle_mm: float = Field(3.0, ge=0.0, le=20.0, description="compression paddle thickness in the beam, mm")
    support_material: str = Field("carbon_fibre", description="breast support material")
    support_mm: float = Field(1.0, ge=0.0, le=20.0, description="breast support thickness in the beam, mm")
    cover_material: str = Field("carbon_fibre", description="detector cover material")
    cover_mm: float = Field(0.5, ge=0.0, le=20.0, description="detector cover thickness in the beam, mm")

    def to_beam_path(self) -> Any:
        """The :class:`physics.beam_path.BeamPath` (validates the material names)."""
        from physics.beam_path import BeamPath  # physics pulls xraydb: load on first use

        return BeamPath(**self.model_dump())


class DetectorConfig(_Model):
    """Flat-panel read-out (times from DeviceLimits), the data channel, and the beam path it images through."""

    data_dir: Path | None = Field(None, description="directory of the file data channel (default: a temp dir)")
    readout_timeout_ms: float = Field(1000.0, gt=0.0, description="readout watchdog (DETECTOR_TIMEOUT), ms")
    noise: bool = Field(True, description="quantum and electronic noise in the images")
    scatter: bool = Field(True, description="scatter from the breast in the images (Monte Carlo kernels, "
                          "simulator.imaging.scatter); on by default, as in every real exposure")
    grid: bool = Field(False, description="anti-scatter grid in front of the panel (2D mammography systems use "
                       "one; DBT systems usually run without)")
    grid_ratio: float = Field(5.0, ge=2.0, le=16.0, description="grid ratio (a label; the model uses the "
                              "two transmissions)")
    grid_primary_transmission: float = Field(
        0.73, ge=0.5, le=1.0, description="fraction of the primary the grid passes (Xia et al., SPIE 5745, 2005: 0.73)")
    grid_scatter_transmission: float = Field(
        0.13, ge=0.0, le=1.0, description="fraction of the scatter the grid passes (Xia et al. 2005: 0.13); "
        "at most the primary transmission")
    motion_substeps: int = Field(5, ge=1, le=50, description="focal-spot samples along the window's travel")
    fsync: bool = Field(False, description="fsync each frame file before the rename (durable, slower)")
    beam_path: BeamPathConfig = Field(default_factory=BeamPathConfig,
                                      description="tube, compression paddle, breast support and detector cover")
    # QC defect injection (crescent qc); the defaults are a healthy panel.
    dead_columns_x_mm: tuple[float, ...] = Field(
        (), description="x of columns read out as the dark offset only (dead lines), mm (nearest column)")
    gain_gradient_percent_per_100mm: float = Field(
        0.0, ge=-90.0, le=90.0, description="gain change along x (columns) after calibration, % per 100 mm")
    readout_delay_ms: float = Field(0.0, ge=0.0, le=60000.0, description="extra readout time of every frame, ms")
    extra_electronic_noise_adu: float = Field(
        0.0, ge=0.0, le=1000.0,
        description="electronic noise added in quadrature to the panel's, rms per native del (a noisy pre-amplifier), ADU")
    # Mechanics and collimation of the healthy panel (QC: missed tissue, field alignment; defects change them).
    chest_wall_gap_mm: float = Field(
        3.0, ge=0.0, le=30.0,
        description="distance from the breast support's chest-wall edge to the active area's (tissue there is "
                    "never imaged: the missed tissue), mm")
    field_margin_mm: tuple[float, float, float, float] = Field(
        (2.0, 3.0, 3.0, 3.0),
        description="how far the X-ray field extends beyond the panel's active area at the detector plane on the "
                    "chest-wall, nipple, -x and +x sides (negative: that strip of the panel is not exposed), mm; "
                    "the collimator tracks the panel over the arc")
    # Ghosting (a-Se sensitivity loss after exposure): the gain of a pixel drops by ghost_loss_per_kadu per
    # 1000 ADU of signal it recorded before, decaying with ghost_decay_s. Off (0) by default: only the
    # virtual-time path models it (the real-time render worker forms each frame alone), and a virtual-time
    # and a real-time run of the same exam must give the same images. The QC ghosting test and its defect
    # ("strong ghosting") switch it on.
    ghost_loss_per_kadu: float = Field(
        0.0, ge=0.0, le=0.5, description="fractional sensitivity loss per 1000 ADU of prior signal (0: none)")
    ghost_decay_s: float = Field(60.0, gt=0.0, le=3600.0, description="recovery time constant of the ghost, s")
    dark_offset_report_error_adu: float = Field(
        0.0, ge=-1000.0, le=1000.0,
        description="error of the dark offset DEVICE_INFO reports (the AEC subtracts it from the scout), ADU")

    @model_validator(mode="after")
    def _grid_transmissions(self) -> "DetectorConfig":
        if self.grid_scatter_transmission > self.grid_primary_transmission:
            raise ValueError(f"grid_scatter_transmission={self.grid_scatter_transmission} must not exceed "
                             f"grid_primary_transmission={self.grid_primary_transmission}")
        return self

    def anti_scatter_grid(self) -> Any:
        """The :class:`simulator.imaging.scatter.AntiScatterGrid` in the beam, or ``None`` without a grid."""
        if not self.grid:
            return None
        from simulator.imaging.scatter import AntiScatterGrid  # imaging pulls numpy/scipy: load on first use

        return AntiScatterGrid(self.grid_ratio, self.grid_primary_transmission, self.grid_scatter_transmission)


    @field_validator("field_margin_mm")
    @classmethod
    def _field(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if any(not math.isfinite(m) or abs(m) > 1000.0 for m in v):
            raise ValueError(f"detector.field_margin_mm = {v}: each margin must be finite and within +-1000 mm")
        return v


class UartConfig(_Model):
    """Control serial line."""

    baud: int = Field(921600, ge=1200, le=12_000_000, description="bits per second")
    data_bits: int = Field(8, ge=5, le=8)
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: int = Field(1, ge=1, le=2)

    @property
    def bits_per_byte(self) -> int:
        """Start + data + parity + stop bits (10 for 8N1)."""
        return 1 + self.data_bits + (0 if self.parity == "N" else 1) + self.stop_bits

    @property
    def byte_time_s(self) -> float:
        """Wire time of one byte, s."""
        return self.bits_per_byte / self.baud


class PhantomConfig(_Model):
    """What lies on the support (see simulator.imaging.imager.make_phantom)."""

    name: str = "breast"
    seed: int = 1
    voxel_mm: float = Field(1.0, gt=0.0, le=5.0, description="voxel size of voxel phantoms, mm")
    options: dict[str, float] = Field(default_factory=dict)
    # Seeded patient (or phantom) motion, for the per-exam acquisition QC; the defaults keep it still.
    motion_mm: tuple[float, float] = Field(
        (0.0, 0.0), description="rigid shift (x along the arc, y chest wall -> nipple) of the phantom during the "
                                "exposures after motion_after_deg, mm (rendered to the nearest image pixel)")
    motion_after_deg: float = Field(
        0.0, ge=-90.0, le=90.0,
        description="the phantom has moved by motion_mm for exposures whose window-mean arc angle exceeds this, deg")

    @field_validator("motion_mm")
    @classmethod
    def _motion(cls, v: tuple[float, float]) -> tuple[float, float]:
        if any(not math.isfinite(c) or abs(c) > 50.0 for c in v):
            raise ValueError(f"phantom.motion_mm = {v}: each component must be finite and within +-50 mm")
        return v


class IdentityConfig(_Model):
    """Device identity reported by HELLO_REPLY."""

    firmware_version: int = Field(0x000100, ge=0, lt=2**32, description="major << 16 | minor << 8 | patch")
    serial_number: int = Field(1001, ge=0, lt=2**32)


def default_gantry_geometry() -> AcquisitionGeometry:
    """The default gantry's geometry: the reference DBT geometry with its 50 um panel read out 4x4 binned.

    200 um, 1200 x 1500 pixels (as ``crescent acquire`` reads it): the real-time gantry forms each image
    in about a CPU-second, so IMAGE_READY can follow its exposure within 1 s; 2x2 binning costs ~4x.
    """
    return AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=4, rows=1200, cols=1500))


class GantryConfig(_Model):
    """Everything the simulated gantry needs."""

    name: str = "default"
    limits: DeviceLimits = Field(default_factory=DeviceLimits)
    geometry: AcquisitionGeometry = Field(default_factory=default_gantry_geometry)
    axis: AxisConfig = Field(default_factory=AxisConfig)
    paddle: PaddleConfig = Field(default_factory=PaddleConfig)
    breast: BreastConfig = Field(default_factory=BreastConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    uart: UartConfig = Field(default_factory=UartConfig)
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    telemetry_rate_hz: float = Field(50.0, gt=0.0, le=200.0, description="TELEMETRY rate, Hz")

    @model_validator(mode="after")
    def _consistent(self) -> "GantryConfig":
        if self.paddle.park_height_mm > self.limits.compression_thickness_max_mm:
            raise ValueError("paddle.park_height_mm exceeds limits.compression_thickness_max_mm")
        return self

    def with_overrides(self, **changes: Any) -> "GantryConfig":
        """A copy with nested changes, e.g. ``cfg.with_overrides(detector={"noise": False})``."""
        data = self.model_dump()
        _merge(data, changes)
        return GantryConfig.model_validate(data)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def small_detector(rows: int = 48, cols: int = 60, binning: int = 8) -> DetectorGeometry:
    """A tiny detector layout for tests and quick runs (same pitch as the default panel)."""
    return DetectorGeometry(native_pitch_mm=0.05, binning=binning, rows=rows, cols=cols)


SHIPPED = ("default", "ge-like", "siemens-like", "hologic-like")


def load_config(source: str | Path | None = None) -> GantryConfig:
    """Load a gantry config: ``None`` = defaults, a shipped preset name, or a YAML file path."""
    if source is None:
        return GantryConfig()
    if isinstance(source, str) and source in SHIPPED:
        text = resources.files("simulator.configs").joinpath(f"{source}.yaml").read_text(encoding="utf-8")
        where = f"simulator/configs/{source}.yaml"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"gantry config {path} not found (presets: {', '.join(SHIPPED)})")
        text = read_text_capped(path, what="gantry config")  # size-capped, UTF-8 checked (YamlInputError)
        where = str(path)
    data = load_yaml_text(text, where) or {}  # no aliases, no duplicate keys (YamlInputError, a ValueError)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a gantry config is a YAML mapping")
    try:
        return GantryConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_validation_error(exc)}") from None
