"""Exposure plans on the device side: validation of ARM_PLAN against the device's limits, sweep travel, timing.

Pure functions (no SimPy, no I/O). Units: degrees (gantry frame), kV, mAs, seconds.

A continuous sweep runs from ``first - d`` to ``last + d`` with ``d = run-up + half a pulse of
travel`` (as :func:`protocols.exams.plan.arc_travel_deg`), so every window is centred on its
planned angle at constant speed. Consecutive continuous exposures must be at least the detector's
frame interval apart (``max(min_frame_interval, pulse + readout)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.exams.motion import move_time_s, runup_deg
from protocols.limits import DeviceLimits
from protocols.records import ExposureRecord, exposure_from_done
from protocols.wire import messages as M
from protocols.wire.catalogue import ANODE_FILTER_TEXT, ErrorCode, FocalSpot, MotionMode, PlanInvalidReason
from protocols.wire.messages import plan_digest


@dataclass
class ArmedPlan:
    """A validated ARM_PLAN, in device units (deg, kV, mAs, s)."""

    plan_id: int
    digest: int
    motion: int
    anode_filter: str
    focal_spot_mm: float
    speed_deg_s: float
    angles_deg: list[float]
    kv: list[float]
    mas: list[float]
    pulse_s: list[float]
    energy_j: float
    exposures_done: int = 0
    final: bool = False  # ARM_PLAN.final: the exam's last plan (auto-release may follow it)


def exposure_record(done: M.Message, anode_filter: str, focal_spot_mm: float) -> ExposureRecord:
    """The :class:`ExposureRecord` an EXPOSURE_DONE describes (wire units -> deg, kV, mAs, s).

    The gantry renders each image from exactly this record, decoded as the host decodes it
    (:func:`protocols.records.exposure_from_done`), so a host holding the event (plus the plan's
    anode/filter and focal spot) can regenerate the image bit for bit.
    """
    return exposure_from_done(done, anode_filter, focal_spot_mm)


def focal_spot_mm(limits: DeviceLimits, code: int) -> float:
    """Nominal size of the FocalSpot enum value ``code``, mm (SMALL = smallest, LARGE = largest)."""
    spots = limits.focal_spots_mm
    return min(spots) if code == int(FocalSpot.SMALL) else max(spots)


def within_travel(limits: DeviceLimits, angle_deg: float) -> bool:
    """Angle inside the soft travel limits."""
    return limits.arc_min_deg - 1e-9 <= angle_deg <= limits.arc_max_deg + 1e-9


def sweep_ends(limits: DeviceLimits, angles: list[float], pulses: list[float], speed: float) -> tuple[float, float]:
    """Start and end of a continuous sweep's arc travel (run-up + half a pulse each side), deg."""
    d = runup_deg(speed, limits.arc_acceleration_deg_s2, limits.arc_jerk_deg_s3)
    sign = 1.0 if len(angles) < 2 or angles[-1] >= angles[0] else -1.0
    return angles[0] - sign * (d + 0.5 * speed * pulses[0]), angles[-1] + sign * (d + 0.5 * speed * pulses[-1])


