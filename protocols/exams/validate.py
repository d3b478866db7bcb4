"""Static validation of an exam against a gantry's :class:`~protocols.limits.DeviceLimits`.

Returns every problem as a :class:`~protocols.exams.violations.Violation`
(dotted field path, value, limit, message, code); policy violations never
raise, so a CI job can report them all at once. Checks:

* angles (and a continuous sweep's run-up) inside the arc travel;
* number of exposures against the plan size limit;
* kVp, mAs, tube current, power, exposure time, anode/filter and focal spot
  against the generator and tube ranges (AEC exams: the worst case their
  bounds allow, plus the scout);
* enough time for the motion: step-and-shoot move + settle + exposure +
  readout per step against the sweep budget; continuous speed against the
  arc's maximum and the time between projections against the detector's
  frame interval and readout;
* compression force and thickness range;
* anode heat: sum of kV * mAs (J) of all exposures, scout included, against
  the capacity.

Dose needs the physics and belongs to the dry run: pass per-exposure MGD
estimates (``dose_mgd_mgy``) and a limit and they are checked here.

Example
-------
>>> from protocols.exams.standard import load_standard_exam
>>> validate_exam(load_standard_exam("dbt-standard"))
[]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from protocols.exams.models import AecTechnique, Continuous, DbtExam, Exam, ExamModel, FfdmExam, ManualTechnique
from protocols.exams.plan import (
    PlannedExposure,
    aec_scout_exposure,
    arc_travel_deg,
    exam_technique,
    expand_exam,
    frame_interval_needed_ms,
    min_spacing_deg,
    planned_angles_deg,
    scan_time_s,
    settle_ms,
    sweep_speed_deg_s,
    worst_case_technique,
)
from protocols.exams.violations import Code, Violation, violations_from_error
from protocols.limits import DeviceLimits
from protocols.records import Technique

_EXAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(Exam)


def _fmt(x: float) -> str:
    """A number as written in an exam file: ``35.0``, ``0.0714``, ``240100.0``."""
    return str(round(float(x), 4))


def _range(field: str, value: float, lo: float, hi: float, unit: str, what: str, code: Code) -> list[Violation]:
    if value > hi:
        return [Violation(field, value, hi, f"{field} = {_fmt(value)} exceeds the {what} limit {_fmt(hi)} {unit}", code)]
    if value < lo:
        return [Violation(field, value, lo, f"{field} = {_fmt(value)} is below the {what} limit {_fmt(lo)} {unit}", code)]
    return []


# --------------------------------------------------------------------------- field paths


def _named_angles(exam: ExamModel) -> list[tuple[str, float]]:
    """(field path, angle) of the angles that bound the exam; a range's inner angles lie between its ends."""
    if isinstance(exam, DbtExam) and exam.arc.is_range:
        angles = planned_angles_deg(exam)
        return [("arc.start_deg", angles[0]), ("arc.stop_deg", angles[-1])]
    if isinstance(exam, DbtExam):
        return [(f"arc.angles_deg.{i}", a) for i, a in enumerate(planned_angles_deg(exam))]
    if isinstance(exam, FfdmExam):
        return [("angle_deg", exam.angle_deg)]
    fields = (["center_deg"] if exam.zero_view else []) + ["offset_deg", "offset_deg"]
    return list(zip(fields, planned_angles_deg(exam)))


def _mas_field(exam: ExamModel) -> str:
    tech = exam.technique
    if isinstance(tech, AecTechnique):
        return "technique.mas_max_per_projection"
    return "technique.mas_per_projection" if tech.mas_per_projection is not None else "technique.mas_total"


def _speed_field(exam: DbtExam) -> str:
    assert isinstance(exam.motion, Continuous)
    return "motion.speed_deg_s" if exam.motion.speed_deg_s is not None else "motion.sweep_time_s"


# --------------------------------------------------------------------------- checks


