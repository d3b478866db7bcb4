"""Exam validation for CI (``crescent validate EXAM.yaml``): static checks, then a dry run.

1. Static: :func:`protocols.exams.validate_exam_data` against the limits of the
   gantry (``--gantry`` config, default the simulator's ``default``): schema,
   travel, technique ranges, motion time, compression, heat.
2. Dry run: the exam runs through the host controller
   (:func:`firmware_host.api.run_exam_virtual`) on the simulated gantry in
   SimPy virtual time, with a small noise-free detector (the images are not
   the point; the sequencing, timing and delivered technique are). An exam
   with AEC is run once per reference breast thickness, so the AEC picks the
   technique that breast would get; a manual exam runs once.
3. From the delivered exposures (actual kV, mAs, anode/filter, window angles,
   scout included): scan time, anode heat (kV x mAs, J), largest angle and
   sweep speed, and the mean glandular dose per projection and in total for
   each reference breast (Dance method, :mod:`physics.exposure_dose`, paddle in
   the beam), checked against that breast's limit. Each breast gets the
   thickness and technique it would really get: an AEC exam's dose is computed
   at the thickness its dry run compressed to (the dry run is sized to reach the
   reference thickness, and the AEC chose the technique for it; both are
   printed); a manual exam's fixed technique is applied to each reference breast
   at the reference thickness, stated as such.

Dose limits (:data:`REFERENCE_BREASTS`): the European guidelines' *acceptable*
MGD levels for the standard breasts equivalent to 20-70 mm PMMA (European
guidelines for quality assurance in breast cancer screening and diagnosis,
4th ed., 2006, Table 2a.1 / EUREF; breast thickness and glandularity of each
PMMA-equivalent breast from Dance et al. 2000), and the US MQSA limit of
3 mGy per view for the standard 4.2-4.5 cm / 50 % breast (21 CFR 900.12(e)(5)(vi)).
A DBT exam is held to the limit of one 2D view (DESIGN.md). An AEC exam is
held to every reference breast's limit (the AEC chose its technique for that
breast); a manual exam's fixed technique only to the standard breast's
(45 mm / 50 %, 3 mGy). The others are reported for information only, labelled
INFORMATIVE in the text and as skipped cases ``dose <breast> (informative)`` in
the JUnit, never as a pass against a limit they exceed.

Exit status 0 only when there is no violation and the dry run completed.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.exams.io import ExamFileError, exam_from_data, parse_exam_data
from protocols.exams.standard import resolve_exam_source
from protocols.exams.models import AecTechnique, ExamModel
from protocols.exams.validate import validate_exam_data
from protocols.exams.violations import Code, Violation
from protocols.geometry import AcquisitionGeometry
from protocols.limits import DeviceLimits
from protocols.records import ExposureRecord

from hil.junit import FAIL, PASS, SKIP, CaseResult, write_junit


@dataclass(frozen=True)
class ReferenceBreast:
    """A standard breast: compressed thickness (mm), glandular fraction by weight, MGD limit (mGy)."""

    name: str
    thickness_mm: float
    glandularity: float
    limit_mgy: float
    source: str


#: Reference breasts and their MGD limits (see module docstring for sources).
REFERENCE_BREASTS: tuple[ReferenceBreast, ...] = (
    ReferenceBreast("32 mm / 67 %", 32.0, 0.67, 1.5, "EUREF acceptable, 30 mm PMMA"),
    ReferenceBreast("45 mm / 50 %", 45.0, 0.50, 3.0, "US MQSA 3 mGy per view"),
    ReferenceBreast("53 mm / 29 %", 53.0, 0.29, 2.5, "EUREF acceptable, 45 mm PMMA"),
    ReferenceBreast("60 mm / 20 %", 60.0, 0.20, 3.0, "EUREF acceptable, 50 mm PMMA"),
)

#: The breast a manual technique's dose is held to (MQSA's standard breast, 3 mGy per view).
STANDARD_BREAST = "45 mm / 50 %"

#: Dance's reference point lies 60 mm from the chest wall on the upper breast surface (mm, gantry frame y).
DOSE_POINT_Y_MM = 60.0


# --------------------------------------------------------------------------------------------- physics
def focal_spot_mm(geometry: AcquisitionGeometry, angle_deg: float) -> tuple[float, float, float]:
    """Focal spot at arc angle ``angle_deg`` (gantry frame, mm): (R sin t, 0, pivot + R cos t)."""
    r = geometry.sid_mm - geometry.pivot_height_mm
    t = math.radians(angle_deg)
    return (r * math.sin(t), 0.0, geometry.pivot_height_mm + r * math.cos(t))


def projection_mgd_mgy(
    exposure: ExposureRecord, geometry: AcquisitionGeometry, thickness_mm: float, glandularity: float
) -> float:
    """MGD (mGy) of one exposure to a slab breast of ``thickness_mm`` on the support.

    The same computation as the acquisition's dose (:func:`physics.exposure_dose.exposure_mgd_mgy`):
    incident air kerma K at the breast's upper surface (point 60 mm from the chest wall) of the
    delivered kV, anode/filter and mAs through the compression paddle of the default beam path
    (:data:`physics.beam_path.DEFAULT_BEAM_PATH`), inverse-square from the focal spot at the
    window's mean angle; MGD = K g c s t (Dance) with g and c looked up at the HVL measured with
    the paddle in place.
    """
    from physics.exposure_dose import exposure_mgd_mgy

    return exposure_mgd_mgy(geometry, exposure, thickness_mm=thickness_mm, glandularity=glandularity)


# --------------------------------------------------------------------------------------------- dry run
def free_thickness_for(thickness_mm: float, force_n: float, stiffness_n: float, exponent: float) -> float:
    """Uncompressed thickness (mm) that the gantry's breast model squeezes to ``thickness_mm`` at ``force_n``.

    Inverts the equilibrium spring of simulator.gantry.config.BreastConfig,
    F = stiffness (exp(exponent * strain) - 1), strain = (free - h) / free.
    """
    strain = math.log(force_n / stiffness_n + 1.0) / exponent
    return thickness_mm / (1.0 - strain)


def dry_run_config(gantry: str | Path | None, breast_thickness_mm: float | None, force_n: float) -> Any:
    """The gantry config for a dry run: small noise-free detector, breast sized to reach the thickness."""
    from simulator.gantry.config import load_config, small_detector

    cfg = load_config(gantry if gantry is not None else "default")
    changes: dict[str, Any] = {
        "detector": {"noise": False},
        "geometry": {"detector": small_detector().model_dump()},
        # the host releases as each exam says (the AEC scout is a plan of its own; stereo holds)
        "paddle": {"release_after_exam": False},
    }
    if breast_thickness_mm is not None:
        b = cfg.breast
        free = free_thickness_for(breast_thickness_mm, force_n, b.stiffness_n, b.exponent)
        changes["breast"] = {"free_thickness_mm": min(150.0, free)}
    return cfg.with_overrides(**changes)


@dataclass
class DryRun:
    """One dry run: its record (host's ExamRecord) and the virtual time it took (s)."""

    breast_thickness_mm: float | None
    record: Any
    virtual_s: float
    wall_s: float


def dry_run(exam: ExamModel, gantry: str | Path | None, breast_thickness_mm: float | None, seed: int = 0) -> DryRun:
    """Run ``exam`` through the host controller on the simulated gantry in virtual time."""
    import simpy

    from firmware_host.api import run_exam_virtual
    from simulator.gantry import start_virtual_gantry

    cfg = dry_run_config(gantry, breast_thickness_mm, exam.compression.target_force_n)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crescent-validate-") as tmp:
        env = simpy.Environment()
        _, endpoint = start_virtual_gantry(env, cfg, seed=seed, data_dir=Path(tmp) / "data", event_log=None)
        result = run_exam_virtual(env, endpoint, exam, Path(tmp) / "exam", seed=seed)
        return DryRun(breast_thickness_mm, result.record, float(env.now), time.monotonic() - t0)


# --------------------------------------------------------------------------------------------- report
@dataclass
class BreastDose:
    """Dose of one dry run's exposures to one reference breast.

    ``thickness_mm`` is the compressed thickness the dose is computed at; ``run_thickness_mm`` the
    thickness the dry run compressed to (whose technique was delivered). For an AEC exam they are
    the same (the AEC chose the technique for the breast it compressed, run at the reference
    thickness); for a manual exam the dose is the fixed technique applied to the reference
    breast at its reference thickness, and ``informative`` says whether the limit applies.
    """

    breast: ReferenceBreast
    thickness_mm: float
    per_projection_mgy: list[float]
    scout_mgy: float
    run_thickness_mm: float | None = None
    informative: bool = False
    aec: bool = True

    @property
    def total_mgy(self) -> float:
        return self.scout_mgy + sum(self.per_projection_mgy)

    @property
    def over_limit(self) -> bool:
        return self.total_mgy > self.breast.limit_mgy

    def describe(self) -> str:
        """One line: dose, where and how it was computed, the limit and the verdict."""
        run = self.run_thickness_mm
        if not self.aec:
            how = (f"at {self.thickness_mm:.1f} mm with the manual technique of the dry run"
                   + (f" (run at {run:.1f} mm)" if run is not None else ""))
        else:
            how = f"at {self.thickness_mm:.1f} mm, the technique the AEC chose for it"
            if run is not None and abs(run - self.breast.thickness_mm) > 0.05:
                how += f" (reference {self.breast.thickness_mm:.1f} mm; the dry run compressed to {run:.1f} mm)"
        level = f"{self.breast.limit_mgy} mGy ({self.breast.source})"
        if self.informative:
            verdict = (f"INFORMATIVE, not held to a limit (manual technique; the limit applies to {STANDARD_BREAST}): "
                       + (f"above the {level} level" if self.over_limit else f"below the {level} level"))
        else:
            verdict = ("exceeds" if self.over_limit else "within") + f" the limit {level}"
        return f"{self.total_mgy:.3f} mGy {how}; {verdict}"


@dataclass
class ValidationReport:
    """Everything ``crescent validate`` found about one exam."""

    exam_path: str
    exam_name: str = ""
    violations: list[Violation] = field(default_factory=list)
    runs: list[DryRun] = field(default_factory=list)
    doses: list[BreastDose] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[CaseResult] = field(default_factory=list)
    #: Why the file could not be read (not found, too large, not UTF-8, not YAML...): no verdict on the exam.
    input_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.input_error is None and not self.violations and all(s.status in (PASS, SKIP) for s in self.steps)

    def text(self) -> str:
        lines = [f"exam {self.exam_name or '?'} ({self.exam_path}):"]
        for k, v in self.facts.items():
            lines.append(f"  {k}: {v}")
        for d in self.doses:
            per = ", ".join(f"{x:.3f}" for x in d.per_projection_mgy)
            lines.append(f"  MGD {d.breast.name}: total {d.describe()} [scout {d.scout_mgy:.3f}; per projection [{per}]]")
        for v in self.violations:
            lines.append(f"  VIOLATION {v.field}: {v}")
        for s in self.steps:
            if s.status not in (PASS, SKIP) and not (s.name == "read" and self.input_error is not None):
                lines.append(f"  {s.status.upper()} {s.name}: {s.message}")
        if self.input_error is not None:
            lines.append(f"ERROR: {self.input_error}")
        else:
            lines.append("SAFE" if self.ok else "UNSAFE: exam rejected")
        return "\n".join(lines)


def _exposure_facts(rec: Any, limits: DeviceLimits, report: ValidationReport, tag: str) -> None:
    exps: list[ExposureRecord] = list(rec.exposures)
    images = [e for e in exps if not e.is_scout]
    if not exps:
        return
    heat_j = sum(e.kvp * e.mas for e in exps)
    max_angle = max(max(abs(e.angle_start_deg), abs(e.angle_end_deg)) for e in exps)
    speeds = [
        abs(e.angle_end_deg - e.angle_start_deg) / (e.window_end_s - e.window_start_s)
        for e in exps
        if e.window_end_s > e.window_start_s
    ]
    scan_s = (images[-1].window_end_s - images[0].window_start_s) if images else 0.0
    report.facts[f"{tag}scan time (first X-ray on to last off)"] = f"{scan_s:.3f} s"
    report.facts[f"{tag}exam time (host, virtual)"] = f"{rec.ended_host_s - rec.started_host_s:.3f} s"
    report.facts[f"{tag}exposures"] = f"{len(images)} + {len(exps) - len(images)} scout"
    if rec.technique is not None:
        t = rec.technique
        report.facts[f"{tag}technique"] = f"{t.anode_filter} {t.kvp:.1f} kV {t.mas:.2f} mAs/projection"
    report.facts[f"{tag}anode heat"] = f"{heat_j:.0f} J of {limits.anode_heat_capacity_j:.0f} J"
    report.facts[f"{tag}travel"] = f"{max_angle:.3f} deg of [{limits.arc_min_deg}, {limits.arc_max_deg}]"
    if speeds:
        report.facts[f"{tag}speed during windows"] = f"max {max(speeds):.3f} deg/s of {limits.arc_max_speed_deg_s}"
    if heat_j > limits.anode_heat_capacity_j:
        report.violations.append(
            Violation("technique", heat_j, limits.anode_heat_capacity_j,
                      f"delivered anode heat {heat_j:.0f} J exceeds the capacity {limits.anode_heat_capacity_j:.0f} J",
                      Code.HEAT_BUDGET)
        )
    if max_angle > max(abs(limits.arc_min_deg), abs(limits.arc_max_deg)) + 0.5:
        report.violations.append(
            Violation("arc", max_angle, limits.arc_max_deg, f"an exposure reached {max_angle:.2f} deg, beyond the travel", Code.ARC_TRAVEL)
        )
    if speeds and max(speeds) > limits.arc_max_speed_deg_s * 1.05:
        report.violations.append(
            Violation("motion", max(speeds), limits.arc_max_speed_deg_s,
                      f"the arc moved at {max(speeds):.2f} deg/s during a window, above {limits.arc_max_speed_deg_s} deg/s",
                      Code.ARC_SPEED)
        )


def _dose_for(run: DryRun, breasts: Sequence[ReferenceBreast], geometry: AcquisitionGeometry,
              aec: bool) -> list[BreastDose]:
    """Dose of the run's exposures to each breast: AEC at the thickness compressed, manual at the reference's."""
    out = []
    rec = run.record
    run_th = rec.compressed_thickness_mm
    for b in breasts:
        th = run_th if (aec and run_th) else b.thickness_mm
        per, scout = [], 0.0
        for e in rec.exposures:
            d = projection_mgd_mgy(e, geometry, th, b.glandularity)
            if e.is_scout:
                scout += d
            else:
                per.append(d)
        out.append(BreastDose(b, th, per, scout, run_thickness_mm=run_th,
                              informative=not aec and b.name != STANDARD_BREAST, aec=aec))
    return out


def validate_file(
    exam_path: str | Path,
    gantry: str | Path | None = None,
    *,
    breasts: Sequence[ReferenceBreast] = REFERENCE_BREASTS,
    seed: int = 0,
    dry: bool = True,
) -> ValidationReport:
    """Validate one exam: static checks, then (if they pass and ``dry``) the dry run(s) and dose.

    ``exam_path`` is a file or a shipped library name (``dbt-standard``). A
    file that cannot be read (not found, too large, binary, not UTF-8, not
    YAML, aliases, duplicate keys) gives a report with ``input_error`` set and
    a failed ``read`` step naming the file; it never raises for the exam, so a
    multi-file run gives every file its verdict. Static-only and full
    validation read the file the same way.
    """
    from simulator.gantry.config import load_config

    report = ValidationReport(str(exam_path))
    cfg = load_config(gantry if gantry is not None else "default")
    limits = cfg.limits
    t0 = time.monotonic()
    try:
        src = resolve_exam_source(exam_path)
        data = parse_exam_data(src.text, src.source)
    except ExamFileError as exc:
        reason = f"{exc.source}: {exc.detail}" if exc.detail else str(exc)
        report.input_error = reason
        report.steps.append(CaseResult("read", FAIL, reason, time.monotonic() - t0))
        return report
    if not isinstance(data, dict):
        report.input_error = f"{exam_path}: an exam file is a YAML mapping, got {type(data).__name__}"
        report.steps.append(CaseResult("read", FAIL, report.input_error))
        return report
    report.exam_name = str(data.get("name", ""))[:64]
    report.violations.extend(validate_exam_data(data, limits))
    static_msg = "; ".join(str(v) for v in report.violations)
    report.steps.append(
        CaseResult("static", FAIL if report.violations else PASS, static_msg or "no violation", time.monotonic() - t0,
                   details="\n".join(f"{v.field}: {v}" for v in report.violations))
    )
    if report.violations or not dry:
        return report
    try:
        exam = exam_from_data(data, src.source)
    except ExamFileError as exc:
        report.steps.append(CaseResult("static", FAIL, str(exc)))
        return report
    aec = isinstance(getattr(exam, "technique", None), AecTechnique)
    lo, hi = exam.compression.min_thickness_mm, exam.compression.max_thickness_mm
    usable = [b for b in breasts if lo <= b.thickness_mm <= hi]
    for b in breasts:
        if b not in usable:
            report.steps.append(CaseResult(f"dose {b.name}", SKIP, f"outside the exam's thickness range {lo}-{hi} mm"))
    thicknesses: list[float | None] = sorted({b.thickness_mm for b in usable}) if aec else [None]  # type: ignore[assignment]
    for th in thicknesses:
        t1 = time.monotonic()
        name = "dry run" + (f" {th:.0f} mm" if th is not None else "")
        try:
            run = dry_run(exam, gantry, th, seed)
        except Exception as exc:  # noqa: BLE001 - any failure of the dry run rejects the exam, with the reason
            report.steps.append(CaseResult(name, FAIL, f"{type(exc).__name__}: {exc}", time.monotonic() - t1))
            continue
        report.runs.append(run)
        rec = run.record
        if rec.status != "complete":
            report.steps.append(CaseResult(name, FAIL, f"exam {rec.status} in phase {rec.phase}: {rec.reason}", run.wall_s))
            continue
        report.steps.append(CaseResult(name, PASS, f"complete in {run.virtual_s:.2f} s virtual", run.wall_s))
        tag = "" if th is None else f"[{th:.0f} mm] "
        _exposure_facts(rec, limits, report, tag)
        doses = _dose_for(run, [b for b in usable if th is None or b.thickness_mm == th], cfg.geometry, aec)
        report.doses.extend(doses)
    for d in report.doses:
        msg = f"total MGD of the reference breast {d.breast.name}: {d.describe()}"
        if d.informative:
            # a manual technique is set for one breast; only the standard breast's limit applies to it.
            # Reported as a skipped (not-checked) case so no reader takes it for a pass against the limit.
            report.steps.append(CaseResult(f"dose {d.breast.name} (informative)", SKIP, msg))
            continue
        ok = not d.over_limit
        report.steps.append(CaseResult(f"dose {d.breast.name}", PASS if ok else FAIL, msg))
        if not ok:
            report.violations.append(Violation("technique", round(d.total_mgy, 4), d.breast.limit_mgy, msg, Code.DOSE))
    return report


def write_report_junit(path: str | Path, reports: Sequence[ValidationReport]) -> None:
    """One JUnit test case per step of every exam (classname = exam file)."""
    cases = []
    for r in reports:
        for s in r.steps:
            cases.append(CaseResult(s.name, s.status, s.message, s.time_s, classname=r.exam_path, details=s.details))
    write_junit(path, "crescent.validate", cases)


