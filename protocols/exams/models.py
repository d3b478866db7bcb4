"""Exam protocols as data: DBT sweep, 2D view (FFDM) and stereotactic pair.

An exam is a declarative, device-independent description of an acquisition.
These models check only what holds for *any* device (shape, exactly-one-of
forms, positive times, plausible physical ranges); whether a particular
gantry can run the exam is the job of :func:`protocols.exams.validate.validate_exam`
against :class:`protocols.limits.DeviceLimits`.

Angles are arc angles in degrees in the gantry frame of
:mod:`protocols.geometry` (0 deg = tube over the detector normal, positive
toward +x). ``kvp`` is in kV, ``mas`` in mAs, forces in N, thicknesses in mm.

The top-level :data:`Exam` is a union discriminated by ``kind``
(``dbt``, ``ffdm``, ``stereo``); the technique is discriminated by ``mode``
(``aec``, ``manual``) and DBT motion by ``mode`` (``step_and_shoot``,
``continuous``).

Example
-------
>>> from pydantic import TypeAdapter
>>> exam = TypeAdapter(Exam).validate_python({
...     "kind": "ffdm", "name": "cc", "view": "CC",
...     "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29, "mas_per_projection": 80},
...     "compression": {"target_force_n": 100}})
>>> exam.angle_deg
0.0
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticCustomError

from protocols.records import AnodeFilter

#: Mammographic projections (ACR / DICOM view codes).
ViewName = Literal["CC", "MLO", "ML", "LM", "LMO", "XCCL", "FB", "SIO"]
Laterality = Literal["L", "R"]

# Device-independent sanity bounds; device limits are checked in validate.py.
_ANGLE_BOUND_DEG = 90.0
_KVP_BOUND = 150.0


#: A number in an exam: int or float, never a bool (``kvp: true`` is refused, not read as 1.0) nor a string.
Float = Annotated[float, Strict()]
#: A whole number in an exam: never a bool, a float or a string.
Int = Annotated[int, Strict()]
#: A yes/no field: ``true``/``false`` only, not 1 or "yes" strings.
Bool = Annotated[bool, Strict()]


class _Strict(BaseModel):
    # unknown keys refused; .inf / .nan refused in every number
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _exactly_one(model: BaseModel, fields: tuple[str, ...], what: str) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        shown = ", ".join(given) if given else "none"
        raise PydanticCustomError(
            "exactly_one",
            "give exactly one of {fields} for {what} (given: {given})",
            {"fields": " / ".join(fields), "what": what, "given": shown},
        )


# --------------------------------------------------------------------------- technique


class ManualTechnique(_Strict):
    """Fixed technique: every projection uses the same anode/filter, kVp and mAs.

    Give either ``mas_per_projection`` or ``mas_total`` (split evenly over the
    projections). ``tube_current_ma`` fixes the current of static exposures
    (FFDM, stereo, step-and-shoot); without it the device's highest current at
    this kVp is used. Continuous sweeps derive the current from the pulse width.
    """

    mode: Literal["manual"] = "manual"
    anode_filter: AnodeFilter
    kvp: Float = Field(..., gt=0.0, le=_KVP_BOUND, description="tube voltage, kV")
    mas_per_projection: Float | None = Field(None, gt=0.0, description="mAs of each projection")
    mas_total: Float | None = Field(None, gt=0.0, description="mAs of the whole exam, split evenly")
    tube_current_ma: Float | None = Field(None, gt=0.0, description="tube current of static exposures, mA")
    focal_spot_mm: Float = Field(0.3, gt=0.0, description="nominal focal spot, mm")

    @model_validator(mode="after")
    def _one_mas(self) -> "ManualTechnique":
        _exactly_one(self, ("mas_per_projection", "mas_total"), "the manual technique's mAs")
        return self


class AecTechnique(_Strict):
    """Automatic exposure control: a scout pre-exposure, then the host chooses.

    The host exposes a short low-dose scout (``scout_*``), then picks the
    anode/filter from ``anode_filters``, a kVp in ``[kvp_min, kvp_max]`` and a
    per-projection mAs up to ``mas_max_per_projection`` to reach the target:
    either a mean detector signal (fraction of full scale in the AEC region) or
    a mean glandular dose for the whole exam (mGy). Static validation checks
    the worst case these bounds allow.
    """

    mode: Literal["aec"] = "aec"
    target_signal_fraction: Float | None = Field(
        None, gt=0.0, le=1.0, description="mean detector signal in the AEC region, fraction of full scale"
    )
    target_mgd_mgy: Float | None = Field(None, gt=0.0, le=20.0, description="mean glandular dose of the exam, mGy")
    anode_filters: tuple[AnodeFilter, ...] = Field(..., min_length=1, description="pairs the AEC may choose")
    kvp_min: Float = Field(..., gt=0.0, le=_KVP_BOUND, description="lowest kVp the AEC may choose, kV")
    kvp_max: Float = Field(..., gt=0.0, le=_KVP_BOUND, description="highest kVp the AEC may choose, kV")
    mas_max_per_projection: Float = Field(..., gt=0.0, description="ceiling of the chosen mAs per projection")
    scout_anode_filter: AnodeFilter | None = Field(None, description="scout pair; default the first allowed")
    scout_kvp: Float = Field(..., gt=0.0, le=_KVP_BOUND, description="scout tube voltage, kV")
    scout_mas: Float = Field(..., gt=0.0, description="scout mAs")
    focal_spot_mm: Float = Field(0.3, gt=0.0, description="nominal focal spot, mm")

    @model_validator(mode="after")
    def _check(self) -> "AecTechnique":
        _exactly_one(self, ("target_signal_fraction", "target_mgd_mgy"), "the AEC target")
        if self.kvp_min > self.kvp_max:
            raise PydanticCustomError(
                "range_order", "kvp_min = {lo} is above kvp_max = {hi}", {"lo": self.kvp_min, "hi": self.kvp_max}
            )
        if len(set(self.anode_filters)) != len(self.anode_filters):
            raise PydanticCustomError("duplicate", "anode_filters lists a pair twice: {v}", {"v": self.anode_filters})
        return self

    @property
    def scout_pair(self) -> AnodeFilter:
        """Anode/filter of the scout exposure."""
        return self.scout_anode_filter or self.anode_filters[0]


TechniqueSpec = Annotated[Union[AecTechnique, ManualTechnique], Field(discriminator="mode")]


# --------------------------------------------------------------------------- compression


class Compression(_Strict):
    """Breast compression: ramp to ``target_force_n``, wait, read the thickness.

    The exam is refused at run time if the settled thickness lies outside
    ``[min_thickness_mm, max_thickness_mm]``. ``release``: ``after_exam``
    lifts the paddle when the exam ends; ``hold`` keeps it down (biopsy).
    ``release_on_fault`` lifts it when the exam ends on a fault.
    """

    target_force_n: Float = Field(..., gt=0.0, description="compression force to reach, N")
    settle_time_s: Float = Field(3.0, ge=0.0, le=60.0, description="wait for the force to relax, s")
    min_thickness_mm: Float = Field(20.0, gt=0.0, description="thinnest acceptable compressed breast, mm")
    max_thickness_mm: Float = Field(110.0, gt=0.0, description="thickest acceptable compressed breast, mm")
    release: Literal["after_exam", "hold"] = "after_exam"
    release_on_fault: Bool = True

    @model_validator(mode="after")
    def _order(self) -> "Compression":
        if self.min_thickness_mm >= self.max_thickness_mm:
            raise PydanticCustomError(
                "range_order",
                "min_thickness_mm = {lo} must be below max_thickness_mm = {hi}",
                {"lo": self.min_thickness_mm, "hi": self.max_thickness_mm},
            )
        return self


# --------------------------------------------------------------------------- DBT arc and motion


class Arc(_Strict):
    """The DBT projection angles: ``start_deg, stop_deg, count`` or ``angles_deg``.

    The range form spaces ``count`` angles evenly from ``start_deg`` to
    ``stop_deg`` inclusive; the sweep runs in that order (start may be above
    stop). An explicit list must be strictly monotonic; it is the sweep order.
    """

    start_deg: Float | None = Field(None, ge=-_ANGLE_BOUND_DEG, le=_ANGLE_BOUND_DEG)
    stop_deg: Float | None = Field(None, ge=-_ANGLE_BOUND_DEG, le=_ANGLE_BOUND_DEG)
    count: Int | None = Field(None, ge=2, le=1000, description="number of projections")
    angles_deg: tuple[Float, ...] | None = Field(None, min_length=2, max_length=1000)

    @model_validator(mode="after")
    def _one_form(self) -> "Arc":
        range_given = [f for f in ("start_deg", "stop_deg", "count") if getattr(self, f) is not None]
        if self.angles_deg is not None:
            if range_given:
                raise PydanticCustomError(
                    "arc_form",
                    "give either start_deg/stop_deg/count or angles_deg, not both (also given: {given})",
                    {"given": ", ".join(range_given)},
                )
            steps = [b - a for a, b in zip(self.angles_deg, self.angles_deg[1:])]
            if not (all(s > 0 for s in steps) or all(s < 0 for s in steps)):
                raise PydanticCustomError(
                    "arc_monotonic",
                    "angles_deg must be strictly increasing or strictly decreasing, got {angles}",
                    {"angles": list(self.angles_deg)},
                )
            if any(abs(a) > _ANGLE_BOUND_DEG for a in self.angles_deg):
                raise PydanticCustomError(
                    "arc_bound", "angles_deg must lie within +-{b} deg", {"b": _ANGLE_BOUND_DEG}
                )
            return self
        if len(range_given) != 3:
            missing = [f for f in ("start_deg", "stop_deg", "count") if getattr(self, f) is None]
            raise PydanticCustomError(
                "arc_form",
                "give start_deg, stop_deg and count, or angles_deg (missing: {missing})",
                {"missing": ", ".join(missing)},
            )
        if self.start_deg == self.stop_deg:
            raise PydanticCustomError(
                "arc_span", "start_deg and stop_deg are both {v}: the arc has no span", {"v": self.start_deg}
            )
        return self

    @property
    def is_range(self) -> bool:
        """True for the ``start_deg, stop_deg, count`` form."""
        return self.angles_deg is None


class StepAndShoot(_Strict):
    """Stop at each angle, wait ``settle_ms``, expose, move on.

    ``sweep_time_s`` (optional) is the budget from the first exposure's start
    to the last exposure's end; validation checks the moves fit in it.
    """

    mode: Literal["step_and_shoot"] = "step_and_shoot"
    settle_ms: Float = Field(100.0, ge=0.0, le=10000.0, description="wait after each move before exposing, ms")
    sweep_time_s: Float | None = Field(None, gt=0.0, le=600.0, description="time budget of the sweep, s")


class Continuous(_Strict):
    """The tube moves at constant speed and fires a ``pulse_ms`` pulse centred on each angle.

    Give the speed (``speed_deg_s``) or the time from the first to the last
    planned angle (``sweep_time_s``), not both.
    """

    mode: Literal["continuous"] = "continuous"
    speed_deg_s: Float | None = Field(None, gt=0.0, le=1000.0, description="arc speed, deg/s")
    sweep_time_s: Float | None = Field(None, gt=0.0, le=600.0, description="first-to-last angle travel time, s")
    pulse_ms: Float = Field(..., gt=0.0, le=10000.0, description="X-ray pulse width, ms")

    @model_validator(mode="after")
    def _one_speed(self) -> "Continuous":
        _exactly_one(self, ("speed_deg_s", "sweep_time_s"), "the continuous sweep's speed")
        return self


MotionSpec = Annotated[Union[StepAndShoot, Continuous], Field(discriminator="mode")]


# --------------------------------------------------------------------------- exams


class _ExamBase(_Strict):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    view: ViewName
    laterality: Laterality | None = Field(None, description="L or R; None: chosen by the operator at run time")
    technique: TechniqueSpec
    compression: Compression


class DbtExam(_ExamBase):
    """Digital breast tomosynthesis: a sweep of projections over an arc."""

    kind: Literal["dbt"] = "dbt"
    arc: Arc
    motion: MotionSpec


class FfdmExam(_ExamBase):
    """A 2D mammogram (full-field digital mammography), normally at 0 deg."""

    kind: Literal["ffdm"] = "ffdm"
    angle_deg: Float = Field(0.0, ge=-_ANGLE_BOUND_DEG, le=_ANGLE_BOUND_DEG)


class StereoExam(_ExamBase):
    """Stereotactic pair at ``center_deg -+ offset_deg`` (biopsy), optional 0-deg scout view first.

    The scout view (``zero_view``) is the straight image biopsy systems take
    to target the lesion before the pair; it is an image of the exam, not the
    AEC pre-exposure.
    """

    kind: Literal["stereo"] = "stereo"
    offset_deg: Float = Field(15.0, gt=0.0, le=_ANGLE_BOUND_DEG, description="half the pair's separation, deg")
    center_deg: Float = Field(0.0, ge=-_ANGLE_BOUND_DEG, le=_ANGLE_BOUND_DEG)
    zero_view: Bool = Field(False, description="take a scout image at center_deg before the pair")
    settle_ms: Float = Field(100.0, ge=0.0, le=10000.0, description="wait after each move before exposing, ms")


Exam = Annotated[Union[DbtExam, FfdmExam, StereoExam], Field(discriminator="kind")]
ExamModel = DbtExam | FfdmExam | StereoExam