def check_arc(exam: ExamModel, limits: DeviceLimits) -> list[Violation]:
    """Every planned angle, and the run-up of a continuous sweep, inside the arc travel."""
    out: list[Violation] = []
    seen: set[str] = set()
    for field, angle in _named_angles(exam):
        hit = _range(field, angle, limits.arc_min_deg, limits.arc_max_deg, "deg", "arc travel", Code.ARC_TRAVEL)
        if hit and field not in seen:
            seen.add(field)
            if field in ("offset_deg", "center_deg"):
                hit = [Violation(field, angle, hit[0].limit,
                                 f"{field}: the stereo angle {_fmt(angle)} deg lies beyond the arc travel "
                                 f"[{_fmt(limits.arc_min_deg)}, {_fmt(limits.arc_max_deg)}] deg", Code.ARC_TRAVEL)]
            out += hit
    if out or not (isinstance(exam, DbtExam) and isinstance(exam.motion, Continuous)):
        return out
    lo, hi = arc_travel_deg(exam, limits)
    if lo < limits.arc_min_deg or hi > limits.arc_max_deg:
        field = _speed_field(exam)
        value = getattr(exam.motion, field.split(".")[1])
        out.append(Violation(
            field, value, (limits.arc_min_deg, limits.arc_max_deg),
            f"{field} = {_fmt(value)}: the continuous sweep needs arc travel [{_fmt(lo)}, {_fmt(hi)}] deg "
            f"(run-up, braking and half a pulse beyond the first and last angles), beyond the arc travel "
            f"[{_fmt(limits.arc_min_deg)}, {_fmt(limits.arc_max_deg)}] deg",
            Code.ARC_TRAVEL,
        ))
    return out


def check_projection_count(exam: ExamModel, limits: DeviceLimits) -> list[Violation]:
    """No more exposures than one armed plan may hold."""
    n = len(planned_angles_deg(exam))
    if n <= limits.max_projections:
        return []
    field = "arc.count" if isinstance(exam, DbtExam) and exam.arc.is_range else "arc.angles_deg"
    return [Violation(field, n, limits.max_projections,
                      f"{field}: {n} projections exceed the plan limit of {limits.max_projections} projections",
                      Code.PROJECTIONS)]


def check_technique_ranges(exam: ExamModel, limits: DeviceLimits) -> list[Violation]:
    """kVp, mAs, anode/filter, focal spot and tube current of the technique (and AEC scout) in range."""
    tech = exam.technique
    kv = (limits.kvp_min_kv, limits.kvp_max_kv, "kV", "generator")
    mas = (limits.mas_min_mas, limits.mas_max_mas, "mAs", "per-exposure mAs")
    out: list[Violation] = []
    if isinstance(tech, ManualTechnique):
        out += _range("technique.kvp", tech.kvp, *kv, Code.KVP_RANGE)
        per = exam_technique(exam).mas
        field = _mas_field(exam)
        for v in _range(field, per, *mas, Code.MAS_RANGE):
            note = "" if field.endswith("per_projection") else f" (mas_total {_fmt(tech.mas_total or 0)} split evenly)"
            out.append(Violation(field, per, v.limit,
                                 f"{field}: {_fmt(per)} mAs per projection{note} is outside the per-exposure mAs "
                                 f"range [{_fmt(limits.mas_min_mas)}, {_fmt(limits.mas_max_mas)}] mAs", Code.MAS_RANGE))
        pairs = [("technique.anode_filter", tech.anode_filter)]
        if tech.tube_current_ma is not None:
            out += _range("technique.tube_current_ma", tech.tube_current_ma, limits.tube_current_min_ma,
                          limits.tube_current_max_ma, "mA", "tube current", Code.TUBE_CURRENT)
    else:
        out += _range("technique.kvp_min", tech.kvp_min, *kv, Code.KVP_RANGE)
        out += _range("technique.kvp_max", tech.kvp_max, *kv, Code.KVP_RANGE)
        out += _range("technique.scout_kvp", tech.scout_kvp, *kv, Code.KVP_RANGE)
        out += _range("technique.mas_max_per_projection", tech.mas_max_per_projection, *mas, Code.MAS_RANGE)
        out += _range("technique.scout_mas", tech.scout_mas, *mas, Code.MAS_RANGE)
        pairs = [(f"technique.anode_filters.{i}", p) for i, p in enumerate(tech.anode_filters)]
        if tech.scout_anode_filter is not None:
            pairs.append(("technique.scout_anode_filter", tech.scout_anode_filter))
    for field, pair in pairs:
        if pair not in limits.anode_filters:
            out.append(Violation(field, pair, list(limits.anode_filters),
                                 f"{field} = {pair} is not offered by the device (supported: "
                                 f"{', '.join(limits.anode_filters)})", Code.ANODE_FILTER))
    if not any(abs(tech.focal_spot_mm - f) < 1e-9 for f in limits.focal_spots_mm):
        out.append(Violation("technique.focal_spot_mm", tech.focal_spot_mm, list(limits.focal_spots_mm),
                             f"technique.focal_spot_mm = {_fmt(tech.focal_spot_mm)} is not a focal spot of the tube "
                             f"(available: {', '.join(_fmt(f) for f in limits.focal_spots_mm)} mm)", Code.FOCAL_SPOT))
    return out


