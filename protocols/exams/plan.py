"""Expand an exam into its concrete planned exposures, and the sweep's motion needs.

Pure functions, no I/O. The plan is what the host arms on the device: one
:class:`PlannedExposure` per image, in acquisition order (a DBT sweep runs
from ``arc.start_deg`` to ``arc.stop_deg``, or in the order of
``arc.angles_deg``; a stereo pair runs from the negative to the positive
offset, after the optional zero view).

Angles are arc angles in degrees (gantry frame, :mod:`protocols.geometry`),
speeds deg/s (signed: positive toward +x), windows ms, ``kvp`` kV, ``mas``
mAs, currents mA.

For AEC exams the host passes the technique it chose after the scout
(:class:`protocols.records.Technique`); manual exams carry their own.

Example
-------
>>> from protocols.exams.standard import load_standard_exam
>>> plan = expand_exam(load_standard_exam("dbt-wide"))
>>> len(plan), plan[0].planned_angle_deg, plan[-1].planned_angle_deg, plan[0].mas
(25, -25.0, 25.0, 2.4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocols.exams.models import AecTechnique, Continuous, DbtExam, ExamModel, FfdmExam, StereoExam
from protocols.exams.motion import move_time_s, runup_deg
from protocols.limits import DeviceLimits
from protocols.records import Technique

MotionKind = Literal["static", "step_and_shoot", "continuous"]
Role = Literal["projection", "zero_view", "aec_scout"]


class PlanError(ValueError):
    """The exam cannot be expanded with the given technique (e.g. AEC choice outside the exam's bounds)."""


@dataclass(frozen=True)
class ProjectionTechnique:
    """Per-projection technique without device range checks (worst cases may exceed them).

    ``tube_current_ma`` None means: the device's highest current at this kVp.
    """

    anode_filter: str
    kvp: float
    mas: float
    focal_spot_mm: float = 0.3
    tube_current_ma: float | None = None


@dataclass(frozen=True)
class PlannedExposure:
    """One planned exposure.

    ``speed_deg_s`` is the signed arc velocity during the window (0 when the
    arm stands still); the window is centred on ``planned_angle_deg``.
    ``index`` is the position in the plan (0-based); the AEC scout, which is
    not part of the plan, has index 0 and role ``aec_scout``.
    """

    index: int
    planned_angle_deg: float
    anode_filter: str
    kvp: float
    mas: float
    tube_current_ma: float
    window_ms: float
    motion: MotionKind
    speed_deg_s: float = 0.0
    focal_spot_mm: float = 0.3
    role: Role = "projection"

    @property
    def window_start_angle_deg(self) -> float:
        """Arc angle when the X-ray window opens, deg."""
        return self.planned_angle_deg - 0.5e-3 * self.speed_deg_s * self.window_ms

    @property
    def window_end_angle_deg(self) -> float:
        """Arc angle when the X-ray window closes, deg."""
        return self.planned_angle_deg + 0.5e-3 * self.speed_deg_s * self.window_ms

    @property
    def energy_j(self) -> float:
        """Electrical energy into the anode, J (kV * mAs for a constant-potential generator)."""
        return self.kvp * self.mas

    def technique(self) -> Technique:
        """As a :class:`protocols.records.Technique` (range-checked)."""
        return Technique(anode_filter=self.anode_filter, kvp=self.kvp, mas=self.mas, focal_spot_mm=self.focal_spot_mm)


# --------------------------------------------------------------------------- angles and speed


def planned_angles_deg(exam: ExamModel) -> tuple[float, ...]:
    """Image angles in acquisition order, deg."""
    if isinstance(exam, DbtExam):
        arc = exam.arc
        if arc.angles_deg is not None:
            return tuple(float(a) for a in arc.angles_deg)
        assert arc.start_deg is not None and arc.stop_deg is not None and arc.count is not None
        step = (arc.stop_deg - arc.start_deg) / (arc.count - 1)
        angles = [arc.start_deg + i * step for i in range(arc.count - 1)]
        return tuple(angles) + (float(arc.stop_deg),)
    if isinstance(exam, FfdmExam):
        return (float(exam.angle_deg),)
    pair = (exam.center_deg - exam.offset_deg, exam.center_deg + exam.offset_deg)
    return ((exam.center_deg,) if exam.zero_view else ()) + pair


def sweep_direction(angles_deg: tuple[float, ...]) -> int:
    """+1 if the sweep runs toward +x, -1 toward -x, 0 for a single angle."""
    if len(angles_deg) < 2 or angles_deg[-1] == angles_deg[0]:
        return 0
    return 1 if angles_deg[-1] > angles_deg[0] else -1


def sweep_speed_deg_s(exam: ExamModel) -> float:
    """Signed constant arc speed of a continuous DBT sweep, deg/s; 0 for every other exam."""
    if not (isinstance(exam, DbtExam) and isinstance(exam.motion, Continuous)):
        return 0.0
    angles = planned_angles_deg(exam)
    if exam.motion.speed_deg_s is not None:
        speed = exam.motion.speed_deg_s
    else:
        assert exam.motion.sweep_time_s is not None
        speed = abs(angles[-1] - angles[0]) / exam.motion.sweep_time_s
    return sweep_direction(angles) * speed


def min_spacing_deg(angles_deg: tuple[float, ...]) -> float:
    """Smallest angular step between consecutive angles, deg (inf for one angle)."""
    steps = [abs(b - a) for a, b in zip(angles_deg, angles_deg[1:])]
    return min(steps) if steps else float("inf")


# --------------------------------------------------------------------------- technique


def exam_technique(exam: ExamModel, chosen: Technique | None = None) -> ProjectionTechnique:
    """The per-projection technique: the exam's manual one, or the AEC choice ``chosen``.

    Raises :class:`PlanError` if an AEC exam gets no choice, a manual exam gets
    one, or the choice lies outside the AEC bounds of the exam.
    """
    tech = exam.technique
    if isinstance(tech, AecTechnique):
        if chosen is None:
            raise PlanError(f"exam {exam.name!r} uses AEC: pass the technique chosen after the scout")
        problems = []
        if chosen.anode_filter not in tech.anode_filters:
            problems.append(f"anode_filter {chosen.anode_filter} not in {list(tech.anode_filters)}")
        if not tech.kvp_min <= chosen.kvp <= tech.kvp_max:
            problems.append(f"kvp {chosen.kvp} outside [{tech.kvp_min}, {tech.kvp_max}] kV")
        if chosen.mas > tech.mas_max_per_projection:
            problems.append(f"mas {chosen.mas} above mas_max_per_projection {tech.mas_max_per_projection}")
        if problems:
            raise PlanError(f"AEC choice for exam {exam.name!r} is outside the exam's bounds: " + "; ".join(problems))
        return ProjectionTechnique(chosen.anode_filter, chosen.kvp, chosen.mas, chosen.focal_spot_mm)
    if chosen is not None:
        raise PlanError(f"exam {exam.name!r} has a manual technique; it takes no chosen technique")
    n = len(planned_angles_deg(exam))
    mas = tech.mas_per_projection if tech.mas_per_projection is not None else tech.mas_total / n  # type: ignore[operator]
    return ProjectionTechnique(tech.anode_filter, tech.kvp, mas, tech.focal_spot_mm, tech.tube_current_ma)


def worst_case_technique(exam: ExamModel) -> ProjectionTechnique:
    """Technique with the most heat and the longest exposures the exam allows.

    For AEC: the highest kVp and the mAs ceiling; the manual technique otherwise.
    """
    tech = exam.technique
    if isinstance(tech, AecTechnique):
        return ProjectionTechnique(tech.anode_filters[0], tech.kvp_max, tech.mas_max_per_projection, tech.focal_spot_mm)
    return exam_technique(exam)


# --------------------------------------------------------------------------- expansion


def _static_exposure(
    index: int, angle: float, tech: ProjectionTechnique, limits: DeviceLimits, motion: MotionKind, role: Role
) -> PlannedExposure:
    ma = tech.tube_current_ma if tech.tube_current_ma is not None else limits.max_tube_current_ma(tech.kvp)
    return PlannedExposure(
        index, angle, tech.anode_filter, tech.kvp, tech.mas, ma, 1e3 * tech.mas / ma, motion, 0.0,
        tech.focal_spot_mm, role,
    )


def expand_exam(
    exam: ExamModel,
    technique: Technique | ProjectionTechnique | None = None,
    limits: DeviceLimits | None = None,
) -> list[PlannedExposure]:
    """The exam's planned exposures in acquisition order.

    ``technique``: for AEC exams, the host's choice after the scout (a
    :class:`~protocols.records.Technique`, checked against the exam's AEC
    bounds); a :class:`ProjectionTechnique` is used as given (no checks).
    ``limits`` supplies the tube current of static exposures when the exam
    does not fix it (default :class:`DeviceLimits`).
    """
    limits = limits or DeviceLimits()
    tech = technique if isinstance(technique, ProjectionTechnique) else exam_technique(exam, technique)
    angles = planned_angles_deg(exam)
    if isinstance(exam, DbtExam) and isinstance(exam.motion, Continuous):
        speed = sweep_speed_deg_s(exam)
        pulse = exam.motion.pulse_ms
        ma = 1e3 * tech.mas / pulse
        return [
            PlannedExposure(i, a, tech.anode_filter, tech.kvp, tech.mas, ma, pulse, "continuous", speed,
                            tech.focal_spot_mm)
            for i, a in enumerate(angles)
        ]
    if isinstance(exam, DbtExam):
        return [_static_exposure(i, a, tech, limits, "step_and_shoot", "projection") for i, a in enumerate(angles)]
    if isinstance(exam, FfdmExam):
        return [_static_exposure(0, angles[0], tech, limits, "static", "projection")]
    roles: list[Role] = (["zero_view"] if exam.zero_view else []) + ["projection", "projection"]
    return [_static_exposure(i, a, tech, limits, "static", r) for i, (a, r) in enumerate(zip(angles, roles))]


def aec_scout_exposure(exam: ExamModel, limits: DeviceLimits | None = None) -> PlannedExposure | None:
    """The AEC pre-exposure (static, at 0 deg for DBT, at the exam's centre otherwise); None for manual exams."""
    tech = exam.technique
    if not isinstance(tech, AecTechnique):
        return None
    angle = exam.angle_deg if isinstance(exam, FfdmExam) else exam.center_deg if isinstance(exam, StereoExam) else 0.0
    scout = ProjectionTechnique(tech.scout_pair, tech.scout_kvp, tech.scout_mas, tech.focal_spot_mm)
    return _static_exposure(0, angle, scout, limits or DeviceLimits(), "static", "aec_scout")


# --------------------------------------------------------------------------- motion needs


def arc_travel_deg(exam: ExamModel, limits: DeviceLimits | None = None) -> tuple[float, float]:
    """(lowest, highest) arc angle the arm must reach, deg.

    For a continuous sweep this includes half a pulse of travel beyond the
    first and last angles and the run-up / braking distance at the sweep
    speed under the device's acceleration and jerk limits.
    """
    limits = limits or DeviceLimits()
    angles = planned_angles_deg(exam)
    lo, hi = min(angles), max(angles)
    if isinstance(exam, DbtExam) and isinstance(exam.motion, Continuous):
        speed = abs(sweep_speed_deg_s(exam))
        extra = 0.5e-3 * speed * exam.motion.pulse_ms + runup_deg(
            speed, limits.arc_acceleration_deg_s2, limits.arc_jerk_deg_s3
        )
        lo, hi = lo - extra, hi + extra
    return lo, hi


def frame_interval_needed_ms(window_ms: float, limits: DeviceLimits) -> float:
    """Shortest start-to-start time of two frames the detector allows after a ``window_ms`` exposure, ms."""
    return max(limits.detector_min_frame_interval_ms, window_ms + limits.detector_readout_ms)


def step_interval_s(distance_deg: float, window_ms: float, settle_ms: float, limits: DeviceLimits) -> float:
    """Start-to-start time of two static exposures ``distance_deg`` apart, s.

    The larger of: expose + move + settle, and the detector's frame needs.
    """
    move = move_time_s(distance_deg, limits.arc_max_speed_deg_s, limits.arc_acceleration_deg_s2, limits.arc_jerk_deg_s3)
    return max(1e-3 * (window_ms + settle_ms) + move, 1e-3 * frame_interval_needed_ms(window_ms, limits))


def settle_ms(exam: ExamModel) -> float:
    """The exam's wait between the end of a move and the next exposure, ms (0 for FFDM)."""
    if isinstance(exam, StereoExam):
        return exam.settle_ms
    if isinstance(exam, DbtExam) and not isinstance(exam.motion, Continuous):
        return exam.motion.settle_ms
    return 0.0


def scan_time_s(exam: ExamModel, exposures: list[PlannedExposure], limits: DeviceLimits | None = None) -> float:
    """Estimated time from the first window's start to the last window's end, s.

    Static exposures: the sum of :func:`step_interval_s` plus the last window.
    Continuous sweeps: travel between the first and last angle at the sweep
    speed plus one pulse. Positioning, compression and AEC are not included.
    """
    limits = limits or DeviceLimits()
    if not exposures:
        return 0.0
    last = exposures[-1].window_ms * 1e-3
    if exposures[0].motion == "continuous":
        speed = abs(exposures[0].speed_deg_s)
        return abs(exposures[-1].planned_angle_deg - exposures[0].planned_angle_deg) / speed + last
    settle = settle_ms(exam)
    steps = sum(
        step_interval_s(b.planned_angle_deg - a.planned_angle_deg, a.window_ms, settle, limits)
        for a, b in zip(exposures, exposures[1:])
    )
    return steps + last

