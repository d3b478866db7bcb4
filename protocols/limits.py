"""Device limits: the contract of what a gantry can do.

:class:`DeviceLimits` is the single statement of a gantry's capabilities. The
static exam validator (:mod:`protocols.exams.validate`) checks exams against
it, the simulated gantry embeds it in its configuration (and enforces it as
the device's own limits, defense in depth), and a HIL rig description carries
the limits of the real machine. Every field name ends with its unit:
``_deg`` degrees of arc angle (gantry frame, :mod:`protocols.geometry`),
``_deg_s`` degrees per second, ``_deg_s2`` degrees per second squared,
``_deg_s3`` degrees per second cubed, ``_kv`` kilovolts, ``_ma`` milliamperes,
``_mas`` milliampere-seconds, ``_w`` watts, ``_j`` joules, ``_ms``
milliseconds, ``_mm`` millimetres, ``_n`` newtons.

The defaults describe a plausible "50-degree-class" DBT gantry assembled from
public figures of real systems:

* Siemens Mammomat Inspiration sweeps 50 deg (+-25 deg) with 25 projections,
  continuous motion; our travel of +-30 deg leaves 5 deg each side for run-up
  and overtravel.
* Hologic Selenia Dimensions sweeps 15 deg with 15 projections in about
  3.7 s (~4 deg/s, one frame every ~250 ms), which sets the detector frame
  interval and a lower bound on the arc speed we must support.
* GE Senographe Essential takes 9 projections over 25 deg step-and-shoot,
  which needs fast, well-damped point-to-point moves (acceleration, jerk,
  settle time).

Heat is counted in joules: for a constant-potential (high-frequency)
generator the energy of an exposure is ``kV * mAs`` J exactly
(1 kV * 1 mA * 1 s = 1 W * 1 s). One heat unit (HU) of the older
literature is about 0.71 J.

Example
-------
>>> lim = DeviceLimits()
>>> (lim.arc_min_deg, lim.arc_max_deg, lim.compression_force_max_n)
(-30.0, 30.0, 200.0)
>>> lim.max_tube_current_ma(kvp=35.0)  # power limited: 6000 W / 35 kV
171.42857142857142
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.records import ANODE_FILTERS, AnodeFilter

#: US MQSA, 21 CFR 900.12(b)(8): the maximum force of the initial powered
#: compression drive must lie between 25 lb (111 N) and 45 lb (200 N).
MQSA_INITIAL_DRIVE_MIN_N = 111.0
MQSA_INITIAL_DRIVE_MAX_N = 200.0

#: IEC 60601-2-45: powered compression is limited to 200 N.
IEC_POWERED_COMPRESSION_MAX_N = 200.0


class DeviceLimits(BaseModel):
    """What one gantry can do; every field carries its unit in its name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- arc axis -----------------------------------------------------------
    arc_min_deg: float = Field(
        -30.0, ge=-90.0, le=0.0, description="most negative reachable arc angle, deg (soft travel limit)"
    )
    arc_max_deg: float = Field(
        30.0, ge=0.0, le=90.0, description="most positive reachable arc angle, deg (soft travel limit)"
    )
    # Hologic's 15 deg in ~3.7 s is ~4 deg/s; step-and-shoot systems move faster between stops.
    arc_max_speed_deg_s: float = Field(10.0, gt=0.0, le=100.0, description="maximum arc speed, deg/s")
    arc_acceleration_deg_s2: float = Field(20.0, gt=0.0, le=1000.0, description="maximum arc acceleration, deg/s^2")
    arc_jerk_deg_s3: float = Field(200.0, gt=0.0, le=100000.0, description="maximum arc jerk, deg/s^3")
    arc_settle_ms: float = Field(
        100.0, ge=0.0, le=5000.0, description="minimum settle time after a step before an exposure, ms"
    )

    # --- generator and tube -------------------------------------------------
    # Clinical mammography uses 22-49 kV (DESIGN.md); the generator itself can
    # go down to 20 kV (records.Technique accepts 20), a rig may lower this.
    kvp_min_kv: float = Field(22.0, ge=20.0, le=49.0, description="lowest selectable tube voltage, kV")
    kvp_max_kv: float = Field(49.0, ge=20.0, le=49.0, description="highest selectable tube voltage, kV")
    # Modern mammography tubes run ~100 mA (Mo) to ~200 mA (W, large focus)
    # from 4.5-6 kW high-frequency generators.
    tube_current_min_ma: float = Field(10.0, gt=0.0, le=1000.0, description="lowest tube current, mA")
    tube_current_max_ma: float = Field(200.0, gt=0.0, le=1000.0, description="highest tube current, mA")
    tube_max_power_w: float = Field(6000.0, gt=0.0, le=100000.0, description="generator/tube power rating, W")
    mas_min_mas: float = Field(0.5, gt=0.0, le=100.0, description="smallest mAs of one exposure, mAs")
    mas_max_mas: float = Field(500.0, gt=0.0, le=600.0, description="largest mAs of one exposure, mAs")
    exposure_max_ms: float = Field(4000.0, gt=0.0, le=10000.0, description="longest single exposure (pulse), ms")
    backup_timer_ms: float = Field(
        5000.0, gt=0.0, le=20000.0, description="independent backup timer that terminates any exposure, ms"
    )
    # Rotating-anode mammography inserts store a few hundred kHU; 300 kHU ~ 210 kJ,
    # and cool at roughly 60 kHU/min ~ 700 W.
    anode_heat_capacity_j: float = Field(210_000.0, gt=0.0, description="anode heat storage capacity, J")
    anode_cooling_w: float = Field(700.0, ge=0.0, description="anode cooling rate near full load, W")
    focal_spots_mm: tuple[float, ...] = Field(
        (0.1, 0.3), min_length=1, description="nominal focal spot sizes, mm (0.3 large, 0.1 magnification)"
    )
    # The simulated generator and physics know every pair; a real W-anode
    # system would list only W/Rh, W/Ag and W/Al.
    anode_filters: tuple[AnodeFilter, ...] = Field(
        ANODE_FILTERS, min_length=1, description="anode/filter pairs the tube and filter wheel offer"
    )

    # --- compression ----------------------------------------------------------
    compression_force_max_n: float = Field(
        IEC_POWERED_COMPRESSION_MAX_N,
        gt=0.0,
        le=IEC_POWERED_COMPRESSION_MAX_N,
        description="hard limit of the powered compression force, N (IEC 60601-2-45)",
    )
    compression_initial_drive_max_n: float = Field(
        200.0,
        ge=MQSA_INITIAL_DRIVE_MIN_N,
        le=MQSA_INITIAL_DRIVE_MAX_N,
        description="maximum force of the initial powered drive, N (MQSA band 111-200 N)",
    )
    compression_thickness_min_mm: float = Field(5.0, ge=0.0, description="thinnest paddle-to-support gap, mm")
    compression_thickness_max_mm: float = Field(150.0, gt=0.0, description="thickest paddle-to-support gap, mm")

    # --- detector ---------------------------------------------------------------
    # Hologic's 15 frames in ~3.7 s is ~250 ms per frame.
    detector_readout_ms: float = Field(150.0, ge=0.0, le=10000.0, description="readout time of one frame, ms")
    detector_min_frame_interval_ms: float = Field(
        200.0, ge=0.0, le=20000.0, description="shortest time between frame starts, ms"
    )

    # --- plans ------------------------------------------------------------------
    max_projections: int = Field(49, ge=1, le=1000, description="most exposures in one armed plan")

    @model_validator(mode="after")
    def _consistent(self) -> "DeviceLimits":
        pairs = [
            ("arc_min_deg", "arc_max_deg"),
            ("kvp_min_kv", "kvp_max_kv"),
            ("tube_current_min_ma", "tube_current_max_ma"),
            ("mas_min_mas", "mas_max_mas"),
            ("compression_thickness_min_mm", "compression_thickness_max_mm"),
        ]
        for lo, hi in pairs:
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} = {getattr(self, lo)} must be below {hi} = {getattr(self, hi)}")
        if self.exposure_max_ms > self.backup_timer_ms:
            raise ValueError(
                f"exposure_max_ms = {self.exposure_max_ms} must not exceed backup_timer_ms = {self.backup_timer_ms}"
            )
        if self.compression_initial_drive_max_n > self.compression_force_max_n:
            raise ValueError(
                f"compression_initial_drive_max_n = {self.compression_initial_drive_max_n} must not exceed "
                f"compression_force_max_n = {self.compression_force_max_n}"
            )
        return self

    def max_tube_current_ma(self, kvp: float) -> float:
        """Highest tube current at ``kvp`` kV, mA: the current limit or the power limit (W / kV)."""
        return min(self.tube_current_max_ma, self.tube_max_power_w / kvp)