def check_exposures(exam: ExamModel, plan: list[PlannedExposure], limits: DeviceLimits) -> list[Violation]:
    """Tube current, power and single-exposure time of the planned (worst-case) exposures."""
    if not plan:
        return []
    e = max(plan, key=lambda p: (p.window_ms, p.tube_current_ma))
    continuous = e.motion == "continuous"
    mas_field = _mas_field(exam)
    out: list[Violation] = []
    how = f"{_fmt(e.mas)} mAs in a {_fmt(e.window_ms)} ms pulse" if continuous else f"{_fmt(e.mas)} mAs"
    if continuous and not limits.tube_current_min_ma <= e.tube_current_ma <= limits.tube_current_max_ma:
        lim = limits.tube_current_max_ma if e.tube_current_ma > limits.tube_current_min_ma else limits.tube_current_min_ma
        out.append(Violation(mas_field, e.mas, lim,
                             f"{mas_field}: {how} needs {_fmt(e.tube_current_ma)} mA, outside the tube current range "
                             f"[{_fmt(limits.tube_current_min_ma)}, {_fmt(limits.tube_current_max_ma)}] mA",
                             Code.TUBE_CURRENT))
    power = e.kvp * e.tube_current_ma
    if power > limits.tube_max_power_w * (1 + 1e-9):
        out.append(Violation(mas_field, e.mas, limits.tube_max_power_w,
                             f"{mas_field}: {how} at {_fmt(e.kvp)} kV draws {_fmt(power)} W, above the tube power "
                             f"rating {_fmt(limits.tube_max_power_w)} W", Code.TUBE_CURRENT))
    if e.window_ms > limits.exposure_max_ms:
        field = "motion.pulse_ms" if continuous else mas_field
        value = e.window_ms if continuous else e.mas
        out.append(Violation(field, value, limits.exposure_max_ms,
                             f"{field}: an exposure of {_fmt(e.window_ms)} ms ({_fmt(e.mas)} mAs at "
                             f"{_fmt(e.tube_current_ma)} mA) exceeds the longest exposure {_fmt(limits.exposure_max_ms)} ms",
                             Code.EXPOSURE_TIME))
    return out