def validate_plan(m: M.Message, limits: DeviceLimits, homed: bool) -> tuple[ErrorCode, int] | ArmedPlan:
    """Check an ARM_PLAN; the armed plan, or the NAK (error, detail) to answer.

    Details (SPEC.md section 5): BEYOND_LIMITS gives the field index (4 = speed; plan entries
    ``1000 * (i + 1) + j``, i and j 0-based, j = 0 angle, 1 kV, 2 mAs, 3 pulse, and j = 4 the tube
    current the entry implies, mAs / pulse, above the tube's limit at that kV); PLAN_INVALID gives
    ``1000 * PlanInvalidReason + entry index`` (COUNT: the entry count; NOT_MONOTONIC: the first entry
    of a continuous sweep that turns back or repeats an angle; TOO_CLOSE: the later entry of a pair too close
    for the detector; TRAVEL: the end entry whose run-up leaves the arc's travel). A continuous sweep
    passes each angle once, so its angles are strictly monotonic in firing order; step-and-shoot stops
    at each entry, so its entries may come in any order (a stereotactic pair 0, +15, -15 deg) and repeat.
    """
    lim = limits
    if plan_digest(m) != m.digest:
        return ErrorCode.DIGEST_MISMATCH, 0
    if not homed:
        return ErrorCode.NOT_HOMED, 0
    af = ANODE_FILTER_TEXT[m.anode_filter]
    if af not in lim.anode_filters:
        return ErrorCode.UNSUPPORTED, 2
    speed = m.speed_mdeg_s / 1000.0 or lim.arc_max_speed_deg_s
    if speed > lim.arc_max_speed_deg_s:
        return ErrorCode.BEYOND_LIMITS, 4
    n = len(m.entries)
    if n == 0 or n > lim.max_projections:
        return ErrorCode.PLAN_INVALID, 1000 * int(PlanInvalidReason.COUNT) + n
    angles, kvs, mass, pulses = [], [], [], []
    for i, e in enumerate(m.entries):
        base = 1000 * (i + 1)
        a, kv, mas, pulse = e.angle_mdeg / 1000.0, e.kv_ckv / 100.0, e.mas_nas / 1e6, e.pulse_us / 1e6
        if not within_travel(lim, a):
            return ErrorCode.BEYOND_LIMITS, base + 0
        if not lim.kvp_min_kv <= kv <= lim.kvp_max_kv:
            return ErrorCode.BEYOND_LIMITS, base + 1
        if not lim.mas_min_mas <= mas <= lim.mas_max_mas:
            return ErrorCode.BEYOND_LIMITS, base + 2
        if pulse * 1000.0 > lim.exposure_max_ms + 1e-9:
            return ErrorCode.BEYOND_LIMITS, base + 3
        if mas / pulse > lim.max_tube_current_ma(kv) * (1 + 1e-9):
            return ErrorCode.BEYOND_LIMITS, base + 4  # the tube current mas / pulse, not a field of its own
        angles.append(a)
        kvs.append(kv)
        mass.append(mas)
        pulses.append(pulse)
    if m.motion == int(MotionMode.CONTINUOUS):
        # one pass of the arc: strictly monotonic in firing order (step-and-shoot stops at each entry,
        # so its entries may come in any order and repeat)
        direction = 0.0
        for i in range(1, n):
            step = angles[i] - angles[i - 1]
            if step == 0.0 or step * direction < 0:
                return ErrorCode.PLAN_INVALID, 1000 * int(PlanInvalidReason.NOT_MONOTONIC) + i
            direction = 1.0 if step > 0 else -1.0
        for i in range(1, n):
            need_ms = max(lim.detector_min_frame_interval_ms, pulses[i - 1] * 1000.0 + lim.detector_readout_ms)
            if abs(angles[i] - angles[i - 1]) / speed * 1000.0 < need_ms * (1 - 1e-9):
                return ErrorCode.PLAN_INVALID, 1000 * int(PlanInvalidReason.TOO_CLOSE) + i
        lo, hi = sweep_ends(lim, angles, pulses, speed)
        if not within_travel(lim, lo):
            return ErrorCode.PLAN_INVALID, 1000 * int(PlanInvalidReason.TRAVEL) + 0
        if not within_travel(lim, hi):
            return ErrorCode.PLAN_INVALID, 1000 * int(PlanInvalidReason.TRAVEL) + n - 1
    energy = float(sum(kv * mas for kv, mas in zip(kvs, mass)))
    return ArmedPlan(m.plan_id, m.digest, m.motion, af, focal_spot_mm(lim, m.focal_spot), speed, angles, kvs, mass,
                     pulses, energy, final=bool(m.final))


def estimate_s(plan: ArmedPlan, limits: DeviceLimits, here_deg: float) -> float:
    """Estimated duration of a plan from arm angle ``here_deg``, s (for FIRE's ACK detail)."""
    lim = limits
    a, j = lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3
    if plan.motion == int(MotionMode.CONTINUOUS):
        lo, hi = sweep_ends(lim, plan.angles_deg, plan.pulse_s, plan.speed_deg_s)
        return (move_time_s(lo - here_deg, lim.arc_max_speed_deg_s, a, j) + move_time_s(hi - lo, plan.speed_deg_s, a, j)
                + lim.detector_readout_ms / 1000.0)
    total = 0.0
    for angle, p in zip(plan.angles_deg, plan.pulse_s):
        total += move_time_s(angle - here_deg, lim.arc_max_speed_deg_s, a, j)
        total += lim.arc_settle_ms / 1000.0 + max(p, lim.detector_min_frame_interval_ms / 1000.0)
        here_deg = angle
    return total + lim.detector_readout_ms / 1000.0