def check_motion_time(exam: ExamModel, plan: list[PlannedExposure], limits: DeviceLimits) -> list[Violation]:
    """Enough time for the motion: speed, settle, frame interval and the sweep time budget."""
    out: list[Violation] = []
    wait = settle_ms(exam)
    if not isinstance(exam, FfdmExam) and not (isinstance(exam, DbtExam) and isinstance(exam.motion, Continuous)):
        field = "settle_ms" if not isinstance(exam, DbtExam) else "motion.settle_ms"
        if wait < limits.arc_settle_ms:
            out.append(Violation(field, wait, limits.arc_settle_ms,
                                 f"{field} = {_fmt(wait)} is below the arc's settle time {_fmt(limits.arc_settle_ms)} ms",
                                 Code.SETTLE))
    if not isinstance(exam, DbtExam):
        return out
    if isinstance(exam.motion, Continuous):
        field = _speed_field(exam)
        value = getattr(exam.motion, field.split(".")[1])
        speed = abs(sweep_speed_deg_s(exam))
        if speed > limits.arc_max_speed_deg_s:
            out.append(Violation(field, value, limits.arc_max_speed_deg_s,
                                 f"{field} = {_fmt(value)} needs an arc speed of {_fmt(speed)} deg/s, above the arc "
                                 f"speed limit {_fmt(limits.arc_max_speed_deg_s)} deg/s", Code.ARC_SPEED))
        spacing = min_spacing_deg(planned_angles_deg(exam))
        have_ms = 1e3 * spacing / speed
        need_ms = frame_interval_needed_ms(exam.motion.pulse_ms, limits)
        if have_ms < need_ms:
            out.append(Violation(field, value, need_ms,
                                 f"{field} = {_fmt(value)}: at {_fmt(speed)} deg/s the smallest step of "
                                 f"{_fmt(spacing)} deg leaves {_fmt(have_ms)} ms between projections; the detector "
                                 f"needs {_fmt(need_ms)} ms (pulse {_fmt(exam.motion.pulse_ms)} ms + readout "
                                 f"{_fmt(limits.detector_readout_ms)} ms, min frame interval "
                                 f"{_fmt(limits.detector_min_frame_interval_ms)} ms)", Code.MOTION_TIME))
        return out
    budget = exam.motion.sweep_time_s
    need = scan_time_s(exam, plan, limits)
    if budget is not None and need > budget:
        out.append(Violation("motion.sweep_time_s", budget, need,
                             f"motion.sweep_time_s = {_fmt(budget)} is too short: {len(plan)} step-and-shoot "
                             f"exposures need {_fmt(need)} s (move + {_fmt(wait)} ms settle + exposure, and the "
                             f"detector's readout, per step)", Code.MOTION_TIME))
    return out


def check_compression(exam: ExamModel, limits: DeviceLimits) -> list[Violation]:
    """Target force within the powered-drive limit; thickness window within the paddle's range."""
    c = exam.compression
    force_lim = min(limits.compression_force_max_n, limits.compression_initial_drive_max_n)
    out = _range("compression.target_force_n", c.target_force_n, 0.0, force_lim, "N", "powered compression force",
                 Code.COMPRESSION_FORCE)
    t = ("mm", "paddle thickness", Code.COMPRESSION_THICKNESS)
    lo, hi = limits.compression_thickness_min_mm, limits.compression_thickness_max_mm
    out += _range("compression.min_thickness_mm", c.min_thickness_mm, lo, hi, *t)
    out += _range("compression.max_thickness_mm", c.max_thickness_mm, lo, hi, *t)
    return out


def anode_heat_j(plan: list[PlannedExposure], scout: PlannedExposure | None = None) -> float:
    """Heat put into the anode by the plan (and scout), J: the sum of kV * mAs."""
    return sum(e.energy_j for e in plan) + (scout.energy_j if scout else 0.0)


def check_heat(exam: ExamModel, plan: list[PlannedExposure], limits: DeviceLimits,
               initial_heat_j: float = 0.0) -> list[Violation]:
    """Anode heat of the whole exam (no cooling credited) within the capacity."""
    scout = aec_scout_exposure(exam, limits)
    total = initial_heat_j + anode_heat_j(plan, scout)
    if total <= limits.anode_heat_capacity_j:
        return []
    e = plan[0]
    parts = f"{len(plan)} exposures x {_fmt(e.kvp)} kV x {_fmt(e.mas)} mAs"
    parts += " + AEC scout" if scout else ""
    parts += f" + {_fmt(initial_heat_j)} J already stored" if initial_heat_j else ""
    return [Violation("technique", total, limits.anode_heat_capacity_j,
                      f"technique: estimated anode heat {_fmt(total)} J ({parts}) exceeds the anode heat capacity "
                      f"{_fmt(limits.anode_heat_capacity_j)} J", Code.HEAT_BUDGET)]


def check_dose(exam: ExamModel, plan: list[PlannedExposure], dose_mgd_mgy: Sequence[float] | None,
               dose_limit_mgy: float | None) -> list[Violation]:
    """Dose hook for the dry run: per-exposure MGD estimates (mGy, from the physics) against a limit.

    Also flags an AEC MGD target above the limit. Nothing is estimated here.
    """
    if dose_limit_mgy is None:
        return []
    out: list[Violation] = []
    tech = exam.technique
    if isinstance(tech, AecTechnique) and tech.target_mgd_mgy is not None and tech.target_mgd_mgy > dose_limit_mgy:
        out.append(Violation("technique.target_mgd_mgy", tech.target_mgd_mgy, dose_limit_mgy,
                             f"technique.target_mgd_mgy = {_fmt(tech.target_mgd_mgy)} exceeds the dose limit "
                             f"{_fmt(dose_limit_mgy)} mGy", Code.DOSE))
    if dose_mgd_mgy is not None:
        if len(dose_mgd_mgy) != len(plan):
            raise ValueError(f"dose_mgd_mgy has {len(dose_mgd_mgy)} values for {len(plan)} planned exposures")
        total = float(sum(dose_mgd_mgy))
        if total > dose_limit_mgy:
            out.append(Violation("technique", total, dose_limit_mgy,
                                 f"technique: estimated mean glandular dose {_fmt(total)} mGy over {len(plan)} "
                                 f"exposures exceeds the dose limit {_fmt(dose_limit_mgy)} mGy", Code.DOSE))
    return out


def validate_exam(
    exam: ExamModel,
    limits: DeviceLimits | None = None,
    *,
    technique: Technique | None = None,
    dose_mgd_mgy: Sequence[float] | None = None,
    dose_limit_mgy: float | None = None,
    initial_heat_j: float = 0.0,
) -> list[Violation]:
    """All violations of ``exam`` against ``limits`` (default :class:`DeviceLimits`); empty if it is safe to run.

    ``technique``: for an AEC exam, check this chosen technique instead of the
    worst case of the AEC bounds (raises :class:`~protocols.exams.plan.PlanError`
    if it lies outside those bounds). ``dose_mgd_mgy``: per-exposure mean
    glandular dose estimates, mGy, in plan order, from the dry run's physics;
    with ``dose_limit_mgy`` their sum is checked. ``initial_heat_j``: heat
    already stored in the anode, J.
    """
    limits = limits or DeviceLimits()
    tech = exam_technique(exam, technique) if technique is not None else worst_case_technique(exam)
    plan = expand_exam(exam, tech, limits)
    checks: list[Callable[[], list[Violation]]] = [
        lambda: check_arc(exam, limits),
        lambda: check_projection_count(exam, limits),
        lambda: check_technique_ranges(exam, limits),
        lambda: check_exposures(exam, plan, limits),
        lambda: check_motion_time(exam, plan, limits),
        lambda: check_compression(exam, limits),
        lambda: check_heat(exam, plan, limits, initial_heat_j),
        lambda: check_dose(exam, plan, dose_mgd_mgy, dose_limit_mgy),
    ]
    return [v for check in checks for v in check()]


def parse_exam(data: Mapping[str, Any]) -> ExamModel:
    """Build an exam from plain data (raises pydantic ``ValidationError``)."""
    return _EXAM_ADAPTER.validate_python(data)


def validate_exam_data(data: Mapping[str, Any], limits: DeviceLimits | None = None, **kwargs: Any) -> list[Violation]:
    """Schema violations of plain data, or, if it parses, its :func:`validate_exam` violations."""
    try:
        exam = parse_exam(data)
    except ValidationError as err:
        return violations_from_error(err)
    return validate_exam(exam, limits, **kwargs)
